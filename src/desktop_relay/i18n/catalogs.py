"""The translations: each language's gettext catalog (locale/LANG/LC_MESSAGES/desktop_relay.po),
read with Babel once per process, and what a page or an answer needs from it.

The .po files are read as they are shipped (no compiled .mo to keep in step): a fresh clone and
`pip install` is all a deployment needs. English is the source language and has no catalog.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from .text import PluralText, Text

DOMAIN = "desktop_relay"
DEFAULT_LANGUAGE = "en"
# Each language's own name, as the switch shows it.
LANGUAGES = {"en": "English", "de": "Deutsch"}
# Placeholders in msgids: {name}, {count}.
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# Stored words are matched back to their msgid at most this deep (a reason inside a reason).
_STORED_DEPTH = 3


class Language:
    """One language's translations, and how its locale writes numbers."""

    def __init__(self, code: str, translations: NullTranslations, messages: Mapping[str, str | list[str]],
                 templates: list[tuple[re.Pattern[str], str | tuple[str, str]]]) -> None:
        self.code = code
        self.locale = Locale.parse(code)
        self._translations = translations
        self._templates = templates
        #: msgid -> translation (a list of plural forms for a plural msgid): the scripts' strings.
        self.script_messages = messages

    def gettext(self, msgid: str, **values: Any) -> str:
        """The translation of msgid with its placeholders filled (English: msgid itself)."""
        words = self._translations.gettext(msgid)
        return words.format_map(self.formatted(values)) if values else words

    def ngettext(self, singular: str, plural: str, count: int, **values: Any) -> str:
        """The translation for this count, with {count} and the other placeholders filled."""
        return self.plural_words(singular, plural, count).format_map(self.formatted({**values, "count": count}))

    def words(self, msgid: str) -> str:
        """The translation of msgid, its placeholders left to fill (a template escapes first)."""
        return self._translations.gettext(msgid)

    def plural_words(self, singular: str, plural: str, count: int) -> str:
        """The translation for this count, its placeholders left to fill."""
        return self._translations.ngettext(singular, plural, count)

    def formatted(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Placeholder values with their numbers written as this locale writes them."""
        return {
            name: self.number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            for name, value in values.items()
        }

    def text(self, message: str | Text | PluralText) -> str:
        """A message in this language: a msgid, or a Text/PluralText with its values."""
        if isinstance(message, Text):
            return self.gettext(message.msgid, **message.values)
        if isinstance(message, PluralText):
            return self.ngettext(message.singular, message.plural, message.count, **message.values)
        return self.gettext(message) if message else ""

    def stored(self, words: str | None) -> str | None:
        """Words stored in English (a session's reason) in this language: matched back to their
        msgid and values; words that match no msgid (a container's log line) stay as they are."""
        return self._stored(words, _STORED_DEPTH) if words and self.code != DEFAULT_LANGUAGE else words

    def _stored(self, words: str, depth: int) -> str:
        best: tuple[int, re.Match[str], str | tuple[str, str]] | None = None
        for pattern, msgid in self._templates:
            match = pattern.fullmatch(words)
            # The msgid with most fixed words wins: "{count} minutes" must not take a whole sentence.
            if match and (best is None or len(pattern.pattern) > best[0]):
                best = (len(pattern.pattern), match, msgid)
        if best is None:
            return words
        _, match, msgid = best
        values: dict[str, Any] = {
            name: (value if depth <= 1 else self._stored(value, depth - 1))
            for name, value in match.groupdict().items()
        }
        if isinstance(msgid, tuple):
            return self.ngettext(msgid[0], msgid[1], int(values.pop("count")), **values)
        return self.gettext(msgid, **values) if values else self.gettext(msgid)

    def number(self, value: float) -> str:
        """A number as this locale writes it (1,234.5 / 1.234,5)."""
        return format_decimal(value, locale=self.locale)


def catalog_path(code: str) -> Any:
    """Where a language's .po file is shipped (an importlib.resources Traversable)."""
    return files("desktop_relay").joinpath("locale", code, "LC_MESSAGES", f"{DOMAIN}.po")


@cache
def language(code: str) -> Language:
    """The Language for a code in LANGUAGES, read once per process."""
    if code not in LANGUAGES:
        raise KeyError(code)
    if code == DEFAULT_LANGUAGE:
        return Language(code, NullTranslations(), {}, [])
    with catalog_path(code).open("rb") as po:
        catalog = read_po(po, locale=code, domain=DOMAIN)
    compiled = io.BytesIO()
    # Babel's own Translations class reads the .mo form; fuzzy entries are left out, as gettext does.
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    translations = Translations(compiled, domain=DOMAIN)
    messages: dict[str, str | list[str]] = {}
    templates: list[tuple[re.Pattern[str], str | tuple[str, str]]] = []
    for message in catalog:
        if not message.id or message.fuzzy or not message.string:
            continue
        if isinstance(message.id, tuple):
            singular, plural = message.id
            if any(path.endswith(".js") for path, _ in message.locations):
                messages[singular] = list(message.string)
            for form in (singular, plural):
                templates.append((_template(form), (singular, plural)))
        else:
            msgid, words = str(message.id), str(message.string)
            if any(path.endswith(".js") for path, _ in message.locations):
                messages[msgid] = words
            if any(path.endswith(".py") for path, _ in message.locations):
                templates.append((_template(msgid), msgid))
    return Language(code, translations, messages, templates)


def _template(msgid: str) -> re.Pattern[str]:
    """A pattern matching the English words of msgid, capturing its placeholders by name."""
    pattern, position = [], 0
    for match in PLACEHOLDER.finditer(msgid):
        pattern.append(re.escape(msgid[position:match.start()]))
        name = match.group(1)
        pattern.append(rf"(?P<{name}>\d+)" if name == "count" else rf"(?P<{name}>.+?)")
        position = match.end()
    pattern.append(re.escape(msgid[position:]))
    return re.compile("".join(pattern), re.DOTALL)
