"""The relay as twistd: it raises its descriptor limit at start and says how many desktops that
allows, and relaying the web client's files writes nothing to the log at info level."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from relay_harness import RelayProcess

from desktop_relay.fdlimit import desktops_for

#: The web client's files a browser fetches when a desktop opens (Debian's noVNC in the image).
CLIENT_FILES = ("", "core/rfb.js", "core/websock.js", "core/util/events.js", "app/ui.js", "app/styles/base.css")


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_start_raises_the_soft_descriptor_limit_and_logs_the_desktops_it_allows(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    # What systemd gives a unit without LimitNOFILE= is 1024 soft; a low hard limit keeps the
    # test's arithmetic visible.
    relay = relay_factory(nofile=(256, 1000))
    assert relay.process is not None
    assert soft_nofile(relay.process.pid) == 1000
    line = f"file descriptor limit 1000 (soft limit was 256): room for {desktops_for(1000)} desktops"
    assert [x for x in relay.log().splitlines() if "file descriptor limit" in x] == [
        x for x in relay.log().splitlines() if x.endswith(line)
    ]
    assert line in relay.log()


def test_relayed_client_files_log_nothing_at_info(relay: RelayProcess) -> None:
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    # The first fetch of each file goes to the container, the second comes from the cache.
    before = len(relay.log().splitlines())
    requests = 0
    for _ in range(2):
        for name in CLIENT_FILES:
            response = alice.get(f"/desktop/{sid}/{name}")
            assert response.status_code == 200, name
            requests += 1
    time.sleep(0.5)  # what the relay logs reaches its file
    lines = relay.log().splitlines()[before:]
    assert not [x for x in relay.log().splitlines() if "_HTTP11ClientFactory" in x]
    info_and_above = [x for x in lines if "#debug]" not in x]
    assert len(info_and_above) / requests == 0, info_and_above
