"""The files containers on a Docker engine, and the file operations run in them.

One small container per home, made on a user's first files request: the desktop's own image
running `sleep` as the home's user, the home mounted where desktops have it, the user's shares
read-only, no network, no capabilities, a read-only root; it goes `idle` seconds after its
last use. Every operation is a command run in it as that user (so files get the user as owner
and the kernel refuses what the user may not do), or an archive upload by the engine into a
folder that user may write to, owned by them. Every Docker SDK call runs in the provisioner's
bounded thread pool.

Paths are checked twice: by their names (paths.py) before anything runs, and by `realpath`
inside the container, whose answer must stay in the home, so that a symbolic link cannot lead
anywhere else. Between that check and the operation a desktop of the same user could swap a
link; what such a race could reach is the files container's own file system (the image, the
home, the user's shares), nothing of the host.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import IO, Any
from urllib.parse import quote

import attr
import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import Mount as DockerMount
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from ..engine._docker_common import api_reason
from ..engine.docker import DockerProvisioner
from ..engine.interface import LABEL_PREFIX, ContainerEngineUnavailable
from ..homes.interface import IHomeVolumes
from .errors import (
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
from .paths import FilesPath, contained, deletable, in_share
from .places import FilesPlace
from .transfer import DownloadStream, tar_stream

# On a files container: the home volume it serves, and the relay instance it belongs to. Not
# LABEL_INSTANCE: reconcile takes every container with that label for a desktop session's.
LABEL_FILES = LABEL_PREFIX + "files"
LABEL_FILES_INSTANCE = LABEL_PREFIX + "files-instance"
# A files container runs shell tools only; a listing of a large folder is the most it holds.
FILES_MEMORY = "128m"
FILES_PIDS = 32
# Downloads hold a thread of the engine's pool while the browser takes the bytes: this many at
# once, the others wait, so desktops still start while pupils download.
MAX_TRANSFERS = 2

# The commands, run with `sh -c SCRIPT sh ARG...`; output fields end in NUL (names may hold
# newlines). C locale: the error words below are English.
_RESOLVE = 'realpath -ez -- "$1" && stat -L --printf "%F\\0%s\\0%Y\\0" -- "$1"'
_LIST = 'find "$1" -mindepth 1 -maxdepth 1 -printf "%Y\\0%s\\0%T@\\0%f\\0"'
_MKDIR = 'mkdir -- "$1"'
_DELETE = '{ [ -e "$1" ] || [ -L "$1" ]; } || { echo "No such file or directory" >&2; exit 1; }; rm -rf -- "$1"'
_USAGE = 'du -s -x -B1 -- "$1"'
_WRITABLE = 'test -w "$1" || { echo "Permission denied" >&2; exit 1; }'
_CAT = 'cat -- "$1"'

# stat's %F and find's %Y, in the API's words.
_STAT_KINDS = {"directory": "directory", "regular file": "file", "regular empty file": "file"}
_FIND_KINDS = {"d": "directory", "f": "file"}


@attr.s(frozen=True, auto_attribs=True)
class Entry:
    """A file or folder as the panel shows it."""

    name: str
    # "file", "directory", or "other" (devices, sockets, links that lead nowhere).
    kind: str
    size: int
    modified: float


@attr.s(frozen=True, auto_attribs=True)
class _Resolved:
    """A path as the container sees it once links are resolved."""

    inside: str
    kind: str
    size: int
    modified: float


@attr.s(auto_attribs=True)
class _Held:
    """A home's files container while the relay holds it."""

    container_id: str | None = None
    waiting: list[Deferred[str]] = attr.Factory(list)
    # Operations under way; the idle timer runs only while there are none.
    busy: int = 0
    timer: IDelayedCall | None = None


class _Gone(Exception):
    """The files container is no longer there (removed by hand, crashed): make a new one."""


