"""A teacher's class view through the relay as twistd, with real Docker: a teacher of one class and
pupils of two; the teacher sees their class and not the other, stops a pupil's real container with
a reason the pupil's API then shows, and offers a desktop the pupils may start only in its window."""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import pytest
from relay_harness import IMAGE, LABEL_INSTANCE, Browser, RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERS = {"tina": "lehrer,klasse-7a", "ada": "klasse-7a", "bob": "klasse-7b"}
SECTIONS = {
    "roles": {"teacher_groups": "lehrer", "class_groups": "klasse-*"},
    "desktop:lab": {"image": IMAGE, "title": "Lab desktop", "groups": "", "teachers_may_assign": "yes",
                    "memory": "512m", "pids_limit": "256"},
}


def signed_in(relay: RelayProcess) -> dict[str, Browser]:
    browsers = {}
    for user in USERS:
        browsers[user] = relay.client()
        browsers[user].login(user)
    return browsers


def containers_of(docker_client: docker.DockerClient, relay: RelayProcess) -> list[str]:
    return [c.id for c in docker_client.containers.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.3)


def test_a_teacher_sees_their_class_and_stops_a_pupils_desktop_with_a_reason(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient
) -> None:
    relay = relay_factory(users=USERS, sections=SECTIONS)
    people = signed_in(relay)
    tina = people["tina"]
    listed = tina.api("GET", "/classes/")
    assert listed.status_code == 200 and listed.json()["classes"] == [{"name": "klasse-7a", "pupils": 1}]
    other = tina.api("GET", "/classes/klasse-7b")
    missing = tina.api("GET", "/classes/klasse-9z")
    assert other.status_code == missing.status_code == 404
    assert other.json()["type"] == missing.json()["type"] == "urn:desktop-relay:problem:no-such-class"
    assert people["ada"].api("GET", "/classes/klasse-7a").status_code == 404

    adas = people["ada"].start_desktop()
    bobs = people["bob"].start_desktop()
    assert len(containers_of(docker_client, relay)) == 2
    view = tina.api("GET", "/classes/klasse-7a").json()
    (ada,) = view["pupils"]
    assert ada["id"] == "ada" and [s["state"] for s in ada["sessions"]] == ["ready"]
    # Bob is in another class: his session is as unknown to Tina as a made-up id.
    refused = tina.api("POST", f"/classes/klasse-7a/sessions/{bobs['id']}/stop", {"reason": "no"})
    assert refused.status_code == 404 and refused.json()["type"].endswith("no-such-session")

    stopped = tina.api("POST", f"/classes/klasse-7a/sessions/{adas['id']}/stop",
                       {"reason": "Eyes to the front, please."})
    assert stopped.status_code == 200 and stopped.json()["end_reason"] == "teacher"
    assert len(containers_of(docker_client, relay)) == 1
    seen = people["ada"].api("GET", f"/sessions/{adas['id']}").json()
    assert seen["state"] == "stopped" and seen["end_reason"] == "teacher"
    assert seen["reason"] == "Eyes to the front, please."
    assert seen["ending"]["what"] == "This desktop was stopped by your teacher."
    assert people["bob"].api("GET", f"/sessions/{bobs['id']}").json()["state"] == "ready"
    trail = relay.log()
    assert "tina stopped ada's session" in trail and "Traceback" not in trail


def test_an_assignment_lets_the_class_start_its_desktop_only_in_its_window(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient
) -> None:
    relay = relay_factory(users=USERS, sections=SECTIONS)
    people = signed_in(relay)
    ada, bob = people["ada"], people["bob"]
    now = time.time()
    created = people["tina"].api("POST", "/classes/klasse-7a/assignments",
                                 {"desktop": "lab", "from": now + 4, "until": now + 45, "note": "Lab 1"})
    assert created.status_code == 201, created.text
    assert people["tina"].api("POST", "/classes/klasse-7a/assignments",
                              {"desktop": "demo", "until": now + 60}).status_code == 422
    assert [d["name"] for d in ada.api("GET", "/desktops").json()] == ["demo"]
    early = ada.api("POST", "/sessions", {"desktop": "lab"})
    assert early.status_code == 403 and early.json()["type"].endswith("desktop-not-allowed")

    wait_for(lambda: time.time() > now + 4.5, 10, "the assignment's start")
    assert [d["name"] for d in ada.api("GET", "/desktops").json()] == ["demo", "lab"]
    assert [d["name"] for d in bob.api("GET", "/desktops").json()] == ["demo"]
    assert bob.api("POST", "/sessions", {"desktop": "lab"}).status_code == 403
    session = ada.start_desktop("lab")
    assert len(containers_of(docker_client, relay)) == 1

    # At until the relay itself stops it, as the teacher's.
    wait_for(lambda: ada.api("GET", f"/sessions/{session['id']}").json()["state"] == "stopped",
             now + 60 - time.time(), "the assignment's end stopping the desktop")
    ended = ada.api("GET", f"/sessions/{session['id']}").json()
    assert ended["end_reason"] == "teacher"
    wait_for(lambda: containers_of(docker_client, relay) == [], 10, "the container's removal")
    late = ada.api("POST", "/sessions", {"desktop": "lab"})
    assert late.status_code == 403
    listed = people["tina"].api("GET", "/classes/klasse-7a/assignments").json()
    assert [a["status"] for a in listed["assignments"]] == ["ended"]
