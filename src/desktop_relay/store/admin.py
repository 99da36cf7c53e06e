"""The admin API's tables in SQLite: bearer tokens (stored by their hash) and the users seen at
sign-in (their name, groups and role as of the last one)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute
from .records import AdminToken, SeenUser

T = TypeVar("T")


class TokenNameTaken(Exception):
    """A token of that name exists (or existed: names of revoked tokens are not reused)."""


class AdminQueries(SQLiteConnection):
    """The admin_tokens and users_seen tables."""

    # -- tokens -------------------------------------------------------------------------

    def add_admin_token(self, token: AdminToken) -> Deferred[None]:
        """Record a new token; TokenNameTaken when its name was ever used."""

        def add(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM admin_tokens WHERE name = ?", (token.name,)).fetchone():
                raise TokenNameTaken(token.name)
            execute(
                c, "INSERT INTO admin_tokens (name, token_hash, scope, created) VALUES (?, ?, ?, ?)",
                (token.name, token.token_hash, token.scope, token.created),
            )

        return self._run(add)

    def admin_token_by_hash(self, token_hash: str) -> Deferred[AdminToken | None]:
        """The token with this hash, revoked or not, or None."""
        return self._run(
            lambda c: _maybe(_token, c.execute("SELECT * FROM admin_tokens WHERE token_hash = ?", (token_hash,)))
        )

    def admin_tokens(self) -> Deferred[list[AdminToken]]:
        """Every token ever made, oldest first."""
        return self._run(
            lambda c: [_token(row) for row in c.execute("SELECT * FROM admin_tokens ORDER BY created, name")]
        )

    def revoke_admin_token(self, name: str, now: float) -> Deferred[bool]:
        """Revoke a working token; False when there is none of that name (or it is revoked already)."""
        return self._run(
            lambda c: c.execute(
                "UPDATE admin_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL", (now, name)
            ).rowcount == 1
        )

    def touch_admin_token(self, name: str, now: float) -> Deferred[None]:
        """Note that a token was used now."""
        return self._run(
            lambda c: execute(c, "UPDATE admin_tokens SET last_used = ? WHERE name = ?", (now, name))
        )

    # -- users seen ---------------------------------------------------------------------

    def user_signed_in(self, user: SeenUser) -> Deferred[None]:
        """Record a sign-in: name, groups and role as they are now; the first sighting is kept."""
        return self._run(
            lambda c: execute(
                c,
                "INSERT INTO users_seen (user_id, display_name, groups_json, role, first_seen, last_sign_in)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " display_name = excluded.display_name, groups_json = excluded.groups_json,"
                " role = excluded.role, last_sign_in = excluded.last_sign_in",
                (user.user_id, user.display_name, json.dumps(sorted(user.groups)), user.role,
                 user.first_seen, user.last_sign_in),
            )
        )

    def seen_user(self, user_id: str) -> Deferred[SeenUser | None]:
        """One user by id, or None if they never signed in."""
        return self._run(
            lambda c: _maybe(_user, c.execute("SELECT * FROM users_seen WHERE user_id = ?", (user_id,)))
        )

    def seen_users(self, limit: int, after: tuple[float, str] | None = None) -> Deferred[list[SeenUser]]:
        """Users by last sign-in, most recent first; `after` is the (last_sign_in, user_id) of the
        previous page's last user."""
        where = ""
        params: tuple[object, ...] = ()
        if after is not None:
            where = "WHERE last_sign_in < ? OR (last_sign_in = ? AND user_id < ?)"
            params = (after[0], after[0], after[1])
        return self._run(
            lambda c: [
                _user(row) for row in c.execute(
                    f"SELECT * FROM users_seen {where} ORDER BY last_sign_in DESC, user_id DESC LIMIT ?",
                    (*params, limit),
                )
            ]
        )

    def members_seen(self, group: str) -> Deferred[list[SeenUser]]:
        """The users whose groups at their last sign-in include this one, by id."""
        return self._run(lambda c: [_user(row) for row in c.execute(
            "SELECT * FROM users_seen WHERE EXISTS"
            " (SELECT 1 FROM json_each(users_seen.groups_json) WHERE json_each.value = ?) ORDER BY user_id",
            (group,),
        )])

def _maybe(make: Callable[[sqlite3.Row], T], rows: sqlite3.Cursor) -> T | None:
    row = rows.fetchone()
    return None if row is None else make(row)


def _token(row: sqlite3.Row) -> AdminToken:
    return AdminToken(name=row["name"], token_hash=row["token_hash"], scope=row["scope"], created=row["created"],
                      revoked=row["revoked"], last_used=row["last_used"])


def _user(row: sqlite3.Row) -> SeenUser:
    return SeenUser(user_id=row["user_id"], display_name=row["display_name"],
                    groups=frozenset(json.loads(row["groups_json"])), role=row["role"],
                    first_seen=row["first_seen"], last_sign_in=row["last_sign_in"])
