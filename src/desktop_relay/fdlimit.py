"""File descriptors: how many desktops a descriptor limit allows, and raising the soft limit to
the hard one at start (the bridge's refusal with 503 shares the same reserve)."""

from __future__ import annotations

import resource

#: A bridge holds two sockets: the browser's (through Apache) and the container's.
FDS_PER_BRIDGE = 2
#: Descriptors kept for everything that is not a bridge: listening sockets, the store, the Docker
#: socket and event stream, log files, relayed files and readiness probes in flight, and the
#: threads' wake-up pipes. Generous on purpose: running out in the middle of a start or a sign-in
#: is worse than one desktop fewer.
RESERVE = 128


def desktops_for(limit: int) -> int:
    """How many bridged desktops fit in `limit` descriptors, keeping RESERVE for the rest."""
    return max(0, (limit - RESERVE) // FDS_PER_BRIDGE)


def raise_soft_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; (limit before, limit now).

    systemd's default soft limit is 1,024 (for select(), which Twisted's epoll reactor does not
    use), too few for 500 desktops; the hard limit is the admin's choice (LimitNOFILE=).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        # An unlimited hard limit cannot be the soft one for NOFILE on Linux (fs.nr_open caps it).
        return soft, soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
