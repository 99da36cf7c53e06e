"""The descriptor arithmetic (desktops_for) and raising the soft limit to the hard one."""

from __future__ import annotations

import resource
import subprocess
import sys

from desktop_relay.fdlimit import FDS_PER_BRIDGE, RESERVE, desktops_for


def test_each_desktop_takes_two_descriptors_after_the_reserve() -> None:
    assert FDS_PER_BRIDGE == 2
    assert desktops_for(RESERVE) == 0
    assert desktops_for(RESERVE + 2) == 1
    assert desktops_for(RESERVE + 3) == 1
    assert desktops_for(65536) == (65536 - RESERVE) // 2


def test_a_limit_below_the_reserve_allows_no_desktop() -> None:
    assert desktops_for(0) == 0
    assert desktops_for(RESERVE - 1) == 0


def _limits_after_raise(soft: int, hard: int) -> str:
    """Run raise_soft_limit in a child started with these limits (this process keeps its own)."""
    code = (
        "import resource; from desktop_relay.fdlimit import raise_soft_limit; "
        "print(raise_soft_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    ).stdout.strip()


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    assert _limits_after_raise(256, 700) == "(256, 700) (700, 700)"


def test_a_soft_limit_already_at_the_hard_limit_stays() -> None:
    assert _limits_after_raise(600, 600) == "(600, 600) (600, 600)"
