"""30 pupils press Start within one second: time until the first and the last desktop is ready.

Runs a real relay (twistd) against the local Docker engine and the demo image, once with limits
that force queueing and once without, interleaved, `--repeats` times each. Each user signs in,
then all press Start within one second (spread evenly), and each waits with the API's long-poll
(`GET /api/sessions/ID?wait=ready`) as the dashboard does. Reports, per configuration, medians
over the repeats of: POST answer time (p50/max over all users), time from the first click to the
first and to the last ready desktop, and how many were queued. bench_class_start.py runs the same
class with a warm pool and without one.

    .venv/bin/python bench/bench_burst_start.py                  # 30 users, 2 repeats: a few minutes
    .venv/bin/python bench/bench_burst_start.py --users 10 --repeats 1

Needs what scripts/test installs (dockerd, the demo image). Cleans up its containers.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import docker  # noqa: E402
from relay_harness import RelayProcess, remove_leftovers  # noqa: E402

CONFIGS = {
    # Unbounded but for what the machine can do.
    "no limits": {"sessions": {"max_total": "off", "max_starting": "100", "memory_budget": "off",
                               "max_per_user": "2"}},
    # At most 4 containers created at once: the others wait in the queue, in order.
    "queueing (max_starting 4)": {"sessions": {"max_total": "off", "max_starting": "4", "max_per_user": "2",
                                               "memory_budget": "off"}},
}


#: A configuration's name -> its relay.ini sections.
Configs = dict[str, dict[str, dict[str, str]]]
#: The table's columns: heading -> how a configuration's medians read in it.
Columns = dict[str, Callable[[Callable[[str], float]], str]]


def wait_for_pool(relay: RelayProcess, size: int, timeout: float = 600) -> float:
    """Seconds until the relay's log says `size` pooled containers are ready."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if len(re.findall(r"pool container \w+ of demo is ready", relay.log())) >= size:
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"the pool of {size} was not ready within {timeout:g} s")


def run_once(users: int, sections: dict[str, dict[str, str]], engine: docker.DockerClient) -> dict[str, float]:
    """One class pressing Start on a relay of its own; with a pool, once the whole pool is ready."""
    with tempfile.TemporaryDirectory() as directory:
        names = {f"pupil{n}": "pupils" for n in range(users)}
        sections = {**sections, "docker": {"start_timeout": "120s", "threads": "8"}}
        relay = RelayProcess(Path(directory), users=names, sections=sections)
        relay.start()
        try:
            pool = int(sections.get("desktop:demo", {}).get("pool_size", "0"))
            filled = wait_for_pool(relay, pool) if pool else 0.0
            browsers = []
            for name in names:
                browser = relay.client()
                browser.login(name)
                browsers.append(browser)
            posts: list[float] = [0.0] * users
            readies: list[float] = [0.0] * users
            queued = [False] * users
            begin = time.monotonic() + 0.2

            def press(index: int) -> None:
                browser = browsers[index]
                time.sleep(max(0.0, begin + index / users - time.monotonic()))
                clicked = time.monotonic()
                response = browser.api("POST", "/sessions", {"desktop": "demo"})
                posts[index] = time.monotonic() - clicked
                view = response.json()
                queued[index] = view["state"] == "queued"
                while view["state"] in ("queued", "starting"):
                    view = browser.api("GET", f"/sessions/{view['id']}?wait=ready").json()
                if view["state"] != "ready":
                    raise AssertionError(view)
                readies[index] = time.monotonic() - begin

            threads = [threading.Thread(target=press, args=(i,)) for i in range(users)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return {
                "post_p50": statistics.median(posts) * 1000,
                "post_max": max(posts) * 1000,
                "first_ready": min(readies),
                "last_ready": max(readies),
                "queued": sum(queued),
                "pooled": len(re.findall(r"took pooled container", relay.log())),
                "fill": filled,
            }
        finally:
            relay.stop()
            # Its containers, and the homes its users' desktops made (kept on purpose by the relay).
            remove_leftovers(engine, relay)


def run(configs: Configs, columns: Columns, default_repeats: int, description: str | None = __doc__) -> None:
    """Parse --users and --repeats, run each configuration that often, interleaved, and print
    the medians as a table with the POST times, first and last ready, and `columns`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=default_repeats)
    args = parser.parse_args()
    engine = docker.from_env()
    chosen = {name.format(users=args.users): sections for name, sections in configs.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name, sections in chosen.items():
            results[name].append(run_once(args.users, pool_sized(sections, args.users), engine))
            print(name, results[name][-1], flush=True)
    print(f"\n{args.users} users pressing Start within 1 s; medians of {args.repeats} run(s)\n")
    print("| configuration | POST p50 / max, ms | first ready, s | last ready, s | " + " | ".join(columns) + " |")
    print("|---|---|---|---|" + "---|" * len(columns))
    for name, runs in results.items():
        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        print(f"| {name} | {med('post_p50'):.0f} / {med('post_max'):.0f} | {med('first_ready'):.2f} | "
              f"{med('last_ready'):.2f} | " + " | ".join(cell(med) for cell in columns.values()) + " |")


def pool_sized(sections: dict[str, dict[str, str]], users: int) -> dict[str, dict[str, str]]:
    """A configuration's sections with a pool_size of "{users}" made the class's size."""
    return {name: {key: value.format(users=users) for key, value in keys.items()} for name, keys in sections.items()}


if __name__ == "__main__":
    run(CONFIGS, {"queued": lambda med: f"{med('queued'):.0f}"}, default_repeats=2)
