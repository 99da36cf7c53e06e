"""The `[site]` section: the school's name, logo and accent colour on every page."""

from __future__ import annotations

import re
from pathlib import Path

import attr

from .values import Reader

# Logos browsers show in an <img>, by suffix; anything else is refused at start-up.
_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".gif": "image/gif", ".webp": "image/webp"}
# A logo is shown small; a bigger file is a mistake (a photo, not a logo).
_MAX_LOGO_BYTES = 1024 * 1024


@attr.s(frozen=True, auto_attribs=True)
class SiteSettings:
    """The `[site]` section: the school's name, logo and accent colour on every page."""

    name: str = "Desktops"
    # The logo's file and its bytes (read once at start-up; served at /site/logo).
    logo: Path | None = None
    logo_image: bytes = attr.ib(default=b"", repr=False)
    accent: str = "#1d3557"

    @property
    def logo_type(self) -> str:
        """The logo's media type, by its suffix (checked when the file was read)."""
        return _IMAGE_TYPES[self.logo.suffix.lower()] if self.logo else ""



SITE_DEFAULTS = {"name": "Desktops", "logo": "", "accent": "#1d3557"}


def accent(text: str) -> str:
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", text):
        raise ValueError("must be a colour written #rgb or #rrggbb, such as #1d3557")
    return text.lower()


def site_name(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    if len(text) > 80 or not text.isprintable():
        raise ValueError("must be one line of at most 80 characters")
    return text


def read_site(reader: Reader) -> SiteSettings:
    """The [site] section; the logo file is read here, so a wrong one stops start-up."""
    k = SITE_DEFAULTS
    logo: Path | None = None
    image = b""
    if reader.raw("site", "logo", k):
        logo = reader.path_value("site", "logo", k)
        if logo.suffix.lower() not in _IMAGE_TYPES:
            raise reader.fail("site", "logo", f"{logo} is not an image: use one of {', '.join(sorted(_IMAGE_TYPES))}")
        try:
            with logo.open("rb") as f:
                image = f.read(_MAX_LOGO_BYTES + 1)
        except OSError as e:
            raise reader.fail("site", "logo", f"cannot read {logo}: {e.strerror}") from None
        if not image:
            raise reader.fail("site", "logo", f"{logo} is empty")
        if len(image) > _MAX_LOGO_BYTES:
            raise reader.fail("site", "logo", f"{logo} is larger than 1 MB")
    return SiteSettings(
        name=reader.value("site", "name", k, site_name),
        logo=logo,
        logo_image=image,
        accent=reader.value("site", "accent", k, accent),
    )
