"""Reading pixels out of the PNG screenshots Chromium takes, with the stdlib only.

Chromium writes 8-bit RGB or RGBA, non-interlaced PNGs; that is all this decodes (anything else
fails loudly). Enough to ask "what colour is the desktop here" without an imaging library.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter


class Image:
    """An RGB image: ``width``, ``height`` and ``pixel(x, y)``."""

    def __init__(self, width: int, height: int, rows: list[bytes], channels: int) -> None:
        self.width = width
        self.height = height
        self._rows = rows
        self._channels = channels

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = x * self._channels
        r, g, b = self._rows[y][i:i + 3]
        return (r, g, b)

    def colours(self, left: int, top: int, right: int, bottom: int, step: int = 4) -> Counter[tuple[int, int, int]]:
        """How often each colour occurs in a box, sampling every step-th pixel."""
        return Counter(self.pixel(x, y) for y in range(top, bottom, step) for x in range(left, right, step))

    def share(self, colour: tuple[int, int, int], box: tuple[int, int, int, int], tolerance: int = 8) -> float:
        """The fraction of sampled pixels in box within tolerance of colour."""
        counts = self.colours(*box)
        near = sum(n for c, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(c, colour, strict=True)))
        return near / max(1, sum(counts.values()))


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert header is not None, "PNG without IHDR"
    width, height, depth, colour_type, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour_type)
    assert depth == 8 and channels and not interlace, f"unsupported PNG: {header}"
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return Image(width, height, rows, channels)
