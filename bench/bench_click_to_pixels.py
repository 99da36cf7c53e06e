"""Benchmark: the click on Start to the first desktop pixels in a real browser, three ways: a cold
start, a start from the warm pool, and a desktop pre-started before a lesson.

The measurement is bench_click_to_desktop.py's (its in-page probe, its run and its table: read its
docstring for the marks and the network namespace Chromium runs in); this adds the three setups,
each its own relay (twistd) with the real Docker engine and the demo image:

| setup | relay.ini | before each click |
|---|---|---|
| cold | as the harness writes it | nothing runs |
| pool | `[desktop:demo] home = none, pool_size = 1` | a pooled container is ready (the log says so) |
| prestart | `[schedule:bench]`, a lesson in 3 minutes, `lead = 10m` | the user's desktop was pre-started |

For the pre-start, every user of the run signs in once first (a schedule pre-starts for the members
it knows from sign-ins), then waits for their pre-started desktop; each run is another user, who
clicks Start on the dashboard, which opens the desktop already running.

    python bench/bench_click_to_pixels.py [--runs 10] [--setups cold,pool,prestart]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_click_to_desktop import MARKS, PROBE, one_run, stop_sessions, summary
from desktop_browser import CHROMIUM, CHROMIUM_ARGS, SCREEN
from loopback_forward import IsolatedChromium, available
from relay_harness import PASSWORD, RelayProcess, remove_leftovers

SESSIONS = {"check_interval": "1s"}


def lesson_soon() -> str:
    """A weekday line for a lesson 3 minutes from now (UTC), within a 10-minute lead."""
    start = datetime.now(UTC) + timedelta(minutes=3)
    end = min(start + timedelta(minutes=45), start.replace(hour=23, minute=59))  # a lesson ends the same day
    return f"{start.strftime('%a').lower()} {start:%H:%M}-{end:%H:%M}"


SETUPS: dict[str, Callable[[], dict[str, dict[str, str]]]] = {
    "cold": lambda: {"sessions": SESSIONS},
    "pool": lambda: {"sessions": SESSIONS, "desktop:demo": {"home": "none", "pool_size": "1"}},
    "prestart": lambda: {"sessions": SESSIONS, "schedule:bench": {
        "group": "pupils", "desktop": "demo", "times": "\n" + lesson_soon(), "lead": "10m",
        "claim_window": "15m", "timezone": "UTC"}},
}


def wait_for(relay: RelayProcess, pattern: str, count: int, timeout: float = 120) -> None:
    """Until the relay's log has `count` lines matching `pattern`."""
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, relay.log())) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} x {pattern!r} within {timeout:g} s")
        time.sleep(0.2)


def measure(setup: str, runs: int, timeout: float, isolate: bool, directory: Path) -> list[dict[str, float]]:
    import docker
    from playwright.sync_api import sync_playwright

    users = [f"pupil{n}" for n in range(runs)] if setup == "prestart" else ["alice"]
    relay = RelayProcess(directory, users={u: "pupils" for u in users}, sections=SETUPS[setup]())
    relay.start()
    try:
        if setup == "prestart":
            for user in users:
                relay.client().login(user)
            wait_for(relay, r"session \S+ is ready after", runs)
        results: list[dict[str, float]] = []
        with sync_playwright() as playwright:
            isolated = IsolatedChromium(CHROMIUM, directory, relay.port) if isolate else None
            browser = playwright.chromium.launch(executable_path=str(isolated.executable) if isolated else CHROMIUM,
                                                 headless=True, args=CHROMIUM_ARGS)
            while len(results) < runs:
                user = users[len(results)] if setup == "prestart" else "alice"
                if setup == "pool":
                    wait_for(relay, r"pool container \w+ of demo is ready", len(results) + 1)
                page = browser.new_context(viewport=SCREEN).new_page()
                page.add_init_script(PROBE)
                page.goto(relay.url + "/login")
                page.fill("input[name=username]", user)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("button[data-desktop=demo]")
                run = one_run(page, relay.url, timeout)
                if run is not None:
                    results.append(run)
                    print(f"{setup} run {len(results):2}: " + "  ".join(f"{n} {run[n]:6.0f}" for n in MARKS),
                          flush=True)
                page.goto(relay.url + "/")
                stop_sessions(page)
                page.context.close()
                time.sleep(0.5)
            browser.close()
            if isolated:
                isolated.stop()
        return results
    finally:
        relay.stop()
        engine = docker.from_env()
        # Its containers, and the homes its users' desktops made (kept on purpose by the relay).
        remove_leftovers(engine, relay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60, help="seconds per run before giving up")
    parser.add_argument("--setups", default="cold,pool,prestart")
    parser.add_argument("--shared-network", action="store_true",
                        help="run Chromium in the host's network namespace (the default without root)")
    args = parser.parse_args()
    isolate = available() and not args.shared_network
    os.environ.setdefault("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")
    tables = {}
    for setup in args.setups.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-pixels-{setup}-") as directory:
            tables[setup] = measure(setup, args.runs, args.timeout, isolate, Path(directory))
    print("\nChromium in a network namespace of its own" if isolate else "\nChromium in the host's network")
    for setup, runs in tables.items():
        print(f"\n{setup}:\n{summary(runs)}")


if __name__ == "__main__":
    main()
