"""Messages made now and translated later: the msgid and its values travel to the answer, which
knows the reader's language. The three names here are the Python keywords Babel extracts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attr


def N_(msgid: str) -> str:
    """Mark a constant msgid for extraction; it is translated where it is shown."""
    return msgid


@attr.s(frozen=True, init=False)
class Text:
    """A msgid with the values for its {placeholders}; str() gives the English words."""

    msgid: str = attr.ib()
    values: Mapping[str, Any] = attr.ib()

    def __init__(self, msgid: str, **values: Any) -> None:
        self.__attrs_init__(msgid, values)

    def __str__(self) -> str:
        return self.msgid.format_map(self.values)


@attr.s(frozen=True, init=False)
class PluralText:
    """A message whose words depend on a count, which is also its {count} placeholder."""

    singular: str = attr.ib()
    plural: str = attr.ib()
    count: int = attr.ib()
    values: Mapping[str, Any] = attr.ib()

    def __init__(self, singular: str, plural: str, count: int, **values: Any) -> None:
        self.__attrs_init__(singular, plural, count, values)

    def __str__(self) -> str:
        return (self.singular if self.count == 1 else self.plural).format_map({**self.values, "count": self.count})
