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


@pytest_twisted.ensureDeferred
async def test_admin_tokens_are_kept_by_hash_and_a_name_is_never_given_twice(store: SQLiteStore) -> None:
    from desktop_relay.store import AdminToken, TokenNameTaken

    await store.add_admin_token(AdminToken("ops", "hash-1", "write", 1.0))
    with pytest.raises(TokenNameTaken):
        await store.add_admin_token(AdminToken("ops", "hash-2", "read", 2.0))
    assert await store.revoke_admin_token("ops", 3.0) is True
    assert await store.revoke_admin_token("ops", 4.0) is False
    with pytest.raises(TokenNameTaken):
        await store.add_admin_token(AdminToken("ops", "hash-3", "read", 5.0))
    (token,) = await store.admin_tokens()
    assert (token.name, token.scope, token.revoked) == ("ops", "write", 3.0)
    assert (await store.admin_token_by_hash("hash-1")).name == "ops"
    assert await store.admin_token_by_hash("hash-2") is None


@pytest_twisted.ensureDeferred
async def test_a_sign_in_updates_the_user_seen_and_keeps_when_they_were_first_seen(store: SQLiteStore) -> None:
    from desktop_relay.store import SeenUser

    await store.user_signed_in(SeenUser("anna", "Anna", frozenset({"7b", "pupils"}), "pupil", 1.0, 1.0))
    await store.user_signed_in(SeenUser("anna", "Anna A.", frozenset({"8b"}), "teacher", 9.0, 9.0))
    await store.user_signed_in(SeenUser("ben", "Ben", frozenset({"7b"}), "pupil", 5.0, 5.0))
    anna = await store.seen_user("anna")
    assert (anna.display_name, anna.groups, anna.role, anna.first_seen, anna.last_sign_in) == (
        "Anna A.", {"8b"}, "teacher", 1.0, 9.0)
    assert [user.user_id for user in await store.members_seen("7b")] == ["ben"]
    assert [user.user_id for user in await store.members_seen("8b")] == ["anna"]
    assert await store.members_seen("7") == []
    assert [u.user_id for u in await store.seen_users(1)] == ["anna"]
    assert [u.user_id for u in await store.seen_users(5, after=(9.0, "anna"))] == ["ben"]
