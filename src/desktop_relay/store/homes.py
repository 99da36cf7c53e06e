"""The homes table in SQLite: which home volume is whose, when it was last used, and what it
held at the last measurement. Docker is the truth about the volumes themselves: a measurement
adopts volumes the table does not know and forgets the ones the engine no longer has."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

import attr
from twisted.internet.defer import Deferred

from ..homes import Home
from ..homes.interface import HomeVolume
from .connection import SQLiteConnection, execute


@attr.s(frozen=True, auto_attribs=True)
class HomeRecord:
    """One row of the homes table."""

    volume: str
    owner: str
    key: str
    created: float
    last_used: float
    # Bytes at the last measurement; None until the first one.
    usage_bytes: int | None
    measured_at: float | None


class HomeQueries(SQLiteConnection):
    """The homes table."""

    def home_used(self, home: Home, now: float) -> Deferred[None]:
        """Note that a desktop starts with this home now (recording it the first time)."""
        return self._run(
            lambda c: execute(
                c,
                "INSERT INTO homes (volume, owner, key, created, last_used) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (volume) DO UPDATE SET last_used = excluded.last_used",
                (home.volume, home.owner, home.key, now, now),
            )
        )

    def homes_of(self, owner: str) -> Deferred[list[HomeRecord]]:
        """A user's homes, by key."""
        return self._run(
            lambda c: [_home(row) for row in c.execute("SELECT * FROM homes WHERE owner = ? ORDER BY key", (owner,))]
        )

    def forget_home(self, volume: str) -> Deferred[None]:
        """The volume was removed: forget it."""
        return self._run(lambda c: execute(c, "DELETE FROM homes WHERE volume = ?", (volume,)))

    def record_home_usage(
        self, volumes: Iterable[HomeVolume], usage: Mapping[str, int], listed_at: float, now: float
    ) -> Deferred[tuple[int, int]]:
        """Take a measurement: the volumes the engine listed at `listed_at` (adopting unknown
        ones) with the bytes each held; homes recorded before `listed_at` that the engine no
        longer has are forgotten. Returns (adopted, forgotten)."""

        def record(c: sqlite3.Connection) -> tuple[int, int]:
            adopted = 0
            names = []
            for v in volumes:
                names.append(v.volume)
                created = v.created if v.created is not None else now
                adopted += c.execute(
                    "INSERT INTO homes (volume, owner, key, created, last_used) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (v.volume, v.owner, v.key, created, created),
                ).rowcount
                if v.volume in usage:
                    execute(c, "UPDATE homes SET usage_bytes = ?, measured_at = ? WHERE volume = ?",
                            (usage[v.volume], now, v.volume))
            # A home first used after the listing began is not in it, but exists.
            placeholders = ", ".join("?" * len(names))
            forgotten = c.execute(
                f"DELETE FROM homes WHERE last_used < ? AND volume NOT IN ({placeholders})",
                (listed_at, *names),
            ).rowcount
            return adopted, forgotten

        return self._run(record)


def _home(row: sqlite3.Row) -> HomeRecord:
    return HomeRecord(volume=row["volume"], owner=row["owner"], key=row["key"], created=row["created"],
                      last_used=row["last_used"], usage_bytes=row["usage_bytes"], measured_at=row["measured_at"])
