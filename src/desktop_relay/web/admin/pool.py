"""/api/admin/pool/ (the warm pool: what waits ready, what is starting, what was claimed) and
/api/admin/prestarts/ (the schedules, their next lessons, and what was started for whom)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ...lifecycle import DesktopSessions
from ...lifecycle.prestart import LessonPrestarts
from ...store import PoolContainer, SQLiteStore
from ...store.pool import POOL_READY, POOL_STARTING
from ..responses import json_response
from . import add_problem_handlers
from .auth import AdminAuth
from .paging import query_parameters, time_parameter

# The next lessons shown per schedule: those of the coming week.
UPCOMING = 7 * 86400.0
# Without ?since=, the pre-starts of the lessons of the last day.
RECENT = 86400.0


def _container_view(entry: PoolContainer) -> dict[str, Any]:
    return {"id": entry.id, "desktop": entry.desktop, "state": entry.state, "container_id": entry.container_id,
            "created": entry.created, "ready_at": entry.ready_at}


class PoolAdmin:
    """Klein routes of /api/admin/pool."""

    app = Klein()
    add_problem_handlers(app)

    def __init__(self, auth: AdminAuth, store: SQLiteStore, sessions: DesktopSessions) -> None:
        self._auth = auth
        self._store = store
        self._sessions = sessions

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def pool(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        query_parameters(request, ())
        waiting = yield self._store.pooled()
        claimed = yield self._store.claimed_pool()
        desktops = []
        for desktop in self._sessions.desktops.values():
            mine = [e for e in waiting if e.desktop == desktop.name]
            if not desktop.pool_size and not mine:
                continue
            desktops.append({
                "desktop": desktop.name, "pool_size": desktop.pool_size, "pool_max_age": desktop.pool_max_age,
                "ready": sum(e.state == POOL_READY for e in mine),
                "starting": sum(e.state == POOL_STARTING for e in mine),
                "containers": [_container_view(e) for e in mine],
            })
        return json_response(request, {
            "desktops": desktops,
            "claimed": [{"session": e.session_id, "desktop": e.desktop, "container_id": e.container_id,
                         "claimed_at": e.claimed_at} for e in claimed],
        })


class PrestartsAdmin:
    """Klein routes of /api/admin/prestarts."""

    app = Klein()
    add_problem_handlers(app)

    def __init__(self, auth: AdminAuth, store: SQLiteStore, prestarts: LessonPrestarts, clock: IReactorTime) -> None:
        self._auth = auth
        self._store = store
        self._prestarts = prestarts
        self._clock = clock

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def prestarts(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        parameters = query_parameters(request, ("since",))
        now = self._clock.seconds()
        since = time_parameter(parameters, "since")
        marks = yield self._store.prestarts_since(now - RECENT if since is None else since)
        return json_response(request, {
            "schedules": [
                {"name": s.name, "group": s.group, "desktop": s.desktop, "lead": s.lead,
                 "claim_window": s.claim_window, "timezone": s.timezone,
                 "next_lessons": [{"start": lesson.start, "end": lesson.end} for lesson in lessons]}
                for s, lessons in self._prestarts.upcoming(now, UPCOMING)
            ],
            "prestarts": [
                {"schedule": m.schedule, "lesson": m.lesson, "user": m.owner, "session": m.session_id,
                 "outcome": m.outcome, "at": m.at, "claim_deadline": m.claim_deadline}
                for m in marks
            ],
        })
