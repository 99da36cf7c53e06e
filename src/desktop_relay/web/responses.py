"""How the web layer answers: JSON, RFC 9457 problem details, HTML pages from templates, headers."""

from __future__ import annotations

import html
import json
from importlib.resources import files
from string import Template
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE_PREFIX = "urn:desktop-relay:problem:"
# Larger request bodies are refused before parsing: the API's bodies are a name or two.
MAX_BODY = 16 * 1024
# Deeper JSON is refused: no body of ours nests beyond a few levels, and deeper values would
# reach the recursion limit in whatever walks them next (json.loads itself at about 1,000).
MAX_JSON_DEPTH = 32

_log = Logger()

# For the relay's own pages. The desktop's web client is served from the container with its
# own headers; these are not applied there.
_PAGE_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"Cache-Control": b"no-store",
}


class Problem(Exception):
    """An error answer: HTTP status, a stable type slug, a title, and a detail for this case."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(f"{status} {slug}: {detail or title}")
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[bytes, bytes] = {}

    def body(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "instance": instance,
        }
        if self.detail:
            body["detail"] = self.detail
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
    return json.dumps(problem.body(request.path.decode("utf-8", "replace"))).encode("utf-8")


def read_json_body(request: IRequest, max_body: int = MAX_BODY) -> Any:
    """A request's JSON body: 415 unless it is application/json, 413 over max_body, 400 unless it
    is JSON nested at most MAX_JSON_DEPTH deep. The one body reader of every JSON endpoint."""
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise Problem(415, "unsupported-media-type", "JSON expected",
                      "Send the request body as application/json.")
    body = request.content.read(max_body + 1)
    if len(body) > max_body:
        raise Problem(413, "body-too-large", "Request body too large")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem(400, "malformed-json", "Malformed JSON", "The request body is not valid JSON.") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise Problem(400, "malformed-json", "Malformed JSON",
                      f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
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


def render_page(request: IRequest, template: str, status: int = 200, **values: str) -> bytes:
    """Fill an HTML template from web/templates; every value is HTML-escaped."""
    text = files("desktop_relay.web").joinpath("templates", template).read_text(encoding="utf-8")
    page = Template(text).substitute({k: html.escape(v, quote=True) for k, v in values.items()})
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    for name, value in _PAGE_HEADERS.items():
        request.setHeader(name, value)
    return page.encode("utf-8")


def redirect(request: IRequest, location: str, status: int = 303) -> bytes:
    """A redirect to a path on this site."""
    request.setResponseCode(status)
    request.setHeader(b"Location", location.encode("utf-8"))
    request.setHeader(b"Cache-Control", b"no-store")
    return b""


def routing_problem_response(request: IRequest, error: HTTPException) -> bytes:
    """Answer Klein's routing errors (no such route, method not allowed) as problems, not 500s."""
    slug = {404: "no-such-page", 405: "method-not-allowed"}.get(error.code or 500, "http-error")
    problem = Problem(error.code or 500, slug, error.name)
    valid_methods = getattr(error, "valid_methods", None)
    if valid_methods:
        problem.headers[b"Allow"] = ", ".join(valid_methods).encode()
    return problem_response(request, problem)


def unexpected_error_response(request: IRequest, failure: Failure) -> bytes:
    """Log a bug with its traceback and answer 500 without one: tracebacks stay in the log."""
    _log.failure("unexpected error answering {path}", failure, path=request.path.decode("utf-8", "replace"))
    return problem_response(request, Problem(500, "internal-error", "Internal error",
                                             "Something went wrong on the server; it has been logged."))
