"""The dashboard's "Hand-outs and hand-ins" section in a real browser: headless Chromium -> the
relay as twistd -> the class's hand-out volume through a files container of the demo image. A
teacher adds a file to the hand-out and deletes it, sets the due time (the hand-ins close) and
clears it; a pupil's dashboard has no such section; in English and German, and it passes axe-core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from axe_pages import assert_accessible
from relay_harness import RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def school(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    return relay_factory(users={"herr": "lehrer,klasse-5a", "alice": "pupils,klasse-5a"},
                         sections={"roles": {"teacher_groups": "lehrer", "class_groups": "klasse-*"}})


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_teacher_fills_the_handout_and_sets_and_clears_the_due_time(
    school: RelayProcess, tab, tmp_path: Path, lang: str,
) -> None:
    teacher = tab(school, "herr", lang)
    page = teacher.page
    w = teacher.words.gettext
    page.get_by_role("heading", name=w("Hand-outs and hand-ins")).wait_for()
    page.get_by_role("heading", name="klasse-5a").wait_for()
    page.get_by_text(w("The hand-out is empty.")).wait_for()
    page.get_by_text(w("No due time: hand-ins are open.")).wait_for()

    sheet = tmp_path / "sheet.txt"
    sheet.write_text("exercise 1\n")
    page.get_by_label(w("Add files to the hand-out")).set_input_files(str(sheet))
    page.locator("#classwork-status", has_text=w("{name} added to the hand-out.", name="sheet.txt")).wait_for()
    page.locator(".classwork-files li", has_text="sheet.txt").wait_for()
    assert_accessible(page, "the dashboard's hand-outs and hand-ins section")

    # A due time in the past closes the hand-ins at once.
    page.get_by_label(w("Due time")).fill("2026-01-01T08:00")
    page.get_by_role("button", name=w("Set due time")).click()
    closed = w("Due {time}: hand-ins are closed.", time="\0").split("\0")[1]
    page.locator(".classwork-class p", has_text=closed).wait_for()
    page.get_by_role("button", name=w("Clear due time")).click()
    page.locator(".classwork-class p", has_text=w("No due time: hand-ins are open.")).wait_for()

    page.get_by_role("button", name=w("Delete {name} from the hand-out", name="sheet.txt")).click()
    page.locator("#classwork-status", has_text=w("{name} deleted.", name="sheet.txt")).wait_for()
    page.get_by_text(w("The hand-out is empty.")).wait_for()
    assert page.get_by_role("link", name=w("Download all hand-ins of {class_group}", class_group="klasse-5a")) \
        .get_attribute("href") == "/api/classwork/klasse-5a/handins.zip"
    assert_accessible(page, "the dashboard's hand-outs and hand-ins section after changes")

    pupil = tab(school, "alice", lang)
    pupil.page.get_by_role("heading", name=w("My files")).wait_for()
    assert pupil.page.locator("#classwork").count() == 0
