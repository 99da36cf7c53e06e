"""The files panel's back end: a user's homes and shares, reached with no desktop running.

`places` says which homes a user has and what their files container mounts, `paths` which paths
a user may name, `containers` the files containers on the Docker engine and the operations run
in them, `transfer` the streams an upload and a download go through, `errors` what can go wrong.
The HTTP side is web/files.py; docs/files.md is the admin's and the user's view.
"""

from .containers import DockerFiles, Entry
from .places import FilesPlace, places_for

__all__ = ["DockerFiles", "Entry", "FilesPlace", "places_for"]
