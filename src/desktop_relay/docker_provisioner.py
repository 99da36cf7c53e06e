"""The Docker implementation of IContainerProvisioner: every Docker SDK call, in its own threads.

Owns the docker-py client (created lazily, API version negotiated, recreated after the engine
went away), how a ContainerSpec becomes a container (labels, limits, loopback-only port), how an
engine's inspect data and events become ContainerInfo and ContainerEvent, how engine failures
become ContainerEngineUnavailable, ContainerEngineTimedOut or ContainerStartFailed, the event
stream with its reconnection, and the clean-up after a start the engine did not answer in time.
Nothing here runs on the reactor thread except logging, timers and the Deferred plumbing.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import docker
import requests
import urllib3
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.errors import APIError, DockerException, ImageNotFound, NotFound, StreamParseError
from docker.types import CancellableStream
from docker.utils import convert_filters, version_lt
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .containers import (
    DESKTOP_PORT,
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
    IContainerProvisioner,
    IEventFollower,
)

T = TypeVar("T")

_PORT_KEY = f"{DESKTOP_PORT}/tcp"
_LOOPBACK = "127.0.0.1"
# Where docker-py looks when neither the configuration nor DOCKER_HOST says otherwise.
_DEFAULT_ENGINE = "unix:///var/run/docker.sock"
# Engine messages end up in front of users: keep them to one readable line.
_MAX_REASON = 300
# Reconnecting to the event stream, and sweeping for containers of timed-out starts: the first
# retry after this many seconds, doubling up to the maximum.
_FIRST_RETRY = 0.5
_MAX_RETRY = 10.0
# How long after a timed-out start the engine may still carry out its create: a hung engine
# resumes with the abandoned request in its socket buffer, however long it was stopped.
LEFTOVER_WATCH = 600.0
# An engine timestamp: RFC 3339 with up to nanoseconds, which datetime cannot hold.
_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def docker_threadpool(size: int) -> ThreadPool:
    """A bounded pool for blocking Docker SDK calls, kept apart from the reactor's shared pool
    (which also serves DNS). The caller starts it and stops it, e.g. from a service."""
    return ThreadPool(minthreads=0, maxthreads=size, name="docker")


def container_name(spec: ContainerSpec) -> str:
    """A name an admin can read in `docker ps`: relay instance, desktop, start of the session id."""
    raw = f"desktop-relay-{spec.instance}-{spec.desktop.name}-{spec.session_id[:12]}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def container_info_from_inspect(attrs: Mapping[str, Any]) -> ContainerInfo:
    """Translate the engine's `docker inspect` data of one of our containers into a ContainerInfo."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    state = attrs.get("State") or {}
    status = state.get("Status") or "unknown"
    running = status == "running"
    exit_code = state.get("ExitCode") if status in ("exited", "dead") else None
    # The engine keeps a previous run's FinishedAt while the container runs again.
    finished_at = None if running else engine_time(state.get("FinishedAt"))
    return ContainerInfo(
        container_id=attrs["Id"],
        session_id=labels.get(LABEL_SESSION, ""),
        owner=labels.get(LABEL_OWNER, ""),
        desktop=labels.get(LABEL_DESKTOP, ""),
        running=running,
        status=status,
        host_port=_published_port(attrs),
        exit_code=exit_code,
        problem=None if running else _problem(state),
        vnc_password=_environment(config).get("VNC_PW"),
        oom_killed=bool(state.get("OOMKilled")),
        finished_at=finished_at,
        started_at=engine_time(state.get("StartedAt")),
    )


def container_event_from_engine(message: Mapping[str, Any]) -> ContainerEvent | None:
    """Translate one message of the engine's event stream; None for anything but a container's."""
    if message.get("Type") != "container":
        return None
    actor = message.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    container_id = actor.get("ID") or message.get("id") or ""
    action = message.get("Action") or message.get("status") or ""
    if not container_id or not action:
        return None
    exit_code = str(attributes.get("exitCode", ""))
    nanoseconds = message.get("timeNano")
    return ContainerEvent(
        container_id=container_id,
        session_id=attributes.get(LABEL_SESSION, ""),
        action=action,
        exit_code=int(exit_code) if exit_code.lstrip("-").isdigit() else None,
        at=nanoseconds / 1e9 if isinstance(nanoseconds, int) else float(message.get("time") or 0),
    )


