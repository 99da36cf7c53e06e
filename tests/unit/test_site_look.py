"""[site]: the school's name, logo and accent colour. Wrong values stop start-up with one line;
right ones appear on every page, the logo at /site/logo and the colour in /site/site.css."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import MINIMAL, error_of, write
from twisted.web.test.requesthelper import DummyRequest

from desktop_relay.config import SiteSettings, load_config
from desktop_relay.web.pages import Pages

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a3d4a0c40000000049454e44ae426082")


def test_the_defaults_are_neutral(tmp_path: Path) -> None:
    site = load_config(write(tmp_path, MINIMAL)).site
    assert site == SiteSettings() and site.name == "Desktops" and site.logo is None and site.accent == "#1d3557"


def test_name_logo_and_accent_are_read(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(PNG)
    site = load_config(write(tmp_path, "[site]\nname = Gesamtschule Am See\nlogo = logo.png\naccent = #C03\n"
                                       + MINIMAL)).site
    assert site.name == "Gesamtschule Am See" and site.accent == "#c03"
    assert site.logo == tmp_path / "logo.png" and site.logo_image == PNG and site.logo_type == "image/png"


@pytest.mark.parametrize(("site", "expected"), [
    ("accent = red", "[site] accent: 'red': must be a colour written #rgb or #rrggbb"),
    ("accent = #12345", "[site] accent: '#12345': must be a colour"),
    ("accent = #12345g", "[site] accent: '#12345g': must be a colour"),
    ("accent = #123;}body{x", "[site] accent: '#123;}body{x': must be a colour"),
    ("name =", "[site] name: '': must not be empty"),
    ("logo = missing.png", "[site] logo: cannot read"),
    ("logo = logo.txt", "[site] logo:"),
    ("logo = folder.png", "[site] logo: cannot read"),
])
def test_a_wrong_site_value_stops_start_up(tmp_path: Path, site: str, expected: str) -> None:
    (tmp_path / "logo.txt").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    message = error_of(tmp_path, f"[site]\n{site}\n" + MINIMAL)
    assert expected in message
    if "logo.txt" in site:
        assert "is not an image: use one of .gif, .jpeg, .jpg, .png, .svg, .webp" in message


def test_an_unreadable_logo_stops_start_up(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text("<svg/>")
    logo.chmod(0)
    try:
        with logo.open("rb"):
            pytest.skip("this user (root) reads files whatever their mode")
    except PermissionError:
        pass
    assert "[site] logo: cannot read" in error_of(tmp_path, "[site]\nlogo = logo.svg\n" + MINIMAL)


def test_the_colour_stylesheet_picks_readable_text_on_the_accent() -> None:
    dark = Pages(SiteSettings(accent="#1d3557")).site_css(DummyRequest([b""])).decode()
    light = Pages(SiteSettings(accent="#ffd166")).site_css(DummyRequest([b""])).decode()
    assert "--accent: #1d3557;" in dark and "--accent-text: #ffffff;" in dark
    assert "--accent: #ffd166;" in light and "--accent-text: #000000;" in light


def test_the_logo_is_served_with_its_type_and_cannot_run_script() -> None:
    request = DummyRequest([b""])
    body = Pages(SiteSettings(logo=Path("/etc/logo.svg"), logo_image=b"<svg/>")).logo(request)
    assert body == b"<svg/>"
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"image/svg+xml"]
    assert b"sandbox" in request.responseHeaders.getRawHeaders(b"content-security-policy")[0]
    missing = DummyRequest([b""])
    Pages().logo(missing)
    assert missing.responseCode == 404
