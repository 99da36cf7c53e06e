"""Re-reading relay.ini while the relay runs (POST /api/admin/reload, SIGHUP): validated first, so a
bad file changes nothing; then the desktops and the session limits are swapped in, and settings
that only a restart can change are named rather than silently ignored.

Owns ConfigReloader (the reload itself, its log lines and audit line) and SighupReload (the
signal, turned into a reload on the reactor thread).
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import attr
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger

from .capacity import CapacityLimits
from .config import ConfigError, RelayConfig, load_config
from .engine.interface import ContainerEngineUnavailable
from .lifecycle import DesktopSessions
from .lifecycle.background import AUTO_MEMORY_SHARE
from .store import SQLiteStore

# Where each setting a reload cannot apply lives in relay.ini. Every RelayConfig field is either
# here or applied by ConfigReloader (desktops and [sessions] limits); a test checks that.
RESTART_SETTINGS = {
    "listen": "[relay] listen",
    "public_url": "[relay] public_url",
    "instance": "[relay] instance",
    "database": "[relay] database",
    "trusted_proxies": "[relay] trusted_proxies",
    "docker_url": "[docker] url",
    "docker_threads": "[docker] threads",
    "port_range": "[docker] port_range",
    "start_timeout": "[docker] start_timeout",
    "stop_timeout": "[docker] stop_timeout",
    "reconcile_interval": "[docker] reconcile_interval",
    "engine_timeout": "[docker] timeout",
    "auth_method": "[auth] method",
    "password_file": "[auth] password_file",
    "login_attempts": "[auth] login_attempts",
    "login_window": "[auth] login_window",
    "web_session_idle": "[auth] session_idle",
    "web_session_lifetime": "[auth] session_lifetime",
    "lifecycle_check_interval": "[sessions] check_interval",
    "activity_write_interval": "[sessions] activity_write_interval",
    "ws_max_message_size": "[websocket] max_message_size",
    "ws_ping_interval": "[websocket] ping_interval",
    "ws_open_timeout": "[websocket] open_timeout",
    "oidc": "[oidc]",
    "header": "[header]",
    "admin_groups": "[roles] admin_groups",
    "teacher_groups": "[roles] teacher_groups",
    "audit_keep": "[audit] keep",
    "metrics_listen": "[metrics] listen",
    "metrics_token": "[metrics] token_file",
    "log_format": "[relay] log_format",
    "site": "[site]",
    # Mounted at each start and measured on a timer made at start.
    "homes": "[homes]",
    "shares": "[share:NAME]",
    # The timetables are read when the relay starts (lifecycle/timetable.py).
    "schedules": "[schedule:NAME]",
    # The class scope (auth/classes.py) is made once, when the relay starts.
    "classes": "[roles] class_groups, admins_see_all_classes, teacher_control and [classes]",
}
# The settings a reload applies, with their place in relay.ini.
RELOADED_SETTINGS = {
    "max_sessions_per_user": "[sessions] max_per_user",
    "max_total_sessions": "[sessions] max_total",
    "memory_budget": "[sessions] memory_budget",
    "memory_budget_auto": "[sessions] memory_budget",
    "max_starting": "[sessions] max_starting",
    "max_queued": "[sessions] max_queued",
}


@attr.s(frozen=True, auto_attribs=True)
class ReloadResult:
    """What a reload changed, and what it could not."""

    source: Path
    desktops_added: list[str]
    desktops_removed: list[str]
    desktops_changed: list[str]
    settings_changed: list[str]
    restart_needed: list[str]

    def summary(self) -> str:
        """One line for the log and the audit."""
        parts = [f"{label}: {', '.join(names)}" for label, names in (
            ("desktops added", self.desktops_added), ("removed", self.desktops_removed),
            ("changed", self.desktops_changed), ("settings changed", self.settings_changed),
            ("restart needed for", self.restart_needed),
        ) if names]
        return "; ".join(parts) or "nothing changed"

    def as_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "desktops": {"added": self.desktops_added, "removed": self.desktops_removed,
                         "changed": self.desktops_changed},
            "settings_changed": self.settings_changed,
            "restart_needed": self.restart_needed,
        }


class ConfigReloader:
    """Reads relay.ini again and applies what can change while running to DesktopSessions."""

    _log = Logger()

    def __init__(self, config: RelayConfig, sessions: DesktopSessions, store: SQLiteStore,
                 clock: IReactorTime) -> None:
        self.config = config
        self._sessions = sessions
        self._store = store
        self._clock = clock
        self._lock = DeferredLock()

    def reload(self, actor: str, action: str) -> Deferred[ReloadResult]:
        """Reload for `actor` (audited as `action`); fails with ConfigError, changing nothing,
        when the file is not valid. One reload at a time."""
        return self._lock.run(self._reload, actor, action)

    @inlineCallbacks
    def _reload(self, actor: str, action: str) -> Generator[Deferred[Any], Any, ReloadResult]:
        old = self.config
        try:
            new = load_config(old.source)
        except ConfigError as e:
            self._log.warn("{source} not reloaded, the running settings stay: {error}",
                           source=str(old.source), error=str(e))
            yield self._audit(actor, action, f"refused: {e}")
            raise
        restart = sorted({where for name, where in RESTART_SETTINGS.items()
                          if getattr(old, name) != getattr(new, name)})
        changed = sorted({where for name, where in RELOADED_SETTINGS.items()
                          if getattr(old, name) != getattr(new, name)})
        budget = yield self._memory_budget(old, new, restart)
        self._sessions.reconfigure(
            new.desktops,
            CapacityLimits(
                max_total=new.max_total_sessions, max_starting=new.max_starting, memory_budget=budget,
                per_desktop={name: d.max_sessions for name, d in new.desktops.items()},
                max_queued=new.max_queued,
            ),
            new.max_sessions_per_user,
        )
        # Whatever is not applied stays as it runs, so the next comparison is with that.
        self.config = attr.evolve(new, **{name: getattr(old, name) for name in RESTART_SETTINGS})
        result = ReloadResult(
            source=old.source,
            desktops_added=[n for n in new.desktops if n not in old.desktops],
            desktops_removed=[n for n in old.desktops if n not in new.desktops],
            desktops_changed=[n for n in new.desktops if n in old.desktops and new.desktops[n] != old.desktops[n]],
            settings_changed=changed,
            restart_needed=restart,
        )
        self._log.info("{source} reloaded by {actor}: {summary}", source=str(old.source), actor=actor,
                       summary=result.summary())
        if restart:
            self._log.warn("{source}: {settings} changed, and take effect only after a restart",
                           source=str(old.source), settings=", ".join(restart))
        yield self._audit(actor, action, result.summary())
        # Higher limits may let queued starts begin now.
        yield self._sessions.drain()
        return result

    @inlineCallbacks
    def _memory_budget(
        self, old: RelayConfig, new: RelayConfig, restart: list[str]
    ) -> Generator[Deferred[Any], Any, int | None]:
        if not new.memory_budget_auto:
            return new.memory_budget
        if old.memory_budget_auto:
            return self._sessions.limits.memory_budget  # as learned from the engine
        try:
            total = yield self._sessions.provisioner.memory_total()
        except ContainerEngineUnavailable:
            restart.append("[sessions] memory_budget (auto, and the engine cannot be asked now)")
            return self._sessions.limits.memory_budget
        return int(total * AUTO_MEMORY_SHARE)

    def _audit(self, actor: str, action: str, detail: str) -> Deferred[None]:
        return self._store.audit(self._clock.seconds(), actor, action, str(self.config.source), detail)


class SighupReload(Service):
    """SIGHUP reloads relay.ini, as for most daemons; the handler only schedules the reload on
    the reactor, which is all a signal handler may safely do. Installed as the relay starts (the
    default action would end the process); reloads once `accepting`, when the relay is ready."""

    _log = Logger()

    def __init__(self, reloader: ConfigReloader, reactor: IReactorFromThreads) -> None:
        self._reloader = reloader
        self._reactor = reactor
        self._previous: Any = None
        self.accepting = False

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> None:
        signal.signal(signal.SIGHUP, self._previous if self._previous is not None else signal.SIG_DFL)
        super().stopService()

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reload)

    def _reload(self) -> Deferred[None] | None:
        if not self.accepting:
            self._log.warn("SIGHUP before the relay is ready: ignored; send it again once it is")
            return None
        self._log.info("SIGHUP: reloading {source}", source=str(self._reloader.config.source))
        d = self._reloader.reload("relay", "reload")
        d.addErrback(lambda f: f.trap(ConfigError))  # logged by the reloader, in one line
        d.addErrback(lambda f: self._log.failure("reloading the configuration failed", f))
        return d.addCallback(lambda _: None)
