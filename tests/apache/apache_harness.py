"""Running the shipped Apache virtual host (etc/apache/desktop-relay.conf) in tests.

This module owns turning that file into a runnable, unprivileged Apache: a self-signed
certificate, the vhost with only its Define values, its two ports and (for the comparison of
proxy forms) the lines between its "proxy form" markers replaced, a self-contained main
config that loads Debian's modules by path, and an `apache2 -DFOREGROUND` process of our own
with its pid file, logs and mutexes in a temporary directory. The system's /etc/apache2 is
never read or touched.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from tls_certs import pem, self_signed

REPO = Path(__file__).resolve().parents[2]
SHIPPED_VHOST = REPO / "etc" / "apache" / "desktop-relay.conf"
ARTIFACTS = REPO / "test-artifacts"
MODULE_DIR = Path(os.environ.get("APACHE_MODULE_DIR", "/usr/lib/apache2/modules"))
APACHE_BIN = os.environ.get("APACHE_BIN") or shutil.which("apache2") or "/usr/sbin/apache2"

# What a Debian server has enabled once docs/deployment.md is followed: Debian's defaults
# (reqtimeout and deflate among them, since they sit on the same request path) plus the
# modules the vhost's comments name. Nothing else, so a missing a2enmod shows up here.
BASE_MODULES = (
    "mpm_event", "authz_core", "authz_host", "alias", "mime", "setenvif", "filter", "deflate",
    "reqtimeout", "socache_shmcb", "ssl", "headers", "proxy", "proxy_http",
)

_PROXY_FORM = re.compile(r"(?ms)^([ \t]*# proxy form: begin\n).*?^([ \t]*# proxy form: end\n)")


def missing(what: str, fix: str) -> None:
    """Skip on a developer's machine without the tool; fail in CI, where scripts install it."""
    message = f"{what} (install with {fix})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throw-away EC certificate for host (as IP and DNS name) and its key, as PEM files."""
    cert_pem, key_pem = pem(*self_signed(host))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def render_vhost(
    *,
    http_port: int,
    https_port: int,
    relay: str,
    cert: Path,
    key: Path,
    proxy_timeout: int = 300,
    proxy_form: str | None = None,
    text: str | None = None,
) -> str:
    """The shipped vhost with only its Define values and ports changed for a loopback test.

    proxy_form, if given, replaces the lines between the "proxy form" markers.
    """
    text = SHIPPED_VHOST.read_text() if text is None else text
    defines = {
        "DESKTOP_SITE": f"127.0.0.1:{https_port}",
        "DESKTOP_RELAY": relay,
        "DESKTOP_CERT": str(cert),
        "DESKTOP_KEY": str(key),
        "DESKTOP_PROXY_TIMEOUT": str(proxy_timeout),
    }
    for name, value in defines.items():
        text, count = re.subn(rf"(?m)^Define {name} .*$", f"Define {name} {value}", text)
        assert count == 1, f"{SHIPPED_VHOST} must define {name} exactly once"
    for port, new in ((80, http_port), (443, https_port)):
        text, count = re.subn(rf"(?m)^<VirtualHost \*:{port}>$", f"<VirtualHost *:{new}>", text)
        assert count == 1, f"{SHIPPED_VHOST} must have exactly one <VirtualHost *:{port}>"
    if proxy_form is not None:
        text, count = _PROXY_FORM.subn(lambda m: m.group(1) + proxy_form.rstrip("\n") + "\n" + m.group(2), text)
        assert count == 1, f"{SHIPPED_VHOST} must have one pair of proxy form markers"
    return text


def shipped_proxy_form() -> str:
    """The lines between the shipped vhost's "proxy form" markers, comments dropped."""
    match = _PROXY_FORM.search(SHIPPED_VHOST.read_text())
    assert match, "no proxy form markers in the shipped vhost"
    lines = match.group(0).splitlines()[1:-1]
    return "\n".join(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))


