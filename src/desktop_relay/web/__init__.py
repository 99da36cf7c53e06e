"""The web layer: Klein apps for the pages, the user JSON API and the desktop routes."""
