"""The audit trail in the store: lines with addresses, filters, newest first, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest_twisted

from desktop_relay.store import AuditFilter, SQLiteStore


async def some_lines(store: SQLiteStore) -> None:
    await store.audit(100.0, "anna", "sign-in", "anna", "local", "192.0.2.7")
    await store.audit(200.0, "anna", "start", "s1", "demo")
    await store.audit(300.0, "anna", "connect", "s1", "", "192.0.2.7")
    await store.audit(400.0, "bob", "sign-in-failed", "bob", "wrong-password", "198.51.100.2")
    await store.audit(500.0, "anna", "disconnect", "s1", "browser_code=1000", "192.0.2.7")


@pytest_twisted.ensureDeferred
async def test_lines_come_back_newest_first_with_their_address(store: SQLiteStore) -> None:
    await some_lines(store)
    trail = await store.audit_trail()
    assert [line["action"] for line in trail] == ["disconnect", "sign-in-failed", "connect", "start", "sign-in"]
    assert trail[0] == {"id": 5, "at": 500.0, "actor": "anna", "action": "disconnect", "target": "s1",
                        "detail": "browser_code=1000", "address": "192.0.2.7"}
    assert trail[3]["address"] == ""


@pytest_twisted.ensureDeferred
async def test_filters_narrow_together_and_the_cursor_goes_on_where_a_page_ended(store: SQLiteStore) -> None:
    await some_lines(store)
    assert [r["id"] for r in await store.audit_trail(where=AuditFilter(actor="anna"))] == [5, 3, 2, 1]
    assert [r["id"] for r in await store.audit_trail(where=AuditFilter(target="s1", action="connect"))] == [3]
    assert [r["id"] for r in await store.audit_trail(where=AuditFilter(since=200, until=400))] == [3, 2]
    first = await store.audit_trail(2, AuditFilter(actor="anna"))
    rest = await store.audit_trail(2, AuditFilter(actor="anna", before_id=first[-1]["id"]))
    assert [r["id"] for r in first + rest] == [5, 3, 2, 1]
    assert await store.audit_trail(where=AuditFilter(actor="nobody")) == []


@pytest_twisted.ensureDeferred
async def test_purge_deletes_only_lines_older_than_the_cut_and_says_how_many(store: SQLiteStore) -> None:
    await some_lines(store)
    assert await store.purge_audit(300.0) == 2
    assert [r["at"] for r in await store.audit_trail()] == [500.0, 400.0, 300.0]
    assert await store.purge_audit(300.0) == 0


@pytest_twisted.ensureDeferred
async def test_a_version_3_database_keeps_its_trail_and_gains_the_address(tmp_path: Path) -> None:
    from twisted.internet import reactor

    from desktop_relay.store import connection

    path = tmp_path / "relay.sqlite3"
    old = sqlite3.connect(path)
    for version, script in connection._schema_versions():
        if version <= 3:
            old.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
    old.execute("INSERT INTO audit (at, actor, action, target, detail) VALUES (1, 'anna', 'start', 's1', 'demo')")
    old.commit()
    old.close()
    store = SQLiteStore(path, reactor)
    await store.open()
    try:
        (line,) = await store.audit_trail()
        assert line["actor"] == "anna" and line["address"] == ""
    finally:
        await store.close()
    indexes = {row[0] for row in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'")}
    assert {"audit_actor", "audit_target", "audit_action", "audit_at"} <= indexes
