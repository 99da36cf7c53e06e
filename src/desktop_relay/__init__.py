"""desktop-relay: per-user Kasm desktops in the browser, behind one Twisted process."""