class DockerFiles:
    """Files containers of one relay instance, and the operations users do through them."""

    _log = Logger()

    def __init__(
        self, provisioner: DockerProvisioner, volumes: IHomeVolumes, clock: IReactorTime, instance: str,
        idle: float,
    ) -> None:
        self._provisioner = provisioner
        self._volumes = volumes
        self._clock = clock
        self._instance = instance
        self._idle = idle
        self._held: dict[str, _Held] = {}
        self._transfers = DeferredSemaphore(MAX_TRANSFERS)

    # -- operations ---------------------------------------------------------------------

    @inlineCallbacks
    def stat(self, place: FilesPlace, path: FilesPath) -> Generator[Deferred[Any], Any, Entry]:
        """What `path` is; NoSuchFile, OutsideHome."""
        resolved = yield self._run(place, self._resolve_blocking, place, path.inside)
        return Entry(path.name, resolved.kind, resolved.size, resolved.modified)

    def entries(self, place: FilesPlace, path: FilesPath) -> Deferred[list[Entry]]:
        """The entries of the folder `path`, by name; NotAFolder for a file."""
        return self._run(place, self._list_blocking, place, path.inside)

    def mkdir(self, place: FilesPlace, path: FilesPath) -> Deferred[Entry]:
        """Make the folder `path` in its existing parent; AlreadyExists, ReadOnly."""
        return self._run(place, self._mkdir_blocking, place, path)

    def delete(self, place: FilesPlace, path: FilesPath) -> Deferred[None]:
        """Delete `path`, a folder with all it holds; a link itself, not where it leads."""
        return self._run(place, self._delete_blocking, place, path)

    def upload(self, place: FilesPlace, path: FilesPath, content: IO[bytes],
               size: int) -> Deferred[tuple[Entry, bool]]:
        """Write `size` bytes of `content` to the file `path` (replacing one there), owned by the
        home's user, within the home's quota; QuotaExceeded, ReadOnly, NotAFile. The entry, and
        whether the file is new."""
        return self._transfers.run(self._run, place, self._upload_blocking, place, path, content, size)

    @inlineCallbacks
    def download(self, place: FilesPlace, path: FilesPath, request: Request,
                 ) -> Generator[Deferred[Any], Any, None]:
        """Answer `request` with the file `path`, streamed at the browser's pace; finishes the
        request, or drops its connection when the file could not be read to its end."""
        resolved = yield self._run(place, self._resolve_blocking, place, path.inside)
        if resolved.kind != "file":
            raise NotAFile(f"{path.relative} is not a file")
        yield self._transfers.acquire()
        try:
            stream = DownloadStream(self._reactor, request, resolved.size)
            request.notifyFinish().addErrback(lambda _: stream.stopProducing())
            _begin_download(request, path.name, resolved.size)
            request.registerProducer(stream, True)
            try:
                missing = yield self._run(place, self._download_blocking, place, resolved.inside, stream)
                reason = f"the file ended {missing} bytes early" if missing else None
            except CancelledError:
                reason = "the browser left"
            except Exception as e:  # noqa: BLE001 - the headers are out: no problem answer can follow
                reason = str(e) or type(e).__name__
            finally:
                request.unregisterProducer()
        finally:
            self._transfers.release()
        if reason is None:
            request.finish()
            return
        self._log.info("download of {path} for {user} ended early: {reason}",
                       path=path.relative, user=place.home.owner, reason=reason)
        # Finishing would tell the browser a truncated file is whole; dropping it does not.
        if request.channel is not None:
            request.channel.transport.abortConnection()  # type: ignore[union-attr]

    # -- containers ---------------------------------------------------------------------

    @property
    def _reactor(self) -> IReactorFromThreads:
        return self._provisioner._reactor

    def sweep(self) -> Deferred[int]:
        """Remove this instance's files containers left by an earlier relay process."""
        return self._provisioner.in_thread(self._sweep_blocking)

    def stop(self) -> Deferred[None]:
        """Forget every files container and remove them (at the relay's stop)."""
        held, self._held = self._held, {}
        for entry in held.values():
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
        return self.sweep().addCallback(lambda _: None)

    @inlineCallbacks
    def _run(self, place: FilesPlace, operation: Any, *args: Any) -> Generator[Deferred[Any], Any, Any]:
        """`operation(api, container_id, *args)` in a worker thread, with the home's container
        held meanwhile; made again, once, if it went away."""
        volume = place.home.volume
        for attempt in (1, 2):
            held, ready = self._acquire(place)
            try:
                container_id = yield ready
                return (yield self._provisioner.in_thread(operation, container_id, *args))
            except _Gone:
                self._forget(volume, held)
                if attempt == 2:
                    raise ContainerEngineUnavailable("the files container went away twice in a row") from None
            finally:
                self._release(volume, held)
        raise AssertionError("not reached")

    def _acquire(self, place: FilesPlace) -> tuple[_Held, Deferred[str]]:
        """The home's container, held (made if there is none): the holding, and when it is ready."""
        volume = place.home.volume
        held = self._held.get(volume)
        new = held is None
        if held is None:
            held = self._held[volume] = _Held()
        held.busy += 1
        if held.timer is not None and held.timer.active():
            held.timer.cancel()
        held.timer = None
        if held.container_id is not None:
            return held, succeed(held.container_id)
        waiting: Deferred[str] = Deferred()
        held.waiting.append(waiting)
        # After the waiter is in: a creation that fails at once must find it to tell.
        if new:
            self._create(place, held)
        return held, waiting

    def _create(self, place: FilesPlace, held: _Held) -> None:
        made = self._volumes.ensure(place.home)
        made.addCallback(lambda _: self._provisioner.in_thread(self._create_blocking, place))

        def created(container_id: str) -> None:
            held.container_id = container_id
            self._log.info("started files container {container} for {user}'s home {home}",
                           container=container_id[:12], user=place.home.owner, home=place.home.key)
            for waiting in held.waiting:
                waiting.callback(container_id)
            held.waiting.clear()

        def failed(failure: Any) -> None:
            if self._held.get(place.home.volume) is held:
                del self._held[place.home.volume]
            for waiting in held.waiting:
                waiting.errback(failure)
            held.waiting.clear()

        made.addCallbacks(created, failed)

    def _release(self, volume: str, held: _Held) -> None:
        # A holding forgotten meanwhile (its container went away) is nobody's to time out.
        if self._held.get(volume) is not held:
            return
        held.busy -= 1
        if held.busy == 0 and held.container_id is not None:
            held.timer = self._clock.callLater(self._idle, self._expire, volume, held)

    def _forget(self, volume: str, held: _Held) -> None:
        if self._held.get(volume) is held:
            del self._held[volume]
        if held.timer is not None and held.timer.active():
            held.timer.cancel()

    def _expire(self, volume: str, held: _Held) -> None:
        if self._held.get(volume) is not held or held.busy or held.container_id is None:
            return
        del self._held[volume]
        container_id = held.container_id
        removing = self._provisioner.in_thread(_remove_blocking, container_id)
        removing.addCallbacks(
            lambda _: self._log.info("removed idle files container {container}", container=container_id[:12]),
            lambda failure: self._log.warn("could not remove files container {container}: {reason}",
                                           container=container_id[:12], reason=failure.getErrorMessage()),
        )

    # -- the blocking work, in worker threads -------------------------------------------

    def _create_blocking(self, api: docker.APIClient, place: FilesPlace) -> str:
        home = place.home
        name = f"{home.volume}-files"
        # A container of this name is one an earlier relay process left: a new one replaces it.
        _remove_blocking(api, name)
        host_config = api.create_host_config(
            mounts=[DockerMount(m.target, m.source, type=m.kind, read_only=m.read_only) for m in place.mounts],
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            mem_limit=FILES_MEMORY,
            pids_limit=FILES_PIDS,
        )
        try:
            created = api.create_container(
                place.image,
                entrypoint=["sleep"],
                command=["infinity"],
                user=f"{home.uid}:{home.uid}",
                # Not the mount's path: for a path the image lacks (a class's hand-out at
                # /handout), Docker would make it as root first and copy that owner onto a new,
                # empty volume. Every command names its paths in full.
                working_dir="/",
                name=name,
                labels={LABEL_FILES: home.volume, LABEL_FILES_INSTANCE: self._instance},
                host_config=host_config,
                detach=True,
            )
            api.start(created["Id"])
        except ImageNotFound as e:
            raise ContainerEngineUnavailable(f"the files container's image {place.image} is not on this server") from e
        except APIError as e:
            if e.is_server_error():
                raise
            raise ContainerEngineUnavailable(f"the engine refused the files container: {api_reason(e)}") from e
        return str(created["Id"])

    def _sweep_blocking(self, api: docker.APIClient) -> int:
        found = api.containers(all=True, filters={"label": f"{LABEL_FILES_INSTANCE}={self._instance}"})
        for summary in found:
            _remove_blocking(api, summary["Id"])
        return len(found)

    def _resolve_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                          inside: str) -> _Resolved:
        out = _checked(api, container_id, place, _RESOLVE, inside)
        real, kind, size, modified = out.split(b"\0")[:4]
        resolved = real.decode("utf-8", "surrogateescape")
        if not contained(place.home.path, resolved):
            raise OutsideHome(f"{inside} leads to {resolved}, outside the home")
        return _Resolved(resolved, _STAT_KINDS.get(kind.decode(), "other"), int(size), float(modified))

    def _folder_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                         path: FilesPath) -> _Resolved:
        folder = self._resolve_blocking(api, container_id, place, path.inside)
        if folder.kind != "directory":
            raise NotAFolder(f"{path.relative or '/'} is not a folder")
        return folder

    def _list_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                       inside: str) -> list[Entry]:
        folder = self._resolve_blocking(api, container_id, place, inside)
        if folder.kind != "directory":
            raise NotAFolder(f"{inside} is not a folder")
        fields = _checked(api, container_id, place, _LIST, folder.inside).split(b"\0")
        entries = []
        for i in range(0, len(fields) - 3, 4):
            kind, size, modified, name = fields[i:i + 4]
            entries.append(Entry(name.decode("utf-8", "replace"), _FIND_KINDS.get(kind.decode(), "other"),
                                 int(size), float(modified)))
        return sorted(entries, key=lambda e: (e.kind != "directory", e.name.casefold()))

    def _target_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                         path: FilesPath) -> str:
        """Where a new or replaced `path` goes: its parent resolved, outside every share."""
        parent = self._folder_blocking(api, container_id, place, path.parent)
        target = f"{parent.inside.rstrip('/')}/{path.name}"
        if in_share(target, place.share_targets):
            raise ReadOnly(f"{path.relative} is in a read-only share")
        return target

    def _mkdir_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                        path: FilesPath) -> Entry:
        target = self._target_blocking(api, container_id, place, path)
        _checked(api, container_id, place, _MKDIR, target)
        self._reactor.callFromThread(self._log.info, "{user} made the folder {path} in home {home}",
                                     user=place.home.owner, path=path.relative, home=place.home.key)
        return Entry(path.name, "directory", 0, time.time())

    def _delete_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                         path: FilesPath) -> None:
        parent = self._folder_blocking(api, container_id, place, path.parent)
        target = f"{parent.inside.rstrip('/')}/{path.name}"
        if not deletable(target, place.home.path, place.share_targets):
            raise ReadOnly(f"{path.relative} is or holds a read-only share")
        _checked(api, container_id, place, _DELETE, target)
        self._reactor.callFromThread(self._log.info, "{user} deleted {path} in home {home}",
                                     user=place.home.owner, path=path.relative, home=place.home.key)

    def _upload_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                         path: FilesPath, content: IO[bytes], size: int) -> tuple[Entry, bool]:
        target = self._target_blocking(api, container_id, place, path)
        parent = target.rpartition("/")[0] or "/"
        # The engine writes the archive as root: whether the user may write there is asked first.
        _checked(api, container_id, place, _WRITABLE, parent)
        try:
            existing = self._resolve_blocking(api, container_id, place, target)
        except NoSuchFile:
            existing = None
        if existing is not None and existing.kind == "directory":
            raise NotAFile(f"{path.relative} is a folder")
        if place.quota is not None:
            usage = int(_checked(api, container_id, place, _USAGE, place.home.path).split()[0])
            if usage + size > place.quota:
                raise QuotaExceeded(usage, size, place.quota)
        try:
            api.put_archive(container_id, parent, tar_stream(path.name, size, content, place.home.uid, time.time()))
        except NotFound as e:
            raise _Gone() from e
        except APIError as e:
            raise _write_refused(api_reason(e), path) from e
        self._reactor.callFromThread(
            self._log.info, "{user} uploaded {path} ({size} bytes) to home {home}",
            user=place.home.owner, path=path.relative, size=size, home=place.home.key,
        )
        return Entry(path.name, "file", size, time.time()), existing is None

    def _download_blocking(self, api: docker.APIClient, container_id: str, place: FilesPlace,
                           inside: str, stream: DownloadStream) -> int:
        exec_id = _exec_id(api, container_id, place, _CAT, inside)
        pieces = api.exec_start(exec_id, stream=True, demux=True)
        missing = stream.feed(_stdout(pieces))
        pieces.close()
        return missing


