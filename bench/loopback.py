"""What the benchmarks' processes on loopback share: a container-like self-signed certificate,
a process's CPU time and memory from /proc, and raising a process's descriptor limit."""

from __future__ import annotations

import datetime
import gc
import os
import resource
import signal
from pathlib import Path


def make_cert(directory: Path) -> Path:
    """A self-signed EC certificate and key in one PEM file, as a Kasm container makes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = directory / "self.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children): fields 14 and 15 of stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def proc_pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (libraries, a parent's copy-on-write heap) counted by
    share, so that processes' values add up to the memory they really take."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss")


def collect_on_sigusr1() -> None:
    """Let the load generator ask a bridge process for a full garbage collection before it
    reads the process's memory (garbage from earlier tests would otherwise count as idle cost)."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: gc.collect())


def raise_fd_limit() -> None:
    """Soft descriptor limit up to the hard one: a thousand connections need more than 1,024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
