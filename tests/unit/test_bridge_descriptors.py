"""Out of file descriptors, a new upgrade is refused with 503 and one log line before any
container connection is opened, and the open bridges keep working: proven under a really
lowered RLIMIT_NOFILE, in a process of its own (bridge_descriptors_child.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = Path(__file__).with_name("bridge_descriptors_child.py")


def test_upgrade_short_of_descriptors_is_refused_503_with_one_line_and_open_bridges_keep_working():
    run = subprocess.run([sys.executable, str(CHILD)], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["opened"] >= 1
    assert seen["refused"].startswith("HTTP/1.1 503 ")
    [line] = seen["lines"]
    assert "503 out of file descriptors" in line and "session s1, user pupil" in line
    # No half-open bridge: the refused one never reached the container nor the registry.
    assert seen["container_connections"] == seen["bridges"] == seen["opened"]
    assert seen["echoes"] == [f"still here {i}" for i in range(seen["opened"])]