def engine_time(text: str | None) -> float | None:
    """An engine timestamp ("2024-05-01T07:30:00.123456789Z") in epoch seconds; None for
    Go's zero time ("0001-01-01T00:00:00Z"), which the engine reports for "never"."""
    match = _ENGINE_TIME.fullmatch(text or "")
    if match is None or match[1].startswith("0001-"):
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + float(match[2] or 0)


def _published_port(attrs: Mapping[str, Any]) -> int | None:
    # NetworkSettings holds the port the engine actually bound (only while the container runs);
    # HostConfig holds what was asked for, which is the answer when a fixed port was requested.
    settings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    requested = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for bindings in (settings.get(_PORT_KEY), requested.get(_PORT_KEY)):
        for binding in bindings or ():
            port = binding.get("HostPort") or ""
            if binding.get("HostIp") in (_LOOPBACK, "") and port.isdigit():
                return int(port)
    return None


def _problem(state: Mapping[str, Any]) -> str:
    status = state.get("Status")
    if state.get("OOMKilled"):
        return "ran out of memory and was killed"
    if state.get("Error"):
        return f"the container engine reported: {_shorten(state['Error'])}"
    if status == "exited":
        return f"exited with code {state.get('ExitCode')}"
    if status == "created":
        return "was created but never started"
    if status == "dead":
        return "is dead: the engine failed to stop or remove it"
    if status == "paused":
        return "is paused"
    return f"is {status}"


