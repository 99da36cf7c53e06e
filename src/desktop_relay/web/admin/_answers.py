"""What the admin API's groups share: the caller check they are given (AdminAuth in auth.py),
and how they answer errors (problem details, as the user API does)."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from ...engine.interface import ContainerEngineUnavailable
from ..responses import Problem, problem_response, routing_problem_response, unexpected_error_response

_log = Logger()


class AdminCallers(Protocol):
    """Who is calling (AdminAuth): fires with an AdminCaller (its .name is the audit's actor), or
    fails with the Problem to answer."""

    def caller(self, request: IRequest) -> Deferred[Any]:
        """Any admin call."""

    def writer(self, request: IRequest) -> Deferred[Any]:
        """A call that changes something."""


def error_response(request: IRequest, failure: Failure) -> bytes:
    """A Problem as itself, an unreachable engine as 503, routing errors as 404/405, anything
    else as a logged 500."""
    if failure.check(Problem):
        return problem_response(request, failure.value)
    if failure.check(ContainerEngineUnavailable):
        _log.warn("{method} {path}: {problem}", method=request.method.decode(),
                  path=request.path.decode("utf-8", "replace"), problem=str(failure.value))
        problem = Problem(503, "container-engine-unavailable", "Container engine unavailable",
                          str(failure.value))
        problem.headers[b"Retry-After"] = b"30"
        return problem_response(request, problem)
    if failure.check(HTTPException):
        return routing_problem_response(request, failure.value)
    return unexpected_error_response(request, failure)
