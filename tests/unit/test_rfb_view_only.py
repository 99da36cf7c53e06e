"""The view-only filter (desktop_relay.relay.rfb.ViewOnlyFilter) on the recorded web client's
streams (tests/recordings/) and on hand-made ones: every input message is removed, everything else
passes byte-exact however the stream is split or merged, ClientInit's shared flag is forced on, and
a stream it cannot follow fails closed."""

from __future__ import annotations

import random
import struct

import pytest
from test_rfb_classifier import (
    FBUR,
    HANDSHAKE_NONE,
    KEY_A_DOWN,
    RECORDED,
    VERSION,
    kasm_binary_clipboard,
    kasm_direct_mouse,
    kasm_pointer,
    kasm_set_encodings,
    load,
)

from desktop_relay.relay.rfb import FilterFailed, ViewOnlyFilter

INPUT_TYPES = {4, 5, 6, 180, 188, 250, 251}
POINTER = b"\x05\x00" + struct.pack(">HH", 10, 20)
CUT_TEXT = b"\x06\x00\x00\x00" + struct.pack(">i", 5) + b"hello"
QEMU_KEY = b"\xff\x00" + struct.pack(">HII", 1, 0x61, 30)
QEMU_AUDIO_ON = b"\xff\x01\x00\x00"
XVP_REBOOT = b"\xfa\x00\x01\x03"
SET_DESKTOP_SIZE = b"\xfb\x00" + struct.pack(">HHBx", 800, 600, 1) + bytes(16)


def through(pieces: list[bytes], f: ViewOnlyFilter | None = None) -> bytes:
    f = f or ViewOnlyFilter()
    return b"".join(f.feed(piece) for piece in pieces)


def expected_of(messages: list[bytes]) -> bytes:
    """What the desktop should get of a recording fed one RFB message per WebSocket message:
    the handshake with the shared flag on, then every message that is not input."""
    version, security, _shared, *rest = messages
    kept = [m for m in rest if m[0] not in INPUT_TYPES and m[:2] != b"\xff\x00"]
    return version + security + b"\x01" + b"".join(kept)


@pytest.mark.parametrize("name", RECORDED)
def test_recording_loses_its_input_and_keeps_everything_else(name):
    messages = load(name)
    assert through(messages) == expected_of(messages)


@pytest.mark.parametrize("name", RECORDED)
def test_recording_fed_byte_by_byte_or_merged_gives_the_same_bytes(name):
    messages = load(name)
    stream = b"".join(messages)
    expected = expected_of(messages)
    assert through([stream[i : i + 1] for i in range(len(stream))]) == expected
    assert through([stream]) == expected


@pytest.mark.parametrize("name", RECORDED)
def test_recording_in_random_pieces_gives_the_same_bytes(name):
    messages = load(name)
    stream = b"".join(messages)
    expected = expected_of(messages)
    rng = random.Random(name)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), min(30, len(stream) - 1)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert through(pieces) == expected


def test_typing_recording_has_keys_and_none_of_them_pass():
    messages = load("novnc-typing")
    keys = [m for m in messages[3:] if m[0] == 4 or m[:2] == b"\xff\x00"]
    assert keys
    f = ViewOnlyFilter()
    out = through(messages, f)
    assert f.dropped == sum(1 for m in messages[3:] if m[0] in INPUT_TYPES or m[:2] == b"\xff\x00")
    assert not any(key in out for key in keys)


def test_client_init_asking_for_exclusive_access_is_made_shared():
    assert through([VERSION, b"\x01", b"\x00"]) == VERSION + b"\x01\x01"


def test_vnc_auth_response_passes_even_when_it_looks_like_a_key_event():
    response = KEY_A_DOWN * 2
    assert through([VERSION, b"\x02", response, b"\x00", FBUR]) == VERSION + b"\x02" + response + b"\x01" + FBUR


@pytest.mark.parametrize("message", [KEY_A_DOWN, POINTER, CUT_TEXT, QEMU_KEY, XVP_REBOOT, SET_DESKTOP_SIZE])
def test_each_standard_input_message_is_removed_between_update_requests(message):
    stream = b"".join([*HANDSHAKE_NONE, FBUR, message, FBUR])
    expected = VERSION + b"\x01\x01" + FBUR + FBUR
    assert through([stream]) == expected
    assert through([stream[i : i + 1] for i in range(len(stream))]) == expected


def test_qemu_audio_passes_but_qemu_key_does_not():
    assert through([*HANDSHAKE_NONE, QEMU_AUDIO_ON, QEMU_KEY]) == VERSION + b"\x01\x01" + QEMU_AUDIO_ON


def test_kasm_client_pointer_clipboard_and_relative_mouse_are_removed():
    encodings = kasm_set_encodings()
    clipboard = kasm_binary_clipboard((b"text/plain", b"secret"), (b"image/png", b"\x89PNG"))
    stream = b"".join([*HANDSHAKE_NONE, encodings, kasm_pointer(5, 6, 1, 0, 3), clipboard,
                       kasm_direct_mouse(1, 2), FBUR])
    expected = VERSION + b"\x01\x01" + encodings + FBUR
    assert through([stream]) == expected
    assert through([stream[i : i + 1] for i in range(len(stream))]) == expected


def test_long_clipboard_paste_split_over_messages_is_dropped_whole():
    text = b"x" * 100_000
    paste = b"\x06\x00\x00\x00" + struct.pack(">i", len(text)) + text
    pieces = [*HANDSHAKE_NONE, paste[:9], paste[9:50_000], paste[50_000:] + FBUR]
    assert through(pieces) == VERSION + b"\x01\x01" + FBUR


def test_unknown_message_fails_closed_and_stays_failed():
    f = ViewOnlyFilter()
    through(HANDSHAKE_NONE, f)
    with pytest.raises(FilterFailed, match="unknown client message type 99"):
        f.feed(b"\x63" + KEY_A_DOWN)
    with pytest.raises(FilterFailed):
        f.feed(FBUR)


def test_security_type_it_cannot_follow_fails_closed():
    f = ViewOnlyFilter()
    f.feed(VERSION)
    with pytest.raises(FilterFailed, match="security type 19"):
        f.feed(b"\x13")


def test_message_cut_short_waits_without_passing_a_partial_input():
    f = ViewOnlyFilter()
    through(HANDSHAKE_NONE, f)
    assert f.feed(KEY_A_DOWN[:3]) == b""
    assert f.feed(KEY_A_DOWN[3:] + FBUR[:4]) == FBUR[:4]
    assert f.feed(FBUR[4:]) == FBUR[4:]


def test_input_passes_while_allowed_and_is_removed_again_from_the_next_message():
    f = ViewOnlyFilter()
    through(HANDSHAKE_NONE, f)
    long_text = b"\x06\x00\x00\x00" + struct.pack(">i", 1000) + b"y" * 1000
    # A message is decided once its header is in: this paste is being removed.
    assert f.feed(long_text[:20]) == b""
    f.input_allowed = True
    # Removed whole even so; then input passes, but never a SetDesktopSize.
    assert f.feed(long_text[20:] + KEY_A_DOWN + SET_DESKTOP_SIZE + CUT_TEXT[:10]) == KEY_A_DOWN + CUT_TEXT[:10]
    f.input_allowed = False
    # That paste passes whole, the pointer event after it does not.
    assert f.feed(CUT_TEXT[10:] + POINTER + FBUR) == CUT_TEXT[10:] + FBUR
