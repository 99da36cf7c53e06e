"""The spine end to end: twistd relay, real Docker engine, desktop container, real HTTP and WebSocket clients."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from relay_harness import (
    RelayProcess,
    subprocess_env,
    twistd_command,
    vnc_handshake,
    websocket_refusal,
)
from websockets.exceptions import ConnectionClosed

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def containers_of(docker_client: docker.DockerClient, relay: RelayProcess) -> list:
    return docker_client.containers.list(
        all=True, filters={"label": f"org.desktop-relay.instance={relay.instance}"}
    )


def test_user_reaches_their_desktop_and_gets_a_live_vnc_stream(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice = relay.client()
    alice.login("alice")
    assert [d["name"] for d in alice.api("GET", "/desktops").json()] == ["demo"]
    session = alice.start_desktop()
    sid = session["id"]
    assert len(sid) == 27  # 160 random bits
    assert session["url"] == f"/desktop/{sid}/"
    assert "vnc_password" not in session and "host_port" not in session

    (container,) = containers_of(docker_client, relay)
    assert container.labels["org.desktop-relay.owner"] == "alice"
    assert container.labels["org.desktop-relay.session"] == sid
    ports = container.attrs["NetworkSettings"]["Ports"]["6901/tcp"]
    assert {binding["HostIp"] for binding in ports} == {"127.0.0.1"}

    # The entry is the relay's session page; the web client, with the WebSocket path under the
    # session's prefix, is its frame.
    assert alice.get(f"/desktop/{sid}").status_code == 301
    entry = alice.get(f"/desktop/{sid}/")
    assert entry.status_code == 200 and "session.js" in entry.text
    assert session["client_url"] == (f"/desktop/{sid}/?path=desktop%2F{sid}%2Fwebsockify&autoconnect=1&resize=remote&reconnect=1"
                                  "&show_control_bar=1&idle_disconnect=100000")
    page = alice.get(session["client_url"])
    assert page.status_code == 200 and "noVNC" in page.text
    assert "www-authenticate" not in {h.lower() for h in page.headers}
    script = alice.get(f"/desktop/{sid}/core/rfb.js")
    assert script.status_code == 200 and "RFB" in script.text

    with alice.websocket(sid) as ws:
        assert ws.subprotocol == "binary"
        width, height, update = vnc_handshake(ws)
        assert (width, height) == (1280, 720)
        assert len(update) > 4


def test_other_users_and_bad_requests_are_refused_on_http_and_websocket(relay: RelayProcess) -> None:
    alice, bob, stranger = relay.client(), relay.client(), relay.client()
    alice.login("alice")
    bob.login("bob")
    sid = alice.start_desktop()["id"]
    unknown = "x" * 27

    # Bob is signed in, but it is not his session: it looks like no session at all.
    assert bob.get(f"/desktop/{sid}/").status_code == 404
    assert bob.get(f"/desktop/{sid}/vnc.html").status_code == 404
    assert bob.api("GET", f"/sessions/{sid}").status_code == 404
    assert bob.api("DELETE", f"/sessions/{sid}").status_code == 404
    assert websocket_refusal(bob, sid) == 404

    # No cookie: the entry page sends to sign-in, everything else is 401.
    assert stranger.get(f"/desktop/{sid}/").headers["Location"].startswith("/login?next=")
    assert stranger.get(f"/desktop/{sid}/vnc.html").status_code == 401
    assert stranger.api("GET", "/sessions").status_code == 401
    assert websocket_refusal(stranger, sid) == 401

    # The owner from a foreign page, or without the cookie, or for an unknown id.
    assert websocket_refusal(alice, sid, origin="https://evil.example") == 403
    assert websocket_refusal(alice, sid, origin=None) == 403
    assert websocket_refusal(alice, sid, cookie=False) == 401
    assert websocket_refusal(alice, unknown) == 404
    assert alice.get(f"/desktop/{unknown}/vnc.html").status_code == 404
    assert alice.get(f"/desktop/{sid}/vnc.html", headers={"Origin": "https://evil.example"}).status_code == 403

    problem = bob.api("GET", f"/sessions/{sid}").json()
    assert problem["type"] == "urn:desktop-relay:problem:no-such-session" and problem["status"] == 404
    assert "Traceback" not in relay.log()


def test_stopping_closes_the_stream_removes_the_container_and_refuses_later_requests(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
        stopped = alice.api("DELETE", f"/sessions/{sid}")
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert containers_of(docker_client, relay) == []
    assert alice.get(f"/desktop/{sid}/vnc.html").status_code == 410
    assert websocket_refusal(alice, sid) == 410
    # Starting again gives a new session, not the stopped one.
    assert alice.start_desktop()["id"] != sid


def test_signing_out_closes_the_stream_and_refuses_the_same_cookie_at_once(relay: RelayProcess) -> None:
    # The relay remembers granted upgrades (web/grants.py): a reconnect must still be refused
    # the moment the browser signed out, with the cookie it held before.
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    cookies = dict(alice.http.cookies.items())
    for _ in range(2):  # the second upgrade is answered from the remembered grant
        with alice.websocket(sid) as ws:
            vnc_handshake(ws)
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
        assert alice.post_form("/logout", {}).status_code in (200, 303)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    # The browser forgot the cookie at sign-out; someone who kept a copy gets nowhere with it.
    kept = relay.client()
    kept.http.cookies.update(cookies)
    assert websocket_refusal(kept, sid) == 401


def test_second_start_returns_the_running_session(relay: RelayProcess, docker_client: docker.DockerClient) -> None:
    alice = relay.client()
    alice.login("alice")
    first = alice.start_desktop()
    again = alice.api("POST", "/sessions", {"desktop": "demo"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert len(containers_of(docker_client, relay)) == 1


def test_bad_api_requests_get_precise_problems(relay: RelayProcess) -> None:
    alice = relay.client()
    alice.login("alice")
    url = relay.url + "/api/sessions"
    cases = [
        (dict(data="{", headers={"Content-Type": "application/json", "Origin": relay.url}), 400, "malformed-json"),
        (dict(json={"desk": "demo"}, headers={"Origin": relay.url}), 422, "invalid-request"),
        (dict(data="desktop=demo", headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": relay.url}), 415, "unsupported-media-type"),
        (dict(json={"desktop": "nope"}, headers={"Origin": relay.url}), 404, "no-such-desktop"),
        (dict(json={"desktop": "demo"}, headers={"Origin": "https://evil.example"}), 403, "cross-origin-request"),
        (dict(json={"desktop": "demo"}), 403, "cross-origin-request"),
    ]
    for kwargs, status, slug in cases:
        response = alice.http.post(url, timeout=10, **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["type"].endswith(slug)
    assert alice.api("GET", "/sessions").json() == []


def test_relay_restart_keeps_a_running_session_usable(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    (before,) = containers_of(docker_client, relay)
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
        relay.restart()
        # A relay shutting down tells its browsers to reconnect (1001), rather than dropping them.
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    (after,) = containers_of(docker_client, relay)
    assert after.id == before.id
    assert alice.api("GET", f"/sessions/{sid}").json()["state"] == "ready"
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)


def test_relay_that_lost_its_database_adopts_running_containers(
    relay: RelayProcess, docker_client: docker.DockerClient
) -> None:
    alice = relay.client()
    alice.login("alice")
    sid = alice.start_desktop()["id"]
    relay.stop()
    for path in (relay.directory / "var").glob("relay.sqlite3*"):
        path.unlink()
    relay.start()
    alice = relay.client()
    alice.login("alice")
    deadline = time.monotonic() + 20
    while (state := alice.api("GET", f"/sessions/{sid}").json().get("state")) != "ready":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
    assert len(containers_of(docker_client, relay)) == 1


def test_docker_unreachable_queues_starts_and_the_relay_keeps_serving(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(sections={"docker": {"url": "unix:///nonexistent/docker.sock"}})
    alice = relay.client()
    alice.login("alice")
    response = alice.api("POST", "/sessions", {"desktop": "demo"})
    # The start waits for the engine instead of failing; nothing was created.
    assert response.status_code == 202 and response.json()["state"] == "queued"
    assert response.json()["position"] == 1 and response.json()["engine"] == "unreachable"
    (session,) = alice.api("GET", "/sessions").json()
    assert session["state"] == "queued"
    # A second ask for the same desktop gives the same waiting session, not a second one.
    again = alice.api("POST", "/sessions", {"desktop": "demo"})
    assert again.status_code == 200 and again.json()["id"] == session["id"]
    assert alice.api("GET", "/desktops").status_code == 200
    assert relay.process.poll() is None
    assert "Docker engine unreachable at unix:///nonexistent/docker.sock" in relay.log()
    # Cancelling the waiting start works without the engine.
    cancelled = alice.api("DELETE", f"/sessions/{session['id']}").json()
    assert cancelled["state"] == "stopped" and cancelled["end_reason"] == "user"


def test_failed_start_leaves_a_failed_session_with_its_reason_and_no_container(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient
) -> None:
    relay = relay_factory(sections={"desktop:demo": {"environment": "VNC_RESOLUTION=huge"}})
    alice = relay.client()
    alice.login("alice")
    session = alice.api("POST", "/sessions", {"desktop": "demo"}).json()
    deadline = time.monotonic() + 20
    while session["state"] == "starting" and time.monotonic() < deadline:
        time.sleep(0.2)
        session = alice.api("GET", f"/sessions/{session['id']}").json()
    assert session["state"] == "failed"
    assert "exited with code" in session["reason"]
    # The session is marked failed first (so that no stop can race it), then its container goes.
    deadline = time.monotonic() + 10
    while containers_of(docker_client, relay) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert containers_of(docker_client, relay) == []


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(relay: RelayProcess) -> None:
    browser = relay.client()
    for _ in range(5):
        response = browser.post_form("/login", {"username": "alice", "password": "wrong"})
        assert response.status_code == 401 and "Wrong user name or password" in response.text
    throttled = browser.post_form("/login", {"username": "alice", "password": "wrong"})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "desktop-relay" not in browser.http.cookies.keys()


@pytest.mark.parametrize(
    "mistake, expected",
    [
        ("[relay]\nlisten = tcp:8080\n", "[relay] listen: listens beyond loopback"),
        ("[docker]\nthreds = 4\n", "[docker] threds: unknown key"),
        ("[desktop:demo]\nimage = x\ngroups = *\nmemory = lots\n", "[desktop:demo] memory: 'lots': must be a size"),
    ],
)
def test_configuration_errors_stop_start_up_with_one_line(tmp_path: Path, mistake: str, expected: str) -> None:
    config = tmp_path / "etc" / "relay.ini"
    config.parent.mkdir()
    config.write_text(mistake + ("[desktop:demo]\nimage = x\ngroups = *\n" if "desktop:" not in mistake else ""))
    result = subprocess.run(
        twistd_command() + ["-n", "--pidfile=", "desktop-relay", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 78
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"desktop-relay: configuration error: {config}: ")
    assert expected in line


def test_missing_password_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "relay.ini"
    config.parent.mkdir()
    config.write_text("[auth]\npassword_file = /nonexistent/passwords\n[desktop:demo]\nimage = x\ngroups = *\n")
    result = subprocess.run(
        twistd_command() + ["-n", "--pidfile=", "desktop-relay", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 78
    (line,) = result.stderr.strip().splitlines()
    assert "[auth] password_file" in line and "/nonexistent/passwords" in line



def test_unknown_pages_and_methods_are_problems_not_server_errors(relay: RelayProcess) -> None:
    alice = relay.client()
    alice.login("alice")
    missing = alice.get("/favicon.ico")
    assert missing.status_code == 404 and missing.json()["type"].endswith("no-such-page")
    wrong = alice.http.put(relay.url + "/api/sessions", json={}, headers={"Origin": relay.url}, timeout=10)
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]
    assert wrong.json()["type"].endswith("method-not-allowed")
    assert "Traceback" not in relay.log() and "Unhandled" not in relay.log()


def test_a_port_already_in_use_stops_the_relay_with_a_clear_log_line(relay_factory: Callable[..., RelayProcess]) -> None:
    first = relay_factory()
    second = RelayProcess(first.directory.parent / "second", port=first.port)
    with pytest.raises(AssertionError, match="relay exited"):
        second.start()
    assert f"cannot listen on tcp:{first.port}:interface=127.0.0.1" in second.log()
    assert "Address already in use" in second.log()
