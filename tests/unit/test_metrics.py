"""The relay's metrics: their values after simulated events, each relay on a registry of its own,
the Docker calls' durations and error kinds, the bearer token in front of /metrics, and the
Grafana dashboard naming only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from desktop_relay.config import ConfigError, load_config
from desktop_relay.engine.docker import DockerProvisioner
from desktop_relay.engine.interface import ContainerEngineTimedOut, ContainerEngineUnavailable, ContainerStartFailed
from desktop_relay.metrics import PREFIX, RelayMetrics, _BearerToken

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "etc" / "grafana" / "desktop-relay.json"
MINIMAL = "[desktop:demo]\nimage = desktop-relay/demo-desktop:latest\ngroups = *\n"


def test_sessions_gauge_and_queue_length_come_from_the_latest_count() -> None:
    metrics = RelayMetrics(desktops=["demo", "code"])
    value = metrics.registry.get_sample_value
    # Before the first count: every configured desktop shows 0 in every state, not a gap.
    assert value("desktop_relay_sessions", {"state": "ready", "desktop": "code"}) == 0
    assert value("desktop_relay_queue_length") == 0
    metrics.sessions_counted({("ready", "demo"): 3, ("queued", "demo"): 2, ("queued", "code"): 1})
    assert value("desktop_relay_sessions", {"state": "ready", "desktop": "demo"}) == 3
    assert value("desktop_relay_sessions", {"state": "starting", "desktop": "demo"}) == 0
    assert value("desktop_relay_queue_length") == 3
    metrics.sessions_counted({})
    assert value("desktop_relay_sessions", {"state": "ready", "desktop": "demo"}) == 0


def test_start_and_queue_histograms_observe_seconds_per_desktop() -> None:
    metrics = RelayMetrics(desktops=["demo"])
    value = metrics.registry.get_sample_value
    metrics.start_ready("demo", 2.5)
    metrics.start_left_queue("demo", 0)
    metrics.start_left_queue("demo", 40)
    assert value("desktop_relay_start_duration_seconds_count", {"desktop": "demo"}) == 1
    assert value("desktop_relay_start_duration_seconds_bucket", {"desktop": "demo", "le": "3.0"}) == 1
    assert value("desktop_relay_start_duration_seconds_bucket", {"desktop": "demo", "le": "2.0"}) == 0
    assert value("desktop_relay_queue_wait_seconds_count", {"desktop": "demo"}) == 2
    assert value("desktop_relay_queue_wait_seconds_sum", {"desktop": "demo"}) == 40


def test_bridges_and_sign_ins_count_by_label() -> None:
    metrics = RelayMetrics()
    value = metrics.registry.get_sample_value
    metrics.bridge_registered()
    metrics.bridge_registered()
    metrics.bytes_relayed(1000, 10)
    metrics.bridge_gone(1001)
    metrics.bridge_gone(None)
    assert value("desktop_relay_bridges_open") == 0
    assert value("desktop_relay_bridge_closes_total", {"code": "1001"}) == 1
    assert value("desktop_relay_bridge_closes_total", {"code": "none"}) == 1
    assert value("desktop_relay_bridge_bytes_total", {"direction": "to_browser"}) == 1000
    assert value("desktop_relay_bridge_bytes_total", {"direction": "to_container"}) == 10
    metrics.sign_in("local", "ok")
    metrics.sign_in("local", "throttled")
    metrics.sign_in("oidc", "failed")
    assert value("desktop_relay_sign_ins_total", {"method": "local", "result": "throttled"}) == 1
    assert value("desktop_relay_sign_ins_total", {"method": "oidc", "result": "failed"}) == 1


def test_two_relays_in_one_process_keep_their_numbers_apart_and_off_the_global_registry() -> None:
    first, second = RelayMetrics(), RelayMetrics()
    first.sign_in("local", "ok")
    assert first.registry.get_sample_value("desktop_relay_sign_ins_total", {"method": "local", "result": "ok"}) == 1
    assert second.registry.get_sample_value("desktop_relay_sign_ins_total", {"method": "local", "result": "ok"}) is None
    assert not [m for m in REGISTRY.collect() if m.name.startswith(PREFIX)]


class _NoReactor:
    """The provisioner's reactor, for calls made synchronously: log lines are dropped."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.mark.parametrize(
    "error, kind",
    [
        (ContainerEngineUnavailable("unreachable"), "unavailable"),
        (ContainerEngineTimedOut("no answer"), "timed_out"),
        (ContainerStartFailed("no such image"), "refused"),
    ],
)
def test_docker_calls_are_timed_per_operation_and_failures_counted_by_kind(error: Exception, kind: str) -> None:
    metrics = RelayMetrics()
    provisioner = DockerProvisioner(_NoReactor(), threadpool=None, metrics=metrics)  # type: ignore[arg-type]
    provisioner._api = lambda: None  # type: ignore[method-assign]

    def _inspect_blocking(api: object, container_id: str) -> None:
        raise error

    with pytest.raises(type(error)):
        provisioner._guarded(_inspect_blocking, "c1")
    value = metrics.registry.get_sample_value
    assert value("desktop_relay_docker_call_duration_seconds_count", {"operation": "inspect"}) == 1
    assert value("desktop_relay_docker_errors_total", {"operation": "inspect", "kind": kind}) == 1


