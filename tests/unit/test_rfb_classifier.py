"""The RFB input classifier (desktop_relay.relay.rfb) on streams recorded from the real web client
(tests/recordings/, Debian's noVNC in Chromium), replayed as recorded and re-split every way, and
on streams built by hand for what the recordings cannot show: VncAuth, KasmVNC's own client,
unknown messages, garbage, truncation."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from desktop_relay.relay.rfb import InputClassifier

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
RECORDED = sorted(p.stem for p in RECORDINGS.glob("*.jsonl"))

VERSION = b"RFB 003.008\n"
HANDSHAKE_NONE = [VERSION, b"\x01", b"\x01"]
FBUR = bytes.fromhex("030100000000050002d0")  # incremental, 1280x720
KEY_A_DOWN = b"\x04\x01\x00\x00" + struct.pack(">I", 0x61)


def load(name: str) -> list[bytes]:
    """The browser-to-desktop messages of one recording, in order."""
    header, *lines = (RECORDINGS / f"{name}.jsonl").read_text().splitlines()
    assert json.loads(header)["synthetic"] is False
    return [bytes.fromhex(json.loads(line)["hex"]) for line in lines]


def counted(messages: list[bytes], classifier: InputClassifier | None = None) -> list[int]:
    """Indices of the pieces that ``feed`` said held input, fed one by one."""
    classifier = classifier or InputClassifier()
    return [i for i, message in enumerate(messages) if classifier.feed(message)]


def input_ends(messages: list[bytes]) -> list[int]:
    """Stream offsets just after each piece that counted when fed as recorded."""
    offsets, total = [], 0
    classifier = InputClassifier()
    for message in messages:
        total += len(message)
        if classifier.feed(message):
            offsets.append(total)
    assert classifier.gave_up is None
    return offsets


def started(*messages: bytes) -> InputClassifier:
    """A classifier past noVNC's handshake (security None), fed ``messages`` too."""
    classifier = InputClassifier()
    for message in (*HANDSHAKE_NONE, *messages):
        classifier.feed(message)
    return classifier


# -- the recordings, as recorded ----------------------------------------------------------


def test_recordings_are_there():
    assert {"novnc-idle", "novnc-idle-busy-screen", "novnc-typing", "novnc-mouse",
            "novnc-pointer-repeat", "novnc-clipboard"} <= set(RECORDED)


@pytest.mark.parametrize("name", ["novnc-idle", "novnc-idle-busy-screen"])
def test_idle_client_never_counts(name):
    messages = load(name)
    classifier = InputClassifier()
    assert counted(messages, classifier) == []
    assert classifier.gave_up is None
    # It did talk: set-up, update requests, fences (dozens of them while the screen changes).
    kinds = {m[0] for m in messages[3:]}
    assert {0, 2, 3, 150, 248} <= kinds


def test_typing_counts_every_key_press_and_release_and_nothing_else():
    messages = load("novnc-typing")
    keys = [i for i, m in enumerate(messages) if m[0] == 255 and m[1] == 0]
    # "ls -l" (5 keys), Shift+A (Shift and A), Enter: a press and a release each.
    assert len(keys) == 16
    assert counted(messages) == keys


def test_mouse_moves_clicks_and_wheel_all_count():
    messages = load("novnc-mouse")
    pointer = [i for i, m in enumerate(messages) if m[0] == 5]
    masks = {messages[i][1] for i in pointer}
    assert masks == {0, 1, 4, 16}  # none, left, right, wheel down
    assert counted(messages) == pointer


def test_pointer_event_repeating_position_and_mask_does_not_count():
    messages = load("novnc-pointer-repeat")
    pointer = [i for i, m in enumerate(messages) if m[0] == 5]
    # noVNC sent the same move three times, then the press and the release at that point.
    assert [messages[i] for i in pointer[:3]] == [messages[pointer[0]]] * 3
    assert counted(messages) == [pointer[0], pointer[3], pointer[4]]


