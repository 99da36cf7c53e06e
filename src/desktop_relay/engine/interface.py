"""The provisioning interface: what the relay asks of a container engine, and the values it gets back.

The Docker implementation lives in docker.py beside this module, an in-memory one for tests in
tests/fakes.py; both are held to the same behaviour by tests/provisioner_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import attr
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface

from ..config import DesktopType

# Label keys on every container the relay creates; Docker is the truth about containers.
LABEL_PREFIX = "org.desktop-relay."
LABEL_INSTANCE = LABEL_PREFIX + "instance"
LABEL_SESSION = LABEL_PREFIX + "session"
LABEL_OWNER = LABEL_PREFIX + "owner"
LABEL_DESKTOP = LABEL_PREFIX + "desktop"
# "yes" on a container started ahead for the warm pool, with no user's data (docs/pool.md).
LABEL_POOL = LABEL_PREFIX + "pool"
# On a home volume: which home it is (the desktop family or desktop it belongs to).
LABEL_HOME = LABEL_PREFIX + "home"

# KasmVNC's HTTPS + WebSocket port inside every desktop container.
DESKTOP_PORT = 6901


class ContainerEngineUnavailable(Exception):
    """The container engine could not be reached; the caller should answer 503 and retry later."""


class ContainerEngineTimedOut(ContainerEngineUnavailable):
    """The engine did not answer within the configured timeout: the request may still be
    carried out later (a create, say), so the caller must expect a container it did not see."""


class ContainerStartFailed(Exception):
    """The engine refused to create or start a container; str() is the reason for the user."""


class DesktopImageMissing(ContainerStartFailed):
    """The desktop's image is not on the engine's host: an admin must build or pull it."""


class ImagePullFailed(Exception):
    """The engine could not pull an image (unknown image, registry unreachable or refusing);
    str() is the engine's or the registry's reason."""


@attr.s(frozen=True, auto_attribs=True)
class Mount:
    """A volume or host directory mounted into a container."""

    # A volume's name (kind "volume") or an absolute host path (kind "bind").
    source: str
    # The absolute path inside the container.
    target: str
    read_only: bool
    kind: Literal["volume", "bind"] = "volume"


@attr.s(frozen=True, auto_attribs=True)
class ContainerSpec:
    """Everything needed to start one session's container."""

    session_id: str
    owner: str
    instance: str
    desktop: DesktopType
    vnc_password: str
    # The user's home and the shares they see; none for a pooled container.
    mounts: tuple[Mount, ...] = ()
    # Started ahead for the warm pool: owner is "" until a user claims it (in the store).
    pooled: bool = False

    @property
    def labels(self) -> Mapping[str, str]:
        labels = {
            LABEL_INSTANCE: self.instance,
            LABEL_SESSION: self.session_id,
            LABEL_OWNER: self.owner,
            LABEL_DESKTOP: self.desktop.name,
        }
        if self.pooled:
            labels[LABEL_POOL] = "yes"
        return labels


@attr.s(frozen=True, auto_attribs=True)
class ContainerInfo:
    """What the engine reports about one of our containers."""

    container_id: str
    session_id: str
    owner: str
    desktop: str
    running: bool
    # The engine's status word: created, running, exited, dead, ...
    status: str
    # Host port on 127.0.0.1 that reaches the container's port 6901; None when not published.
    host_port: int | None
    exit_code: int | None = None
    # Why the container is not running, in words (engine error or exit code), for the user.
    problem: str | None = None
    # VNC_PW from the container's environment, so a relay that lost its store can adopt it.
    vnc_password: str | None = None
    # The kernel's OOM killer ended it (Docker's State.OOMKilled).
    oom_killed: bool = False
    # Epoch seconds of the last exit; None while running or when it never ran.
    finished_at: float | None = None
    # Epoch seconds of the last start; None when it never ran.
    started_at: float | None = None
    # Started for the warm pool (LABEL_POOL): its session label is the pool's id, not a session's.
    pooled: bool = False


