"""The admin API against the relay as twistd with the real Docker engine: a token made with the
admin command lists a pupil's real desktop and stops it; an admin in the browser stops a group's
desktops and signs a pupil out; the containers go, the sockets close, the audit says who."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import docker
import pytest
import requests
from relay_harness import RelayProcess, subprocess_env, vnc_handshake
from websockets.exceptions import ConnectionClosed

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def create_token(relay: RelayProcess, name: str, scope: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "desktop_relay.admin", "token", "create", name, "--scope", scope,
         "--config", str(relay.config_path)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=True,
    )
    return made.stdout.strip()


def admin_call(relay: RelayProcess, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, relay.url + "/api/admin" + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=60, **kwargs)


def test_a_token_from_the_admin_command_lists_and_stops_a_pupils_real_desktop(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    reader, writer = create_token(relay, "monitor", "read"), create_token(relay, "ops", "write")

    # Alice is a pupil: for her the admin API does not exist.
    assert alice.api("GET", "/admin/sessions").status_code == 404

    listed = admin_call(relay, "GET", "/sessions?state=ready&user=alice", reader)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["id"], item["owner"], item["desktop"]) == (sid, "alice", "demo")
    assert "vnc_password" not in item and "host_port" not in item
    (container,) = docker_client.containers.list(filters={"label": f"org.desktop-relay.session={sid}"})
    assert item["container_id"] == container.id

    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
        detail = admin_call(relay, "GET", f"/sessions/{sid}", reader).json()
        assert detail["connected_browsers"] == 1
        assert detail["bytes_to_browser"] > 0 and detail["bytes_to_container"] > 0

        refused = admin_call(relay, "DELETE", f"/sessions/{sid}", reader)
        assert refused.status_code == 403 and refused.json()["type"].endswith("insufficient-scope")
        assert docker_client.containers.list(filters={"label": f"org.desktop-relay.session={sid}"})

        stopped = admin_call(relay, "DELETE", f"/sessions/{sid}", writer)
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["state"] == "stopped" and stopped.json()["end_reason"] == "admin"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000

    assert docker_client.containers.list(all=True, filters={"label": f"org.desktop-relay.session={sid}"}) == []
    again = admin_call(relay, "DELETE", f"/sessions/{sid}", writer)
    assert again.status_code == 409 and again.json()["type"].endswith("already-ended")
    assert alice.api("GET", f"/sessions/{sid}").json()["reason"] == "Stopped by an administrator."

    subprocess.run([sys.executable, "-m", "desktop_relay.admin", "token", "revoke", "ops",
                    "--config", str(relay.config_path)], check=True, env=subprocess_env(), capture_output=True)
    revoked = admin_call(relay, "GET", "/sessions", writer)
    assert revoked.status_code == 401 and revoked.headers["WWW-Authenticate"].startswith("Bearer")

    database = relay.directory / "var" / "relay.sqlite3"
    trail = sqlite3.connect(database).execute("SELECT actor, action, target FROM audit ORDER BY id").fetchall()
    assert ("token:ops", "admin-stop", sid) in trail and ("token:ops", "stop", sid) in trail
    assert "Traceback" not in relay.log()


def test_an_admin_in_the_browser_stops_a_groups_desktops_and_signs_a_pupil_out(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient
) -> None:
    relay = relay_factory(users={"alice": "pupils,7b", "bob": "pupils,7c", "root": "staff,admins"},
                          sections={"roles": {"admin_groups": "admins"}})
    alice, bob, root = relay.client(), relay.client(), relay.client()
    for browser, user in ((alice, "alice"), (bob, "bob"), (root, "root")):
        browser.login(user)
    alice_sid, bob_sid = alice.start_desktop()["id"], bob.start_desktop()["id"]

    users = root.api("GET", "/admin/users").json()["items"]
    assert {u["id"]: u["role"] for u in users} == {"alice": "pupil", "bob": "pupil", "root": "admin"}
    assert root.api("GET", "/admin/users/alice").json()["groups"] == ["7b", "pupils"]

    # A page of another site cannot make the admin's browser stop anything.
    root.origin = "https://evil.example"
    assert root.api("POST", "/admin/sessions/stop", {"group": "7b"}).status_code == 403
    root.origin = relay.url
    stopped = root.api("POST", "/admin/sessions/stop", {"group": "7b"})
    assert stopped.status_code == 200 and stopped.json() == {"stopped": [alice_sid], "stopping": []}
    assert docker_client.containers.list(all=True, filters={"label": f"org.desktop-relay.session={alice_sid}"}) == []
    assert docker_client.containers.list(filters={"label": f"org.desktop-relay.session={bob_sid}"})

    with bob.websocket(bob_sid) as ws:
        vnc_handshake(ws)
        signed_out = root.api("POST", "/admin/users/bob/sign-out")
        assert signed_out.status_code == 200
        assert signed_out.json() == {"user": "bob", "web_sessions_ended": 1, "connections_closed": 1}
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert bob.api("GET", "/me").status_code == 401

    trail = sqlite3.connect(relay.directory / "var" / "relay.sqlite3").execute(
        "SELECT actor, action, target FROM audit WHERE action LIKE 'admin-%' ORDER BY id").fetchall()
    assert trail == [("user:root", "admin-stop-many", "group:7b"), ("user:root", "admin-sign-out", "bob")]
