"""GET /api/admin/audit and /api/admin/audit.csv: AuditAdmin on a loopback Site, with a fake
AdminAuth (the real one lets admins and tokens in; these tests are about the trail)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import attr
import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

from desktop_relay.store import SQLiteStore
from desktop_relay.web.admin import audit as audit_module
from desktop_relay.web.admin.audit import AuditAdmin
from desktop_relay.web.responses import Problem


@attr.s(frozen=True, auto_attribs=True)
class Caller:
    name: str
    can_write: bool


class FakeAuth:
    """Lets in "Bearer reader"; everyone else gets the admin API's 404."""

    def caller(self, request: IRequest) -> defer.Deferred[Caller]:
        if request.getHeader(b"authorization") == b"Bearer reader":
            return defer.succeed(Caller("token:reader", False))
        return defer.fail(Problem(404, "no-such-page", "Not Found"))


class Clock:
    def seconds(self) -> float:
        return 10_000.0


class Served:
    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        root = Resource()
        for name, resource in AuditAdmin(store, FakeAuth(), Clock()).resources().items():
            root.putChild(name.encode(), resource)
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def get(self, path: str, token: str | None = "reader") -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.get(self.url + path, headers=headers)
        head = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, head, await response.content()

    async def json(self, path: str) -> tuple[int, Any]:
        status, _, body = await self.get(path)
        return status, json.loads(body)


@pytest_twisted.async_yield_fixture
async def served(store: SQLiteStore) -> AsyncIterator[Served]:
    await store.audit(1_764_500_000.0, "anna", "sign-in", "anna", "local", "192.0.2.7")
    await store.audit(1_764_500_100.0, "anna", "start", "s1", "demo")
    await store.audit(1_764_500_200.0, "anna", "connect", "s1", "", "192.0.2.7")
    await store.audit(1_764_500_300.0, "=cmd|'/c calc'!A1", "sign-in-failed", "=cmd|'/c calc'!A1", "wrong-password",
                      "198.51.100.2")
    await store.audit(1_764_500_400.0, "anna", "disconnect", "s1", "browser_code=1000", "192.0.2.7")
    s = Served(store)
    yield s
    await s.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_trail_is_listed_newest_first_with_every_field(served: Served) -> None:
    status, body = await served.json("/audit/")
    assert status == 200 and body["next_cursor"] is None
    assert [i["action"] for i in body["items"]] == ["disconnect", "sign-in-failed", "connect", "start", "sign-in"]
    assert body["items"][0] == {"id": 5, "at": 1_764_500_400.0, "actor": "anna", "action": "disconnect",
                                "target": "s1", "address": "192.0.2.7", "detail": "browser_code=1000"}


@pytest_twisted.ensureDeferred
async def test_filters_and_iso_or_epoch_times_narrow_the_trail(served: Served) -> None:
    _, body = await served.json("/audit/?actor=anna&target=s1")
    assert [i["id"] for i in body["items"]] == [5, 3, 2]
    _, body = await served.json("/audit/?action=sign-in")
    assert [i["id"] for i in body["items"]] == [1]
    _, body = await served.json("/audit/?since=2025-11-30T10:55:00Z&until=1764500300")
    assert [i["id"] for i in body["items"]] == [3, 2]


@pytest_twisted.ensureDeferred
async def test_pages_follow_the_cursor_to_the_end(served: Served) -> None:
    seen, path = [], "/audit/?limit=2&actor=anna"
    while True:
        status, body = await served.json(path)
        assert status == 200
        seen += [i["id"] for i in body["items"]]
        if body["next_cursor"] is None:
            break
        path = f"/audit/?limit=2&actor=anna&cursor={body['next_cursor']}"
    assert seen == [5, 3, 2, 1]


@pytest.mark.parametrize("query, slug, parameter", [
    ("?acter=anna", "unknown-parameter", "acter"),
    ("?limit=501", "invalid-parameter", "limit"),
    ("?limit=0", "invalid-parameter", "limit"),
    ("?since=yesterday", "invalid-parameter", "since"),
    ("?until=2026-12-01T10:00:00", "invalid-parameter", "until"),
    ("?actor=a&actor=b", "invalid-parameter", "actor"),
    ("?cursor=nonsense", "invalid-cursor", None),
    ("?cursor=" + base64.urlsafe_b64encode(b'["x"]').decode().rstrip("="), "invalid-cursor", None),
])
@pytest_twisted.ensureDeferred
async def test_bad_queries_get_a_precise_problem(served: Served, query: str, slug: str, parameter: str | None) -> None:
    status, headers, raw = await served.get("/audit/" + query)
    body = json.loads(raw)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert body["type"] == f"urn:desktop-relay:problem:{slug}" and body.get("parameter") == parameter


