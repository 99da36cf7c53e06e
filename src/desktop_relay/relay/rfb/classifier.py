"""Which browser messages mean a person at the keyboard: a streaming parser of the RFB byte stream
that a VNC web client sends to its desktop.

This module owns telling a person's input (keys, pointer moves and clicks, clipboard pastes) from
what a web client sends with nobody there (screen update requests, encodings, fences,
keep-alives, statistics), for the idle timeout. The classifier only reads: the bridge passes every byte on
unchanged whatever it thinks of them. ``ViewOnlyFilter`` is built on the same parser for a
teacher's look: it removes every input message from the stream, so the desktop never gets them.

Message types and lengths follow, besides the RFB protocol itself (rfbproto/rfbproto,
``rfbproto.rst``), the two web clients a desktop serves and the server that reads them:

- Debian's noVNC 1.3 (``/usr/share/novnc/core/rfb.js``), the client of the demo desktop image;
- KasmVNC's server, ``common/rfb/SMsgReader.cxx`` (``readMsg`` and one ``read*`` per type) and
  ``common/rfb/msgTypes.h`` in kasmtech/KasmVNC, and its web client, ``core/rfb.js``
  (``RFB.messages``) and ``core/messages.js`` in kasmtech/noVNC.

KasmVNC changed the standard PointerEvent: since 1.0 it reads a 16-bit button mask and a scroll
delta (11 bytes, not 6; ``readPointerEvent``, KasmVNC commits 0a45fcc and 99c1e10), and only
KasmVNC's own client writes that form (``pointerEvent`` in its rfb.js). Which form a connection
uses is told by its SetEncodings: KasmVNC's client always asks for pseudo-encodings in its private
range -2048..-770 (``core/encodings.js``: frame rate, video quality, ...), where the RFB registry
has none, and it sends SetEncodings before its first pointer event (``_negotiateServerInit``).
"""

from __future__ import annotations

import re
import struct

__all__ = ["InputClassifier"]

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from

# Where the parser is in the stream (RFB 3.7/3.8, rfbproto "Handshaking Messages").
_VERSION, _SECURITY, _VNC_AUTH, _CLIENT_INIT, _MESSAGES, _CLIPBOARD_ENTRY = range(6)

_VERSION_LINE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

# Security types after which the client sends nothing but its VncAuth response: the others
# (Tight, VeNCrypt, TLS, ...) have client-side negotiations this parser does not follow.
_SECURITY_NONE = 1
_SECURITY_VNC_AUTH = 2
_VNC_AUTH_RESPONSE = 16

# KasmVNC's private pseudo-encodings (kasmtech/noVNC core/encodings.js): only its client asks
# for them, and it always asks for several (frame rate, JPEG/WebP video quality, ...).
_KASM_ENCODINGS = range(-2048, -769)
_STANDARD_POINTER_EVENT = 6
# KasmVNC >= 1.0: type, U16 mask, U16 x, U16 y, S16 scroll x, S16 scroll y (readPointerEvent).
_KASM_POINTER_EVENT = 11

# Extended clipboard actions, the first byte of the flags (rfbproto "Extended Clipboard
# Pseudo-Encoding"; noVNC's extendedClipboardAction*, shifted down by 24). noVNC sends Caps on
# connect, in answer to the server's, with every action it supports also set (0x1f in the
# recordings), and Request when the desktop announced new text: neither needs a person. Notify
# (the user pasted into the client's clipboard box) and Provide (that text, when the server
# asks for it) do. noVNC also sends Notify in answer to a Peek, but TigerVNC's and KasmVNC's
# servers never send Peek (only their viewer's CMsgWriter writes one).
_CLIPBOARD_CAPS = 1 << 0
_CLIPBOARD_NOTIFY = 1 << 3
_CLIPBOARD_PROVIDE = 1 << 4

