"""DockerProvisioner against the real engine and the demo desktop image: the provisioner
contract, plus what only Docker can show (limits, loopback binding, readiness, crashes)."""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import docker
import pytest
import pytest_twisted
from provisioner_contract import ProvisionerContract, make_desktop, make_spec
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.threadpool import ThreadPool

from desktop_relay.backend import Backend, container_agent
from desktop_relay.config import DesktopType
from desktop_relay.containers import (
    LABEL_INSTANCE,
    LABEL_SESSION,
    ContainerEngineTimedOut,
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerInfo,
    ContainerStartFailed,
    IContainerProvisioner,
)
from desktop_relay.docker_provisioner import (
    DockerProvisioner,
    container_event_from_engine,
    container_info_from_inspect,
    docker_threadpool,
)
from desktop_relay.readiness import PROBE_TIMEOUT, probe_ready

IMAGE = os.environ.get("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")
DOCKER_SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """A synchronous client for checks and cleanup; fails clearly when Docker is not set up."""
    try:
        client = docker.from_env()
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} is missing: run scripts/build-desktop-image")
    except docker.errors.DockerException as e:
        pytest.fail(f"no Docker engine ({e}): run scripts/ensure-docker")
    yield client
    client.close()


@pytest.fixture
def threadpool() -> Iterator[ThreadPool]:
    pool = docker_threadpool(4)
    pool.start()
    yield pool
    pool.stop()


def remove_labelled(engine: docker.DockerClient, *instances: str) -> None:
    """Remove every container labelled with these relay instances, whatever their state."""
    for instance in instances:
        for container in engine.containers.list(
            all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}
        ):
            container.remove(force=True)


def unused_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.docker
class TestDockerProvisioner(ProvisionerContract):
    @pytest.fixture
    def provisioner(
        self,
        engine: docker.DockerClient,
        threadpool: ThreadPool,
        instance: str,
        other_instance: str,
    ) -> Iterator[DockerProvisioner]:
        yield DockerProvisioner(reactor, threadpool)
        remove_labelled(engine, instance, other_instance)

    @pytest.fixture(params=["unix:///nonexistent.sock", "closed-tcp-port"])
    def unreachable_provisioner(
        self, request: pytest.FixtureRequest, threadpool: ThreadPool
    ) -> DockerProvisioner:
        url = request.param
        if url == "closed-tcp-port":
            url = f"tcp://127.0.0.1:{unused_tcp_port()}"
        return DockerProvisioner(reactor, threadpool, url=url)

    @pytest.fixture
    def desktop(self, engine: docker.DockerClient) -> DesktopType:
        return make_desktop(IMAGE)


@pytest.fixture
def instance() -> str:
    return f"test-{os.urandom(5).hex()}"


@pytest.fixture
def provisioner(
    engine: docker.DockerClient, threadpool: ThreadPool, instance: str
) -> Iterator[DockerProvisioner]:
    yield DockerProvisioner(reactor, threadpool)
    remove_labelled(engine, instance)


