"""Operations against the relay as twistd and the real Docker engine: /metrics on its own port
after a desktop was started and shown, the bearer token in front of it, and JSON logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from relay_harness import RelayProcess, vnc_handshake


def scrape(relay: RelayProcess, **kwargs: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = requests.get(relay.metrics_url, timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_after_a_desktop_was_started_shown_and_closed(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(sections={"sessions": {"check_interval": "1s"}})
    alice = relay.client()
    alice.login("alice")
    session = alice.start_desktop()
    with alice.websocket(session["id"]) as ws:
        vnc_handshake(ws)
    deadline = time.monotonic() + 20
    while True:
        samples = scrape(relay)
        closed = value(samples, "desktop_relay_bridge_closes_total", code="1000")
        ready = value(samples, "desktop_relay_sessions", state="ready", desktop="demo")
        if (closed and ready) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert value(samples, "desktop_relay_start_duration_seconds_count", desktop="demo") == 1
    assert value(samples, "desktop_relay_queue_wait_seconds_count", desktop="demo") == 1
    assert value(samples, "desktop_relay_sessions", state="ready", desktop="demo") == 1
    assert value(samples, "desktop_relay_queue_length") == 0
    assert value(samples, "desktop_relay_bridge_closes_total", code="1000") == 1
    assert value(samples, "desktop_relay_bridges_open") == 0
    assert (value(samples, "desktop_relay_bridge_bytes_total", direction="to_browser") or 0) > 0
    assert (value(samples, "desktop_relay_bridge_bytes_total", direction="to_container") or 0) > 0
    assert value(samples, "desktop_relay_sign_ins_total", method="local", result="ok") == 1
    assert (value(samples, "desktop_relay_docker_call_duration_seconds_count", operation="start") or 0) == 1
    # Not on the public site Apache forwards to.
    assert requests.get(relay.url + "/metrics", timeout=10).status_code == 404


def test_metrics_with_a_token_file_need_the_bearer_token(
    tmp_path: Path, relay_factory: Callable[..., RelayProcess]
) -> None:
    token = tmp_path / "metrics-token"
    token.write_text("scrape-me\n")
    token.chmod(0o600)
    relay = relay_factory(sections={"metrics": {"token_file": str(token)}})
    refused = requests.get(relay.metrics_url, timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    samples = scrape(relay, headers={"Authorization": "Bearer scrape-me"})
    assert value(samples, "desktop_relay_bridges_open") == 0


def test_json_logs_are_one_object_per_line_with_the_structured_fields(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(sections={"relay": {"log_format": "json"}})
    alice = relay.client()
    alice.login("alice")
    session = alice.start_desktop()
    relay.stop()
    lines = relay.log().splitlines()
    events = [json.loads(line) for line in lines]  # every line, twistd's own included
    assert all({"time", "level", "namespace", "message"} <= event.keys() for event in events)
    (started,) = [e for e in events if "started demo in container" in e["message"]]
    assert started["session"] == session["id"] and started["user"] == "alice" and started["level"] == "info"
    (ready,) = [e for e in events if e["message"].startswith(f"session {session['id']} is ready")]
    assert isinstance(ready["elapsed"], float)
    assert any(e["message"].startswith("alice signed in") and e["groups"] == ["pupils"] for e in events)
