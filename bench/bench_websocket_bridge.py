"""Benchmark of the WebSocket bridge (desktop_relay.relay.bridge) against a direct connection,
against nginx with 64 KiB buffers (bench/nginx_peer.py) and against a naive Autobahn bridge, all
measured with the same load in the same run.

Five kinds of processes on loopback: a container-like Autobahn wss server (self-signed cert, Basic
auth, streams 64 KiB messages under flow control, echoes small ones, swallows
FramebufferUpdateRequests); our relay (twisted.web Site +
WebSocketResource + DesktopBridgeFactory, resolver returning a fixed target); the naive bridge (the
obvious Autobahn bridge, no flow control, default options); nginx; and this process, which generates the
load (with the streaming load of the echo test in a process of its own) and reads each bridge's
CPU time and RSS from /proc.

    python bench/bench_websocket_bridge.py [--repeats 3] [--idle-bridges 500] [--profile relay.prof]

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loopback import collect_on_sigusr1, make_cert, proc_cpu_seconds, proc_rss_bytes, raise_fd_limit
from nginx_peer import NginxPeer
from viewer import FBUR, echo_payload, open_viewer, rfb_handshake, round_trip, viewer_class

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

CHUNK = 64 * 1024
PASSWORD = "bench-secret"
SESSION = "bench"
ORIGIN = "http://127.0.0.1:8080"
#: The bridges under test, in table order; nginx (64 KiB buffers) is the proxy admins know.
BRIDGES = ("naive", "nginx", "ours")
#: The bridges that are Python processes of this benchmark.
PYTHON_BRIDGES = ("naive", "ours")
MODES = ("direct", *BRIDGES)

# What a VNC web client sends besides viewer.py's handshake and update requests, so that our
# bridge's input classifier works on the measured path: a KeyEvent.
KEY_EVENT = bytes.fromhex("0401000000000061")
CLIENT_MESSAGES = 50_000



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
        """Sends 64 KiB messages while the transport wants them, a batch per reactor turn: a
        transport that pauses its producer only after the write returns (Twisted's TLS does,
        as of 26.x) would otherwise keep the loop, and the whole backend, busy for ever."""

        BATCH = 16

        def __init__(self, proto: Any, count: int) -> None:
            self.proto, self.left, self.paused = proto, count or -1, False
            self.scheduled: Any = None

        def resumeProducing(self) -> None:
            self.paused = False
            if self.scheduled is None:
                self.send_some()

        def send_some(self) -> None:
            self.scheduled = None
            proto = self.proto
            prepared = proto.factory.chunk
            for _ in range(self.BATCH):
                if self.paused or self.left == 0 or proto.state != proto.STATE_OPEN:
                    return
                self.left -= 1
                proto.sendPreparedMessage(prepared)
            self.scheduled = reactor.callLater(0, self.send_some)

        def pauseProducing(self) -> None:
            self.paused = True

        def stopProducing(self) -> None:
            self.left = 0
            if self.scheduled is not None:
                self.scheduled.cancel()
                self.scheduled = None

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
            elif payload != FBUR:
                # Update requests are taken in silence, like a server with nothing new to show.
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
    from desktop_relay.relay.bridge import BridgeTarget, DesktopBridgeFactory

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
    collect_on_sigusr1()
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


# -- the naive bridge -----------------------------------------------------------------------


def run_naive(backend_port: int) -> None:
    """The obvious Autobahn bridge, as a reference: a server protocol whose onConnect opens an
    Autobahn client to the backend with connectWS and answers the browser once that is open;
    onMessage -> sendMessage both ways; no flow control; Autobahn's default options.

    Not product code. It shares one TLS client context between connections (as anyone would
    who builds the options once at start), and keeps what arrives from the backend before the
    browser's 101 is out (the RFB banner), as it must to work at all.
    """
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketServerProtocol,
        connectWS,
    )
    from autobahn.websocket.types import ConnectionDeny
    from twisted.internet import defer, reactor

    from desktop_relay.backend import Backend, container_tls_options

    authorization = Backend("x", 0, PASSWORD).authorization.decode()
    tls = container_tls_options()

    class ToBackend(WebSocketClientProtocol):
        def onOpen(self) -> None:
            self.factory.bridge.backend_open(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.factory.bridge.from_backend(payload, isBinary)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            self.factory.bridge.backend_closed(code)

    class NaiveBridge(WebSocketServerProtocol):
        backend: Any = None

        def onConnect(self, request: Any) -> defer.Deferred:
            self.pending: list[tuple[bytes, bool]] = []
            self.ready: defer.Deferred = defer.Deferred()
            factory = WebSocketClientFactory(
                f"wss://127.0.0.1:{backend_port}/websockify",
                origin=request.origin,
                protocols=request.protocols,
                headers={"Authorization": authorization},
            )
            factory.protocol = ToBackend
            factory.bridge = self
            connectWS(factory, tls)
            return self.ready

        def backend_open(self, backend: Any) -> None:
            self.backend = backend
            self.ready.callback(backend.websocket_protocol_in_use)

        def onOpen(self) -> None:
            for payload, is_binary in self.pending:
                self.sendMessage(payload, is_binary)
            self.pending = []

        def from_backend(self, payload: bytes, isBinary: bool) -> None:
            if self.state == self.STATE_OPEN:
                self.sendMessage(payload, isBinary)
            else:
                self.pending.append((payload, isBinary))

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if self.backend is not None and self.backend.state == self.backend.STATE_OPEN:
                self.backend.sendMessage(payload, isBinary)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if self.backend is not None and self.backend.state == self.backend.STATE_OPEN:
                self.backend.sendClose(1000)

        def backend_closed(self, code: Any) -> None:
            if not self.ready.called:
                self.ready.errback(ConnectionDeny(502, "Backend unreachable"))
            elif self.state == self.STATE_OPEN:
                self.sendClose(1000)

    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = NaiveBridge
    port = reactor.listenTCP(0, factory, backlog=512, interface="127.0.0.1")
    collect_on_sigusr1()
    print(port.getHost().port, flush=True)
    reactor.run()


# -- the browser-like clients ------------------------------------------------------------


def client_kit(ports: dict[str, int]) -> tuple[type, Any]:
    """The load's WebSocket client protocol and a ``connect(mode)`` coroutine.

    ``ports`` maps each mode ("direct", "naive", "ours") to its port. The bridges are reached
    with ``ws://`` (as Apache would), the backend directly with ``wss://`` and its
    Authorization header.
    """
    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

    from desktop_relay.backend import Backend, container_tls_options

    authorization = Backend("x", 0, PASSWORD).authorization.decode()
    tls = container_tls_options()

    class Load(viewer_class()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.expect = 0
            self.count = 0
            self.done: defer.Deferred | None = None

        def on_stream(self, payload: bytes) -> None:
            self.count += 1
            if self.count == self.expect and self.done is not None:
                self.done.callback(None)

    def factory_for(mode: str) -> WebSocketClientFactory:
        if mode == "direct":
            url = f"wss://127.0.0.1:{ports[mode]}/websockify"
            headers = {"Authorization": authorization}
        else:
            url = f"ws://127.0.0.1:{ports[mode]}/desktop/{SESSION}/websockify"
            headers = {}
        factory = WebSocketClientFactory(url, origin=ORIGIN, protocols=["binary"], headers=headers)
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0, openHandshakeTimeout=60)
        return factory

    factories = {mode: factory_for(mode) for mode in ports}

    async def connect(mode: str) -> Load:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", ports[mode], timeout=60)
        if mode == "direct":
            endpoint = wrapClientTLS(tls, endpoint)
        return await open_viewer(Load(), factories[mode], endpoint)

    return Load, connect




def run_streams(mode: str, port: int, streams: int) -> None:
    """The echo test's background load, in its own process: ``streams`` connections that each
    ask for an endless stream and read it; prints a line once all are streaming."""
    from twisted.internet import defer, task

    _, connect = client_kit({mode: port})

    async def main(reactor: Any) -> None:
        conns = [await connect(mode) for _ in range(streams)]
        for c in conns:
            c.sendMessage(b"stream 0", isBinary=True)
        print("streaming", flush=True)
        await defer.Deferred()  # until SIGTERM

    task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))


# -- the load generator ---------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> None:
    from twisted.internet import defer, reactor, task, threads

    from desktop_relay.backend import Backend

    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    cert = make_cert(tmp)
    me = [sys.executable, str(Path(__file__).resolve())]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    procs: dict[str, subprocess.Popen] = {}
    nginx: dict[str, NginxPeer] = {}
    authorization = Backend("x", 0, PASSWORD).authorization.decode()

    def start(name: str, cmd: list[str]) -> int:
        procs[name] = subprocess.Popen([*me, *cmd], stdout=subprocess.PIPE, env=env)
        return int(procs[name].stdout.readline())

    def start_nginx() -> int:
        nginx["nginx"] = NginxPeer({SESSION: ports["direct"]}, authorization)
        return nginx["nginx"].port

    ports = {"direct": start("direct", ["backend", "--cert", str(cert)])}
    relay_cmd = ["relay", "--backend-port", str(ports["direct"])]
    if args.profile:
        relay_cmd += ["--profile", args.profile]
    bridge_cmds = {"ours": relay_cmd, "naive": ["naive", "--backend-port", str(ports["direct"])]}
    for mode in PYTHON_BRIDGES:
        ports[mode] = start(mode, bridge_cmds[mode])
    ports["nginx"] = start_nginx()
    _, connect = client_kit(ports)

    def pids_of(mode: str) -> list[int]:
        """The processes whose CPU and memory are the bridge's (none for direct)."""
        if mode == "nginx":
            return nginx["nginx"].pids()
        return [procs[mode].pid] if mode in BRIDGES else []

    def cpu_of(mode: str) -> float:
        return sum(proc_cpu_seconds(pid) for pid in pids_of(mode))

    def restart_bridges() -> Any:
        """Fresh bridge processes for the idle-memory test. A process that has just buffered
        tens of MiB (the naive bridge has no flow control: the echo test's streams pile up in
        it) keeps that heap after freeing it, and idle bridges opened afterwards fill the
        freed pages without growing RSS; its "per bridge" growth would measure the earlier
        bloat, not the bridge. The relay restarts without --profile (the profile is written
        when the first one stops)."""
        for mode in PYTHON_BRIDGES:
            procs[mode].terminate()
            procs[mode].wait(10)
        nginx["nginx"].stop()
        bridge_cmds["ours"] = ["relay", "--backend-port", str(ports["direct"])]
        for mode in PYTHON_BRIDGES:
            ports[mode] = start(mode, bridge_cmds[mode])
        ports["nginx"] = start_nginx()
        return client_kit(ports)[1]

    def start_streams(mode: str, streams: int) -> subprocess.Popen:
        cmd = [*me, "streams", "--mode", mode, "--port", str(ports[mode]), "--streams", str(streams)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)

    def sleep(seconds: float) -> defer.Deferred:
        return task.deferLater(reactor, seconds, lambda: None)

    async def close(conns: list[Any]) -> None:
        for c in conns:
            c.sendClose(1000)
        await defer.gatherResults([c.closed for c in conns])

    async def throughput(mode: str, streams: int, total_bytes: int) -> tuple[float, float]:
        """MB/s to the last message, and the bridge process's CPU s/GB (0 for direct)."""
        conns = [await connect(mode) for _ in range(streams)]
        per_stream = max(1, total_bytes // CHUNK // streams)
        cpu0 = cpu_of(mode)
        start = time.perf_counter()
        for c in conns:
            c.expect, c.done = per_stream, defer.Deferred()
            c.sendMessage(b"stream %d" % per_stream, isBinary=True)
        await defer.gatherResults([c.done for c in conns])
        elapsed = time.perf_counter() - start
        cpu = cpu_of(mode) - cpu0
        await close(conns)
        moved = per_stream * streams * CHUNK
        return moved / elapsed / 1e6, cpu / (moved / 1e9)

    async def echo_under_load(mode: str, streams: int, pings: int) -> tuple[float, float]:
        """p50 and p99 in ms of sequential 16-byte round trips from this (otherwise idle)
        process, while another process keeps ``streams`` connections streaming."""
        loader = start_streams(mode, streams)
        try:
            # Read in a thread: the reactor stays free meanwhile.
            await threads.deferToThread(loader.stdout.readline)
            pinger = await rfb_handshake(await connect(mode))
            await sleep(0.5)
            rtts = []
            for n in range(pings):
                sent = time.perf_counter()
                rtts.append(await round_trip(pinger, echo_payload(n)) - sent)
            await close([pinger])
        finally:
            loader.terminate()
            loader.wait(10)
        await sleep(1.0)  # let the bridge notice the loader's connections are gone
        rtts.sort()
        return rtts[len(rtts) // 2] * 1e3, rtts[int(len(rtts) * 0.99) - 1] * 1e3

    async def client_messages(mode: str, count: int) -> tuple[float, float]:
        """Thousands of 10-byte update requests per second from one browser-like connection to
        the backend (which swallows them), and the bridge process's CPU seconds per 100 000
        (0 for direct): the input classifier's own path."""
        conn = await rfb_handshake(await connect(mode))
        cpu0 = cpu_of(mode)
        start = time.perf_counter()
        for _ in range(count):
            conn.sendMessage(FBUR, isBinary=True)
        # Echoed, and only after everything sent before it: all requests have arrived.
        await round_trip(conn, KEY_EVENT)
        elapsed = time.perf_counter() - start
        cpu = cpu_of(mode) - cpu0
        await close([conn])
        return count / elapsed / 1e3, cpu / count * 1e5

    async def rss_after_gc(mode: str) -> int:
        if mode in PYTHON_BRIDGES:
            os.kill(procs[mode].pid, signal.SIGUSR1)
        await sleep(0.5)
        return sum(proc_rss_bytes(pid) for pid in pids_of(mode))

    async def idle_memory(connect: Any, mode: str, rounds: int, per_round: int) -> list[float]:
        """KiB of the bridge process's RSS (after a gc) per idle bridge, ``per_round`` more
        bridges per round, each round on top of the previous ones."""
        conns: list[Any] = []
        deltas = []
        await close([await connect(mode) for _ in range(20)])
        for _ in range(rounds):
            before = await rss_after_gc(mode)
            for opened in range(0, per_round, 25):
                conns += await defer.gatherResults(
                    [defer.Deferred.fromCoroutine(connect(mode)) for _ in range(min(25, per_round - opened))]
                )
            await sleep(1.0)
            deltas.append((await rss_after_gc(mode) - before) / per_round / 1024)
        await close(conns)
        await sleep(1.0)
        return deltas

    def med(values: list[float]) -> float:
        return statistics.median(values)

    async def main(_reactor: Any) -> None:
        repeats = args.repeats
        results: dict[str, list[Any]] = {}
        # Warm-up: connections, TLS, code paths.
        for mode in MODES:
            await throughput(mode, 1, 16 << 20)
        # Modes interleaved within each repeat, so that a noisy neighbour hits all of them.
        for streams, total in ((1, 256 << 20), (16, 256 << 20)):
            for _ in range(repeats):
                for mode in MODES:
                    results.setdefault(f"{mode}{streams}", []).append(await throughput(mode, streams, total))
        for _ in range(repeats):
            for mode in MODES:
                results.setdefault(f"echo-{mode}", []).append(await echo_under_load(mode, 16, 400))
        for mode in MODES:
            await client_messages(mode, CLIENT_MESSAGES // 10)
        for _ in range(repeats):
            for mode in MODES:
                results.setdefault(f"fbur-{mode}", []).append(await client_messages(mode, CLIENT_MESSAGES))
        fresh_connect = restart_bridges()
        memory = {mode: await idle_memory(fresh_connect, mode, repeats, args.idle_bridges) for mode in BRIDGES}

        rows: list[tuple[str, ...]] = []

        def ratio(a: float, b: float) -> str:
            # nginx's CPU for 50 000 small messages can be below /proc's 10 ms resolution.
            return f"{a / b:.2f}" if b else "-"

        def row(label: str, v: dict[str, float], fmt: str, vs_direct: bool = False) -> None:
            """One line of the table: each mode's value (÷ direct in brackets where it means
            something), then ours ÷ naive and ours ÷ nginx."""
            cells = []
            for m in MODES:
                if m not in v:
                    cells.append("-")
                elif vs_direct and m != "direct":
                    cells.append(f"{v[m]:{fmt}} ({v[m] / v['direct']:.2f}x)")
                else:
                    cells.append(f"{v[m]:{fmt}}")
            rows.append((label, *cells, ratio(v["ours"], v["naive"]), ratio(v["ours"], v["nginx"])))

        for streams in (1, 16):
            row(
                f"throughput, {streams} x 64 KiB stream(s), MB/s",
                {m: med([x for x, _ in results[f"{m}{streams}"]]) for m in MODES}, ".0f", vs_direct=True,
            )
        for streams in (1, 16):
            row(
                f"bridge CPU per GB, {streams} stream(s), s/GB",
                {m: med([c for _, c in results[f"{m}{streams}"]]) for m in BRIDGES}, ".2f",
            )
        for i, label in ((0, "p50"), (1, "p99")):
            row(
                f"16-byte echo RTT {label}, 16 streams busy, ms",
                {m: med([x[i] for x in results[f"echo-{m}"]]) for m in MODES}, ".2f",
            )
        row(
            "10-byte client messages, 1 connection, k/s",
            {m: med([x for x, _ in results[f"fbur-{m}"]]) for m in MODES}, ".1f", vs_direct=True,
        )
        row(
            "bridge CPU per 100k client messages, s",
            {m: med([c for _, c in results[f"fbur-{m}"]]) for m in BRIDGES}, ".2f",
        )
        row(f"RSS per idle bridge ({args.idle_bridges}/round), KiB", {m: med(memory[m]) for m in BRIDGES}, ".1f")

        head = ("measure", *MODES, "ours/naive", "ours/nginx")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        print("\n" + line.format(*head))
        print("-" * (sum(widths) + 2 * (len(head) - 1)))
        for r in rows:
            print(line.format(*r))
        print(f"\nmedians of {repeats} runs; each run's values (MB/s, s/GB), (p50, p99) or (k/s, s/100k):")
        for key, values in results.items():
            print(f"  {key}: " + ", ".join("(" + ", ".join(f"{x:.2f}" for x in v) + ")" for v in values))
        for mode in BRIDGES:
            print(f"  idle-{mode} KiB/bridge per round: " + ", ".join(f"{m:.1f}" for m in memory[mode]))

    try:
        task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))
    finally:
        # All told first, then waited for: a backend still busy streaming may not hear its
        # SIGTERM in time, and must not keep a core busy after the benchmark is gone.
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for peer in nginx.values():
            peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    b = sub.add_parser("backend")
    b.add_argument("--cert", type=Path, required=True)
    r = sub.add_parser("relay")
    r.add_argument("--backend-port", type=int, required=True)
    r.add_argument("--profile")
    n = sub.add_parser("naive")
    n.add_argument("--backend-port", type=int, required=True)
    s = sub.add_parser("streams")
    s.add_argument("--mode", choices=MODES, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--streams", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle-bridges", type=int, default=500, help="idle bridges opened per round")
    parser.add_argument("--profile", help="write a cProfile of our relay process to this file")
    args = parser.parse_args()
    gc.collect()
    if args.role == "backend":
        raise_fd_limit()
        run_backend(args.cert)
    elif args.role == "relay":
        raise_fd_limit()
        run_relay(args.backend_port, args.profile)
    elif args.role == "naive":
        raise_fd_limit()
        run_naive(args.backend_port)
    elif args.role == "streams":
        run_streams(args.mode, args.port, args.streams)
    else:
        run_bench(args)


if __name__ == "__main__":
    main()