def test_clipboard_paste_counts_but_clipboard_capabilities_on_connect_do_not():
    messages = load("novnc-clipboard")
    cut_text = [i for i, m in enumerate(messages) if m[0] == 6]
    assert len(cut_text) == 2  # the capabilities on connect, the paste
    assert counted(messages) == cut_text[1:]


# -- the recordings, re-split ---------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDED)
def test_recording_fed_byte_by_byte_counts_exactly_where_input_messages_end(name):
    messages = load(name)
    stream = b"".join(messages)
    classifier = InputClassifier()
    ends = [i + 1 for i in range(len(stream)) if classifier.feed(stream[i : i + 1])]
    assert ends == input_ends(messages)
    assert classifier.gave_up is None


@pytest.mark.parametrize("name", RECORDED)
def test_recording_merged_into_one_piece_counts_if_it_holds_input(name):
    messages = load(name)
    classifier = InputClassifier()
    assert classifier.feed(b"".join(messages)) == bool(input_ends(messages))
    assert classifier.gave_up is None


@pytest.mark.parametrize("name", RECORDED)
def test_recording_split_in_two_anywhere_counts_the_piece_each_input_message_ends_in(name):
    messages = load(name)
    stream = b"".join(messages)
    ends = input_ends(messages)
    for cut in range(1, len(stream)):
        classifier = InputClassifier()
        pieces = (classifier.feed(stream[:cut]), classifier.feed(stream[cut:]))
        assert pieces == (any(e <= cut for e in ends), any(e > cut for e in ends)), cut


@pytest.mark.parametrize("name", RECORDED)
def test_recording_in_random_pieces_counts_the_pieces_input_messages_end_in(name):
    messages = load(name)
    stream = b"".join(messages)
    ends = input_ends(messages)
    rng = random.Random(name)
    for _ in range(30):
        classifier = InputClassifier()
        start = 0
        while start < len(stream):
            stop = min(len(stream), start + rng.randint(1, 40))
            assert classifier.feed(stream[start:stop]) == any(start < e <= stop for e in ends)
            start = stop
        assert classifier.gave_up is None


# -- handshakes -----------------------------------------------------------------------------


def test_vnc_auth_response_is_passed_over_even_when_it_looks_like_input():
    # KasmVNC offers VncAuth and its web client answers it (with an empty password).
    classifier = InputClassifier()
    assert counted([VERSION, b"\x02", b"\x04" * 16, b"\x01", FBUR], classifier) == []
    assert classifier.gave_up is None
    assert classifier.feed(KEY_A_DOWN)


def test_rfb_3_7_is_followed_like_3_8():
    assert counted([b"RFB 003.007\n", b"\x01", b"\x01", FBUR, KEY_A_DOWN]) == [4]


@pytest.mark.parametrize(
    ("handshake", "why"),
    [
        ([b"RFB 003.003\n"], "3.3"),
        ([VERSION, b"\x13"], "security type 19"),  # VeNCrypt
        ([VERSION, b"\x10"], "security type 16"),  # Tight
        ([b"GET / HTTP/1.1\r\n"], "not an RFB protocol version"),
        ([b"RFB 004.001\n"], "4.1"),
    ],
)
def test_handshake_it_cannot_follow_gives_up_and_counts_everything(handshake, why):
    classifier = InputClassifier()
    results = [classifier.feed(m) for m in handshake]
    assert results[-1] is True
    assert why in classifier.gave_up
    assert classifier.feed(FBUR) and classifier.feed(b"\x01")


# -- messages it cannot follow --------------------------------------------------------------


@pytest.mark.parametrize("kind", [1, 7, 13, 127, 177, 186, 249, 253, 254])
def test_unknown_message_type_gives_up_and_every_later_piece_counts(kind):
    classifier = started(FBUR)
    assert classifier.feed(bytes([kind]) + bytes(9))
    assert f"type {kind}" in classifier.gave_up
    assert classifier.feed(FBUR)
    assert classifier.feed(b"")


def test_unknown_type_after_a_message_in_the_same_piece_gives_up_there():
    classifier = started()
    assert classifier.feed(FBUR + b"\x07")
    assert "type 7 at stream byte" in classifier.gave_up


