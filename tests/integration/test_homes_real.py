"""Home volumes on the real engine with the demo desktop image: the home volumes contract, and what
only Docker can show: a file written in one container is in the next one's home and belongs to
uid 1000, another user's home is another volume, a share is read-only inside, usage is measured."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import attr
import docker
import pytest
import pytest_twisted
from home_volumes_contract import HomeVolumesContract
from provisioner_contract import make_desktop, make_spec
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.python.threadpool import ThreadPool

from desktop_relay.config import DesktopType
from desktop_relay.engine import DockerProvisioner, docker_threadpool
from desktop_relay.engine.docker_volumes import DockerHomeVolumes
from desktop_relay.engine.interface import LABEL_INSTANCE, ContainerInfo, Mount
from desktop_relay.homes import Home, home_for

IMAGE = os.environ.get("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} is missing: run scripts/build-desktop-image")
    except docker.errors.DockerException as e:
        pytest.fail(f"no Docker engine ({e}): run scripts/ensure-docker")
    yield client
    client.close()


def remove_instances(engine: docker.DockerClient, *instances: str) -> None:
    """Remove the containers, then the volumes, labelled with these relay instances."""
    for instance in instances:
        label = {"label": f"{LABEL_INSTANCE}={instance}"}
        for container in engine.containers.list(all=True, filters=label):
            container.remove(force=True)
        for volume in engine.volumes.list(filters=label):
            volume.remove(force=True)


@pytest.fixture
def instance(engine: docker.DockerClient) -> Iterator[str]:
    name = f"test-{os.urandom(5).hex()}"
    yield name
    remove_instances(engine, name)


@pytest.fixture
def threadpool() -> Iterator[ThreadPool]:
    pool = docker_threadpool(4)
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def provisioner(threadpool: ThreadPool) -> DockerProvisioner:
    return DockerProvisioner(reactor, threadpool)


@pytest.fixture
def volumes(provisioner: DockerProvisioner) -> DockerHomeVolumes:
    return DockerHomeVolumes(provisioner)


@pytest.fixture
def desktop() -> DesktopType:
    return make_desktop(IMAGE)


class TestDockerHomeVolumes(HomeVolumesContract):
    @pytest.fixture
    def provisioner(
        self, engine: docker.DockerClient, threadpool: ThreadPool, instance: str, other_instance: str
    ) -> Iterator[DockerProvisioner]:
        yield DockerProvisioner(reactor, threadpool)
        remove_instances(engine, instance, other_instance)

    @pytest.fixture
    def volumes(self, provisioner: DockerProvisioner) -> DockerHomeVolumes:
        return DockerHomeVolumes(provisioner)

    @pytest.fixture
    def desktop(self) -> DesktopType:
        return make_desktop(IMAGE)


async def start_with(
    provisioner: DockerProvisioner, instance: str, desktop: DesktopType, owner: str, *mounts: Mount
) -> ContainerInfo:
    return await provisioner.start(attr.evolve(make_spec(instance, desktop, owner), mounts=mounts))


async def run(engine: docker.DockerClient, container_id: str, script: str) -> tuple[int, str]:
    """Run a shell line in the container as its own user (uid 1000), off the reactor thread."""
    result = await deferToThread(engine.containers.get(container_id).exec_run, ["sh", "-c", script])
    return result.exit_code, result.output.decode()


async def made(volumes: DockerHomeVolumes, instance: str, desktop: DesktopType, owner: str) -> Home:
    home = home_for(instance, desktop, owner)
    assert home is not None
    await volumes.ensure(home)
    return home


@pytest_twisted.ensureDeferred
async def test_a_file_written_in_one_container_is_in_the_next_one_owned_by_the_user(
    engine: docker.DockerClient, provisioner: DockerProvisioner, volumes: DockerHomeVolumes,
    instance: str, desktop: DesktopType,
) -> None:
    home = await made(volumes, instance, desktop, "alice")
    first = await start_with(provisioner, instance, desktop, "alice", home.mount)
    assert await run(engine, first.container_id, "echo hello > ~/notes.txt") == (0, "")
    await provisioner.remove(first.container_id, 1)
    second = await start_with(provisioner, instance, desktop, "alice", home.mount)
    status, output = await run(engine, second.container_id, "cat ~/notes.txt; stat -c '%u:%g' ~ ~/notes.txt ~/.vnc")
    assert (status, output.split()) == (0, ["hello", "1000:1000", "1000:1000", "1000:1000"])
    labels = engine.api.inspect_volume(home.volume)["Labels"]
    assert labels == {LABEL_INSTANCE: instance, "org.desktop-relay.owner": "alice",
                      "org.desktop-relay.home": "default"}
    assert await volumes.ensure(home) is False


@pytest_twisted.ensureDeferred
async def test_another_user_never_sees_the_file(
    engine: docker.DockerClient, provisioner: DockerProvisioner, volumes: DockerHomeVolumes,
    instance: str, desktop: DesktopType,
) -> None:
    alice = await made(volumes, instance, desktop, "alice")
    bob = await made(volumes, instance, desktop, "bob")
    assert alice.volume != bob.volume
    mine = await start_with(provisioner, instance, desktop, "alice", alice.mount)
    await run(engine, mine.container_id, "echo secret > ~/diary.txt")
    theirs = await start_with(provisioner, instance, desktop, "bob", bob.mount)
    status, output = await run(engine, theirs.container_id, "ls -A ~; find /home /tmp -name diary.txt 2>/dev/null; true")
    assert status == 0 and "diary.txt" not in output


@pytest_twisted.ensureDeferred
async def test_a_share_is_read_only_inside(
    engine: docker.DockerClient, provisioner: DockerProvisioner, volumes: DockerHomeVolumes,
    instance: str, desktop: DesktopType, tmp_path: Path,
) -> None:
    shared = tmp_path / "worksheets"
    shared.mkdir()
    (shared / "sheet-1.txt").write_text("exercise 1\n")
    shared.chmod(0o777)  # writable by anyone on the host: only the mount stops uid 1000
    home = await made(volumes, instance, desktop, "alice")
    share = Mount(source=str(shared), target="/home/kasm-user/Shared/worksheets", read_only=True, kind="bind")
    info = await start_with(provisioner, instance, desktop, "alice", home.mount, share)
    status, output = await run(engine, info.container_id, "cat ~/Shared/worksheets/sheet-1.txt")
    assert (status, output) == (0, "exercise 1\n")
    status, output = await run(engine, info.container_id, "echo x > ~/Shared/worksheets/mine.txt")
    assert status != 0 and "Read-only file system" in output
    assert sorted(p.name for p in shared.iterdir()) == ["sheet-1.txt"]


@pytest_twisted.ensureDeferred
async def test_usage_counts_what_the_home_holds_and_the_listing_when_it_was_made(
    engine: docker.DockerClient, provisioner: DockerProvisioner, volumes: DockerHomeVolumes,
    instance: str, desktop: DesktopType,
) -> None:
    home = await made(volumes, instance, desktop, "alice")
    info = await start_with(provisioner, instance, desktop, "alice", home.mount)
    await run(engine, info.container_id, "head -c 3000000 /dev/zero > ~/big.bin")
    (listed,) = await volumes.list(instance)
    assert listed.created is not None and abs(listed.created - time.time()) < 120
    usage = await volumes.usage(instance)
    assert set(usage) == {home.volume} and usage[home.volume] >= 3_000_000
