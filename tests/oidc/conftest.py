"""OpenID providers as their own processes on loopback: oidc-provider-mock, and an evil one.

The relay itself comes from tests/relay_harness.py (`relay_factory`), configured for them here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from relay_harness import Browser, RelayProcess, free_port

CLIENT_ID = "desktop-relay"
HERE = Path(__file__).resolve().parent


class Provider:
    """A provider process: its issuer URL, and a way to stop it."""

    def __init__(self, command: list[str], port: int) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"provider exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            try:
                if requests.get(self.issuer + "/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("provider did not start within 30s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[Provider]:
    """oidc-provider-mock: a standards-compliant provider whose users and claims tests choose."""
    port = free_port()
    provider = Provider([sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--require-nonce", "true"],
                        port)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def evil_provider() -> Iterator[Provider]:
    """A provider that signs in with crafted ID tokens (see evil_provider.py)."""
    port = free_port()
    provider = Provider([sys.executable, str(HERE / "evil_provider.py"), str(port)], port)
    yield provider
    provider.stop()


def oidc_sections(tmp_path: Path, issuer: str, **oidc: str) -> dict[str, dict[str, str]]:
    """relay.ini sections for signing in with the provider at issuer."""
    secret = tmp_path / "client-secret"
    secret.write_text("not-so-secret\n")
    secret.chmod(0o600)
    return {
        "auth": {"method": "oidc"},
        "oidc": {"issuer": issuer, "client_id": CLIENT_ID, "client_secret_file": str(secret), **oidc},
        "roles": {"admin_groups": "admins", "teacher_groups": "lehrer"},
    }


@pytest.fixture
def oidc_relay(tmp_path: Path, relay_factory: Callable[..., RelayProcess]) -> Callable[..., RelayProcess]:
    """Start a relay that signs in with a provider; extra sections override the defaults."""

    def make(provider: Provider, **sections: dict[str, str]) -> RelayProcess:
        config = oidc_sections(tmp_path, provider.issuer)
        for name, values in sections.items():
            config.setdefault(name.replace("_", ":"), {}).update(values)
        return relay_factory(users={}, sections=config)

    return make


def begin_sign_in(browser: Browser) -> str:
    """GET /login as a browser does: returns the provider's authorization URL it redirects to."""
    response = browser.get("/login")
    assert response.status_code == 303, response.text
    return response.headers["Location"]


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/login/callback", location
    return f"{parts.path}?{parts.query}"


def authorize_at_mock(provider: Provider, authorize_url: str, sub: str, claims: dict[str, Any] | None = None,
                      deny: bool = False) -> str:
    """Submit the mock provider's authorize page; returns the relay callback URL it sends back to."""
    if claims is not None:
        requests.put(f"{provider.issuer}/users/{sub}", json=claims, timeout=10).raise_for_status()
    form = {"action": "deny"} if deny else {"sub": sub}
    response = requests.post(authorize_url, data=form, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def sign_in(browser: Browser, provider: Provider, sub: str, claims: dict[str, Any]) -> requests.Response:
    """A whole sign-in through the mock provider; returns the relay's answer to the callback."""
    location = authorize_at_mock(provider, begin_sign_in(browser), sub, claims)
    return browser.get(callback_path(location))
