"""Query parameters and cursor pagination for the admin API's lists.

A list answers `{"items": [...], "next_cursor": "..." | null}`. `?limit=N` (1..500, default 100)
sets the page size, `?cursor=` (the previous page's next_cursor) goes on from there. A cursor is
base64url JSON of the previous page's last item's sort key, so pages stay right while new items
arrive. Unknown parameters are refused (400 unknown-parameter), so a misspelt filter never
silently lists everything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attr
from twisted.web.iweb import IRequest

from ...i18n import N_
from ..responses import Problem

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
PAGING_PARAMETERS = ("limit", "cursor")

T = TypeVar("T")


def invalid_parameter(name: str, detail: str, **values: Any) -> Problem:
    """400 for a parameter whose value cannot be used; the detail says what it must be."""
    return Problem(400, "invalid-parameter", N_("Invalid parameter"), detail, values={"name": name, **values},
                   parameter=name)


def query_parameters(request: IRequest, allowed: Collection[str]) -> dict[str, str]:
    """The request's query parameters by name, each given once: 400 unknown-parameter for a
    name not in `allowed` (limit and cursor are always allowed), 400 invalid-parameter for one
    given twice or not in UTF-8."""
    parameters: dict[str, str] = {}
    for raw_name, values in (request.args or {}).items():
        name = raw_name.decode("utf-8", "replace")
        if name not in allowed and name not in PAGING_PARAMETERS:
            raise Problem(400, "unknown-parameter", N_("Unknown parameter"),
                          N_("{name} is not a parameter of this list."), values={"name": repr(name)}, parameter=name)
        if len(values) != 1:
            raise invalid_parameter(name, N_("{name} may be given once."))
        try:
            parameters[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_parameter(name, N_("{name} is not UTF-8 text.")) from None
    return parameters


def number_parameter(parameters: Mapping[str, str], name: str) -> float | None:
    """A parameter that is a number of seconds, zero or more (None when absent)."""
    text = parameters.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise invalid_parameter(name, N_("{name} must be a number of seconds, 0 or more."))
    return value


def time_parameter(parameters: Mapping[str, str], name: str) -> float | None:
    """A point in time, as epoch seconds (1764582000) or ISO 8601 with a zone
    (2026-12-01T10:00:00Z); epoch seconds out. None when absent."""
    text = parameters.get(name)
    if text is None:
        return None
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _iso_time(text)
    except ValueError:
        raise invalid_parameter(
            name, N_("{name} must be epoch seconds or an ISO 8601 time with a zone, such as 2026-12-01T10:00:00Z.")
        ) from None


def _iso_time(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("no time zone")
    return moment.timestamp()


@attr.s(frozen=True, auto_attribs=True)
class PageRequest:
    """Which page was asked for: its size, and the sort key of the previous page's last item."""

    limit: int
    after: tuple[Any, ...] | None


def page_request(parameters: Mapping[str, str], key_types: Sequence[type]) -> PageRequest:
    """The page asked for: 400 invalid-parameter for a limit outside 1..500, 400 invalid-cursor
    for a cursor that is not one of ours for a key of these types (float accepts whole numbers)."""
    limit = DEFAULT_LIMIT
    if "limit" in parameters:
        text = parameters["limit"]
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
            raise invalid_parameter("limit", N_("limit must be a whole number from 1 to {max}."), max=MAX_LIMIT)
        limit = int(text)
    cursor = parameters.get("cursor")
    return PageRequest(limit, None if cursor is None else decode_cursor(cursor, key_types))


def encode_cursor(key: Sequence[Any]) -> str:
    """The cursor that continues after an item with this sort key."""
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, key_types: Sequence[type]) -> tuple[Any, ...]:
    """The sort key in a cursor; 400 invalid-cursor unless it holds one of these types."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]]
        key = None
    if not (isinstance(key, list) and len(key) == len(key_types)
            and all(_is(value, wanted) for value, wanted in zip(key, key_types, strict=True))):
        raise Problem(400, "invalid-cursor", N_("Invalid cursor"),
                      N_("The cursor is not one this list gave out; start again without it."))
    return tuple(float(v) if wanted is float else v for v, wanted in zip(key, key_types, strict=True))


def _is(value: Any, wanted: type) -> bool:
    if isinstance(value, bool):
        return False
    if wanted is float:
        return isinstance(value, int | float)
    return isinstance(value, wanted)


def page(
    found: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]], view: Callable[[T], Any]
) -> dict[str, Any]:
    """A page from up to limit + 1 items found in order (one more than a page says there is a
    next one): `{"items": [...], "next_cursor": ...}`."""
    shown = found[:limit]
    more = len(found) > limit
    return {
        "items": [view(item) for item in shown],
        "next_cursor": encode_cursor(key(shown[-1])) if more else None,
    }
