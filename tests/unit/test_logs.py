"""JSON log lines: the structured fields of an event, a failure's traceback, values json cannot
take, and the observer handed to twistd's Application."""

from __future__ import annotations

import io
import json

from twisted.application.service import Application, Service
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure

from desktop_relay.logs import event_as_json_line, json_log_observer
from desktop_relay.tap import _LoggingTo


def _logged(emit: object) -> list[dict[str, object]]:
    out = io.StringIO()
    log = Logger(namespace="desktop_relay.test", observer=json_log_observer(out))
    emit(log)  # type: ignore[operator]
    lines = out.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_a_line_carries_time_level_namespace_message_and_every_field() -> None:
    (line,) = _logged(lambda log: log.info("session {session} is ready after {elapsed:.1f}s", session="s1", elapsed=1.25))
    assert line["level"] == "info" and line["namespace"] == "desktop_relay.test"
    assert line["message"] == "session s1 is ready after 1.2s"
    assert line["session"] == "s1" and line["elapsed"] == 1.25
    assert str(line["time"]).endswith("Z")
    assert not [key for key in line if key.startswith("log_")]


def test_a_failure_adds_its_traceback() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        failure = Failure()
    (line,) = _logged(lambda log: log.failure("starting session {session} failed", failure, session="s1"))
    assert line["level"] == "critical" and line["session"] == "s1"
    assert "ValueError: broken" in str(line["traceback"])


def test_values_json_cannot_take_are_written_as_text() -> None:
    line = json.loads(event_as_json_line({
        "log_format": "odd", "log_level": LogLevel.warn, "log_namespace": "x", "log_time": 0.0,
        "pair": {(1, 2): "tuple key"}, "thing": object(),
    }))
    assert line["message"] == "odd" and line["level"] == "warn"
    assert "tuple key" in str(line["pair"]) and "object" in str(line["thing"])


def test_the_json_observer_is_set_on_twistds_application_as_a_tac_file_would() -> None:
    observer = json_log_observer(io.StringIO())
    application = Application("desktop-relay")
    _LoggingTo(Service(), observer).setServiceParent(application)
    assert application.getComponent(ILogObserver) is observer
