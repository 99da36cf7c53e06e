"""The files API under /api/files/: a signed-in user's homes, listed, downloaded, uploaded to,
with folders made and things deleted, and the shares in them read-only. No desktop needs to run:
the operations go through the home's files container (files/containers.py).

    GET    /api/files/                  the user's homes, their quotas and the upload limit
    GET    /api/files/KEY/PATH/         a folder's entries (JSON)
    GET    /api/files/KEY/PATH          a file, streamed as an attachment
    PUT    /api/files/KEY/PATH          upload a file (the raw body), replacing one there
    POST   /api/files/KEY/PATH/         {"folder": "NAME"}: make a folder in it
    DELETE /api/files/KEY/PATH          delete a file or a folder with all it holds
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ..auth import Identity
from ..classwork import ClassVolume
from ..classwork.places import HANDIN_CLOSED, pupil_places, refusal
from ..classwork.service import Classwork
from ..config import DesktopType, ShareSettings
from ..engine.interface import ContainerEngineUnavailable
from ..files import DockerFiles, Entry, FilesPlace, places_for
from ..files.errors import (
    AlreadyExists,
    DiskFull,
    FilesError,
    NoSuchFile,
    NotAFile,
    NotAFolder,
    OutsideHome,
    QuotaExceeded,
    ReadOnly,
)
from ..files.paths import BadPath, FilesPath, deletable, files_path, in_share
from ..i18n import N_
from .guard import RequestGuard, identity_of
from .responses import (
    Problem,
    handle_problems,
    json_response,
    read_json_body,
)

_MB = 1024 * 1024

# Each FilesError as the user's problem: status, slug, title, detail.
_PROBLEMS: dict[type[FilesError], tuple[int, str, str, str]] = {
    NoSuchFile: (404, "no-such-file", N_("No such file or folder"), N_("It may have been moved or deleted.")),
    NotAFolder: (409, "not-a-folder", N_("Not a folder"), N_("This is a file, not a folder.")),
    NotAFile: (409, "not-a-file", N_("Not a file"), N_("A folder of that name is already there.")),
    AlreadyExists: (409, "already-exists", N_("Name already taken"),
                    N_("Something of that name is already in this folder.")),
    OutsideHome: (403, "outside-home", N_("Outside your files"),
                  N_("This link leads out of your files; it cannot be opened here.")),
    ReadOnly: (403, "read-only", N_("Read-only"), N_("Shared folders can be read, not changed.")),
    DiskFull: (507, "disk-full", N_("The server's disk is full"), N_("Tell your administrator.")),
}


def _engine_down(error: ContainerEngineUnavailable) -> Problem:
    return Problem(503, "files-unavailable", N_("Your files are unavailable right now"),
                   N_("The server cannot reach its container engine. Try again in a minute."))


class FilesAPI:
    """Klein routes of the files panel, for the signed-in user's own homes only."""

    app = Klein()
    _log = Logger()

    def __init__(
        self, files: DockerFiles, guard: RequestGuard, instance: str,
        desktops_for: Callable[[Identity], list[DesktopType]], shares: Mapping[str, ShareSettings],
        max_upload: int, classwork: Classwork | None = None,
    ) -> None:
        """`desktops_for` gives the desktops a user may start now (their homes are the user's
        homes, so a reload that changes desktops changes them too); with `classwork` a pupil
        also sees their classes' hand-outs (read-only) and their hand-ins."""
        self._files = files
        self._guard = guard
        self._instance = instance
        self._desktops_for = desktops_for
        self._shares = shares
        self._max_upload = max_upload
        self._classwork = classwork

    handle_problems(app, _engine_down)

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def homes(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        places = yield self._places(request)
        return json_response(request, {
            "max_upload": self._max_upload,
            "homes": [
                {"key": key, "title": place.title, "quota": place.quota, "kind": self._kind(place),
                 "writable": self._refusal(place) is None,
                 "shares": [share[len(place.home.path) + 1:] for share in place.share_targets
                            if share.startswith(place.home.path + "/")]}
                for key, place in places.items()
            ],
        })

    @app.route("/<key>/", branch=True, methods=["GET"])
    @inlineCallbacks
    def read(self, request: Request, key: str) -> Generator[Deferred[Any], Any, bytes | None]:
        place, path = yield self._target(request, key)
        entry: Entry = yield self._answer(request, place, path, self._files.stat(place, path))
        if entry.kind != "directory":
            if _folder_url(request):
                raise _problem_of(NotAFolder())
            yield self._answer(request, place, path, self._files.download(place, path, request))
            return None
        entries = yield self._answer(request, place, path, self._files.entries(place, path))
        shares = place.share_targets
        writable = self._refusal(place) is None
        return json_response(request, {
            "home": key,
            "path": path.relative,
            "writable": writable and not in_share(path.inside, shares),
            "entries": [
                {"name": e.name, "type": e.kind, "size": e.size, "modified": e.modified,
                 "writable": writable and deletable(f"{path.inside}/{e.name}", place.home.path, shares)}
                for e in entries
            ],
        })

    @app.route("/<key>/", branch=True, methods=["PUT"])
    @inlineCallbacks
    def upload(self, request: Request, key: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        place, path = yield self._writable_target(request, key)
        if not path.segments or _folder_url(request):
            raise Problem(405, "upload-to-folder", N_("A file name is needed"),
                          N_("Upload to the file's own address, below its folder."))
        content = request.content
        assert content is not None  # twisted.web makes it before the request is rendered
        content.seek(0, 2)
        size = content.tell()
        content.seek(0)
        if size > self._max_upload:
            raise _too_large(self._max_upload)
        entry, created = yield self._answer(request, place, path, self._files.upload(place, path, content, size))
        yield self._changed(request, place, path, "put")
        return json_response(request, _entry_view(entry), 201 if created else 200)

    @app.route("/<key>/", branch=True, methods=["POST"])
    @inlineCallbacks
    def make_folder(self, request: Request, key: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        place, folder = yield self._writable_target(request, key)
        body = read_json_body(request)
        name = body.get("folder") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise Problem(422, "invalid-request", N_("Invalid request"),
                          N_('The body must be an object like {"folder": "NAME"}.'))
        try:
            path = folder.child(name.strip())
        except BadPath as e:
            raise _bad_path(e) from None
        entry = yield self._answer(request, place, path, self._files.mkdir(place, path))
        yield self._changed(request, place, path, "put")
        return json_response(request, _entry_view(entry), 201)

    @app.route("/<key>/", branch=True, methods=["DELETE"])
    @inlineCallbacks
    def delete(self, request: Request, key: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        place, path = yield self._writable_target(request, key)
        if not path.segments:
            raise Problem(403, "read-only", N_("Read-only"), N_("Your home folder itself cannot be deleted."))
        yield self._answer(request, place, path, self._files.delete(place, path))
        yield self._changed(request, place, path, "delete")
        request.setResponseCode(204)
        return b""

    # -- what the places are: the user's homes, and (classwork) their class folders ---------

    @inlineCallbacks
    def _places(self, request: IRequest) -> Generator[Deferred[Any], Any, Mapping[str, FilesPlace]]:
        web = yield self._guard.signed_in(request)
        identity = identity_of(web)
        places = places_for(self._instance, identity.user_id, identity.groups, self._desktops_for(identity),
                            self._shares)
        if self._classwork is not None and places:
            places.update(pupil_places(self._classwork, identity))
        return places

    def _missing(self, key: str) -> Problem:
        return Problem(404, "no-such-home", N_("No such home"), N_("You have no files at {key}."),
                       values={"key": repr(key)})

    def _kind(self, place: FilesPlace) -> str:
        return place.home.kind if isinstance(place.home, ClassVolume) else "home"

    def _refusal(self, place: FilesPlace) -> Problem | None:
        """Why nothing in this place may be changed now, if so."""
        if not isinstance(place.home, ClassVolume) or self._classwork is None:
            return None
        return refusal_problem(refusal(self._classwork, place.home, for_teacher=False))

    def _prepare(self, place: FilesPlace) -> Deferred[Any]:
        """Make what the place's files container mounts, where the files containers would not."""
        if isinstance(place.home, ClassVolume) and self._classwork is not None:
            return self._classwork.prepare(place.home)
        return succeed(None)

    def _changed(self, request: IRequest, place: FilesPlace, path: FilesPath, action: str) -> Deferred[Any]:
        """After a change ("put", "delete"): nothing more for a user's own files."""
        return succeed(None)

    # -- shared -------------------------------------------------------------------------

    @inlineCallbacks
    def _target(self, request: Request, key: str) -> Generator[Deferred[Any], Any, tuple[FilesPlace, FilesPath]]:
        places = yield self._places(request)
        place = places.get(key)
        if place is None:
            raise self._missing(key)
        try:
            path = files_path(place.home.path, request.postpath or [])
        except BadPath as e:
            raise _bad_path(e) from None
        yield self._prepare(place)
        return place, path

    @inlineCallbacks
    def _writable_target(self, request: Request,
                         key: str) -> Generator[Deferred[Any], Any, tuple[FilesPlace, FilesPath]]:
        place, path = yield self._target(request, key)
        refusal = self._refusal(place)
        if refusal is not None:
            self._log.info("refused {method} of {path} in {user}'s {home}: {reason}",
                           method=request.method.decode(), path=path.relative or "/", user=place.home.owner,
                           home=place.home.key, reason=refusal.slug)
            raise refusal
        return place, path

    @inlineCallbacks
    def _answer(self, request: IRequest, place: FilesPlace, path: FilesPath,
                working: Deferred[Any]) -> Generator[Deferred[Any], Any, Any]:
        """The operation's result; its FilesError logged and answered as the user's problem."""
        try:
            return (yield working)
        except FilesError as e:
            problem = _problem_of(e)
            # A refusal is the user's business; a failure nobody foresaw is the admin's.
            log = self._log.warn if problem.status >= 500 else self._log.info
            log("refused {method} of {path} in {user}'s home {home}: {reason}",
                method=request.method.decode(), path=path.relative or "/", user=place.home.owner,
                home=place.home.key, reason=str(e))
            raise problem from None


def refusal_problem(reason: str | None) -> Problem | None:
    """A classwork folder's refusal (classwork/places.py) as the user's problem."""
    if reason is None:
        return None
    if reason == HANDIN_CLOSED:
        return Problem(409, "handin-closed", N_("Hand-in closed"),
                       N_("The due time has passed: this hand-in can be read, not changed."))
    return Problem(403, "read-only", N_("Read-only"), N_("A hand-out can be read, not changed."))


def _folder_url(request: Request) -> bool:
    return bool(request.postpath) and request.postpath[-1] == b""  # type: ignore[index]


def _entry_view(entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, "type": entry.kind, "size": entry.size, "modified": entry.modified}


def _bad_path(error: BadPath) -> Problem:
    return Problem(400, "invalid-path", N_("Invalid name"),
                   N_("Names cannot be empty, '.' or '..', hold '/', or be longer than 255 bytes."),
                   reason=str(error))


def _too_large(limit: int) -> Problem:
    return Problem(413, "upload-too-large", N_("File too large"),
                   N_("Files up to {megabytes} MB can be uploaded."), values={"megabytes": limit // _MB})


def _problem_of(error: FilesError) -> Problem:
    if isinstance(error, QuotaExceeded):
        return Problem(413, "home-quota-exceeded", N_("Not enough room"),
                       N_("Your files may take {quota} MB; {usage} MB are used, and this file needs {size} MB."),
                       values={"quota": error.quota // _MB, "usage": -(-error.usage // _MB),
                               "size": -(-error.size // _MB)})
    for kind, (status, slug, title, detail) in _PROBLEMS.items():
        if isinstance(error, kind):
            return Problem(status, slug, title, detail)
    return Problem(500, "files-error", N_("The file operation failed"), N_("Try again; if it fails again, "
                                                                            "tell your administrator."))
