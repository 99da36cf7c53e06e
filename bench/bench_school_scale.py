"""A school's worth of desktops on one relay process: N bridged connections (default 1,000) at a
desktop's rates, the input echo round trip beside them, against the same load straight to the
backends and through nginx (64 KiB buffers).

Processes on loopback, so that each one's CPU and memory can be read from /proc: container-like
backends (one per 250 connections; TLS, Basic auth, Origin and subprotocol checks as KasmVNC has
them), each streaming to every connection at its class's rate; the relay (twisted.web Site +
WebSocketResource + DesktopBridgeFactory, routing /desktop/b<i>/websockify to backend i) or
nginx or nothing in between; load processes (one per 250 connections) that open the
connections and count what arrives; an echo process that does nothing but measure round trips;
and this process, which only orchestrates and reads /proc.

    python bench/bench_school_scale.py [--connections 1000] [--repeats 3] [--scale-rates 1.0]

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loopback import make_cert, proc_cpu_seconds, proc_pss_bytes, raise_fd_limit
from nginx_peer import NginxPeer
from viewer import FBUR, echo_payload, open_viewer, rfb_handshake, round_trip, viewer_class

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

PASSWORD = "bench-secret"
ORIGIN = "https://desktop.school.example"
MODES = ("direct", "relay", "nginx")
#: Connections per backend process and per load process: few enough that neither saturates.
PER_PROCESS = 250
#: A desktop's classes: share of the connections, bytes per second, framebuffer updates per
#: second (a quiet desktop's clock and cursor, an active one's typing and windows, a video).
CLASSES = {"quiet": (0.80, 20_000, 4), "busy": (0.15, 300_000, 15), "video": (0.05, 2_000_000, 24)}



def authorization() -> str:
    from desktop_relay.backend import Backend

    return Backend("x", 0, PASSWORD).authorization.decode()


# -- the desktop-like backend ---------------------------------------------------------------


def run_backend(cert: Path) -> None:
    """Kasm's checks (kasm-contract.md): Basic auth on the upgrade, an Origin, the `binary`
    subprotocol offered (KasmVNC answers 404 without them: it serves files instead). On
    ``rate B F`` a connection gets F messages a second of B/F bytes each, skipped while its
    transport is paused (a VNC server sends no update the client cannot take), so a path that
    cannot keep up shows as a share below 1."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket.types import ConnectionDeny
    from twisted.internet import reactor, task
    from twisted.internet.interfaces import IPushProducer
    from twisted.internet.ssl import PrivateCertificate
    from zope.interface import implementer

    expected = authorization()
    prepared: dict[int, Any] = {}

    @implementer(IPushProducer)
    class Desktop(WebSocketServerProtocol):
        paused = False
        updates: task.LoopingCall | None = None

        def onConnect(self, request: Any) -> str:
            if request.headers.get("authorization") != expected:
                raise ConnectionDeny(401, "Unauthorized")
            if not request.headers.get("origin") or "binary" not in request.protocols:
                raise ConnectionDeny(404, "Not Found")
            return request.protocols[0]

        def onOpen(self) -> None:
            self.transport.registerProducer(self, True)
            self.sendMessage(b"RFB 003.008\n", isBinary=True)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if payload.startswith(b"rate "):
                rate, fps = (int(x) for x in payload.split()[1:])
                size = max(1, rate // fps)
                if size not in prepared:
                    prepared[size] = self.factory.prepareMessage(bytes(size), isBinary=True)
                self.updates = task.LoopingCall(self.update, prepared[size])
                # A random phase: desktops do not update in step.
                reactor.callLater(random.random() / fps, self.updates.start, 1 / fps, now=True)
            elif payload != FBUR:
                self.sendMessage(payload, isBinary)

        def update(self, message: Any) -> None:
            if not self.paused and self.state == self.STATE_OPEN:
                self.sendPreparedMessage(message)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if self.updates is not None and self.updates.running:
                self.updates.stop()

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False

        def stopProducing(self) -> None:
            self.paused = True

    factory = WebSocketServerFactory("wss://127.0.0.1")
    factory.protocol = Desktop
    factory.setProtocolOptions(openHandshakeTimeout=0)
    options = PrivateCertificate.loadPEM(cert.read_bytes()).options()
    port = reactor.listenSSL(0, factory, options, backlog=4096, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


# -- the relay ------------------------------------------------------------------------------


def run_relay(backend_ports: list[int]) -> None:
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.websocket.types import ConnectionDeny
    from twisted.internet import defer, reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from desktop_relay.backend import Backend
    from desktop_relay.fdlimit import raise_soft_limit
    from desktop_relay.relay.bridge import BridgeTarget, DesktopBridgeFactory

    raise_soft_limit()  # as the relay does at start
    targets = {
        f"/desktop/b{i}/websockify": BridgeTarget(Backend("127.0.0.1", port, PASSWORD), f"b{i}", "bench-user")
        for i, port in enumerate(backend_ports)
    }

    def resolve(request: Any) -> defer.Deferred:
        if request.path not in targets:
            return defer.fail(ConnectionDeny(404, "No such desktop"))
        return defer.succeed(targets[request.path])

    factory = DesktopBridgeFactory(
        resolve, reactor=reactor, url="ws://127.0.0.1:8080", max_message_size=16 << 20, ping_interval=30,
        open_timeout=30,
    )
    root, desktop = Resource(), Resource()
    root.putChild(b"desktop", desktop)
    for i in range(len(backend_ports)):
        session = Resource()
        desktop.putChild(b"b%d" % i, session)
        session.putChild(b"websockify", WebSocketResource(factory))
    site = Site(root)
    site.noisy = False
    port = reactor.listenTCP(0, site, backlog=4096, interface="127.0.0.1")
    import gc

    signal.signal(signal.SIGUSR1, lambda signum, frame: gc.collect())
    print(port.getHost().port, flush=True)
    reactor.run()


# -- the browser-like clients ---------------------------------------------------------------


def client_kit(mode: str, port: int, backend_ports: list[int]) -> Any:
    """``connect(backend_index)`` for this mode: wss with Basic auth straight to the backend,
    or ws to /desktop/b<i>/websockify on the relay or nginx (which add the auth)."""
    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

    from desktop_relay.backend import container_tls_options

    tls = container_tls_options()

    class Viewer(viewer_class()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.received = 0

        def on_stream(self, payload: bytes) -> None:
            self.received += len(payload)

    def factory_for(index: int) -> WebSocketClientFactory:
        if mode == "direct":
            url = f"wss://127.0.0.1:{backend_ports[index]}/websockify"
            headers = {"Authorization": authorization()}
        else:
            url = f"ws://127.0.0.1:{port}/desktop/b{index}/websockify"
            headers = {}
        factory = WebSocketClientFactory(url, origin=ORIGIN, protocols=["binary"], headers=headers)
        factory.setProtocolOptions(openHandshakeTimeout=60)
        return factory

    factories = [factory_for(i) for i in range(len(backend_ports))]

    async def connect(index: int) -> Viewer:
        if mode == "direct":
            endpoint = wrapClientTLS(tls, TCP4ClientEndpoint(reactor, "127.0.0.1", backend_ports[index], timeout=60))
        else:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
        return await open_viewer(Viewer(), factories[index], endpoint)

    return connect



async def read_command() -> str:
    """The next line on stdin, read in a thread so the reactor keeps going."""
    from twisted.internet import threads

    return (await threads.deferToThread(sys.stdin.readline)).strip()


def say(value: Any) -> None:
    print(json.dumps(value), flush=True)


def run_load(mode: str, port: int, backend_ports: list[int], plan: list[tuple[int, int, int]]) -> None:
    """Open one connection per ``(backend, rate, fps)`` of ``plan``, then obey stdin: ``stream``
    (ask each backend for its rate), ``mark`` (start counting), ``report`` (bytes per
    connection since the mark), ``close``."""
    from twisted.internet import defer, task

    raise_fd_limit()
    connect = client_kit(mode, port, backend_ports)

    async def main(reactor: Any) -> None:
        conns: list[Any] = []
        errors: list[str] = []
        for start in range(0, len(plan), 25):
            results = await defer.DeferredList(
                [defer.Deferred.fromCoroutine(connect(b)) for b, _, _ in plan[start : start + 25]], consumeErrors=True
            )
            for ok, value in results:
                if ok:
                    conns.append(value)
                else:
                    errors.append(str(value.value))
        rates = [(rate, fps) for _, rate, fps in plan]
        say({"connected": len(conns), "errors": errors[:5], "error_count": len(errors)})
        marked: list[int] = []
        mark_time = 0.0
        while True:
            command = await read_command()
            if command == "stream":
                for conn, (rate, fps) in zip(conns, rates, strict=False):
                    conn.sendMessage(b"rate %d %d" % (rate, fps), isBinary=True)
                say("streaming")
            elif command == "mark":
                marked, mark_time = [c.received for c in conns], time.perf_counter()
                say("marked")
            elif command == "report":
                elapsed = time.perf_counter() - mark_time
                shares = [
                    (c.received - before) / (rate * elapsed)
                    for c, before, (rate, _) in zip(conns, marked, rates, strict=False)
                ]
                say({
                    "shares": shares,
                    "bytes": sum(c.received for c in conns) - sum(marked),
                    "elapsed": elapsed,
                    "unexpected_closes": sum(c.unexpected_close for c in conns),
                    "error_count": len(errors),
                })
            else:
                for c in conns:
                    c.closing = True
                    if c.state == c.STATE_OPEN:
                        c.sendClose(1000)
                await defer.DeferredList([c.closed for c in conns])
                say("closed")
                return

    task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))


def run_echo(mode: str, port: int, backend_ports: list[int], connections: int, interval: float) -> None:
    """The pinger, alone in its process: ``connections`` viewers (on different backends) that
    speak RFB's handshake, then on ``go`` send a 16-byte input message every ``interval``
    seconds each, waiting for its echo, until ``stop``; prints the round trips' p50 and p99."""
    from twisted.internet import defer, task

    connect = client_kit(mode, port, backend_ports)

    async def main(reactor: Any) -> None:
        conns = [await connect(i % len(backend_ports)) for i in range(connections)]
        for conn in conns:
            await rfb_handshake(conn)
        say("ready")
        await read_command()
        rtts: list[float] = []
        errors = 0
        running = [True]

        async def ping(conn: Any) -> None:
            nonlocal errors
            n = 0
            while running[0]:
                sent = time.perf_counter()
                try:
                    rtts.append(await round_trip(conn, echo_payload(n)) - sent)
                except RuntimeError:
                    errors += 1
                    return
                n += 1
                await task.deferLater(reactor, max(0.0, interval - (time.perf_counter() - sent)), lambda: None)

        pingers = [defer.Deferred.fromCoroutine(ping(c)) for c in conns]
        await read_command()
        running[0] = False
        await defer.gatherResults(pingers)
        rtts.sort()
        say({"p50": rtts[len(rtts) // 2] * 1e3, "p99": rtts[int(len(rtts) * 0.99) - 1] * 1e3, "count": len(rtts),
             "errors": errors})
        for c in conns:
            c.closing = True
            c.sendClose(1000)
        await defer.DeferredList([c.closed for c in conns])

    task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))


