"""A Docker engine of the tests' own: a second dockerd with its own data root, sockets and bridge,
which a test may stop and start at will. The machine's engine serves others and is never touched.

Port publishing to 127.0.0.1 works without iptables: the engine's userland proxy (docker-proxy)
listens on the loopback port and forwards to the container on the private bridge.

Loading the desktop image into a fresh engine takes 10-20 s, and deleting its layers again
as long; so `cached_data_root` keeps one data root (images only) between runs, for one run at
a time, under ~/.cache/desktop-relay-tests or $DESKTOP_RELAY_TEST_ENGINE_CACHE.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import docker

# Private /24s tried for the bridge, one not already routed on this machine is taken.
_SUBNETS = [ipaddress.ip_network(f"10.213.{n}.0/24") for n in range(10, 250)]


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _mount_point(path: Path) -> bool:
    # os.path.ismount misses a directory bind-mounted on itself (same device).
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == str(path) for line in mounts)


# Locks on cached data roots, held until the test process ends.
_LOCKS: list[IO[str]] = []


def cached_data_root() -> Path | None:
    """The data root kept between runs, locked for this process; None if another run holds it."""
    default = Path.home() / ".cache" / "desktop-relay-tests" / "engine-data"
    root = Path(os.environ.get("DESKTOP_RELAY_TEST_ENGINE_CACHE", default))
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = open(root.with_name(root.name + ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    _LOCKS.append(lock)
    return root


def _free_subnet() -> ipaddress.IPv4Network:
    routed = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show")
    for subnet in _SUBNETS:
        if str(subnet.network_address).rsplit(".", 1)[0] + "." not in routed:
            return subnet
    raise RuntimeError("no free private subnet for the test engine's bridge")


class PrivateEngine:
    """A dockerd owned by the tests: `start`, `stop` (SIGTERM, as `systemctl stop docker` does),
    `start` again; `close` stops it and removes its bridge and data (except a `data_root` given
    to it, which is kept without its containers)."""

    def __init__(self, directory: Path, data_root: Path | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.data_root = data_root or directory / "data"
        self._keep_data = data_root is not None
        self.socket = directory / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = directory / "dockerd.log"
        self.bridge = "drt" + secrets.token_hex(4)
        self._subnet = _free_subnet()
        self.process: subprocess.Popen[bytes] | None = None
        self.live_restore = False
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self._subnet.network_address + 1}/{self._subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30, *, live_restore: bool = False) -> None:
        """Start the daemon and wait until it answers. With live_restore, as an admin may set in
        daemon.json, its containers keep running while it is stopped."""
        assert not self.running, "the engine is running"
        self.live_restore = live_restore
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    # Should the tests die without their teardown, the kernel sends dockerd
                    # SIGTERM: no engine of ours outlives the run.
                    "setpriv", "--pdeathsig", "TERM", "dockerd",
                    f"--data-root={self.data_root}",
                    f"--exec-root={self.directory / 'exec'}",
                    f"--pidfile={self.directory / 'docker.pid'}",
                    f"--host={self.url}",
                    f"--bridge={self.bridge}",
                    # The machine's engine owns the firewall; ours must leave it alone.
                    "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                    f"--cgroup-parent={self.bridge}",
                    # Containers have a second to stop when the engine does, as a restart would.
                    "--shutdown-timeout=1",
                    *(["--live-restore"] if live_restore else []),
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dockerd exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if self.socket.exists():
                client = self.client()
                try:
                    client.ping()
                    return
                except docker.errors.DockerException:
                    pass
                finally:
                    client.close()
            time.sleep(0.1)
        raise AssertionError(f"dockerd did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as a service manager stops the engine; its containers stop with it."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"dockerd did not stop within {timeout}s of SIGTERM") from None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)

    def load_image(self, source: docker.DockerClient, image: str) -> None:
        """Copy an image from another engine (no registry involved)."""
        wanted = source.images.get(image)
        client = self.client()
        try:
            try:
                if client.images.get(image).id == wanted.id:
                    return
            except docker.errors.ImageNotFound:
                pass
            client.images.load(b"".join(source.api.get_image(image)))
            # The image this one replaces, in a data root kept between runs.
            client.images.prune(filters={"dangling": True})
        finally:
            client.close()

    def remove_containers(self) -> None:
        client = self.client()
        try:
            for container in client.api.containers(all=True):
                try:
                    client.api.remove_container(container["Id"], force=True)
                except docker.errors.NotFound:
                    pass  # its relay removed it meanwhile
        finally:
            client.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stop the engine and take away everything it made."""
        try:
            if self.running:
                self.remove_containers()
        finally:
            try:
                self.stop()
            finally:
                # A live-restore engine leaves its data root mounted on itself, once per start.
                for _ in range(10):
                    if not _mount_point(self.data_root):
                        break
                    subprocess.run(["umount", str(self.data_root)], check=False, capture_output=True)
                subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)
                if not self._keep_data:
                    shutil.rmtree(self.data_root, ignore_errors=True)
                shutil.rmtree(self.directory / "exec", ignore_errors=True)
