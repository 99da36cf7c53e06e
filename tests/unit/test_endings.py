"""The words a user reads when a desktop ended or could not start: one for every code, each with
what to do, and the start's failure chosen over the plain 'could not start'."""

from __future__ import annotations

import pytest

from desktop_relay.lifecycle import reasons
from desktop_relay.web.endings import ending_of


def test_every_end_reason_has_words_of_its_own_and_an_action() -> None:
    endings = {code: ending_of(code) for code in reasons.END_REASONS}
    assert len({e.what for e in endings.values()}) == len(reasons.END_REASONS)
    assert all(e.what.endswith(".") and e.action.endswith(".") for e in endings.values())
    assert endings[reasons.IDLE].what == "This desktop was stopped because nobody used it for a while."
    assert endings[reasons.TEACHER].what == "This desktop was stopped by your teacher."
    assert endings[reasons.ADMIN].what == "This desktop was stopped by an administrator."
    assert endings[reasons.OUT_OF_MEMORY].what == "This desktop ran out of memory and was stopped."
    assert endings[reasons.SIGNED_OUT].what == "This desktop was stopped because you signed out."


def test_every_start_failure_says_what_happened_and_what_to_do() -> None:
    failures = {code: ending_of(reasons.START_FAILED, code) for code in reasons.FAILURES}
    plain = ending_of(reasons.START_FAILED)
    assert len({e.what for e in failures.values()} | {plain.what}) == len(reasons.FAILURES) + 1
    assert all(e.action for e in failures.values())


@pytest.mark.parametrize(("failure", "what", "action"), [
    (reasons.IMAGE_MISSING, "not installed on the server", "Trying again will not help"),
    (reasons.ENGINE_TIMEOUT, "took too long to answer", "Try again in a minute"),
    (reasons.NOT_READY, "took too long to start", "tell your teacher"),
    (reasons.OUT_OF_MEMORY, "ran out of memory while it was starting", "needs more memory"),
    (reasons.WITHDRAWN, "no longer offered", "choose another one"),
])
def test_a_failed_start_is_told_in_a_pupils_words(failure: str, what: str, action: str) -> None:
    ending = ending_of(reasons.START_FAILED, failure)
    assert what in ending.what and action in ending.action


def test_unknown_codes_still_get_words() -> None:
    assert ending_of("from-a-newer-relay").what == "This desktop has ended."
    assert ending_of(reasons.START_FAILED, "from-a-newer-relay").what == "This desktop could not start."
    assert ending_of(None).action
