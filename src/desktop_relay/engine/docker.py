"""The Docker implementation of IContainerProvisioner: every Docker SDK call, in its own threads.

Owns the docker-py client (created lazily, API version negotiated, recreated after the engine
went away), how a ContainerSpec becomes a container (labels, limits, loopback-only port), and
how engine failures become ContainerEngineUnavailable, ContainerEngineTimedOut or
ContainerStartFailed, and image pulls (run here, steered through docker_pull.py's DockerImagePull).
The event stream is docker_events.py's, the clean-up after a start the
engine did not answer in time docker_sweeper.py's, the translation of engine data
_docker_common.py's. Nothing here runs on the reactor thread except logging, timers and the
Deferred plumbing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

import docker
import requests
import urllib3
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount as DockerMount
from docker.utils import parse_repository_tag, version_lt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..metrics import RelayMetrics
from ._docker_common import LOOPBACK, PORT_KEY, api_reason, container_info_from_inspect, container_name, shorten
from .docker_events import EventFollower
from .docker_pull import DockerImagePull
from .docker_sweeper import LEFTOVER_WATCH, LeftoverSweeper
from .interface import (
    DESKTOP_PORT,
    LABEL_INSTANCE,
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

T = TypeVar("T")

# Where docker-py looks when neither the configuration nor DOCKER_HOST says otherwise.
_DEFAULT_ENGINE = "unix:///var/run/docker.sock"

# How long a start waits for an abandoned create of the same session to finish, so that it can
# remove what that made.
_LEFTOVER_CONFLICT_WAIT = 5.0

def _operation_name(operation: Callable[..., object]) -> str:
    """The metrics' name of an engine call: `_inspect_blocking` is "inspect"."""
    return getattr(operation, "__name__", "call").strip("_").removesuffix("_blocking")

def docker_threadpool(size: int) -> ThreadPool:
    """A bounded pool for blocking Docker SDK calls, kept apart from the reactor's shared pool
    (which also serves DNS). The caller starts it and stops it, e.g. from a service."""
    return ThreadPool(minthreads=0, maxthreads=size, name="docker")

def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps, outermost first (requests nests the root cause deeply)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested.extend(current.args)
        pending.extend(e for e in nested if isinstance(e, BaseException))

