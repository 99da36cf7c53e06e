"""Image presence, pulls and the engine summary against the real engine and a registry of our own
on loopback (tests/local_registry.py): DockerProvisioner itself, and the admin API's pull streamed
over HTTP from it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_twisted
from fakes import TokenScopes, write_relay_ini
from local_registry import LocalRegistry
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from desktop_relay.config import load_config
from desktop_relay.engine import DockerProvisioner, docker_threadpool
from desktop_relay.engine.interface import ImagePullFailed
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.store import SQLiteStore
from desktop_relay.web.admin.desktops import DesktopsAdmin

pytestmark = pytest.mark.docker


@pytest.fixture
def threadpool() -> Iterator[ThreadPool]:
    pool = docker_threadpool(2)
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def provisioner(threadpool: ThreadPool) -> DockerProvisioner:
    from twisted.internet import reactor

    return DockerProvisioner(reactor=reactor, threadpool=threadpool, timeout=30)


@pytest.fixture
def unpulled(local_registry: LocalRegistry) -> Iterator[str]:
    """The registry's demo image, not on the engine before the test nor after it."""
    client = docker.from_env()

    def untag() -> None:
        try:
            client.images.remove(local_registry.image)
        except docker.errors.ImageNotFound:
            pass

    untag()
    yield local_registry.image
    untag()
    client.close()


@pytest_twisted.ensureDeferred
async def test_a_pull_from_a_local_registry_reports_progress_and_brings_the_image_back(
    provisioner: DockerProvisioner, unpulled: str
) -> None:
    assert await provisioner.image_present(unpulled) is False
    messages: list[dict[str, Any]] = []
    await provisioner.pull_image(unpulled, messages.append).done
    assert messages, "no progress was reported"
    assert any("Digest" in str(m.get("status")) for m in messages), messages
    assert await provisioner.image_present(unpulled) is True


@pytest_twisted.ensureDeferred
async def test_a_pull_of_an_image_the_registry_does_not_have_fails_with_its_reason(
    provisioner: DockerProvisioner, local_registry: LocalRegistry
) -> None:
    with pytest.raises(ImagePullFailed, match="not found|unknown"):
        await provisioner.pull_image(f"{local_registry.address}/nothing:here", lambda m: None).done


@pytest_twisted.ensureDeferred
async def test_the_engine_summary_of_the_real_engine(provisioner: DockerProvisioner) -> None:
    summary = await provisioner.engine_summary("no-such-instance")
    assert summary.version and summary.api_version and summary.api_version_used
    assert summary.memory > 2**28 and summary.cpus >= 1
    assert (summary.containers_running, summary.containers_all) == (0, 0)


@pytest_twisted.async_yield_fixture
async def admin_url(store: SQLiteStore, tmp_path: Path, provisioner: DockerProvisioner,
                    unpulled: str) -> AsyncIterator[str]:
    from twisted.internet import reactor

    config = load_config(write_relay_ini(tmp_path / "relay.ini", {"registry": {"image": unpulled}}))
    sessions = DesktopSessions(
        store=store, provisioner=provisioner, probe=lambda backend: defer.succeed(True), clock=reactor,
        desktops=config.desktops, instance="test", max_per_user=2, start_timeout=5, stop_timeout=1,
    )
    root = Resource()
    root.putChild(b"desktops", DesktopsAdmin(TokenScopes(), sessions, store, reactor).app.resource())
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_admin_pull_streams_the_engines_progress_from_a_local_registry(admin_url: str,
                                                                                unpulled: str) -> None:
    from twisted.internet import reactor

    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
    auth = {"Authorization": "Bearer write"}
    before = json.loads(await (await http.get(admin_url + "/desktops/registry", headers=auth)).content())
    assert before["image_present"] is False
    response = await http.post(admin_url + "/desktops/registry/pull", headers=auth)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/x-ndjson"]
    lines = [json.loads(line) for line in (await response.content()).decode().splitlines()]
    assert len(lines) > 2 and all("status" in line for line in lines)
    assert lines[-1] == {"status": "done", "desktop": "registry", "image": unpulled}
    after = json.loads(await (await http.get(admin_url + "/desktops/registry", headers=auth)).content())
    assert after["image_present"] is True


@pytest_twisted.ensureDeferred
async def test_a_pull_given_up_after_its_first_message_lets_its_thread_go(
    provisioner: DockerProvisioner, threadpool: ThreadPool, unpulled: str
) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import CancelledError
    from twisted.internet.task import deferLater

    messages: list[Any] = []
    pull = provisioner.pull_image(unpulled, lambda m: (messages.append(m), pull.stopProducing()))
    with pytest.raises(CancelledError):
        await pull.done
    assert len(messages) == 1
    for _ in range(200):
        if not threadpool.working:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert not threadpool.working
