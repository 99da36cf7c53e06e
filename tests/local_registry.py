"""A Docker registry of the tests' own on loopback (Debian's docker-registry, `serve CONFIG`), with
the demo desktop image pushed to it and its local tag removed again, so a pull has to fetch it.

Loopback registries are allowed without TLS by the engine's default (127.0.0.0/8 is insecure-
allowed). Installed by scripts/ensure-registry if missing; the tests skip, saying why, only when
that cannot install it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attr
import docker
import pytest
import requests
from relay_harness import IMAGE, ROOT, free_port

REGISTRY_BIN = Path("/usr/bin/docker-registry")


@attr.s(frozen=True, auto_attribs=True)
class LocalRegistry:
    address: str  # 127.0.0.1:PORT
    # The demo image as pushed there; not tagged on the engine until someone pulls it.
    image: str


def _ensure_installed() -> None:
    if REGISTRY_BIN.exists():
        return
    result = subprocess.run([str(ROOT / "scripts" / "ensure-registry")], capture_output=True, text=True)
    if result.returncode != 0 or not REGISTRY_BIN.exists():
        pytest.skip(f"docker-registry cannot be installed here: {(result.stderr or result.stdout).strip()}")


def _config(directory: Path, port: int) -> Path:
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    return config


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _ensure_installed()
    directory = tmp_path_factory.mktemp("registry")
    port = free_port()
    log = (directory / "registry.log").open("wb")
    process = subprocess.Popen([str(REGISTRY_BIN), "serve", str(_config(directory, port))],
                               stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    client = docker.from_env()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not start: {(directory / 'registry.log').read_text()}")
            time.sleep(0.1)
        repository = f"{address}/demo"
        client.images.get(IMAGE).tag(repository, "test")
        for line in client.images.push(repository, "test", stream=True, decode=True):
            assert "error" not in line, line
        client.images.remove(f"{repository}:test")
        yield LocalRegistry(address, f"{repository}:test")
    finally:
        for leftover in client.images.list(name=f"{address}/demo"):
            for tag in leftover.tags:
                client.images.remove(tag)
        client.close()
        process.terminate()
        process.wait(timeout=10)
        log.close()