@attr.s(frozen=True, auto_attribs=True)
class EngineSummary:
    """The engine as an admin sees it, and how many containers of one relay instance it has."""

    version: str
    # The engine's newest API version, and the one this relay speaks with it.
    api_version: str
    api_version_used: str
    memory: int
    cpus: int
    containers_running: int
    containers_all: int


#: Told each progress message of a pull (Docker's JSON: status, id, progress, progressDetail).
PullProgress = Callable[[Mapping[str, object]], None]


@attr.s(frozen=True, auto_attribs=True)
class ContainerEvent:
    """One change of one of our containers, as the engine announced it."""

    container_id: str
    # From the container's session label; "" when it has none.
    session_id: str
    # The engine's action word: "create", "start", "die", "oom", "kill", "stop", "destroy", ...
    action: str
    # The exit code, for "die"; None otherwise.
    exit_code: int | None
    # When the engine says it happened, epoch seconds.
    at: float


class IEventFollower(Interface):
    """A running subscription to the engine's container events."""

    def stop() -> Deferred[None]:
        """Stop following; fires when the worker thread has let go. No event is delivered after."""


class IImagePull(IPushProducer):
    """A pull in progress. As a push producer, pausing it stops reading the engine's progress
    (the engine goes on pulling) and stopProducing gives up: `done` fails with CancelledError."""

    done = Attribute("Deferred[None]: fires when the pull has finished, fails when it did not")


class IContainerProvisioner(Interface):
    """Starts, inspects and removes desktop containers. Every method returns a Deferred and
    never blocks the reactor; engine outages fail with ContainerEngineUnavailable, an engine that
    does not answer in time with its subclass ContainerEngineTimedOut."""

    def start(spec: ContainerSpec) -> Deferred[ContainerInfo]:
        """Create and start the container for spec; ContainerStartFailed if the engine says no.
        A container that could not be started is removed before the failure is reported. After
        ContainerEngineUnavailable (a timed-out create may still be carried out) the provisioner
        itself keeps removing the session's container for a while; a new start() of the same
        session ends that watch."""

    def inspect(container_id: str) -> Deferred[ContainerInfo | None]:
        """Current state of a container, or None when it no longer exists."""

    def logs_tail(container_id: str, lines: int) -> Deferred[str]:
        """The last lines of the container's output, for failure reasons ('' when gone)."""

    def remove(container_id: str, timeout: int) -> Deferred[None]:
        """Stop (giving it timeout seconds) and remove the container; succeed when already gone."""

    def list_managed(instance: str) -> Deferred[list[ContainerInfo]]:
        """All containers, running or not, labelled as belonging to this relay instance."""

    def memory_total() -> Deferred[int]:
        """The engine's memory in bytes (MemTotal as the engine reports it)."""

    def image_present(image: str) -> Deferred[bool]:
        """Whether the engine has this image (name:tag or id) locally."""

    def pull_image(image: str, on_progress: PullProgress) -> IImagePull:
        """Pull an image, calling on_progress on the reactor thread for every progress message
        (never after `done` fired). A pull that failed fails `done` with ImagePullFailed, an
        engine that cannot be reached with ContainerEngineUnavailable."""

    def engine_summary(instance: str) -> Deferred[EngineSummary]:
        """The engine's version, memory and CPUs, and the containers labelled with `instance`."""

    def follow_events(
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> IEventFollower:
        """Follow the engine's container events of this instance, calling on_event on the reactor
        thread; on_connected each time the stream is (re)established (the caller then
        reconciles), on_lost(reason) each time it breaks; reconnects with backoff
        (0.5 s doubling to 10 s) until stopped.

        The two alternate: on_lost comes first if the engine cannot be reached at all, and a
        failed reconnection attempt does not call on_lost again. A hung engine keeps an open
        stream silent: requests time out (ContainerEngineTimedOut), the stream is not lost."""