# -- the orchestrator -----------------------------------------------------------------------


class Child:
    """A benchmark process of ours, spoken to by lines of JSON."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        me = [sys.executable, str(Path(__file__).resolve())]
        self.process = subprocess.Popen([*me, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)

    def read(self) -> Any:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.process.args[2:4]} exited with {self.process.wait()}")
        return json.loads(line)

    def tell(self, command: str) -> None:
        self.process.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def ask(self, command: str) -> Any:
        self.tell(command)
        return self.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()  # a reactor still busy with a thousand closes
            self.process.wait()


def cpu(pids: list[int]) -> float:
    return sum(proc_cpu_seconds(pid) for pid in pids)


def pss(pids: list[int]) -> int:
    return sum(proc_pss_bytes(pid) for pid in pids)


def machine_busy() -> tuple[float, float]:
    """All CPUs' busy and total time so far (the first line of /proc/stat), in ticks: how much of
    the machine everything, this benchmark's processes and everyone else's, took."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def plan_connections(n: int, backends: int, scale: float) -> list[tuple[int, int, int, str]]:
    """(backend, rate, fps, class) for each connection: the mix of CLASSES, the same every run."""
    classes = []
    for name, (share, _, _) in CLASSES.items():
        classes += [name] * round(n * share)
    classes = (classes + ["quiet"] * n)[:n]
    random.Random(9).shuffle(classes)
    return [
        (j % backends, max(1, int(CLASSES[c][1] * scale)), CLASSES[c][2], c) for j, c in enumerate(classes)
    ]


