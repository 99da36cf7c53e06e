"""The client file cache's own rules: which answers it keeps, and that it stays within its bounds."""

from __future__ import annotations

import pytest
from twisted.web.http_headers import Headers

from desktop_relay.relay.client_cache import ClientFileCache, is_static_answer, is_static_path

JS = Headers({b"content-type": [b"text/javascript"]})


def _seen(cache: ClientFileCache, session: str, user: str, entry: bytes = b"<html>one</html>") -> None:
    cache.entry_seen(session, user, entry, Headers({b"last-modified": [b"Tue, 01 Dec 2026 08:00:00 GMT"]}))


@pytest.mark.parametrize("path, static", [
    ("app/ui.js", True), ("core/rfb.js", True), ("app/styles/base.css", True), ("app/images/x.SVG", True),
    ("vnc.html", True), ("api/get_screenshot", False), ("websockify", False), ("app/", False),
    ("package.json", False), ("", False),
])
def test_only_files_with_a_static_suffix_are_candidates(path: str, static: bool) -> None:
    assert is_static_path(path) is static


@pytest.mark.parametrize("code, headers, static", [
    (200, {}, True),
    (200, {b"cache-control": [b"max-age=3600"]}, True),
    (200, {b"cache-control": [b"no-store"]}, False),
    (200, {b"cache-control": [b"private, max-age=60"]}, False),
    (200, {b"vary": [b"Cookie"]}, False),
    (200, {b"content-encoding": [b"gzip"]}, False),
    (206, {}, False),
    (404, {}, False),
])
def test_only_plain_200s_not_private_or_varying_are_kept(code: int, headers: dict, static: bool) -> None:
    assert is_static_answer(code, Headers(headers)) is static


def test_the_same_file_for_many_users_is_held_once() -> None:
    cache = ClientFileCache()
    for user in ("anna", "bob", "carl"):
        _seen(cache, f"{user}-1", user)
        cache.store(f"{user}-1", user, "app/ui.js", 200, b"OK", JS, b"x" * 1000)
    assert cache.size == 1000
    assert all(cache.lookup(f"{u}-1", u, "app/ui.js") for u in ("anna", "bob", "carl"))


def test_a_session_of_someone_else_finds_nothing() -> None:
    cache = ClientFileCache()
    _seen(cache, "s1", "anna")
    cache.store("s1", "anna", "app/ui.js", 200, b"OK", JS, b"anna's")
    assert cache.lookup("s1", "bob", "app/ui.js") is None
    _seen(cache, "s2", "bob")
    assert cache.lookup("s2", "bob", "app/ui.js") is None


def test_the_least_recently_used_builds_go_when_the_bytes_run_out() -> None:
    cache = ClientFileCache(max_bytes=2500)
    for user in ("anna", "bob", "carl"):
        _seen(cache, f"{user}-1", user)
        cache.store(f"{user}-1", user, "app/ui.js", 200, b"OK", JS, user.encode() * 300)
    assert cache.size <= 2500
    assert cache.lookup("anna-1", "anna", "app/ui.js") is None
    assert cache.lookup("carl-1", "carl", "app/ui.js") is not None


def test_a_replaced_file_frees_its_old_body() -> None:
    cache = ClientFileCache()
    _seen(cache, "s1", "anna")
    cache.store("s1", "anna", "app/ui.js", 200, b"OK", JS, b"a" * 100)
    cache.store("s1", "anna", "app/ui.js", 200, b"OK", JS, b"b" * 40)
    assert cache.size == 40
    assert cache.lookup("s1", "anna", "app/ui.js").body == b"b" * 40  # type: ignore[union-attr]


def test_only_modules_of_the_build_the_validators_named_are_announced() -> None:
    cache = ClientFileCache()
    one = Headers({b"etag": [b'"one"']})
    cache.entry_seen("s1", "anna", b"<html>one</html>", one)
    cache.store("s1", "anna", "app/ui.js", 200, b"OK", JS, b"ui", module=True)
    cache.store("s1", "anna", "app/error-handler.js", 200, b"OK", JS, b"e", module=False)
    assert cache.modules_to_announce("anna", one) == ["app/ui.js"]
    assert cache.modules_to_announce("anna", Headers({b"etag": [b'"two"']})) == []
    assert cache.modules_to_announce("anna", Headers()) == []  # no validators: no build to name
    assert cache.modules_to_announce("bob", one) == []
