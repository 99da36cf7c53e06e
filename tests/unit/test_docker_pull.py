"""DockerImagePull, the thread side of a pull: a paused pull holds its worker, a stopped one lets
it go, and nothing is delivered once the pull was given up."""

from __future__ import annotations

import threading

import pytest
from twisted.internet.defer import CancelledError

from desktop_relay.engine.docker_pull import DockerImagePull


def worker(pull: DockerImagePull) -> tuple[threading.Thread, list[bool]]:
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(pull.wait_until_wanted()))
    thread.start()
    return thread, answers


def test_a_paused_pull_holds_its_worker_until_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DockerImagePull, "_PAUSED_CHECK", 0.01)
    pull = DockerImagePull(lambda message: None)
    pull.pauseProducing()
    thread, answers = worker(pull)
    thread.join(0.1)
    assert thread.is_alive() and answers == []
    pull.resumeProducing()
    thread.join(1)
    assert answers == [True]


def test_stopping_a_paused_pull_lets_its_worker_go_and_fails_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DockerImagePull, "_PAUSED_CHECK", 0.01)
    seen: list[object] = []
    pull = DockerImagePull(seen.append)
    pull.pauseProducing()
    thread, answers = worker(pull)
    pull.stopProducing()
    thread.join(1)
    assert answers == [False]
    failures: list[object] = []
    pull.done.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)  # type: ignore[attr-defined]
    pull.deliver({"status": "late"})
    pull.finished(None)
    assert seen == []


def test_cancelling_done_stops_the_pull() -> None:
    pull = DockerImagePull(lambda message: None)
    pull.done.addErrback(lambda f: f.trap(CancelledError))
    pull.done.cancel()
    assert pull.wait_until_wanted() is False
