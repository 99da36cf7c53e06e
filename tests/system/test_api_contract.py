"""The API against its own document: schemathesis generates requests from /api/openapi.json and
sends them to the relay as twistd, with real Docker, signed in as a pupil from the relay's own
origin. Every answer must be documented (status, content type, headers, body schema) and none a 500.

Bounded: a few examples per operation, so the whole module stays well under a minute. Session ids
are random, so stops and long-polls meet no real session; the one real start (the document's
example body) is one container, removed with the relay after the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from relay_harness import Browser, RelayProcess, remove_leftovers, subprocess_env
from schemathesis.specs.openapi.checks import allow_header_conformance, ignored_auth, positive_data_acceptance

from desktop_relay.web.openapi import ADMIN_PREFIX, admin_document, user_document

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Enough for CI; DESKTOP_RELAY_CONTRACT_EXAMPLES=200 for a longer hunt by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("DESKTOP_RELAY_CONTRACT_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def contract_relay(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[RelayProcess]:
    relay = RelayProcess(Path(tmp_path_factory.mktemp("contract")), users={"alice": "pupils"})
    relay.start()
    yield relay
    relay.stop()
    remove_leftovers(docker_client, relay)
    assert "Traceback" not in relay.log(), relay.log()


@pytest.fixture(scope="module")
def pupil(contract_relay: RelayProcess) -> Browser:
    """A signed-in pupil, alice."""
    browser = contract_relay.client()
    browser.login("alice")
    return browser


@pytest.fixture(scope="module")
def pupil_cookies(pupil: Browser) -> dict[str, str]:
    return dict(pupil.http.cookies.items())


def conforms(document: dict[str, Any], path: str, response: requests.Response) -> requests.Response:
    """The response, once schemathesis found it as the document says (status, headers, body)."""
    schemathesis.openapi.from_dict(document)[path][response.request.method or "GET"].validate_response(response)
    return response


def test_a_real_sessions_life_answers_as_documented(pupil: Browser) -> None:
    """Generated ids never meet a real session: one is started, waited for, watched and stopped."""
    document = user_document()
    one = "/api/sessions/{session_id}"
    started = conforms(document, "/api/sessions", pupil.api("POST", "/sessions", {"desktop": "demo"}))
    assert started.status_code == 202
    session = started.json()
    again = conforms(document, "/api/sessions", pupil.api("POST", "/sessions", {"desktop": "demo"}))
    assert again.status_code == 200 and again.json()["id"] == session["id"]
    ready = conforms(document, one, pupil.api("GET", f"/sessions/{session['id']}?wait=ready"))
    assert ready.json()["state"] == "ready"
    stale = conforms(document, one, pupil.api("GET", f"/sessions/{session['id']}?wait=change&since={session['updated']}"))
    assert stale.json()["updated"] != session["updated"]
    conforms(document, "/api/sessions", pupil.api("GET", "/sessions"))
    (home,) = conforms(document, "/api/homes", pupil.api("GET", "/homes")).json()["items"]
    assert home["key"] == "default"
    stopped = conforms(document, one, pupil.api("DELETE", f"/sessions/{session['id']}"))
    assert stopped.json()["state"] == "stopped" and stopped.json()["end_reason"] == "user"
    conforms(document, one, pupil.api("DELETE", f"/sessions/{session['id']}"))


def test_the_relay_serves_the_document_these_tests_use(contract_relay: RelayProcess,
                                                        pupil_cookies: dict[str, str]) -> None:
    served = requests.get(contract_relay.url + "/api/openapi.json", cookies=pupil_cookies, timeout=10)
    assert served.status_code == 200 and served.json() == user_document()


schema = schemathesis.openapi.from_dict(user_document())


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, contract_relay: RelayProcess, pupil_cookies: dict[str, str]
) -> None:
    # Signed in, as the relay's own pages call the API (their Origin), except in the cases that
    # test what happens without the cookie. The cases are made before the relay runs, so the
    # cookie is added here rather than by a schemathesis auth provider.
    if not case.operation.schema.is_security_param_negated(case):
        case.cookies = {**(case.cookies or {}), **pupil_cookies}
    started = time.monotonic()
    case.call_and_validate(base_url=contract_relay.url, headers={"Origin": contract_relay.url}, timeout=30)
    # A long-poll may wait its 25 s only for a real session; none of these are.
    assert time.monotonic() - started < 10, f"{case.method} {case.formatted_path} took too long"


def admin_token(relay: RelayProcess, name: str, scope: str) -> str:
    """A bearer token made with the admin command, as an administrator would."""
    made = subprocess.run(
        [sys.executable, "-m", "desktop_relay.admin", "token", "create", name, "--scope", scope,
         "--config", str(relay.config_path)],
        cwd=relay.directory, env=subprocess_env(), capture_output=True, text=True, check=True,
    )
    return made.stdout.strip()


@pytest.fixture(scope="module")
def writer_token(contract_relay: RelayProcess) -> str:
    return admin_token(contract_relay, "contract", "write")


ADMIN_PATHS = {path: item for path, item in admin_document()["paths"].items() if path.startswith(ADMIN_PREFIX)}
needs_admin_api = pytest.mark.skipif(not ADMIN_PATHS, reason="no admin API on this branch yet")


@needs_admin_api
def test_an_admin_token_is_served_the_whole_document(contract_relay: RelayProcess, writer_token: str) -> None:
    served = requests.get(contract_relay.url + "/api/openapi.json", timeout=10,
                          headers={"Authorization": f"Bearer {writer_token}"})
    assert served.status_code == 200 and served.json() == admin_document()


@needs_admin_api
def test_a_real_session_answers_the_admin_as_documented(pupil: Browser, contract_relay: RelayProcess,
                                                         writer_token: str) -> None:
    document = admin_document()
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {writer_token}"
    session = pupil.api("POST", "/sessions", {"desktop": "demo"}).json()
    one = "/api/admin/sessions/{session_id}"
    url = f"{contract_relay.url}/api/admin/sessions"
    listed = conforms(document, "/api/admin/sessions", admin.get(url, params={"user": "alice"}, timeout=10))
    assert session["id"] in [s["id"] for s in listed.json()["items"]]
    conforms(document, one, admin.get(f"{url}/{session['id']}", timeout=10))
    conforms(document, "/api/admin/users/{user_id}", admin.get(f"{contract_relay.url}/api/admin/users/alice", timeout=10))
    conforms(document, "/api/admin/users", admin.get(f"{contract_relay.url}/api/admin/users", timeout=10))
    stopped = conforms(document, one, admin.delete(f"{url}/{session['id']}", timeout=30))
    assert stopped.json()["end_reason"] == "admin"
    again = conforms(document, one, admin.delete(f"{url}/{session['id']}", timeout=30))
    assert again.status_code == 409 and again.json()["type"] == "urn:desktop-relay:problem:already-ended"


# schemathesis refuses a test without operations: there is none before the admin API exists.
if ADMIN_PATHS:
    admin_schema = schemathesis.openapi.from_dict({**admin_document(), "paths": ADMIN_PATHS})

    @admin_schema.parametrize()
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def test_every_admin_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case, contract_relay: RelayProcess, writer_token: str
    ) -> None:
        # schemathesis' ignored_auth expects 401 or 403 without credentials; the admin API answers
        # 404 no-such-page on purpose (pupils must not learn it exists), as the document says.
        excluded = [ignored_auth]
        if case.path == "/api/admin/sessions/stop":
            # Its Allow also names GET and DELETE: those are /api/admin/sessions/{session_id} with
            # the id "stop" (404 no-such-session), documented there.
            excluded.append(allow_header_conformance)
        if "cursor" in (case.query or {}):
            # A cursor is opaque: only one a list gave out is taken, any other string is 400
            # invalid-cursor (documented), though the schema can only say "a string".
            excluded.append(positive_data_acceptance)
        headers = {}
        if not case.operation.schema.is_security_param_negated(case):
            headers["Authorization"] = f"Bearer {writer_token}"
        started = time.monotonic()
        case.call_and_validate(base_url=contract_relay.url, headers=headers, excluded_checks=excluded, timeout=30)
        assert time.monotonic() - started < 10, f"{case.method} {case.formatted_path} took too long"
