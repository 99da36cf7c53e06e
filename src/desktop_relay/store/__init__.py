"""The relay's store: desktop sessions and their queue, idle clocks, signed-in browsers, the audit
trail, admin tokens, the users seen, their homes, the warm pool, the lessons' pre-starts and
teachers' assignments; in SQLite (the embedded default), behind one class made of one mixin per table.

Modules: records (the values), connection (the thread, transactions, the versioned schema),
desktop_sessions, web_sessions, audit, admin (tokens, users seen), homes (home volumes and their
usage), pool (pooled containers, pre-starts), assignments (desktops teachers offer their
classes). A second implementation (PostgreSQL, for several relays) would offer the same methods.
"""

from .admin import AdminQueries, TokenNameTaken
from .assignments import Assignment, AssignmentQueries
from .audit import AuditFilter, AuditQueries
from .classwork import ClassworkQueries, DueTime
from .desktop_sessions import DesktopSessionQueries
from .homes import HomeQueries, HomeRecord
from .pool import PoolContainer, PoolQueries, Prestart
from .records import (
    ACTIVE_STATES,
    FAILED,
    HOLDING_STATES,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    AdminToken,
    DesktopSession,
    SeenUser,
    SessionFilter,
    StoreError,
    WebSession,
)
from .web_sessions import WebSessionQueries


class SQLiteStore(
    DesktopSessionQueries, WebSessionQueries, AuditQueries, AdminQueries, HomeQueries, PoolQueries,
    AssignmentQueries,
    ClassworkQueries,
):
    """Asynchronous access to the SQLite database; every method returns a Deferred."""


__all__ = [
    "ACTIVE_STATES",
    "AuditFilter",
    "DueTime",
    "FAILED",
    "HOLDING_STATES",
    "QUEUED",
    "READY",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "AdminToken",
    "Assignment",
    "DesktopSession",
    "HomeRecord",
    "PoolContainer",
    "Prestart",
    "SQLiteStore",
    "SeenUser",
    "SessionFilter",
    "StoreError",
    "TokenNameTaken",
    "WebSession",
]
