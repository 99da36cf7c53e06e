"""What the pages tell a pupil while a desktop starts and when it ends, in a real browser:
headless Chromium -> the relay as twistd on loopback -> desktop containers of the demo image.

A queued start lists its steps with their times and announces each change to screen readers
once; a desktop whose image is missing says so in a pupil's words, with what to do; signing out
stops the desktop and the dashboard says why; and all of it works with the keyboard alone, from
Tab to Start to Stop in the bar.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from axe_pages import assert_accessible
from desktop_browser import DesktopPage
from relay_harness import PASSWORD, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Records, in the session page (not its frame), every announcement of its status region and
# every state of its step list, through a binding that outlives a reload.
RECORDER = """
if (window.top === window) {
  document.addEventListener("DOMContentLoaded", () => {
    const announce = document.getElementById("announce");
    const steps = document.getElementById("steps");
    if (!announce || !steps) { return; }
    new MutationObserver(() => window.recordAnnouncement(announce.textContent))
      .observe(announce, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => window.recordSteps(Array.from(steps.children).map(
        (item) => [item.dataset.step, item.className, item.querySelector(".step-time").textContent])))
      .observe(steps, { childList: true, characterData: true, subtree: true, attributes: true });
  });
}
"""


def recording(page: DesktopPage) -> tuple[list[str], list[list[list[str]]]]:
    announced: list[str] = []
    steps: list[list[list[str]]] = []
    page.page.expose_function("recordAnnouncement", lambda words: announced.append(words))
    page.page.expose_function("recordSteps", lambda rows: steps.append(rows))
    page.page.add_init_script(RECORDER)
    return announced, steps


def press_tab_until(page, selector: str, presses: int = 20) -> None:
    """Tab through the page until `selector` has the focus (as a keyboard user would)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached in {presses} presses of Tab; focus on "
                         + page.evaluate("() => document.activeElement && document.activeElement.outerHTML"))


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_queued_start_lists_its_steps_with_their_times_and_announces_each_once(
    relay_factory: Callable[..., RelayProcess], tab, lang: str
) -> None:
    relay = relay_factory(sections={"sessions": {"max_total": "1"}})
    alice = relay.client()
    alice.login("alice")
    alices = alice.start_desktop()

    bob = tab(relay, "bob", lang)
    words = bob.words
    announced, steps = recording(bob)
    bob.start_desktop("demo")

    # In line: the list shows where the start is, for how long, and what comes next.
    current = bob.page.locator("#steps li.current")
    current.wait_for()
    assert current.get_attribute("data-step") == "queued"
    assert words.ngettext("{step} (number {count} in line)", "{step} (number {count} in line)", 1,
                          step=words.gettext("Waiting for a free desktop")) in current.text_content()
    assert [item.get_attribute("data-step") for item in bob.page.locator("#steps li.todo").all()] == [
        "creating", "waiting", "connecting"]
    first = current.locator(".step-time").text_content()
    assert re.fullmatch(r"\d+ s", first), first
    bob.page.wait_for_function(f"() => document.querySelector('#steps li.current .step-time').textContent !== '{first}'")

    # A desktop frees: the start goes on by itself, through to the connected client.
    assert alice.api("DELETE", f"/sessions/{alices['id']}").status_code == 200
    bob.wait_connected(timeout=60)
    bob.page.wait_for_function("() => document.getElementById('notice').hidden")
    ready = words.gettext("{desktop} is ready.", desktop="Demo desktop")
    connecting = words.gettext("{step}…", step=words.gettext("Connecting"))
    assert ready in announced, announced
    assert connecting in announced and announced.index(connecting) < announced.index(ready)
    # Each change once: the clock's ticks are not announced.
    spoken = [words for words in announced if words]
    assert len(spoken) == len(set(spoken)), announced
    # Once the start left the queue, the queue's step was shown done, with how long it took.
    done_queued = [s for s in steps if any(step == ["queued", "done", step[2]] and step[2] for step in s)]
    assert done_queued, steps
    assert any(row[1] == "current" and row[0] != "queued" for row in done_queued[0]), done_queued[0]


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_desktop_whose_image_is_missing_says_so_in_a_pupils_words(
    relay_factory: Callable[..., RelayProcess], tab, lang: str
) -> None:
    relay = relay_factory(sections={
        "desktop:broken": {"image": "desktop-relay/no-such-image:missing", "title": "Broken desktop", "groups": "*"},
    })
    pia = tab(relay, "alice", lang)
    words = pia.words
    pia.start_desktop("broken")

    not_installed = words.gettext("This desktop is not installed on the server.")
    tell = words.gettext("Trying again will not help. Tell your teacher or the school's administrator.")
    pia.page.get_by_role("heading", name=words.gettext("{desktop} could not start", desktop="Broken desktop")).wait_for()
    assert pia.page.locator("#notice-text").text_content() == not_installed
    assert pia.page.locator("#notice-action").text_content() == tell
    assert "no-such-image" in pia.page.locator("#notice-detail").text_content()
    assert pia.page.get_by_role("button", name=words.gettext("Start again")).is_visible()
    assert_accessible(pia.page, f"the session page of a failed start ({lang})")

    pia.page.get_by_role("link", name=words.gettext("Back to my desktops")).click()
    row = pia.page.locator("#sessions li[data-state=failed]")
    row.get_by_text(not_installed).wait_for()
    assert tell in row.text_content()


def test_signing_out_stops_the_desktop_and_the_dashboard_says_why(relay: RelayProcess, tab) -> None:
    alice = tab(relay, "alice")
    alice.start_desktop("demo")
    alice.page.goto(relay.url + "/")
    alice.page.get_by_role("button", name="Sign out").click()
    # To the sign-in page: by the logout's redirect, or by the dashboard that noticed it first
    # (which aborts the other navigation); both once the container is removed, which a busy
    # engine takes its time over.
    alice.page.locator("form[action='/login'] input[name=username]").wait_for(timeout=90_000)

    alice.page.fill("input[name=username]", "alice")
    alice.page.fill("input[name=password]", PASSWORD)
    alice.page.click("button[type=submit]")
    row = alice.page.locator("#sessions li[data-state=stopped]")
    row.get_by_text("This desktop was stopped because you signed out.").wait_for()


def test_the_keyboard_alone_starts_a_desktop_reaches_the_bar_from_it_and_stops_it(
    relay: RelayProcess, tab
) -> None:
    alice = tab(relay, "alice")
    page = alice.page
    page.locator("button[data-desktop=demo]").wait_for()

    # Tab to Start; the focus is visible there.
    press_tab_until(page, "button[data-desktop=demo]")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    page.keyboard.press("Enter")
    page.wait_for_url("**/desktop/*/", timeout=30_000)
    alice.wait_connected(timeout=60)

    # The desktop has the keyboard, and the bar says how to leave it.
    page.wait_for_function("() => document.activeElement === document.getElementById('desktop')")
    hint = page.locator("#keyboard-hint")
    assert "Ctrl+Alt+Home" in hint.text_content() and hint.evaluate("e => !e.classList.contains('off')")
    page.keyboard.press("Control+Alt+Home")
    page.wait_for_function("() => document.getElementById('bar').contains(document.activeElement)")

    press_tab_until(page, "#stop")
    page.keyboard.press("Enter")
    page.get_by_text("This desktop was stopped by you.").wait_for()
    # The desktop is gone; the keyboard is on what comes next.
    page.wait_for_function("() => document.activeElement === document.getElementById('start-again')")