@pytest_twisted.ensureDeferred
async def test_without_admin_rights_both_answer_404_and_nothing_is_written(served: Served) -> None:
    for path in ("/audit/", "/audit.csv/"):
        status, _, raw = await served.get(path, token=None)
        assert status == 404 and json.loads(raw)["type"].endswith("no-such-page")
    assert len(await served.store.audit_trail()) == 5


@pytest_twisted.ensureDeferred
async def test_the_api_cannot_change_the_trail(served: Served) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await served.http.request(method, served.url + "/audit/",
                                             headers={"Authorization": "Bearer reader"})
        assert response.code == 405, method
        await response.content()
    assert len(await served.store.audit_trail()) == 5


@pytest_twisted.ensureDeferred
async def test_csv_export_is_an_attachment_with_a_header_row_and_defused_formulas(served: Served) -> None:
    status, headers, raw = await served.get("/audit.csv/?actor=anna")
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == 'attachment; filename="audit.csv"'
    rows = list(csv.reader(io.StringIO(raw.decode())))
    assert rows[0] == ["id", "at", "actor", "action", "target", "address", "detail"]
    assert rows[1] == ["5", "2025-11-30T11:00:00.000Z", "anna", "disconnect", "s1", "192.0.2.7", "browser_code=1000"]
    assert [r[0] for r in rows[1:]] == ["5", "3", "2", "1"]
    _, _, raw = await served.get("/audit.csv/?action=sign-in-failed")
    assert list(csv.reader(io.StringIO(raw.decode())))[1][2] == "'=cmd|'/c calc'!A1"
    # The export is itself in the trail: who took a copy, with which filters.
    newest = (await served.store.audit_trail(1))[0]
    assert (newest["actor"], newest["action"], newest["target"], newest["detail"]) == (
        "token:reader", "admin-export", "audit", "action=sign-in-failed")


@pytest_twisted.ensureDeferred
async def test_csv_export_streams_a_big_trail_in_chunks(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "CSV_CHUNK", 2)
    for n in range(7):
        await served.store.audit(1_764_600_000.0 + n, "bulk", "start", f"b{n}")
    reads: list[int] = []
    original = served.store.audit_trail

    def counted(limit: int = 100, where: Any = None) -> Any:
        reads.append(limit)
        return original(limit, where)

    monkeypatch.setattr(served.store, "audit_trail", counted)
    status, _, raw = await served.get("/audit.csv/?actor=bulk")
    rows = list(csv.reader(io.StringIO(raw.decode())))
    assert status == 200 and [r[4] for r in rows[1:]] == [f"b{n}" for n in reversed(range(7))]
    assert reads == [2, 2, 2, 2]


@pytest_twisted.ensureDeferred
async def test_csv_refuses_paging_parameters_it_does_not_take(served: Served) -> None:
    status, _, raw = await served.get("/audit.csv/?limit=5")
    assert status == 400 and json.loads(raw)["parameter"] == "limit"


@pytest_twisted.ensureDeferred
async def test_csv_export_stops_when_the_browser_goes(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet import reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    monkeypatch.setattr(audit_module, "CSV_CHUNK", 1)
    for n in range(200):
        await served.store.audit(1_764_600_000.0 + n, "bulk", "start", f"b{n}")
    reads: list[int] = []
    original = served.store.audit_trail

    def counted(limit: int = 100, where: Any = None) -> Any:
        reads.append(limit)
        return original(limit, where)

    monkeypatch.setattr(served.store, "audit_trail", counted)
    first_bytes: defer.Deferred[None] = defer.Deferred()

    class Leaving(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"GET /audit.csv/?actor=bulk HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer reader\r\n\r\n")

        def dataReceived(self, data: bytes) -> None:
            if not first_bytes.called:
                self.transport.abortConnection()
                first_bytes.callback(None)

    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", served.port.getHost().port), Leaving())
    await first_bytes
    await task.deferLater(reactor, 0.5, lambda: None)
    settled = len(reads)
    await task.deferLater(reactor, 0.2, lambda: None)
    assert len(reads) == settled < 200


def test_a_paused_transport_holds_the_next_csv_chunk_back_until_it_resumes() -> None:
    pacer = audit_module._Pacer()
    assert pacer.resumed().called
    pacer.pauseProducing()
    waiting = pacer.resumed()
    assert not waiting.called
    pacer.resumeProducing()
    assert waiting.called and pacer.resumed().called
    pacer.pauseProducing()
    waiting = pacer.resumed()
    pacer.stopProducing()
    assert waiting.called and pacer.stopped


@pytest_twisted.ensureDeferred
async def test_a_deeply_nested_cursor_is_an_invalid_cursor_not_a_500(served: Served) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    status, _, raw = await served.get("/audit/?cursor=" + cursor)
    assert status == 400 and json.loads(raw)["type"].endswith("invalid-cursor")