#: Fixed-length client messages: type -> (length in bytes, whether it is a person's input).
_FIXED: dict[int, tuple[int, bool]] = {
    # SetPixelFormat: type, 3 padding, 16-byte PIXEL_FORMAT; sent once on connect.
    0: (20, False),
    # FramebufferUpdateRequest: sent for every frame, with or without anybody there.
    3: (10, False),
    # KeyEvent: type, down flag, 2 padding, U32 keysym. Every press and release is a person's.
    4: (8, True),
    # EnableContinuousUpdates: type, flag, x, y, w, h; sent on connect when the server has it.
    150: (10, False),
    # KasmVNC RequestStats (readRequestStats: 3 padding): the client's stats panel, on a timer.
    178: (4, False),
    # KasmVNC FrameStats (readFrameStats: 3 padding, U32 all, U32 render): render times,
    # reported when the server asks.
    179: (12, False),
    # KasmVNC KeepAlive (readKeepAlive reads nothing more): sent on a timer (app/ui.js)
    # precisely so that an idle client is not taken for a dead one.
    185: (1, False),
    # KasmVNC LatencyMeasurement (3 padding, U32 id): a network probe.
    189: (8, False),
    # KasmVNC NetworkStats and SystemStats requests (3 padding each): statistics.
    190: (4, False),
    191: (4, False),
    # xvp (rfbproto: type, padding, version, code): a person chose shutdown, reboot or reset in
    # the client's menu.
    250: (4, True),
    # KasmVNC SetMaxVideoResolution (readSetMaxVideoResolution: U16 w, U16 h): on connect and
    # whenever the browser window changes size, which happens without a person too.
    252: (5, False),
}


class _GiveUp(Exception):
    """The stream holds something this parser cannot follow."""