def _begin_download(request: Request, name: str, size: int) -> None:
    """The headers of a file download: as an attachment under its own name, never rendered."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    request.setHeader(b"Content-Type", b"application/octet-stream")
    request.setHeader(b"Content-Length", str(size).encode())
    request.setHeader(b"Content-Disposition", (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}").encode("ascii"))
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Security-Policy", b"default-src 'none'; sandbox")


def _stdout(pieces: Iterator[tuple[bytes | None, bytes | None]]) -> Iterator[bytes]:
    for out, _ in pieces:
        if out:
            yield out


def _exec_id(api: docker.APIClient, container_id: str, place: FilesPlace, script: str, *args: str) -> str:
    try:
        created = api.exec_create(
            container_id, ["sh", "-c", script, "sh", *args], user=f"{place.home.uid}:{place.home.uid}",
            environment={"LC_ALL": "C"},
        )
    except NotFound as e:
        raise _Gone() from e
    except APIError as e:
        if e.status_code == 409:  # not running
            raise _Gone() from e
        raise
    return str(created["Id"])


def _checked(api: docker.APIClient, container_id: str, place: FilesPlace, script: str, *args: str) -> bytes:
    """Run a command as the home's user; its output, or the FilesError its complaint means."""
    exec_id = _exec_id(api, container_id, place, script, *args)
    out, err = api.exec_start(exec_id, demux=True)
    code = api.exec_inspect(exec_id).get("ExitCode")
    if code != 0:
        raise _complaint((err or b"").decode("utf-8", "replace").strip(), args[0])
    return out or b""


def _complaint(words: str, path: str) -> FilesError:
    """What a shell tool's error message means."""
    if "No such file" in words or "Not a directory" in words:
        return NoSuchFile(f"{path}: {words}")
    if "File exists" in words:
        return AlreadyExists(f"{path}: {words}")
    return _write_refused(words, path)


def _write_refused(words: str, path: object) -> FilesError:
    if "Read-only file system" in words or "read-only" in words or "Permission denied" in words:
        return ReadOnly(f"{path}: {words}")
    if "No space left" in words or "Disk quota" in words:
        return DiskFull(f"{path}: {words}")
    return FilesError(f"{path}: {words}")


def _remove_blocking(api: docker.APIClient, ref: str) -> None:
    try:
        api.remove_container(ref, force=True)
    except NotFound:
        pass
