"""Fixtures for the Apache and browser tests: a self-signed certificate, the recording WebSocket
backend, Apache processes running the shipped vhost (all on loopback, all stopped at teardown),
and Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import loopback_forward
import pytest
from apache_harness import (
    APACHE_BIN,
    ApacheServer,
    apache_version,
    free_port,
    make_self_signed_cert,
    missing,
    render_vhost,
)
from desktop_browser import CHROMIUM, CHROMIUM_ARGS, SCREEN, DesktopPage
from loopback_forward import IsolatedChromium
from relay_harness import RelayProcess
from ws_recorder import RecordingBackend


@pytest.fixture(scope="session")
def apache_available() -> None:
    """apache2 2.4.47+ with the modules the vhost needs, or skip (fail in CI)."""
    version = apache_version()
    if version is None:
        missing(f"no apache2 at {APACHE_BIN}", "scripts/ensure-apache")
    if version < (2, 4, 47):
        missing(f"apache2 {version} is older than 2.4.47 (upgrade=websocket)", "scripts/ensure-apache")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def recording_backend() -> Iterator[RecordingBackend]:
    """The stand-in relay that records what Apache forwarded."""
    backend = RecordingBackend().start()
    yield backend
    backend.stop()


StartApache = Callable[..., ApacheServer]


@pytest.fixture
def start_apache(
    apache_available: None, tls_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartApache]:
    """start_apache(relay="127.0.0.1:PORT", proxy_timeout=..., proxy_form=..., extra_modules=...,
    https_port=...) runs the shipped vhost in front of relay; all are stopped at teardown."""
    servers: list[ApacheServer] = []

    def start(*, relay: str, proxy_timeout: int = 300, proxy_form: str | None = None,
              extra_modules: tuple[str, ...] = (), log_level: str = "warn",
              https_port: int | None = None) -> ApacheServer:
        cert, key = tls_files
        http_port, https_port = free_port(), https_port or free_port()
        vhost = render_vhost(http_port=http_port, https_port=https_port, relay=relay, cert=cert,
                             key=key, proxy_timeout=proxy_timeout, proxy_form=proxy_form)
        server = ApacheServer(tmp_path_factory.mktemp("apache"), vhost, http_port=http_port,
                              https_port=https_port, extra_modules=extra_modules, log_level=log_level)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    """Playwright for Python, for Debian's Chromium (skipped without them, failed in CI).
    Playwright never downloads a browser here (scripts/ensure-browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed", "scripts/ensure-browser")
    if not shutil.which(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM}", "scripts/ensure-browser")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright) -> Iterator[object]:
    """Headless Chromium in the host's network."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


# What the browser asks for (Accept-Language), per language of the relay's catalogs.
LOCALES = {"en": "en-US", "de": "de-DE"}


@pytest.fixture
def tab(playwright, tmp_path: Path) -> Iterator[Callable[..., DesktopPage]]:
    """tab(relay, user, lang) opens a new browser context asking for lang (en, de), signed in as
    user on relay's dashboard, in a
    Chromium of that relay's own, in a network namespace of its own when it can be (see
    loopback_forward.py: container starts then cannot abort its requests)."""
    browsers: dict[int, object] = {}
    forwarders: list[IsolatedChromium] = []

    def open_tab(relay: RelayProcess, user: str = "alice", lang: str = "en") -> DesktopPage:
        if relay.port not in browsers:
            executable = CHROMIUM
            if loopback_forward.available():
                forwarders.append(IsolatedChromium(CHROMIUM, tmp_path, relay.port))
                executable = str(forwarders[-1].executable)
            browsers[relay.port] = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        context = browsers[relay.port].new_context(viewport=SCREEN, locale=LOCALES[lang])
        page = DesktopPage(context.new_page(), relay.url, lang)
        page.sign_in(user)
        return page

    yield open_tab
    for browser in browsers.values():
        browser.close()
    for forwarder in forwarders:
        forwarder.stop()
