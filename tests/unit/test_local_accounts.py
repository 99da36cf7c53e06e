"""Local accounts: the password file, its command, and authentication off the reactor thread."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import pytest_twisted

from desktop_relay.auth.local import LocalAccounts, PasswordFileError, main, read_password_file, set_account


def test_set_account_writes_argon2id_hashes_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    set_account(path, "anna", "correct horse", frozenset({"pupils", "7b"}), "Anna A.")
    text = path.read_text()
    assert "correct horse" not in text and "$argon2id$" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    account = read_password_file(path)["anna"]
    assert account.groups == {"pupils", "7b"} and account.display_name == "Anna A."


def test_bad_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    path.write_text("# comment\nanna:plaintext:pupils:Anna\n")
    with pytest.raises(PasswordFileError, match=r"passwords:2: expected username:\$argon2id"):
        read_password_file(path)


def test_short_passwords_and_odd_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PasswordFileError, match="at least 8"):
        set_account(tmp_path / "p", "anna", "short", frozenset(), "")
    with pytest.raises(PasswordFileError, match="not a valid user name"):
        set_account(tmp_path / "p", "an:na", "long enough", frozenset(), "")


def test_command_reads_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["set", "ben", str(tmp_path / "passwords"), "--groups", "teachers"]) == 0
    assert "account ben saved" in capsys.readouterr().out
    assert read_password_file(tmp_path / "passwords")["ben"].groups == {"teachers"}


@pytest_twisted.ensureDeferred
async def test_authenticate_right_wrong_and_unknown(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    set_account(path, "anna", "correct horse", frozenset({"pupils"}), "Anna A.")
    accounts = LocalAccounts(path)
    identity = await accounts.authenticate("anna", "correct horse")
    assert identity is not None and identity.user_id == "anna" and identity.groups == {"pupils"}
    assert await accounts.authenticate("anna", "wrong horse") is None
    assert await accounts.authenticate("nobody", "correct horse") is None


@pytest_twisted.ensureDeferred
async def test_file_changes_are_picked_up_and_a_broken_edit_keeps_the_old_accounts(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    set_account(path, "anna", "correct horse", frozenset(), "")
    accounts = LocalAccounts(path)
    set_account(path, "ben", "battery staple", frozenset(), "")
    assert (await accounts.authenticate("ben", "battery staple")) is not None
    path.write_text(path.read_text() + "garbage line that is long enough to change the size\n")
    assert (await accounts.authenticate("anna", "correct horse")) is not None
