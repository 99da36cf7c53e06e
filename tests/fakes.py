"""In-memory stand-ins for the relay's outside world, for fast unit tests of logic.

Each fake implements the same interface as the real thing and is held to the same behaviour by
a shared contract test (FakeProvisioner: tests/provisioner_contract.py). Their Deferreds fire
synchronously, so tests need no reactor turns.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attr
from relay_harness import render_ini
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from desktop_relay.config import DesktopType
from desktop_relay.engine.interface import (
    LABEL_DESKTOP,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_SESSION,
    ContainerEngineTimedOut,
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStartFailed,
    DesktopImageMissing,
    EngineSummary,
    IContainerProvisioner,
    IEventFollower,
    IImagePull,
    ImagePullFailed,
    PullProgress,
)
from desktop_relay.homes import Home
from desktop_relay.homes.interface import HomeVolume, HomeVolumeFailed, HomeVolumeInUse, IHomeVolumes
from desktop_relay.web.responses import Problem

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
    started_at: float | None = None
    finished_at: float | None = None

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
            started_at=self.started_at,
            finished_at=None if running else self.finished_at,
            pooled=self.spec.pooled,
        )


@implementer(IEventFollower)
@attr.s(auto_attribs=True, eq=False)
class FakeEventFollower:
    """A subscription to the fake engine's events; `engine` calls its callbacks synchronously."""

    engine: FakeProvisioner
    instance: str
    on_event: Callable[[ContainerEvent], None]
    on_connected: Callable[[], None]
    on_lost: Callable[[str], None]

    def stop(self) -> Deferred[None]:
        if self in self.engine.followers:
            self.engine.followers.remove(self)
        return succeed(None)


