"""Which language a request gets: the remembered switch (the `lang` cookie) over the browser's
Accept-Language (RFC 9110 §12.5.4, with q-values) over English."""

from __future__ import annotations

import re

from babel import negotiate_locale

from .catalogs import DEFAULT_LANGUAGE, LANGUAGES

# Set by /lang/CODE, the switch on every page.
LANGUAGE_COOKIE = b"lang"
# A language range with an optional weight: "de-DE", "en;q=0.8", "*;q=0.1".
_RANGE = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def accepted_languages(header: str) -> list[str]:
    """The header's language ranges, most wanted first; ranges with q=0 or malformed are dropped."""
    weighted = []
    for position, item in enumerate(header.split(",")):
        match = _RANGE.match(item)
        if not match:
            continue
        weight = float(match.group(2)) if match.group(2) is not None else 1.0
        if weight > 0:
            # Equal weights keep the header's order.
            weighted.append((-weight, position, match.group(1)))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language code for a request: a known cookie value, else the best Accept-Language match, else en."""
    if cookie in LANGUAGES:
        return cookie
    if accept_language:
        wanted = accepted_languages(accept_language)
        best = negotiate_locale(wanted, list(LANGUAGES), sep="-")
        if best is None and "*" in wanted:
            best = DEFAULT_LANGUAGE
        if best is not None:
            return best
    return DEFAULT_LANGUAGE
