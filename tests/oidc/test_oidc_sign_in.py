"""Sign-in with a real OpenID provider process and the relay as twistd: flow, groups, roles, refusals."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from oidc.conftest import (
    Provider,
    authorize_at_mock,
    begin_sign_in,
    callback_path,
    sign_in,
)
from relay_harness import Browser, RelayProcess, free_port
from websockets.exceptions import ConnectionClosed

pytestmark = [pytest.mark.slow, pytest.mark.docker]

def audit_lines(relay: RelayProcess) -> list[tuple[str, str, str]]:
    """The relay's audit trail as (actor, action, detail), oldest first."""
    with sqlite3.connect(relay.directory / "var" / "relay.sqlite3") as db:
        return list(db.execute("SELECT actor, action, detail FROM audit ORDER BY id"))


IServ_GROUPS = {"1": {"act": "lehrer", "name": "Lehrer"}, "2": {"act": "informatik", "name": "Informatik"}}


def test_sign_in_end_to_end_with_pkce_and_iserv_groups(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider, desktop_demo={"groups": "informatik"})
    browser = relay.client()
    authorize_url = begin_sign_in(browser)
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"] and query["nonce"] and query["redirect_uri"] == [relay.url + "/login/callback"]
    assert query["scope"] == ["openid profile email groups"]

    location = authorize_at_mock(mock_provider, authorize_url, "uuid-lehrer-1",
                                 {"name": "Frau Lehrer", "groups": IServ_GROUPS})
    response = browser.get(callback_path(location))
    assert response.status_code == 303 and response.headers["Location"] == "/"
    me = browser.api("GET", "/me").json()
    assert me == {"id": "uuid-lehrer-1", "name": "Frau Lehrer", "groups": ["informatik", "lehrer"], "role": "teacher"}
    assert [d["name"] for d in browser.api("GET", "/desktops").json()] == ["demo"]
    assert audit_lines(relay) == [("uuid-lehrer-1", "sign-in", "oidc")]
    # The provider's metadata, keys and token endpoint were fetched without connection chatter.
    assert "_HTTP11ClientFactory" not in relay.log()


def test_groups_as_plain_strings_and_refreshed_at_every_sign_in(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider, desktop_demo={"groups": "informatik"})
    browser = relay.client()
    assert sign_in(browser, mock_provider, "pupil-7", {"groups": ["klasse-5a", "admins"]}).status_code == 303
    assert browser.api("GET", "/me").json()["role"] == "admin"
    assert browser.api("GET", "/desktops").json() == []

    # Groups changed at the provider: the next sign-in sees them, and the role follows.
    again = relay.client()
    assert sign_in(again, mock_provider, "pupil-7", {"groups": ["informatik"]}).status_code == 303
    assert again.api("GET", "/me").json() == {"id": "pupil-7", "name": "pupil-7", "groups": ["informatik"],
                                              "role": "pupil"}
    assert [d["name"] for d in again.api("GET", "/desktops").json()] == ["demo"]


def test_user_in_no_allowed_group_sees_no_desktop_and_gets_403_on_start(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider, desktop_demo={"groups": "informatik"})
    browser = relay.client()
    sign_in(browser, mock_provider, "sport-only", {"groups": {"9": {"act": "sport", "name": "Sport"}}})
    assert browser.api("GET", "/desktops").json() == []
    response = browser.api("POST", "/sessions", {"desktop": "demo"})
    assert response.status_code == 403
    assert response.json()["type"].endswith("desktop-not-allowed")


def test_provider_refusal_ends_on_a_friendly_page(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider)
    browser = relay.client()
    location = authorize_at_mock(mock_provider, begin_sign_in(browser), "anyone", deny=True)
    response = browser.get(callback_path(location))
    assert response.status_code == 403
    assert "did not sign you in" in response.text and "Traceback" not in response.text
    assert "ProviderRefused" in relay.log() and "access_denied" in relay.log()
    assert audit_lines(relay) == [("unknown", "sign-in-failed", "provider-refused")]
    assert browser.api("GET", "/me").status_code == 401


def test_wrong_state_and_state_from_another_browser_are_refused(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider)
    browser = relay.client()
    location = authorize_at_mock(mock_provider, begin_sign_in(browser), "alice", {})
    code = parse_qs(urlsplit(location).query)["code"][0]
    wrong = browser.get(f"/login/callback?code={code}&state=made-up")
    assert wrong.status_code == 400 and "This sign-in link is not valid" in wrong.text

    # A stolen callback URL completed in another browser (without the sign-in cookie) fails too.
    location = authorize_at_mock(mock_provider, begin_sign_in(browser), "alice", {})
    thief = relay.client()
    stolen = thief.get(callback_path(location))
    assert stolen.status_code == 400 and "started in another browser" in stolen.text
    assert "state belongs to another browser" in relay.log()
    # ... and the state is spent: the rightful browser cannot use it afterwards either.
    assert browser.get(callback_path(location)).status_code == 400