def test_garbage_never_raises_and_ends_in_giving_up_or_waiting():
    rng = random.Random(1)
    for _ in range(2000):
        classifier = InputClassifier() if rng.random() < 0.3 else started()
        stream = rng.randbytes(rng.randint(0, 200))
        start = 0
        while start < len(stream):
            stop = start + rng.randint(1, 50)
            assert classifier.feed(stream[start:stop]) in (True, False)
            start = stop


def test_a_parser_bug_counts_as_input_instead_of_reaching_the_desktop(monkeypatch):
    classifier = started()

    def broken(*args: object) -> int:
        raise IndexError("bug")

    monkeypatch.setattr(InputClassifier, "_message", broken)
    assert classifier.feed(b"\x05\x00\x00\x10\x00\x10")
    assert "classifier error" in classifier.gave_up
    assert classifier.feed(FBUR)


def test_give_up_from_outside_counts_everything_after():
    classifier = started()
    classifier.give_up("a text message from the browser")
    assert classifier.gave_up == "a text message from the browser"
    assert classifier.feed(FBUR)


# -- truncated streams -----------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(1, 12))
def test_input_message_cut_short_counts_only_once_complete(cut):
    qemu_key = bytes.fromhex("ff0000010000006c00000026")
    classifier = started()
    assert classifier.feed(qemu_key[:cut]) is False
    assert classifier.feed(qemu_key[cut:]) is True
    assert classifier.feed(FBUR) is False


def test_stream_that_stops_mid_handshake_or_mid_message_just_waits():
    for stream in (VERSION[:5], VERSION + b"\x02" + bytes(7), b"".join(HANDSHAKE_NONE) + KEY_A_DOWN[:3]):
        classifier = InputClassifier()
        assert classifier.feed(stream) is False
        assert classifier.gave_up is None


def test_piece_that_looks_like_a_whole_message_but_continues_one_is_read_as_the_continuation():
    # The body of a plain cut text (a paste: input) that starts like an update request.
    classifier = started()
    assert classifier.feed(b"\x06\x00\x00\x00" + struct.pack(">i", 10)) is False
    assert classifier.feed(FBUR) is True
    # The rest of a SetEncodings header (0x0401 encodings) and its first ones, starting like a
    # KeyEvent.
    classifier = started()
    assert classifier.feed(b"\x02\x00") is False
    assert classifier.feed(KEY_A_DOWN[:2] + bytes(6)) is False
    assert classifier.feed(bytes(4 + 4 * 0x0401 - 10)) is False
    assert classifier.feed(KEY_A_DOWN) is True
    assert classifier.gave_up is None


def test_large_cut_text_in_many_pieces_counts_once_at_its_end():
    text = bytes(1 << 20)
    message = b"\x06\x00\x00\x00" + struct.pack(">i", len(text)) + text + FBUR
    classifier = started()
    pieces = [message[i : i + 65536] for i in range(0, len(message), 65536)]
    results = [classifier.feed(piece) for piece in pieces]
    assert results == [False] * (len(pieces) - 1) + [True]
    assert classifier.feed(FBUR) is False


# -- the rest of RFB, by hand -----------------------------------------------------------------


def extended_clipboard(flags: int, data: bytes = b"") -> bytes:
    payload = struct.pack(">I", flags) + data
    return b"\x06\x00\x00\x00" + struct.pack(">i", -len(payload)) + payload


