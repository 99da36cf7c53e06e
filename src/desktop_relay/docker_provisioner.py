"""The Docker implementation of IContainerProvisioner: every Docker SDK call, in its own threads.

Owns the docker-py client (created lazily, API version negotiated, recreated after the engine
went away), how a ContainerSpec becomes a container (labels, limits, loopback-only port), how an
engine's inspect data becomes a ContainerInfo, and how engine failures become
ContainerEngineUnavailable or ContainerStartFailed. Nothing here runs on the reactor thread
except logging and the Deferred plumbing.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import docker
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils import version_lt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
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
    ContainerEngineUnavailable,
    ContainerInfo,
    ContainerSpec,
    ContainerStartFailed,
    IContainerProvisioner,
)

T = TypeVar("T")

_PORT_KEY = f"{DESKTOP_PORT}/tcp"
_LOOPBACK = "127.0.0.1"
# Where docker-py looks when neither the configuration nor DOCKER_HOST says otherwise.
_DEFAULT_ENGINE = "unix:///var/run/docker.sock"
# Engine messages end up in front of users: keep them to one readable line.
_MAX_REASON = 300


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
    )


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


def _connection_reason(error: BaseException) -> str:
    """The root cause of a connection failure in a few words (requests nests it deeply)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested.extend(current.args)
        pending.extend(e for e in nested if isinstance(e, BaseException))
    if isinstance(error, requests.exceptions.Timeout):
        return "it did not answer in time"
    return _shorten(str(error)) or type(error).__name__


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
        timeout: int = 60,
    ) -> None:
        """`url` None means: as `docker.from_env()` would (DOCKER_HOST, context, socket).
        `port_range` (low, high) makes the engine pick host ports in that range.
        `timeout` bounds each engine request, in seconds (a stop adds its own grace time)."""
        self._reactor = reactor
        self._pool = threadpool
        self._url = url
        self._port_range = port_range
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    @property
    def engine_address(self) -> str:
        """Where the engine is expected, for messages."""
        return self._url or os.environ.get("DOCKER_HOST") or _DEFAULT_ENGINE

    # -- IContainerProvisioner ---------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> Deferred[ContainerInfo]:
        """Create and start the container for `spec`; ContainerStartFailed with the reason."""
        d = self._in_thread(self._start_blocking, spec)

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

    # -- plumbing -----------------------------------------------------------------------------

    def _in_thread(self, operation: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, self._guarded, operation, *args)

    def _guarded(self, operation: Callable[..., T], *args: Any) -> T:
        """Run `operation(api, *args)` in a worker thread, translating engine outages."""
        api = self._api()
        try:
            return operation(api, *args)
        except APIError as e:
            # The engine answered, so it is reachable; but an internal error is still one the
            # caller can only answer with "try again later".
            if e.is_server_error():
                raise ContainerEngineUnavailable(
                    f"Docker engine at {self.engine_address} failed: {_api_reason(e)}"
                ) from e
            raise
        except (requests.exceptions.RequestException, OSError) as e:
            # Connection refused or reset, socket missing, request timed out. (APIError is a
            # RequestException too, but was handled above.)
            self._forget_client()
            raise self._unreachable(e) from e

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._connect()
                except ContainerEngineUnavailable:
                    raise
                except (DockerException, requests.exceptions.RequestException, OSError) as e:
                    raise self._unreachable(e) from e
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

    def _unreachable(self, error: BaseException) -> ContainerEngineUnavailable:
        reason = _connection_reason(error)
        self._reactor.callFromThread(
            self._log.warn,
            "Docker engine unreachable at {engine}: {reason}",
            engine=self.engine_address,
            reason=reason,
        )
        return ContainerEngineUnavailable(f"Docker engine unreachable at {self.engine_address}: {reason}")

    # -- the blocking work, in worker threads -------------------------------------------------

    def _start_blocking(self, api: docker.APIClient, spec: ContainerSpec) -> ContainerInfo:
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
        try:
            created = api.create_container(
                desktop.image,
                name=name,
                labels=dict(spec.labels),
                environment=environment,
                ports=[DESKTOP_PORT],
                host_config=host_config,
                detach=True,
            )
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
