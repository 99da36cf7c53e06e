"""The looks registry (web/looks.py) with fakes beside it: it follows the look bridges, wakes the
pupil's page at each change, flips only the asking teacher's bridges' control, passes the owner's
own bridges to the audit behind it, and audits look and control lines."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, task

from desktop_relay.lifecycle.watch import SessionWatch
from desktop_relay.relay.bridge import BridgeClosed, BridgeTarget
from desktop_relay.web.looks import Looks

CLOSED = BridgeClosed(1000, 1000, 10, 0)


class Audit:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, str]] = []

    def audit(self, at: float, actor: str, action: str, target: str, detail: str = "", address: str = "") -> Any:
        self.lines.append((actor, action, target, detail))
        return defer.succeed(None)


class Then:
    def __init__(self) -> None:
        self.told: list[str] = []

    def bridge_opened(self, target: BridgeTarget) -> None:
        self.told.append("opened " + target.user_id)

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None:
        self.told.append("closed " + target.user_id)


def target(user: str, looking_at: str | None = "alice", name: str = "Tina") -> BridgeTarget:
    return BridgeTarget(backend=None, session_id="s1", user_id=user, looking_at=looking_at,  # type: ignore[arg-type]
                        viewer_name=name)


def setup() -> tuple[Looks, Audit, Then, SessionWatch, list[Any]]:
    clock = task.Clock()
    watch = SessionWatch(clock)
    bridges: list[Any] = []
    factory = SimpleNamespace(bridges_for_session=lambda session_id: tuple(bridges))
    audit, then = Audit(), Then()
    looks = Looks(factory, watch, audit, clock, then)  # type: ignore[arg-type]
    return looks, audit, then, watch, bridges


def test_owner_bridges_go_to_the_audit_behind_and_are_no_look():
    looks, audit, then, _, _ = setup()
    own = target("alice", looking_at=None)
    looks.bridge_opened(own)
    looks.bridge_closed(own, CLOSED)
    assert then.told == ["opened alice", "closed alice"]
    assert looks.of_session("s1") == {"watching": [], "control_request": None}
    assert audit.lines == []


def test_a_look_wakes_the_pupils_page_when_it_starts_and_when_it_ends():
    looks, audit, _, watch, _ = setup()
    waiting = watch.wait("s1", 25)
    looks.bridge_opened(target("tina"))
    assert waiting.called
    assert looks.of_session("s1")["watching"] == [{"name": "Tina", "control": False}]
    waiting = watch.wait("s1", 25)
    looks.bridge_closed(target("tina"), CLOSED)
    assert waiting.called
    assert looks.of_session("s1")["watching"] == []
    assert [line[1] for line in audit.lines] == ["look.start", "look.end"]
    assert "pupil=alice" in audit.lines[1][3] and "since=" in audit.lines[1][3]


def test_control_goes_to_the_asking_teachers_bridges_only_and_back():
    looks, audit, _, _, bridges = setup()
    tina, tom = SimpleNamespace(target=target("tina"), control=False), SimpleNamespace(
        target=target("tom", name="Tom"), control=False)
    own = SimpleNamespace(target=target("alice", looking_at=None), control=True)
    bridges.extend([tina, tom, own])
    for b in (tina, tom):
        looks.bridge_opened(b.target)
    look = looks.watching("s1", "tina")
    assert look is not None
    looks.ask("s1", look, "alice")
    assert looks.of_session("s1")["control_request"]["name"] == "Tina"
    looks.grant("s1", "tina", "alice", "alice")
    assert (tina.control, tom.control, own.control) == (True, False, True)
    assert looks.of_session("s1")["control_request"] is None
    assert looks.end_control("s1", "alice", "alice") == 1
    assert (tina.control, tom.control, own.control) == (False, False, True)
    assert [line[1] for line in audit.lines][-3:] == ["control.ask", "control.grant", "control.end"]


def test_refusal_is_audited_and_a_look_ending_with_control_ends_it_too():
    looks, audit, _, _, bridges = setup()
    tina = SimpleNamespace(target=target("tina"), control=False)
    bridges.append(tina)
    looks.bridge_opened(tina.target)
    look = looks.watching("s1", "tina")
    assert look is not None
    looks.ask("s1", look, "alice")
    looks.refuse("s1", "alice")
    assert looks.asked_by("s1") is None
    looks.grant("s1", "tina", "alice", "tina")
    looks.bridge_closed(tina.target, CLOSED)
    assert [line[1] for line in audit.lines] == [
        "look.start", "control.ask", "control.refuse", "control.grant", "control.end", "look.end"]


def test_a_look_with_control_from_the_start_ends_it_with_its_times():
    looks, audit, _, _, _ = setup()
    tina = BridgeTarget(backend=None, session_id="s1", user_id="tina", looking_at="alice",  # type: ignore[arg-type]
                        viewer_name="Tina", control=True)
    looks.bridge_opened(tina)
    assert looks.of_session("s1")["watching"] == [{"name": "Tina", "control": True}]
    looks.bridge_closed(tina, CLOSED)
    assert [line[1] for line in audit.lines] == ["look.start", "control.end", "look.end"]
    assert "since=0 until=0" in audit.lines[1][3]