def test_metrics_behind_a_token_answer_401_without_it_and_pass_with_it() -> None:
    class Inner(Resource):
        isLeaf = True

        def render(self, request: Any) -> bytes:
            return b"desktop_relay_bridges_open 0\n"

    guarded = _BearerToken(Inner(), "s3cret")
    for header, status in [(None, 401), (b"Bearer wrong", 401), (b"Basic s3cret", 401), (b"Bearer s3cret", 200)]:
        request = DummyRequest([b"metrics"])
        if header is not None:
            request.requestHeaders.setRawHeaders(b"authorization", [header])
        body = guarded.render(request)
        assert (request.responseCode or 200) == status
        assert (body == b"desktop_relay_bridges_open 0\n") == (status == 200)


# -- configuration ---------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "etc").mkdir(exist_ok=True)
    path = tmp_path / "etc" / "relay.ini"
    path.write_text(text)
    return path


def test_metrics_listen_on_loopback_by_default_and_can_be_off(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.metrics_listen == "tcp:9118:interface=127.0.0.1"
    assert config.metrics_token is None
    assert config.log_format == "text"
    assert load_config(_write(tmp_path, "[metrics]\nlisten = off\n" + MINIMAL)).metrics_listen is None


def test_metrics_beyond_loopback_without_a_token_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "[metrics]\nlisten = tcp:9118\n" + MINIMAL))
    assert "[metrics] listen: listens beyond loopback without a token: set token_file" in str(caught.value)


def test_metrics_beyond_loopback_with_a_private_token_file_are_accepted(tmp_path: Path) -> None:
    token = tmp_path / "metrics-token"
    token.write_text("t0ken\n")
    token.chmod(0o640)
    config = load_config(_write(tmp_path, f"[metrics]\nlisten = tcp:9118\ntoken_file = {token}\n" + MINIMAL))
    assert config.metrics_token == "t0ken"
    assert "t0ken" not in repr(config)
    token.chmod(0o644)
    with pytest.raises(ConfigError, match=r"\[metrics\] token_file: .* is readable by everyone"):
        load_config(_write(tmp_path, f"[metrics]\nlisten = tcp:9118\ntoken_file = {token}\n" + MINIMAL))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[relay]\nlog_format = xml\n", "[relay] log_format: 'xml': must be text or json"),
        ("[metrics]\nlisten =\n", "[metrics] listen: '': must be a Twisted endpoint"),
    ],
)
def test_bad_log_format_and_metrics_listen_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text + MINIMAL))
    assert expected in str(caught.value)


# -- the Grafana dashboard -------------------------------------------------------------


def _sample_names(metrics: RelayMetrics) -> set[str]:
    """Every series name the registry can expose, whether or not it has a sample yet."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {m.name + s for m in metrics.registry.collect() for s in suffixes[m.type]}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_grafana_dashboard_uses_only_metrics_the_relay_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    known = _sample_names(RelayMetrics())
    used: set[str] = set()
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            names = set(re.findall(r"\b" + PREFIX + r"[a-z_]+", target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= known, f"{panel['title']}: unknown {names - known}"
            used |= names
    # Every metric the relay has is on the dashboard somewhere.
    families = {m.name for m in RelayMetrics().registry.collect()}
    assert {f for f in families if not any(u.startswith(f) for u in used)} == set()
