"""Removing the containers of timed-out starts: a hung engine resumes with the abandoned create
in its socket buffer, and nobody would own what it makes. One sweep, in a pool thread of the
provisioner, covers every watched session, retried with backoff until none is left.
"""

from __future__ import annotations

import threading

import docker
from docker.errors import NotFound
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._docker_common import FIRST_RETRY, MAX_RETRY, ProvisionerThreads, container_name
from .interface import LABEL_INSTANCE, LABEL_SESSION, ContainerEngineUnavailable, ContainerSpec

# How long after a timed-out start the engine may still carry out its create: a hung engine
# resumes with the abandoned request in its socket buffer, however long it was stopped.
LEFTOVER_WATCH = 600.0

class LeftoverSweeper:
    """Removes the containers that timed-out starts may still get from the engine.

    One sweep covers every watched session (a label-filtered list per relay instance), so a hung
    engine costs one pool thread however many starts timed out. A session stops being watched
    when its container was removed, when it is started again, or after `watch_for` seconds.
    """

    _log = Logger()

    def __init__(self, provisioner: ProvisionerThreads, clock: IReactorTime, watch_for: float) -> None:
        self._provisioner = provisioner
        self._clock = clock
        self._watch_for = watch_for
        # session id -> (spec, until); read by the sweep in its thread, hence the lock.
        self._watched: dict[str, tuple[ContainerSpec, float]] = {}
        self._lock = threading.Lock()
        self._delay = FIRST_RETRY
        self._next: IDelayedCall | None = None
        self._sweeping = False
        self._idle_waiters: list[Deferred[None]] = []

    def watch(self, spec: ContainerSpec) -> None:
        """Start watching for the container of `spec`, whose start just timed out."""
        with self._lock:
            self._watched[spec.session_id] = (spec, self._clock.seconds() + self._watch_for)
        self._log.warn(
            "the start of session {session} timed out: its container is removed should the "
            "engine still create it (watching for {watch_for:g} s)",
            session=spec.session_id,
            container=container_name(spec),
            watch_for=self._watch_for,
        )
        if self._next is None and not self._sweeping:
            self._delay = FIRST_RETRY
            self._schedule()

    def forget(self, session_id: str) -> bool:
        """Stop watching a session (it is being started again); whether it was watched."""
        with self._lock:
            watched = self._watched.pop(session_id, None) is not None
        if watched and not self._watched and self._next is not None:
            self._next.cancel()
            self._next = None
            self._became_idle()
        return watched

    def when_idle(self) -> Deferred[None]:
        """Fires once nothing is watched and no sweep runs."""
        if not self._watched and not self._sweeping:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _schedule(self) -> None:
        self._next = self._clock.callLater(self._delay, self._sweep)
        self._delay = min(self._delay * 2, MAX_RETRY)

    def _sweep(self) -> None:
        self._next = None
        now = self._clock.seconds()
        with self._lock:
            for session_id, (_, until) in list(self._watched.items()):
                if now >= until:
                    del self._watched[session_id]
            instances = {spec.instance for spec, _ in self._watched.values()}
        if not instances:
            self._became_idle()
            return
        self._sweeping = True
        d = self._provisioner._in_thread_quietly(self._sweep_blocking, instances)
        d.addCallbacks(self._swept, self._not_swept)

    def _sweep_blocking(self, api: docker.APIClient, instances: set[str]) -> list[tuple[str, str, str]]:
        removed = []
        for instance in instances:
            for summary in api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}):
                session_id = (summary.get("Labels") or {}).get(LABEL_SESSION, "")
                # Checked now, after the list: a session started again meanwhile has a
                # container of its own, which must stay.
                with self._lock:
                    if session_id not in self._watched:
                        continue
                try:
                    api.remove_container(summary["Id"], v=True, force=True)
                except NotFound:
                    pass
                names = summary.get("Names") or [""]
                removed.append((session_id, summary["Id"], names[0].lstrip("/")))
        return removed

    def _swept(self, removed: list[tuple[str, str, str]]) -> None:
        self._sweeping = False
        for session_id, container_id, name in removed:
            self._log.warn(
                "removed container {container} ({container_id}) of session {session}: the engine "
                "created it after the start had timed out",
                container=name,
                container_id=container_id[:12],
                session=session_id,
            )
            with self._lock:
                self._watched.pop(session_id, None)
        self._carry_on()

    def _not_swept(self, failure: Failure) -> None:
        self._sweeping = False
        if not failure.check(ContainerEngineUnavailable):
            self._log.failure("sweeping for containers of timed-out starts failed", failure)
        self._carry_on()

    def _carry_on(self) -> None:
        if self._watched:
            self._schedule()
        else:
            self._became_idle()

    def _became_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)
