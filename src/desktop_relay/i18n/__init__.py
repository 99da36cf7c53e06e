"""Languages: the catalogs (gettext .po under desktop_relay/locale, read with Babel), which
language a request gets, and messages that are translated when they are answered, not when made.

English is the source language (the msgids); German has a catalog. Everything user-facing goes
through here: pages, the scripts' strings, problem details, the words a session ended with.
"""

from .catalogs import DEFAULT_LANGUAGE, LANGUAGES, Language, language
from .negotiation import LANGUAGE_COOKIE, negotiate
from .text import N_, PluralText, Text

__all__ = [
    "DEFAULT_LANGUAGE", "LANGUAGES", "LANGUAGE_COOKIE", "Language", "N_", "PluralText", "Text",
    "language", "negotiate",
]