@pytest.mark.parametrize(
    ("message", "is_input"),
    [
        (extended_clipboard(0x1F000001, bytes(4)), False),  # Caps, with every action it supports
        (extended_clipboard(0x02000001), False),  # Request: the desktop announced new text
        (extended_clipboard(0x08000001), True),  # Notify: a paste into the client
        (extended_clipboard(0x10000001, b"zlib data"), True),  # Provide: that paste's text
        (b"\x06\x00\x00\x00" + struct.pack(">i", 5) + b"hello", True),  # plain ClientCutText
        (bytes.fromhex("f800000080000003030a0b0c"), False),  # ClientFence with a 3-byte payload
        (b"\xfb\x00\x05\x00\x02\xd0\x02\x00" + bytes(32), False),  # SetDesktopSize, 2 screens
        (b"\xfa\x00\x01\x03", True),  # xvp reboot
        (b"\xff\x01\x00\x00", False),  # QEMU audio enable
        (b"\xff\x01\x00\x01", False),  # QEMU audio disable
        (b"\xff\x01\x00\x02\x03\x02\x00\x00\xac\x44", False),  # QEMU audio set format
        (b"\x02\x00\x00\x00", False),  # SetEncodings with none
    ],
)
def test_each_standard_message_is_followed_and_counts_if_a_person_sent_it(message, is_input):
    classifier = started()
    assert classifier.feed(message) is is_input
    assert classifier.gave_up is None
    # Followed to its exact end: the next message is read as one.
    assert classifier.feed(FBUR + KEY_A_DOWN) is True
    assert classifier.feed(FBUR) is False
    assert classifier.gave_up is None


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"\xff\x05", "QEMU client submessage 5"),
        (b"\xff\x01\x00\x09", "QEMU audio operation 9"),
        (b"\x06\x00\x00\x00" + struct.pack(">i", -2) + b"\x00\x00", "shorter than its flags"),
    ],
)
def test_malformed_standard_message_gives_up(message, why):
    classifier = started()
    assert classifier.feed(message)
    assert why in classifier.gave_up


# -- KasmVNC's web client (synthetic: built after kasmtech/noVNC core/rfb.js RFB.messages) ----

#: What KasmVNC's client always asks for (core/encodings.js, _sendEncodings): standard ones
#: and its private pseudo-encodings (JPEG video quality 5: -1018, frame rate 24: -2034, ...).
KASM_ENCODINGS = [7, -260, 5, 2, 0, -26, -254, -223, -224, -258, -308, -309, -312, -313, -307,
                  0xC0A1E5CE - (1 << 32), -1885, -1884, -1018, -1009, -996, -982, -977, -966, -860, -1964,
                  -1996, -2034, -1997, -1165, -1096, -1025, -239, 0x574D5666]


def kasm_set_encodings() -> bytes:
    return b"\x02\x00" + struct.pack(">H", len(KASM_ENCODINGS)) + b"".join(
        struct.pack(">i", e) for e in KASM_ENCODINGS)


def kasm_pointer(x: int, y: int, mask: int = 0, dx: int = 0, dy: int = 0) -> bytes:
    # pointerEvent: type, U16 mask, U16 x, U16 y, S16 scroll dx, S16 scroll dy (11 bytes).
    return b"\x05" + struct.pack(">HHHhh", mask, x, y, dx, dy)


def kasm_direct_mouse(dx: int, dy: int, mask: int = 0, sx: int = 0, sy: int = 0) -> bytes:
    # directMouseEvent: type 188, U8 mask, S16 dx, dy, scroll dx, dy.
    return b"\xbc" + struct.pack(">Bhhhh", mask, dx, dy, sx, sy)


def kasm_binary_clipboard(*entries: tuple[bytes, bytes]) -> bytes:
    # sendBinaryClipboard: type 180, U8 count, per entry U8 mime length, mime, U32 length, data.
    body = b"".join(bytes([len(mime)]) + mime + struct.pack(">I", len(data)) + data for mime, data in entries)
    return b"\xb4" + bytes([len(entries)]) + body


def kasm_started() -> InputClassifier:
    """Past a KasmVNC client's handshake (VncAuth) and set-up: video encoders before encodings,
    as _negotiateServerInit sends them."""
    classifier = InputClassifier()
    setup = [VERSION, b"\x02", bytes(16), b"\x01",
             bytes.fromhex("000000002018000100ff00ff00ff000810000000"),  # pixelFormat
             b"\xb8\x02" + struct.pack(">ii", 1, 2),  # videoEncodersRequest, 2 codecs
             kasm_set_encodings(), FBUR]
    assert counted(setup, classifier) == []
    return classifier


