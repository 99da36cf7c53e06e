"""Test-wide fixtures: failing a test on logged errors or leaked reactor state, as trial does;
a real SQLite store.

No module-level reactor import here: pytest-twisted installs the reactor first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from zope.interface import provider

from desktop_relay.store import SQLiteStore

# Fixtures that start a real relay (twistd) and a local Docker registry, for every suite that needs them.
pytest_plugins = ["relay_harness", "local_registry"]


@pytest.fixture(autouse=True)
def fail_on_logged_errors(request: pytest.FixtureRequest) -> Iterator[list[dict]]:
    """Collect critical/error log events during a test and fail the test if any appear.

    A test that expects an error logged takes this fixture and empties the list itself.
    """
    errors: list[dict] = []

    @provider(ILogObserver)
    def observe(event: dict) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or event.get("isError"):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield errors
    finally:
        globalLogPublisher.removeObserver(observe)
    if errors:
        from twisted.logger import formatEvent

        texts = [formatEvent(e) + ("\n" + e["log_failure"].getTraceback() if "log_failure" in e else "") for e in errors]
        pytest.fail("errors were logged during the test:\n" + "\n".join(texts))


@pytest.fixture(autouse=True)
def no_leaked_delayed_calls() -> Iterator[None]:
    """Fail a test that leaves timers behind on the global reactor."""
    from twisted.internet import reactor

    before = set(reactor.getDelayedCalls())
    yield
    leaked = [c for c in reactor.getDelayedCalls() if c not in before and c.active()]
    for call in leaked:
        call.cancel()
    if leaked:
        pytest.fail(f"test left delayed calls behind: {leaked}")


@pytest_twisted.async_yield_fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A real SQLite store, opened in a fresh directory and closed after the test."""
    from twisted.internet import reactor

    store = SQLiteStore(tmp_path / "relay.sqlite3", reactor)
    await store.open()
    yield store
    await store.close()
