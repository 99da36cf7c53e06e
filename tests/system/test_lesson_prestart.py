"""A lesson's pre-start with a real relay (twistd), the real Docker engine and the demo image: a
pupil who signed in before gets the lesson's desktop `lead` before it begins, ready to open."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from relay_harness import RelayProcess, vnc_handshake

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_known_pupil_finds_the_lessons_desktop_started_and_opens_it(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    start = datetime.now(UTC) + timedelta(minutes=5)
    end = min(start + timedelta(minutes=45), start.replace(hour=23, minute=59))  # a lesson ends the same day
    relay = relay_factory(sections={
        "sessions": {"check_interval": "1s"},
        "schedule:lesson": {"group": "pupils", "desktop": "demo", "timezone": "UTC", "lead": "10m",
                            "times": f"\n{start:%a}".lower() + f" {start:%H:%M}-{end:%H:%M}"},
    })
    alice = relay.client()
    alice.login("alice")  # known from now on: the next tick starts her desktop
    deadline = time.monotonic() + 60
    sessions: list = []
    while time.monotonic() < deadline and not any(s["state"] == "ready" for s in sessions):
        time.sleep(0.5)
        sessions = alice.api("GET", "/sessions").json()
    (session,) = sessions
    assert session["state"] == "ready" and session["desktop"] == "demo"
    lesson = start.replace(second=0, microsecond=0).timestamp()
    assert session["prestart"] == {"lesson": lesson, "claim_deadline": lesson + 900, "opened": False}
    # Start on the dashboard hands her the one started for her.
    again = alice.api("POST", "/sessions", {"desktop": "demo"})
    assert again.status_code == 200 and again.json()["id"] == session["id"]
    with alice.websocket(session["id"]) as ws:
        vnc_handshake(ws)
        time.sleep(2.5)  # connected across a tick: opened
    assert alice.api("GET", f"/sessions/{session['id']}").json()["prestart"]["opened"] is True