def test_kasm_client_pointer_events_are_read_as_eleven_bytes():
    classifier = kasm_started()
    assert classifier.feed(kasm_pointer(100, 100))
    # Six bytes of it would leave five read as a message: it must not count, nor give up.
    assert classifier.feed(kasm_pointer(100, 100) + FBUR) is False
    assert classifier.feed(kasm_pointer(100, 100, mask=1))
    assert classifier.feed(kasm_pointer(100, 100))
    # Wheel turns: same place, same mask, a scroll delta each.
    assert classifier.feed(kasm_pointer(100, 100, dy=-3))
    assert classifier.feed(kasm_pointer(100, 100, dy=-3))
    assert classifier.gave_up is None


def test_kasm_relative_mouse_counts_moves_and_button_changes_only():
    classifier = kasm_started()
    assert classifier.feed(kasm_direct_mouse(3, -2))
    assert classifier.feed(kasm_direct_mouse(0, 0)) is False
    assert classifier.feed(kasm_direct_mouse(0, 0, mask=4))
    assert classifier.feed(kasm_direct_mouse(0, 0, mask=4)) is False
    assert classifier.feed(kasm_direct_mouse(0, 0, mask=4, sy=120))
    assert classifier.gave_up is None


@pytest.mark.parametrize(
    ("message", "is_input"),
    [
        (b"\xb9", False),  # keepAlive, on a timer
        (b"\xb2\x00\x00\x00", False),  # requestStats
        (b"\xb3\x00\x00\x00" + struct.pack(">II", 16, 4), False),  # sendFrameStats
        (b"\xbd\x00\x00\x00" + struct.pack(">I", 7), False),  # latency measurement
        (b"\xbe\x00\x00\x00", False),  # network stats request
        (b"\xbf\x00\x00\x00", False),  # system stats request
        (b"\xfc\x07\x80\x04\x38", False),  # setMaxVideoResolution 1920x1080
        (b"\xb5\x00\x04v=0\n", False),  # UDP upgrade offer
        (b"\xb5\x00\x00", False),  # UDP downgrade
        (b"\xb6\x07printer", False),  # sendSubscribeUnixRelay
        (b"\xb7\x07printer" + struct.pack(">I", 3) + b"abc", False),  # sendUnixRelay
        (b"\xb8\x00", False),  # videoEncodersRequest with none
        (kasm_binary_clipboard((b"text/plain", b"pasted"), (b"image/png", bytes(300))), True),
        (kasm_binary_clipboard(), True),  # a cleared clipboard
        (bytes.fromhex("ff0000010000006c00000026"), True),  # QEMUExtendedKeyEvent
        (KEY_A_DOWN, True),
    ],
)
def test_each_kasm_client_message_is_followed_and_counts_if_a_person_sent_it(message, is_input):
    classifier = kasm_started()
    assert classifier.feed(message) is is_input
    assert classifier.gave_up is None
    assert classifier.feed(FBUR + kasm_pointer(1, 2)) is True
    assert classifier.feed(FBUR + kasm_pointer(1, 2)) is False


def test_kasm_binary_clipboard_byte_by_byte_counts_at_its_last_byte():
    message = kasm_binary_clipboard((b"text/plain", b"pasted"), (b"text/html", b"<b>pasted</b>"))
    classifier = kasm_started()
    results = [classifier.feed(message[i : i + 1]) for i in range(len(message))]
    assert results == [False] * (len(message) - 1) + [True]
    assert classifier.feed(FBUR) is False


def test_standard_client_pointer_events_stay_six_bytes_after_standard_encodings():
    classifier = started(b"\x02\x00\x00\x02" + struct.pack(">ii", 7, -239))
    assert classifier.feed(b"\x05\x00\x00\x10\x00\x10" + FBUR)
    assert classifier.feed(b"\x05\x00\x00\x10\x00\x10" + FBUR) is False
    assert classifier.gave_up is None
