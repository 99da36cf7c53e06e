"""The capacity rule alone: who may start now, in queue order."""

from __future__ import annotations

from desktop_relay.capacity import CapacityLimits, Claim, choose_starts

GB = 2**30


def test_queue_order_is_kept_and_stops_at_a_server_wide_limit() -> None:
    queued = [Claim("a", "demo", GB), Claim("b", "demo", GB), Claim("c", "demo", GB)]
    assert choose_starts([Claim("x", "demo", GB)], queued, CapacityLimits(max_total=3)) == ["a", "b"]


def test_a_large_desktop_at_the_head_is_not_overtaken_by_smaller_ones() -> None:
    queued = [Claim("big", "code", 4 * GB), Claim("small", "demo", GB)]
    assert choose_starts([Claim("x", "demo", 2 * GB)], queued, CapacityLimits(memory_budget=5 * GB)) == []


def test_a_full_desktop_type_lets_the_others_behind_it_pass() -> None:
    queued = [Claim("a", "demo", 0), Claim("b", "code", 0)]
    limits = CapacityLimits(per_desktop={"demo": 1})
    assert choose_starts([Claim("x", "demo", 0)], queued, limits) == ["b"]


def test_starting_ones_count_against_max_starting() -> None:
    holding = [Claim("x", "demo", 0, starting=True), Claim("y", "demo", 0, starting=False)]
    queued = [Claim("a", "demo", 0), Claim("b", "demo", 0)]
    assert choose_starts(holding, queued, CapacityLimits(max_starting=2)) == ["a"]
