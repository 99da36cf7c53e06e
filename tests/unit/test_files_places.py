"""Which homes a user sees in the files panel and what their files container mounts
(desktop_relay/files/places.py): one per home key, the smallest quota, the shares the user may
see in those desktops, read-only, where the first desktop has them."""

from __future__ import annotations

from pathlib import Path

from fakes import desktop

from desktop_relay.config import ShareSettings
from desktop_relay.engine.interface import Mount
from desktop_relay.files import places_for


def share(name: str, groups: str = "*", desktops: str = "", mount: str = "", path: str | None = "/srv/x",
          ) -> ShareSettings:
    return ShareSettings(name=name, path=Path(path) if path else None, volume=None if path else f"vol-{name}",
                         groups=frozenset(groups.split()), users=frozenset(), desktops=frozenset(desktops.split()),
                         mount=mount or f"Shared/{name}")


def test_desktops_of_one_family_share_a_home_and_its_smallest_quota() -> None:
    places = places_for("school", "anna", frozenset({"7b"}), [
        desktop("vscode", home_quota=2_000_000), desktop("ubuntu", home_quota=1_000_000), desktop("kiosk", home="none"),
        desktop("paint", home="per-desktop"),
    ], {})
    assert sorted(places) == ["d-paint", "default"]
    home = places["default"]
    assert home.title == "Ubuntu" and home.quota == 1_000_000
    assert home.home.owner == "anna" and home.home.path == "/home/kasm-user"
    assert home.mounts == (Mount(home.home.volume, "/home/kasm-user", False, "volume"),)
    assert places["d-paint"].quota is None


def test_only_the_shares_a_user_may_see_in_those_desktops_are_mounted_read_only() -> None:
    shares = {
        "maths": share("maths", groups="7b"),
        "staff": share("staff", groups="teachers"),
        "art": share("art", desktops="paint"),
        "library": share("library", mount="/srv/library", path=None),
    }
    places = places_for("school", "anna", frozenset({"7b"}), [desktop("ubuntu"), desktop("paint", home="per-desktop")],
                        shares)
    assert places["default"].shares == (
        Mount("vol-library", "/srv/library", True, "volume"),
        Mount("/srv/x", "/home/kasm-user/Shared/maths", True, "bind"),
    )
    assert places["default"].share_targets == ("/srv/library", "/home/kasm-user/Shared/maths")
    assert [m.target for m in places["d-paint"].shares] == [
        "/home/kasm-user/Shared/art", "/srv/library", "/home/kasm-user/Shared/maths"]


def test_someone_without_desktops_has_no_homes() -> None:
    assert places_for("school", "anna", frozenset(), [], {"maths": share("maths")}) == {}
