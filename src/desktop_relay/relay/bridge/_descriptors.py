"""How many file descriptors the relay may still open: a bridge takes two (the browser's socket,
already open when its upgrade arrives, and the container's), and a new one is refused while
fewer than a reserve would be left for everything else the relay opens (the store, files and
probes relayed to containers, the engine's API, logs): fdlimit.RESERVE, the same reserve the
start-up line counts with."""

from __future__ import annotations

import os
import resource

from ...fdlimit import RESERVE

# Linux lists a process's open descriptors here; /dev/fd elsewhere (macOS, the BSDs).
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


def descriptors_short(reserve: int = RESERVE) -> str | None:
    """Why a new bridge must not open its container connection now, or None if it may."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    # The listing's own descriptor counts too, and stands for the container's socket.
    in_use = len(os.listdir(_FD_DIR))
    if in_use + reserve <= soft:
        return None
    return f"{in_use} of {soft} file descriptors open, {reserve} kept in reserve"
