"""nginx as the benchmarks' reference proxy: its own processes on loopback with a generated
configuration (never the system's), 64 KiB buffers, forwarding WebSocket upgrades to
container-like backends over TLS with the Authorization header added, as Kasm's own proxy does
(kasm-contract.md). Install the binary with scripts/ensure-nginx.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

NGINX = "/usr/sbin/nginx"
#: One worker: the relay is one process, so both columns' CPU is one process's share of a core.
WORKERS = 1

_CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # The issue's anchor: 64 KiB buffers (an upgraded connection's tunnel uses proxy_buffer_size).
    proxy_buffer_size 64k;
    proxy_buffers 8 64k;
    proxy_busy_buffers_size 128k;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 1800s;
    proxy_send_timeout 1800s;
    # The containers' certificates are self-signed, as the relay's own agent accepts them.
    proxy_ssl_verify off;
    proxy_ssl_session_reuse on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{locations}
    }}
}}
"""

_LOCATION = """\
        location /desktop/{name}/ {{
            proxy_pass https://127.0.0.1:{backend}/;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Authorization "{authorization}";
            proxy_set_header Cookie "";
        }}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxPeer:
    """One nginx master and its worker: ``/desktop/<name>/...`` goes to ``https://127.0.0.1:<port>/...``
    for each ``routes`` entry, with ``authorization`` as the Authorization header."""

    def __init__(self, routes: Mapping[str, int], authorization: str) -> None:
        if not Path(NGINX).exists():
            raise SystemExit(f"{NGINX} is missing: run scripts/ensure-nginx")
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = _free_port()
        locations = "".join(
            _LOCATION.format(name=name, backend=port, authorization=authorization) for name, port in routes.items()
        )
        config = self.dir / "nginx.conf"
        config.write_text(_CONFIG.format(workers=WORKERS, dir=self.dir, port=self.port, locations=locations))
        self.process = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(config)])
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.dir / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if self.workers():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not listen within 10 s")

    def workers(self) -> list[int]:
        """The worker processes' pids (the master only reads its configuration and waits)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def pids(self) -> list[int]:
        """Master and workers: all of nginx's memory and CPU."""
        return [self.process.pid, *self.workers()]

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: nginx's fast shutdown
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
