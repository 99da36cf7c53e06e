"""DockerProvisioner against the real engine and the demo desktop image: the provisioner
contract, plus what only Docker can show (limits, loopback binding, readiness, crashes, out of
memory), and engine faults through a proxy the test cuts or freezes (tests/integration/engine_proxy.py)."""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import docker
import pytest
import pytest_twisted
from engine_proxy import EngineProxy
from provisioner_contract import EventRecorder, ProvisionerContract, make_desktop, make_spec
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool

from desktop_relay.backend import Backend, container_agent
from desktop_relay.config import DesktopType
from desktop_relay.engine import DockerProvisioner, docker_threadpool
from desktop_relay.engine._docker_common import container_event_from_engine, container_info_from_inspect
from desktop_relay.engine.interface import (
    LABEL_INSTANCE,
    LABEL_SESSION,
    ContainerEngineTimedOut,
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerInfo,
    ContainerStartFailed,
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
    def kill_from_outside(self, engine: docker.DockerClient) -> Callable[[str], None]:
        return engine.api.kill


@pytest.fixture
def instance() -> str:
    return f"test-{os.urandom(5).hex()}"


@pytest.fixture
def provisioner(
    engine: docker.DockerClient, threadpool: ThreadPool, instance: str
) -> Iterator[DockerProvisioner]:
    yield DockerProvisioner(reactor, threadpool)
    remove_labelled(engine, instance)


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
async def test_a_desktop_that_exits_at_once_is_announced_and_reported_with_its_problem(
    provisioner: DockerProvisioner, instance: str
) -> None:
    seen = EventRecorder()
    follower = seen.follow(provisioner, instance)
    await seen.until(lambda: seen.connections)
    broken = make_desktop(IMAGE, environment=MappingProxyType({"VNC_RESOLUTION": "huge"}))
    info = await provisioner.start(make_spec(instance, broken))
    await seen.until(lambda: "die" in seen.of(info.container_id))
    assert seen.event(info.container_id, "die").exit_code == 1
    await follower.stop()
    stopped = await provisioner.inspect(info.container_id)
    assert stopped is not None
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


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_an_out_of_memory_kill_is_announced_and_inspected_as_such(
    provisioner: DockerProvisioner, instance: str, engine: docker.DockerClient
) -> None:
    # ContainerSpec has no command: the starving container is made with docker-py, labelled
    # as ours, and only seen through the provisioner.
    seen = EventRecorder()
    follower = seen.follow(provisioner, instance)
    await seen.until(lambda: seen.connections)
    container = await deferToThread(
        engine.containers.run, IMAGE, ["/dev/zero"], entrypoint=["tail"], mem_limit="16m",
        memswap_limit="16m", labels={LABEL_INSTANCE: instance, LABEL_SESSION: "starved"}, detach=True,
    )
    await seen.until(lambda: "die" in seen.of(container.id))
    assert seen.of(container.id) == ["create", "start", "oom", "die"]
    died = seen.event(container.id, "die")
    assert (died.exit_code, died.session_id) == (137, "starved")
    await follower.stop()
    info = await provisioner.inspect(container.id)
    assert info is not None
    assert (info.oom_killed, info.exit_code, info.problem) == (True, 137, "ran out of memory and was killed")


# -- engine faults, with a proxy of the test's own between the provisioner and the engine ----


# Short, so that hung-engine tests take seconds; long enough for a create on a busy machine.
PROXIED_TIMEOUT = 2
TIMED_OUT = "did not answer within 2 s (the [docker] timeout)"


@pytest_twisted.async_yield_fixture
async def proxy() -> AsyncIterator[EngineProxy]:
    proxy = EngineProxy(reactor, DOCKER_SOCKET)
    proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def proxied(
    engine: docker.DockerClient, threadpool: ThreadPool, proxy: EngineProxy, instance: str
) -> Iterator[DockerProvisioner]:
    """A provisioner that reaches the engine through `proxy`, with a short timeout."""
    yield DockerProvisioner(reactor, threadpool, url=proxy.url, timeout=PROXIED_TIMEOUT, leftover_watch=10)
    remove_labelled(engine, instance)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line written during the test."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_lost_event_stream_is_told_once_and_followed_again_when_the_engine_is_back(
    proxied: DockerProvisioner, provisioner: DockerProvisioner, proxy: EngineProxy, instance: str, logged: list[str]
) -> None:
    seen = EventRecorder()
    follower = seen.follow(proxied, instance)
    await seen.until(lambda: seen.connections)
    proxy.cut()
    await seen.until(lambda: seen.losses, timeout=2)
    assert seen.losses == ["the engine closed the event stream"]
    # The first retry, 0.5 s after the loss, is refused; the owner is not told again.
    await deferLater(reactor, 0.7)
    assert proxy.refused >= 1
    proxy.restore()
    # The second retry comes 1 s after the first.
    await seen.until(lambda: seen.connections == 2, timeout=3)
    # Started past the proxy: only the stream is under test.
    info = await provisioner.start(make_spec(instance, make_desktop(IMAGE)))
    await seen.until(lambda: "start" in seen.of(info.container_id))
    await follower.stop()
    assert len(seen.losses) == 1
    assert len([line for line in logged if "lost Docker's event stream" in line]) == 1
    assert len([line for line in logged if "again, after" in line]) == 1


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_hung_engine_fails_a_request_within_the_timeout_and_keeps_the_event_stream(
    proxied: DockerProvisioner, provisioner: DockerProvisioner, proxy: EngineProxy, instance: str
) -> None:
    seen = EventRecorder()
    follower = seen.follow(proxied, instance)
    await seen.until(lambda: seen.connections)
    proxy.freeze()
    began = time.monotonic()
    with pytest.raises(ContainerEngineTimedOut) as failure:
        await proxied.inspect("0123456789ab")
    assert PROXIED_TIMEOUT <= time.monotonic() - began < PROXIED_TIMEOUT + 1
    assert str(failure.value) == f"Docker engine at {proxy.url} {TIMED_OUT}"
    proxy.thaw()
    # Silent for longer than the timeout, the stream is still the same one, and still works.
    info = await provisioner.start(make_spec(instance, make_desktop(IMAGE)))
    await seen.until(lambda: "start" in seen.of(info.container_id))
    assert (seen.connections, seen.losses) == (1, [])
    await follower.stop()


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_container_the_engine_creates_after_its_start_timed_out_is_removed(
    proxied: DockerProvisioner, proxy: EngineProxy, instance: str, engine: docker.DockerClient, logged: list[str]
) -> None:
    spec = make_spec(instance, make_desktop(IMAGE))
    await proxied.list_managed(instance)
    proxy.freeze()
    began = time.monotonic()
    with pytest.raises(ContainerEngineTimedOut):
        await proxied.start(spec)
    assert time.monotonic() - began < PROXIED_TIMEOUT + 1
    proxy.thaw()
    await proxied.when_swept()
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={spec.session_id}"}) == []
    # It was there to be removed: the engine did carry out the abandoned create.
    assert [line for line in logged if f"of session {spec.session_id}: the engine created it after" in line]
    print(f"timed-out start -> leftover removed: {time.monotonic() - began:.2f} s")


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_session_started_again_after_a_timed_out_start_has_one_container(
    proxied: DockerProvisioner, proxy: EngineProxy, instance: str, engine: docker.DockerClient
) -> None:
    spec = make_spec(instance, make_desktop(IMAGE))
    await proxied.list_managed(instance)
    proxy.freeze()
    with pytest.raises(ContainerEngineTimedOut):
        await proxied.start(spec)
    proxy.thaw()
    info = await proxied.start(spec)
    await proxied.when_swept()
    labelled = engine.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={spec.session_id}"})
    assert [c.id for c in labelled] == [info.container_id]


@pytest.mark.docker
@pytest_twisted.ensureDeferred
async def test_a_follower_waiting_for_a_hung_engine_is_told_the_timeout_and_lets_go_within_it(
    threadpool: ThreadPool, proxy: EngineProxy, instance: str
) -> None:
    # Nothing is created here, so a 1 s timeout is safe, and the test shorter.
    quick = DockerProvisioner(reactor, threadpool, url=proxy.url, timeout=1)
    await quick.list_managed(instance)
    proxy.freeze()
    seen = EventRecorder()
    follower = seen.follow(quick, instance)
    await seen.until(lambda: seen.losses, timeout=2)
    assert seen.losses == [f"Docker engine at {proxy.url} did not answer within 1 s (the [docker] timeout)"]
    # Stopped while its retry waits for the engine's answer, which no close can cut short.
    await deferLater(reactor, 0.6)
    began = time.monotonic()
    await follower.stop()
    assert time.monotonic() - began < 1.5
    assert seen.connections == 0
