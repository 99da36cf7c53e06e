"""The relay's Prometheus metrics: their names, labels and buckets, on a registry of the relay's
own, and the /metrics resource that serves them on a listener apart from the public site.

Every part that measures something is handed one RelayMetrics and calls its methods; nothing
here is global, so tests and several relays in one process never share a number. Scrapes run
in a worker thread (prometheus_client's Twisted resource is a WSGI app): what they read is
either a prometheus_client metric (thread-safe) or a snapshot the reactor replaces whole.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

#: Every metric's name starts with this.
PREFIX = "desktop_relay_"

#: The states a session is counted in (ended ones are history, not a level).
COUNTED_STATES = ("queued", "starting", "ready", "stopping")

# Seconds. A small desktop is ready in one or two, a Kasm image in ten to thirty; start_timeout
# is 60 s by default.
_START_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120)
# A queue moves as desktops end: minutes, up to a lesson.
_QUEUE_BUCKETS = (0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 2700)
# One engine request: milliseconds when well, up to [docker] timeout (30 s) when not.
_DOCKER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

SessionCounts = Mapping[tuple[str, str], int]


class _SessionLevels:
    """Collector of the sessions gauge and the queue length from the latest count (by state
    and desktop) the lifecycle tick made: a scrape never reads the database."""

    def __init__(self, desktops: Iterable[str]) -> None:
        self.desktops = tuple(desktops)
        self.counts: SessionCounts = MappingProxyType({})

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(PREFIX + "sessions", "", labels=["state", "desktop"])
        yield GaugeMetricFamily(PREFIX + "queue_length", "")

    def collect(self) -> Iterator[Metric]:
        counts = self.counts  # one read: the reactor replaces the mapping, never changes it
        sessions = GaugeMetricFamily(
            PREFIX + "sessions", "Desktop sessions by state and desktop", labels=["state", "desktop"]
        )
        desktops = sorted(set(self.desktops) | {desktop for _, desktop in counts})
        for state in COUNTED_STATES:
            for desktop in desktops:
                sessions.add_metric([state, desktop], counts.get((state, desktop), 0))
        yield sessions
        yield GaugeMetricFamily(
            PREFIX + "queue_length", "Starts waiting in the queue",
            value=sum(n for (state, _), n in counts.items() if state == "queued"),
        )


class RelayMetrics:
    """The relay's metrics; one per relay, each on its own registry unless one is given."""

    def __init__(self, registry: CollectorRegistry | None = None, desktops: Iterable[str] = ()) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._levels = _SessionLevels(desktops)
        r.register(self._levels)
        self._start_duration = Histogram(
            PREFIX + "start_duration_seconds", "From the start request to the desktop being ready",
            ["desktop"], buckets=_START_BUCKETS, registry=r,
        )
        self._queue_wait = Histogram(
            PREFIX + "queue_wait_seconds", "From the start request to its container being created "
            "(0 for a start that fitted at once)", ["desktop"], buckets=_QUEUE_BUCKETS, registry=r,
        )
        self._bridges_open = Gauge(
            PREFIX + "bridges_open", "WebSocket bridges open or opening", registry=r,
        )
        self._bridge_bytes = Counter(
            PREFIX + "bridge_bytes", "Message bytes relayed by WebSocket bridges",
            ["direction"], registry=r,
        )
        self._bridge_closes = Counter(
            PREFIX + "bridge_closes", "WebSocket bridges closed, by the browser connection's close code",
            ["code"], registry=r,
        )
        self._docker_duration = Histogram(
            PREFIX + "docker_call_duration_seconds", "Docker engine calls, by operation",
            ["operation"], buckets=_DOCKER_BUCKETS, registry=r,
        )
        self._docker_errors = Counter(
            PREFIX + "docker_errors", "Docker engine calls that failed, by operation and kind",
            ["operation", "kind"], registry=r,
        )
        self._pool = Gauge(
            PREFIX + "pool_containers", "Warm pool containers waiting for a start, by desktop and state",
            ["desktop", "state"], registry=r,
        )
        self._sign_ins = Counter(
            PREFIX + "sign_ins", "Sign-in attempts by method and result", ["method", "result"], registry=r,
        )
        for direction in ("to_browser", "to_container"):
            self._bridge_bytes.labels(direction)

    # -- sessions and the queue (called on the reactor) -----------------------------------

    def sessions_counted(self, counts: SessionCounts) -> None:
        """The active sessions now, by (state, desktop); replaces the previous count."""
        self._levels.counts = MappingProxyType(dict(counts))

    def start_ready(self, desktop: str, seconds: float) -> None:
        """A start became ready this long after it was asked for."""
        self._start_duration.labels(desktop).observe(max(0.0, seconds))

    def start_left_queue(self, desktop: str, seconds: float) -> None:
        """A start got its turn (its container is being made) after waiting this long."""
        self._queue_wait.labels(desktop).observe(max(0.0, seconds))

    def pool_counted(self, counts: Mapping[tuple[str, str], int]) -> None:
        """The unclaimed pool containers now, by (desktop, state); replaces the previous count."""
        self._pool.clear()
        for (desktop, state), count in counts.items():
            self._pool.labels(desktop, state).set(count)

    # -- WebSocket bridges ----------------------------------------------------------------

    def bridge_registered(self) -> None:
        """A bridge began (its upgrade was authorised)."""
        self._bridges_open.inc()

    def bridge_gone(self, browser_code: int | None, *, opened: bool = True) -> None:
        """A bridge ended; `browser_code` is its browser connection's close code (None: none).
        One that never opened (its upgrade was refused) is not counted as a close."""
        self._bridges_open.dec()
        if opened:
            self._bridge_closes.labels("none" if browser_code is None else str(browser_code)).inc()

    def bytes_relayed(self, to_browser: int, to_container: int) -> None:
        """Bytes relayed since the bridges were last counted."""
        if to_browser:
            self._bridge_bytes.labels("to_browser").inc(to_browser)
        if to_container:
            self._bridge_bytes.labels("to_container").inc(to_container)

    # -- the Docker engine (called in the provisioner's worker threads) -------------------

    def docker_call(self, operation: str, seconds: float) -> None:
        """One engine call took this long, successful or not."""
        self._docker_duration.labels(operation).observe(seconds)

    def docker_error(self, operation: str, kind: str) -> None:
        """An engine call failed: `kind` is unavailable, timed_out or refused."""
        self._docker_errors.labels(operation, kind).inc()

    # -- sign-ins -------------------------------------------------------------------------

    def sign_in(self, method: str, result: str) -> None:
        """A sign-in attempt: `method` local, oidc or header; `result` ok, failed or throttled."""
        self._sign_ins.labels(method, result).inc()


class _BearerToken(Resource):
    """Lets a request through to `inner` only with `Authorization: Bearer <token>`."""

    isLeaf = True

    def __init__(self, inner: IResource, token: str) -> None:
        super().__init__()
        self._inner = inner
        self._expected = b"Bearer " + token.encode("utf-8")

    def render(self, request: IRequest) -> bytes | int:
        given = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(given, self._expected):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="desktop-relay metrics"')
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"a bearer token is required ([metrics] token_file)\n"
        return self._inner.render(request)


def metrics_root(registry: CollectorRegistry, token: str | None = None) -> Resource:
    """The metrics listener's root: /metrics from `registry` (behind `token`, if given); every
    other path answers 404."""
    # Imported here: it imports the global reactor, which must not happen at plugin load.
    from prometheus_client.twisted import MetricsResource

    served: IResource = MetricsResource(registry=registry)
    if token is not None:
        served = _BearerToken(served, token)
    root = Resource()
    root.putChild(b"metrics", served)
    return root