def _environment(config: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in config.get("Env") or ():
        name, _, value = entry.partition("=")
        env[name] = value
    return env


def _shorten(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join((text or "").split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _api_reason(error: APIError) -> str:
    return _shorten(error.explanation or str(error))


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
    return _shorten(str(error)) or type(error).__name__


# requests raises ReadTimeout for an answer that does not begin in time, but a ConnectionError
# wrapping urllib3's ReadTimeoutError for one that stops half-way; the socket's own is TimeoutError.
_TIMEOUTS = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def _timed_out(error: BaseException) -> bool:
    # urllib3 counts a refused connection (NewConnectionError) as a connect timeout.
    return any(
        isinstance(cause, _TIMEOUTS) and not isinstance(cause, urllib3.exceptions.NewConnectionError)
        for cause in _causes(error)
    )


def _open_event_stream(
    api: docker.APIClient, filters: Mapping[str, str], timeout: float
) -> tuple[CancellableStream, requests.Response]:
    """GET /events as `APIClient.events(decode=True, filters=...)` does, except that the wait for
    the engine's answer is bounded by `timeout`: events() waits for it without any limit, so a
    hung engine would hold the worker thread (and a stop()) for good. Once the engine has
    answered, the stream has no read timeout: events may come hours apart."""
    response = api._get(
        api._url("/events"), params={"filters": convert_filters(filters)}, stream=True, timeout=timeout
    )
    try:
        api._disable_socket_timeout(api._get_raw_response_socket(response))
    except BaseException:
        response.close()
        raise
    return CancellableStream(api._stream_helper(response, decode=True), response), response


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
    ) -> None:
        """`reactor` also provides IReactorTime. `url` None means: as `docker.from_env()` would
        (DOCKER_HOST, context, socket). `port_range` (low, high) makes the engine pick host
        ports in that range. `timeout` bounds each engine request, in seconds (a stop adds its
        own grace time); the event stream's waits for events are not bounded. For
        `leftover_watch` seconds after a start timed out, the provisioner removes the container
        the engine may still create for it."""
        self._reactor = reactor
        self._pool = threadpool
        self._url = url
        self._port_range = port_range
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._leftovers = _LeftoverSweeper(self, reactor, leftover_watch)

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
        d = self._in_thread(self._start_blocking, spec, replace_leftover)

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
        return self._in_thread(self._inspect_blocking, container_id)

    def logs_tail(self, container_id: str, lines: int) -> Deferred[str]:
        """The last `lines` lines of the container's stdout and stderr ('' when it is gone)."""
        return self._in_thread(self._logs_blocking, container_id, lines)

    def remove(self, container_id: str, timeout: int) -> Deferred[None]:
        """Stop the container (SIGTERM, SIGKILL after `timeout` s) and remove it with its
        anonymous volumes; named volumes such as a home directory are kept."""
        return self._in_thread(self._remove_blocking, container_id, timeout)

    def list_managed(self, instance: str) -> Deferred[list[ContainerInfo]]:
        """All containers labelled with this relay instance, running or not."""
        return self._in_thread(self._list_blocking, instance)

    def memory_total(self) -> Deferred[int]:
        """The engine's memory in bytes, as `docker info` reports it."""
        return self._in_thread(lambda api: int(api.info()["MemTotal"]))

    def follow_events(
        self,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> IEventFollower:
        """Follow the container events of `instance` (see IContainerProvisioner). The stream
        holds one thread of the pool for as long as it is open."""
        follower = _EventFollower(self, instance, on_event, on_connected, on_lost)
        follower.connect()
        return follower

    # -- more for the owner -------------------------------------------------------------------

    def when_swept(self) -> Deferred[None]:
        """Fires once no timed-out start is being watched for leftovers any more."""
        return self._leftovers.when_idle()

    # -- plumbing -----------------------------------------------------------------------------

    def _in_thread(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, self._guarded, operation, *args)

    def _in_thread_quietly(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        """As _in_thread, for work that retries and logs outages itself, once rather than per try."""
        return deferToThreadPool(self._reactor, self._pool, self._guarded, operation, *args, quiet=True)

    def _guarded(self, operation: Callable[..., T], *args: Any, quiet: bool = False) -> T:
        """Run `operation(api, *args)` in a worker thread, translating engine outages (and
        logging them, unless `quiet`)."""
        try:
            return operation(self._api(), *args)
        except APIError as e:
            # The engine answered, so it is reachable; but an internal error is still one the
            # caller can only answer with "try again later".
            if not e.is_server_error():
                raise
            error = ContainerEngineUnavailable(
                f"Docker engine at {self.engine_address} failed: {_api_reason(e)}"
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
                        f"Docker engine unreachable at {self.engine_address}: {_shorten(str(e))}"
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
        # With a version given, constructing a client makes no request.
        if self._url is None:
            return docker.DockerClient.from_env(version=version, timeout=self._timeout)
        return docker.DockerClient(base_url=self._url, version=version, timeout=self._timeout)

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
            port_bindings={_PORT_KEY: (_LOOPBACK, host_port)},
            shm_size=desktop.shm_size,
            mem_limit=desktop.memory,
            nano_cpus=int(desktop.cpus * 1e9) if desktop.cpus else None,
            pids_limit=desktop.pids_limit,
            security_opt=["no-new-privileges"],
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

        if replace_leftover:
            self._remove_leftover(api, name, spec)
        try:
            try:
                created = create()
            except APIError as e:
                # The name is the session's: taken, it is the leftover of an earlier timed-out
                # start of this session that the engine carried out only now.
                if not (replace_leftover and e.status_code == 409):
                    raise
                self._remove_leftover(api, name, spec)
                created = create()
        except ImageNotFound as e:
            raise ContainerStartFailed(
                f"desktop image '{desktop.image}' is not on this server: build or pull it"
            ) from e
        except APIError as e:
            raise ContainerStartFailed(
                f"the container engine refused to create the desktop: {_api_reason(e)}"
            ) from e
        container_id = created["Id"]
        try:
            api.start(container_id)
        except APIError as e:
            self._discard_unstarted(api, container_id, name, spec)
            raise ContainerStartFailed(
                f"the container engine could not start the desktop: {_api_reason(e)}"
            ) from e
        info = self._inspect_blocking(api, container_id)
        if info is None:
            # Gone between start and inspect: only someone else's `docker rm -f` does that.
            raise ContainerStartFailed("the desktop container disappeared right after it started")
        return info

    def _remove_leftover(self, api: docker.APIClient, name: str, spec: ContainerSpec) -> None:
        try:
            api.remove_container(name, v=True, force=True)
        except NotFound:
            return
        except APIError as e:
            # Being removed already, say; should it still hold the name, the create says so.
            self._reactor.callFromThread(
                self._log.warn,
                "could not remove container {container} left by session {session}: {reason}",
                container=name,
                session=spec.session_id,
                reason=_api_reason(e),
            )
            return
        self._reactor.callFromThread(
            self._log.info,
            "removed container {container} left by the timed-out start of session {session}",
            container=name,
            session=spec.session_id,
        )

    def _discard_unstarted(
        self, api: docker.APIClient, container_id: str, name: str, spec: ContainerSpec
    ) -> None:
        """Remove a container that was created but would not start, so no orphan remains."""
        try:
            api.remove_container(container_id, v=True, force=True)
        except NotFound:
            pass
        except APIError as e:
            # Labelled, so the next reconcile finds and removes it.
            self._reactor.callFromThread(
                self._log.warn,
                "could not remove unstartable container {container} for session {session}: {reason}",
                container=name,
                session=spec.session_id,
                reason=_api_reason(e),
            )
            return
        self._reactor.callFromThread(
            self._log.info,
            "removed container {container} for session {session}: it would not start",
            container=name,
            container_id=container_id[:12],
            session=spec.session_id,
        )

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
            if e.status_code == 409 and "already in progress" in _api_reason(e):
                return
            raise
        self._reactor.callFromThread(
            self._log.info, "removed container {container_id}", container_id=container_id[:12]
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


class _LeftoverSweeper:
    """Removes the containers that timed-out starts may still get from the engine.

    One sweep covers every watched session (a label-filtered list per relay instance), so a hung
    engine costs one pool thread however many starts timed out. A session stops being watched
    when its container was removed, when it is started again, or after `watch_for` seconds.
    """

    _log = Logger()

    def __init__(self, provisioner: DockerProvisioner, clock: IReactorTime, watch_for: float) -> None:
        self._provisioner = provisioner
        self._clock = clock
        self._watch_for = watch_for
        # session id -> (spec, until); read by the sweep in its thread, hence the lock.
        self._watched: dict[str, tuple[ContainerSpec, float]] = {}
        self._lock = threading.Lock()
        self._delay = _FIRST_RETRY
        self._next: IDelayedCall | None = None
        self._sweeping = False
        self._idle_waiters: list[Deferred[None]] = []

    def watch(self, spec: ContainerSpec) -> None:
        """Start watching for the container of `spec`, whose start just timed out."""
        with self._lock:
            self._watched[spec.session_id] = (spec, self._clock.seconds() + self._watch_for)
        self._log.warn(
            "the start of session {session} timed out: its container is removed should the "
            "engine still create it (watching for {watch_for:g} s)",
            session=spec.session_id,
            container=container_name(spec),
            watch_for=self._watch_for,
        )
        if self._next is None and not self._sweeping:
            self._delay = _FIRST_RETRY
            self._schedule()

    def forget(self, session_id: str) -> bool:
        """Stop watching a session (it is being started again); whether it was watched."""
        with self._lock:
            watched = self._watched.pop(session_id, None) is not None
        if watched and not self._watched and self._next is not None:
            self._next.cancel()
            self._next = None
            self._became_idle()
        return watched

    def when_idle(self) -> Deferred[None]:
        """Fires once nothing is watched and no sweep runs."""
        if not self._watched and not self._sweeping:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _schedule(self) -> None:
        self._next = self._clock.callLater(self._delay, self._sweep)
        self._delay = min(self._delay * 2, _MAX_RETRY)

    def _sweep(self) -> None:
        self._next = None
        now = self._clock.seconds()
        with self._lock:
            for session_id, (_, until) in list(self._watched.items()):
                if now >= until:
                    del self._watched[session_id]
            instances = {spec.instance for spec, _ in self._watched.values()}
        if not instances:
            self._became_idle()
            return
        self._sweeping = True
        d = self._provisioner._in_thread_quietly(self._sweep_blocking, instances)
        d.addCallbacks(self._swept, self._not_swept)

    def _sweep_blocking(self, api: docker.APIClient, instances: set[str]) -> list[tuple[str, str, str]]:
        removed = []
        for instance in instances:
            for summary in api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}):
                session_id = (summary.get("Labels") or {}).get(LABEL_SESSION, "")
                # Checked now, after the list: a session started again meanwhile has a
                # container of its own, which must stay.
                with self._lock:
                    if session_id not in self._watched:
                        continue
                try:
                    api.remove_container(summary["Id"], v=True, force=True)
                except NotFound:
                    pass
                names = summary.get("Names") or [""]
                removed.append((session_id, summary["Id"], names[0].lstrip("/")))
        return removed

    def _swept(self, removed: list[tuple[str, str, str]]) -> None:
        self._sweeping = False
        for session_id, container_id, name in removed:
            self._log.warn(
                "removed container {container} ({container_id}) of session {session}: the engine "
                "created it after the start had timed out",
                container=name,
                container_id=container_id[:12],
                session=session_id,
            )
            with self._lock:
                self._watched.pop(session_id, None)
        self._carry_on()

    def _not_swept(self, failure: Failure) -> None:
        self._sweeping = False
        if not failure.check(ContainerEngineUnavailable):
            self._log.failure("sweeping for containers of timed-out starts failed", failure)
        self._carry_on()

    def _carry_on(self) -> None:
        if self._watched:
            self._schedule()
        else:
            self._became_idle()

    def _became_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)


@implementer(IEventFollower)
class _EventFollower:
    """One subscription to the engine's container events: the stream, read in a pool thread,
    and its reconnection with backoff, driven from the reactor."""

    _log = Logger()

    def __init__(
        self,
        provisioner: DockerProvisioner,
        instance: str,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._provisioner = provisioner
        self._reactor: Any = provisioner._reactor
        self._instance = instance
        self._filters = {"type": "container", "label": f"{LABEL_INSTANCE}={instance}"}
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_lost = on_lost
        # The open stream, for stop() to close from outside; shared with the worker thread.
        self._lock = threading.Lock()
        self._stream: CancellableStream | None = None
        self._stopping = False
        # The reactor's side: the worker's Deferred while it runs, the pending retry, the
        # backoff, and what the owner was told last (None: nothing yet, True: connected,
        # False: lost), so that a failed retry does not tell it again.
        self._reading: Deferred[str] | None = None
        self._retry: IDelayedCall | None = None
        self._delay = _FIRST_RETRY
        self._up: bool | None = None
        self._lost_at = 0.0

    def connect(self) -> None:
        """Open the stream (again) in a pool thread."""
        self._retry = None
        self._reading = self._provisioner._in_thread_quietly(self._read_blocking)
        self._reading.addBoth(self._ended)

    def stop(self) -> Deferred[None]:
        """Stop following; fires when the worker thread has let go of the stream."""
        with self._lock:
            self._stopping = True
            if self._stream is not None:
                # Shuts the socket down under the worker's blocking read, which then ends.
                self._stream.close()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._reading is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._reading.addBoth(lambda _: done.callback(None))
        return done

    def _read_blocking(self, api: docker.APIClient) -> str:
        stream, response = _open_event_stream(api, self._filters, self._provisioner._timeout)
        with self._lock:
            if self._stopping:
                response.close()
                return "stopped"
            self._stream = stream
        try:
            # Only now: the engine has subscribed us, so a reconcile the owner does next misses
            # no event.
            self._reactor.callFromThread(self._established)
            for message in stream:
                event = container_event_from_engine(message)
                if event is not None:
                    self._reactor.callFromThread(self._deliver, event)
        except StreamParseError:
            return "the event stream broke off in the middle of an event"
        finally:
            with self._lock:
                self._stream = None
            response.close()
        return "the engine closed the event stream"

    def _established(self) -> None:
        if self._stopping:
            return
        engine = self._provisioner.engine_address
        if self._up is False:
            self._log.info(
                "following Docker events of instance {instance} at {engine} again, after {outage:.1f} s",
                instance=self._instance,
                engine=engine,
                outage=self._reactor.seconds() - self._lost_at,
            )
        else:
            self._log.info(
                "following Docker events of instance {instance} at {engine}", instance=self._instance, engine=engine
            )
        self._up = True
        self._delay = _FIRST_RETRY
        self._tell(self._on_connected)

    def _deliver(self, event: ContainerEvent) -> None:
        if not self._stopping:
            self._tell(self._on_event, event)

    def _ended(self, result: str | Failure) -> None:
        self._reading = None
        if self._stopping:
            return
        if isinstance(result, Failure):
            if result.check(ContainerEngineUnavailable):
                reason = str(result.value)
            elif result.check(APIError):
                reason = f"the engine refused the event stream: {_api_reason(result.value)}"
            else:
                self._log.failure("following Docker events failed", result)
                reason = f"following the events failed: {result.getErrorMessage()}"
        else:
            reason = result
        if self._up is not False:
            self._log.warn(
                "{what} Docker's event stream at {engine}: {reason}; retrying with backoff",
                what="lost" if self._up else "cannot open",
                engine=self._provisioner.engine_address,
                reason=reason,
            )
            self._up = False
            self._lost_at = self._reactor.seconds()
            self._tell(self._on_lost, reason)
        self._retry = self._reactor.callLater(self._delay, self.connect)
        self._delay = min(self._delay * 2, _MAX_RETRY)

    def _tell(self, callback: Callable[..., None], *args: Any) -> None:
        # The owner's mistake must not stop the stream: log it and carry on.
        maybeDeferred(callback, *args).addErrback(
            lambda failure: self._log.failure("the owner of the Docker event stream failed", failure)
        )
