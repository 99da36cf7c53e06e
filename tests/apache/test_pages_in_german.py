"""The pages in German in a real browser: headless Chromium asking for de-DE (Accept-Language)
-> the relay as twistd on loopback -> a desktop container of the demo image.

Sign-in and dashboard in German, the language switch remembered across pages against the
browser's wish, a start whose state reads German, and a stop with its reason in German; the German
pages pass axe-core too. The school's name, logo and accent ([site]) on the way; the dashboard's
screenshots in both languages are kept (docs/languages.md shows them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import loopback_forward
import pytest
from apache_harness import ARTIFACTS
from axe_pages import assert_accessible
from desktop_browser import CHROMIUM, CHROMIUM_ARGS, DesktopPage
from loopback_forward import IsolatedChromium
from relay_harness import PASSWORD, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Small enough for docs/, wide enough for the dashboard's cards.
SCREENSHOT = {"width": 960, "height": 540}
LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="32" viewBox="0 0 120 32">'
        '<rect width="32" height="32" rx="6" fill="#fff"/><path d="M8 22 16 8l8 14z" fill="#7a1f5c"/>'
        '<text x="40" y="22" font-family="sans-serif" font-size="14" fill="#fff">GaS</text></svg>')


@pytest.fixture
def browser_in(playwright, tmp_path: Path) -> Iterator[Callable[..., DesktopPage]]:
    """browser_in(relay, locale) opens a tab whose browser asks for that locale, not signed in;
    in a network namespace of its own when it can be (see loopback_forward.py)."""
    browsers: list = []
    forwarders: list[IsolatedChromium] = []

    def open_tab(relay: RelayProcess, locale: str) -> DesktopPage:
        executable = CHROMIUM
        if loopback_forward.available():
            forwarders.append(IsolatedChromium(CHROMIUM, tmp_path, relay.port))
            executable = str(forwarders[-1].executable)
        browsers.append(playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS))
        context = browsers[-1].new_context(viewport=SCREENSHOT, locale=locale)
        return DesktopPage(context.new_page(), relay.url)

    yield open_tab
    for browser in browsers:
        browser.close()
    for forwarder in forwarders:
        forwarder.stop()


def sign_in(tab: DesktopPage, user: str, greeting: str) -> None:
    """Sign in on the form, then wait for the dashboard's greeting (in the page's language)."""
    tab.page.goto(tab.url + "/")
    tab.page.fill("input[name=username]", user)
    tab.page.fill("input[name=password]", PASSWORD)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_selector(f"text={greeting} {user.title()}")


def test_sign_in_and_dashboard_are_german_and_the_switch_is_remembered(
    relay_factory: Callable[..., RelayProcess], browser_in, tmp_path: Path
):
    logo = tmp_path / "logo.svg"
    logo.write_text(LOGO)
    relay = relay_factory(sections={"site": {"name": "Gesamtschule Am See", "logo": str(logo), "accent": "#7a1f5c"}})
    tab = browser_in(relay, "de-DE")
    page = tab.page

    # The sign-in page, in German because the browser asks for it, with the school's look.
    page.goto(relay.url + "/")
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.get_by_role("button", name="Anmelden").is_visible()
    assert page.get_by_role("img", name="Gesamtschule Am See").is_visible()
    assert page.title() == "Anmelden · Gesamtschule Am See"
    assert_accessible(page, "the sign-in page in German, in the school's colours")
    # The wrong password is told in German too.
    page.get_by_label("Benutzername").fill("alice")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.get_by_text("Benutzername oder Passwort ist falsch.").wait_for()

    sign_in(tab, "alice", "Angemeldet als")
    page.get_by_role("heading", name="Deine Desktops").wait_for()
    assert page.get_by_role("button", name="Abmelden").is_visible()
    start = page.locator("button[data-desktop=demo]")
    start.wait_for()
    assert start.text_content() == "Starten"
    header = page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor")
    assert header == "rgb(122, 31, 92)"
    assert_accessible(page, "the dashboard in German, in the school's colours")

    # The switch: English, remembered on the next pages although the browser still asks for German.
    page.get_by_role("link", name="English").click()
    page.wait_for_selector("text=Signed in as Alice")
    assert page.locator("html").get_attribute("lang") == "en"
    page.locator("button[data-desktop=demo]", has_text="Start").wait_for()
    page.goto(relay.url + "/login")
    assert page.locator("html").get_attribute("lang") == "en"
    page.goto(relay.url + "/")
    page.get_by_role("heading", name="Your desktops").wait_for()

    # And back.
    page.get_by_role("link", name="Deutsch").click()
    page.get_by_role("heading", name="Deine Desktops").wait_for()
    assert page.url == relay.url + "/"


def test_a_desktop_starts_and_stops_in_german(relay_factory: Callable[..., RelayProcess], browser_in,
                                              tmp_path: Path):
    logo = tmp_path / "logo.svg"
    logo.write_text(LOGO)
    relay = relay_factory(sections={"site": {"name": "Gesamtschule Am See", "logo": str(logo), "accent": "#7a1f5c"}})
    tab = browser_in(relay, "de-DE")
    sign_in(tab, "alice", "Angemeldet als")
    tab.start_desktop("demo")
    page = tab.page
    assert page.locator("html").get_attribute("lang") == "de"
    # The state as it starts, then as it runs, in German.
    page.wait_for_function("""() => ["Startet", "Läuft"].includes(document.querySelector("#state").textContent)""")
    # Generous: on a busy machine a first, uncached client load takes a while.
    tab.wait_connected(timeout=60)
    assert tab.bar("state").text_content() == "Läuft"
    assert page.get_by_role("link", name="Zurück zu meinen Desktops").get_attribute("href") == "/"

    # Stopped: why, in German, in the page's words and in the server's.
    session_id = tab.session_id
    tab.bar("stop").click()
    page.get_by_text("Du hast diesen Desktop beendet.").wait_for()
    assert tab.bar("state").text_content() == "Beendet"
    assert page.get_by_text("Von dir beendet.").is_visible()
    assert page.get_by_role("button", name="Neu starten").is_visible()
    assert_accessible(page, "the session page of an ended desktop, in German")

    # The dashboard lists it with the same words, and when it started, in German time format.
    page.goto(relay.url + "/")
    row = page.locator(f"#sessions li[data-session='{session_id}']")
    row.get_by_text("Du hast diesen Desktop beendet.").wait_for()
    assert row.locator(".state").text_content() == "Beendet"
    assert row.locator("time").text_content().startswith("gestartet ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-de.png"))
    # The same dashboard in English: the stored reason, too, is shown in the reader's language.
    page.get_by_role("link", name="English").click()
    row.get_by_text("This desktop was stopped by you.").wait_for()
    assert row.locator(".state").text_content() == "Ended"
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"))