async def wait_until_stopped(provisioner: IContainerProvisioner, container_id: str) -> ContainerInfo:
    deadline = time.monotonic() + 20
    while True:
        info = await provisioner.inspect(container_id)
        assert info is not None
        if not info.running or time.monotonic() > deadline:
            return info
        await deferLater(reactor, 0.1)


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_the_container_gets_the_desktops_limits_and_a_loopback_only_port(
    provisioner: DockerProvisioner, instance: str, engine: docker.DockerClient
) -> None:
    desktop = make_desktop(
        IMAGE,
        memory="768m",
        cpus=1.5,
        pids_limit=300,
        environment=MappingProxyType({"VNC_RESOLUTION": "1024x768"}),
    )
    spec = make_spec(instance, desktop)
    info = await provisioner.start(spec)
    attrs = engine.api.inspect_container(info.container_id)
    host = attrs["HostConfig"]
    assert host["ShmSize"] == 512 * 1024**2
    assert host["Memory"] == 768 * 1024**2
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 300
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert attrs["NetworkSettings"]["Ports"]["6901/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(info.host_port)}
    ]
    env = attrs["Config"]["Env"]
    assert f"VNC_PW={spec.vnc_password}" in env
    assert "VNC_RESOLUTION=1024x768" in env
    assert dict(spec.labels).items() <= attrs["Config"]["Labels"].items()
    assert instance in attrs["Name"] and spec.session_id[:12] in attrs["Name"]


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_the_demo_desktop_becomes_ready_within_seconds(
    provisioner: DockerProvisioner, instance: str
) -> None:
    agent = container_agent(reactor, PROBE_TIMEOUT)
    waits = []
    for _ in range(3):
        spec = make_spec(instance, make_desktop(IMAGE))
        began = time.monotonic()
        info = await provisioner.start(spec)
        assert info.host_port is not None
        backend = Backend("127.0.0.1", info.host_port, spec.vnc_password)
        while not await probe_ready(agent, backend, reactor):
            assert time.monotonic() - began < 10, "the desktop did not become ready in 10 s"
            await deferLater(reactor, 0.05)
        waits.append(time.monotonic() - began)
        wrong = Backend("127.0.0.1", info.host_port, "not-the-password")
        assert not await probe_ready(agent, wrong, reactor)
    print(f"start -> ready: {', '.join(f'{w:.2f}' for w in waits)} s; median {statistics.median(waits):.2f} s")


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_desktop_that_exits_at_once_is_reported_with_its_problem(
    provisioner: DockerProvisioner, instance: str
) -> None:
    broken = make_desktop(IMAGE, environment=MappingProxyType({"VNC_RESOLUTION": "huge"}))
    info = await provisioner.start(make_spec(instance, broken))
    stopped = await wait_until_stopped(provisioner, info.container_id)
    assert (stopped.running, stopped.status, stopped.exit_code) == (False, "exited", 1)
    assert stopped.problem == "exited with code 1"
    assert "VNC_RESOLUTION must be WIDTHxHEIGHT" in await provisioner.logs_tail(info.container_id, 5)
    [listed] = await provisioner.list_managed(instance)
    assert listed.problem == "exited with code 1"
    await provisioner.remove(info.container_id, 1)


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_container_that_cannot_start_is_removed_and_the_reason_given(
    engine: docker.DockerClient, threadpool: ThreadPool, instance: str
) -> None:
    port = unused_tcp_port()
    provisioner = DockerProvisioner(reactor, threadpool, port_range=(port, port))
    try:
        first = await provisioner.start(make_spec(instance, make_desktop(IMAGE)))
        assert first.host_port == port
        with pytest.raises(ContainerStartFailed) as failure:
            await provisioner.start(make_spec(instance, make_desktop(IMAGE)))
        assert str(failure.value).startswith("the container engine could not start the desktop: ")
        assert "already allocated" in str(failure.value) or "in use" in str(failure.value)
        assert [info.container_id for info in await provisioner.list_managed(instance)] == [
            first.container_id
        ]
    finally:
        remove_labelled(engine, instance)


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_the_provisioner_recovers_when_the_engine_appears_later(
    tmp_path: Path, threadpool: ThreadPool, engine: docker.DockerClient
) -> None:
    socket_path = tmp_path / "docker.sock"
    provisioner = DockerProvisioner(reactor, threadpool, url=f"unix://{socket_path}")
    with pytest.raises(ContainerEngineUnavailable) as failure:
        await provisioner.list_managed("nobody")
    assert str(failure.value) == (
        f"Docker engine unreachable at unix://{socket_path}: No such file or directory"
    )
    socket_path.symlink_to(DOCKER_SOCKET)
    assert await provisioner.list_managed("nobody") == []


