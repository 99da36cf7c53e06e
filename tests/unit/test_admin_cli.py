"""`python -m desktop_relay.admin token ...`: a token is printed once and kept only as its hash,
names are not reused, revoked tokens stay listed; the database comes from relay.ini."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from relay_harness import subprocess_env

from desktop_relay.auth.websessions import token_hash


def admin(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "desktop_relay.admin", "token", *args, "--config", str(config)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=60)


def test_tokens_are_created_listed_and_revoked_in_the_relays_database(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "relay.ini"
    config.write_text("[relay]\ndatabase = var/relay.sqlite3\n[desktop:demo]\nimage = demo\ngroups = *\n")
    created = admin(config, "create", "nightly-report", "--scope", "read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert len(token) >= 43 and "shown only now" in created.stderr
    database = tmp_path / "var" / "relay.sqlite3"
    rows = sqlite3.connect(database).execute("SELECT name, token_hash, scope FROM admin_tokens").fetchall()
    assert rows == [("nightly-report", token_hash(token), "read")]
    assert token.encode() not in database.read_bytes()

    again = admin(config, "create", "nightly-report", "--scope", "write")
    assert again.returncode == 1 and "exists" in again.stderr and again.stdout == ""
    assert admin(config, "create", "bad name", "--scope", "read").returncode == 2
    assert admin(config, "create", "x", "--scope", "admin").returncode == 2

    assert admin(config, "revoke", "nightly-report").returncode == 0
    assert admin(config, "revoke", "nightly-report").returncode == 1
    listed = admin(config, "list")
    assert listed.returncode == 0
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith("nightly-report")]
    assert " read " in line and not line.endswith("-")  # the revocation time

    missing = admin(tmp_path / "nowhere.ini", "list")
    assert missing.returncode == 78 and "configuration error" in missing.stderr
