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
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException

from ...engine.interface import ContainerEngineUnavailable
from ...i18n import N_
from ..responses import Problem, problem_response, routing_problem_response, unexpected_error_response
from .auth import AdminAuth, AdminCaller, not_found

__all__ = ["AdminAPI", "AdminAuth", "AdminCaller", "add_problem_handlers"]

# Methods that only read; every other one needs AdminAuth.writer (scope, and Origin for browsers).
READING_METHODS = (b"GET", b"HEAD")

_log = Logger()


def add_problem_handlers(app: Klein) -> None:
    """Give an admin group's Klein app the relay's problem answers: its own Problems, routing
    errors (404, 405), an unreachable engine (503 with Retry-After) and bugs (500, logged)."""

    def problem(self: Any, request: IRequest, failure: Any) -> bytes:
        return problem_response(request, failure.value)

    def engine_down(self: Any, request: IRequest, failure: Any) -> bytes:
        _log.warn("{method} {path}: {problem}", method=request.method.decode("latin-1"),
                  path=request.path.decode("utf-8", "replace"), problem=str(failure.value))
        # Admins are told the engine's own words (pupils, in the user API, are not).
        answer = Problem(503, "container-engine-unavailable", N_("Container engine unavailable"),
                         N_("The server cannot reach its container engine: {error}"),
                         values={"error": str(failure.value)})
        answer.headers[b"Retry-After"] = b"30"
        return problem_response(request, answer)

    def routing(self: Any, request: IRequest, failure: Any) -> bytes:
        return routing_problem_response(request, failure.value)

    def unexpected(self: Any, request: IRequest, failure: Any) -> bytes:
        return unexpected_error_response(request, failure)

    app.handle_errors(Problem)(problem)
    app.handle_errors(ContainerEngineUnavailable)(engine_down)
    app.handle_errors(HTTPException)(routing)
    app.handle_errors(Exception)(unexpected)


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
