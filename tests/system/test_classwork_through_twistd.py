"""Hand-outs and hand-ins through the relay as twistd with the real Docker engine: a teacher fills
a class's hand-out, its pupil reads it (and cannot change it) in the files panel without a
desktop, hands work in, the teacher collects it as a zip, the due time closes it; the teacher of
another class, and pupils, get 404 for the class as for one that does not exist."""

from __future__ import annotations

import io
import sqlite3
import time
import zipfile
from collections.abc import Callable

import docker
import pytest
from relay_harness import RelayProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERS = {"herr": "lehrer,klasse-5a", "frau": "lehrer,klasse-6b", "alice": "pupils,klasse-5a",
         "bob": "pupils,klasse-6b"}


@pytest.fixture
def school(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    return relay_factory(users=USERS, sections={"roles": {"teacher_groups": "lehrer", "class_groups": "klasse-*"}})


def upload(browser: object, path: str, data: bytes) -> object:
    return browser.http.put(browser.relay.url + "/api" + path, data=data,  # type: ignore[attr-defined]
                            headers={"Origin": browser.origin}, timeout=60)  # type: ignore[attr-defined]


def test_a_teacher_hands_out_the_pupil_hands_in_and_the_due_time_closes_it(school: RelayProcess) -> None:
    herr, frau, alice, bob = (school.client() for _ in range(4))
    for browser, user in ((herr, "herr"), (frau, "frau"), (alice, "alice"), (bob, "bob")):
        browser.login(user)

    listed = herr.api("GET", "/classwork/").json()
    assert [c["class"] for c in listed["classes"]] == ["klasse-5a"]
    made = upload(herr, "/classwork/handout/klasse-5a/sheet.txt", b"exercise 1\n")
    assert made.status_code == 201, made.text  # type: ignore[attr-defined]

    # Outside the scope: the same 404 as for a class nobody has.
    for browser in (frau, alice):
        for method, path in (("GET", "/classwork/klasse-5a"), ("GET", "/classwork/handout/klasse-5a/"),
                             ("GET", "/classwork/klasse-5a/handins.zip"),
                             ("PUT", "/classwork/klasse-5a/due")):
            answer = browser.api(method, path, {"due": time.time() + 60} if method == "PUT" else None)
            assert (answer.status_code, answer.json()["type"].rsplit(":", 1)[-1]) == (404, "no-such-class"), \
                (method, path, answer.text)
    assert frau.api("GET", "/classwork/klasse-nope").status_code == 404
    refused = upload(frau, "/classwork/handout/klasse-5a/evil.txt", b"x")
    assert refused.status_code == 404  # type: ignore[attr-defined]

    # The pupil, with no desktop running: the hand-out to read, the hand-in to write.
    homes = {h["key"]: h for h in alice.api("GET", "/files/").json()["homes"]}
    assert homes["handout:klasse-5a"]["writable"] is False and homes["handin:klasse-5a"]["writable"] is True
    assert "handout:klasse-6b" not in homes
    assert alice.get("/api/files/handout:klasse-5a/sheet.txt").content == b"exercise 1\n"
    read_only = upload(alice, "/files/handout:klasse-5a/mine.txt", b"x")
    assert read_only.status_code == 403, read_only.text  # type: ignore[attr-defined]
    handed = upload(alice, "/files/handin:klasse-5a/answer.txt", b"my answer\n")
    assert handed.status_code == 201, handed.text  # type: ignore[attr-defined]

    pupils = herr.api("GET", "/classwork/klasse-5a").json()["pupils"]
    assert pupils == [{"id": "alice", "name": "Alice", "handin": True}]
    archive = herr.get("/api/classwork/klasse-5a/handins.zip")
    assert archive.status_code == 200 and archive.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.namelist() == ["alice/answer.txt"] and z.read("alice/answer.txt") == b"my answer\n"

    assert herr.api("PUT", "/classwork/klasse-5a/due", {"due": "tomorrow"}).status_code == 422
    assert herr.api("PUT", "/classwork/klasse-5a/due", {"due": time.time() + 400 * 86400}).status_code == 422
    closed = herr.api("PUT", "/classwork/klasse-5a/due", {"due": time.time() - 1})
    assert closed.status_code == 200 and closed.json()["closed"] is True, closed.text
    late = upload(alice, "/files/handin:klasse-5a/answer.txt", b"too late\n")
    assert (late.status_code, late.json()["type"].rsplit(":", 1)[-1]) == (409, "handin-closed")  # type: ignore[attr-defined]
    assert alice.get("/api/files/handin:klasse-5a/answer.txt").content == b"my answer\n"
    reopened = herr.api("DELETE", "/classwork/klasse-5a/due")
    assert reopened.status_code == 200 and reopened.json()["closed"] is False
    again = upload(alice, "/files/handin:klasse-5a/answer.txt", b"better answer\n")
    assert again.status_code == 200, again.text  # type: ignore[attr-defined]

    with sqlite3.connect(school.directory / "var" / "relay.sqlite3") as db:
        actions = [row[0] for row in db.execute("SELECT action FROM audit WHERE actor = 'herr' AND action LIKE 'hand%' ORDER BY id")]
    assert actions == ["handout.put", "handin.download", "handin.due", "handin.due"]


def test_a_pupils_desktop_has_the_handout_and_a_handin_the_due_time_closes_while_it_runs(
    school: RelayProcess, docker_client: docker.DockerClient,
) -> None:
    herr, alice = school.client(), school.client()
    herr.login("herr")
    alice.login("alice")
    assert upload(herr, "/classwork/handout/klasse-5a/sheet.txt", b"exercise 1\n").status_code == 201  # type: ignore[attr-defined]
    session = alice.start_desktop()["id"]
    (container,) = docker_client.containers.list(filters={"label": f"org.desktop-relay.session={session}"})

    def run(script: str) -> tuple[int, str]:
        result = container.exec_run(["sh", "-c", script])
        return result.exit_code, result.output.decode()

    assert run("cat ~/Handout/klasse-5a/sheet.txt") == (0, "exercise 1\n")
    assert run("echo x > ~/Handout/klasse-5a/mine.txt")[0] != 0
    assert run("echo 'my answer' > ~/Hand-in/klasse-5a/answer.txt") == (0, "")
    assert not run("ls ~/Handout ~/Hand-in")[1].count("klasse-6b")

    assert herr.api("PUT", "/classwork/klasse-5a/due", {"due": time.time() - 1}).status_code == 200
    status, output = run("echo late >> ~/Hand-in/klasse-5a/answer.txt")
    assert status != 0 and "Permission denied" in output
    archive = herr.get("/api/classwork/klasse-5a/handins.zip")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.read("alice/answer.txt") == b"my answer\n"