def _connection_reason(error: BaseException) -> str:
    """The root cause of a connection failure in a few words."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return shorten(str(error)) or type(error).__name__

# requests raises ReadTimeout for an answer that does not begin in time, but a ConnectionError
# wrapping urllib3's ReadTimeoutError for one that stops half-way; the socket's own is TimeoutError.
_TIMEOUTS = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)

def _timed_out(error: BaseException) -> bool:
    # urllib3 counts a refused connection (NewConnectionError) as a connect timeout.
    return any(
        isinstance(cause, _TIMEOUTS) and not isinstance(cause, urllib3.exceptions.NewConnectionError)
        for cause in _causes(error)
    )

@implementer(IContainerProvisioner)
class DockerProvisioner:
    """Runs desktop containers on a Docker engine, with every SDK call in `threadpool`.

    The engine may be down when the relay starts: the client is made on first use and made
    again after a connection failure, so the relay recovers when the engine comes back.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
        url: str | None = None,
        port_range: tuple[int, int] | None = None,
        timeout: float = 60,
        leftover_watch: float = LEFTOVER_WATCH,
        metrics: RelayMetrics | None = None,
    ) -> None:
        """`reactor` also provides IReactorTime. `url` None means: as `docker.from_env()` would
        (DOCKER_HOST, context, socket). `port_range` (low, high) makes the engine pick host
        ports in that range. `timeout` bounds each engine request, in seconds (a stop adds its
        own grace time); the event stream's waits for events are not bounded. For
        `leftover_watch` seconds after a start timed out, the provisioner removes the container
        the engine may still create for it. `metrics` is told each call's duration and failures."""
        self._reactor = reactor
        self._pool = threadpool
        self._url = url
        self._port_range = port_range
        self._timeout = timeout
        self._metrics = metrics or RelayMetrics()
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        # One reactor for threads and for time, as said above; a zope interface type cannot
        # say both, so the sweeper gets it as its clock by cast.
        self._leftovers = LeftoverSweeper(self, cast(IReactorTime, reactor), leftover_watch)

    @property
    def engine_address(self) -> str:
        """Where the engine is expected, for messages."""
        return self._url or os.environ.get("DOCKER_HOST") or _DEFAULT_ENGINE

    # -- IContainerProvisioner ---------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> Deferred[ContainerInfo]:
        """Create and start the container for `spec`; ContainerStartFailed with the reason.
        After ContainerEngineTimedOut, the container the engine may still create is removed
        when it appears (see `leftover_watch`)."""
        # A session started again after a timed-out start takes over its leftovers itself.
        replace_leftover = self._leftovers.forget(spec.session_id)
        d = self.in_thread(self._start_blocking, spec, replace_leftover)

        def started(info: ContainerInfo) -> ContainerInfo:
            self._log.info(
                "started container {container} ({container_id}) for session {session}, "
                "desktop {desktop}, on 127.0.0.1:{host_port}",
                container=container_name(spec),
                container_id=info.container_id[:12],
                session=spec.session_id,
                desktop=spec.desktop.name,
                owner=spec.owner,
                host_port=info.host_port,
            )
            return info

        def refused(failure: Failure) -> Failure:
            failure.trap(ContainerStartFailed)
            self._log.warn(
                "could not start a container for session {session}, desktop {desktop}: {reason}",
                session=spec.session_id,
                desktop=spec.desktop.name,
                owner=spec.owner,
                reason=str(failure.value),
            )
            return failure

        return d.addCallbacks(started, refused)

    def inspect(self, container_id: str) -> Deferred[ContainerInfo | None]:
        """Current state of the container, or None when it no longer exists."""
        return self.in_thread(self._inspect_blocking, container_id)

    def logs_tail(self, container_id: str, lines: int) -> Deferred[str]:
        """The last `lines` lines of the container's stdout and stderr ('' when it is gone)."""
        return self.in_thread(self._logs_blocking, container_id, lines)

    def remove(self, container_id: str, timeout: int) -> Deferred[None]:
        """Stop the container (SIGTERM, SIGKILL after `timeout` s) and remove it with its
        anonymous volumes; named volumes such as a home directory are kept."""
        return self.in_thread(self._remove_blocking, container_id, timeout)

    def list_managed(self, instance: str) -> Deferred[list[ContainerInfo]]:
        """All containers labelled with this relay instance, running or not."""
        return self.in_thread(self._list_blocking, instance)

    def memory_total(self) -> Deferred[int]:
        """The engine's memory in bytes, as `docker info` reports it."""
        return self.in_thread(self._info_blocking)

    def image_present(self, image: str) -> Deferred[bool]:
        """Whether the engine has the image, as `docker image inspect` would find it."""
        return self.in_thread(self._image_present_blocking, image)

    def pull_image(self, image: str, on_progress: PullProgress) -> IImagePull:
        """Pull the image as `docker pull` does. The pull holds one thread of the pool while it
        runs; progress is read one message at a time, so pausing it holds the engine back."""
        pull = DockerImagePull(on_progress)
        working = self.in_thread(self._pull_blocking, image, pull)
        working.addBoth(pull.finished)
        return pull

    def engine_summary(self, instance: str) -> Deferred[EngineSummary]:
        """`docker version` and `docker info` in brief, and this instance's containers."""
        return self.in_thread(self._summary_blocking, instance)

    def follow_events(
        self,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> IEventFollower:
        """Follow the container events of `instance` (see IContainerProvisioner). The stream
        holds one thread of the pool for as long as it is open."""
        follower = EventFollower(self, instance, on_event, on_connected, on_lost)
        follower.connect()
        return follower

    # -- more for the owner -------------------------------------------------------------------

    def when_swept(self) -> Deferred[None]:
        """Fires once no timed-out start is being watched for leftovers any more."""
        return self._leftovers.when_idle()

    # -- plumbing -----------------------------------------------------------------------------

    def in_thread(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run `operation(api, *args)` in the engine's thread pool, with outages translated and
        logged as for the provisioner's own calls (for the volumes and files beside it)."""
        return deferToThreadPool(self._reactor, self._pool, self._guarded, operation, *args)

    def _in_thread_quietly(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        """As _in_thread, for work that retries and logs outages itself, once rather than per try."""
        return deferToThreadPool(self._reactor, self._pool, self._guarded, operation, *args, quiet=True)

    def _guarded(self, operation: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """Run `operation(api, *args)` in a worker thread, translating engine outages (and
        logging them, unless `quiet`) and telling the metrics how it went. Quiet work (the
        event stream, the sweeper) retries by itself and is long-lived: only its failures count."""
        name = _operation_name(operation)
        began = time.monotonic()
        try:
            return self._call(name, operation, *args, quiet=quiet)
        finally:
            if not quiet:
                self._metrics.docker_call(name, time.monotonic() - began)

    def _call(self, name: str, operation: Callable[..., T], *args: Any, quiet: bool) -> T:
        try:
            return operation(self._api(), *args)
        except ContainerStartFailed:
            self._metrics.docker_error(name, "refused")
            raise
        except APIError as e:
            # The engine answered, so it is reachable; but an internal error is still one the
            # caller can only answer with "try again later".
            if not e.is_server_error():
                self._metrics.docker_error(name, "refused")
                raise
            error = ContainerEngineUnavailable(
                f"Docker engine at {self.engine_address} failed: {api_reason(e)}"
            )
            cause: BaseException | None = e
        except ContainerEngineUnavailable as e:
            error, cause = e, e.__cause__
        except (requests.exceptions.RequestException, OSError) as e:
            # Connection refused or reset, socket missing, request timed out. (APIError is a
            # RequestException too, but was handled above.)
            error, cause = self._engine_error(e), e
            if not isinstance(error, ContainerEngineTimedOut):
                # Connect afresh (and check the version again) to an engine that may have been
                # replaced; a hung one is better not asked twice.
                self._forget_client()
        self._metrics.docker_error(name, "timed_out" if isinstance(error, ContainerEngineTimedOut) else "unavailable")
        if not quiet:
            self._reactor.callFromThread(self._log.warn, "{reason}", reason=str(error), engine=self.engine_address)
        raise error from cause

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._connect()
                except APIError:
                    raise
                except DockerException as e:
                    # A client that cannot even be made: DOCKER_HOST, TLS files, a bad URL.
                    raise ContainerEngineUnavailable(
                        f"Docker engine unreachable at {self.engine_address}: {shorten(str(e))}"
                    ) from e
            return self._client.api

    def _connect(self) -> docker.DockerClient:
        # docker-py asks the engine for its API version while constructing a client unless it
        # is given one; we ask explicitly, unversioned, and then speak the lower of the
        # engine's version and the newest this docker-py knows (what the docker CLI does), so
        # an older engine (Debian's 20.10 speaks 1.41) and a newer one both work.
        probe = self._make_client(DEFAULT_DOCKER_API_VERSION)
        try:
            server = probe.api.version(api_version=False)
        finally:
            probe.close()
        engine_version = str(server.get("ApiVersion", ""))
        if not engine_version:
            raise ContainerEngineUnavailable(
                f"Docker engine at {self.engine_address} did not say which API version it speaks"
            )
        version = engine_version
        if version_lt(DEFAULT_DOCKER_API_VERSION, engine_version):
            version = DEFAULT_DOCKER_API_VERSION
        if version_lt(version, MINIMUM_DOCKER_API_VERSION):
            raise ContainerEngineUnavailable(
                f"Docker engine at {self.engine_address} speaks API {engine_version}, "
                f"older than the {MINIMUM_DOCKER_API_VERSION} this relay needs"
            )
        client = self._make_client(version)
        self._reactor.callFromThread(
            self._log.info,
            "connected to Docker engine {engine} ({engine_version}, API {api_version})",
            engine=self.engine_address,
            engine_version=server.get("Version", "?"),
            api_version=version,
        )
        return client

    def _make_client(self, version: str) -> docker.DockerClient:
        # With a version given, constructing a client makes no request. docker-py hands the
        # timeout to requests, which takes fractions of seconds; the stubs say int.
        if self._url is None:
            return docker.DockerClient.from_env(version=version, timeout=self._timeout)  # type: ignore[arg-type]
        return docker.DockerClient(base_url=self._url, version=version, timeout=self._timeout)  # type: ignore[arg-type]

    def _forget_client(self) -> None:
        """Drop the client after a connection failure, so the next call connects afresh."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _engine_error(self, error: BaseException) -> ContainerEngineUnavailable:
        """What a failure to talk to the engine means for the caller, in words for an admin."""
        if _timed_out(error):
            return ContainerEngineTimedOut(
                f"Docker engine at {self.engine_address} did not answer within "
                f"{self._timeout:g} s (the [docker] timeout)"
            )
        return ContainerEngineUnavailable(
            f"Docker engine unreachable at {self.engine_address}: {_connection_reason(error)}"
        )

    # -- the blocking work, in worker threads -------------------------------------------------

    def _start_blocking(
        self, api: docker.APIClient, spec: ContainerSpec, replace_leftover: bool
    ) -> ContainerInfo:
        try:
            return self._create_and_start(api, spec, replace_leftover)
        except (requests.exceptions.RequestException, OSError) as e:
            # Past this point the engine may have the create in hand: a hung engine carries it
            # out when it resumes, and a busy one when it gets to it. Nobody would own that
            # container, so watch for it.
            if _timed_out(e):
                self._reactor.callFromThread(self._leftovers.watch, spec)
            raise

    def _create_and_start(
        self, api: docker.APIClient, spec: ContainerSpec, replace_leftover: bool
    ) -> ContainerInfo:
        desktop = spec.desktop
        environment = dict(desktop.environment)
        environment["VNC_PW"] = spec.vnc_password
        host_port = "{}-{}".format(*self._port_range) if self._port_range else None
        host_config = api.create_host_config(
            port_bindings={PORT_KEY: (LOOPBACK, host_port)},
            shm_size=desktop.shm_size,
            mem_limit=desktop.memory,
            nano_cpus=int(desktop.cpus * 1e9) if desktop.cpus else None,
            pids_limit=desktop.pids_limit,
            security_opt=["no-new-privileges"],
            mounts=[
                DockerMount(m.target, m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts
            ],
        )
        name = container_name(spec)

        def create() -> Mapping[str, Any]:
            return api.create_container(
                desktop.image,
                name=name,
                labels=dict(spec.labels),
                environment=environment,
                ports=[DESKTOP_PORT],
                host_config=host_config,
                detach=True,
            )

        try:
            if replace_leftover:
                created = self._create_in_place_of_leftover(api, create, name, spec)
            else:
                created = create()
        except ImageNotFound as e:
            raise DesktopImageMissing(
                f"desktop image '{desktop.image}' is not on this server: build or pull it"
            ) from e
        except APIError as e:
            raise ContainerStartFailed(
                f"the container engine refused to create the desktop: {api_reason(e)}"
            ) from e
        container_id = created["Id"]
        try:
            api.start(container_id)
        except APIError as e:
            self._discard_unstarted(api, container_id, name, spec)
            raise ContainerStartFailed(
                f"the container engine could not start the desktop: {api_reason(e)}"
            ) from e
        info = self._inspect_blocking(api, container_id)
        if info is None:
            # Gone between start and inspect: only someone else's `docker rm -f` does that.
            raise ContainerStartFailed("the desktop container disappeared right after it started")
        return info

    def _create_in_place_of_leftover(
        self, api: docker.APIClient, create: Callable[[], Mapping[str, Any]], name: str, spec: ContainerSpec
    ) -> Mapping[str, Any]:
        """Create the container of a session whose earlier start timed out, removing what that
        start left. The name is the session's, so a conflict means the engine is carrying out
        the abandoned create right now: it holds the name before the container can be removed,
        hence the short waits (in this worker thread) until it can."""
        deadline = time.monotonic() + _LEFTOVER_CONFLICT_WAIT
        while True:
            self._remove_leftover(api, name, spec)
            try:
                return create()
            except APIError as e:
                if e.status_code != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def _remove_leftover(self, api: docker.APIClient, name: str, spec: ContainerSpec) -> None:
        # Being removed already, say: should it still hold the name, the create says so.
        self._remove_logged(
            api, name, spec,
            removed="removed container {container} left by the timed-out start of session {session}",
            refused="could not remove container {container} left by session {session}: {reason}",
        )

    def _discard_unstarted(
        self, api: docker.APIClient, container_id: str, name: str, spec: ContainerSpec
    ) -> None:
        """Remove a container that was created but would not start, so no orphan remains."""
        # If the engine refuses, the container is labelled: the next reconcile removes it.
        self._remove_logged(
            api, container_id, spec, name=name, container_id=container_id[:12],
            removed="removed container {container} for session {session}: it would not start",
            refused="could not remove unstartable container {container} for session {session}: {reason}",
        )

    def _remove_logged(
        self, api: docker.APIClient, ref: str, spec: ContainerSpec, *, removed: str, refused: str,
        name: str | None = None, **fields: str,
    ) -> None:
        """Force-remove a container (by id or name) of a start that went wrong, in a worker
        thread, logging what happened; gone already is fine, a refusal is only logged."""
        try:
            api.remove_container(ref, v=True, force=True)
        except NotFound:
            return
        except APIError as e:
            self._reactor.callFromThread(
                self._log.warn, refused, container=name or ref, session=spec.session_id, reason=api_reason(e)
            )
            return
        self._reactor.callFromThread(
            self._log.info, removed, container=name or ref, session=spec.session_id, **fields
        )

    def _info_blocking(self, api: docker.APIClient) -> int:
        return int(api.info()["MemTotal"])

    def _inspect_blocking(self, api: docker.APIClient, container_id: str) -> ContainerInfo | None:
        try:
            return container_info_from_inspect(api.inspect_container(container_id))
        except NotFound:
            return None

    def _logs_blocking(self, api: docker.APIClient, container_id: str, lines: int) -> str:
        try:
            output = api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except NotFound:
            return ""
        return output.decode("utf-8", "replace")

    def _remove_blocking(self, api: docker.APIClient, container_id: str, timeout: int) -> None:
        try:
            api.stop(container_id, timeout=timeout)
            # force: should it have been started again meanwhile, it still goes.
            api.remove_container(container_id, v=True, force=True)
        except NotFound:
            self._reactor.callFromThread(
                self._log.debug, "container {container_id} already gone", container_id=container_id
            )
            return
        except APIError as e:
            if e.status_code == 409 and "already in progress" in api_reason(e):
                return
            raise
        self._reactor.callFromThread(
            self._log.info, "removed container {container_id}", container_id=container_id[:12]
        )

    def _image_present_blocking(self, api: docker.APIClient, image: str) -> bool:
        try:
            api.inspect_image(image)
        except (ImageNotFound, NotFound):
            return False
        return True

    def _pull_blocking(self, api: docker.APIClient, image: str, pull: DockerImagePull) -> None:
        repository, tag = parse_repository_tag(image)
        failure: str | None = None
        try:
            # decode: one dict per progress message, read as the engine sends them.
            for message in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if not pull.wait_until_wanted():
                    return
                if message.get("error"):
                    failure = str(message["error"])
                self._reactor.callFromThread(pull.deliver, message)
        except APIError as e:
            # Unknown image, a registry that refuses or cannot be reached: the engine answers,
            # so it is the pull that failed, not the engine.
            raise ImagePullFailed(api_reason(e)) from e
        if failure is not None:
            raise ImagePullFailed(failure)

    def _summary_blocking(self, api: docker.APIClient, instance: str) -> EngineSummary:
        version = api.version()
        info = api.info()
        containers = api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
        return EngineSummary(
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            api_version_used=str(api.api_version),
            memory=int(info.get("MemTotal", 0)),
            cpus=int(info.get("NCPU", 0)),
            containers_running=sum(1 for c in containers if c.get("State") == "running"),
            containers_all=len(containers),
        )

    def _list_blocking(self, api: docker.APIClient, instance: str) -> list[ContainerInfo]:
        summaries = api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
        found = []
        for summary in summaries:
            # The list format lacks the environment and the state details: inspect each.
            info = self._inspect_blocking(api, summary["Id"])
            if info is not None:
                found.append(info)
        return found