def test_replayed_code_is_refused(oidc_relay: Callable[..., RelayProcess], mock_provider: Provider) -> None:
    relay = oidc_relay(mock_provider)
    browser = relay.client()
    location = authorize_at_mock(mock_provider, begin_sign_in(browser), "alice", {})
    assert browser.get(callback_path(location)).status_code == 303
    used_code = parse_qs(urlsplit(location).query)["code"][0]

    attacker = relay.client()
    fresh_state = parse_qs(urlsplit(begin_sign_in(attacker)).query)["state"][0]
    replay = attacker.get(f"/login/callback?code={used_code}&state={fresh_state}")
    assert replay.status_code == 400
    assert "already used or has expired" in replay.text
    assert "CodeRejected" in relay.log()
    assert attacker.api("GET", "/me").status_code == 401


@pytest.mark.parametrize("mode", ["tampered", "foreign", "expired", "none", "hmac"])
def test_bad_id_tokens_are_refused(
    oidc_relay: Callable[..., RelayProcess], evil_provider: Provider, mode: str
) -> None:
    relay = oidc_relay(evil_provider)
    requests.post(evil_provider.issuer + "/mode", data=mode, timeout=5).raise_for_status()
    browser = relay.client()
    location = requests.get(begin_sign_in(browser), allow_redirects=False, timeout=5).headers["Location"]
    response = browser.get(callback_path(location))
    assert response.status_code == 502
    assert "could not be verified" in response.text and "Traceback" not in response.text
    assert "TokenRejected" in relay.log()
    assert browser.api("GET", "/me").status_code == 401


def test_good_token_from_the_pkce_checking_provider_signs_in(
    oidc_relay: Callable[..., RelayProcess], evil_provider: Provider
) -> None:
    relay = oidc_relay(evil_provider)
    requests.post(evil_provider.issuer + "/mode", data="good", timeout=5).raise_for_status()
    browser = relay.client()
    location = requests.get(begin_sign_in(browser), allow_redirects=False, timeout=5).headers["Location"]
    assert browser.get(callback_path(location)).status_code == 303
    assert browser.api("GET", "/me").json()["id"] == "evil-user"


def test_unreachable_provider_does_not_stop_the_relay_and_gets_a_friendly_page(
    oidc_relay: Callable[..., RelayProcess],
) -> None:
    closed = Provider.__new__(Provider)
    closed.issuer = f"http://127.0.0.1:{free_port()}"
    relay = oidc_relay(closed)
    assert "OpenID provider not reachable yet" in relay.log()
    response = relay.client().get("/login")
    assert response.status_code == 503
    assert "cannot be reached right now" in response.text
    assert response.headers["Retry-After"] == "60"


def test_sign_out_invalidates_the_cookie_and_closes_the_desktop_connection(
    oidc_relay: Callable[..., RelayProcess], mock_provider: Provider
) -> None:
    relay = oidc_relay(mock_provider)
    browser = relay.client()
    sign_in(browser, mock_provider, "leaver", {"groups": ["pupils"]})
    old_cookie = browser.cookie_header
    session = browser.start_desktop()
    with browser.websocket(session["id"]) as ws:
        assert ws.recv(timeout=10) == b"RFB 003.008\n"
        assert browser.post_form("/logout", {}).status_code == 303
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
    after = requests.get(relay.url + "/api/me", headers={"Cookie": old_cookie}, timeout=10)
    assert after.status_code == 401


def test_cross_site_posts_are_refused(oidc_relay: Callable[..., RelayProcess], mock_provider: Provider) -> None:
    relay = oidc_relay(mock_provider)
    browser = relay.client()
    sign_in(browser, mock_provider, "victim", {"groups": ["pupils"]})
    browser.origin = "https://evil.example"
    assert browser.api("POST", "/sessions", {"desktop": "demo"}).status_code == 403
    assert browser.post_form("/logout", {}).status_code == 403
    browser.origin = relay.url
    assert browser.api("GET", "/me").status_code == 200


def test_trusted_headers_only_from_trusted_proxies(
    tmp_path: Path, relay_factory: Callable[..., RelayProcess]
) -> None:
    headers = {"X-Remote-User": "admin-uuid", "X-Remote-Groups": "admins,lehrer", "X-Remote-Name": "Root"}
    untrusted = relay_factory(users={}, sections={"auth": {"method": "header"},
                                                   "relay": {"trusted_proxies": "192.0.2.1"}})
    browser = untrusted.client()
    response = browser.get("/login", headers=headers)
    assert response.status_code == 401
    assert browser.api("GET", "/me").status_code == 401
    assert "ignored sign-in headers from 127.0.0.1" in untrusted.log()

    trusted = relay_factory(users={}, sections={"auth": {"method": "header"},
                                                 "relay": {"trusted_proxies": "127.0.0.1"},
                                                 "roles": {"admin_groups": "admins"}})
    browser = trusted.client()
    assert browser.get("/login", headers=headers).status_code == 303
    assert browser.api("GET", "/me").json() == {"id": "admin-uuid", "name": "Root",
                                                "groups": ["admins", "lehrer"], "role": "admin"}


def test_local_accounts_keep_working_for_the_demo(relay: RelayProcess) -> None:
    browser: Browser = relay.client()
    browser.login("alice")
    assert browser.api("GET", "/me").json() == {"id": "alice", "name": "Alice", "groups": ["pupils"],
                                                "role": "pupil"}
