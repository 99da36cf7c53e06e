"""A class presses Start: 30 users within one second, with a warm pool of 30 and without one.

Runs a real relay (twistd) against the local Docker engine and the demo image, once per
configuration, `--repeats` times each, interleaved. With the pool, the users press Start only once
the relay's log says that the whole pool is ready. Each user signs in first, then all press Start
within one second (spread evenly) and wait with the API's long-poll as the dashboard does. Reports
medians over the repeats of: POST answer time (p50/max), time from the first click to the first and
the last ready desktop, and how many starts took a pooled container.

    .venv/bin/python bench/bench_class_start.py                      # 30 users, 1 repeat: minutes
    .venv/bin/python bench/bench_class_start.py --users 3 --repeats 1  # a smoke run

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import docker  # noqa: E402
from relay_harness import LABEL_INSTANCE, RelayProcess  # noqa: E402

SESSIONS = {"max_total": "off", "max_starting": "100", "memory_budget": "off", "max_per_user": "2",
            "check_interval": "1s"}


def configs(users: int) -> dict[str, dict[str, dict[str, str]]]:
    return {
        "no pool": {"sessions": SESSIONS},
        f"pool of {users}": {"sessions": SESSIONS, "desktop:demo": {"home": "none", "pool_size": str(users)}},
    }


def wait_for_pool(relay: RelayProcess, size: int, timeout: float = 600) -> float:
    """Seconds until the relay's log says `size` pooled containers are ready."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if len(re.findall(r"pool container \w+ of demo is ready", relay.log())) >= size:
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"the pool of {size} was not ready within {timeout:g} s")


def run_once(users: int, sections: dict[str, dict[str, str]], engine: docker.DockerClient) -> dict[str, float]:
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
            posts = [0.0] * users
            readies = [0.0] * users
            begin = time.monotonic() + 0.2

            def press(index: int) -> None:
                browser = browsers[index]
                time.sleep(max(0.0, begin + index / users - time.monotonic()))
                clicked = time.monotonic()
                view = browser.api("POST", "/sessions", {"desktop": "demo"}).json()
                posts[index] = time.monotonic() - clicked
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
                "post_p50": statistics.median(posts) * 1000, "post_max": max(posts) * 1000,
                "first_ready": min(readies), "last_ready": max(readies),
                "pooled": len(re.findall(r"took pooled container", relay.log())), "fill": filled,
            }
        finally:
            relay.stop()
            for container in engine.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={relay.instance}"}):
                container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    engine = docker.from_env()
    chosen = configs(args.users)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name, sections in chosen.items():
            results[name].append(run_once(args.users, sections, engine))
            print(name, results[name][-1], flush=True)
    print(f"\n{args.users} users pressing Start within 1 s; medians of {args.repeats} run(s)\n")
    print("| configuration | POST p50 / max, ms | first ready, s | last ready, s | from the pool | pool filled in, s |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        print(f"| {name} | {med('post_p50'):.0f} / {med('post_max'):.0f} | {med('first_ready'):.2f} | "
              f"{med('last_ready'):.2f} | {med('pooled'):.0f} | {med('fill'):.1f} |")


if __name__ == "__main__":
    main()
