"""The files API's answers (web/files.py), through a real Site on loopback, with a stand-in for
the files containers: each refusal as its problem, an unreachable engine as 503, the homes a user
has, and paths refused before anything runs. What the real engine does: test_files_real.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from fakes import desktop
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.engine.interface import ContainerEngineUnavailable
from desktop_relay.files.containers import Entry
from desktop_relay.files.errors import (
    AlreadyExists,
    DiskFull,
    FilesError,
    NoSuchFile,
    NotAFile,
    NotAFolder,
    OutsideHome,
    QuotaExceeded,
    ReadOnly,
)
from desktop_relay.store import SQLiteStore, WebSession
from desktop_relay.web.files import FilesAPI
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"


class StubFiles:
    """DockerFiles' operations, answering `error` when set, else a folder with one file; it
    records the paths it was asked about."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.asked: list[str] = []

    def _answer(self, path: Any, value: Any) -> Deferred[Any]:
        self.asked.append(path.inside)
        return fail(self.error) if self.error is not None else succeed(value)

    def stat(self, place: Any, path: Any) -> Deferred[Entry]:
        return self._answer(path, Entry(path.name, "directory", 0, 0.0))

    def entries(self, place: Any, path: Any) -> Deferred[list[Entry]]:
        return self._answer(path, [Entry("a.txt", "file", 3, 0.0)])

    def mkdir(self, place: Any, path: Any) -> Deferred[Entry]:
        return self._answer(path, Entry(path.name, "directory", 0, 0.0))


class Served:
    def __init__(self, store: SQLiteStore, files: StubFiles) -> None:
        from twisted.internet import reactor

        self.store = store
        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(self.web_sessions, ORIGIN, ())
        desktops = [desktop("demo", home_quota=10 * 1024 * 1024)]
        api = FilesAPI(files, guard, "test", lambda identity: desktops, {}, 1024 * 1024)  # type: ignore[arg-type]
        self.port = reactor.listenTCP(0, Site(api.app.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookie = ""

    async def sign_in(self) -> None:
        await self.store.add_web_session(WebSession(token_hash("t"), "anna", "Anna", frozenset(), 1e12, 1e12))
        self.cookie = f"{self.web_sessions.cookie_name.decode()}=t"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        headers = {"Cookie": self.cookie, "Origin": ORIGIN, "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        response = await self.http.request(method, self.url + path, data=data, headers=headers)
        found = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        content = await response.content()
        return response.code, found, json.loads(content) if content else None


@pytest_twisted.async_yield_fixture
async def served(store: SQLiteStore) -> AsyncIterator[tuple[Served, StubFiles]]:
    files = StubFiles()
    api = Served(store, files)
    await api.sign_in()
    yield api, files
    await api.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_user_is_told_their_homes_and_the_limits(served: tuple[Served, StubFiles]) -> None:
    api, _ = served
    code, _, body = await api.call("GET", "/")
    assert code == 200
    assert body == {"max_upload": 1024 * 1024,
                    "homes": [{"key": "default", "title": "Demo", "quota": 10 * 1024 * 1024, "kind": "home",
                               "writable": True, "shares": []}]}


@pytest_twisted.ensureDeferred
async def test_a_folder_lists_its_entries(served: tuple[Served, StubFiles]) -> None:
    api, files = served
    code, _, body = await api.call("GET", "/default/Docs/")
    assert code == 200
    assert body["path"] == "Docs" and body["writable"] is True
    assert body["entries"] == [{"name": "a.txt", "type": "file", "size": 3, "modified": 0.0, "writable": True}]
    assert files.asked == ["/home/kasm-user/Docs", "/home/kasm-user/Docs"]


@pytest.mark.parametrize(("error", "status", "slug"), [
    (NoSuchFile("x"), 404, "no-such-file"),
    (NotAFolder("x"), 409, "not-a-folder"),
    (NotAFile("x"), 409, "not-a-file"),
    (AlreadyExists("x"), 409, "already-exists"),
    (OutsideHome("x"), 403, "outside-home"),
    (ReadOnly("x"), 403, "read-only"),
    (DiskFull("x"), 507, "disk-full"),
    (FilesError("x"), 500, "files-error"),
])
@pytest_twisted.ensureDeferred
async def test_each_refusal_is_answered_as_its_problem(
    served: tuple[Served, StubFiles], error: Exception, status: int, slug: str,
) -> None:
    api, files = served
    files.error = error
    code, headers, body = await api.call("POST", "/default/", {"folder": "New"})
    assert (code, body["type"]) == (status, f"urn:desktop-relay:problem:{slug}")
    assert headers["content-type"] == "application/problem+json"


@pytest_twisted.ensureDeferred
async def test_a_full_home_says_how_full_in_megabytes(served: tuple[Served, StubFiles]) -> None:
    api, files = served
    files.error = QuotaExceeded(9 * 1024 * 1024 + 1, 2 * 1024 * 1024, 10 * 1024 * 1024)
    code, _, body = await api.call("POST", "/default/", {"folder": "New"})
    assert code == 413 and body["type"].endswith(":home-quota-exceeded")
    assert body["detail"] == "Your files may take 10 MB; 10 MB are used, and this file needs 2 MB."


@pytest_twisted.ensureDeferred
async def test_an_unreachable_engine_is_503_with_retry_after(served: tuple[Served, StubFiles]) -> None:
    api, files = served
    files.error = ContainerEngineUnavailable("down")
    code, headers, body = await api.call("GET", "/default/")
    assert code == 503 and body["type"].endswith(":files-unavailable")
    assert headers["retry-after"] == "30"


@pytest.mark.parametrize(("method", "path", "body", "status", "slug"), [
    ("GET", "/elsewhere/", None, 404, "no-such-home"),
    ("GET", "/default/%2E%2E/etc/", None, 400, "invalid-path"),
    ("GET", "/default/a%2Fb/", None, 400, "invalid-path"),
    ("POST", "/default/", {"folder": ".."}, 400, "invalid-path"),
    ("POST", "/default/", {"name": "x"}, 422, "invalid-request"),
    ("DELETE", "/default/", None, 403, "read-only"),
    ("PUT", "/default/", None, 405, "upload-to-folder"),
])
@pytest_twisted.ensureDeferred
async def test_bad_paths_and_requests_are_refused_before_anything_runs(
    served: tuple[Served, StubFiles], method: str, path: str, body: Any, status: int, slug: str,
) -> None:
    api, files = served
    code, _, answer = await api.call(method, path, body)
    assert (code, answer["type"]) == (status, f"urn:desktop-relay:problem:{slug}")
    assert files.asked == []
