"""/api/admin/audit and /api/admin/audit.csv: the audit trail, read only, filtered by actor,
target, action and time, newest first; as pages of JSON or streamed as one CSV file.

Nothing here rewrites or deletes a line; retention is the relay's (LifecycleService). Exporting
the trail is itself audited (admin-export): it hands out who signed in from where.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Collection, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException
from zope.interface import implementer

from ...store import AuditFilter, SQLiteStore
from ..responses import (
    Problem,
    json_response,
    problem_response,
    routing_problem_response,
    unexpected_error_response,
)

FILTERS = ("actor", "target", "action", "since", "until")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Lines read from the store per CSV chunk: memory stays bounded however long the trail is.
CSV_CHUNK = 1000
CSV_COLUMNS = ("id", "at", "actor", "action", "target", "address", "detail")
# A spreadsheet runs a cell starting with one of these as a formula; names tried at sign-in are
# anyone's text, so such cells get a leading apostrophe (OWASP's advice for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class CallerCheck(Protocol):
    """What AuditAdmin needs of AdminAuth (web/admin/auth.py)."""

    def caller(self, request: IRequest) -> Deferred[Any]: ...


def _add_problem_handlers(app: Klein) -> None:
    """Problems as themselves, routing errors as 404/405 problems, bugs as a logged 500."""

    def problem(self: Any, request: IRequest, failure: Any) -> bytes:
        return problem_response(request, failure.value)

    def routing(self: Any, request: IRequest, failure: Any) -> bytes:
        return routing_problem_response(request, failure.value)

    def unexpected(self: Any, request: IRequest, failure: Any) -> bytes:
        return unexpected_error_response(request, failure)

    app.handle_errors(Problem)(problem)
    app.handle_errors(HTTPException)(routing)
    app.handle_errors(Exception)(unexpected)


def line_view(line: Mapping[str, Any]) -> dict[str, Any]:
    """An audit line as the API shows it."""
    return {name: line[name] for name in CSV_COLUMNS}


class AuditAdmin:
    """Klein routes of /api/admin/audit (app) and /api/admin/audit.csv (csv_app); mount both,
    e.g. with `resources()`."""

    app = Klein()
    csv_app = Klein()
    _add_problem_handlers(app)
    _add_problem_handlers(csv_app)

    def __init__(self, store: SQLiteStore, auth: CallerCheck, clock: IReactorTime) -> None:
        self._store = store
        self._auth = auth
        self._clock = clock

    def resources(self) -> dict[str, IResource]:
        """The groups to name in AdminAPI's mapping: {"audit": ..., "audit.csv": ...}."""
        return {"audit": self.app.resource(), "audit.csv": self.csv_app.resource()}

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def list_lines(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        parameters = query_parameters(request, FILTERS)
        where = audit_filter(parameters)
        limit = page_limit(parameters)
        found = yield self._store.audit_trail(limit + 1, where)
        shown = found[:limit]
        return json_response(request, {
            "items": [line_view(line) for line in shown],
            "next_cursor": encode_cursor([shown[-1]["id"]]) if len(found) > limit else None,
        })

    @csv_app.route("/", methods=["GET"])
    @inlineCallbacks
    def export_csv(self, request: Request) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.caller(request)
        parameters = query_parameters(request, FILTERS, paging=False)
        where = audit_filter(parameters)
        query = (request.uri.partition(b"?")[2]).decode("utf-8", "replace")
        yield self._store.audit(self._clock.seconds(), caller.name, "admin-export", "audit", query)
        request.setHeader(b"Content-Type", b"text/csv; charset=utf-8")
        request.setHeader(b"Content-Disposition", b'attachment; filename="audit.csv"')
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        pacer = _Pacer()
        request.registerProducer(pacer, True)
        request.notifyFinish().addErrback(lambda _: pacer.stopProducing())
        try:
            request.write(_csv_rows([CSV_COLUMNS]))
            while not pacer.stopped:
                lines = yield self._store.audit_trail(CSV_CHUNK, where)
                if lines:
                    request.write(_csv_rows([_csv_row(line) for line in lines]))
                if len(lines) < CSV_CHUNK:
                    break
                where = AuditFilter(**{**_fields(where), "before_id": lines[-1]["id"]})
                # A slow reader pauses the export instead of the relay holding the whole trail.
                yield pacer.resumed()
        finally:
            if request.channel is not None:  # None once the browser has gone
                request.unregisterProducer()
        return b""


def _fields(where: AuditFilter) -> dict[str, Any]:
    return {name: getattr(where, name) for name in ("actor", "target", "action", "since", "until", "before_id")}


@implementer(IPushProducer)
class _Pacer:
    """The CSV export's producer: the transport's pauses hold the next chunk back."""

    def __init__(self) -> None:
        self.stopped = False
        self._paused: Deferred[None] | None = None

    def resumed(self) -> Deferred[None]:
        """Fires at once, or when the transport takes data again."""
        if self._paused is None or self.stopped:
            return succeed(None)
        return self._paused

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()


def _csv_rows(rows: list[Collection[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def _csv_row(line: Mapping[str, Any]) -> list[Any]:
    at = datetime.fromtimestamp(line["at"], UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [line["id"], at, *(_cell(line[name]) for name in ("actor", "action", "target", "address", "detail"))]


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


# -- query parameters and cursors (as web/admin/paging.py; see issue8-plan.md) --------------


def invalid_parameter(name: str, detail: str) -> Problem:
    """400 for a parameter whose value cannot be used; the detail says what it must be."""
    return Problem(400, "invalid-parameter", "Invalid parameter", detail, parameter=name)


def query_parameters(request: IRequest, allowed: Collection[str], paging: bool = True) -> dict[str, str]:
    """The query parameters by name, each given once; 400 unknown-parameter for any other name."""
    known = (*allowed, "limit", "cursor") if paging else tuple(allowed)
    parameters: dict[str, str] = {}
    for raw_name, values in (request.args or {}).items():
        name = raw_name.decode("utf-8", "replace")
        if name not in known:
            raise Problem(400, "unknown-parameter", "Unknown parameter",
                          f"{name!r} is not a parameter of this list.", parameter=name)
        if len(values) != 1:
            raise invalid_parameter(name, f"{name} may be given once.")
        try:
            parameters[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_parameter(name, f"{name} is not UTF-8 text.") from None
    return parameters


def time_parameter(parameters: Mapping[str, str], name: str) -> float | None:
    """A point in time as epoch seconds (1764582000) or ISO 8601 with a zone (2026-12-01T10:00:00Z)."""
    text = parameters.get(name)
    if text is None:
        return None
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment.timestamp()
    except ValueError:
        raise invalid_parameter(
            name, f"{name} must be epoch seconds or an ISO 8601 time with a zone, such as 2026-12-01T10:00:00Z."
        ) from None


def page_limit(parameters: Mapping[str, str]) -> int:
    """?limit=: 1..500, default 100; 400 invalid-parameter otherwise."""
    text = parameters.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise invalid_parameter("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(text)


def encode_cursor(key: list[Any]) -> str:
    """The cursor that continues after an item with this sort key: base64url JSON."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The audit line id in a cursor; 400 invalid-cursor unless it is one of ours."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = None
    if not (isinstance(key, list) and len(key) == 1 and type(key[0]) is int and key[0] > 0):
        raise Problem(400, "invalid-cursor", "Invalid cursor",
                      "The cursor is not one this list gave out; start again without it.")
    return key[0]


def audit_filter(parameters: Mapping[str, str]) -> AuditFilter:
    """The store's filter for these parameters (the cursor included, if any)."""
    cursor = parameters.get("cursor")
    return AuditFilter(
        actor=parameters.get("actor"),
        target=parameters.get("target"),
        action=parameters.get("action"),
        since=time_parameter(parameters, "since"),
        until=time_parameter(parameters, "until"),
        before_id=None if cursor is None else decode_cursor(cursor),
    )
