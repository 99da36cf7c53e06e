"""The audit trail of a real relay (twistd, real Docker): a sign-in, a failed sign-in, a start,
a desktop connect and disconnect through the relay's WebSocket, each with the browser's address
as the trusted proxy forwarded it; and the bad inputs answered as problems, the log clean."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from relay_harness import PASSWORD, RelayProcess, subprocess_env, vnc_handshake
from websockets.sync.client import connect

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PUPIL_ADDRESS = "203.0.113.5"
OTHER_ADDRESS = "198.51.100.23"


def trail(relay: RelayProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(relay.directory / "var" / "relay.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM audit ORDER BY id")]


def read_token(relay: RelayProcess) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "desktop_relay.admin", "token", "create", "auditor", "--scope", "read",
         "--config", str(relay.config_path)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=True,
    )
    return made.stdout.strip()


def test_sign_ins_starts_and_desktop_connections_are_audited_with_addresses(relay_factory: Any) -> None:
    # The test plays Apache: 127.0.0.1 is the trusted proxy, X-Forwarded-For says who is behind it.
    relay = relay_factory(sections={"relay": {"trusted_proxies": "127.0.0.1"}})
    alice = relay.client()
    alice.http.headers["X-Forwarded-For"] = PUPIL_ADDRESS
    stranger = relay.client()
    stranger.http.headers["X-Forwarded-For"] = OTHER_ADDRESS
    assert stranger.post_form("/login", {"username": "alice", "password": "guess"}).status_code == 401
    alice.login("alice", PASSWORD)
    sid = alice.start_desktop()["id"]
    with connect(
        f"ws://127.0.0.1:{relay.port}/desktop/{sid}/websockify", origin=relay.url, subprotocols=["binary"],
        additional_headers={"Cookie": alice.cookie_header, "X-Forwarded-For": PUPIL_ADDRESS}, open_timeout=20,
    ) as ws:
        vnc_handshake(ws)
    deadline = time.monotonic() + 10
    while not any(line["action"] == "disconnect" for line in trail(relay)) and time.monotonic() < deadline:
        time.sleep(0.1)

    lines = [(line["actor"], line["action"], line["target"], line["address"]) for line in trail(relay)]
    assert lines == [
        ("alice", "sign-in-failed", "alice", OTHER_ADDRESS),
        ("alice", "sign-in", "alice", PUPIL_ADDRESS),
        ("alice", "start", sid, ""),
        ("alice", "connect", sid, PUPIL_ADDRESS),
        ("alice", "disconnect", sid, PUPIL_ADDRESS),
    ]
    details = [line["detail"] for line in trail(relay)]
    assert details[:3] == ["wrong-password", "local", "demo"]
    assert details[4].startswith("browser_code=1000 container_code=") and "bytes_to_browser=" in details[4]
    assert int(details[4].split("bytes_to_browser=")[1].split()[0]) > 0
    assert "audit trail: 0 line(s) older than 180 days deleted" in relay.log()

    # The same lines through the admin API, as a page and as the CSV file.
    headers = {"Authorization": f"Bearer {read_token(relay)}"}
    listed = requests.get(f"{relay.url}/api/admin/audit?target={sid}&limit=2", headers=headers, timeout=30)
    assert listed.status_code == 200 and [i["action"] for i in listed.json()["items"]] == ["disconnect", "connect"]
    rest = requests.get(f"{relay.url}/api/admin/audit?target={sid}&cursor={listed.json()['next_cursor']}",
                        headers=headers, timeout=30).json()
    assert [i["action"] for i in rest["items"]] == ["start"] and rest["next_cursor"] is None
    exported = requests.get(f"{relay.url}/api/admin/audit.csv?actor=alice", headers=headers, timeout=30)
    assert exported.status_code == 200 and exported.headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert [row[3] for row in rows[1:]] == ["disconnect", "connect", "start", "sign-in", "sign-in-failed"]
    assert alice.get("/api/admin/audit").status_code == 404


def test_bad_input_gets_problems_and_the_log_no_traceback(relay: RelayProcess) -> None:
    alice = relay.client()
    alice.login("alice", PASSWORD)
    nested = alice.http.post(relay.url + "/api/sessions", data=b"[" * 8000 + b"]" * 8000,
                             headers={"Origin": relay.url, "Content-Type": "application/json"}, timeout=30)
    assert nested.status_code == 400 and nested.json()["type"].endswith("malformed-json")
    for path in ("/api/sessions/%FF", "/desktop/%FF/"):
        response = requests.get(relay.url + path, cookies=alice.http.cookies, timeout=30)
        assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("invalid-path")
    log = relay.log()
    assert "Traceback" not in log and log.count("the path is not UTF-8") == 2
