"""The relay's HTML pages: Jinja templates (web/templates) filled in the reader's language, with
the school's name, logo and accent colour ([site]), and the language switch that remembers a choice.

The pages' scripts get their strings as JSON in the page (id "messages", read by static/i18n.js),
so they need no request of their own and the CSP (default-src 'self') allows them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ..config import SiteSettings
from ..i18n import LANGUAGE_COOKIE, LANGUAGES, Language, PluralText, Text, language
from .responses import redirect, request_language

# For the relay's own pages. The desktop's web client is served from the container with its
# own headers; these are not applied there.
PAGE_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"Cache-Control": b"no-store",
    # Pages are in the language of the cookie or Accept-Language.
    b"Vary": b"Accept-Language, Cookie",
}
# The logo is the admin's file; opened on its own (an SVG), it may not run anything here.
_LOGO_HEADERS = {
    b"Content-Security-Policy": b"default-src 'none'; style-src 'unsafe-inline'; sandbox",
    b"X-Content-Type-Options": b"nosniff",
    b"Cache-Control": b"public, max-age=3600",
}
# A remembered language choice outlives web sessions: a year.
_LANGUAGE_COOKIE_AGE = 365 * 86400


def _contrast_text(accent: str) -> str:
    """Black or white, whichever reads better on the accent colour (WCAG relative luminance)."""
    digits = accent[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = []
    for i in (0, 2, 4):
        c = int(digits[i:i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    # Contrast with white is 1.05/(L+0.05), with black (L+0.05)/0.05: the larger one wins.
    return "#ffffff" if 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 else "#000000"


class Pages:
    """Renders the pages for one site; serves its stylesheet of colours, its logo and the switch."""

    def __init__(self, site: SiteSettings | None = None, secure_cookies: bool = False) -> None:
        self.site = site or SiteSettings()
        self._secure = secure_cookies
        # The catalogs are read now, at start-up: a broken one stops the relay, not a page.
        for code in LANGUAGES:
            language(code)
        self._templates = Environment(
            loader=PackageLoader("desktop_relay.web", "templates"),
            autoescape=select_autoescape(default=True), auto_reload=False,
        )

    def render(self, request: IRequest, template: str, status: int = 200, **values: Any) -> bytes:
        """A page from web/templates in the request's language; messages among values are
        translated (Text, or a msgid), everything is HTML-escaped."""
        words = request_language(request)
        page = self._templates.get_template(template).render(
            _=lambda msgid, **v: _markup(words, words.words(msgid), v),
            ngettext=lambda singular, plural, count, **v: _markup(
                words, words.plural_words(singular, plural, count), {**v, "count": count}),
            lang=words.code,
            language_links=self._language_links(request, words),
            messages=Markup(_script_json({"lang": words.code, "messages": words.script_messages})),
            site_name=self.site.name,
            has_logo=bool(self.site.logo_image),
            **{k: words.text(v) if isinstance(v, (Text, PluralText)) else v for k, v in values.items()},
        )
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Language", words.code.encode("ascii"))
        for name, value in PAGE_HEADERS.items():
            request.setHeader(name, value)
        return page.encode("utf-8")

    def site_css(self, request: IRequest) -> bytes:
        """The site's colours as CSS custom properties (the CSP allows no inline style)."""
        request.setHeader(b"Content-Type", b"text/css; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return (f":root {{ --accent: {self.site.accent}; --accent-text: {_contrast_text(self.site.accent)}; }}\n"
                ).encode("ascii")

    def logo(self, request: IRequest) -> bytes:
        """The school's logo file as configured ([site] logo); 404 without one."""
        if not self.site.logo_image:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"no logo configured\n"
        request.setHeader(b"Content-Type", self.site.logo_type.encode("ascii"))
        for name, value in _LOGO_HEADERS.items():
            request.setHeader(name, value)
        return self.site.logo_image

    def switch_language(self, request: Request, code: str, target: str) -> bytes:
        """Remember a language choice in the `lang` cookie and go back to the page it was made on."""
        request.addCookie(LANGUAGE_COOKIE, code.encode("ascii"), path=b"/", max_age=str(_LANGUAGE_COOKIE_AGE),
                          httpOnly=True, secure=self._secure, sameSite=b"lax")
        return redirect(request, target)

    def _language_links(self, request: IRequest, words: Language) -> list[dict[str, Any]]:
        here = request.uri.decode("utf-8", "replace")
        return [
            {"code": code, "name": name, "current": code == words.code,
             "href": f"/lang/{code}?" + urlencode({"next": here})}
            for code, name in LANGUAGES.items()
        ]


def _markup(words: Language, translated: str, values: dict[str, Any]) -> Markup:
    """A translation for a template: its words escaped, then the placeholders filled with values
    escaped too, unless they are markup the template made itself (a <strong> around a name)."""
    template = Markup(escape(translated))
    return template.format_map(words.formatted(values)) if values else template


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' that could end or confuse it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
