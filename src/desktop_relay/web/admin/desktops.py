"""/api/admin/desktops/: the catalog as configured, with live usage and whether each image is on
the engine; POST /<name>/pull pulls a desktop's image, streaming the engine's progress as JSON
lines (application/x-ndjson) and a last line that says how it ended."""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ...config import DesktopType
from ...engine.interface import ContainerEngineUnavailable, ImagePullFailed
from ...i18n import N_
from ...lifecycle import DesktopSessions
from ...store import QUEUED, READY, STARTING, SQLiteStore
from ..responses import Problem, json_response
from . import add_problem_handlers
from .auth import AdminAuth

# The fields of Docker's progress messages passed on to the caller (the rest is noise or internal).
_PROGRESS_FIELDS = ("status", "id", "progress", "progressDetail", "error")


def desktop_view(desktop: DesktopType, usage: Mapping[str, int], image_present: bool | None,
                 offered: bool = True) -> dict[str, Any]:
    """One desktop as configured, with its live usage; image_present None: the engine is away;
    offered False: a reload removed it, and sessions of it still run."""
    return {
        "name": desktop.name,
        "offered": offered,
        "title": desktop.title,
        "description": desktop.description,
        "image": desktop.image,
        "image_present": image_present,
        "limits": {
            "memory": desktop.memory,
            "cpus": desktop.cpus,
            "pids_limit": desktop.pids_limit,
            "shm_size": desktop.shm_size,
            "idle_timeout": desktop.idle_timeout,
            "max_lifetime": desktop.max_lifetime,
            "disconnect_grace": desktop.disconnect_grace,
            "idle_warning": desktop.idle_warning,
            "max_sessions": desktop.max_sessions,
        },
        "groups": sorted(desktop.groups),
        "users": sorted(desktop.users),
        "usage": {
            "running": usage.get(READY, 0),
            "starting": usage.get(STARTING, 0),
            "queued": usage.get(QUEUED, 0),
        },
    }


