"""The relay's pages pass axe-core with no serious or critical violation, in every state a user
meets them: the sign-in page (with and without its error), the sign-in error page, the
dashboard (no sessions, a queued one with its steps, an ended one), and the session page's bar
and notices (queued, running with the idle warning, ended). Headless Chromium -> the relay as
twistd on loopback -> desktop containers. The relay answers other errors (404, 403) as JSON
problems, not pages: there is no other HTML error page to check.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from axe_pages import assert_accessible
from desktop_browser import SCREEN
from relay_harness import PASSWORD, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_sign_in_page_passes_axe_with_and_without_its_error(relay: RelayProcess, chromium) -> None:
    page = chromium.new_context(viewport=SCREEN).new_page()
    page.goto(relay.url + "/login")
    assert_accessible(page, "the sign-in page")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not " + PASSWORD)
    page.click("button[type=submit]")
    page.get_by_text("Wrong user name or password.").wait_for()
    assert_accessible(page, "the sign-in page with its error")


def test_the_sign_in_error_page_passes_axe(relay_factory: Callable[..., RelayProcess], chromium) -> None:
    # Trusted headers that never came: the sign-in error page.
    relay = relay_factory(sections={"auth": {"method": "header"}, "relay": {"trusted_proxies": "127.0.0.1"}})
    page = chromium.new_context(viewport=SCREEN).new_page()
    response = page.goto(relay.url + "/login")
    assert response is not None and response.status == 401
    page.get_by_text("Your sign-in did not reach this service.").wait_for()
    assert_accessible(page, "the sign-in error page")


def test_the_dashboard_and_the_session_page_pass_axe_in_every_state(
    relay_factory: Callable[..., RelayProcess], tab
) -> None:
    # One desktop at a time, so a second start queues; the idle warning comes 2 s after the last input.
    relay = relay_factory(sections={
        "sessions": {"max_total": "1", "check_interval": "250ms"},
        "desktop:demo": {"idle_timeout": "60s", "idle_warning": "58s"},
    })
    alice = tab(relay, "alice")
    alice.page.locator("button[data-desktop=demo]").wait_for()
    assert_accessible(alice.page, "the dashboard without sessions")

    alice.start_desktop("demo")
    # Ready (connected or still connecting, both are states a pupil sees), and then warned.
    alice.bar("warning").wait_for(state="visible", timeout=60_000)
    assert_accessible(alice.page, "the session page's bar with the idle warning")

    bob = tab(relay, "bob")
    bob.start_desktop("demo")
    bob.page.get_by_text("You are number 1 in line.").wait_for()
    assert_accessible(bob.page, "the session page, queued")
    dashboard = bob.page.context.new_page()
    dashboard.goto(relay.url + "/")
    dashboard.locator(f"#sessions li[data-session='{bob.session_id}'] ol.steps li.current").wait_for()
    assert_accessible(dashboard, "the dashboard with a queued session and its steps")

    alice.bar("stop").click()
    alice.page.get_by_text("This desktop was stopped by you.").wait_for()
    assert_accessible(alice.page, "the session page, ended")
    alice.page.goto(relay.url + "/")
    alice.page.locator("#sessions li[data-state=stopped]").wait_for()
    assert_accessible(alice.page, "the dashboard with desktops and an ended session")
