"""Benchmark of the WebSocket bridge (desktop_relay.relay.websocket) against a direct connection.

Three processes on loopback: a container-like Autobahn wss server (self-signed cert, Basic auth,
streams 64 KiB messages under flow control, echoes small ones), the relay (twisted.web Site +
WebSocketResource + DesktopBridgeFactory, resolver returning a fixed target) and this process,
which generates the load and reads the relay's CPU time and RSS from /proc.

    python bench/bench_websocket_bridge.py [--repeats 3] [--profile relay.prof]

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

CHUNK = 64 * 1024
PASSWORD = "bench-secret"
SESSION = "bench"


# -- helpers shared by the processes --------------------------------------------------------


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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the container-like backend -------------------------------------------------------------


def run_backend(cert: Path) -> None:
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from autobahn.websocket.types import ConnectionDeny
    from twisted.internet import reactor
    from twisted.internet.interfaces import IPushProducer
    from twisted.internet.ssl import PrivateCertificate
    from zope.interface import implementer

    from desktop_relay.backend import Backend

    expected = Backend("x", 0, PASSWORD).authorization.decode()

    @implementer(IPushProducer)
    class Streamer:
        def __init__(self, proto: Any, count: int) -> None:
            self.proto, self.left, self.paused = proto, count or -1, False

        def resumeProducing(self) -> None:
            self.paused = False
            proto = self.proto
            prepared = proto.factory.chunk
            while not self.paused and self.left != 0 and proto.state == proto.STATE_OPEN:
                self.left -= 1
                proto.sendPreparedMessage(prepared)

        def pauseProducing(self) -> None:
            self.paused = True

        def stopProducing(self) -> None:
            self.left = 0

    class Desktop(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> str | None:
            if request.headers.get("authorization") != expected:
                raise ConnectionDeny(401, "Unauthorized")
            return request.protocols[0] if request.protocols else None

        def onOpen(self) -> None:
            self.sendMessage(b"RFB 003.008\n", isBinary=True)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if payload.startswith(b"stream "):
                self.streamer = Streamer(self, int(payload.split()[1]))
                self.transport.registerProducer(self.streamer, True)
                self.streamer.resumeProducing()
            else:
                self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory("wss://127.0.0.1")
    factory.protocol = Desktop
    factory.chunk = factory.prepareMessage(bytes(CHUNK), isBinary=True)
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0, openHandshakeTimeout=0)
    options = PrivateCertificate.loadPEM(cert.read_bytes()).options()
    port = reactor.listenSSL(0, factory, options, backlog=512, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


# -- the relay ------------------------------------------------------------------------------


def run_relay(backend_port: int, profile: str | None) -> None:
    from autobahn.twisted.resource import WebSocketResource
    from twisted.internet import defer, reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from desktop_relay.backend import Backend
    from desktop_relay.relay.websocket import BridgeTarget, DesktopBridgeFactory

    target = BridgeTarget(Backend("127.0.0.1", backend_port, PASSWORD), SESSION, "bench-user")
    factory = DesktopBridgeFactory(
        lambda request: defer.succeed(target),
        reactor=reactor,
        url="ws://127.0.0.1:8080",
        max_message_size=16 << 20,
        ping_interval=30,
        open_timeout=15,
    )
    root, desktop, session = Resource(), Resource(), Resource()
    root.putChild(b"desktop", desktop)
    desktop.putChild(SESSION.encode(), session)
    session.putChild(b"websockify", WebSocketResource(factory))
    site = Site(root)
    site.noisy = False
    port = reactor.listenTCP(0, site, backlog=512, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    if profile:
        import cProfile

        profiler = cProfile.Profile()

        def dump() -> None:
            profiler.disable()
            profiler.dump_stats(profile)

        # Twisted's own SIGTERM handler stops the reactor, which runs this.
        reactor.addSystemEventTrigger("before", "shutdown", dump)
        profiler.enable()
    reactor.run()


# -- the load generator ---------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> None:
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
    )
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import (
        TCP4ClientEndpoint,
        connectProtocol,
        wrapClientTLS,
    )

    from desktop_relay.backend import Backend, container_tls_options

    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    cert = make_cert(tmp)
    me = [sys.executable, str(Path(__file__).resolve())]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    backend = subprocess.Popen([*me, "backend", "--cert", str(cert)], stdout=subprocess.PIPE, env=env)
    backend_port = int(backend.stdout.readline())
    relay_cmd = [*me, "relay", "--backend-port", str(backend_port)]
    if args.profile:
        relay_cmd += ["--profile", args.profile]
    relay = subprocess.Popen(relay_cmd, stdout=subprocess.PIPE, env=env)
    relay_port = int(relay.stdout.readline())
    authorization = Backend("x", 0, PASSWORD).authorization.decode()

    class Load(WebSocketClientProtocol):
        def __init__(self) -> None:
            super().__init__()
            self.opened: defer.Deferred = defer.Deferred()
            self.closed: defer.Deferred = defer.Deferred()
            self.banner: defer.Deferred = defer.Deferred()
            self.expect = 0
            self.count = 0
            self.done: defer.Deferred | None = None
            self.reply: defer.Deferred | None = None

        def onOpen(self) -> None:
            self.opened.callback(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if not self.banner.called:
                self.banner.callback(None)
            elif self.reply is not None:
                reply, self.reply = self.reply, None
                reply.callback(time.perf_counter())
            else:
                self.count += 1
                if self.count == self.expect and self.done is not None:
                    self.done.callback(None)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if not self.opened.called:
                self.opened.errback(RuntimeError(reason))
            self.closed.callback(code)

    def factory_for(mode: str) -> WebSocketClientFactory:
        if mode == "relay":
            url = f"ws://127.0.0.1:{relay_port}/desktop/{SESSION}/websockify"
            headers = {}
        else:
            url = f"wss://127.0.0.1:{backend_port}/websockify"
            headers = {"Authorization": authorization}
        factory = WebSocketClientFactory(url, origin="http://127.0.0.1:8080", protocols=["binary"], headers=headers)
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0, openHandshakeTimeout=30)
        return factory

    factories = {"relay": factory_for("relay"), "direct": factory_for("direct")}

    async def connect(mode: str) -> Load:
        proto = Load()
        proto.factory = factories[mode]
        if mode == "relay":
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", relay_port, timeout=30)
        else:
            endpoint = wrapClientTLS(container_tls_options(), TCP4ClientEndpoint(reactor, "127.0.0.1", backend_port))
        await connectProtocol(endpoint, proto)
        await proto.opened
        await proto.banner
        return proto

    async def close(conns: list[Load]) -> None:
        for c in conns:
            c.sendClose(1000)
        await defer.gatherResults([c.closed for c in conns])

    async def throughput(mode: str, streams: int, total_bytes: int) -> tuple[float, float]:
        conns = [await connect(mode) for _ in range(streams)]
        per_stream = max(1, total_bytes // CHUNK // streams)
        cpu0 = proc_cpu_seconds(relay.pid)
        start = time.perf_counter()
        for c in conns:
            c.expect, c.done = per_stream, defer.Deferred()
            c.sendMessage(b"stream %d" % per_stream, isBinary=True)
        await defer.gatherResults([c.done for c in conns])
        elapsed = time.perf_counter() - start
        cpu = proc_cpu_seconds(relay.pid) - cpu0
        await close(conns)
        moved = per_stream * streams * CHUNK
        return moved / elapsed / 1e6, cpu / (moved / 1e9)

    async def echo_under_load(mode: str, streams: int, pings: int) -> tuple[float, float]:
        loaders = [await connect(mode) for _ in range(streams)]
        for c in loaders:
            c.sendMessage(b"stream 0", isBinary=True)
        pinger = await connect(mode)
        await task.deferLater(reactor, 0.5, lambda: None)
        rtts = []
        for _ in range(pings):
            pinger.reply = defer.Deferred()
            sent = time.perf_counter()
            pinger.sendMessage(b"0123456789abcdef", isBinary=True)
            rtts.append(await pinger.reply - sent)
        await close([pinger, *loaders])
        rtts.sort()
        return rtts[len(rtts) // 2] * 1e3, rtts[int(len(rtts) * 0.99) - 1] * 1e3

    async def idle_memory(rounds: int, per_round: int) -> list[float]:
        conns: list[Load] = []
        deltas = []
        warm = [await connect("relay") for _ in range(20)]
        await close(warm)
        await task.deferLater(reactor, 0.5, lambda: None)
        for _ in range(rounds):
            before = proc_rss_bytes(relay.pid)
            batch = [await connect("relay") for _ in range(per_round)]
            conns += batch
            await task.deferLater(reactor, 1.0, lambda: None)
            deltas.append((proc_rss_bytes(relay.pid) - before) / per_round / 1024)
        await close(conns)
        return deltas

    def med(values: list[float]) -> float:
        return statistics.median(values)

    async def main(_reactor: Any) -> None:
        repeats = args.repeats
        rows: list[tuple[str, str, str, str]] = []
        results: dict[str, list[Any]] = {}
        # Warm-up: connections, TLS, code paths.
        await throughput("relay", 1, 16 << 20)
        await throughput("direct", 1, 16 << 20)
        for streams, total in ((1, 256 << 20), (16, 256 << 20)):
            for mode in ("relay", "direct"):
                results[f"{mode}{streams}"] = [await throughput(mode, streams, total) for _ in range(repeats)]
        for mode in ("relay", "direct"):
            results[f"echo-{mode}"] = [await echo_under_load(mode, 16, 400) for _ in range(repeats)]
        memory = await idle_memory(repeats, 200)

        for streams in (1, 16):
            r = med([m for m, _ in results[f"relay{streams}"]])
            d = med([m for m, _ in results[f"direct{streams}"]])
            rows.append((f"throughput, {streams} x 64 KiB stream(s)", f"{r:.0f} MB/s", f"{d:.0f} MB/s", f"{r / d:.2f}x"))
        cpu = med([c for key in ("relay1", "relay16") for _, c in results[key]])
        rows.append(("relay CPU per GB relayed", f"{cpu:.2f} s/GB", "-", ""))
        for i, label in ((0, "p50"), (1, "p99")):
            r = med([v[i] for v in results["echo-relay"]])
            d = med([v[i] for v in results["echo-direct"]])
            rows.append((f"16-byte echo RTT {label}, 16 streams busy", f"{r:.2f} ms", f"{d:.2f} ms", f"{r - d:+.2f} ms"))
        rows.append(("relay RSS per idle bridge (200/round)", f"{med(memory):.1f} KiB", "-", ""))

        width = max(len(r[0]) for r in rows)
        print(f"\n{'measure':<{width}}  {'relay':>12}  {'direct':>12}  {'ratio':>8}")
        print("-" * (width + 40))
        for name, r, d, ratio in rows:
            print(f"{name:<{width}}  {r:>12}  {d:>12}  {ratio:>8}")
        print(f"\nmedians of {repeats} runs; each run's values:")
        for key, values in results.items():
            print(f"  {key}: " + ", ".join("(" + ", ".join(f"{x:.2f}" for x in v) + ")" for v in values))
        print("  idle KiB/bridge per round: " + ", ".join(f"{m:.1f}" for m in memory))

    try:
        task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))
    finally:
        for proc in (relay, backend):
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    b = sub.add_parser("backend")
    b.add_argument("--cert", type=Path, required=True)
    r = sub.add_parser("relay")
    r.add_argument("--backend-port", type=int, required=True)
    r.add_argument("--profile")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of the relay process to this file")
    args = parser.parse_args()
    gc.collect()
    if args.role == "backend":
        run_backend(args.cert)
    elif args.role == "relay":
        run_relay(args.backend_port, args.profile)
    else:
        run_bench(args)


if __name__ == "__main__":
    main()
