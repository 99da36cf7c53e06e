"""A signed-in Chromium tab on the relay's pages, for the browser tests: the dashboard, the session
page (its bar) and the web client in the page's frame, and what the desktop shows in it.

Pixels are read from screenshots of the client's canvas (png_pixels), not from the DOM. The
desktop image has known colours: the root window, the xterm's white background, and the colours
a typed `printf` gives it (images/desktop/README.md).
"""

from __future__ import annotations

import os
import re
import time

from apache_harness import ARTIFACTS
from png_pixels import Image, decode_png
from relay_harness import PASSWORD

from desktop_relay.i18n import language

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the chromium fixture skips (or fails, in CI) with the reason
    PlaywrightTimeout = TimeoutError

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
GREEN = (0, 205, 0)  # xterm's colour 2 (green3)
# The xterm covers 70 % of the desktop's first screen (1280x720) from (5 %, 5 %); this part of
# its lower middle is empty and stays inside it when the frame makes the screen a little smaller.
XTERM_BOX = (SCREEN["width"] * 30 // 100, SCREEN["height"] * 45 // 100,
             SCREEN["width"] * 60 // 100, SCREEN["height"] * 65 // 100)


class DesktopPage:
    """One signed-in browser tab and what it can tell about the desktop it shows."""

    def __init__(self, page, url: str, lang: str = "en") -> None:
        self.page = page
        self.url = url
        # The relay's catalog for the language this tab's browser asks for: expected words.
        self.words = language(lang)
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
        self.page.get_by_text(self.words.gettext("Signed in as {name}", name=user.title())).wait_for()

    @property
    def session_id(self) -> str:
        """The session whose page this tab shows."""
        return self.page.url.split("/desktop/")[1].split("/")[0]

    @property
    def client(self):
        """The web client inside the session page's frame."""
        return self.page.frame_locator("iframe#desktop")

    @property
    def canvas(self):
        return self.client.locator("#noVNC_container canvas")

    def bar(self, part: str):
        """A part of the session page's bar: title, state, warning, countdown, stop."""
        return self.page.locator(f"#bar #{part}")

    def wait_connected(self, timeout: float = 30) -> None:
        """Until noVNC says connected (it marks its <html> with noVNC_connected)."""
        try:
            self.client.locator("html.noVNC_connected").wait_for(state="attached", timeout=timeout * 1000)
        except PlaywrightTimeout as e:
            raise AssertionError(f"noVNC did not connect: {e}\nconsole:\n" + "\n".join(self.console)) from None

    # Starting a container adds network interfaces on this host, which Chromium shares here (in
    # production the browser is elsewhere): Chromium then aborts the requests in flight with
    # ERR_NETWORK_CHANGED, a lost POST or a web client whose modules failed to load. A pupil
    # would press reload; the two methods below do so once, and only for that reason.

    def _network_changed(self) -> bool:
        return any("ERR_NETWORK_CHANGED" in line for line in self.console)

    def start_desktop(self, name: str) -> None:
        """Click Start on the dashboard and wait until the desktop's session page is open."""
        self.page.click(f"button[data-desktop={name}]")
        try:
            self.page.wait_for_url("**/desktop/*/", timeout=30_000)
        except PlaywrightTimeout:
            if not self._network_changed():
                raise
            self.console.append("(dashboard reloaded after ERR_NETWORK_CHANGED)")
            self.page.goto(self.url + "/")
            self.page.click("#sessions a")
            self.page.wait_for_url("**/desktop/*/", timeout=30_000)

    def wait_connected_despite_docker(self, timeout: float = 60) -> None:
        """wait_connected, reloading once if the web client lost its files to a network change.

        The deadline is generous because a busy machine can take tens of seconds to start a
        container. A client not connected after 15 s while Chromium has reported a network
        change is taken to have lost its files, and the page is reloaded."""
        started = time.monotonic()
        while True:
            try:
                self.wait_connected(timeout=1)
                return
            except AssertionError:
                waited = time.monotonic() - started
                if waited > 15 and self._network_changed():
                    break
                if waited > timeout:
                    raise
        self.console.append("(session page reloaded after ERR_NETWORK_CHANGED)")
        self.sockets.clear()
        self.page.reload()
        self.wait_connected(timeout=timeout)

    def screen(self) -> Image:
        """The remote screen as the user sees it now: a screenshot of noVNC's canvas."""
        return decode_png(self.canvas.screenshot())

    def wait_for_xterm(self, colour: tuple[int, int, int], timeout: float = 15) -> Image:
        """Until the middle of the xterm shows colour (pixels, polled from screenshots)."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.screen()
            share = image.share(colour, XTERM_BOX)
            if share > 0.9:
                return image
            if time.monotonic() > deadline:
                ARTIFACTS.mkdir(exist_ok=True)
                self.page.screenshot(path=str(ARTIFACTS / f"xterm-not-{colour[0]}-{colour[1]}-{colour[2]}.png"))
                raise AssertionError(f"xterm not {colour} after {timeout} s: {share:.0%} "
                                     f"(most: {image.colours(*XTERM_BOX).most_common(3)})")
            self.page.wait_for_timeout(250)

    def wait_keyboard_in_desktop(self, timeout: float = 10) -> None:
        """Until the web client's canvas in the frame has the browser's keyboard focus, where
        noVNC listens for keys (it focuses the canvas once connected; the page focuses the frame)."""
        client = self.page.frame(url=re.compile(r".*\?path=desktop.*"))
        assert client is not None, "the session page has no client frame"
        try:
            client.wait_for_function("""() => document.hasFocus()
                && document.activeElement !== null && document.activeElement.tagName === "CANVAS"
                && window.parent.document.activeElement === window.frameElement""", timeout=timeout * 1000)
        except PlaywrightTimeout:
            focused = client.evaluate("() => document.activeElement && document.activeElement.outerHTML.slice(0, 120)")
            raise AssertionError(f"the desktop does not have the keyboard: {focused}") from None

    def hover_desktop(self) -> None:
        """Rest the mouse on the middle of the xterm without clicking. The demo image's twm gives
        the X keyboard to the window under the X pointer, which follows the browser's mouse
        whenever Chromium reports a move over the canvas; parked there, typed keys go to the
        xterm wherever the last click left the mouse."""
        box = self.canvas.bounding_box()
        assert box is not None, "the client's canvas is not shown"
        self.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    def click_desktop(self) -> None:
        """Click the middle of the xterm (it has the keyboard under the pointer)."""
        box = self.canvas.bounding_box()
        assert box is not None, "the client's canvas is not shown"
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    def type_command(self, command: str) -> None:
        """Type a shell command into whatever has the keyboard focus, as a person would."""
        self.page.keyboard.type(command, delay=15)
        self.page.keyboard.press("Enter")

    def run_in_xterm(self, command: str) -> None:
        """Click into the desktop's xterm and type a shell command there."""
        self.click_desktop()
        self.type_command(command)

    @property
    def open_sockets(self) -> list[dict]:
        return [s for s in self.sockets if not s["closed"]]
