"""/api/admin/audit and /api/admin/audit.csv: the audit trail, read only, filtered by actor,
target, action and time, newest first; as pages of JSON or streamed as one CSV file.

Nothing here rewrites or deletes a line; retention is the relay's (LifecycleService). Exporting
the trail is itself audited (admin-export): it hands out who signed in from where.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Generator, Mapping
from datetime import UTC, datetime
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from zope.interface import implementer

from ...i18n import N_
from ...store import AuditFilter, SQLiteStore
from ..responses import Problem, json_response
from . import add_problem_handlers
from .auth import AdminAuth
from .paging import PAGING_PARAMETERS, page, page_request, query_parameters, time_parameter

FILTERS = ("actor", "target", "action", "since", "until")
# Lines read from the store per CSV chunk: memory stays bounded however long the trail is.
CSV_CHUNK = 1000
CSV_COLUMNS = ("id", "at", "actor", "action", "target", "address", "detail")
# A spreadsheet runs a cell starting with one of these as a formula; names tried at sign-in are
# anyone's text, so such cells get a leading apostrophe (OWASP's advice for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def line_view(line: Mapping[str, Any]) -> dict[str, Any]:
    """An audit line as the API shows it."""
    return {name: line[name] for name in CSV_COLUMNS}


class AuditAdmin:
    """Klein routes of /api/admin/audit (app) and /api/admin/audit.csv (csv_app); mount both,
    e.g. with `resources()`."""

    app = Klein()
    csv_app = Klein()
    add_problem_handlers(app)
    add_problem_handlers(csv_app)

    def __init__(self, store: SQLiteStore, auth: AdminAuth, clock: IReactorTime) -> None:
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
        asked = page_request(parameters, (int,))
        where = audit_filter(parameters, None if asked.after is None else asked.after[0])
        found = yield self._store.audit_trail(asked.limit + 1, where)
        return json_response(request, page(found, asked.limit, key=lambda line: (line["id"],), view=line_view))

    @csv_app.route("/", methods=["GET"])
    @inlineCallbacks
    def export_csv(self, request: Request) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.caller(request)
        parameters = query_parameters(request, FILTERS)
        for name in PAGING_PARAMETERS:
            if name in parameters:  # one file, all of it: no pages
                raise Problem(400, "unknown-parameter", N_("Unknown parameter"),
                              N_("{name} is not a parameter of the CSV export."), values={"name": repr(name)},
                              parameter=name)
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


def audit_filter(parameters: Mapping[str, str], before_id: int | None = None) -> AuditFilter:
    """The store's filter for these parameters, older than the line before_id if given."""
    return AuditFilter(
        actor=parameters.get("actor"),
        target=parameters.get("target"),
        action=parameters.get("action"),
        since=time_parameter(parameters, "since"),
        until=time_parameter(parameters, "until"),
        before_id=before_id,
    )
