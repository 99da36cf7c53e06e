"""All hand-ins of a class as one zip, made piece by piece while the browser takes it: the
engine's tar stream of the hand-in folders is read member by member and each file written into
the zip as it comes, so neither archive is ever held whole."""

from __future__ import annotations

import tarfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from typing import IO, cast

from ..files.transfer import CHUNK

# Zip has no times before 1980.
_ZIP_EPOCH = 315532800


class _Pieces:
    """The engine's chunks as a file to read from."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buffer)
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece


class _Sink:
    """What the zip writes, kept until it is handed on; no tell(): the zip streams."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        parts, self.parts = self.parts, []
        yield from parts


def zip_of_handins(tar_chunks: Iterator[bytes], top: str, folders: Mapping[str, str]) -> Iterator[bytes]:
    """A zip of the tar stream of `top`, whose folders (by name) are renamed as `folders` says
    (`{"0": "anna"}`: `top/0/essay.txt` becomes `anna/essay.txt`); other entries are left out."""
    sink = _Sink()
    archive = zipfile.ZipFile(cast(IO[bytes], sink), "w", zipfile.ZIP_DEFLATED)
    with tarfile.open(fileobj=cast(IO[bytes], _Pieces(tar_chunks)), mode="r|") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) < 3 or parts[0] != top or parts[1] not in folders or not member.isfile():
                continue
            info = zipfile.ZipInfo("/".join([folders[parts[1]], *parts[2:]]),
                                   time.gmtime(max(member.mtime, _ZIP_EPOCH))[:6])
            info.file_size = member.size
            info.compress_type = zipfile.ZIP_DEFLATED
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            with archive.open(info, "w") as target:
                while block := source.read(CHUNK):
                    target.write(block)
                    yield from sink.take()
            yield from sink.take()
    archive.close()
    yield from sink.take()
