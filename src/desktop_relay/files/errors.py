"""What can go wrong with a user's file operation, in the files panel's terms; web/files.py
answers each with its HTTP problem."""

from __future__ import annotations


class FilesError(Exception):
    """A file operation that could not be done; str() is the reason in English, for the log."""


class NoSuchFile(FilesError):
    """The path does not exist (or a folder on the way is missing)."""


class NotAFolder(FilesError):
    """A folder was expected (to list, or to put something in) and the path is a file."""


class NotAFile(FilesError):
    """A file was expected (to download, or to replace) and the path is a folder or something else."""


class AlreadyExists(FilesError):
    """A new folder's name is taken."""


class OutsideHome(FilesError):
    """The path, once symbolic links are resolved inside the container, leads out of the home."""


class ReadOnly(FilesError):
    """The path is in a read-only share, or the container's file system refused the write."""


class QuotaExceeded(FilesError):
    """The home would hold more than its quota; `usage` and `quota` in bytes."""

    def __init__(self, usage: int, size: int, quota: int) -> None:
        super().__init__(f"the home holds {usage} bytes; {size} more would exceed its quota of {quota}")
        self.usage = usage
        self.size = size
        self.quota = quota


class DiskFull(FilesError):
    """The engine's disk is full."""
