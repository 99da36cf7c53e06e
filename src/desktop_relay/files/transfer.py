"""Moving a file's bytes between the browser and a files container without holding them: the
tar stream an upload is sent to the engine as (read from the spooled body piece by piece), and
the push producer a download is written to the browser through (a worker thread reads the
engine's stream and waits while the browser's connection is full)."""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Iterator
from typing import IO

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer, IReactorFromThreads
from twisted.web.server import Request
from zope.interface import implementer

from .errors import FilesError

# How much of a file is read or written at a time.
CHUNK = 64 * 1024
_BLOCK = tarfile.BLOCKSIZE


def tar_stream(name: str, size: int, content: IO[bytes], uid: int, mtime: float) -> Iterator[bytes]:
    """A one-file tar archive of `size` bytes of `content` (read from where it stands), owned by
    `uid`, as Docker's archive upload takes it; read CHUNK by CHUNK as the engine takes it."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.uid = info.gid = uid
    info.mode = 0o644
    info.mtime = int(mtime)
    # PAX: names of any length and any characters, in UTF-8.
    yield info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8")
    remaining = size
    while remaining:
        block = content.read(min(CHUNK, remaining))
        if not block:
            raise FilesError(f"the upload ended {remaining} bytes early")
        remaining -= len(block)
        yield block
    # The member's last block padded, then the archive's end: two empty blocks.
    yield b"\0" * ((-size) % _BLOCK) + b"\0" * (2 * _BLOCK)


@implementer(IPushProducer)
class DownloadStream:
    """A download in progress: a worker thread feeds it the engine's stream (`feed`), it writes
    to the browser's request on the reactor thread, and the browser's connection pauses it.

    The worker's call (`feed`) is the download's Deferred, in the thread pool's hands."""

    # How often a paused worker looks whether the browser left meanwhile.
    _PAUSED_CHECK = 0.5

    def __init__(self, reactor: IReactorFromThreads, request: Request, size: int) -> None:
        self._reactor = reactor
        self._request = request
        self._left = size
        self._wanted = threading.Event()
        self._wanted.set()
        self._stopped = False

    # -- reactor thread -----------------------------------------------------------------

    def pauseProducing(self) -> None:
        self._wanted.clear()

    def resumeProducing(self) -> None:
        self._wanted.set()

    def stopProducing(self) -> None:
        """The browser left: the worker stops at its next piece."""
        self._stopped = True
        self._wanted.set()

    def _write(self, data: bytes) -> None:
        if not self._stopped:
            self._request.write(data)

    # -- worker thread ------------------------------------------------------------------

    def feed(self, pieces: Iterator[bytes]) -> int:
        """Write the engine's pieces to the browser, waiting while it is paused; never more than
        the size announced. How many bytes were still missing when the pieces ended."""
        for piece in pieces:
            while not self._wanted.wait(self._PAUSED_CHECK):
                if self._stopped:
                    break
            if self._stopped:
                raise CancelledError("the browser left during the download")
            piece = piece[: self._left]
            self._left -= len(piece)
            if piece:
                self._reactor.callFromThread(self._write, piece)
            if not self._left:
                break
        return self._left
