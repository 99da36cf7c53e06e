"""The files API through a real relay (twistd), the real Docker engine and the demo image: a
file goes into a home and comes back byte for byte, owned by the desktop's user; `..` and a
symbolic link out of the home are refused; the upload limit and the home's quota answer 413;
a share is read-only. No desktop runs in any of them."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from relay_harness import Browser, RelayProcess

from desktop_relay.files.containers import LABEL_FILES_INSTANCE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOME = "/home/kasm-user"


def signed_in(relay: RelayProcess, user: str = "alice") -> Browser:
    browser = relay.client()
    browser.login(user)
    return browser


def put(browser: Browser, path: str, data: bytes):  # type: ignore[no-untyped-def]
    return browser.http.put(browser.relay.url + "/api/files/" + path, data=data,
                            headers={"Origin": browser.origin}, timeout=60)


def files_container(docker_client: docker.DockerClient, relay: RelayProcess):  # type: ignore[no-untyped-def]
    (container,) = docker_client.containers.list(filters={"label": f"{LABEL_FILES_INSTANCE}={relay.instance}"})
    return container


def test_an_upload_comes_back_byte_for_byte_owned_by_the_desktop_user(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient,
) -> None:
    relay = relay_factory()
    alice = signed_in(relay)
    homes = alice.api("GET", "/files/").json()
    assert [home["key"] for home in homes["homes"]] == ["default"]

    assert alice.api("POST", "/files/default/", {"folder": "Übungen"}).status_code == 201
    data = os.urandom(300_000) + b"\0end"
    created = put(alice, "default/%C3%9Cbungen/data%20set.bin", data)
    assert created.status_code == 201, created.text
    assert put(alice, "default/%C3%9Cbungen/data%20set.bin", data).status_code == 200  # replaced

    listing = alice.api("GET", "/files/default/%C3%9Cbungen/").json()
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [("data set.bin", "file", len(data))]
    download = alice.get("/api/files/default/%C3%9Cbungen/data%20set.bin")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["Content-Disposition"].startswith("attachment;")

    owners = files_container(docker_client, relay).exec_run(
        ["stat", "-c", "%u:%g %n", f"{HOME}/Übungen", f"{HOME}/Übungen/data set.bin"])
    assert owners.output.decode().splitlines() == [f"1000:1000 {HOME}/Übungen", f"1000:1000 {HOME}/Übungen/data set.bin"]

    # Writes come from the relay's own pages only, and only for someone signed in.
    foreign = alice.http.put(relay.url + "/api/files/default/evil.bin", data=b"x", timeout=30,
                             headers={"Origin": "https://elsewhere.example"})
    assert foreign.status_code == 403 and foreign.json()["type"].endswith(":cross-origin-request")
    assert relay.client().get("/api/files/default/").status_code == 401

    # Bob has a home of his own: alice's folder is not in it.
    bob = signed_in(relay, "bob")
    assert "Übungen" not in [e["name"] for e in bob.api("GET", "/files/default/").json()["entries"]]

    assert alice.api("DELETE", "/files/default/%C3%9Cbungen").status_code == 204
    assert alice.get("/api/files/default/%C3%9Cbungen/").status_code == 404


def test_dot_dot_a_symbolic_link_out_of_the_home_and_a_locked_folder_are_refused(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient,
) -> None:
    relay = relay_factory()
    alice = signed_in(relay)
    # Encoded, so that no client on the way takes the dots out: the relay sees "..".
    for path in ("default/%2E%2E/%2E%2E/etc/passwd", "default/%2E%2E/", "default/a%2F..%2F..%2Fetc"):
        refused = alice.get("/api/files/" + path)
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["type"].endswith(":invalid-path")
    assert put(alice, "default/%2E%2E/evil", b"x").status_code == 400

    # Links made inside the home (as a desktop could), leading out of it.
    assert alice.get("/api/files/default/").status_code == 200  # the files container is up
    made = files_container(docker_client, relay).exec_run(
        ["sh", "-c", f"ln -s /etc {HOME}/etc-link && ln -s {HOME}/../../etc/passwd {HOME}/passwd-link"],
        user="1000:1000")
    assert made.exit_code == 0, made.output
    for path in ("default/etc-link/", "default/etc-link/passwd", "default/passwd-link"):
        refused = alice.get("/api/files/" + path)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["type"].endswith(":outside-home")
    assert put(alice, "default/etc-link/evil", b"x").status_code == 403
    assert alice.api("POST", "/files/default/etc-link/", {"folder": "evil"}).status_code == 403
    # The engine writes uploads as root: a folder the user may not write to is refused all the same.
    assert files_container(docker_client, relay).exec_run(
        ["sh", "-c", f"mkdir {HOME}/locked && chmod 555 {HOME}/locked"], user="1000:1000").exit_code == 0
    locked = put(alice, "default/locked/x", b"x")
    assert locked.status_code == 403 and locked.json()["type"].endswith(":read-only")
    # Deleting a link deletes the link, not where it leads.
    assert alice.api("DELETE", "/files/default/etc-link").status_code == 204
    assert files_container(docker_client, relay).exec_run(["test", "-f", "/etc/passwd"]).exit_code == 0


def test_an_upload_over_the_limit_and_one_over_the_quota_get_413(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(sections={"homes": {"files_max_upload": "1m"}, "desktop:demo": {"home_quota": "2500000"}})
    alice = signed_in(relay)
    # Declared too large: answered before a byte of the body is sent.
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
    connection.putrequest("PUT", "/api/files/default/big.bin")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.putheader("Cookie", alice.cookie_header)
    connection.putheader("Origin", alice.origin)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert b"upload-too-large" in response.read()
    connection.close()

    # Within the limit, until the home is full.
    for name in ("one", "two"):
        assert put(alice, f"default/{name}.bin", b"x" * 1_000_000).status_code == 201
    full = put(alice, "default/three.bin", b"x" * 1_000_000)
    assert full.status_code == 413
    assert full.json()["type"].endswith(":home-quota-exceeded")
    assert "three.bin" not in [e["name"] for e in alice.api("GET", "/files/default/").json()["entries"]]


def test_a_share_is_listed_and_read_only(relay_factory: Callable[..., RelayProcess], tmp_path: Path) -> None:
    shares = tmp_path / "shares"
    (shares / "maths").mkdir(parents=True)
    (shares / "maths" / "sheet.txt").write_text("1 + 1 = 2\n")
    (shares / "maths").chmod(0o755)
    relay = relay_factory(sections={"homes": {"share_roots": str(shares)},
                                  "share:maths": {"path": str(shares / "maths"), "groups": "*"}})
    alice = signed_in(relay)
    (home,) = alice.api("GET", "/files/").json()["homes"]
    assert home["shares"] == ["Shared/maths"]
    listing = alice.api("GET", "/files/default/Shared/maths/").json()
    assert listing["writable"] is False
    assert [(e["name"], e["writable"]) for e in listing["entries"]] == [("sheet.txt", False)]
    assert alice.get("/api/files/default/Shared/maths/sheet.txt").content == b"1 + 1 = 2\n"
    assert put(alice, "default/Shared/maths/mine.txt", b"x").status_code == 403
    assert alice.api("DELETE", "/files/default/Shared/maths/sheet.txt").status_code == 403
    assert [(e["name"], e["writable"]) for e in alice.api("GET", "/files/default/").json()["entries"]
            if e["name"] == "Shared"] == [("Shared", False)]
    assert alice.api("DELETE", "/files/default/Shared").status_code == 403
    assert (shares / "maths" / "sheet.txt").exists()
    assert [p.name for p in (shares / "maths").iterdir()] == ["sheet.txt"]


def test_the_files_container_goes_after_files_idle_and_comes_back_on_the_next_request(
    relay_factory: Callable[..., RelayProcess], docker_client: docker.DockerClient,
) -> None:
    relay = relay_factory(sections={"homes": {"files_idle": "1s"}})
    alice = signed_in(relay)
    assert put(alice, "default/kept.txt", b"still here").status_code == 201
    label = {"label": f"{LABEL_FILES_INSTANCE}={relay.instance}"}
    deadline = time.monotonic() + 20
    while docker_client.containers.list(all=True, filters=label) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not docker_client.containers.list(all=True, filters=label)
    assert "removed idle files container" in relay.log()
    # The home is kept: the next request makes a new container, and the file is there.
    assert alice.get("/api/files/default/kept.txt").content == b"still here"
