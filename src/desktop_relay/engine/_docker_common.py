"""What the Docker modules of this package share: the engine's data in the interface's terms
(`docker inspect` data as ContainerInfo, event messages as ContainerEvent, engine timestamps,
a container's name), engine messages shortened for users, the retry backoff of the event
follower and the leftover sweeper, and what those two use of DockerProvisioner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from docker.errors import APIError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads

from .interface import (
    DESKTOP_PORT,
    LABEL_DESKTOP,
    LABEL_OWNER,
    LABEL_POOL,
    LABEL_SESSION,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
)

T = TypeVar("T")

PORT_KEY = f"{DESKTOP_PORT}/tcp"
LOOPBACK = "127.0.0.1"
# Where docker-py looks when neither the configuration nor DOCKER_HOST says otherwise.
_DEFAULT_ENGINE = "unix:///var/run/docker.sock"
# Engine messages end up in front of users: keep them to one readable line.
_MAX_REASON = 300

# Reconnecting to the event stream, and sweeping for containers of timed-out starts: the first
# retry after this many seconds, doubling up to the maximum.
FIRST_RETRY = 0.5
MAX_RETRY = 10.0

# An engine timestamp: RFC 3339 with up to nanoseconds, which datetime cannot hold.
_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")

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
        pooled=labels.get(LABEL_POOL) == "yes",
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
    for bindings in (settings.get(PORT_KEY), requested.get(PORT_KEY)):
        for binding in bindings or ():
            port = binding.get("HostPort") or ""
            if binding.get("HostIp") in (LOOPBACK, "") and port.isdigit():
                return int(port)
    return None

def _problem(state: Mapping[str, Any]) -> str:
    status = state.get("Status")
    if state.get("OOMKilled"):
        return "ran out of memory and was killed"
    if state.get("Error"):
        return f"the container engine reported: {shorten(state['Error'])}"
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

def shorten(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join((text or "").split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."

def api_reason(error: APIError) -> str:
    return shorten(error.explanation or str(error))

class ProvisionerThreads(Protocol):
    """What the event follower and the leftover sweeper use of DockerProvisioner: its reactor,
    its request timeout, its pool for work that retries by itself, and the engine's address."""

    _reactor: IReactorFromThreads
    _timeout: float

    @property
    def engine_address(self) -> str: ...

    def _in_thread_quietly(self, operation: Callable[..., T], *args: Any) -> Deferred[T]: ...
