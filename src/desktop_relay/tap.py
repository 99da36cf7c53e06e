"""The twistd entry point: command-line options and makeService for `twistd desktop-relay`."""

from __future__ import annotations

import sys

from twisted.application.service import IService, MultiService
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.components import Componentized

from .config import ConfigError, load_config


class Options(usage.Options):
    """Options of `twistd desktop-relay`."""

    optParameters = [
        ["config", "c", "etc/relay.ini", "The relay's configuration file."],
    ]


class _LoggingTo(MultiService):
    """The relay, with the log observer relay.ini chose: set on twistd's Application as a .tac
    file's `application.setComponent(ILogObserver, ...)` would, so twistd logs to it (unless
    its --logger option names another)."""

    def __init__(self, relay: IService, observer: ILogObserver) -> None:
        super().__init__()
        relay.setServiceParent(self)
        self._observer = observer

    def setServiceParent(self, parent: object) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self._observer)
        super().setServiceParent(parent)


def makeService(options: Options) -> IService:
    """Read the configuration and build the relay's services; a bad configuration stops here."""
    from twisted.internet import reactor

    from .logs import json_log_observer, twistd_log_file
    from .service import build_relay

    try:
        config = load_config(options["config"])
        relay = build_relay(config, reactor)
    except ConfigError as e:
        # One line, no traceback: the admin needs the file, section, key and reason.
        print(f"desktop-relay: configuration error: {e}", file=sys.stderr)
        raise SystemExit(78) from None  # EX_CONFIG
    if config.log_format == "json":
        # twistd's own options: where it would log (--logfile, --nodaemon).
        twistd = getattr(options, "parent", None) or {}
        out = twistd_log_file(twistd.get("logfile") or "", bool(twistd.get("nodaemon")))
        return _LoggingTo(relay, json_log_observer(out))
    return relay