class ApacheServer:
    """One apache2 process of our own, serving a rendered vhost on two loopback ports."""

    def __init__(self, directory: Path, vhost: str, *, http_port: int, https_port: int,
                 extra_modules: tuple[str, ...] = (), log_level: str = "warn") -> None:
        self.directory = directory
        self.http_port = http_port
        self.https_port = https_port
        self.url = f"https://127.0.0.1:{https_port}"
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("run", "logs"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "desktop-relay.conf").write_text(vhost)
        self.conf = directory / "apache2.conf"
        self.conf.write_text(self._main_config(BASE_MODULES + extra_modules, log_level))

    def _main_config(self, modules: tuple[str, ...], log_level: str) -> str:
        d = self.directory
        lines = [
            "# Generated by tests/apache/apache_harness.py: a self-contained server around the",
            "# shipped vhost (desktop-relay.conf beside this file).",
            f'ServerRoot "{d}"',
            f'DefaultRuntimeDir "{d}/run"',
            f'PidFile "{d}/run/apache2.pid"',
            f"Mutex file:{d}/run default",
            f'ErrorLog "{d}/logs/error.log"',
            f"LogLevel {log_level}",
            'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined',
            f"Define APACHE_LOG_DIR {d}/logs",
            "ServerName 127.0.0.1",
            *(f"LoadModule {m}_module {MODULE_DIR}/mod_{m}.so" for m in modules),
            "TypesConfig /etc/mime.types",
            # A small event MPM: one child is plenty for a test and starts fast.
            "StartServers 1",
            "ServerLimit 2",
            "ThreadsPerChild 32",
            "MaxRequestWorkers 64",
            # Debian's defaults from mods-available/{reqtimeout,deflate,ssl}.conf: they sit on
            # the same path as our requests (deflate must not hold back a streamed response).
            "RequestReadTimeout header=20-40,minrate=500",
            "RequestReadTimeout body=10,minrate=500",
            "AddOutputFilterByType DEFLATE text/html text/plain text/xml text/css text/javascript",
            "AddOutputFilterByType DEFLATE application/javascript application/xml application/wasm",
            f"SSLSessionCache shmcb:{d}/run/ssl_scache(512000)",
            f"Listen 127.0.0.1:{self.http_port}",
            f"Listen 127.0.0.1:{self.https_port}",
        ]
        if os.geteuid() == 0:
            # As root Apache's children drop to this user, as on a Debian server.
            user = "www-data" if _user_exists("www-data") else "nobody"
            lines += [f"User {user}", f"Group #{pwd.getpwnam(user).pw_gid}"]
        lines.append(f'Include "{d}/desktop-relay.conf"')
        return "\n".join(lines) + "\n"

    def config_test(self) -> None:
        """apache2 -t: fail with Apache's own words when the config is wrong."""
        result = subprocess.run([APACHE_BIN, "-f", str(self.conf), "-t"], capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"apache2 -t failed for {self.conf}:\n{result.stderr}{result.stdout}")

    def start(self, timeout: float = 15.0) -> None:
        """Start apache2 in the foreground (in its own process group) and wait for TLS."""
        self.config_test()
        out = (self.directory / "logs" / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [APACHE_BIN, "-f", str(self.conf), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"apache2 exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                with tls_connect(self.https_port, timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"apache2 did not answer TLS within {timeout} s:\n{self.error_log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop apache2 (SIGTERM, then SIGKILL to its process group) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def error_log(self) -> str:
        """Apache's error log and stderr so far (for failure messages)."""
        parts = []
        for name in ("stderr.log", "error.log", "desktop-relay-error.log"):
            path = self.directory / "logs" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def tls_connect(port: int, *, timeout: float = 5.0, alpn: list[str] | None = None) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port that accepts the self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


def apache_version() -> tuple[int, int, int] | None:
    """The installed apache2's version, or None when there is none."""
    try:
        out = subprocess.run([APACHE_BIN, "-v"], capture_output=True, text=True).stdout
    except OSError:
        return None
    match = re.search(r"Apache/(\d+)\.(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None
