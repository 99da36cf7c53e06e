"""The admin API under /api/admin/: AdminAPI routes /api/admin/<group>/... to one Klein app per
group (sessions, users, desktops, engine, reload, audit, pool, prestarts), each in its own module
here, after AdminAuth has let the caller in; and what every group shares: its problem answers.

Nobody but an admin (web session) or a token holder learns anything about these paths: for
everyone else every one of them, known or not, with any method, answers the same 404 as a path
that does not exist.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.resource import IResource
from twisted.web.server import Request

from ...engine.interface import ContainerEngineUnavailable
from ...i18n import N_
from ..responses import Problem, handle_problems
from .auth import AdminAuth, AdminCaller, not_found

__all__ = ["AdminAPI", "AdminAuth", "AdminCaller", "add_problem_handlers"]

# Methods that only read; every other one needs AdminAuth.writer (scope, and Origin for browsers).
READING_METHODS = (b"GET", b"HEAD")


def add_problem_handlers(app: Klein) -> None:
    """Give an admin group's Klein app the relay's problem answers (responses.handle_problems)."""
    handle_problems(app, _engine_down)


def _engine_down(error: ContainerEngineUnavailable) -> Problem:
    # Admins are told the engine's own words (pupils, in the user API, are not).
    return Problem(503, "container-engine-unavailable", N_("Container engine unavailable"),
                   N_("The server cannot reach its container engine: {error}"), values={"error": str(error)})


class AdminAPI:
    """Klein app mounted at /api/admin/: lets admins in, then hands /<group>/... to that group's resource."""

    app = Klein()
    add_problem_handlers(app)

    def __init__(self, auth: AdminAuth, groups: Mapping[str, IResource]) -> None:
        self._auth = auth
        # A group is added by naming it here (service.py): {"sessions": SessionsAdmin(...).app.resource(), ...}.
        self._groups = dict(groups)

    @app.route("/", branch=True)
    @inlineCallbacks
    def group(self, request: Request) -> Generator[Deferred[Any], Any, IResource]:
        # Who is asking comes first, so that nothing below (which groups exist, which methods
        # a path takes) tells a non-admin that there is anything here.
        if request.method in READING_METHODS:
            yield self._auth.caller(request)
        else:
            yield self._auth.writer(request)
        segments = request.postpath or []
        name = segments[0].decode("utf-8", "replace") if segments else ""
        resource = self._groups.get(name)
        if resource is None:
            raise not_found()
        request.prepath = [*(request.prepath or []), segments[0]]
        # The group sees "/" for /api/admin/<group> as for /api/admin/<group>/.
        request.postpath = segments[1:] or [b""]
        return resource
