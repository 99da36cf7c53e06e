"""A teacher looks over a pupil's shoulder through a real relay (twistd) at the pupil's real
desktop container: the teacher's WebSocket gets the screen, its keys and pointer never reach the
desktop (the pupil's screen, read back through the pupil's own connection, does not change), the
pupil's connection stays up and her own keys still work; control only after she accepts; looks
outside the teacher's scope answer 404 like a foreign session; the audit trail has it all."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from relay_harness import Browser, RelayProcess
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

USERS = {
    "alice": "klasse-5a",          # a pupil of the teacher's class
    "bob": "klasse-6b",            # a pupil of another class
    "tina": "teachers,klasse-5a",  # alice's teacher
    "tom": "teachers,klasse-5a",   # tina's colleague in the same class
    "ada": "admins",               # an admin, without admins_see_all_classes
}
ROLES = {"roles": {"teacher_groups": "teachers", "admin_groups": "admins", "class_groups": "klasse-*",
                   "teacher_control": "ask"}}


class Rfb:
    """A minimal RFB 3.8 client over a relay WebSocket that reads whole raw framebuffer updates."""

    def __init__(self, ws: ClientConnection, shared: int = 1) -> None:
        self.ws = ws
        self.buffer = b""
        assert self._read(12) == b"RFB 003.008\n"
        ws.send(b"RFB 003.008\n")
        count = self._read(1)[0]
        assert 1 in self._read(count)
        ws.send(b"\x01")
        assert self._read(4) == b"\0\0\0\0"
        ws.send(bytes([shared]))
        init = self._read(24)
        self.width, self.height = struct.unpack(">HH", init[:4])
        self.bpp = init[4] // 8
        self._read(struct.unpack(">I", init[20:24])[0])
        ws.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self.ws.recv(timeout=15)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def screen(self) -> bytes:
        """The whole screen's pixels, asked for non-incrementally and read whole."""
        self.ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        while True:
            kind = self._read(1)[0]
            if kind == 0:
                break
            assert kind in (2, 3), f"server message {kind}"  # bell, cut text
            if kind == 3:
                self._read(3)
                self._read(struct.unpack(">I", self._read(4))[0])
        self._read(1)
        rects = struct.unpack(">H", self._read(2))[0]
        pixels = bytearray(self.width * self.height * self.bpp)
        for _ in range(rects):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
            assert encoding == 0, encoding
            data = self._read(w * h * self.bpp)
            row = w * self.bpp
            for line in range(h):
                start = ((y + line) * self.width + x) * self.bpp
                pixels[start : start + row] = data[line * row : (line + 1) * row]
        return bytes(pixels)

    def type(self, text: str) -> None:
        for char in text:
            keysym = 0xFF0D if char == "\n" else ord(char)
            self.ws.send(struct.pack(">BBxxI", 4, 1, keysym))
            self.ws.send(struct.pack(">BBxxI", 4, 0, keysym))
        # A pointer move (staying over the xterm, which has the focus while the pointer is on
        # it) and a paste too: all of it is input a viewer must not send.
        self.ws.send(struct.pack(">BBHH", 5, 0, self.width // 2 + 1, self.height // 2 + 1))
        self.ws.send(b"\x06\0\0\0" + struct.pack(">i", 4) + b"rm -")


def look_socket(browser: Browser, session_id: str, origin: str | None = None, cookie: bool = True) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{browser.relay.port}/look/{session_id}/websockify",
        origin=origin or browser.origin, subprotocols=["binary"],
        additional_headers={"Cookie": browser.cookie_header} if cookie else {}, open_timeout=20, max_size=None,
    )


def look_refusal(browser: Browser, session_id: str, **kwargs: Any) -> int:
    try:
        with look_socket(browser, session_id, **kwargs):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    raise AssertionError("the look was accepted")


def settled(rfb: Rfb) -> bytes:
    """The screen once it stopped changing (the xterm draws a moment after a key)."""
    last = rfb.screen()
    for _ in range(20):
        time.sleep(0.3)
        now = rfb.screen()
        if now == last:
            return now
        last = now
    return last


def signed_in(relay: RelayProcess, user: str) -> Browser:
    browser = relay.client()
    browser.login(user)
    return browser


def audit_actions(relay: RelayProcess) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(relay.directory / "var" / "relay.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM audit ORDER BY rowid")]


@pytest.fixture
def school(relay_factory):
    relay = relay_factory(users=USERS, sections=ROLES)
    alice = signed_in(relay, "alice")
    session = alice.start_desktop()
    return relay, alice, session["id"]


