"""The relay as a real `twistd desktop-relay` process, against the real Docker engine and the
desktop image, with browser-like HTTP and WebSocket clients.

Loaded as a pytest plugin by tests/conftest.py, so every suite (system, Apache, OIDC) has the
fixtures `docker_client`, `relay_factory` and `relay`: pass extra relay.ini sections and users
to `relay_factory` rather than writing another launcher; import the helpers from here.
"""

from __future__ import annotations

import os
import resource
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")
PASSWORD = "correct horse battery"
READY_LINE = "desktop-relay ready at"
LABEL_INSTANCE = "org.desktop-relay.instance"
LABEL_FILES_INSTANCE = "org.desktop-relay.files-instance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd_command() -> list[str]:
    """twistd from the environment the tests run in, where the package is installed."""
    script = Path(sys.executable).parent / "twistd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twisted.scripts.twistd"]


def subprocess_env() -> dict[str, str]:
    """The environment for relay processes: the same desktop_relay the tests import."""
    import desktop_relay

    env = dict(os.environ)
    if Path(desktop_relay.__file__).is_relative_to(ROOT / "src"):
        # A development checkout: the plugin is found through the repository root on the path.
        # Under tox the installed package, plugin included, is used as it is.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")]))
    return env


def render_ini(sections: Mapping[str, Mapping[str, str]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = " + str(value).replace("\n", "\n    "))
        lines.append("")
    return "\n".join(lines)


# (user, groups) -> that account's password-file line, hashed (argon2, slow on purpose) once
# per test run rather than once per relay and user.
_ACCOUNT_LINES: dict[tuple[str, str], str] = {}


def write_accounts(path: Path, users: Mapping[str, str]) -> None:
    """A password file with these users (user -> comma-separated groups), all with PASSWORD,
    as `python -m desktop_relay.auth.local set` writes it."""
    from desktop_relay.auth.local import set_account

    for user, groups in users.items():
        if (user, groups) not in _ACCOUNT_LINES:
            scratch = path.with_name(f"{path.name}.{user}")
            set_account(scratch, user, PASSWORD, frozenset(g for g in groups.split(",") if g), user.title())
            (line,) = [line for line in scratch.read_text().splitlines() if line.startswith(user + ":")]
            _ACCOUNT_LINES[(user, groups)] = line
            scratch.unlink()
    if users:
        path.write_text("".join(_ACCOUNT_LINES[(user, groups)] + "\n" for user, groups in users.items()))
        path.chmod(0o600)


class RelayProcess:
    """One relay under test: its own directory, port, database, accounts and Docker instance label."""

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] = {"alice": "pupils", "bob": "pupils"},
        sections: Mapping[str, Mapping[str, str]] = {},
        port: int | None = None,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        """`nofile`: the (soft, hard) descriptor limits twistd starts with, as systemd's
        LimitNOFILE= would set them; the test runner's own otherwise."""
        self.directory = directory
        self.nofile = nofile
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.instance = "test-" + secrets.token_hex(4)
        self.log_path = directory / "relay.log"
        self.process: subprocess.Popen[bytes] | None = None
        etc = directory / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (directory / "var").mkdir(exist_ok=True)
        self.password_file = directory / "var" / "passwords"
        write_accounts(self.password_file, users)
        config: dict[str, dict[str, str]] = {
            "relay": {"listen": f"tcp:{self.port}:interface=127.0.0.1", "public_url": self.url,
                      "instance": self.instance, "database": str(directory / "var" / "relay.sqlite3")},
            "docker": {"start_timeout": "30s", "stop_timeout": "2s"},
            "auth": {"password_file": str(self.password_file)},
            # Each relay its own port: the default 9118 would be taken by the first.
            "metrics": {"listen": f"tcp:{self.metrics_port}:interface=127.0.0.1"},
            "desktop:demo": {"image": IMAGE, "title": "Demo desktop", "groups": "*", "memory": "512m",
                             "pids_limit": "256"},
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        self.config_path = etc / "relay.ini"
        self.config_path.write_text(render_ini(config))

    def start(self, timeout: float = 30) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(
            twistd_command() + ["-n", "--pidfile=", f"--logfile={self.log_path}",
                                "desktop-relay", "--config", str(self.config_path)],
            cwd=self.directory, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=self._set_limits,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"relay exited with {self.process.returncode}:\n{output}\n{self.log()}")
            if self.log_path.exists() and READY_LINE in self.log_path.read_text()[offset:]:
                return
            time.sleep(0.05)
        raise AssertionError(f"relay did not become ready within {timeout}s:\n{self.log()}")

    def _set_limits(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("relay did not stop within 20s of SIGTERM") from None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def client(self) -> Browser:
        return Browser(self)


class Browser:
    """What a browser does, with requests and a websockets client: cookie jar, Origin, redirects."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.http = requests.Session()
        self.origin = relay.url

    def login(self, user: str, password: str = PASSWORD) -> requests.Response:
        response = self.post_form("/login", {"username": user, "password": password})
        assert response.status_code == 303, response.text
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(self.relay.url + path, timeout=30, **kwargs)

    def post_form(self, path: str, data: Mapping[str, str]) -> requests.Response:
        return self.http.post(self.relay.url + path, data=data, headers={"Origin": self.origin},
                              allow_redirects=False, timeout=30)

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"Origin": self.origin} if method not in ("GET", "HEAD") else {}
        return self.http.request(method, self.relay.url + "/api" + path, json=body, headers=headers, timeout=60)

    def start_desktop(self, desktop: str = "demo", timeout: float = 30) -> dict[str, Any]:
        """Start a desktop and wait until the API says it is ready, as the dashboard does."""
        response = self.api("POST", "/sessions", {"desktop": desktop})
        assert response.status_code == 202, response.text
        session = response.json()
        deadline = time.monotonic() + timeout
        while session["state"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
            session = self.api("GET", f"/sessions/{session['id']}").json()
        assert session["state"] == "ready", session
        return session

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    def websocket(self, session_id: str, *, origin: str | None = "same", cookie: bool = True) -> ClientConnection:
        """Open the desktop's WebSocket through the relay the way Kasm's client does."""
        headers = {"Cookie": self.cookie_header} if cookie else {}
        return connect(
            f"ws://127.0.0.1:{self.relay.port}/desktop/{session_id}/websockify",
            origin=self.origin if origin == "same" else origin,
            subprotocols=["binary"],
            additional_headers=headers,
            open_timeout=20,
            max_size=None,
        )


def websocket_refusal(browser: Browser, session_id: str, **kwargs: Any) -> int:
    """The HTTP status with which the relay refuses an upgrade (fails the test on a 101)."""
    from websockets.exceptions import InvalidStatus

    try:
        with browser.websocket(session_id, **kwargs):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    raise AssertionError("the upgrade was accepted")


def vnc_handshake(ws: ClientConnection) -> tuple[int, int, bytes]:
    """Speak RFB 3.8 with security None; returns the screen size and the first framebuffer update."""
    assert ws.recv(timeout=10) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    types = ws.recv(timeout=10)
    assert 1 in types[1:], f"security None not offered: {types!r}"
    ws.send(b"\x01")
    assert ws.recv(timeout=10) == b"\x00\x00\x00\x00"
    ws.send(b"\x01")  # shared session
    init = ws.recv(timeout=10)
    width, height = struct.unpack(">HH", init[:4])
    # SetEncodings: raw only, so the update's pixels can be read without a decoder.
    ws.send(struct.pack(">BxHi", 2, 1, 0))
    ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    update = ws.recv(timeout=10)
    assert update[0] == 0, f"expected a FramebufferUpdate, got message type {update[0]}"
    return width, height, update


def remove_leftovers(docker_client: docker.DockerClient, relay: RelayProcess) -> None:
    """Remove a stopped relay's containers, then its users' homes (which outlive containers on purpose)."""
    label = {"label": f"{LABEL_INSTANCE}={relay.instance}"}
    # The files panel's containers carry an instance label of their own (files/containers.py).
    files = {"label": f"{LABEL_FILES_INSTANCE}={relay.instance}"}
    for container in [*docker_client.containers.list(all=True, filters=label),
                      *docker_client.containers.list(all=True, filters=files)]:
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters=label):
        volume.remove(force=True)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        client.ping()
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the desktop image {IMAGE} is missing: run scripts/build-desktop-image")
    except Exception as e:  # noqa: BLE001 - any failure here means the engine is not usable
        pytest.fail(f"no Docker engine reachable ({e}): run scripts/ensure-docker")
    yield client
    client.close()


@pytest.fixture
def relay_factory(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Callable[..., RelayProcess]]:
    """Make and start relays; all are stopped and their containers and home volumes removed after the test."""
    relays: list[RelayProcess] = []

    def make(**kwargs: Any) -> RelayProcess:
        relay = RelayProcess(tmp_path / f"relay{len(relays)}", **kwargs)
        relays.append(relay)
        relay.start()
        return relay

    yield make
    for relay in relays:
        relay.stop()
        remove_leftovers(docker_client, relay)


@pytest.fixture
def relay(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    """A running relay with two pupils, alice and bob, and the demo desktop."""
    return relay_factory()
