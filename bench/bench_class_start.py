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

from bench_burst_start import run

SESSIONS = {"max_total": "off", "max_starting": "100", "memory_budget": "off", "max_per_user": "2",
            "check_interval": "1s"}
CONFIGS = {
    "no pool": {"sessions": SESSIONS},
    "pool of {users}": {"sessions": SESSIONS, "desktop:demo": {"home": "none", "pool_size": "{users}"}},
}

if __name__ == "__main__":
    run(CONFIGS, {"from the pool": lambda med: f"{med('pooled'):.0f}",
                  "pool filled in, s": lambda med: f"{med('fill'):.1f}"}, default_repeats=1, description=__doc__)
