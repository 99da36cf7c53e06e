"""Who may look at which session (DesktopAccess.look_for) with fakes beside it: only a teacher of
one of the owner's classes (or an admin allowed to see all), only while the session is ready, and
every refusal is the same 404 as a session that does not exist; looks never touch upgrade grants."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer

from desktop_relay.auth.classes import ClassScope
from desktop_relay.config.classes import ClassSettings
from desktop_relay.store import SeenUser, WebSession
from desktop_relay.web.access import DesktopAccess, _session_id_from_path
from desktop_relay.web.responses import Problem

BACKEND = object()


class Store:
    def __init__(self, sessions: dict[str, Any], users: dict[str, SeenUser]) -> None:
        self.sessions = sessions
        self.users = users

    def get_session(self, session_id: str) -> defer.Deferred[Any]:
        return defer.succeed(self.sessions.get(session_id))

    def seen_user(self, user_id: str) -> defer.Deferred[SeenUser | None]:
        return defer.succeed(self.users.get(user_id))


def seen(user: str, role: str, *groups: str) -> SeenUser:
    return SeenUser(user, user.title(), frozenset(groups), role, 0.0, 0.0)


def web(user: str, role: str, *groups: str) -> WebSession:
    return WebSession("hash-" + user, user, user.title(), frozenset(groups), 1e12, 1e12, role=role)


USERS = {u.user_id: u for u in [seen("alice", "pupil", "klasse-5a"), seen("bob", "pupil", "klasse-6b"),
                                seen("tom", "teacher", "teachers", "klasse-5a")]}
SESSIONS = {
    "s-alice": SimpleNamespace(owner="alice", state="ready"),
    "s-alice-starting": SimpleNamespace(owner="alice", state="starting"),
    "s-bob": SimpleNamespace(owner="bob", state="ready"),
    "s-tom": SimpleNamespace(owner="tom", state="ready"),
    "s-ghost": SimpleNamespace(owner="ghost", state="ready"),
}


def access(see_all: bool = False) -> DesktopAccess:
    scope = ClassScope(ClassSettings(class_groups=("klasse-*",), admins_see_all_classes=see_all))
    sessions = SimpleNamespace(backend_of=lambda session: BACKEND)
    return DesktopAccess(Store(SESSIONS, USERS), sessions, guard=None, classes=scope)  # type: ignore[arg-type]


def result(d: defer.Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    (value,) = outcome
    if isinstance(getattr(value, "value", None), Exception):
        raise value.value
    return value


def test_teacher_of_the_pupils_class_may_look():
    backend, owner = result(access().look_for(web("tina", "teacher", "teachers", "klasse-5a"), "s-alice"))
    assert backend is BACKEND and owner.user_id == "alice"


@pytest.mark.parametrize(("caller", "session_id"), [
    (web("tina", "teacher", "teachers", "klasse-5a"), "s-bob"),              # another class
    (web("tina", "teacher", "teachers", "klasse-5a"), "s-tom"),              # a colleague
    (web("tina", "teacher", "teachers", "klasse-5a"), "s-alice-starting"),   # not ready
    (web("tina", "teacher", "teachers", "klasse-5a"), "s-ghost"),            # owner never seen
    (web("tina", "teacher", "teachers", "klasse-5a"), "s-nothing"),          # no such session
    (web("ada", "admin", "admins"), "s-alice"),                              # admin without see-all
    (web("carl", "pupil", "klasse-5a"), "s-alice"),                          # a classmate
    (web("alice", "pupil", "klasse-5a"), "s-alice"),                         # her own: /desktop/, not a look
])
def test_everyone_else_gets_the_404_of_a_session_that_does_not_exist(caller, session_id):
    with pytest.raises(Problem) as refused:
        result(access().look_for(caller, session_id))
    assert (refused.value.status, refused.value.slug) == (404, "no-such-session")


def test_admin_with_see_all_may_look_at_any_class_but_not_at_a_teacher():
    admin = web("ada", "admin", "admins")
    assert result(access(see_all=True).look_for(admin, "s-bob"))[1].user_id == "bob"
    with pytest.raises(Problem):
        result(access(see_all=True).look_for(admin, "s-tom"))


def test_upgrade_paths_tell_a_look_from_a_desktop():
    assert _session_id_from_path("/look/abc/websockify") == ("look", "abc")
    assert _session_id_from_path("/desktop/abc/websockify") == ("desktop", "abc")
    assert _session_id_from_path("/look/abc/other") == ("look", None)
    assert _session_id_from_path("/look//websockify") == ("look", None)
