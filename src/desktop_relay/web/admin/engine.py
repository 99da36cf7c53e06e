"""GET /api/admin/engine/: the Docker engine in brief and this relay process (instance, version,
uptime, open WebSocket bridges)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from klein import Klein
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ...engine.interface import ContainerEngineUnavailable, IContainerProvisioner
from ..responses import json_response
from . import add_problem_handlers
from .auth import AdminAuth


def relay_version() -> str:
    """The installed package's version."""
    try:
        return version("desktop-relay")
    except PackageNotFoundError:
        return "unknown"


class EngineAdmin:
    """The engine and relay summary; the engine may be unreachable, the relay still answers."""

    app = Klein()
    add_problem_handlers(app)

    def __init__(self, auth: AdminAuth, provisioner: IContainerProvisioner, *, instance: str,
                 clock: IReactorTime, started: float, bridge_count: Callable[[], int]) -> None:
        self._auth = auth
        self._provisioner = provisioner
        self._instance = instance
        self._clock = clock
        self._started = started
        self._bridge_count = bridge_count


    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def summary(self, request: IRequest):  # type: ignore[no-untyped-def]
        yield self._auth.caller(request)
        engine: dict[str, Any]
        try:
            found = yield self._provisioner.engine_summary(self._instance)
        except ContainerEngineUnavailable as e:
            engine = {"reachable": False, "problem": str(e)}
        else:
            engine = {
                "reachable": True, "version": found.version, "api_version": found.api_version,
                "api_version_used": found.api_version_used, "memory": found.memory, "cpus": found.cpus,
                "containers": {"running": found.containers_running, "all": found.containers_all},
            }
        now = self._clock.seconds()
        return json_response(request, {
            "engine": engine,
            "relay": {
                "instance": self._instance, "version": relay_version(), "started": self._started,
                "uptime": round(now - self._started, 3), "bridges": self._bridge_count(),
            },
        })
