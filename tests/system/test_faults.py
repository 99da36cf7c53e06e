"""Faults against the relay as twistd and the real engine: a container killed or out of memory,
the relay killed or stopped, the engine restarted, the queue, idle and disconnected users.
Nothing is lost and everyone is told: the session says why it ended, its browsers are closed
with the reason, the next start gets a working desktop.

reconcile_interval is 30 s on purpose: what must happen within seconds is the event stream's
doing, not the periodic reconcile's. The engine restart uses a dockerd of the tests' own
(tests/private_engine.py); the machine's engine is never stopped.

A relay costs seconds to start, so tests share one per configuration, each with users of its
own; whatever a test leaves running is stopped after it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from private_engine import PrivateEngine, cached_data_root
from relay_harness import IMAGE, Browser, RelayProcess, remove_leftovers, vnc_handshake
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.sync.client import ClientConnection

from desktop_relay.lifecycle.reasons import END_REASONS

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL_SESSION = "org.desktop-relay.session"
CLOSE_SESSION_STOPPED = 4000
ENDED = ("stopped", "failed")
ACTIVE = ("queued", "starting", "ready", "interrupted")
# What must happen within seconds is the event stream's doing; reconcile would take 30.
FAST = {"docker": {"reconcile_interval": "30s", "stop_timeout": "1s"},
        "sessions": {"check_interval": "0.5s", "activity_write_interval": "1s"}}


def desktop(**settings: str) -> dict[str, str]:
    return {"image": IMAGE, "title": "Test desktop", "groups": "*", "memory": "512m", "pids_limit": "256", **settings}


def sections(**extra: dict[str, str]) -> dict[str, dict[str, str]]:
    """FAST and more settings by section name."""
    merged = {name: dict(values) for name, values in FAST.items()}
    for name, values in extra.items():
        merged.setdefault(name, {}).update(values)
    return merged


# One relay for most tests: each desktop type a policy under test.
DESKTOPS = {
    "desktop:small": desktop(memory="64m"),
    "desktop:idle": desktop(idle_timeout="4s", idle_warning="2s", disconnect_grace="off", max_lifetime="off"),
    "desktop:grace": desktop(idle_timeout="off", disconnect_grace="2s", max_lifetime="off"),
}
USERS = {name: "pupils" for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina")}
QUEUERS = {name: "pupils" for name in ("alice", "bob", "carol")}


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_relays(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Callable[..., RelayProcess]]:
    """Like relay_factory, for relays that live as long as this module."""
    relays: list[RelayProcess] = []

    def make(**kwargs: Any) -> RelayProcess:
        relay = RelayProcess(tmp_path_factory.mktemp("relay"), **kwargs)
        relays.append(relay)
        relay.start()
        return relay

    yield make
    for relay in relays:
        relay.stop()
        remove_leftovers(docker_client, relay)


@pytest.fixture(scope="module")
def _relay(module_relays: Callable[..., RelayProcess]) -> RelayProcess:
    return module_relays(users=USERS, sections=sections(**DESKTOPS))


@pytest.fixture(scope="module")
def _queue_relay(module_relays: Callable[..., RelayProcess]) -> RelayProcess:
    return module_relays(users=QUEUERS, sections=sections(sessions={"max_total": "1"}))


def running(relay: RelayProcess) -> RelayProcess:
    # A test that failed while its relay was down leaves it down.
    if relay.process is None or relay.process.poll() is not None:
        relay.start()
    return relay


@pytest.fixture
def relay(_relay: RelayProcess) -> RelayProcess:
    """The module's relay: demo, small (64m), idle (4 s, warned 2 s before) and grace (2 s) desktops."""
    return running(_relay)


@pytest.fixture
def queue_relay(_queue_relay: RelayProcess) -> RelayProcess:
    """The module's relay with [sessions] max_total = 1, and alice, bob and carol."""
    return running(_queue_relay)


