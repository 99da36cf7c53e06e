"""The teachers' classwork API under /api/classwork/: a class's hand-out filled and emptied,
its pupils' hand-ins listed and collected as one zip, and the due time that closes them. Every
class is checked with ClassScope: outside the caller's classes the answer is 404 `no-such-class`,
as for a class that does not exist.

    GET    /api/classwork/                         the classes the caller teaches, with due times
    GET    /api/classwork/CLASS                    its pupils and whether each has a hand-in
    PUT    /api/classwork/CLASS/due                {"due": ISO 8601 or epoch seconds}: set or move it
    DELETE /api/classwork/CLASS/due                clear it (the hand-ins open again)
    GET    /api/classwork/CLASS/handins.zip        every hand-in of the class, streamed as one zip
    GET|PUT|POST|DELETE /api/classwork/handout/CLASS/PATH   the hand-out, as the files API does homes
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request

from ..auth import PUPIL
from ..classwork.service import Classwork
from ..engine.interface import ContainerEngineUnavailable
from ..files import DockerFiles, FilesPlace
from ..files.paths import FilesPath
from ..files.transfer import DownloadStream
from ..i18n import N_
from ..store import SQLiteStore
from ..store.web_sessions import WebSession
from .files import FilesAPI
from .guard import RequestGuard
from .responses import Problem, handle_problems, json_response, read_json_body

# A due time further ahead than this is a typing mistake, not a plan.
MAX_DUE_AHEAD = 366 * 24 * 3600
# How much a zip may be: a stream has no known end, the limit only says "until it ends".
_UNBOUNDED = 1 << 62


def _engine_down(error: ContainerEngineUnavailable) -> Problem:
    return Problem(503, "classwork-unavailable", N_("Hand-outs and hand-ins are unavailable right now"),
                   N_("The server cannot reach its container engine. Try again in a minute."))


def _no_such_class(class_group: str) -> Problem:
    return Problem(404, "no-such-class", N_("No such class"), N_("You teach no class {class_group}."),
                   values={"class_group": repr(class_group)})


class _TaughtHandouts(Mapping[str, FilesPlace]):
    """The hand-outs of the classes someone teaches, as files places by class."""

    def __init__(self, classwork: Classwork, web: WebSession) -> None:
        self._classwork = classwork
        self._web = web

    def _place(self, class_group: str) -> FilesPlace:
        folder = self._classwork.scope.settings.handout_folder
        return self._classwork.files_place(self._classwork.handout(class_group), f"{folder} {class_group}")

    def __getitem__(self, class_group: str) -> FilesPlace:
        if not self._classwork.scope.teaches(self._web.role, self._web.groups, class_group):
            raise KeyError(class_group)
        return self._place(class_group)

    def __iter__(self) -> Iterator[str]:
        # A see-all admin may open any class's hand-out, but is offered their own classes'.
        return iter(sorted(self._classwork.scope.classes_in(self._web.groups) & self._taught()))

    def _taught(self) -> frozenset[str]:
        taught = self._classwork.scope.taught(self._web.role, self._web.groups)
        return self._classwork.scope.classes_in(self._web.groups) if taught is None else taught

    def __len__(self) -> int:
        return len(list(iter(self)))


class HandoutFiles(FilesAPI):
    """The files API's routes on the hand-outs of the classes the caller teaches."""

    def __init__(self, files: DockerFiles, guard: RequestGuard, classwork: Classwork, store: SQLiteStore,
                 max_upload: int) -> None:
        super().__init__(files, guard, classwork.instance, lambda identity: [], {},
                         max_upload, classwork)
        self._store = store

    @inlineCallbacks
    def _places(self, request: IRequest) -> Generator[Deferred[Any], Any, Mapping[str, FilesPlace]]:
        web = yield self._guard.signed_in(request)
        assert self._classwork is not None
        return _TaughtHandouts(self._classwork, web)

    def _missing(self, key: str) -> Problem:
        return _no_such_class(key)

    def _refusal(self, place: FilesPlace) -> Problem | None:
        return None

    @inlineCallbacks
    def _changed(self, request: IRequest, place: FilesPlace, path: FilesPath,
                 action: str) -> Generator[Deferred[Any], Any, None]:
        web = yield self._guard.signed_in(request)
        class_group = place.home.owner
        self._log.info("{user} {action} {path} in the hand-out of class {class_group}",
                       user=web.user_id, action="changed" if action == "put" else "deleted",
                       path=path.relative, class_group=class_group)
        yield self._store.audit(self._files_clock(), web.user_id, f"handout.{action}", class_group,
                                path.relative, self._guard.client_address(request))

    def _files_clock(self) -> float:
        assert self._classwork is not None
        return self._classwork.now()