@pytest_twisted.ensureDeferred
async def test_an_engine_that_never_answers_times_out_after_the_timeout(threadpool: ThreadPool) -> None:
    # A listening socket nobody accepts from: connections succeed, answers never come.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        provisioner = DockerProvisioner(reactor, threadpool, url=url, timeout=0.5)
        began = time.monotonic()
        with pytest.raises(ContainerEngineTimedOut) as failure:
            await provisioner.list_managed("nobody")
    assert str(failure.value) == f"Docker engine at {url} did not answer within 0.5 s (the [docker] timeout)"
    assert isinstance(failure.value, ContainerEngineUnavailable)
    assert 0.5 <= time.monotonic() - began < 1.5


def test_a_stopped_containers_problem_is_put_in_words() -> None:
    def state(**fields: object) -> dict:
        return {
            "Id": "c0ffee",
            "Config": {"Labels": {}, "Env": ["VNC_PW=secret", "OTHER=x=y"]},
            "State": {"Status": "exited", "ExitCode": 0, "OOMKilled": False, "Error": "", **fields},
        }

    assert container_info_from_inspect(state(ExitCode=2)).problem == "exited with code 2"
    assert container_info_from_inspect(state(ExitCode=137, OOMKilled=True)).problem == (
        "ran out of memory and was killed"
    )
    assert container_info_from_inspect(state(Status="created", Error="exec: \"x\": not found")).problem == (
        'the container engine reported: exec: "x": not found'
    )
    assert container_info_from_inspect(state(Status="created")).problem == "was created but never started"
    assert container_info_from_inspect(state(Status="dead")).exit_code == 0
    assert container_info_from_inspect(state()).vnc_password == "secret"
    running = container_info_from_inspect(state(Status="running"))
    assert (running.running, running.problem, running.exit_code, running.host_port) == (True, None, None, None)


def test_start_and_finish_times_and_the_oom_kill_are_read_from_the_engines_state() -> None:
    def inspected(**state: object) -> ContainerInfo:
        return container_info_from_inspect({"Id": "c0ffee", "Config": {}, "State": state})

    exited = inspected(
        Status="exited", ExitCode=137, OOMKilled=True,
        StartedAt="2024-05-01T07:30:00.123456789Z", FinishedAt="2024-05-01T07:31:00.5+02:00",
    )
    assert exited.oom_killed
    assert exited.started_at == pytest.approx(1714548600.123456789)
    assert exited.finished_at == pytest.approx(1714548600.123456789 + 60 - 7200 + 0.376543211)
    never = inspected(Status="created", StartedAt="0001-01-01T00:00:00Z", FinishedAt="0001-01-01T00:00:00Z")
    assert (never.oom_killed, never.started_at, never.finished_at) == (False, None, None)
    # Started again: the engine still reports the previous run's end.
    again = inspected(Status="running", StartedAt="2024-05-01T08:00:00Z", FinishedAt="2024-05-01T07:31:00Z")
    assert (again.started_at, again.finished_at) == (1714550400.0, None)


def test_an_engine_event_becomes_a_container_event() -> None:
    message = {
        "Type": "container", "Action": "die", "status": "die", "id": "c0ffee", "time": 1714548600,
        "timeNano": 1714548600123456789,
        "Actor": {"ID": "c0ffee", "Attributes": {"exitCode": "137", LABEL_SESSION: "s1", "name": "x"}},
    }
    assert container_event_from_engine(message) == ContainerEvent(
        container_id="c0ffee", session_id="s1", action="die", exit_code=137, at=pytest.approx(1714548600.123456789)
    )
    started = {"Type": "container", "Action": "start", "time": 1714548600, "Actor": {"ID": "c0ffee", "Attributes": {}}}
    assert container_event_from_engine(started) == ContainerEvent("c0ffee", "", "start", None, 1714548600.0)
    assert container_event_from_engine({"Type": "network", "Action": "connect", "Actor": {"ID": "n"}}) is None
