"""How the web layer answers: JSON, RFC 9457 problem details in the reader's language, the
language a request gets, redirects, headers. (HTML pages: web/pages.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from ..engine.interface import ContainerEngineUnavailable
from ..i18n import LANGUAGE_COOKIE, N_, Language, PluralText, Text, language, negotiate

PROBLEM_TYPE_PREFIX = "urn:desktop-relay:problem:"
# Larger request bodies are refused before parsing: the API's bodies are a name or two.
MAX_BODY = 16 * 1024
# Deeper JSON is refused: no body of ours nests beyond a few levels, and deeper values would
# reach the recursion limit in whatever walks them next (json.loads itself at about 1,000).
MAX_JSON_DEPTH = 32

_log = Logger()



def request_language(request: IRequest) -> Language:
    """The language this request is answered in: the `lang` cookie, else Accept-Language, else English."""
    cookie = request.getCookie(LANGUAGE_COOKIE)
    header = request.getHeader(b"accept-language")
    return language(negotiate(cookie.decode("ascii", "replace") if cookie else None,
                              header.decode("latin-1") if header else None))


class Problem(Exception):
    """An error answer: HTTP status, a stable type slug, a title, and a detail for this case.

    title and detail are msgids (marked with N_), detail's {placeholders} filled from values;
    both are translated when the problem is answered, into the reader's language."""

    def __init__(self, status: int, slug: str, title: str, detail: str | PluralText = "", *,
                 values: Mapping[str, Any] | None = None, **extra: Any) -> None:
        self.status = status
        self.slug = slug
        self.title = title
        self._detail: str | Text | PluralText = Text(detail, **values) if values and isinstance(detail, str) else detail
        # In English, for logs and tests.
        self.detail = str(self._detail)
        super().__init__(f"{status} {slug}: {self.detail or title}")
        self.extra = extra
        self.headers: dict[bytes, bytes] = {}

    def body(self, instance: str, words: Language | None = None) -> dict[str, Any]:
        """The problem document; title and detail in words' language (English without one)."""
        words = words or language("en")
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.slug,
            "title": words.gettext(self.title),
            "status": self.status,
            "instance": instance,
        }
        if self.detail:
            body["detail"] = words.text(self._detail)
        body.update(self.extra)
        return body


def json_response(request: IRequest, value: Any, status: int = 200) -> bytes:
    """Serialise value as the JSON body of the response."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return json.dumps(value).encode("utf-8")


def problem_response(request: IRequest, problem: Problem) -> bytes:
    """Answer with a problem details document."""
    request.setResponseCode(problem.status)
    for name, value in problem.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"Content-Type", b"application/problem+json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    words = request_language(request)
    request.setHeader(b"Content-Language", words.code.encode("ascii"))
    # The answer depends on these; a cache in between must not give one reader's language to another.
    request.setHeader(b"Vary", b"Accept-Language, Cookie")
    return json.dumps(problem.body(request.path.decode("utf-8", "replace"), words)).encode("utf-8")


def read_json_body(request: IRequest, max_body: int = MAX_BODY) -> Any:
    """A request's JSON body: 415 unless it is application/json, 413 over max_body, 400 unless it
    is JSON nested at most MAX_JSON_DEPTH deep. The one body reader of every JSON endpoint."""
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise Problem(415, "unsupported-media-type", N_("JSON expected"),
                      N_("Send the request body as application/json."))
    body = request.content.read(max_body + 1)
    if len(body) > max_body:
        raise Problem(413, "body-too-large", N_("Request body too large"))
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem(400, "malformed-json", N_("Malformed JSON"), N_("The request body is not valid JSON.")) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise Problem(400, "malformed-json", N_("Malformed JSON"),
                      N_("The request body nests deeper than {levels} levels."), values={"levels": MAX_JSON_DEPTH})
    return value


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            if level + 1 > MAX_JSON_DEPTH:
                break
            stack.extend((child, level + 1) for child in item)
    return deepest


def redirect(request: IRequest, location: str, status: int = 303) -> bytes:
    """A redirect to a path on this site."""
    request.setResponseCode(status)
    request.setHeader(b"Location", location.encode("utf-8"))
    request.setHeader(b"Cache-Control", b"no-store")
    return b""


def routing_problem_response(request: IRequest, error: HTTPException) -> bytes:
    """Answer Klein's routing errors (no such route, method not allowed) as problems, not 500s."""
    slug = {404: "no-such-page", 405: "method-not-allowed"}.get(error.code or 500, "http-error")
    title = {404: N_("Not Found"), 405: N_("Method Not Allowed")}.get(error.code or 500, error.name)
    problem = Problem(error.code or 500, slug, title)
    valid_methods = getattr(error, "valid_methods", None)
    if valid_methods:
        problem.headers[b"Allow"] = ", ".join(valid_methods).encode()
    return problem_response(request, problem)


def unexpected_error_response(request: IRequest, failure: Failure) -> bytes:
    """Log a bug with its traceback and answer 500 without one: tracebacks stay in the log."""
    _log.failure("unexpected error answering {path}", failure, path=request.path.decode("utf-8", "replace"))
    return problem_response(request, Problem(500, "internal-error", N_("Internal error"),
                                             N_("Something went wrong on the server; it has been logged.")))


def handle_problems(app: Klein, engine_down: Callable[[ContainerEngineUnavailable], Problem]) -> None:
    """Give a Klein app the relay's problem answers: its own Problems, routing errors (404, 405),
    an unreachable engine (logged, then `engine_down`'s problem with Retry-After) and bugs (500,
    logged). Each API words the engine's outage for its readers."""

    def problem(self: Any, request: IRequest, failure: Any) -> bytes:
        return problem_response(request, failure.value)

    def engine(self: Any, request: IRequest, failure: Any) -> bytes:
        _log.warn("{method} {path}: {problem}", method=request.method.decode("latin-1"),
                  path=request.path.decode("utf-8", "replace"), problem=str(failure.value))
        answer = engine_down(failure.value)
        answer.headers[b"Retry-After"] = b"30"
        return problem_response(request, answer)

    def routing(self: Any, request: IRequest, failure: Any) -> bytes:
        return routing_problem_response(request, failure.value)

    def unexpected(self: Any, request: IRequest, failure: Any) -> bytes:
        return unexpected_error_response(request, failure)

    app.handle_errors(Problem)(problem)
    app.handle_errors(ContainerEngineUnavailable)(engine)
    app.handle_errors(HTTPException)(routing)
    app.handle_errors(Exception)(unexpected)
