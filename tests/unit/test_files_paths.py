"""The files panel's path rules: which names a URL may carry, what a resolved path must stay
inside, and what the read-only shares forbid (desktop_relay/files/paths.py)."""

from __future__ import annotations

import pytest

from desktop_relay.files.paths import BadPath, check_name, contained, deletable, files_path, in_share

HOME = "/home/kasm-user"
SHARES = ["/home/kasm-user/Shared/maths", "/srv/library"]


def test_url_segments_become_a_path_inside_the_home() -> None:
    path = files_path(HOME, [b"Documents", "Übung 1.txt".encode()])
    assert path.inside == "/home/kasm-user/Documents/Übung 1.txt"
    assert path.relative == "Documents/Übung 1.txt"
    assert path.name == "Übung 1.txt"
    assert path.parent.inside == "/home/kasm-user/Documents"


def test_the_home_itself_and_a_folder_with_its_trailing_slash() -> None:
    assert files_path(HOME, []).inside == HOME
    assert files_path(HOME, [b""]).inside == HOME
    assert files_path(HOME, [b"Documents", b""]).segments == ("Documents",)


@pytest.mark.parametrize("segments", [
    [b".."], [b"Documents", b".."], [b"..", b"etc", b"passwd"], [b"."], [b"a", b".", b"b"],
])
def test_dot_and_dot_dot_are_refused(segments: list[bytes]) -> None:
    with pytest.raises(BadPath):
        files_path(HOME, segments)


@pytest.mark.parametrize("segments", [
    [b"a", b"", b"b"],  # a//b: one spelling per path
    [b"etc/passwd"],  # %2F decoded inside a segment
    [b"/etc"],
    [b"a\0b"],
    [b"\xff"],  # not UTF-8
    [b"x" * 256],
])
def test_empty_slashed_nul_undecodable_and_overlong_names_are_refused(segments: list[bytes]) -> None:
    with pytest.raises(BadPath):
        files_path(HOME, segments)


def test_an_overlong_path_is_refused() -> None:
    with pytest.raises(BadPath):
        files_path(HOME, [b"x" * 200] * 21)


def test_a_new_name_must_be_a_plain_name() -> None:
    assert check_name("Neuer Ordner") == "Neuer Ordner"
    for name in ("", ".", "..", "a/b", "a\0"):
        with pytest.raises(BadPath):
            check_name(name)
    assert files_path(HOME, [b"Documents"]).child("Notes").inside == "/home/kasm-user/Documents/Notes"


@pytest.mark.parametrize("resolved", [HOME, HOME + "/Documents", HOME + "/Shared/maths/a.pdf"])
def test_resolved_paths_in_the_home_are_contained(resolved: str) -> None:
    assert contained(HOME, resolved)


@pytest.mark.parametrize("resolved", ["/etc/passwd", "/home", "/home/kasm-user2/x", "/", "/home/kasm-usera"])
def test_a_symlink_leading_out_of_the_home_is_not_contained(resolved: str) -> None:
    assert not contained(HOME, resolved)


def test_shares_are_read_only_at_and_below_their_mount_point() -> None:
    assert in_share(HOME + "/Shared/maths", SHARES)
    assert in_share(HOME + "/Shared/maths/sheet.pdf", SHARES)
    assert not in_share(HOME + "/Shared/mathsbook.pdf", SHARES)
    assert not in_share(HOME + "/Shared", SHARES)


def test_the_home_a_share_and_a_folder_holding_one_cannot_be_deleted() -> None:
    assert not deletable(HOME, HOME, SHARES)
    assert not deletable(HOME + "/Shared/maths/sheet.pdf", HOME, SHARES)
    assert not deletable(HOME + "/Shared", HOME, SHARES)
    assert deletable(HOME + "/Shared/notes.txt", HOME, SHARES)
    assert deletable(HOME + "/Documents", HOME, SHARES)
