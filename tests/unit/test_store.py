"""The SQLite store: schema versions, compare-and-set updates, web sessions."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
import pytest_twisted

from desktop_relay.store import READY, STARTING, STOPPED, DesktopSession, SQLiteStore, StoreError


def session(sid: str = "s1", state: str = STARTING) -> DesktopSession:
    return DesktopSession(sid, "anna", "demo", state, None, None, None, "secret", 1.0, 1.0)


@pytest_twisted.ensureDeferred
async def test_new_database_gets_the_newest_schema_and_private_mode(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "db" / "relay.sqlite3"
    store = SQLiteStore(path, reactor)
    await store.open()
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version >= 1


@pytest_twisted.ensureDeferred
async def test_database_from_a_newer_relay_is_refused(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "relay.sqlite3"
    sqlite3.connect(path).execute("PRAGMA user_version = 999")
    store = SQLiteStore(path, reactor)
    with pytest.raises(StoreError, match="newer than this relay knows"):
        await store.open()


@pytest_twisted.ensureDeferred
async def test_update_with_expected_state_is_compare_and_set(store: SQLiteStore) -> None:
    await store.add_session(session())
    assert (await store.update_session("s1", 2.0, expect=[STARTING], state=READY)).state == READY
    # A second actor expecting 'starting' loses: nothing changes.
    assert await store.update_session("s1", 3.0, expect=[STARTING], state=STOPPED) is None
    assert (await store.get_session("s1")).state == READY
    with pytest.raises(ValueError):
        await store.update_session("s1", 3.0, vnc_password="x")
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_session(session())  # same id: the transaction is rolled back
    assert [s.id for s in await store.active_sessions()] == ["s1"]
