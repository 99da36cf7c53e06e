"""A lesson's pre-start with a real relay (twistd), the real Docker engine and the demo image: a
pupil who signed in before gets the lesson's desktop `lead` before it begins, ready to open."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from relay_harness import Browser, RelayProcess, vnc_handshake

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def lesson_in_five_minutes() -> dict[str, dict[str, str]]:
    start = datetime.now(UTC) + timedelta(minutes=5)
    end = min(start + timedelta(minutes=45), start.replace(hour=23, minute=59))  # a lesson ends the same day
    return {
        "sessions": {"check_interval": "1s"},
        "schedule:lesson": {"group": "pupils", "desktop": "demo", "timezone": "UTC", "lead": "10m",
                            "times": f"\n{start:%a}".lower() + f" {start:%H:%M}-{end:%H:%M}"},
    }


def prestarted(pupil: Browser) -> dict:
    """The pupil's pre-started desktop, once ready."""
    deadline = time.monotonic() + 60
    sessions: list = []
    while time.monotonic() < deadline and not any(s["state"] == "ready" for s in sessions):
        time.sleep(0.5)
        sessions = pupil.api("GET", "/sessions").json()
    (session,) = sessions
    return session


def test_a_known_pupil_finds_the_lessons_desktop_started_and_opens_it(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    start = datetime.now(UTC) + timedelta(minutes=5)
    relay = relay_factory(sections=lesson_in_five_minutes())
    alice = relay.client()
    alice.login("alice")  # known from now on: the next tick starts her desktop
    session = prestarted(alice)
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


def test_a_prestarted_pupils_web_client_is_fetched_ahead_from_their_own_desktop(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(sections=lesson_in_five_minutes())
    alice, bob = relay.client(), relay.client()
    alice.login("alice")
    bob.login("bob")
    alices, bobs = prestarted(alice), prestarted(bob)
    # Nobody has loaded this client build yet: there is nothing to go by.
    time.sleep(2.5)
    assert "fetched ahead" not in relay.log()
    # Alice's browser loads her client: the entry document, then two of its module scripts.
    assert alice.get(alices["client_url"]).status_code == 200
    module = {"Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "cors"}
    for name in ("app/ui.js", "core/rfb.js"):
        assert alice.get(f"/desktop/{alices['id']}/{name}", headers=module).status_code == 200
    # Bob's, from his own desktop, before he opens it; his first load is told its modules at once.
    deadline = time.monotonic() + 15
    line = f"web client of session {bobs['id']} fetched ahead for bob: 2 of 2 files"
    while line not in relay.log():
        assert time.monotonic() < deadline, relay.log()[-3000:]
        time.sleep(0.3)
    entry = bob.get(bobs["client_url"])
    assert entry.status_code == 200
    assert entry.headers["link"] == "<app/ui.js>; rel=modulepreload, <core/rfb.js>; rel=modulepreload"
    assert bob.get(f"/desktop/{bobs['id']}/core/rfb.js").status_code == 200
    assert "fetched ahead for alice" not in relay.log()  # she loaded hers herself
