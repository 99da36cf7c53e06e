"""twistd plugin: `twistd desktop-relay`. Imports nothing heavy; the real work is in desktop_relay.tap."""

from twisted.application.service import ServiceMaker

desktop_relay = ServiceMaker(
    "desktop-relay",
    "desktop_relay.tap",
    "Per-user desktop containers in the browser, relayed over HTTP and WebSocket",
    "desktop-relay",
)
