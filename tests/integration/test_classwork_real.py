"""Hand-outs and hand-ins on the real engine with the demo desktop image: a pupil's desktop reads
the class's hand-out but cannot write it, writes their hand-in until the due time and no longer
after it (in the running container), and writes again once the teacher moves the due time."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attr
import docker
import pytest
import pytest_twisted
from provisioner_contract import make_desktop, make_spec
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.python.threadpool import ThreadPool

from desktop_relay.auth.classes import ClassScope
from desktop_relay.classwork.service import Classwork
from desktop_relay.classwork.volumes import DockerClassworkVolumes
from desktop_relay.config import DesktopType
from desktop_relay.config.classes import ClassSettings
from desktop_relay.engine import DockerProvisioner, docker_threadpool
from desktop_relay.engine.interface import LABEL_INSTANCE, ContainerInfo, Mount
from desktop_relay.store import SQLiteStore

IMAGE = os.environ.get("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")
SCOPE = ClassScope(ClassSettings(class_groups=("klasse-*",)))
PUPIL_GROUPS = frozenset({"klasse-5a", "chor"})

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


@pytest.fixture
def instance(engine: docker.DockerClient) -> Iterator[str]:
    name = f"test-{os.urandom(5).hex()}"
    yield name
    label = {"label": f"{LABEL_INSTANCE}={name}"}
    for container in engine.containers.list(all=True, filters=label):
        container.remove(force=True)
    for volume in engine.volumes.list(filters=label):
        volume.remove(force=True)


@pytest.fixture
def provisioner() -> Iterator[DockerProvisioner]:
    pool: ThreadPool = docker_threadpool(4)
    pool.start()
    yield DockerProvisioner(reactor, pool)
    pool.stop()


@pytest_twisted.async_yield_fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "relay.sqlite3", reactor)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def desktop() -> DesktopType:
    return make_desktop(IMAGE)


@pytest.fixture
def classwork(provisioner: DockerProvisioner, store: SQLiteStore, instance: str) -> Iterator[Classwork]:
    work = Classwork(SCOPE, DockerClassworkVolumes(provisioner, instance, IMAGE), store, reactor, instance, IMAGE)
    yield work
    work.stop()


async def start_with(provisioner: DockerProvisioner, instance: str, desktop: DesktopType, owner: str,
                     mounts: tuple[Mount, ...]) -> ContainerInfo:
    return await provisioner.start(attr.evolve(make_spec(instance, desktop, owner), mounts=mounts))


async def run(engine: docker.DockerClient, container_id: str, script: str) -> tuple[int, str]:
    """A shell line in the container as its own user (uid 1000), off the reactor thread."""
    result = await deferToThread(engine.containers.get(container_id).exec_run, ["sh", "-c", script])
    return result.exit_code, result.output.decode()


@pytest_twisted.ensureDeferred
async def test_the_handout_is_read_only_and_the_handin_closes_at_due_in_the_running_desktop(
    engine: docker.DockerClient, provisioner: DockerProvisioner, classwork: Classwork, instance: str,
    desktop: DesktopType,
) -> None:
    await classwork.start()
    teacher = await classwork.mounts_for(desktop, "herr-k", "teacher", frozenset({"klasse-5a", "lehrer"}))
    assert [(m.target, m.read_only) for m in teacher] == [("/home/kasm-user/Handout/klasse-5a", False)]
    mine = await start_with(provisioner, instance, desktop, "herr-k", teacher)
    assert await run(engine, mine.container_id, "echo 'exercise 1' > ~/Handout/klasse-5a/sheet.txt") == (0, "")

    mounts = await classwork.mounts_for(desktop, "anna", "pupil", PUPIL_GROUPS)
    assert [(m.target, m.read_only) for m in mounts] == [
        ("/home/kasm-user/Handout/klasse-5a", True), ("/home/kasm-user/Hand-in/klasse-5a", False)]
    pupil = await start_with(provisioner, instance, desktop, "anna", mounts)
    assert await run(engine, pupil.container_id, "cat ~/Handout/klasse-5a/sheet.txt") == (0, "exercise 1\n")
    status, output = await run(engine, pupil.container_id, "echo x > ~/Handout/klasse-5a/mine.txt")
    assert status != 0 and "Read-only file system" in output
    assert await run(engine, pupil.container_id, "echo answer > ~/Hand-in/klasse-5a/answer.txt") == (0, "")

    # The due time passes: the running desktop can still read its hand-in, no longer write it.
    await classwork.set_due("klasse-5a", time.time() - 1, "herr-k")
    status, output = await run(engine, pupil.container_id, "cat ~/Hand-in/klasse-5a/answer.txt")
    assert (status, output) == (0, "answer\n")
    status, output = await run(engine, pupil.container_id,
                               "echo late >> ~/Hand-in/klasse-5a/answer.txt || echo refused; "
                               "touch ~/Hand-in/klasse-5a/new.txt || echo refused")
    assert output.count("refused") == 2 and "Permission denied" in output
    # A desktop started now mounts it read-only.
    later = await classwork.mounts_for(desktop, "anna", "pupil", PUPIL_GROUPS)
    assert [m.read_only for m in later] == [True, True]
    assert (await classwork.handins("klasse-5a")).keys() == {"anna"}

    # Moved into the future: open again, the file still hers.
    await classwork.set_due("klasse-5a", time.time() + 3600, "herr-k")
    assert await run(engine, pupil.container_id, "echo more >> ~/Hand-in/klasse-5a/answer.txt; "
                                                 "stat -c %u ~/Hand-in/klasse-5a/answer.txt") == (0, "1000\n")


@pytest_twisted.ensureDeferred
async def test_a_due_time_that_passed_while_the_relay_was_away_closes_at_start(
    engine: docker.DockerClient, provisioner: DockerProvisioner, classwork: Classwork, store: SQLiteStore,
    instance: str, desktop: DesktopType,
) -> None:
    mounts = await classwork.mounts_for(desktop, "anna", "pupil", PUPIL_GROUPS)
    pupil = await start_with(provisioner, instance, desktop, "anna", mounts)
    assert await run(engine, pupil.container_id, "echo draft > ~/Hand-in/klasse-5a/a.txt") == (0, "")
    await store.set_due("klasse-5a", time.time() - 60, "herr-k", time.time())
    await classwork.start()
    status, output = await run(engine, pupil.container_id, "echo late > ~/Hand-in/klasse-5a/a.txt")
    assert status != 0 and "Permission denied" in output
    assert (await store.due_times())["klasse-5a"].closed
