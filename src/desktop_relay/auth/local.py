"""Local accounts: a password file of argon2id hashes, and the command that edits it.

File format, one account a line (`#` starts a comment):
    username:$argon2id$...:group1,group2:Display Name
Usage: python -m desktop_relay.auth.local set USER [--groups g1,g2] [--name "Display"] FILE
(reads the password from stdin or asks for it).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from pathlib import Path

import attr
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from . import Identity, IPasswordAuthenticator

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name costs the same time as a
# wrong password and names cannot be probed by timing.
_DUMMY_HASH = _hasher.hash("desktop-relay: no such user")


class PasswordFileError(Exception):
    """The password file is missing or has a malformed line."""


@attr.s(frozen=True, auto_attribs=True)
class LocalAccount:
    """One line of the password file."""

    username: str
    password_hash: str = attr.ib(repr=False)
    groups: frozenset[str]
    display_name: str

    def line(self) -> str:
        return f"{self.username}:{self.password_hash}:{','.join(sorted(self.groups))}:{self.display_name}"


def read_password_file(path: Path) -> dict[str, LocalAccount]:
    """Parse the password file; PasswordFileError names the line that is wrong."""
    accounts: dict[str, LocalAccount] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PasswordFileError(f"{path}: cannot read password file: {e.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(":", 3)
        if len(parts) < 2 or not _USERNAME.match(parts[0]) or not parts[1].startswith("$argon2"):
            raise PasswordFileError(f"{path}:{number}: expected username:$argon2id$...:groups:name")
        groups = frozenset(g for g in (parts[2] if len(parts) > 2 else "").split(",") if g)
        name = parts[3] if len(parts) > 3 and parts[3] else parts[0]
        accounts[parts[0]] = LocalAccount(parts[0], parts[1], groups, name)
    return accounts


@implementer(IPasswordAuthenticator)
class LocalAccounts:
    """Authenticates against the password file, re-reading it when it changes on disk."""

    _log = Logger()

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[float, int] | None = None
        self._accounts: dict[str, LocalAccount] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self._path.stat()
        except OSError as e:
            raise PasswordFileError(f"{self._path}: cannot read password file: {e.strerror}") from None
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            self._accounts = read_password_file(self._path)
            self._stamp = stamp

    def authenticate(self, username: str, password: str) -> Deferred[Identity | None]:
        try:
            self._reload()
        except PasswordFileError as e:
            # Keep serving with the accounts we have: a half-edited file must not lock everyone out.
            self._log.warn("keeping the previous accounts: {problem}", problem=str(e))
        account = self._accounts.get(username)
        # argon2 is deliberately slow (tens of ms): verify in a thread, off the reactor.
        return deferToThread(self._verify, account, password)

    @staticmethod
    def _verify(account: LocalAccount | None, password: str) -> Identity | None:
        try:
            _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if account is None:
            return None
        return Identity(account.username, account.display_name, account.groups)


def set_account(path: Path, username: str, password: str, groups: frozenset[str], name: str) -> None:
    """Add or replace one account, writing the file atomically with mode 0600."""
    if not _USERNAME.match(username):
        raise PasswordFileError(f"{username!r} is not a valid user name")
    if len(password) < 8:
        raise PasswordFileError("the password must have at least 8 characters")
    accounts = read_password_file(path) if path.exists() else {}
    accounts[username] = LocalAccount(username, _hasher.hash(password), groups, name or username)
    text = "# desktop-relay local accounts: username:argon2id hash:groups:display name\n"
    text += "".join(account.line() + "\n" for account in accounts.values())
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Command line: add or change a local account."""
    parser = argparse.ArgumentParser(prog="python -m desktop_relay.auth.local")
    sub = parser.add_subparsers(dest="command", required=True)
    setter = sub.add_parser("set", help="add an account or change its password and groups")
    setter.add_argument("username")
    setter.add_argument("file", type=Path, help="the password file (relay.ini [auth] password_file)")
    setter.add_argument("--groups", default="", help="comma-separated groups")
    setter.add_argument("--name", default="", help="display name")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.username}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    groups = frozenset(g for g in args.groups.split(",") if g)
    try:
        set_account(args.file, args.username, password, groups, args.name)
    except PasswordFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"account {args.username} saved in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