class ClassworkAPI:
    """Klein routes of the teachers' classwork."""

    app = Klein()
    _log = Logger()

    def __init__(self, classwork: Classwork, guard: RequestGuard, store: SQLiteStore,
                 handout: HandoutFiles) -> None:
        self._classwork = classwork
        self._guard = guard
        self._store = store
        self._handout = handout

    handle_problems(app, _engine_down)

    @app.route("/handout/", branch=True)
    def handout(self, request: IRequest) -> IResource:
        return self._handout.app.resource()

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def classes(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        web = yield self._guard.signed_in(request)
        taught = _TaughtHandouts(self._classwork, web)
        settings = self._classwork.scope.settings
        return json_response(request, {
            "handout_folder": settings.handout_folder, "handin_folder": settings.handin_folder,
            "classes": [self._class_view(c) for c in taught],
        })

    @app.route("/<class_group>", methods=["GET"])
    @inlineCallbacks
    def pupils(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._teacher_of(request, class_group)
        pupils = yield self._pupils(class_group)
        handins = yield self._classwork.handins(class_group)
        return json_response(request, {
            **self._class_view(class_group),
            "pupils": [{"id": p.user_id, "name": p.display_name, "handin": p.user_id in handins}
                       for p in pupils],
        })

    @app.route("/<class_group>/due", methods=["PUT"])
    @inlineCallbacks
    def set_due(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        body = read_json_body(request)
        due = _due_of(body.get("due") if isinstance(body, dict) else None, self._classwork.now())
        yield self._classwork.set_due(class_group, due, web.user_id, self._guard.client_address(request))
        return json_response(request, self._class_view(class_group))

    @app.route("/<class_group>/due", methods=["DELETE"])
    @inlineCallbacks
    def clear_due(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        cleared = yield self._classwork.set_due(class_group, None, web.user_id,
                                                self._guard.client_address(request))
        if not cleared:
            raise Problem(404, "no-due-time", N_("No due time"), N_("This class has no due time to clear."))
        return json_response(request, self._class_view(class_group))

    @app.route("/<class_group>/handins.zip", methods=["GET"])
    @inlineCallbacks
    def handins_zip(self, request: Request, class_group: str) -> Generator[Deferred[Any], Any, None]:
        web = yield self._teacher_of(request, class_group)
        pupils = yield self._pupils(class_group)
        handins = yield self._classwork.handins(class_group)
        # Only pupils in the teacher's scope now; a folder per pupil, named by their id.
        volumes = {_zip_folder(p.user_id): handins[p.user_id] for p in pupils if p.user_id in handins}
        yield self._store.audit(self._classwork.now(), web.user_id, "handin.download", class_group,
                                f"{len(volumes)} hand-in(s)", self._guard.client_address(request))
        self._log.info("{user} downloads {count} hand-in(s) of class {class_group}",
                       user=web.user_id, count=len(volumes), class_group=class_group)
        stream = DownloadStream(self._classwork.reactor, request, _UNBOUNDED)
        request.notifyFinish().addErrback(lambda _: stream.stopProducing())
        name = f"{class_group}-hand-ins.zip"
        request.setHeader(b"Content-Type", b"application/zip")
        request.setHeader(b"Content-Disposition", f"attachment; filename*=UTF-8''{quote(name, safe='')}".encode())
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.registerProducer(stream, True)
        try:
            yield self._classwork.stream_zip(volumes, stream)
            ended = None
        except CancelledError:
            ended = "the browser left"
        except Exception as e:  # noqa: BLE001 - the headers are out: no problem answer can follow
            ended = str(e) or type(e).__name__
        finally:
            request.unregisterProducer()
        if ended is None:
            request.finish()
            return
        self._log.info("hand-in zip of class {class_group} for {user} ended early: {reason}",
                       class_group=class_group, user=web.user_id, reason=ended)
        if request.channel is not None:
            request.channel.transport.abortConnection()  # type: ignore[union-attr]

    # -- shared -------------------------------------------------------------------------

    @inlineCallbacks
    def _teacher_of(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, WebSession]:
        web: WebSession = yield self._guard.signed_in(request)
        if not self._classwork.scope.teaches(web.role, web.groups, class_group):
            raise _no_such_class(class_group)
        return web

    @inlineCallbacks
    def _pupils(self, class_group: str) -> Generator[Deferred[Any], Any, list[Any]]:
        members = yield self._store.members_seen(class_group)
        return [m for m in members if m.role == PUPIL]

    def _class_view(self, class_group: str) -> dict[str, Any]:
        due = self._classwork.due(class_group)
        return {"class": class_group, "due": due.due if due else None,
                "closed": self._classwork.closed(class_group)}


def _zip_folder(user_id: str) -> str:
    return user_id.replace("/", "_").replace("\\", "_") or "_"


def _due_of(value: Any, now: float) -> float:
    """A due time from the body: ISO 8601 with a zone, or epoch seconds; at most a year ahead."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Problem(422, "invalid-request", N_("Invalid request"),
                      N_('The body must be an object like {"due": "2026-12-02T14:00:00+01:00"}.'))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise Problem(422, "invalid-due", N_("Invalid due time"),
                          N_("Give the due time as ISO 8601 with its time zone, or as epoch seconds."))
        due = parsed.timestamp()
    else:
        due = float(value)
    if not math.isfinite(due) or due <= 0 or due > now + MAX_DUE_AHEAD:
        raise Problem(422, "invalid-due", N_("Invalid due time"),
                      N_("The due time must lie within a year from now."))
    return due
