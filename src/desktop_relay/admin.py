"""The admin command: bearer tokens for the admin API, made, listed and revoked in the relay's
database (relay.ini [relay] database). A new token is printed once; only its hash is kept.

Usage: python -m desktop_relay.admin token create NAME --scope read|write [--config relay.ini]
       python -m desktop_relay.admin token list [--config relay.ini]
       python -m desktop_relay.admin token revoke NAME [--config relay.ini]
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import react

from .auth.websessions import token_hash
from .config import ConfigError, load_config
from .store import AdminToken, SQLiteStore, StoreError, TokenNameTaken
from .web.admin.auth import SCOPES

# Names appear in the audit as token:<name> and on command lines: plain words only.
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else "-"


@inlineCallbacks
def _run(store: SQLiteStore, args: argparse.Namespace) -> Generator[Deferred[Any], Any, int]:
    try:
        yield store.open()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        if args.action == "create":
            token = new_token()
            try:
                yield store.add_admin_token(AdminToken(args.name, token_hash(token), args.scope, time.time()))
            except TokenNameTaken:
                print(f"error: a token named {args.name!r} exists or existed; choose another name", file=sys.stderr)
                return 1
            print(token)
            print(f"Token {args.name!r} ({args.scope}) created. It is shown only now: keep it safe.", file=sys.stderr)
        elif args.action == "list":
            print(f"{'NAME':<24} {'SCOPE':<6} {'CREATED':<21} {'LAST USED':<21} REVOKED")
            for t in (yield store.admin_tokens()):
                print(f"{t.name:<24} {t.scope:<6} {_when(t.created):<21} {_when(t.last_used):<21} {_when(t.revoked)}")
        elif not (yield store.revoke_admin_token(args.name, time.time())):
            print(f"error: no working token named {args.name!r}", file=sys.stderr)
            return 1
        else:
            print(f"Token {args.name!r} revoked.", file=sys.stderr)
        return 0
    finally:
        yield store.close()


def _token_name(text: str) -> str:
    if not _TOKEN_NAME.match(text):
        raise argparse.ArgumentTypeError("letters, digits, '.', '_' and '-'; at most 64; a letter or digit first")
    return text


def main(argv: list[str] | None = None) -> int:
    """Command line: admin API tokens."""
    parser = argparse.ArgumentParser(prog="python -m desktop_relay.admin", description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default="etc/relay.ini", help="the relay's configuration file")
    what = parser.add_subparsers(dest="subject", required=True)
    token = what.add_parser("token", help="bearer tokens for the admin API")
    token.add_argument("--config", "-c", default=argparse.SUPPRESS, help="the relay's configuration file")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token and print it (once)")
    create.add_argument("name", type=_token_name)
    create.add_argument("--scope", choices=SCOPES, required=True, help="read: look only; write: also stop and sign out")
    actions.add_parser("list", help="all tokens, revoked ones included")
    revoke = actions.add_parser("revoke", help="revoke a token for good")
    revoke.add_argument("name")
    for sub in (create, revoke, actions.choices["list"]):
        sub.add_argument("--config", "-c", default=argparse.SUPPRESS, help="the relay's configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"desktop-relay: configuration error: {e}", file=sys.stderr)
        return 78  # EX_CONFIG, as twistd desktop-relay
    outcome: list[int] = []

    def run(reactor: Any) -> Deferred[None]:
        return _run(SQLiteStore(config.database, reactor), args).addCallback(outcome.append)

    try:
        react(run, [])
    except SystemExit:  # react() always exits; the outcome is what the command said
        pass
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
