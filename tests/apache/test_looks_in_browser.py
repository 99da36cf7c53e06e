"""A teacher looks over a pupil's shoulder, two browsers on the real desktop image: headless
Chromium (pupil, teacher) -> the relay as twistd -> the pupil's container.

The teacher's look page shows the pupil's screen; even with the client's own view-only switch
turned off, the teacher's typing never reaches the desktop (the relay drops it), while the
pupil's typing shows on both screens; the pupil sees who is watching at once, and it goes when
the look ends; control only after the pupil accepts, then the teacher's typing shows; the audit
rows exist; both pages pass axe-core, in English and German.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from axe_pages import assert_accessible
from desktop_browser import BLUE, GREEN, RED, WHITE, XTERM_BOX
from relay_harness import RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERS = {"alice": "klasse-5a", "tina": "teachers,klasse-5a"}
ROLES = {"roles": {"teacher_groups": "teachers", "class_groups": "klasse-*", "teacher_control": "ask"}}
CLIENT_VIEW_ONLY_OFF = """() => {
  const box = document.querySelector("iframe#desktop").contentDocument.getElementById("noVNC_setting_view_only");
  box.checked = false;
  box.dispatchEvent(new Event("change"));
}"""


def audit(relay: RelayProcess) -> list[tuple[str, str]]:
    with sqlite3.connect(relay.directory / "var" / "relay.sqlite3") as db:
        return list(db.execute("SELECT actor, action FROM audit ORDER BY rowid"))


def stays(page, colour: tuple[int, int, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        share = page.screen().share(colour, XTERM_BOX)
        assert share > 0.9, f"the pupil's screen changed: {share:.0%} {colour}"
        page.page.wait_for_timeout(250)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_teacher_watches_input_dropped_until_the_pupil_accepts_control(relay_factory, tab, lang: str) -> None:
    relay = relay_factory(users=USERS, sections=ROLES)
    alice = tab(relay, "alice", lang)
    alice.start_desktop("demo")
    alice.wait_connected_despite_docker()
    alice.wait_for_xterm(WHITE)
    session_id = alice.session_id
    w = alice.words.gettext

    tina = tab(relay, "tina", lang)
    tina.page.goto(f"{relay.url}/look/{session_id}/")
    tina.wait_connected()
    tina.page.locator("#bar #title", has_text=w("Looking at {name}'s desktop", name="Alice")).wait_for()
    tina.wait_for_xterm(WHITE)
    alice.page.locator("#looks-text", has_text=w("{names} is watching your screen.", names="Tina")).wait_for(
        timeout=10_000)
    assert_accessible(tina.page, "the look page")
    assert_accessible(alice.page, "the session page while watched")

    # A teacher's client with its view-only switch turned off: the relay still drops every key.
    tina.page.evaluate(CLIENT_VIEW_ONLY_OFF)
    tina.click_desktop()
    tina.type_command(r"printf '\033[41m\033[2J\033[H'")
    stays(alice, WHITE, 3)

    # The pupil's own typing works and the teacher sees it.
    alice.hover_desktop()
    alice.click_desktop()
    alice.type_command(r"printf '\033[44m\033[2J\033[H'")
    alice.wait_for_xterm(BLUE)
    tina.wait_for_xterm(BLUE)

    # Control only after the pupil accepts.
    tina.page.get_by_role("button", name=w("Ask for control")).click()
    alice.page.locator("#looks-text", has_text=w("{name} asks to control your desktop.", name="Tina")).wait_for(
        timeout=10_000)
    assert_accessible(alice.page, "the session page with a control request")
    alice.page.get_by_role("button", name=w("Accept")).click()
    tina.page.locator("#bar #mode", has_text=w("you have control")).wait_for(timeout=10_000)
    alice.page.locator("#looks-text", has_text=w("{names} has control of your screen.", names="Tina")).wait_for()
    tina.click_desktop()
    tina.type_command(r"printf '\033[42m\033[2J\033[H'")
    alice.wait_for_xterm(GREEN)

    # The pupil takes it back; then the look ends and the indicator goes.
    alice.page.get_by_role("button", name=w("Take control back")).click()
    tina.page.locator("#bar #mode", has_text=w("view only")).wait_for(timeout=10_000)
    tina.page.evaluate(CLIENT_VIEW_ONLY_OFF)
    tina.click_desktop()
    tina.type_command(r"printf '\033[41m\033[2J\033[H'")
    stays(alice, GREEN, 3)
    assert alice.screen().share(RED, XTERM_BOX) < 0.1
    tina.page.get_by_role("link", name=w("Stop looking")).click()
    alice.page.locator("#looks").wait_for(state="hidden", timeout=10_000)

    deadline = time.monotonic() + 10
    while ("tina", "look.end") not in audit(relay) and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = audit(relay)
    for row in [("tina", "look.start"), ("tina", "control.ask"), ("alice", "control.grant"),
                ("alice", "control.end"), ("tina", "look.end")]:
        assert row in rows, rows