def test_teacher_sees_the_screen_but_her_input_never_reaches_the_desktop(school):
    relay, alice, session_id = school
    tina = signed_in(relay, "tina")
    look = tina.api("GET", f"/looks/{session_id}")
    assert look.status_code == 200, look.text
    assert look.json()["pupil"] == {"id": "alice", "name": "Alice"}
    assert look.json()["look_url"] == f"/look/{session_id}/"
    assert tina.get(f"/look/{session_id}/").status_code == 200
    assert tina.get(f"/look/{session_id}/vnc.html").status_code == 200

    with alice.websocket(session_id) as pupil_ws, look_socket(tina, session_id) as teacher_ws:
        pupil = Rfb(pupil_ws)
        # Asking for exclusive access: the relay makes it shared, so alice stays connected.
        teacher = Rfb(teacher_ws, shared=0)
        before = settled(pupil)
        assert teacher.screen() == before
        assert alice.api("GET", f"/sessions/{session_id}").json()["looks"]["watching"] == [
            {"name": "Tina", "control": False}]

        teacher.type("echo teacher was here\n")
        time.sleep(1.5)
        assert settled(pupil) == before, "the teacher's keys reached the desktop"

        # The pupil's own keys still work, and the teacher sees them.
        pupil.type("x")
        after = settled(pupil)
        assert after != before
        assert settled(teacher) == after

        # Control only after alice accepts.
        assert tina.api("POST", f"/looks/{session_id}/control").json()["control"] == "asked"
        assert alice.api("GET", f"/sessions/{session_id}").json()["looks"]["control_request"]["name"] == "Tina"
        teacher.type("y")
        time.sleep(1)
        assert settled(pupil) == after
        assert tina.api("POST", f"/looks/{session_id}/control/answer", {"accept": True}).status_code == 404
        answer = alice.api("POST", f"/looks/{session_id}/control/answer", {"accept": True})
        assert answer.status_code == 200, answer.text
        assert answer.json()["watching"] == [{"name": "Tina", "control": True}]
        teacher.type("z")
        controlled = settled(pupil)
        assert controlled != after
        # Alice takes it back: the teacher's keys are dropped again.
        assert alice.api("DELETE", f"/looks/{session_id}/control").json() == {"ended": 1}
        teacher.type("w")
        time.sleep(1)
        assert settled(pupil) == controlled

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "look.end" not in [a["action"] for a in audit_actions(relay)]:
        time.sleep(0.2)
    actions = [(a["actor"], a["action"]) for a in audit_actions(relay) if a["target"] == session_id]
    for row in [("tina", "look.start"), ("tina", "control.ask"), ("alice", "control.grant"),
                ("alice", "control.end"), ("tina", "look.end")]:
        assert row in actions, actions
    assert alice.api("GET", f"/sessions/{session_id}").json()["looks"]["watching"] == []


def test_looks_outside_the_scope_are_refused_like_a_foreign_session(school):
    relay, alice, session_id = school
    unknown = "0" * len(session_id)
    for user in ("bob", "ada"):
        other = signed_in(relay, user)
        for sid in (session_id, unknown):
            assert other.api("GET", f"/looks/{sid}").status_code == 404
            assert other.get(f"/look/{sid}/").status_code == 404
            assert other.get(f"/look/{sid}/vnc.html").status_code == 404
            assert look_refusal(other, sid) == 404
    tina = signed_in(relay, "tina")
    # Origin and cookie are checked as for a desktop's own upgrade.
    assert look_refusal(tina, session_id, origin="http://evil.example") == 403
    assert look_refusal(tina, session_id, cookie=False) == 401
    # A teacher's own desktop is not another teacher's to look at, nor is her session address hers.
    tom = signed_in(relay, "tom")
    tom_session = tom.start_desktop()["id"]
    assert tina.api("GET", f"/looks/{tom_session}").status_code == 404
    assert look_refusal(tina, tom_session) == 404
    assert tina.get(f"/desktop/{session_id}/vnc.html").status_code == 404
    # Not ready any more: gone.
    alice.api("DELETE", f"/sessions/{session_id}")
    assert tina.api("GET", f"/looks/{session_id}").status_code == 404
    assert look_refusal(tina, session_id) == 404
    # Control when looking at nothing is the wrong state.
    assert tina.api("POST", f"/looks/{tom_session}/control").status_code == 404


def test_control_asked_without_an_open_look_is_409_and_a_bad_answer_422(school):
    relay, alice, session_id = school
    tina = signed_in(relay, "tina")
    assert tina.api("POST", f"/looks/{session_id}/control").status_code == 409
    assert alice.api("POST", f"/looks/{session_id}/control/answer", {"accept": True}).status_code == 409
    assert alice.api("POST", f"/looks/{session_id}/control/answer", {"accept": "yes"}).status_code == 422
