"""In-memory stand-ins for the relay's outside world, for fast unit tests of logic.

Each fake implements the same interface as the real thing and is held to the same behaviour by
a shared contract test (FakeProvisioner: tests/provisioner_contract.py). Their Deferreds fire
synchronously, so tests need no reactor turns.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attr
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from desktop_relay.config import DesktopType
from desktop_relay.containers import (
    LABEL_DESKTOP,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_SESSION,
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStartFailed,
    IContainerProvisioner,
    IEventFollower,
)

# The demo image: the fake engine "has" it, like the real one after scripts/build-desktop-image.
IMAGE = "desktop-relay/demo-desktop:latest"


def desktop(name: str, groups: str = "*", image: str = IMAGE, **policy: Any) -> DesktopType:
    """A [desktop:NAME] as config.py would read it, for the groups given (space-separated);
    `policy` overrides fields such as memory, idle_timeout or max_sessions."""
    fields: dict[str, Any] = dict(
        name=name, image=image, title=name.title(), description="", shm_size="512m", memory=None,
        cpus=None, pids_limit=None, environment={}, groups=frozenset(groups.split()), users=frozenset(),
    )
    fields.update(policy)
    return DesktopType(**fields)


@attr.s(auto_attribs=True)
class FakeContainer:
    """One container as the fake engine holds it; tests may read and change it."""

    container_id: str
    spec: ContainerSpec
    host_port: int
    status: str = "running"
    exit_code: int | None = None
    problem: str | None = None
    logs: str = ""
    oom_killed: bool = False

    def info(self) -> ContainerInfo:
        running = self.status == "running"
        labels = self.spec.labels
        return ContainerInfo(
            container_id=self.container_id,
            session_id=labels[LABEL_SESSION],
            owner=labels[LABEL_OWNER],
            desktop=labels[LABEL_DESKTOP],
            running=running,
            status=self.status,
            host_port=self.host_port if running else None,
            exit_code=self.exit_code,
            problem=self.problem,
            vnc_password=self.spec.vnc_password,
            oom_killed=self.oom_killed,
        )


@implementer(IEventFollower)
@attr.s(auto_attribs=True)
class FakeEventFollower:
    """A subscription to the fake engine's events."""

    instance: str
    on_event: Callable[[ContainerEvent], None]
    on_connected: Callable[[], None]
    on_lost: Callable[[str], None]
    followers: list[FakeEventFollower]

    def stop(self) -> Deferred[None]:
        if self in self.followers:
            self.followers.remove(self)
        return succeed(None)


@implementer(IContainerProvisioner)
class FakeProvisioner:
    """An in-memory container engine.

    - `images`: the images that exist; starting any other fails like Docker does.
    - `engine_down = True`: every call fails with ContainerEngineUnavailable.
    - `fail_next_start(reason)`: the next start fails with ContainerStartFailed(reason).
    - `exit(container_id, ...)`: the container stops by itself, with a reason.
    - `host_ports`: where fake host ports come from (default 40000, 40001, ...).
    """

    def __init__(self, images: Iterable[str], host_ports: Iterable[int] | None = None) -> None:
        self.images = set(images)
        self.engine_down = False
        self.containers: dict[str, FakeContainer] = {}
        self.removed: list[str] = []
        self._host_ports: Iterator[int] = iter(host_ports) if host_ports is not None else itertools.count(40000)
        self._ids = itertools.count(1)
        self._start_failures: list[str] = []
        self.memory = 16 * 2**30
        self.followers: list[FakeEventFollower] = []

    # -- controls for tests ---------------------------------------------------------------

    def fail_next_start(self, reason: str = "the engine said no") -> None:
        """Make the next start() fail with ContainerStartFailed(reason), leaving nothing behind."""
        self._start_failures.append(reason)

    def exit(
        self, container_id: str, exit_code: int = 1, problem: str | None = None, oom: bool = False
    ) -> None:
        """Make a running container stop by itself, as a crashing desktop would."""
        container = self.containers[container_id]
        container.status = "exited"
        container.exit_code = 137 if oom else exit_code
        if problem is None:
            problem = "ran out of memory and was killed" if oom else f"exited with code {exit_code}"
        container.problem = problem
        container.oom_killed = oom
        self.emit(container, "die")

    def container_for(self, session_id: str) -> FakeContainer | None:
        """The container of a session, if any."""
        for container in self.containers.values():
            if container.spec.session_id == session_id:
                return container
        return None

    # -- IContainerProvisioner -----------------------------------------------------------

    def start(self, spec: ContainerSpec) -> Deferred[ContainerInfo]:
        if self.engine_down:
            return self._down()
        if self._start_failures:
            return fail(ContainerStartFailed(self._start_failures.pop(0)))
        if spec.desktop.image not in self.images:
            return fail(
                ContainerStartFailed(
                    f"desktop image '{spec.desktop.image}' is not on this server: build or pull it"
                )
            )
        container_id = f"fake{next(self._ids):060d}"
        container = FakeContainer(container_id, spec, next(self._host_ports))
        self.containers[container_id] = container
        return succeed(container.info())

    def inspect(self, container_id: str) -> Deferred[ContainerInfo | None]:
        if self.engine_down:
            return self._down()
        container = self.containers.get(container_id)
        return succeed(container.info() if container else None)

    def logs_tail(self, container_id: str, lines: int) -> Deferred[str]:
        if self.engine_down:
            return self._down()
        container = self.containers.get(container_id)
        if container is None or not container.logs:
            return succeed("")
        return succeed("\n".join(container.logs.splitlines()[-lines:]) + "\n")

    def remove(self, container_id: str, timeout: int) -> Deferred[None]:
        if self.engine_down:
            return self._down()
        if self.containers.pop(container_id, None) is not None:
            self.removed.append(container_id)
        return succeed(None)

    def list_managed(self, instance: str) -> Deferred[list[ContainerInfo]]:
        if self.engine_down:
            return self._down()
        return succeed(
            [c.info() for c in self.containers.values() if c.spec.labels[LABEL_INSTANCE] == instance]
        )

    def memory_total(self) -> Deferred[int]:
        if self.engine_down:
            return self._down()
        return succeed(self.memory)

    def follow_events(
        self,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> IEventFollower:
        follower = FakeEventFollower(instance, on_event, on_connected, on_lost, self.followers)
        self.followers.append(follower)
        on_connected()
        return follower

    def emit(self, container: FakeContainer, action: str) -> None:
        """Tell every follower of the container's instance about an event."""
        event = ContainerEvent(container.container_id, container.spec.session_id, action, container.exit_code, 0.0)
        for follower in list(self.followers):
            if follower.instance == container.spec.labels[LABEL_INSTANCE]:
                follower.on_event(event)

    def _down(self) -> Deferred:
        return fail(ContainerEngineUnavailable("Docker engine unreachable at fake://engine: it is down"))
