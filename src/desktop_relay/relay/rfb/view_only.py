"""A teacher's look at a pupil's desktop, view-only by the relay: the viewer's client-to-server
RFB stream with every input message removed, followed with the classifier's parser
(classifier.py), which this module shares the message vocabulary with."""

from __future__ import annotations

from .classifier import _CLIENT_INIT, _CLIPBOARD_ENTRY, _MESSAGES, InputClassifier

__all__ = ["FilterFailed", "ViewOnlyFilter"]

# What a viewer's stream may not carry, by message type: KeyEvent, PointerEvent (both forms),
# ClientCutText (every form, extended clipboard too), xvp, SetDesktopSize (a viewer must not
# resize the pupil's screen), KasmVNC BinaryClipboard and DirectMouseEvent. The QEMU message
# (255) is decided by its submessage: only the extended key event (0) is input.
_VIEWER_DROPS = frozenset({4, 5, 6, 180, 188, 250, 251})
_QEMU = 255
_SET_DESKTOP_SIZE = 251
_BINARY_CLIPBOARD = 180
_QEMU_KEY = 0
# ClientInit's shared flag, forced on: a viewer's ClientInit must never make the server drop
# the pupil's own connection.
_SHARED = b"\x01"


class FilterFailed(Exception):
    """The viewer's stream holds something the parser cannot follow: the bridge must close."""


class ViewOnlyFilter:
    """Removes every input message from a client-to-server RFB stream, split and merged
    arbitrarily across WebSocket messages, and passes the rest byte-exact; forces ClientInit's
    shared flag to 1. It fails closed: whatever the parser cannot follow raises FilterFailed
    (and every later piece too), so nothing unparsed ever reaches the desktop."""

    __slots__ = ("_buf", "_drop", "_drop_entries", "_failed", "_parser", "_pass", "dropped", "input_allowed")

    def __init__(self) -> None:
        self._parser = InputClassifier()
        # The start of a unit whose length is not known yet.
        self._buf = b""
        # Bytes of the current unit still to pass on, or to drop.
        self._pass = 0
        self._drop = 0
        self._failed: str | None = None
        self._drop_entries = True
        #: How many input messages were removed.
        self.dropped = 0
        #: Whether input passes after all (a teacher given control): the stream is still
        #: followed, so removing can resume at the next message when control is taken back.
        #: SetDesktopSize is removed even then: the pupil's screen keeps its size.
        self.input_allowed = False

    def feed(self, data: bytes) -> bytes:
        """The bytes of this piece that may reach the desktop (possibly none)."""
        if self._failed is not None:
            raise FilterFailed(self._failed)
        try:
            return self._feed(data)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            self._failed = str(e) or type(e).__name__
            raise FilterFailed(self._failed) from None

    def _feed(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self._pass:
                take = min(self._pass, end - pos)
                out += data[pos : pos + take]
                self._pass -= take
                pos += take
                continue
            if self._drop:
                take = min(self._drop, end - pos)
                self._drop -= take
                pos += take
                continue
            buf = self._buf + data[pos:] if self._buf else data[pos:]
            consumed_before = len(self._buf)
            parser = self._parser
            state = parser._state
            length = parser._unit(buf, 0, len(buf), parser._seen + pos - consumed_before)
            if length < 0:
                self._buf = bytes(buf)
                break
            drop = False
            replacement: bytes | None = None
            if state == _MESSAGES:
                kind = buf[0]
                drop = kind == _SET_DESKTOP_SIZE or not self.input_allowed and (
                    kind in _VIEWER_DROPS or (kind == _QEMU and buf[1] == _QEMU_KEY))
            elif state == _CLIPBOARD_ENTRY:
                drop = self._drop_entries
            elif state == _CLIENT_INIT:
                replacement = _SHARED
            if state == _MESSAGES and buf[0] == _BINARY_CLIPBOARD:
                # Its entries follow as units of their own: they go where their header went.
                self._drop_entries = drop
            if drop and state == _MESSAGES:
                self.dropped += 1
            have = min(length, len(buf))
            if replacement is not None:
                out += replacement
            elif not drop:
                out += buf[:have]
            if length > have:
                if drop:
                    self._drop = length - have
                else:
                    self._pass = length - have
            self._buf = b""
            pos += have - consumed_before
        self._parser._seen += end
        return bytes(out)
