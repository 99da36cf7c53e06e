"""The relay proper: the HTTP asset proxy and the WebSocket bridge to desktop containers."""
