"""Chromium in a network namespace of its own, still reaching the relay at http://127.0.0.1:PORT.

Starting a container adds network interfaces to the host, and a Chromium sharing the host's
network then aborts every request in flight with ERR_NETWORK_CHANGED: the dashboard's long-poll,
the web client's files. A browser on another machine, as in production, never sees that. So the
browser tests and the click-to-desktop benchmark run Chromium (as root) in a network namespace
with only a loopback interface, where this module, run as a script, carries 127.0.0.1:PORT through
a Unix socket (file systems are shared across network namespaces) to a second copy of itself in
the host's namespace, which connects to the real port. The browser sees the same origin.

    python loopback_forward.py LISTEN TARGET      # LISTEN, TARGET: tcp:HOST:PORT or unix:PATH
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Network namespaces need root here (unshare --net)."""
    return os.geteuid() == 0


class IsolatedChromium:
    """A launcher script for Playwright's `executable_path` and the host side of its forwarder."""

    def __init__(self, chromium: str, directory: Path, port: int) -> None:
        socket_path = directory / f"forward-{port}.sock"
        socket_path.unlink(missing_ok=True)
        self._host_side = subprocess.Popen([sys.executable, __file__, f"unix:{socket_path}", f"tcp:127.0.0.1:{port}"])
        inside = shlex.join([sys.executable, __file__, f"tcp:127.0.0.1:{port}", f"unix:{socket_path}"])
        self.executable = directory / f"chromium-isolated-{port}"
        self.executable.write_text(
            "#!/bin/sh\n"
            f"exec unshare --net sh -c 'ip link set lo up && {{ {inside} & }} && exec \"$0\" \"$@\"' "
            f"{shlex.quote(chromium)} \"$@\"\n"
        )
        self.executable.chmod(0o755)
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if time.monotonic() > deadline or self._host_side.poll() is not None:
                raise RuntimeError(f"the forwarder to port {port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._host_side.terminate()
        self._host_side.wait()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _endpoint(address: str) -> tuple[str, str, int]:
    kind, _, rest = address.partition(":")
    if kind == "unix":
        return kind, rest, 0
    host, _, port = rest.rpartition(":")
    return kind, host, int(port)


async def forward(listen: str, target: str) -> None:
    """Accept on listen, copy each connection to target and back, until killed."""
    kind, where, port = _endpoint(target)

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if kind == "unix":
                upstream = await asyncio.open_unix_connection(where)
            else:
                upstream = await asyncio.open_connection(where, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))

    listen_kind, listen_where, listen_port = _endpoint(listen)
    if listen_kind == "unix":
        server = await asyncio.start_unix_server(accepted, listen_where)
    else:
        server = await asyncio.start_server(accepted, listen_where, listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # Inside the namespace the parent is the shell that becomes Chromium: go with it.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    try:
        asyncio.run(forward(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:
        pass
