"""The warm pool with a real relay (twistd), the real Docker engine and the demo image: a start takes
a ready pooled container, and a relay restart neither loses one nor hands one out twice."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import docker
import pytest
from relay_harness import LABEL_INSTANCE, RelayProcess, vnc_handshake

pytestmark = [pytest.mark.docker, pytest.mark.slow]

POOL_LABEL = "org.desktop-relay.pool"


def pooled_running(client: docker.DockerClient, relay: RelayProcess) -> set[str]:
    return {c.id for c in client.containers.list(
        filters={"label": [f"{LABEL_INSTANCE}={relay.instance}", f"{POOL_LABEL}=yes"]})}


def wait_for_ready_pool(relay: RelayProcess, count: int, offset: int = 0, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(r"pool container \w+ of demo is ready", relay.log()[offset:])) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"the pool did not get {count} ready container(s):\n{relay.log()[offset:]}")


def taken_container(relay: RelayProcess, session_id: str) -> str:
    (short,) = re.findall(rf"session {re.escape(session_id)}: \w+ took pooled container (\w+)", relay.log())
    return short


def test_a_start_takes_a_pooled_container_and_a_restart_keeps_the_claim(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient,
) -> None:
    relay = relay_factory(sections={
        "desktop:demo": {"home": "none", "pool_size": "2"},
        "sessions": {"check_interval": "1s"},
    })
    wait_for_ready_pool(relay, 2)
    pooled = pooled_running(docker_client, relay)
    assert len(pooled) == 2

    alice = relay.client()
    alice.login("alice")
    began = time.monotonic()
    session = alice.start_desktop()
    assert time.monotonic() - began < 5  # no container start: the pool's was ready
    mine = taken_container(relay, session["id"])
    assert any(c.startswith(mine) for c in pooled)
    with alice.websocket(session["id"]) as ws:
        width, height, _ = vnc_handshake(ws)
        assert width > 0 and height > 0

    offset = len(relay.log())
    relay.restart()
    # The claimed container is still alice's, and still works.
    assert alice.api("GET", f"/sessions/{session['id']}").json()["state"] == "ready"
    with alice.websocket(session["id"]) as ws:
        vnc_handshake(ws)
    assert "removing pool container" not in relay.log()[offset:]

    bob = relay.client()
    bob.login("bob")
    other = bob.start_desktop()
    theirs = taken_container(relay, other["id"])
    assert theirs != mine and any(c.startswith(theirs) for c in pooled)
    # The pool refills to two unclaimed containers beside the two claimed ones.
    wait_for_ready_pool(relay, 2, offset)
    assert len(pooled_running(docker_client, relay)) == 4
