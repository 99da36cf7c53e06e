"""Capacity: which queued starts may begin now, under the server's limits, in fair order.

A pure decision over the sessions that hold resources and the queue, so that the store can
take it inside one transaction (several relays, one database: no decision lives only in one
process's memory) and tests can check it without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attr


class SessionLimitReached(Exception):
    """The user already has as many active sessions as allowed."""


class QueueFull(Exception):
    """The start does not fit now and the queue is full."""


class NoRoomNow(Exception):
    """A start that may not wait (a lesson's pre-start) does not fit now."""


class DoesNotFit(Exception):
    """The desktop's memory limit alone exceeds the server's memory budget: it could never start."""


@attr.s(frozen=True, auto_attribs=True)
class CapacityLimits:
    """The limits a start must fit in; None means no limit of that kind."""

    max_total: int | None = None
    max_starting: int | None = None
    memory_budget: int | None = None
    per_desktop: Mapping[str, int | None] = attr.ib(factory=dict)
    max_queued: int = 200


@attr.s(frozen=True, auto_attribs=True)
class Claim:
    """What one session holds, or would hold once started."""

    session_id: str
    desktop: str
    memory: int
    starting: bool = False


def choose_starts(holding: Iterable[Claim], queued: Iterable[Claim], limits: CapacityLimits) -> list[str]:
    """The queued sessions (in queue order) that may start now.

    First come, first served: the queue is taken in order, and a start blocked by a limit of
    the whole server (total, starting, memory) blocks everyone behind it, so a large desktop
    is never starved by smaller ones slipping past. A start blocked only by its own desktop
    type's `max_sessions` keeps its place but lets the others behind it go: they do not
    compete for that desktop.
    """
    total = 0
    starting = 0
    memory = 0
    per_desktop: dict[str, int] = {}
    for claim in holding:
        total += 1
        starting += claim.starting
        memory += claim.memory
        per_desktop[claim.desktop] = per_desktop.get(claim.desktop, 0) + 1
    chosen = []
    for claim in queued:
        desktop_limit = limits.per_desktop.get(claim.desktop)
        if desktop_limit is not None and per_desktop.get(claim.desktop, 0) >= desktop_limit:
            continue
        if limits.max_total is not None and total >= limits.max_total:
            break
        if limits.max_starting is not None and starting >= limits.max_starting:
            break
        if limits.memory_budget is not None and memory + claim.memory > limits.memory_budget:
            break
        chosen.append(claim.session_id)
        total += 1
        starting += 1
        memory += claim.memory
        per_desktop[claim.desktop] = per_desktop.get(claim.desktop, 0) + 1
    return chosen
