"""The relay's store: desktop sessions and their queue, idle clocks, signed-in browsers, the audit
trail; in SQLite (the embedded default), behind one class made of one mixin per table.

Modules: records (the values), connection (the thread, transactions, the versioned schema),
desktop_sessions, web_sessions, audit. A second implementation (PostgreSQL, for several relays)
would offer the same methods.
"""

from .audit import AuditQueries
from .desktop_sessions import DesktopSessionQueries
from .records import (
    ACTIVE_STATES,
    FAILED,
    HOLDING_STATES,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    DesktopSession,
    StoreError,
    WebSession,
)
from .web_sessions import WebSessionQueries


class SQLiteStore(DesktopSessionQueries, WebSessionQueries, AuditQueries):
    """Asynchronous access to the SQLite database; every method returns a Deferred."""


__all__ = [
    "ACTIVE_STATES",
    "FAILED",
    "HOLDING_STATES",
    "QUEUED",
    "READY",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "DesktopSession",
    "SQLiteStore",
    "StoreError",
    "WebSession",
]
