"""Which Apache proxy forms deliver a WebSocket upgrade intact: the seed system's question, answered
by running each form in the shipped vhost in front of a backend that records what it received.

Each form replaces only the lines between the vhost's "proxy form" markers. A form delivers the
upgrade when the browser gets 101 with the backend's Sec-WebSocket-Accept and subprotocol, the
backend saw Upgrade/Connection, Origin and Sec-WebSocket-Protocol unchanged, and frames flow
both ways (the backend speaks first, as a VNC server does). The table of outcomes is written to
test-artifacts/apache-upgrade-forms.txt.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from apache_harness import ARTIFACTS, apache_version, shipped_proxy_form
from ws_recorder import SERVER_HELLO, RecordingBackend, upgrade_through

PATH = "/desktop/s3cr3t-session/websockify"

# The forms found in the wild, as the seed system and most how-tos wrote them.
_REWRITE = """\
RewriteEngine On
RewriteCond %{{HTTP:Upgrade}} =websocket [NC]
RewriteCond %{{HTTP:Connection}} upgrade [NC]
RewriteRule ^/(.*)$ {scheme}://${{DESKTOP_RELAY}}/$1 [P,L]
ProxyPass / http://${{DESKTOP_RELAY}}/ timeout=${{DESKTOP_PROXY_TIMEOUT}}
ProxyPassReverse / http://${{DESKTOP_RELAY}}/"""

_PLAIN_PROXYPASS = (
    "ProxyPass / http://${DESKTOP_RELAY}/ timeout=${DESKTOP_PROXY_TIMEOUT}\n"
    "ProxyPassReverse / http://${DESKTOP_RELAY}/"
)
WSTUNNEL = ("rewrite", "proxy_wstunnel")

# name -> (the lines between the markers, modules loaded besides the shipped vhost's own)
FORMS = {
    "RewriteRule ws:// [P], mod_proxy_wstunnel": (_REWRITE.format(scheme="ws"), WSTUNNEL),
    "RewriteRule ws:// [P], no mod_proxy_wstunnel": (_REWRITE.format(scheme="ws"), ("rewrite",)),
    "RewriteRule http:// [P], mod_proxy_wstunnel": (_REWRITE.format(scheme="http"), WSTUNNEL),
    "ProxyPass http:// (no upgrade=), mod_proxy_wstunnel": (_PLAIN_PROXYPASS, WSTUNNEL),
    "ProxyPass http:// upgrade=websocket (shipped)": (shipped_proxy_form(), ()),
}


@dataclass
class Outcome:
    form: str
    status: int
    backend_saw_upgrade: bool
    subprotocol: str | None
    origin_at_backend: str | None
    frames_both_ways: bool

    @property
    def delivered(self) -> bool:
        return self.status == 101 and self.backend_saw_upgrade and self.frames_both_ways


_outcomes: dict[str, Outcome] = {}


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    """Writes the outcomes of this module's runs to test-artifacts/ once all have run."""
    yield
    if not _outcomes:
        return
    version = ".".join(map(str, apache_version() or ()))
    lines = [f"Apache {version}: WebSocket upgrade of {PATH} through each proxy form", "",
             f"{'form':52} {'status':>6}  {'backend saw upgrade':19}  {'subprotocol':11}  frames both ways"]
    for o in _outcomes.values():
        lines.append(f"{o.form:52} {o.status:>6}  {str(o.backend_saw_upgrade):19}  "
                     f"{str(o.subprotocol):11}  {o.frames_both_ways}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "apache-upgrade-forms.txt").write_text("\n".join(lines) + "\n")


def try_form(start_apache, backend: RecordingBackend, form: str) -> Outcome:
    lines, modules = FORMS[form]
    apache = start_apache(relay=f"127.0.0.1:{backend.port}", proxy_form=lines, extra_modules=modules)
    origin = apache.url
    result = upgrade_through(apache.https_port, PATH, origin=origin, protocols="binary")
    received = [r for r in backend.requests if r.target.startswith(PATH)]
    frames = False
    if result.socket is not None:
        try:
            hello = result.socket.receive()
            result.socket.send(b"key-press")
            frames = hello == SERVER_HELLO and result.socket.receive() == b"echo:key-press"
        finally:
            result.socket.close()
    seen = received[0] if received else None
    outcome = Outcome(
        form=form,
        status=result.status,
        backend_saw_upgrade=bool(seen and seen.upgraded),
        subprotocol=result.headers.get("sec-websocket-protocol"),
        origin_at_backend=seen.header("origin") if seen else None,
        frames_both_ways=frames,
    )
    _outcomes[form] = outcome
    if seen is not None and outcome.delivered:
        # Delivered means delivered intact: what the browser offered is what the relay saw.
        assert seen.header("sec-websocket-protocol") == "binary"
        assert seen.header("origin") == origin
        assert seen.header("sec-websocket-version") == "13"
        assert outcome.subprotocol == "binary"
    return outcome


@pytest.mark.parametrize("form", [
    "RewriteRule ws:// [P], mod_proxy_wstunnel",
    "RewriteRule ws:// [P], no mod_proxy_wstunnel",
    "ProxyPass http:// upgrade=websocket (shipped)",
])
def test_form_delivers_the_upgrade_intact(start_apache, recording_backend, form):
    outcome = try_form(start_apache, recording_backend, form)
    assert outcome.delivered, outcome


@pytest.mark.parametrize("form", [
    "RewriteRule http:// [P], mod_proxy_wstunnel",
    "ProxyPass http:// (no upgrade=), mod_proxy_wstunnel",
])
def test_form_loses_the_upgrade_and_the_relay_answers_400(start_apache, recording_backend, form):
    outcome = try_form(start_apache, recording_backend, form)
    # Apache drops Upgrade/Connection as hop-by-hop headers: the relay gets a plain GET on
    # its WebSocket path and says so with 400 -- the "400 on upgrade" of the troubleshooting table.
    assert not outcome.delivered, outcome
    assert (outcome.status, outcome.backend_saw_upgrade) == (400, False), outcome


def test_the_shipped_form_is_the_proven_one(start_apache, recording_backend):
    """The vhost ships ProxyPass with upgrade=websocket: one directive for pages and WebSocket,
    no mod_rewrite, no mod_proxy_wstunnel. (The ws:// RewriteRule delivers too, but it needs
    mod_rewrite and a RewriteCond pair that must match every browser's headers, and it is a
    second place where the relay's address must be kept in step.)"""
    shipped = shipped_proxy_form()
    assert "upgrade=websocket" in shipped and "Rewrite" not in shipped and "ws://" not in shipped
    # The shipped vhost as it is, with only the modules it names loaded (no rewrite, no wstunnel).
    apache = start_apache(relay=f"127.0.0.1:{recording_backend.port}")
    result = upgrade_through(apache.https_port, PATH, origin=apache.url)
    assert result.status == 101 and result.socket is not None
    try:
        assert result.socket.receive() == SERVER_HELLO
        result.socket.send(b"x")
        assert result.socket.receive() == b"echo:x"
    finally:
        result.socket.close()

