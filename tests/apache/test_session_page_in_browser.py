"""The session page at /desktop/ID/ in a real browser: headless Chromium -> the relay as twistd on
loopback -> a desktop container of the demo image.

What a pupil sees and does there: the bar over the desktop, keys that reach the desktop without a
click (and again after a click on the bar), the window resized, Stop with the reason and Start
again, a queued start with its place in line that opens by itself, the warning before an idle stop
that typing cancels, and the idle stop itself. Pixels are read from screenshots of the client's
canvas; waits are Playwright's, on what the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from apache_harness import ARTIFACTS
from desktop_browser import BACKGROUND, BLUE, GREEN, RED, SCREEN, WHITE, DesktopPage
from relay_harness import LABEL_INSTANCE, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Short lifecycle times for the warning test: warned after 4 s without input, stopped after 30 s.
# The idle clock runs from the moment the desktop is ready: 30 s leave a first, uncached client
# load on a busy machine time to connect (and type) before the stop.
IDLE_TIMEOUT = 30
IDLE_WARNING = 26


def running_containers(docker_client, relay: RelayProcess) -> list:
    return docker_client.containers.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})


def test_the_session_page_shows_the_desktop_under_a_bar_and_keeps_the_keyboard_in_it(
    relay: RelayProcess, tab, docker_client
):
    alice = tab(relay)
    alice.start_desktop("demo")

    # The bar, and the desktop's pixels in the frame under it.
    alice.wait_connected_despite_docker()
    screen = alice.wait_for_xterm(WHITE)
    ARTIFACTS.mkdir(exist_ok=True)
    alice.page.screenshot(path=str(ARTIFACTS / "session-page.png"))
    assert alice.bar("title").text_content() == "Demo desktop"
    assert alice.bar("state").text_content() == "Running"
    assert alice.bar("stop").is_visible()
    assert alice.page.get_by_role("link", name="Back to my desktops").get_attribute("href") == "/"
    corner = (screen.width - 40, screen.height - 40, screen.width, screen.height)
    assert screen.share(BACKGROUND, corner, tolerance=2) > 0.95, screen.colours(*corner).most_common(3)

    # The frame fills the window under the bar, and resize=remote made the remote screen that size.
    bar = alice.page.locator("#bar").bounding_box()
    frame = alice.page.locator("iframe#desktop").bounding_box()
    assert bar and frame and bar["y"] == 0 and frame["y"] == bar["height"]
    assert (frame["width"], frame["height"]) == (SCREEN["width"], SCREEN["height"] - bar["height"])
    assert (screen.width, screen.height) == (frame["width"], frame["height"])

    # The client came with KasmVNC-like isolation headers, and the frame still holds it, same-origin,
    # with the clipboard delegated to it.
    client = alice.page.frame(url=re.compile(r".*\?path=desktop.*"))
    assert client is not None
    assert client.evaluate("() => window.parent.document.title") == "Demo desktop"
    assert client.evaluate("""() => ["clipboard-read", "clipboard-write"].every(
                                  feature => document.featurePolicy.allowsFeature(feature))""")

    # Keys reach the desktop without a click first: the frame took the focus when it loaded.
    alice.wait_keyboard_in_desktop()
    alice.hover_desktop()
    alice.type_command(r"printf '\033[41m\033[2J\033[H'")
    alice.wait_for_xterm(RED)
    # A click on the bar leaves the keyboard with the desktop.
    alice.bar("title").click()
    alice.wait_keyboard_in_desktop()
    alice.type_command(r"printf '\033[44m\033[2J\033[H'")
    alice.wait_for_xterm(BLUE)

    # A smaller window: the frame follows it, and so does the remote screen.
    alice.page.set_viewport_size({"width": 1100, "height": 640})
    alice.page.wait_for_function("""() => {
        const canvas = document.querySelector("iframe#desktop").contentDocument.querySelector("canvas");
        const frame = document.querySelector("iframe#desktop");
        return canvas.width === frame.clientWidth && canvas.height === frame.clientHeight && canvas.width === 1100;
    }""", timeout=15_000)
    assert len(running_containers(docker_client, relay)) == 1


def test_stop_in_the_bar_says_why_the_desktop_ended_and_start_again_opens_a_new_one(
    relay: RelayProcess, tab, docker_client
):
    alice = tab(relay)
    alice.start_desktop("demo")
    alice.wait_connected_despite_docker()
    first = alice.session_id

    alice.bar("stop").click()
    alice.page.get_by_text("This desktop was stopped by you.").wait_for()
    assert alice.page.locator("iframe#desktop").count() == 0
    assert alice.bar("state").text_content() == "Ended"
    assert not alice.bar("stop").is_visible()
    assert alice.open_sockets == []
    assert running_containers(docker_client, relay) == []

    alice.page.get_by_role("button", name="Start again").click()
    alice.page.wait_for_url(re.compile(r".*/desktop/(?!" + first + r")[^/]+/$"))
    alice.wait_connected_despite_docker()
    alice.wait_for_xterm(WHITE)
    (container,) = running_containers(docker_client, relay)
    assert container.labels["org.desktop-relay.session"] == alice.session_id != first


def test_a_queued_start_shows_its_place_can_be_cancelled_and_opens_by_itself_when_a_desktop_frees(
    relay_factory: Callable[..., RelayProcess], tab
):
    relay = relay_factory(sections={"sessions": {"max_total": "1"}})
    alice = relay.client()
    alice.login("alice")
    alices = alice.start_desktop()

    # Bob's start does not fit: his page says where he is in line, so does his dashboard.
    bob = tab(relay, "bob")
    bob.start_desktop("demo")
    bob.page.get_by_text("You are number 1 in line.").wait_for()
    assert bob.bar("state").text_content() == "Waiting: next in line"
    assert bob.bar("stop").text_content() == "Cancel"
    dashboard = DesktopPage(bob.page.context.new_page(), relay.url)
    dashboard.page.goto(relay.url + "/")
    queued = dashboard.page.locator(f"#sessions li[data-session='{bob.session_id}']")
    assert queued.locator(".state").text_content() == "Waiting: next in line"

    # Cancelled on the dashboard: the session page, following the session, says so.
    queued.get_by_role("button", name="Cancel").click()
    queued = dashboard.page.locator(f"#sessions li[data-session='{bob.session_id}']")
    queued.get_by_text("This desktop was stopped by you.").wait_for()
    bob.page.get_by_text("This desktop was stopped by you.").wait_for()

    # Again, and this time Alice's desktop ends: Bob's page loads his desktop by itself.
    bob.page.get_by_role("button", name="Start again").click()
    bob.page.get_by_text("You are number 1 in line.").wait_for()
    assert alice.api("DELETE", f"/sessions/{alices['id']}").status_code == 200
    bob.wait_connected_despite_docker()
    bob.wait_for_xterm(WHITE)


def test_before_an_idle_stop_the_bar_counts_down_typing_cancels_it_and_the_stop_says_idle(
    relay_factory: Callable[..., RelayProcess], tab
):
    relay = relay_factory(sections={
        "sessions": {"check_interval": "250ms", "activity_write_interval": "1s"},
        "desktop:demo": {"idle_timeout": f"{IDLE_TIMEOUT}s", "idle_warning": f"{IDLE_WARNING}s"},
    })
    alice = tab(relay)
    alice.start_desktop("demo")
    alice.wait_connected_despite_docker()
    alice.wait_for_xterm(WHITE)
    alice.type_command("clear")

    # Nobody types: the warning comes, counting down from under IDLE_WARNING seconds.
    warning = alice.bar("warning")
    warning.wait_for(state="visible", timeout=IDLE_TIMEOUT * 1000)
    assert "Nobody has used this desktop for a while. It stops in" in warning.text_content()
    first = alice.bar("countdown").text_content()
    # Whole seconds, rounded up, on a server clock read from Date headers (1 s resolution).
    assert re.fullmatch(r"0:\d\d", first) and int(first[2:]) <= IDLE_WARNING + 1, first
    alice.page.wait_for_function(f"() => document.querySelector('#countdown').textContent !== '{first}'")
    assert re.match(r"Stops in 0:\d\d ", alice.page.title()), alice.page.title()

    # Input in the desktop cancels it.
    alice.type_command(r"printf '\033[42m\033[2J\033[H'")
    warning.wait_for(state="hidden", timeout=5000)
    alice.wait_for_xterm(GREEN)

    # Nobody types again: warned, then stopped for being idle, in plain words.
    warning.wait_for(state="visible", timeout=IDLE_TIMEOUT * 1000)
    alice.page.get_by_text("This desktop was stopped because nobody used it for a while.").wait_for(
        timeout=(IDLE_WARNING + 5) * 1000)
    assert alice.page.get_by_role("button", name="Start again").is_visible()
    assert alice.page.get_by_text(f"Stopped after {IDLE_TIMEOUT} seconds without input.").is_visible()