class DesktopsAdmin:
    """The desktop catalog for admins, and image pulls."""

    app = Klein()
    add_problem_handlers(app)
    _log = Logger()

    def __init__(self, auth: AdminAuth, sessions: DesktopSessions, store: SQLiteStore,
                 clock: IReactorTime) -> None:
        self._auth = auth
        self._sessions = sessions
        self._store = store
        self._clock = clock
        # Images being pulled now: a second pull of one would only hold another Docker thread.
        self._pulling: set[str] = set()


    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def catalog(self, request: IRequest):  # type: ignore[no-untyped-def]
        yield self._auth.caller(request)
        usage = yield self._usage()
        desktops = list(self._sessions.desktops.values())
        retired = [d for name, d in self._sessions.retired.items() if name in usage]
        present = yield self._images_present({d.image for d in desktops + retired})
        return json_response(request, {"items": [
            desktop_view(d, usage.get(d.name, {}), present[d.image]) for d in desktops
        ] + [desktop_view(d, usage[d.name], present[d.image], offered=False) for d in retired]})

    @app.route("/<name>", methods=["GET"])
    @inlineCallbacks
    def one(self, request: IRequest, name: str):  # type: ignore[no-untyped-def]
        yield self._auth.caller(request)
        desktop = self._desktop(name)
        usage = yield self._usage()
        present = yield self._images_present({desktop.image})
        return json_response(request, desktop_view(desktop, usage.get(name, {}), present[desktop.image]))

    @app.route("/<name>/pull", methods=["POST"])
    @inlineCallbacks
    def pull(self, request: Request, name: str):  # type: ignore[no-untyped-def]
        caller = yield self._auth.writer(request)
        desktop = self._desktop(name)
        if desktop.image in self._pulling:
            raise Problem(409, "pull-in-progress", N_("Pull in progress"),
                          N_("The image {image} is being pulled already."), values={"image": desktop.image})
        self._pulling.add(desktop.image)
        try:
            yield self._pull(request, caller.name, desktop)
        finally:
            self._pulling.discard(desktop.image)
        return b""

    @inlineCallbacks
    def _pull(self, request: Request, actor: str, desktop: DesktopType) -> Generator[Deferred[Any], Any, None]:
        lines = _ProgressLines(request)
        self._log.info("{actor} pulls {image} for desktop {desktop}", actor=actor, image=desktop.image,
                       desktop=desktop.name)
        pulling = self._sessions.provisioner.pull_image(
            desktop.image, lambda message: lines.write({k: message[k] for k in _PROGRESS_FIELDS if k in message}),
        )
        # A caller that reads slowly pauses the pull's reading; one that leaves stops it.
        request.registerProducer(pulling, True)
        request.notifyFinish().addErrback(lambda _: pulling.stopProducing())
        try:
            yield pulling.done
        except CancelledError:
            self._log.info("pull of {image} given up: the caller went away", image=desktop.image)
            yield self._audit(actor, desktop, "given up")
            raise
        except ContainerEngineUnavailable as e:
            if not lines.started:
                _let_go(request)
                raise  # nothing sent yet: a 503 problem says it best
            yield self._ended(request, lines, actor, desktop, {"status": "failed", "error": str(e)})
        except ImagePullFailed as e:
            self._log.warn("pull of {image} failed: {reason}", image=desktop.image, reason=str(e))
            yield self._ended(request, lines, actor, desktop, {"status": "failed", "error": str(e)})
        else:
            self._log.info("pulled {image} for desktop {desktop}", image=desktop.image, desktop=desktop.name)
            yield self._ended(request, lines, actor, desktop, {"status": "done"})

    @inlineCallbacks
    def _ended(self, request: Request, lines: _ProgressLines, actor: str, desktop: DesktopType,
               last: dict[str, Any]) -> Generator[Deferred[Any], Any, None]:
        _let_go(request)
        lines.write({**last, "desktop": desktop.name, "image": desktop.image})
        yield self._audit(actor, desktop, last.get("error") or last["status"])

    def _audit(self, actor: str, desktop: DesktopType, detail: str) -> Deferred[None]:
        return self._store.audit(self._clock.seconds(), actor, "admin-pull", desktop.name,
                                 f"{desktop.image}: {detail}")

    def _desktop(self, name: str) -> DesktopType:
        desktop = self._sessions.desktops.get(name)
        if desktop is None:
            raise Problem(404, "no-such-desktop", N_("No such desktop"), N_("There is no desktop {name}."),
                          values={"name": repr(name)})
        return desktop

    @inlineCallbacks
    def _usage(self) -> Generator[Deferred[Any], Any, dict[str, dict[str, int]]]:
        usage: dict[str, dict[str, int]] = {}
        for session in (yield self._store.sessions_in(READY, STARTING, QUEUED)):
            counts = usage.setdefault(session.desktop, {})
            counts[session.state] = counts.get(session.state, 0) + 1
        return usage

    @inlineCallbacks
    def _images_present(self, images: set[str]) -> Generator[Deferred[Any], Any, dict[str, bool | None]]:
        """Each image's presence; None for all when the engine cannot be asked."""
        ordered = sorted(images)
        results = yield DeferredList([self._sessions.provisioner.image_present(i) for i in ordered],
                                     consumeErrors=True)
        present: dict[str, bool | None] = {}
        for image, (ok, value) in zip(ordered, results, strict=True):
            if not ok:
                value.trap(ContainerEngineUnavailable)
                value = None
            present[image] = value
        return present


def _let_go(request: Request) -> None:
    """Unregister the pull from a request that may have lost its connection meanwhile."""
    if request.channel is not None and request.producer is not None:
        request.unregisterProducer()


class _ProgressLines:
    """The answer as JSON lines; the status and headers go out with the first line."""

    def __init__(self, request: IRequest) -> None:
        self._request = request
        self.started = False

    def write(self, value: Mapping[str, Any]) -> None:
        if not self.started:
            self.started = True
            self._request.setResponseCode(200)
            self._request.setHeader(b"Content-Type", b"application/x-ndjson")
            self._request.setHeader(b"Cache-Control", b"no-store")
            self._request.setHeader(b"X-Content-Type-Options", b"nosniff")
        self._request.write(json.dumps(value).encode("utf-8") + b"\n")
