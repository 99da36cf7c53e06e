"""The SQLite connection: one dedicated thread, one transaction per call, the versioned schema.

One connection, used from one thread, so the reactor never waits on disk and writes are
serialised. The schema is versioned by `PRAGMA user_version` and upgraded from the numbered
files in desktop_relay/schema/ on open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .records import StoreError

T = TypeVar("T")


def _schema_versions() -> list[tuple[int, str]]:
    scripts = []
    for entry in files("desktop_relay").joinpath("schema").iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("-", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(scripts)


class SQLiteConnection:
    """The store's thread and connection; the query mixins run their work through `_run`."""

    def __init__(self, path: Path, reactor: IReactorFromThreads) -> None:
        self._path = path
        self._reactor = reactor
        # One thread owns the connection: SQLite connections are not shared across threads,
        # and one writer at a time is what SQLite wants anyway.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="desktop-relay-store")
        self._connection: sqlite3.Connection | None = None

    def open(self) -> Deferred[None]:
        """Start the store's thread, open the file and bring the schema up to date."""
        self._pool.start()
        d = self._run(lambda c: None, connect=True)
        d.addErrback(self._stop_thread)
        return d

    def close(self) -> Deferred[None]:
        """Close the connection and stop the thread."""

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        d = deferToThreadPool(self._reactor, self._pool, close)
        d.addBoth(self._stop_thread)
        return d

    def _stop_thread(self, result: T) -> T:
        self._pool.stop()
        return result

    def _run(self, work: Callable[[sqlite3.Connection], T], connect: bool = False) -> Deferred[T]:
        def in_thread() -> T:
            if self._connection is None:
                if not connect:
                    raise StoreError("the store is closed")
                self._connection = self._connect()
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")  # one transaction per call: all or nothing
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return deferToThreadPool(self._reactor, self._pool, in_thread)

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._path.chmod(0o600)  # it holds container passwords
            self._migrate(connection)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {self._path}: {e}") from e
        return connection

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        current = connection.execute("PRAGMA user_version").fetchone()[0]
        versions = _schema_versions()
        newest = versions[-1][0]
        if current > newest:
            raise StoreError(f"database schema version {current} is newer than this relay knows ({newest})")
        for version, script in versions:
            if version > current:
                try:
                    connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise


def execute(c: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run one statement for its effect."""
    c.execute(sql, params)