class InputClassifier:
    """Follows one connection's client-to-server RFB stream, split and merged arbitrarily
    across WebSocket messages, and tells which pieces contained a person's input.

    Input is a KeyEvent, a PointerEvent whose position or button mask changed (or, in
    KasmVNC's form, that scrolls), a clipboard paste (ClientCutText, KasmVNC's binary
    clipboard), a QEMU extended key event, KasmVNC's relative mouse event when it moves,
    clicks or scrolls, and an xvp request. Anything it cannot follow (a security type other
    than None or VncAuth, RFB 3.3, an unknown message type, garbage) makes it give up:
    from then on every piece counts as input, so a desktop is never stopped for being
    misunderstood. It never raises.
    """

    __slots__ = (
        "_direct_mask",
        "_entries",
        "_gave_up",
        "_kasm",
        "_between_messages",
        "_need",
        "_pointer",
        "_seen",
        "_skip",
        "_skip_input",
        "_state",
        "_tail",
        "_unit_input",
    )

    def __init__(self) -> None:
        self._state = _VERSION
        self._gave_up: str | None = None
        # At a message boundary with nothing pending: where a whole message in one piece can
        # be classified without the general parser.
        self._between_messages = False
        # The start of a unit (handshake step or message) whose deciding bytes have not all
        # arrived, and how many bytes of it are needed to decide.
        self._tail = bytearray()
        self._need = 0
        # Bytes of the current unit still to pass over (payloads nobody needs to look at),
        # and whether that unit is input once it is complete.
        self._skip = 0
        self._skip_input = False
        self._unit_input = False
        self._seen = 0
        self._kasm = False
        self._pointer: bytes | None = None
        self._direct_mask: int | None = None
        self._entries = 0

    @property
    def gave_up(self) -> str | None:
        """Why classifying stopped (every later piece counts as input), or None."""
        return self._gave_up

    def give_up(self, reason: str) -> None:
        """Stop classifying: the caller saw traffic this parser cannot follow."""
        if self._gave_up is None:
            self._gave_up = reason
            self._between_messages = False
            self._tail = bytearray()

    def feed(self, data: bytes) -> bool:
        """Take the next piece of the stream; True if it completed at least one input message
        (always True once classifying stopped, including for the piece that stopped it)."""
        if self._between_messages and data:
            # Web clients send one message per WebSocket message: an idle one, an update
            # request or a fence answer at a time, which this decides in a dictionary look-up.
            fixed = _FIXED.get(data[0])
            if fixed is not None and fixed[0] == len(data):
                self._seen += fixed[0]
                return fixed[1]
        if self._gave_up is not None:
            return True
        try:
            return self._feed(data)
        except _GiveUp as e:
            self.give_up(str(e))
        except Exception as e:  # noqa: BLE001 - a parser bug must never reach the desktop
            self.give_up(f"classifier error {e!r}")
        return True

    def _feed(self, data: bytes) -> bool:
        end = len(data)
        pos = 0
        found = False
        tail = self._tail
        while pos < end:
            if self._skip:
                left = end - pos
                if self._skip > left:
                    self._skip -= left
                    break
                pos += self._skip
                self._skip = 0
                found = found or self._skip_input
                continue
            if tail:
                # Only as many bytes as the unit needs: the rest is parsed in place.
                take = min(self._need - len(tail), end - pos)
                tail += data[pos : pos + take]
                pos += take
                if len(tail) < self._need:
                    break
                length = self._unit(tail, 0, len(tail), self._seen + pos - len(tail))
                if length < 0:
                    self._need = -length
                    continue
                self._skip = length - len(tail)
                self._skip_input = self._unit_input
                tail.clear()
                found = found or (self._unit_input and not self._skip)
                continue
            avail = end - pos
            length = self._unit(data, pos, avail, self._seen + pos)
            if length < 0:
                self._need = -length
                tail += data[pos:]
                break
            if length <= avail:
                pos += length
                found = found or self._unit_input
            else:
                self._skip = length - avail
                self._skip_input = self._unit_input
                break
        self._seen += end
        self._between_messages = self._state == _MESSAGES and not self._skip and not tail
        return found

    def _unit(self, buf: bytes | bytearray, pos: int, avail: int, at: int) -> int:
        """The length of the unit starting at ``buf[pos]`` (it may be longer than the ``avail``
        bytes there: the rest is skipped unread), or minus the number of bytes needed to tell.
        Sets ``_unit_input``; changes state only when it returns a length."""
        state = self._state
        self._unit_input = False
        if state == _MESSAGES:
            return self._message(buf, pos, avail, at)
        if state == _CLIPBOARD_ENTRY:
            return self._clipboard_entry(buf, pos, avail)
        if state == _VERSION:
            if avail < 12:
                return -12
            line = bytes(buf[pos : pos + 12])
            match = _VERSION_LINE.fullmatch(line)
            if match is None:
                raise _GiveUp(f"not an RFB protocol version: {line!r}")
            major, minor = int(match[1]), int(match[2])
            if major != 3 or minor < 7:
                # In 3.3 the server alone picks the security type: the client's next bytes
                # cannot be told apart without the server's side.
                raise _GiveUp(f"RFB protocol version {major}.{minor} (only 3.7 and later are followed)")
            self._state = _SECURITY
            return 12
        if state == _SECURITY:
            chosen = buf[pos]
            if chosen == _SECURITY_NONE:
                self._state = _CLIENT_INIT
            elif chosen == _SECURITY_VNC_AUTH:
                self._state = _VNC_AUTH
            else:
                raise _GiveUp(f"security type {chosen} (only None and VncAuth are followed)")
            return 1
        if state == _VNC_AUTH:
            self._state = _CLIENT_INIT
            return _VNC_AUTH_RESPONSE
        # ClientInit: the shared flag.
        self._state = _MESSAGES
        return 1

    def _message(self, buf: bytes | bytearray, pos: int, avail: int, at: int) -> int:
        kind = buf[pos]
        fixed = _FIXED.get(kind)
        if fixed is not None:
            length, self._unit_input = fixed
            return length
        if kind == 5:
            return self._pointer_event(buf, pos, avail)
        if kind == 2:
            # SetEncodings: type, padding, U16 count, S32 each. Read whole until the dialect
            # is known, for KasmVNC's pseudo-encodings.
            if avail < 4:
                return -4
            length = 4 + 4 * _U16(buf, pos + 2)[0]
            if not self._kasm:
                if avail < length:
                    return -length
                self._kasm = any(_I32(buf, offset)[0] in _KASM_ENCODINGS for offset in range(pos + 4, pos + length, 4))
            return length
        if kind == 6:
            return self._client_cut_text(buf, pos, avail)
        if kind == 248:
            # ClientFence: type, 3 padding, U32 flags, U8 length, payload.
            if avail < 9:
                return -9
            return 9 + buf[pos + 8]
        if kind == 251:
            # SetDesktopSize: type, padding, U16 w, U16 h, U8 screens, padding, 16 per screen.
            # Sent on connect and on every window resize, person or not.
            if avail < 8:
                return -8
            return 8 + 16 * buf[pos + 6]
        if kind == 255:
            return self._qemu(buf, pos, avail)
        if kind == 188:
            return self._direct_mouse_event(buf, pos, avail)
        if kind == 180:
            # KasmVNC BinaryClipboard (readBinaryClipboard): type, U8 count, then per entry a
            # U8 mime length, the mime type, U32 length, data. Sent after a user-driven event
            # when the browser's clipboard changed (checkLocalClipboard): a paste.
            if avail < 2:
                return -2
            self._entries = buf[pos + 1]
            if self._entries:
                self._state = _CLIPBOARD_ENTRY
            else:
                self._unit_input = True
            return 2
        if kind == 181:
            # KasmVNC UpgradeToUdp (readUpgradeToUdp): type, U16 length, SDP offer.
            if avail < 3:
                return -3
            return 3 + _U16(buf, pos + 1)[0]
        if kind == 182:
            # KasmVNC SubscribeUnixRelay: type, U8 name length, name; printer and smart card
            # channels opened on connect.
            if avail < 2:
                return -2
            return 2 + buf[pos + 1]
        if kind == 183:
            # KasmVNC UnixRelay: type, U8 name length, name, U32 length, data: printer and smart
            # card traffic, which flows without a person.
            if avail < 2:
                return -2
            head = 2 + buf[pos + 1] + 4
            if avail < head:
                return -head
            return head + _U32(buf, pos + head - 4)[0]
        if kind == 184:
            # KasmVNC VideoEncoders (readVideoEncodersRequest): type, U8 count, S32 each; sent
            # on connect.
            if avail < 2:
                return -2
            return 2 + 4 * buf[pos + 1]
        raise _GiveUp(f"unknown client message type {kind} at stream byte {at}")

    def _pointer_event(self, buf: bytes | bytearray, pos: int, avail: int) -> int:
        # Web clients send a pointer event for every mouse move they see, and some repeat the
        # last one unchanged (noVNC's delayed move): only a change is a person.
        if self._kasm:
            if avail < _KASM_POINTER_EVENT:
                return -_KASM_POINTER_EVENT
            where = bytes(buf[pos + 1 : pos + 7])
            # A wheel turn is a scroll delta with mask and position unchanged.
            scrolled = buf[pos + 7 : pos + 11] != b"\0\0\0\0"
            length = _KASM_POINTER_EVENT
        else:
            if avail < _STANDARD_POINTER_EVENT:
                return -_STANDARD_POINTER_EVENT
            where = bytes(buf[pos + 1 : pos + 6])
            scrolled = False
            length = _STANDARD_POINTER_EVENT
        self._unit_input = scrolled or where != self._pointer
        self._pointer = where
        return length

    def _direct_mouse_event(self, buf: bytes | bytearray, pos: int, avail: int) -> int:
        # KasmVNC DirectMouseEvent (readDirectMouseEvent): type, U8 mask, S16 dx, dy, scroll
        # dx, dy: relative motion under pointer lock. A move, a scroll or a button change.
        if avail < 10:
            return -10
        mask = buf[pos + 1]
        moved = buf[pos + 2 : pos + 10] != bytes(8)
        self._unit_input = moved or mask != self._direct_mask
        self._direct_mask = mask
        return 10

    def _client_cut_text(self, buf: bytes | bytearray, pos: int, avail: int) -> int:
        # ClientCutText: type, 3 padding, S32 length, text. A negative length is the extended
        # clipboard form (rfbproto), abs(length) bytes starting with U32 flags.
        if avail < 8:
            return -8
        length = _I32(buf, pos + 4)[0]
        if length >= 0:
            # The plain form is only sent when a person pastes into the client's clipboard box.
            self._unit_input = True
            return 8 + length
        length = -length
        if length < 4:
            # KasmVNC's readExtendedClipboard refuses it too ("Invalid extended clipboard").
            raise _GiveUp(f"extended clipboard message of {length} bytes, shorter than its flags")
        if avail < 9:
            return -9
        actions = buf[pos + 8]
        self._unit_input = not actions & _CLIPBOARD_CAPS and bool(actions & (_CLIPBOARD_NOTIFY | _CLIPBOARD_PROVIDE))
        return 8 + length

    def _qemu(self, buf: bytes | bytearray, pos: int, avail: int) -> int:
        # QEMU client message: type, U8 submessage type, then per submessage (rfbproto).
        if avail < 2:
            return -2
        submessage = buf[pos + 1]
        if submessage == 0:
            # Extended key event: U16 down, U32 keysym, U32 keycode; noVNC's keys when the
            # server has the extension (KasmVNC does).
            self._unit_input = True
            return 12
        if submessage == 1:
            # Audio: U16 operation; 0 enable and 1 disable have nothing more, 2 set format has
            # U8 sample format, U8 channels, U32 frequency. Client settings, not a person.
            if avail < 4:
                return -4
            operation = _U16(buf, pos + 2)[0]
            if operation in (0, 1):
                return 4
            if operation == 2:
                return 10
            raise _GiveUp(f"QEMU audio operation {operation}")
        raise _GiveUp(f"QEMU client submessage {submessage}")

    def _clipboard_entry(self, buf: bytes | bytearray, pos: int, avail: int) -> int:
        # One entry of a KasmVNC BinaryClipboard: U8 mime length, mime, U32 length, data.
        head = 1 + buf[pos] + 4
        if avail < head:
            return -head
        self._entries -= 1
        if not self._entries:
            self._state = _MESSAGES
            self._unit_input = True
        return head + _U32(buf, pos + head - 4)[0]
