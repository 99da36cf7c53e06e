"""The shipped vhost's behaviour toward browser and relay, each property checked through a real
Apache in front of the recording backend: redirect to https, forwarded headers, security
headers, HTTP/1.1 only, unbuffered responses, and idle WebSocket tunnels (cut at the proxy
timeout when silent, kept open by pings, which is why the relay pings)."""

from __future__ import annotations

import socket
import time

import pytest
from apache_harness import tls_connect
from ws_recorder import SERVER_HELLO, read_head, upgrade_through


def raw_request(sock: socket.socket, port: int, path: str, headers: list[tuple[str, str]] = ()) -> None:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers)]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def get(port: int, path: str, headers: list[tuple[str, str]] = ()) -> tuple[int, list[tuple[str, str]]]:
    with tls_connect(port) as sock:
        raw_request(sock, port, path, headers)
        line, response_headers, _ = read_head(sock)
    return int(line.split()[1]), response_headers


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def test_plain_http_redirects_to_the_https_site(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    with socket.create_connection(("127.0.0.1", apache.http_port), timeout=5) as sock:
        raw_request(sock, apache.http_port, "/desktop/abc/?x=1")
        line, headers, _ = read_head(sock)
    assert line.split()[1] == "301"
    assert values(headers, "location") == [f"https://127.0.0.1:{apache.https_port}/desktop/abc/?x=1"]
    assert recording_backend.requests == []


def test_the_relay_gets_the_public_host_and_apaches_word_on_client_and_scheme(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    # A browser (or attacker) sending its own X-Forwarded-* must not decide what the relay sees.
    status, _ = get(apache.https_port, "/", [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "http")])
    assert status == 200
    (seen,) = recording_backend.requests
    assert seen.all("host") == [f"127.0.0.1:{apache.https_port}"]  # ProxyPreserveHost
    assert seen.all("x-forwarded-proto") == ["https"]
    # Apache appends the address it saw: the relay reads from the right, up to its trusted proxies.
    assert seen.all("x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]


def test_security_headers_are_added_without_overriding_the_relays(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    status, headers = get(apache.https_port, "/")
    assert status == 200
    assert values(headers, "strict-transport-security") == ["max-age=31536000"]
    assert values(headers, "x-content-type-options") == ["nosniff"]
    assert values(headers, "referrer-policy") == ["same-origin"]
    assert values(headers, "x-frame-options") == ["DENY"]  # the backend's own value, once
    assert values(headers, "content-security-policy") == []  # the relay's business, per page


def test_only_http_1_1_is_offered_so_websockets_take_the_tested_path(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    with tls_connect(apache.https_port, alpn=["h2", "http/1.1"]) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")


def test_a_slow_response_is_passed_on_as_it_comes_not_buffered(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    with tls_connect(apache.https_port) as sock:
        started = time.monotonic()
        # gzip accepted: Debian's mod_deflate sits on this path too and must not hold it back.
        raw_request(sock, apache.https_port, "/events?stream=2", [("Accept-Encoding", "gzip")])
        _, headers, body = read_head(sock)
        while not body:
            body = sock.recv(65536)
        first = time.monotonic() - started
        while chunk := sock.recv(65536):
            body += chunk
        total = time.monotonic() - started
    assert first < 1.0, f"the first part took {first:.2f} s: buffered"
    assert total >= 2.0


def test_a_silent_websocket_is_cut_at_the_proxy_timeout(start_apache, recording_backend):
    """Why the relay pings: without traffic Apache closes the tunnel (browsers report 1006)."""
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}", proxy_timeout=2)
    result = upgrade_through(apache.https_port, "/desktop/x/websockify", origin=apache.url)
    assert result.status == 101 and result.socket is not None
    assert result.socket.receive() == SERVER_HELLO
    started = time.monotonic()
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        result.socket.receive(timeout=10)
    closed_after = time.monotonic() - started
    result.socket.close()
    assert 1.5 < closed_after < 6, closed_after


def test_pings_keep_an_idle_websocket_open_past_the_proxy_timeout(start_apache, recording_backend):
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}", proxy_timeout=2)
    result = upgrade_through(apache.https_port, "/desktop/x/websockify?ping=0.5", origin=apache.url)
    assert result.status == 101 and result.socket is not None
    client = result.socket
    try:
        assert client.receive() == SERVER_HELLO
        idle_until = time.monotonic() + 5
        with pytest.raises(TimeoutError):
            # Nothing but pings (answered inside receive) for 5 s: 2.5 proxy timeouts.
            client.receive(timeout=max(0.1, idle_until - time.monotonic()))
        client.send(b"still there?")
        assert client.receive() == b"echo:still there?"
        assert client.pings >= 5
    finally:
        client.close()
