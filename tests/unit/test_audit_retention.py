"""[audit] keep: the relay deletes older audit lines when it starts and once a day, and says how
many; `off` keeps them all. The lifecycle's background service on a task.Clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from test_config import MINIMAL, write
from twisted.internet import defer, task
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from desktop_relay.config import ConfigError, load_config
from desktop_relay.lifecycle import DesktopSessions, LifecycleService
from desktop_relay.store import SQLiteStore

DAY = 86400.0


def service(store: SQLiteStore, clock: task.Clock, keep: float | None) -> LifecycleService:
    sessions = DesktopSessions(
        store=store, provisioner=FakeProvisioner([IMAGE]), probe=lambda backend: defer.succeed(True),
        clock=clock, desktops={"demo": desktop("demo")}, instance="test", max_per_user=2,
        start_timeout=5, stop_timeout=1,
    )
    # The other loops wait longer than the tests advance the clock: only the purge runs.
    return LifecycleService(sessions, store, clock, check_interval=10 * DAY, reconcile_interval=10 * DAY,
                            activity_write_interval=10 * DAY, memory_budget_auto=False, audit_keep=keep)


async def trail_ats(store: SQLiteStore) -> list[float]:
    return sorted(line["at"] for line in await store.audit_trail())


async def until_trail_is(store: SQLiteStore, expected: list[float]) -> None:
    from twisted.internet import reactor

    for _ in range(200):
        if await trail_ats(store) == expected:
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    assert await trail_ats(store) == expected


@pytest_twisted.ensureDeferred
async def test_old_lines_go_at_start_and_then_daily_and_the_count_is_logged(store: SQLiteStore) -> None:
    logged: list[str] = []

    @provider(ILogObserver)
    def observe(event: dict) -> None:
        if "audit trail" in (event.get("log_format") or ""):
            logged.append(formatEvent(event))

    clock = task.Clock()
    clock.advance(200 * DAY)
    for age in (190, 181, 179.5, 1):
        await store.audit(clock.seconds() - age * DAY, "anna", "start", f"s{age:g}")
    background = service(store, clock, keep=180 * DAY)
    globalLogPublisher.addObserver(observe)
    try:
        background.startService()
        await background.reconcile()
        await until_trail_is(store, [clock.seconds() - d * DAY for d in (179.5, 1)])
        clock.advance(DAY)
        await until_trail_is(store, [clock.seconds() - d * DAY for d in (2,)])
        await background.stopService()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert logged == ["audit trail: 2 line(s) older than 180 days deleted",
                      "audit trail: 1 line(s) older than 180 days deleted"]


@pytest_twisted.ensureDeferred
async def test_keep_off_deletes_nothing(store: SQLiteStore) -> None:
    clock = task.Clock()
    clock.advance(10_000 * DAY)
    await store.audit(1.0, "anna", "start", "s1")
    background = service(store, clock, keep=None)
    background.startService()
    await background.reconcile()
    clock.advance(DAY)
    await background.purge_audit()
    await background.stopService()
    assert await trail_ats(store) == [1.0]


def test_keep_is_read_from_relay_ini(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).audit_keep == 180 * DAY
    assert load_config(write(tmp_path, "[audit]\nkeep = 30d\n" + MINIMAL)).audit_keep == 30 * DAY
    assert load_config(write(tmp_path, "[audit]\nkeep = off\n" + MINIMAL)).audit_keep is None
    with pytest.raises(ConfigError, match=r"\[audit\] keep: 'forever': must be a duration"):
        load_config(write(tmp_path, "[audit]\nkeep = forever\n" + MINIMAL))
