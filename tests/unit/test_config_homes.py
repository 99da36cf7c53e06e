"""relay.ini's homes, shares, pool and schedule options: defaults, and every mistake stops
start-up with one precise line."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import MINIMAL, error_of, write

from desktop_relay.config import load_config
from desktop_relay.homes import home_for


def test_a_desktop_keeps_a_per_user_home_by_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    demo = config.desktops["demo"]
    assert (demo.home, demo.home_family, demo.home_path, demo.home_uid) == ("per-user", "default", "/home/kasm-user", 1000)
    assert demo.home_quota is None and demo.pool_size == 0
    assert config.shares == {} and config.schedules == {}


def test_homes_are_named_per_user_and_family_or_per_desktop(tmp_path: Path) -> None:
    text = MINIMAL + "[desktop:code]\nimage = x\ngroups = *\nhome = per-desktop\n[desktop:kiosk]\nimage = x\ngroups = *\nhome = none\n"
    desktops = load_config(write(tmp_path, text)).desktops
    ada, bob = home_for("school", desktops["demo"], "ada"), home_for("school", desktops["demo"], "bob@x y")
    assert ada is not None and bob is not None
    assert ada.volume.startswith("dr-school-home-default-") and ada.volume != bob.volume
    assert "bob" not in bob.volume  # who a pupil is does not show in `docker volume ls`
    code = home_for("school", desktops["code"], "ada")
    assert code is not None and code.key == "d-code" and code.volume != ada.volume
    assert home_for("school", desktops["kiosk"], "ada") is None


def test_a_share_in_the_allowed_roots_is_read(tmp_path: Path) -> None:
    (tmp_path / "srv" / "sheets").mkdir(parents=True)
    text = f"[homes]\nshare_roots = {tmp_path / 'srv'}\n[share:sheets]\npath = {tmp_path / 'srv' / 'sheets'}\ngroups = 7a\n"
    share = load_config(write(tmp_path, text + MINIMAL)).shares["sheets"]
    assert share.path == (tmp_path / "srv" / "sheets").resolve() and share.mount == "Shared/sheets"
    assert share.allows("ada", frozenset({"7a"})) and not share.allows("bob", frozenset({"7b"}))


def test_a_share_that_links_out_of_the_allowed_roots_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "srv" / "link").symlink_to(tmp_path / "secret")
    text = f"[homes]\nshare_roots = {tmp_path / 'srv'}\n[share:x]\npath = {tmp_path / 'srv' / 'link'}\ngroups = *\n"
    assert "[share:x] path: " in error_of(tmp_path, text + MINIMAL)
    assert "is outside [homes] share_roots" in error_of(tmp_path, text + MINIMAL)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[desktop:p]\nimage = x\ngroups = *\npool_size = 2\n", "[desktop:p] pool_size: needs home = none"),
        ("[desktop:p]\nimage = x\ngroups = *\nhome = mine\n", "[desktop:p] home: 'mine': must be none, per-desktop"),
        ("[desktop:p]\nimage = x\ngroups = *\nhome_path = home\n", "[desktop:p] home_path: 'home': must be an absolute"),
        ("[desktop:p]\nimage = x\ngroups = *\nhome_path = /a/../etc\n", "home_path: '/a/../etc': must be an absolute"),
        ("[desktop:p]\nimage = x\ngroups = *\nhome_quota = lots\n", "[desktop:p] home_quota: 'lots': must be a size"),
        ("[share:s]\ngroups = *\n", "[share:s] path: set exactly one of path"),
        ("[share:s]\npath = /srv\nvolume = v\ngroups = *\n", "[share:s] path: set exactly one of path"),
        ("[share:s]\npath = /srv\ngroups = *\n", "[share:s] path: host directories need [homes] share_roots"),
        ("[share:s]\nvolume = a/b\ngroups = *\n", "[share:s] volume: 'a/b' is not a Docker volume name"),
        ("[share:s]\nvolume = v\n", "[share:s] groups: no one would see this share"),
        ("[share:s]\nvolume = v\ngroups = *\ndesktops = nope\n", "[share:s] desktops: there is no [desktop:nope]"),
        ("[share:s]\nvolume = v\ngroups = *\nmount = ../x\n", "[share:s] mount: '../x' must be a path"),
        ("[homes]\nshare_roots = srv\n", "[homes] share_roots: srv is not an absolute path"),
        ("[schedule:a]\ndesktop = demo\ntimes = mon 08:00-08:45\n", "[schedule:a] group: is required"),
        ("[schedule:a]\ngroup = 7a\ndesktop = nope\ntimes = mon 08:00-08:45\n", "[schedule:a] desktop: there is no"),
        ("[schedule:a]\ngroup = 7a\ndesktop = demo\n", "[schedule:a] times: set exactly one of times"),
        ("[schedule:a]\ngroup = 7a\ndesktop = demo\ncalendar = no.ics\n", "[schedule:a] calendar: cannot read"),
        ("[schedule:a]\ngroup = 7a\ndesktop = demo\ntimes = mon 08:00-08:45\ntimezone = Mars/Olympus\n",
         "[schedule:a] timezone: 'Mars/Olympus' is not a time zone"),
        ("[schedule:a]\ngroup = 7a\ndesktop = demo\ntimes = mon 08:00-08:45\nleed = 5m\n", "[schedule:a] leed: unknown key"),
    ],
)
def test_mistakes_in_homes_shares_pools_and_schedules_stop_start_up(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, MINIMAL + text)
