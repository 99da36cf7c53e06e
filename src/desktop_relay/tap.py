"""The twistd entry point: command-line options and makeService for `twistd desktop-relay`."""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from .config import ConfigError, load_config


class Options(usage.Options):
    """Options of `twistd desktop-relay`."""

    optParameters = [
        ["config", "c", "etc/relay.ini", "The relay's configuration file."],
    ]


def makeService(options: Options) -> IService:
    """Read the configuration and build the relay's services; a bad configuration stops here."""
    from twisted.internet import reactor

    from .service import build_relay

    try:
        return build_relay(load_config(options["config"]), reactor)
    except ConfigError as e:
        # One line, no traceback: the admin needs the file, section, key and reason.
        print(f"desktop-relay: configuration error: {e}", file=sys.stderr)
        raise SystemExit(78) from None  # EX_CONFIG