@implementer(IImagePull)
class FakeImagePull:
    """A pull by the fake engine: `feed()` delivers its next progress messages, `finish()` ends it
    (with the image then present), `fail(reason)` fails it; `paused` and `stopped` show what the
    consumer did."""

    def __init__(self, engine: FakeProvisioner, image: str, on_progress: PullProgress) -> None:
        self.engine = engine
        self.image = image
        self._on_progress = on_progress
        self.paused = False
        self.stopped = False
        self.done: Deferred[None] = Deferred(lambda _: self.stopProducing())

    def feed(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            if not self.done.called:
                self._on_progress(message)

    def finish(self) -> None:
        if not self.done.called:
            self.engine.images.add(self.image)
            self.done.callback(None)

    def fail(self, reason: str) -> None:
        if not self.done.called:
            self.done.errback(ImagePullFailed(reason))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True
        if not self.done.called:
            self.done.errback(CancelledError("the image pull was given up"))


@implementer(IContainerProvisioner)
class FakeProvisioner:
    """An in-memory container engine, announcing what happens to followers of its events the
    way Docker does (create, start, kill, oom, die, stop, destroy), before the call returns.

    - `images`: the images that exist; starting any other fails like Docker does.
    - `engine_down = True`: every call fails with ContainerEngineUnavailable and followers are
      told the stream is lost; `engine_down = False`: followers are told it is back.
    - `fail_next_start(reason)`: the next start fails with ContainerStartFailed(reason).
    - `time_out_next_start()`: the next start fails with ContainerEngineTimedOut, and the engine
      carries its create out later, on `carry_out_timed_out_starts()`.
    - `exit(container_id, ...)`: the container stops by itself, with a reason (or out of memory).
    - `kill(container_id)`: as `docker kill` from outside.
    - `host_ports`: where fake host ports come from (default 40000, 40001, ...).
    - `clock`: where event and container times come from (default: the wall clock).
    - `registry`: image -> the progress messages its pull reports; pulling an image not in it
      fails as an unknown image does. `hold_pulls = True` leaves pulls running (see `pulls`)
      for the test to feed and finish.
    """

    def __init__(
        self,
        images: Iterable[str],
        host_ports: Iterable[int] | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.images = set(images)
        self._engine_down = False
        self.containers: dict[str, FakeContainer] = {}
        self.removed: list[str] = []
        self.followers: list[FakeEventFollower] = []
        # Specs of timed-out starts whose create the engine has yet to carry out.
        self.timed_out: list[ContainerSpec] = []
        self._host_ports: Iterator[int] = iter(host_ports) if host_ports is not None else itertools.count(40000)
        self._ids = itertools.count(1)
        self._start_failures: list[str] = []
        self._time_outs = 0
        self._timed_out_sessions: set[str] = set()
        self._seconds: Callable[[], float] = clock.seconds if clock is not None else time.time
        self.memory = 16 * 2**30
        self.cpus = 8
        self.registry: dict[str, list[dict[str, Any]]] = {}
        self.hold_pulls = False
        self.pulls: list[FakeImagePull] = []

    # -- controls for tests ---------------------------------------------------------------

    @property
    def engine_down(self) -> bool:
        return self._engine_down

    @engine_down.setter
    def engine_down(self, down: bool) -> None:
        if down == self._engine_down:
            return
        self._engine_down = down
        for follower in list(self.followers):
            if down:
                follower.on_lost(_DOWN)
            else:
                follower.on_connected()

    def fail_next_start(self, reason: str = "the engine said no") -> None:
        """Make the next start() fail with ContainerStartFailed(reason), leaving nothing behind."""
        self._start_failures.append(reason)

    def time_out_next_start(self) -> None:
        """Make the next start() fail with ContainerEngineTimedOut, as a hung engine's would;
        the engine creates the container later, on carry_out_timed_out_starts()."""
        self._time_outs += 1

    def carry_out_timed_out_starts(self) -> list[str]:
        """Create and start the containers of timed-out starts, as a resumed engine does; the ids.
        (DockerProvisioner removes such a container by itself within seconds; this fake leaves
        it, for the owner's own clean-up to be tested.)"""
        specs, self.timed_out = self.timed_out, []
        return [self._create(spec).container_id for spec in specs]

    def exit(
        self, container_id: str, exit_code: int = 1, problem: str | None = None, oom: bool = False
    ) -> None:
        """Make a running container stop by itself, as a crashing desktop would."""
        container = self.containers[container_id]
        if oom:
            self._emit(container, "oom")
        self._end(container, 137 if oom else exit_code, oom=oom)
        if problem is None:
            problem = "ran out of memory and was killed" if oom else f"exited with code {exit_code}"
        container.problem = problem

    def kill(self, container_id: str) -> None:
        """Kill a running container from outside, as `docker kill` does (SIGKILL: code 137)."""
        container = self.containers[container_id]
        self._emit(container, "kill")
        self._end(container, 137)
        container.problem = "exited with code 137"

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
                DesktopImageMissing(
                    f"desktop image '{spec.desktop.image}' is not on this server: build or pull it"
                )
            )
        if self._time_outs:
            self._time_outs -= 1
            self.timed_out.append(spec)
            self._timed_out_sessions.add(spec.session_id)
            return fail(ContainerEngineTimedOut("Docker engine at fake://engine did not answer within 1 s"))
        if spec.session_id in self._timed_out_sessions:
            # Started again, a session takes over what its timed-out start left, as with Docker.
            self._timed_out_sessions.discard(spec.session_id)
            self.timed_out = [s for s in self.timed_out if s.session_id != spec.session_id]
            leftover = self.container_for(spec.session_id)
            if leftover is not None:
                self._destroy(leftover)
        return succeed(self._create(spec).info())

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
        container = self.containers.get(container_id)
        if container is not None:
            self._destroy(container)
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

    def image_present(self, image: str) -> Deferred[bool]:
        if self.engine_down:
            return self._down()
        return succeed(image in self.images)

    def pull_image(self, image: str, on_progress: PullProgress) -> IImagePull:
        pull = FakeImagePull(self, image, on_progress)
        self.pulls.append(pull)
        if self.engine_down:
            pull.done.errback(ContainerEngineUnavailable(_DOWN))
        elif image not in self.registry:
            pull.fail(f"pull access denied for {image}, repository does not exist")
        elif not self.hold_pulls:
            pull.feed(*self.registry[image])
            pull.finish()
        return pull

    def engine_summary(self, instance: str) -> Deferred[EngineSummary]:
        if self.engine_down:
            return self._down()
        mine = [c for c in self.containers.values() if c.spec.labels[LABEL_INSTANCE] == instance]
        return succeed(EngineSummary(
            version="fake-1.0", api_version="1.41", api_version_used="1.41", memory=self.memory, cpus=self.cpus,
            containers_running=sum(1 for c in mine if c.status == "running"), containers_all=len(mine),
        ))

    def follow_events(
        self,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> IEventFollower:
        """Follow the fake's events; on_connected (or on_lost, with the engine down) is called
        before this returns."""
        follower = FakeEventFollower(self, instance, on_event, on_connected, on_lost)
        self.followers.append(follower)
        if self.engine_down:
            on_lost(_DOWN)
        else:
            on_connected()
        return follower

    # -- the fake engine's own doings ------------------------------------------------------

    def _create(self, spec: ContainerSpec) -> FakeContainer:
        container_id = f"fake{next(self._ids):060d}"
        container = FakeContainer(container_id, spec, next(self._host_ports), started_at=self._seconds())
        self.containers[container_id] = container
        self._emit(container, "create")
        self._emit(container, "start")
        return container

    def _end(self, container: FakeContainer, exit_code: int, oom: bool = False) -> None:
        container.status = "exited"
        container.exit_code = exit_code
        container.oom_killed = oom
        container.finished_at = self._seconds()
        self._emit(container, "die", exit_code)

    def _destroy(self, container: FakeContainer) -> None:
        if container.status == "running":
            # A stop: SIGTERM, which the desktop answers by exiting cleanly.
            self._emit(container, "kill")
            self._end(container, 0)
            self._emit(container, "stop")
        del self.containers[container.container_id]
        self.removed.append(container.container_id)
        self._emit(container, "destroy")

    def _emit(self, container: FakeContainer, action: str, exit_code: int | None = None) -> None:
        """Tell the followers of the container's instance, unless the engine is down (a real
        engine's events during an outage are lost with its stream)."""
        if self.engine_down:
            return
        event = ContainerEvent(
            container_id=container.container_id,
            session_id=container.spec.session_id,
            action=action,
            exit_code=exit_code,
            at=self._seconds(),
        )
        for follower in list(self.followers):
            if follower.instance == container.spec.labels[LABEL_INSTANCE]:
                follower.on_event(event)

    def _down(self) -> Deferred:
        return fail(ContainerEngineUnavailable(_DOWN))


_DOWN = "Docker engine unreachable at fake://engine: it is down"


@implementer(IHomeVolumes)
class FakeHomeVolumes:
    """Home volumes as the fake engine holds them: name -> the Home they were made for. Down
    whenever `engine` is; a volume is in use while one of the engine's containers mounts it.

    - `sizes`: volume -> the bytes `usage` reports (volumes not in it are not measured).
    - `refuse_next(reason)`: the next `ensure` fails with HomeVolumeFailed(reason).
    - `time_out_next()`: the next `ensure` fails with ContainerEngineTimedOut, as a hung engine's.
    """

    def __init__(self, engine: FakeProvisioner) -> None:
        self.engine = engine
        self.volumes: dict[str, Home] = {}
        self.created: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        self._refusals: list[str] = []
        self._time_outs = 0

    def refuse_next(self, reason: str = "no space left on device") -> None:
        self._refusals.append(reason)

    def time_out_next(self) -> None:
        self._time_outs += 1

    def ensure(self, home: Home) -> Deferred[bool]:
        if self.engine.engine_down:
            return fail(ContainerEngineUnavailable(_DOWN))
        if self._time_outs:
            self._time_outs -= 1
            return fail(ContainerEngineTimedOut("Docker engine at fake://engine did not answer within 30 s"))
        if self._refusals:
            return fail(HomeVolumeFailed(self._refusals.pop(0)))
        created = home.volume not in self.volumes
        self.volumes.setdefault(home.volume, home)
        self.created.setdefault(home.volume, self.engine._seconds())
        return succeed(created)

    def remove(self, volume: str) -> Deferred[bool]:
        if self.engine.engine_down:
            return fail(ContainerEngineUnavailable(_DOWN))
        users = [c.container_id for c in self.engine.containers.values()
                 if any(m.kind == "volume" and m.source == volume for m in c.spec.mounts)]
        if users:
            return fail(HomeVolumeInUse(f"remove {volume}: volume is in use - {users}"))
        self.sizes.pop(volume, None)
        self.created.pop(volume, None)
        return succeed(self.volumes.pop(volume, None) is not None)

    def list(self, instance: str) -> Deferred[list[HomeVolume]]:
        if self.engine.engine_down:
            return fail(ContainerEngineUnavailable(_DOWN))
        return succeed([
            HomeVolume(volume=name, owner=home.owner, key=home.key, created=self.created.get(name))
            for name, home in self.volumes.items() if home.instance == instance
        ])

    def usage(self, instance: str) -> Deferred[Mapping[str, int]]:
        if self.engine.engine_down:
            return fail(ContainerEngineUnavailable(_DOWN))
        return succeed({
            name: size for name, size in self.sizes.items()
            if name in self.volumes and self.volumes[name].instance == instance
        })


@attr.s(frozen=True, auto_attribs=True)
class Caller:
    """AdminCaller's fields."""

    name: str
    can_write: bool


class TokenScopes:
    """AdminAuth's interface: `Bearer write` may change things, `Bearer read` only look; no token
    is someone who is not an admin (404), any other token a wrong one (401)."""

    def caller(self, request: Any) -> Deferred[Caller]:
        header = (request.getHeader(b"authorization") or b"").decode()
        if not header:
            return fail(Problem(404, "no-such-page", "Not Found"))
        scope = header.removeprefix("Bearer ")
        if scope not in ("read", "write"):
            return fail(Problem(401, "invalid-token", "Invalid token"))
        return succeed(Caller(f"token:{scope}", scope == "write"))

    def writer(self, request: Any) -> Deferred[Caller]:
        def may_write(caller: Caller) -> Caller:
            if not caller.can_write:
                raise Problem(403, "insufficient-scope", "Insufficient scope")
            return caller

        return self.caller(request).addCallback(may_write)


def write_relay_ini(path: Path, desktops: dict[str, dict[str, str]], **sections: dict[str, str]) -> Path:
    """A relay.ini with these desktops (everyone may start them, unless they say) and sections."""
    config: dict[str, dict[str, str]] = {"relay": {"database": str(path.parent / "relay.sqlite3")}}
    config.update(sections)
    for name, values in desktops.items():
        config[f"desktop:{name}"] = {"groups": "*", **values}
    path.write_text(render_ini(config))
    return path