@pytest.fixture
def sign_in() -> Iterator[Callable[..., list[Browser]]]:
    """Sign users in; after the test every session they still have is stopped."""
    browsers: list[Browser] = []

    def sign_in(relay: RelayProcess, *users: str) -> list[Browser]:
        signed = []
        for user in users:
            browser = relay.client()
            browser.login(user)
            signed.append(browser)
        browsers.extend(signed)
        return signed

    yield sign_in
    for browser in browsers:
        running(browser.relay)
        for session in browser.api("GET", "/sessions").json():
            if session["state"] in ACTIVE:
                browser.api("DELETE", f"/sessions/{session['id']}")


# -- helpers -----------------------------------------------------------------------------------


def view(browser: Browser, sid: str) -> dict[str, Any]:
    response = browser.api("GET", f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def await_view(browser: Browser, sid: str, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """Poll the session every 0.1 s until `done` holds; fails with the last view after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        current = view(browser, sid)
        if done(current):
            return current
        assert time.monotonic() < deadline, f"not within {timeout}s: {current}"
        time.sleep(0.1)


def press_start(browser: Browser, name: str = "demo") -> dict[str, Any]:
    """POST a start as the dashboard does; it must answer at once, whatever the engine is doing."""
    began = time.monotonic()
    response = browser.api("POST", "/sessions", {"desktop": name})
    # A sanity bound, not a benchmark: the answer must not wait for Docker.
    assert time.monotonic() - began < 1.0, "the start waited for the engine"
    assert response.status_code == 202, response.text
    return response.json()


def until_ready(browser: Browser, sid: str) -> dict[str, Any]:
    """Long-poll until the session is no longer queued or starting; it must then be ready."""
    response = browser.api("GET", f"/sessions/{sid}?wait=ready")
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["state"] == "ready", session
    return session


def start_ready(browser: Browser, name: str = "demo") -> dict[str, Any]:
    return until_ready(browser, press_start(browser, name)["id"])


def queue_of(browser: Browser, sid: str) -> tuple[str, int | None]:
    current = view(browser, sid)
    return current["state"], current.get("position")


def close_of(ws: ClientConnection, timeout: float = 10) -> Close:
    """Read until the relay closes the socket; the close frame it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd


def containers_of_session(client: docker.DockerClient, sid: str) -> list[str]:
    """The ids of a session's containers (a listing only: one may be removed at any moment)."""
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL_SESSION}={sid}"})]


def container_of_session(client: docker.DockerClient, sid: str) -> Any:
    (container_id,) = containers_of_session(client, sid)
    return client.containers.get(container_id)


def await_no_container(client: docker.DockerClient, sid: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while containers := containers_of_session(client, sid):
        assert time.monotonic() < deadline, f"container of {sid} left behind: {containers}"
        time.sleep(0.1)


def crash(relay: RelayProcess) -> None:
    """SIGKILL: no shutdown code runs, as with a power cut or the kernel's OOM killer."""
    assert relay.process is not None
    relay.process.send_signal(signal.SIGKILL)
    relay.process.wait(timeout=10)


def assert_store_consistent(relay: RelayProcess) -> None:
    """Nothing half-written: every session row is in a state it can be in, with what that state needs."""
    path = relay.directory / "var" / "relay.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [dict(row) for row in db.execute("SELECT * FROM desktop_sessions")]
    for row in rows:
        assert row["state"] in ("queued", "starting", "ready", "stopping", "stopped", "failed"), row
        if row["state"] == "queued":
            assert row["container_id"] is None, row
        if row["state"] == "ready":
            assert row["container_id"] and row["host_port"] and row["ready_at"], row
        if row["state"] in ENDED:
            assert row["end_reason"] in END_REASONS and row["reason"], row


# -- a container that dies ---------------------------------------------------------------------


def test_killed_container_ends_its_session_at_once_and_tells_its_browser(
    relay: RelayProcess, sign_in: Callable[..., list[Browser]], docker_client: docker.DockerClient
) -> None:
    (alice,) = sign_in(relay, "alice")
    sid = start_ready(alice)["id"]
    container = container_of_session(docker_client, sid)
    with alice.websocket(sid) as ws:
        vnc_handshake(ws)
        container.kill()
        ended = await_view(alice, sid, lambda v: v["state"] in ENDED, timeout=2)
        assert ended["end_reason"] == "container-exited"
        assert "crashed or was killed" in ended["reason"]
        close = close_of(ws)
        assert (close.code, close.reason) == (CLOSE_SESSION_STOPPED, ended["reason"])
    # The next start is a new desktop, never the dead one handed back.
    again = press_start(alice)
    assert again["id"] != sid
    await_no_container(docker_client, sid)
    until_ready(alice, again["id"])


def test_container_out_of_memory_ends_its_session_saying_so(
    relay: RelayProcess, sign_in: Callable[..., list[Browser]], docker_client: docker.DockerClient
) -> None:
    (bob,) = sign_in(relay, "bob")
    sid = start_ready(bob, "small")["id"]
    container = container_of_session(docker_client, sid)
    # A process in the desktop eats memory. The kernel kills the process it scores worst, and
    # the container ends only if that is its main process: an exec'd hog alone would be killed
    # and the desktop would live on. Marking PID 1 as the first to go makes that certain.
    result = container.exec_run(["sh", "-c", "echo 1000 > /proc/1/oom_score_adj; exec tail /dev/zero"])
    assert result.exit_code == 137, result
    ended = await_view(bob, sid, lambda v: v["state"] in ENDED, timeout=3)
    assert ended["end_reason"] == "out-of-memory", ended
    assert "out of memory" in ended["reason"]
    await_no_container(docker_client, sid)


# -- the relay killed or stopped ---------------------------------------------------------------


@pytest.mark.parametrize("stop", [crash, RelayProcess.stop], ids=["SIGKILL", "SIGTERM"])
def test_relay_restart_keeps_sessions_their_containers_and_a_start_in_flight(
    relay: RelayProcess, sign_in: Callable[..., list[Browser]], docker_client: docker.DockerClient,
    stop: Callable[[RelayProcess], None],
) -> None:
    carol, dave = sign_in(relay, "carol", "dave")
    sid = start_ready(carol)["id"]
    container = container_of_session(docker_client, sid)
    with carol.websocket(sid) as ws:
        vnc_handshake(ws)
        # Dave presses Start just before the relay goes: his start is in flight.
        starting = press_start(dave)["id"]
        stop(relay)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
    assert_store_consistent(relay)
    relay.start()
    # Same session, same container, and the web client's reconnect reaches it.
    assert view(carol, sid)["state"] == "ready"
    assert containers_of_session(docker_client, sid) == [container.id]
    with carol.websocket(sid) as ws:
        vnc_handshake(ws)
    # The interrupted start is finished, with one container, not two.
    until_ready(dave, starting)
    assert len(containers_of_session(docker_client, starting)) == 1
    assert_store_consistent(relay)


# -- capacity and the queue --------------------------------------------------------------------


def test_starts_beyond_the_limit_wait_in_order_and_move_up_as_desktops_stop(
    queue_relay: RelayProcess, sign_in: Callable[..., list[Browser]],
) -> None:
    alice, bob, carol = sign_in(queue_relay, "alice", "bob", "carol")
    first = start_ready(alice)["id"]
    second, third = press_start(bob), press_start(carol)
    assert (second["state"], second["position"]) == ("queued", 1)
    assert (third["state"], third["position"]) == ("queued", 2)

    alice.api("DELETE", f"/sessions/{first}")
    until_ready(bob, second["id"])
    assert queue_of(carol, third["id"]) == ("queued", 1)


def test_queue_survives_a_relay_crash_in_order(
    queue_relay: RelayProcess, sign_in: Callable[..., list[Browser]],
) -> None:
    alice, bob, carol = sign_in(queue_relay, "alice", "bob", "carol")
    first = start_ready(alice)["id"]
    second, third = press_start(bob)["id"], press_start(carol)["id"]

    crash(queue_relay)
    assert_store_consistent(queue_relay)
    queue_relay.start()
    assert view(alice, first)["state"] == "ready"
    assert queue_of(bob, second) == ("queued", 1)
    assert queue_of(carol, third) == ("queued", 2)

    # Draining goes on in the same order.
    alice.api("DELETE", f"/sessions/{first}")
    until_ready(bob, second)
    assert queue_of(carol, third) == ("queued", 1)
    bob.api("DELETE", f"/sessions/{second}")
    until_ready(carol, third)


# -- the engine restarted ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_engine(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[PrivateEngine]:
    """A dockerd of this module's own, with the desktop image, that tests may stop and start."""
    if os.geteuid() != 0:
        pytest.skip("a second Docker engine needs root")
    engine = PrivateEngine(tmp_path_factory.mktemp("engine"), cached_data_root())
    try:
        engine.start()
        # What a run that died left behind.
        engine.remove_containers()
        engine.load_image(docker_client, IMAGE)
        yield engine
    finally:
        engine.close()


@pytest.fixture
def engine(private_engine: PrivateEngine) -> Iterator[PrivateEngine]:
    """The private engine, running at the start of the test, and after it without containers and
    with its default settings."""
    if not private_engine.running:
        private_engine.start()
    yield private_engine
    if not private_engine.running:
        private_engine.start(live_restore=private_engine.live_restore)
    private_engine.remove_containers()
    if private_engine.live_restore:
        private_engine.stop()
        private_engine.start()


def test_engine_restart_keeps_the_relay_answering_and_ends_what_it_lost(
    relay_factory: Callable[..., RelayProcess], sign_in: Callable[..., list[Browser]], engine: PrivateEngine,
) -> None:
    relay = relay_factory(sections=sections(docker={"url": engine.url}))
    alice, bob = sign_in(relay, "alice", "bob")
    lost = start_ready(alice)["id"]

    engine.stop()
    # Pages and the API keep answering; a ready desktop is no longer claimed to be.
    assert alice.get("/").status_code in (200, 302)
    assert alice.api("GET", "/sessions").status_code == 200
    interrupted = await_view(alice, lost, lambda v: v["state"] != "ready", timeout=3)
    assert interrupted["state"] == "interrupted", interrupted
    # The dead session is never handed back, and a start waits rather than failing.
    again = alice.api("POST", "/sessions", {"desktop": "demo"})
    assert again.status_code == 503 and again.headers["Retry-After"], again.text
    waiting = bob.api("POST", "/sessions", {"desktop": "demo"})
    assert waiting.status_code in (202, 503), waiting.text
    if waiting.status_code == 202:
        assert waiting.json()["state"] == "queued"
    else:
        assert waiting.headers["Retry-After"]

    engine.start()
    # Restart policy none: no container survives, and the session says the engine lost it.
    ended = await_view(alice, lost, lambda v: v["state"] in ENDED, timeout=15)
    assert ended["end_reason"] == "engine-lost", ended
    if waiting.status_code == 202:
        until_ready(bob, waiting.json()["id"])
    else:
        start_ready(bob)
    assert start_ready(alice)["id"] != lost
    assert '" 500 ' not in relay.log()


def test_engine_restart_with_live_restore_gives_back_the_desktops_that_survived(
    relay_factory: Callable[..., RelayProcess], sign_in: Callable[..., list[Browser]], engine: PrivateEngine,
) -> None:
    engine.stop()
    engine.start(live_restore=True)
    relay = relay_factory(sections=sections(docker={"url": engine.url}))
    (alice,) = sign_in(relay, "alice")
    kept = start_ready(alice)["id"]
    client = engine.client()
    try:
        container = container_of_session(client, kept)
        engine.stop()
        # The desktop runs on, but unreachable: its port went with the engine.
        await_view(alice, kept, lambda v: v["state"] == "interrupted", timeout=3)
        engine.start(live_restore=True)
        back = await_view(alice, kept, lambda v: v["state"] != "interrupted", timeout=15)
        assert back["state"] == "ready", back
        assert containers_of_session(client, kept) == [container.id]
    finally:
        client.close()
    # The web client's reconnect reaches the same desktop.
    with alice.websocket(kept) as ws:
        vnc_handshake(ws)


# -- idle and disconnected users ---------------------------------------------------------------


def framebuffer_update_request(width: int, height: int) -> bytes:
    """What a VNC client sends every moment, whether or not anyone is there."""
    return struct.pack(">BBHHHH", 3, 1, 0, 0, width, height)


def key_event(down: bool) -> bytes:
    """A person pressing (or releasing) Shift."""
    return struct.pack(">BBxxI", 4, int(down), 0xFFE1)


def exchange(ws: ClientConnection, message: bytes | None = None) -> Close | None:
    """Send a message (if any) and read what the desktop sent so far; the relay's close frame
    once it closed the socket."""
    try:
        if message is not None:
            ws.send(message)
        while True:
            ws.recv(timeout=0)
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd


def test_idle_desktop_is_warned_then_stopped_and_a_typing_user_is_not(
    relay: RelayProcess, sign_in: Callable[..., list[Browser]],
) -> None:
    erin, frank = sign_in(relay, "erin", "frank")
    nobody, typist = press_start(erin, "idle")["id"], press_start(frank, "idle")["id"]
    ready_at = until_ready(erin, nobody)["ready_at"]
    until_ready(frank, typist)
    with erin.websocket(nobody) as screen, frank.websocket(typist) as keyboard:
        vnc_handshake(keyboard)
        width, height, _ = vnc_handshake(screen)
        typing_since = time.monotonic()
        warnings: list[dict[str, Any]] = []
        closed: Close | None = None
        tick = 0
        # 0.1 s ticks: the screen asks for updates every 0.2 s, the typist types every 0.5 s.
        while closed is None or time.monotonic() < typing_since + 6:
            assert tick < 100, "the idle desktop was not stopped within 10 s"
            if closed is None:
                closed = exchange(screen, framebuffer_update_request(width, height) if tick % 2 == 0 else None)
                warning = view(erin, nobody)["warning"] if tick % 2 == 1 else None
                if warning is not None:
                    warnings.append(warning)
            typed = key_event(down=tick % 10 == 0) if tick % 5 == 0 else None
            assert exchange(keyboard, typed) is None, "the typing user's desktop was closed"
            time.sleep(0.1)
            tick += 1
    stopped = view(erin, nobody)
    assert (stopped["state"], stopped["end_reason"]) == ("stopped", "idle"), stopped
    assert warnings and {w["reason"] for w in warnings} == {"idle"}, warnings
    assert abs(warnings[0]["at"] - (ready_at + 4)) < 1, (warnings[0], ready_at)
    assert (closed.code, closed.reason) == (CLOSE_SESSION_STOPPED, stopped["reason"])
    kept = view(frank, typist)
    assert (kept["state"], kept["warning"]) == ("ready", None), kept


def test_desktop_without_a_browser_is_stopped_after_the_grace(
    relay: RelayProcess, sign_in: Callable[..., list[Browser]], docker_client: docker.DockerClient
) -> None:
    (gina,) = sign_in(relay, "gina")
    sid = start_ready(gina, "grace")["id"]
    with gina.websocket(sid) as ws:
        width, height, _ = vnc_handshake(ws)
        # Connected for longer than the grace: that keeps it, input or not.
        for _ in range(15):
            assert exchange(ws, framebuffer_update_request(width, height)) is None
            time.sleep(0.2)
        assert view(gina, sid)["state"] == "ready"
    gone = time.monotonic()
    ended = await_view(gina, sid, lambda v: v["state"] in ENDED, timeout=5)
    assert ended["end_reason"] == "disconnected", ended
    # Not before the grace (less the reaper's 0.5 s tick).
    assert time.monotonic() - gone >= 1.4
    await_no_container(docker_client, sid)
