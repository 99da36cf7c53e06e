"""A pupil's way through Apache, for real: headless Chromium -> Apache (the shipped vhost, TLS) ->
the relay as twistd -> a desktop container, all on loopback.

One test walks the whole way, because each step needs the state the one before left: sign in,
start a desktop, see it (pixels of the desktop image's known background and xterm, read from
screenshots, not only the DOM), type and see the typed command change the remote screen, reload
and find the same container, stay idle past Apache's and the relay's short test timeouts with
the WebSocket surviving, and a second user refused the first user's desktop. Screenshots go to
test-artifacts/.

Driven by Playwright's Python API (sync) with Debian's /usr/bin/chromium; Playwright never
downloads a browser here (scripts/ensure-browser).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest
from apache_harness import ARTIFACTS, free_port, missing
from png_pixels import Image, decode_png
from relay_harness import LABEL_INSTANCE, PASSWORD

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the chromium fixture skips (or fails, in CI) with the reason
    PlaywrightTimeout = TimeoutError

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHROMIUM = os.environ.get("DESKTOP_RELAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]
SCREEN = {"width": 1280, "height": 720}
BACKGROUND = (42, 111, 151)  # the desktop image's root window, images/desktop/README.md
WHITE = (255, 255, 255)  # the xterm's background
RED = (205, 0, 0)  # xterm's colour 1 (red3): the background after \e[41m + erase
BLUE = (0, 0, 238)  # xterm's colour 4 (blue2)
PROXY_TIMEOUT = 5  # Apache's Timeout and worker timeout for this test, seconds
PING_INTERVAL = 2  # the relay's [websocket] ping_interval (also its pong deadline)
IDLE = 8  # longer than both


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Playwright driving Debian's Chromium (skipped without them, failed in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed", "scripts/ensure-browser")
    if not shutil.which(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM}", "scripts/ensure-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(relay_factory: Callable[..., object], start_apache: Callable[..., object]):
    """The relay behind the shipped vhost, with short idle timeouts on both."""
    https_port = free_port()
    relay = relay_factory(sections={
        "relay": {"public_url": f"https://127.0.0.1:{https_port}", "trusted_proxies": "127.0.0.1"},
        "websocket": {"ping_interval": f"{PING_INTERVAL}s"},
    })
    apache = start_apache(relay=f"127.0.0.1:{relay.port}", https_port=https_port, proxy_timeout=PROXY_TIMEOUT)
    return relay, apache


class DesktopPage:
    """One signed-in browser tab and what it can tell about the desktop it shows."""

    def __init__(self, page, url: str) -> None:
        self.page = page
        self.url = url
        self.sockets: list[dict] = []
        self.console: list[str] = []
        page.on("websocket", self._opened)
        # The web client's own words, for the failure message when it does not connect.
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def _opened(self, ws) -> None:
        record = {"url": ws.url, "closed": False}
        ws.on("close", lambda _: record.update(closed=True))
        self.sockets.append(record)

    def sign_in(self, user: str) -> None:
        self.page.goto(self.url + "/")
        assert "/login" in self.page.url
        self.page.fill("input[name=username]", user)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector(f"text=Signed in as {user.title()}")

    def wait_connected(self, timeout: float = 30) -> None:
        """Until noVNC says connected (it marks <html> with noVNC_connected)."""
        try:
            self.page.wait_for_selector("html.noVNC_connected", state="attached", timeout=timeout * 1000)
        except PlaywrightTimeout as e:
            raise AssertionError(f"noVNC did not connect: {e}\nconsole:\n" + "\n".join(self.console)) from None

    # Starting a container adds network interfaces on this host, which Chromium shares here (in
    # production the browser is elsewhere): Chromium then aborts the requests in flight with
    # ERR_NETWORK_CHANGED, a lost POST or a web client whose modules failed to load. A pupil
    # would press reload; the two methods below do so once, and only for that reason.

    def _network_changed(self) -> bool:
        return any("ERR_NETWORK_CHANGED" in line for line in self.console)

    def start_desktop(self, name: str) -> None:
        """Click Start on the dashboard and wait until it has opened the desktop's page."""
        desktop_page = "**/desktop/*/?path=desktop*"
        self.page.click(f"button[data-desktop={name}]")
        try:
            self.page.wait_for_url(desktop_page, timeout=30_000)
        except PlaywrightTimeout:
            if not self._network_changed():
                raise
            self.console.append("(dashboard reloaded after ERR_NETWORK_CHANGED)")
            self.page.goto(self.url + "/")
            # A session still starting is followed by the dashboard; a ready one has its link.
            self.page.wait_for_selector("#sessions li")
            if self.page.locator("#sessions a").count():
                self.page.click("#sessions a")
            self.page.wait_for_url(desktop_page, timeout=30_000)

    def wait_connected_despite_docker(self) -> None:
        """wait_connected, reloading once if the web client lost its files to a network change."""
        try:
            self.wait_connected(timeout=15)
        except AssertionError:
            if not self._network_changed():
                raise
            self.console.append("(desktop page reloaded after ERR_NETWORK_CHANGED)")
            self.sockets.clear()
            self.page.reload()
            self.wait_connected()

    def screen(self) -> Image:
        """The remote screen as the user sees it now: a screenshot of noVNC's canvas."""
        return decode_png(self.canvas.screenshot())

    @property
    def canvas(self):
        return self.page.locator("#noVNC_container canvas")

    def xterm_box(self) -> tuple[int, int, int, int]:
        # The xterm covers 70 % of the screen from (5 %, 5 %); its lower middle is empty.
        return (SCREEN["width"] * 30 // 100, SCREEN["height"] * 45 // 100,
                SCREEN["width"] * 60 // 100, SCREEN["height"] * 65 // 100)

    def wait_for_xterm(self, colour: tuple[int, int, int], timeout: float = 15) -> Image:
        """Until the middle of the xterm shows colour (pixels, polled from screenshots)."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.screen()
            share = image.share(colour, self.xterm_box())
            if share > 0.9:
                return image
            if time.monotonic() > deadline:
                raise AssertionError(f"xterm not {colour} after {timeout} s: {share:.0%} "
                                     f"(most: {image.colours(*self.xterm_box()).most_common(3)})")
            self.page.wait_for_timeout(250)

    def run_in_xterm(self, command: str) -> None:
        """Type a shell command into the desktop's xterm (it has focus under the pointer)."""
        self.canvas.click(position={"x": SCREEN["width"] // 2, "y": SCREEN["height"] // 2})
        self.page.keyboard.type(command, delay=15)
        self.page.keyboard.press("Enter")

    @property
    def open_sockets(self) -> list[dict]:
        return [s for s in self.sockets if not s["closed"]]


def test_a_pupil_uses_a_desktop_through_apache(chromium, site, docker_client):
    relay, apache = site
    ARTIFACTS.mkdir(exist_ok=True)
    alice = DesktopPage(chromium.new_context(ignore_https_errors=True, viewport=SCREEN).new_page(), apache.url)

    # 1. Sign in, see the dashboard, start the desktop.
    alice.sign_in("alice")
    alice.start_desktop("demo")

    # 2. The dashboard goes to the desktop once it is ready; noVNC connects through Apache.
    desktop_url = alice.page.url
    session_id = desktop_url.split("/desktop/")[1].split("/")[0]
    alice.wait_connected_despite_docker()
    screen = alice.wait_for_xterm(WHITE)
    alice.canvas.screenshot(path=str(ARTIFACTS / "browser-e2e-desktop.png"))
    assert (screen.width, screen.height) == (SCREEN["width"], SCREEN["height"])
    # The root window shows at the bottom-right edge and only there is the known background.
    corner = (screen.width - 40, screen.height - 40, screen.width, screen.height)
    assert screen.share(BACKGROUND, corner, tolerance=2) > 0.95, screen.colours(*corner).most_common(3)
    assert [s["url"] for s in alice.open_sockets] == [
        f"wss://127.0.0.1:{apache.https_port}/desktop/{session_id}/websockify"]
    containers = docker_client.containers.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})
    assert len(containers) == 1
    container_id = containers[0].id

    # 3. Keys go browser -> Apache -> relay -> container; the xterm turns red on the remote screen.
    alice.run_in_xterm(r"printf '\033[41m\033[2J\033[H'")
    alice.wait_for_xterm(RED)
    alice.canvas.screenshot(path=str(ARTIFACTS / "browser-e2e-typed.png"))

    # 4. Reload: connected again, to the same container (its xterm still red).
    alice.sockets.clear()  # the old page's socket goes with it; count the new page's
    alice.page.reload()
    alice.wait_connected()
    alice.wait_for_xterm(RED)
    assert alice.page.url == desktop_url
    containers = docker_client.containers.list(filters={"label": f"{LABEL_INSTANCE}={relay.instance}"})
    assert [c.id for c in containers] == [container_id]
    (socket_after_reload,) = alice.open_sockets

    # 5. Idle longer than Apache's timeout and the relay's ping deadline: the same WebSocket
    #    lives on (pings keep it busy) and still carries keys and pixels.
    alice.page.wait_for_timeout(IDLE * 1000)
    assert alice.open_sockets == [socket_after_reload], alice.sockets
    assert alice.page.evaluate("document.documentElement.classList.contains('noVNC_connected')")
    alice.run_in_xterm(r"printf '\033[44m\033[2J\033[H'")
    alice.wait_for_xterm(BLUE)
    assert alice.open_sockets == [socket_after_reload], alice.sockets

    # 6. Another pupil, signed in in another browser context, gets neither page nor stream.
    bob = DesktopPage(chromium.new_context(ignore_https_errors=True, viewport=SCREEN).new_page(), apache.url)
    bob.sign_in("bob")
    response = bob.page.goto(desktop_url)
    assert response is not None and response.status == 404
    outcome = bob.page.evaluate(
        """url => new Promise(resolve => {
            const ws = new WebSocket(url, ["binary"]);
            ws.onopen = () => { ws.close(); resolve("opened"); };
            ws.onclose = event => resolve("closed " + event.code);
        })""",
        f"wss://127.0.0.1:{apache.https_port}/desktop/{session_id}/websockify",
    )
    assert outcome == "closed 1006"  # the handshake was refused: no 101 ever came
    assert "refused desktop upgrade" in relay.log() and " 404 " in relay.log()
    # Alice's desktop did not notice.
    assert alice.open_sockets == [socket_after_reload]