def run_bench(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-school-"))
    cert = make_cert(tmp)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    n = args.connections
    groups = math.ceil(n / PER_PROCESS)
    backends = [Child(["backend", "--cert", str(cert)], env) for _ in range(args.backends or groups)]
    backend_ports = [b.read() for b in backends]
    backend_list = ",".join(map(str, backend_ports))
    plan = plan_connections(n, len(backends), args.scale_rates)
    offered = sum(rate for _, rate, _, _ in plan)
    print(f"{n} connections over {len(backends)} backends and {groups} load processes; offered "
          f"{offered / 1e6:.1f} MB/s ({', '.join(f'{c} {sum(p[3] == c for p in plan)}' for c in CLASSES)}); "
          f"rates x{args.scale_rates}; {args.duration:.0f} s measured after {args.warmup:.0f} s; "
          f"{args.echo_connections} echo connections pinging every {args.ping_interval * 1e3:.0f} ms", flush=True)

    def run_mode(mode: str) -> dict[str, Any]:
        peer_pids: list[int] = []
        relay: Child | None = None
        nginx: NginxPeer | None = None
        port = 0
        if mode == "relay":
            relay = Child(["relay", "--backend-ports", backend_list], env)
            port = relay.read()
            peer_pids = [relay.process.pid]
        elif mode == "nginx":
            nginx = NginxPeer({f"b{i}": p for i, p in enumerate(backend_ports)}, authorization())
            port = nginx.port
            peer_pids = nginx.pids()
        loads: list[Child] = []
        echo: Child | None = None
        try:
            time.sleep(0.5)

            def peer_pss() -> int:
                if relay is not None:
                    os.kill(relay.process.pid, signal.SIGUSR1)
                    time.sleep(0.5)
                return pss(peer_pids) if peer_pids else 0

            baseline = peer_pss()
            common = ["--mode", mode, "--port", str(port), "--backend-ports", backend_list]
            for g in range(groups):
                part = [p[:3] for j, p in enumerate(plan) if j % groups == g]
                plan_file = tmp / f"plan-{g}.json"
                plan_file.write_text(json.dumps(part))
                loads.append(Child(["load", *common, "--plan", str(plan_file)], env))
            connected = [load.read() for load in loads]
            echo = Child(["echo", *common, "--connections", str(args.echo_connections),
                          "--interval", str(args.ping_interval)], env)
            echo.read()
            time.sleep(1.0)
            idle = peer_pss()
            for load in loads:
                load.ask("stream")
            time.sleep(args.warmup)
            for load in loads:
                load.ask("mark")
            pids = {"peer": peer_pids, "loads": [x.process.pid for x in loads], "echo": [echo.process.pid]}
            cpu0 = {k: cpu(v) for k, v in pids.items()}
            backend_cpu0 = [proc_cpu_seconds(b.process.pid) for b in backends]
            busy0 = machine_busy()
            start = time.perf_counter()
            echo.tell("go")
            time.sleep(args.duration)
            loaded = pss(peer_pids) if peer_pids else 0
            reports = [load.ask("report") for load in loads]
            elapsed = time.perf_counter() - start
            cpu1 = {k: cpu(v) for k, v in pids.items()}
            busy1 = machine_busy()
            ours = sum(cpu1.values()) - sum(cpu0.values())
            backend_cpu = [
                (proc_cpu_seconds(b.process.pid) - c0) / elapsed * 100
                for b, c0 in zip(backends, backend_cpu0, strict=True)
            ]
            rtt = echo.ask("stop")
            for load in loads:
                load.ask("close")
        finally:
            for child in loads + ([echo] if echo else []):
                child.stop()
            if relay is not None:
                relay.stop()
            if nginx is not None:
                nginx.stop()
        conns = n + args.echo_connections
        shares = [s for r in reports for s in r["shares"]]
        by_class: dict[str, list[float]] = {}
        parts = [[p[3] for j, p in enumerate(plan) if j % groups == g] for g in range(groups)]
        for r, names in zip(reports, parts, strict=True):
            for s, c in zip(r["shares"], names, strict=False):
                by_class.setdefault(c, []).append(s)
        ticks = os.sysconf("SC_CLK_TCK")
        ours += sum(backend_cpu) * elapsed / 100
        return {
            "machine_busy": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * 100,
            "others_cpu": ((busy1[0] - busy0[0]) / ticks - ours) / elapsed * 100,
            "loadavg": float(Path("/proc/loadavg").read_text().split()[0]),
            "peer_cpu": (cpu1["peer"] - cpu0["peer"]) / elapsed * 100,
            "load_cpu": max((cpu1["loads"] - cpu0["loads"]) / elapsed * 100 / len(loads), 0),
            "echo_cpu": (cpu1["echo"] - cpu0["echo"]) / elapsed * 100,
            "backend_cpu": backend_cpu,
            "pss_loaded": loaded,
            "pss_loaded_per_conn": (loaded - baseline) / conns,
            "pss_idle_per_conn": (idle - baseline) / conns,
            "p50": rtt["p50"],
            "p99": rtt["p99"],
            "pings": rtt["count"],
            "errors": sum(c["error_count"] for c in connected) + rtt["errors"],
            "error_samples": [e for c in connected for e in c["errors"]][:3],
            "unexpected_closes": sum(r["unexpected_closes"] for r in reports),
            "connected": sum(c["connected"] for c in connected),
            "min_share": min(shares) if len(shares) == n else 0.0,
            "min_share_by_class": {c: min(v) for c, v in by_class.items()},
            "mb_per_s": sum(r["bytes"] for r in reports) / elapsed / 1e6,
        }

    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    try:
        for repeat in range(args.repeats):
            # Modes interleaved, so that a noisy neighbour hits all of them alike.
            for mode in args.modes:
                r = run_mode(mode)
                results[mode].append(r)
                print(f"  run {repeat + 1} {mode}: " + json.dumps(r, separators=(",", ":")), flush=True)
    finally:
        for b in backends:
            b.stop()
    print_table(results, args)


def print_table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    modes = list(results)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    def ratio(mode: str, key: str) -> str:
        if "direct" not in results or mode == "direct":
            return ""
        return f" ({med(mode, key) / med('direct', key):.2f}x)"

    rows = [
        ("relay/proxy CPU, % of a core", lambda m: "-" if m == "direct" else f"{med(m, 'peer_cpu'):.0f}"),
        ("PSS under load, MB", lambda m: "-" if m == "direct" else f"{med(m, 'pss_loaded') / 1e6:.0f}"),
        ("PSS per connection under load, KB",
         lambda m: "-" if m == "direct" else f"{med(m, 'pss_loaded_per_conn') / 1e3:.1f}"),
        ("PSS per idle connection, KB", lambda m: "-" if m == "direct" else f"{med(m, 'pss_idle_per_conn') / 1e3:.1f}"),
        ("echo p50, ms", lambda m: f"{med(m, 'p50'):.2f}{ratio(m, 'p50')}"),
        ("echo p99, ms", lambda m: f"{med(m, 'p99'):.2f}{ratio(m, 'p99')}"),
        ("errors (max over runs)", lambda m: f"{max(r['errors'] for r in results[m])}"),
        ("unexpected closes (max over runs)", lambda m: f"{max(r['unexpected_closes'] for r in results[m])}"),
        ("slowest connection's share of its rate", lambda m: f"{med(m, 'min_share'):.2f}"),
        ("delivered, MB/s", lambda m: f"{med(m, 'mb_per_s'):.1f}"),
        ("busiest backend CPU, %", lambda m: f"{statistics.median(max(r['backend_cpu']) for r in results[m]):.0f}"),
        ("load process CPU (mean), %", lambda m: f"{med(m, 'load_cpu'):.0f}"),
        ("machine busy (all CPUs), %", lambda m: f"{med(m, 'machine_busy'):.0f}"),
        ("other processes' CPU, % of a core", lambda m: f"{med(m, 'others_cpu'):.0f}"),
    ]
    table = [("measure", *modes)] + [(label, *(f(m) for m in modes)) for label, f in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    print()
    for i, r in enumerate(table):
        print("  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    print(f"\nmedians of {args.repeats} runs of {args.connections} connections, rates x{args.scale_rates}; "
          "in brackets: / direct, same run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    b = sub.add_parser("backend")
    b.add_argument("--cert", type=Path, required=True)
    r = sub.add_parser("relay")
    r.add_argument("--backend-ports", required=True)
    for name in ("load", "echo"):
        p = sub.add_parser(name)
        p.add_argument("--mode", choices=MODES, required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--backend-ports", required=True)
        if name == "load":
            p.add_argument("--plan", type=Path, required=True)
        else:
            p.add_argument("--connections", type=int, required=True)
            p.add_argument("--interval", type=float, required=True)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale-rates", type=float, default=1.0, help="multiply every class's rate by this")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of streaming before measuring")
    parser.add_argument("--echo-connections", type=int, default=4)
    parser.add_argument("--ping-interval", type=float, default=0.02, help="seconds between one connection's pings")
    parser.add_argument("--backends", type=int, default=0, help=f"backend processes (default: one per {PER_PROCESS})")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES), help="comma-separated")
    args = parser.parse_args()
    if args.role == "backend":
        raise_fd_limit()
        run_backend(args.cert)
    elif args.role == "relay":
        run_relay([int(p) for p in args.backend_ports.split(",")])
    elif args.role in ("load", "echo"):
        ports = [int(p) for p in args.backend_ports.split(",")]
        if args.role == "load":
            run_load(args.mode, args.port, ports, [tuple(x) for x in json.loads(args.plan.read_text())])
        else:
            run_echo(args.mode, args.port, ports, args.connections, args.interval)
    else:
        run_bench(args)


if __name__ == "__main__":
    main()
