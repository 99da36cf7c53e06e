"""relay.ini re-read by a running `twistd desktop-relay` on SIGHUP: a desktop added can be started
at once, a removed one cannot while its running session goes on, and a bad file keeps the running
settings with one log line."""

from __future__ import annotations

import signal
import time

import docker
import pytest
from relay_harness import IMAGE, LABEL_INSTANCE, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECOND = f"\n[desktop:second]\nimage = {IMAGE}\ntitle = Second desktop\ngroups = pupils\nmemory = 512m\n"


def hangup(relay: RelayProcess, expect: str) -> str:
    """Send SIGHUP and wait for the log line that says how the reload went; the log since."""
    assert relay.process is not None
    offset = len(relay.log())
    relay.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while expect not in relay.log()[offset:]:
        assert time.monotonic() < deadline, f"no {expect!r} after SIGHUP:\n{relay.log()[offset:]}"
        time.sleep(0.05)
    return relay.log()[offset:]


def test_sighup_adds_a_desktop_that_can_be_started_and_a_removed_one_keeps_running(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice, bob = relay.client(), relay.client()
    alice.login("alice")
    bob.login("bob")
    original = relay.config_path.read_text()
    assert [d["name"] for d in alice.api("GET", "/desktops").json()] == ["demo"]
    assert alice.api("POST", "/sessions", {"desktop": "second"}).status_code == 404

    relay.config_path.write_text(original + SECOND)
    log = hangup(relay, "reloaded by relay")
    assert "desktops added: second" in log
    assert [d["name"] for d in alice.api("GET", "/desktops").json()] == ["demo", "second"]
    session = alice.start_desktop("second")

    relay.config_path.write_text(original)
    assert "removed: second" in hangup(relay, "reloaded by relay")
    assert bob.api("POST", "/sessions", {"desktop": "second"}).status_code == 404
    assert alice.api("GET", f"/sessions/{session['id']}").json()["state"] == "ready"
    assert alice.get(f"/desktop/{session['id']}/").status_code == 200
    running = docker_client.containers.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})
    assert len(running) == 1
    assert alice.api("DELETE", f"/sessions/{session['id']}").json()["state"] == "stopped"


def test_sighup_with_a_bad_relay_ini_keeps_the_running_settings_and_logs_one_line(relay: RelayProcess) -> None:
    browser = relay.client()
    browser.login("alice")
    original = relay.config_path.read_text()
    relay.config_path.write_text(original.replace("memory = 512m", "memory = lots") + SECOND)
    log = hangup(relay, "not reloaded")
    lines = [line for line in log.splitlines() if "not reloaded" in line]
    assert len(lines) == 1
    assert lines[0].endswith(f"not reloaded, the running settings stay: {relay.config_path}: [desktop:demo] "
                             "memory: 'lots': must be a size such as 512m, 2g or 65536")
    assert "Traceback" not in relay.log()
    assert [d["name"] for d in browser.api("GET", "/desktops").json()] == ["demo"]

    relay.config_path.write_text(original + SECOND)
    hangup(relay, "reloaded by relay")
    assert [d["name"] for d in browser.api("GET", "/desktops").json()] == ["demo", "second"]
    assert relay.process is not None and relay.process.poll() is None
