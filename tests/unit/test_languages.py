"""Which language a request gets and that everything answers in it: negotiation (cookie over
Accept-Language over English), problem details, pages, the switch, and stored reasons; through
RelayWeb on a loopback Site as in test_session_page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from test_session_page import Pages as Served

from desktop_relay.i18n import language, negotiate
from desktop_relay.i18n.negotiation import accepted_languages
from desktop_relay.store import SQLiteStore


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "en"),
    (None, "de", "de"),
    (None, "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", "de"),
    (None, "en-US,en;q=0.9,de;q=0.8", "en"),
    # Weights, not order, decide; and q=0 means "not this one".
    (None, "en;q=0.5, de;q=0.9", "de"),
    (None, "de;q=0, en;q=0.1", "en"),
    (None, "fr-FR, fr;q=0.9, de;q=0.5", "de"),
    # Languages we do not have, or a header that is nonsense: English.
    (None, "fr, it;q=0.8", "en"),
    (None, "*", "en"),
    (None, ";;;q=x, de;q=2", "en"),
    # The remembered switch wins over the browser.
    ("de", "en-US", "de"),
    ("en", "de-DE", "en"),
    # A cookie value we do not know is ignored, not trusted.
    ("xx", "de", "de"),
    ("de-DE", None, "en"),
    ("", "de", "de"),
])
def test_language_negotiation(cookie: str | None, header: str | None, expected: str) -> None:
    assert negotiate(cookie, header) == expected


def test_accept_language_ranges_come_most_wanted_first() -> None:
    assert accepted_languages("en;q=0.3, de-AT, fr;q=0.7, it;q=0") == ["de-AT", "fr", "en"]


def test_stored_english_reasons_are_shown_in_german() -> None:
    german = language("de")
    assert german.stored("Stopped after 45 minutes without input.") == "Nach 45 Minuten ohne Eingabe beendet."
    assert german.stored("Stopped after its maximum time of 1 hour.") == (
        "Nach der längsten erlaubten Laufzeit von 1 Stunde beendet.")
    assert german.stored("Stopped by you.") == "Von dir beendet."
    # A reason that carries a container's own words keeps them.
    assert german.stored("The desktop stopped while starting: no such file") == (
        "Der Desktop wurde beim Starten beendet: no such file")
    assert german.stored("words of no msgid") == "words of no msgid"
    assert language("en").stored("Stopped by you.") == "Stopped by you."


@pytest_twisted.async_yield_fixture
async def served(store: SQLiteStore) -> AsyncIterator[Served]:
    pages = Served(store)
    yield pages
    await pages.port.stopListening()


async def _get(served: Served, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
    response = await served.http.get(served.url + path, headers={"Cookie": served.cookie, **headers},
                                     allow_redirects=False)
    found = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, found, (await response.content()).decode()


@pytest_twisted.ensureDeferred
async def test_a_problem_answers_in_german_for_accept_language_de(served: Served) -> None:
    await served.sign_in()
    status, headers, body = await _get(served, "/api/sessions/nothing", **{"Accept-Language": "de-DE,de;q=0.9"})
    problem = json.loads(body)
    assert status == 404 and headers["content-language"] == "de"
    # The type stays the stable slug; the words are German.
    assert problem["type"] == "urn:desktop-relay:problem:no-such-session"
    assert problem["title"] == "Keine solche Desktop-Sitzung"
    status, headers, body = await _get(served, "/api/sessions/nothing", **{"Accept-Language": "en"})
    assert json.loads(body)["title"] == "No such desktop session" and headers["content-language"] == "en"


@pytest_twisted.ensureDeferred
async def test_a_problem_with_values_is_filled_in_the_readers_language(served: Served) -> None:
    await served.sign_in()
    response = await served.http.post(
        served.url + "/api/sessions", json.dumps({"desktop": "nope"}).encode(),
        headers={"Cookie": served.cookie + "; lang=de", "Content-Type": "application/json",
                 "Origin": "http://127.0.0.1:8080"},
    )
    problem = json.loads(await response.content())
    assert response.code == 404 and problem["detail"] == "Es gibt keinen Desktop 'nope'."


@pytest_twisted.ensureDeferred
async def test_the_session_reason_is_shown_in_the_readers_language(served: Served) -> None:
    await served.sign_in()
    await served.add("s1", "stopped")
    await served.store.update_session("s1", 2.0, reason="Stopped after 15 minutes without input.", end_reason="idle")
    _, _, body = await _get(served, "/api/sessions/s1", Cookie=served.cookie + "; lang=de")
    view = json.loads(body)
    assert view["reason"] == "Nach 15 Minuten ohne Eingabe beendet." and view["end_reason"] == "idle"


@pytest_twisted.ensureDeferred
async def test_pages_are_in_the_negotiated_language_with_html_lang(served: Served) -> None:
    await served.sign_in()
    _, headers, body = await _get(served, "/", **{"Accept-Language": "de"})
    assert '<html lang="de">' in body and "Abmelden" in body and "Deine Desktops" in body
    assert headers["content-language"] == "de" and "Accept-Language" in headers["vary"]
    _, _, body = await _get(served, "/login", **{"Accept-Language": "fr, en;q=0.5"})
    assert '<html lang="en">' in body and ">Sign in</button>" in body


@pytest_twisted.ensureDeferred
async def test_the_page_carries_the_scripts_catalog_as_json(served: Served) -> None:
    await served.sign_in()
    _, _, body = await _get(served, "/", **{"Accept-Language": "de"})
    start = body.index('<script type="application/json" id="messages">') + len(
        '<script type="application/json" id="messages">')
    catalog = json.loads(body[start:body.index("</script>", start)])
    assert catalog["lang"] == "de" and catalog["messages"]["Start"] == "Starten"
    assert catalog["messages"]["Waiting: number {count} in line"] == [
        "Wartet: Platz {count} in der Warteschlange"] * 2
    # The catalog comes before the scripts that use it.
    assert body.index('id="messages"') < body.index("/static/i18n.js") < body.index("/static/dashboard.js")


@pytest_twisted.ensureDeferred
async def test_the_switch_remembers_the_choice_and_goes_back(served: Served) -> None:
    status, headers, _ = await _get(served, "/lang/de?next=/desktop/s1/")
    assert status == 303 and headers["location"] == "/desktop/s1/"
    cookie = headers["set-cookie"]
    assert cookie.startswith("lang=de;") and "Path=/" in cookie and "SameSite=lax" in cookie
    # No open redirect through the switch.
    _, headers, _ = await _get(served, "/lang/en?next=//evil.example/")
    assert headers["location"] == "/"
    status, headers, body = await _get(served, "/lang/fr", **{"Accept-Language": "de"})
    assert status == 404 and json.loads(body)["title"] == "Keine solche Sprache"


@pytest_twisted.ensureDeferred
async def test_every_page_links_to_both_languages_without_script(served: Served) -> None:
    await served.sign_in()
    await served.add("s1", "ready")
    for path in ("/", "/login", "/desktop/s1/"):
        _, _, body = await _get(served, path, Cookie=served.cookie + "; lang=de")
        assert f'href="/lang/en?next={path.replace("/", "%2F")}"' in body, path
        assert 'lang="de" hreflang="de" aria-current="true">Deutsch</a>' in body, path


@pytest_twisted.ensureDeferred
async def test_every_page_shows_the_site_name_and_its_colours(served: Served) -> None:
    await served.sign_in()
    await served.add("s1", "ready")
    for path in ("/", "/login", "/desktop/s1/"):
        _, _, body = await _get(served, path)
        assert '<span class="site-name">Desktops</span>' in body, path
        assert '<link rel="stylesheet" href="/site/site.css">' in body, path
    status, headers, body = await _get(served, "/site/site.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and "--accent:" in body
