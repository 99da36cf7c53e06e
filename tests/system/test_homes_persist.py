"""Homes through the relay as twistd with the real Docker engine: a file a pupil saves is in their
next desktop, also after a relay restart; another pupil never sees it; a share is read-only
inside; the usage reaches the API and the quota warning; an admin deletes a home only once no
desktop uses it, and the audit says so."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from relay_harness import LABEL_INSTANCE, Browser, RelayProcess, subprocess_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def container_of(docker_client: docker.DockerClient, session_id: str) -> Any:
    (container,) = docker_client.containers.list(filters={"label": f"org.desktop-relay.session={session_id}"})
    return container


def run(docker_client: docker.DockerClient, session_id: str, script: str) -> tuple[int, str]:
    """A shell line in the session's desktop, as the pupil (uid 1000)."""
    result = container_of(docker_client, session_id).exec_run(["sh", "-c", script])
    return result.exit_code, result.output.decode()


def stop(browser: Browser, session_id: str) -> None:
    response = browser.api("DELETE", f"/sessions/{session_id}")
    assert response.status_code == 200 and response.json()["state"] == "stopped", response.text


def create_token(relay: RelayProcess, name: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "desktop_relay.admin", "token", "create", name, "--scope", "write",
         "--config", str(relay.config_path)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=True,
    )
    return made.stdout.strip()


def admin_call(relay: RelayProcess, method: str, path: str, token: str) -> requests.Response:
    return requests.request(method, relay.url + "/api/admin" + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=60)


@pytest.fixture
def school(relay_factory: Callable[..., RelayProcess], tmp_path: Path) -> tuple[RelayProcess, Path]:
    """A relay whose demo desktop has a 1 MiB home quota, measured every second, and a share."""
    shared = tmp_path / "shares" / "worksheets"
    shared.mkdir(parents=True)
    (shared / "sheet-1.txt").write_text("exercise 1\n")
    shared.chmod(0o777)
    relay = relay_factory(sections={
        "homes": {"share_roots": str(tmp_path / "shares"), "usage_interval": "1s"},
        "share:worksheets": {"path": str(shared), "groups": "pupils"},
        "desktop:demo": {"home_quota": "1m"},
    })
    return relay, shared


def test_a_saved_file_is_in_the_next_desktop_and_after_a_restart_and_no_one_elses(
    school: tuple[RelayProcess, Path], docker_client: docker.DockerClient
) -> None:
    relay, _ = school
    alice = relay.client()
    alice.login("alice")
    first = alice.start_desktop()["id"]
    assert run(docker_client, first, "echo 'my essay' > ~/essay.txt") == (0, "")
    stop(alice, first)

    second = alice.start_desktop()["id"]
    assert run(docker_client, second, "cat ~/essay.txt") == (0, "my essay\n")
    stop(alice, second)

    relay.restart()
    alice.login("alice")
    third = alice.start_desktop()["id"]
    assert run(docker_client, third, "cat ~/essay.txt; stat -c %u ~/essay.txt") == (0, "my essay\n1000\n")

    bob = relay.client()
    bob.login("bob")
    theirs = bob.start_desktop()["id"]
    status, output = run(docker_client, theirs, "ls -A ~; find /home /tmp -name essay.txt 2>/dev/null; true")
    assert status == 0 and "essay.txt" not in output
    homes = {m["Name"] for c in (container_of(docker_client, third), container_of(docker_client, theirs))
             for m in c.attrs["Mounts"] if m["Destination"] == "/home/kasm-user"}
    assert len(homes) == 2
    assert len(docker_client.volumes.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})) == 2
    assert "created home volume" in relay.log() and "Traceback" not in relay.log()


def test_a_share_is_read_only_and_a_full_home_is_warned_about(
    school: tuple[RelayProcess, Path], docker_client: docker.DockerClient
) -> None:
    relay, shared = school
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    assert run(docker_client, sid, "cat ~/Shared/worksheets/sheet-1.txt") == (0, "exercise 1\n")
    status, output = run(docker_client, sid, "echo x > ~/Shared/worksheets/answers.txt")
    assert status != 0 and "Read-only file system" in output
    assert sorted(p.name for p in shared.iterdir()) == ["sheet-1.txt"]

    assert run(docker_client, sid, "head -c 2000000 /dev/zero > ~/video.bin")[0] == 0
    deadline = time.monotonic() + 20
    view = alice.api("GET", f"/sessions/{sid}").json()
    while not view["home"]["over_quota"] and time.monotonic() < deadline:
        time.sleep(0.5)
        view = alice.api("GET", f"/sessions/{sid}").json()
    assert view["home"]["over_quota"] is True and view["home"]["quota"] == 2**20
    (home,) = alice.api("GET", "/homes").json()["items"]
    assert home["key"] == "default" and home["usage"] >= 2_000_000 and home["over_quota"] is True


def test_an_admin_deletes_a_home_once_no_desktop_uses_it(
    school: tuple[RelayProcess, Path], docker_client: docker.DockerClient
) -> None:
    relay, _ = school
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    run(docker_client, sid, "echo gone > ~/old.txt")
    token = create_token(relay, "ops")
    (home,) = admin_call(relay, "GET", "/users/alice/homes", token).json()["items"]
    assert home["used_by"] == [sid]

    refused = admin_call(relay, "DELETE", "/users/alice/homes/default", token)
    assert refused.status_code == 409 and refused.json()["type"].endswith(":home-in-use")
    stop(alice, sid)
    deleted = admin_call(relay, "DELETE", "/users/alice/homes/default", token)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["volume"] == home["volume"]
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(home["volume"])
    trail = admin_call(relay, "GET", "/audit?action=home.delete", token).json()["items"]
    assert [(line["actor"], line["target"]) for line in trail] == [("token:ops", "alice")]

    # The next desktop starts with a new, empty home.
    fresh = alice.start_desktop()["id"]
    assert run(docker_client, fresh, "ls ~/old.txt")[0] != 0
    assert f"home default of alice deleted by token:ops: volume {home['volume']}" in relay.log()
    assert "Traceback" not in relay.log()
