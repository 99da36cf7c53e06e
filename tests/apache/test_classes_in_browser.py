"""The dashboard's "My classes" in a real browser: headless Chromium -> the relay as twistd on
loopback, with real Docker. A teacher sees their class's pupil with her running desktop, stops it
with a reason she then reads, offers a desktop to the class and ends the offer, in English and
German, and the section passes axe-core; a pupil gets no such section."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from axe_pages import assert_accessible
from relay_harness import IMAGE, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERS = {"tina": "lehrer,klasse-7a", "ada": "klasse-7a", "bob": "klasse-7b"}
SECTIONS = {
    "roles": {"teacher_groups": "lehrer", "class_groups": "klasse-*"},
    "desktop:lab": {"image": IMAGE, "title": "Lab desktop", "groups": "", "teachers_may_assign": "yes",
                    "memory": "512m", "pids_limit": "256"},
}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_teacher_stops_a_pupils_desktop_and_offers_one_in_my_classes(
    relay_factory: Callable[..., RelayProcess], tab, lang: str,
) -> None:
    relay = relay_factory(users=USERS, sections=SECTIONS)
    ada = relay.client()
    ada.login("ada")
    session = ada.start_desktop()
    relay.client().login("bob")

    pupil = tab(relay, "ada", lang)
    pupil.page.get_by_role("heading", name=pupil.words.gettext("Your desktops")).wait_for()
    # classes.js has asked /api/classes/ by the time the page's own list of desktops is drawn.
    pupil.page.locator("#desktops li").first.wait_for()
    pupil.page.wait_for_timeout(500)
    assert pupil.page.locator("#classes").is_hidden()

    teacher = tab(relay, "tina", lang)
    page = teacher.page
    w = teacher.words.gettext
    page.get_by_role("heading", name=w("My classes")).wait_for()
    options = page.locator("#classes-class option").all_inner_texts()
    assert options == [teacher.words.ngettext("{name} ({count} pupil)", "{name} ({count} pupils)", 1, name="klasse-7a")]
    row = page.locator("#classes-pupils tbody tr", has_text="Ada")
    row.get_by_text(w("Running, in use")).wait_for()
    assert row.get_by_role("link", name=w("Look at {name}'s desktop", name="Ada")).get_attribute("href") == (
        f"/look/{session['id']}/")
    assert_accessible(page, "My classes with a pupil's running desktop")

    row.get_by_role("button", name=w("Stop {name}'s desktop", name="Ada")).click()
    reason = page.get_by_label(w("Reason {name} reads", name="Ada"))
    assert_accessible(page, "My classes with a stop's reason being typed")
    reason.fill("Eyes to the front, please.")
    reason.press("Enter")
    page.locator("#classes-status", has_text=w("{name}'s desktop was stopped.", name="Ada")).wait_for()
    row.get_by_text(w("No desktop")).wait_for()
    seen = ada.api("GET", f"/sessions/{session['id']}").json()
    assert seen["end_reason"] == "teacher" and seen["reason"] == "Eyes to the front, please."
    # The pupil's own page for it says who stopped it, and the teacher's words.
    pupil.page.goto(f"{relay.url}/desktop/{session['id']}/")
    pupil.page.get_by_text(pupil.words.gettext("This desktop was stopped by your teacher.")).wait_for()
    pupil.page.get_by_text("Eyes to the front, please.").wait_for()

    now = datetime.now().replace(second=0, microsecond=0)
    page.select_option("#classes-assign-desktop", "lab")
    page.fill("#classes-assign-from", now.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#classes-assign-until", (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#classes-assign-note", "Lab 1")
    page.get_by_role("button", name=w("Offer"), exact=True).click()
    page.locator("#classes-status", has_text=w("{desktop} is offered to the class.", desktop="lab")).wait_for()
    offer = page.locator("#classes-assignments li", has_text="Lab 1")
    offer.get_by_text(w("offered now")).wait_for()
    assert [d["name"] for d in ada.api("GET", "/desktops").json()] == ["demo", "lab"]
    assert_accessible(page, "My classes with a desktop offered")

    offer.get_by_role("button", name=w("End the offer of {desktop}", desktop="lab")).click()
    offer.get_by_text(w("ended"), exact=True).wait_for()
    assert [d["name"] for d in ada.api("GET", "/desktops").json()] == ["demo"]
