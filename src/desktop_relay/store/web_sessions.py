"""Signed-in browsers in SQLite: stored by the hash of their cookie, never the cookie itself."""

from __future__ import annotations

import json
import sqlite3

from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute
from .records import WebSession


class WebSessionQueries(SQLiteConnection):
    """The web_sessions table."""

    def add_web_session(self, web: WebSession) -> Deferred[None]:
        """Record a new signed-in browser."""
        return self._run(
            lambda c: execute(
                c,
                "INSERT INTO web_sessions (token_hash, user_id, display_name, groups_json, created,"
                " last_seen, role) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    web.token_hash,
                    web.user_id,
                    web.display_name,
                    json.dumps(sorted(web.groups)),
                    web.created,
                    web.last_seen,
                    web.role,
                ),
            )
        )

    def get_web_session(self, token_hash: str) -> Deferred[WebSession | None]:
        """A signed-in browser by the hash of its cookie, or None."""

        def get(c: sqlite3.Connection) -> WebSession | None:
            row = c.execute("SELECT * FROM web_sessions WHERE token_hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            return WebSession(
                token_hash=row["token_hash"],
                user_id=row["user_id"],
                display_name=row["display_name"],
                groups=frozenset(json.loads(row["groups_json"])),
                created=row["created"],
                last_seen=row["last_seen"],
                role=row["role"],
            )

        return self._run(get)

    def touch_web_session(self, token_hash: str, now: float) -> Deferred[None]:
        """Note that a signed-in browser was seen now (for idle expiry)."""
        return self._run(
            lambda c: execute(
                c,
                "UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash)
            )
        )

    def delete_web_session(self, token_hash: str) -> Deferred[None]:
        """Sign a browser out."""
        return self._run(
            lambda c: execute(c, "DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
        )

    def delete_web_sessions_of(self, user_id: str) -> Deferred[int]:
        """Sign a user out of every browser; returns how many were signed in."""
        return self._run(
            lambda c: c.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,)).rowcount
        )

    def count_web_sessions(self, user_id: str) -> Deferred[int]:
        """How many browsers a user is signed in with."""
        return self._run(
            lambda c: c.execute("SELECT COUNT(*) FROM web_sessions WHERE user_id = ?", (user_id,)).fetchone()[0]
        )

    def purge_web_sessions(self, idle_before: float, created_before: float) -> Deferred[int]:
        """Delete expired sign-ins; returns how many."""
        return self._run(
            lambda c: c.execute(
                "DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                (idle_before, created_before),
            ).rowcount
        )
