"""The API against its own document: schemathesis generates requests from /api/openapi.json and
sends them to the relay as twistd, with real Docker, signed in as a pupil from the relay's own
origin. Every answer must be documented (status, content type, headers, body schema) and none a 500.

Bounded: a few examples per operation, so the whole module stays well under a minute. Session ids
are random, so stops and long-polls meet no real session; the one real start (the document's
example body) is one container, removed with the relay after the module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from relay_harness import LABEL_INSTANCE, RelayProcess

from desktop_relay.web.openapi import user_document

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def contract_relay(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[RelayProcess]:
    relay = RelayProcess(Path(tmp_path_factory.mktemp("contract")), users={"alice": "pupils"})
    relay.start()
    yield relay
    relay.stop()
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={relay.instance}"}):
        container.remove(force=True)
    assert "Traceback" not in relay.log(), relay.log()


@pytest.fixture(scope="module")
def pupil_cookies(contract_relay: RelayProcess) -> dict[str, str]:
    """A signed-in pupil's cookie."""
    pupil = contract_relay.client()
    pupil.login("alice")
    return dict(pupil.http.cookies.items())


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
