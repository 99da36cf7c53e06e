"""Records what the demo desktop's web client (Debian's noVNC 1.3) sends to its desktop, for the
RFB input classifier's tests (tests/unit/test_rfb_classifier.py).

Starts one demo desktop container, opens noVNC in headless Chromium (Debian's /usr/bin/chromium
through Playwright; nothing is downloaded) straight on the container's port, and writes every
WebSocket message the page sends, one fresh connection per recording, to
tests/recordings/<name>.jsonl (format: tests/recordings/README.md). Not run by the test suite:

    .venv/bin/python tests/recordings/record_novnc.py [--image desktop-relay/demo-desktop:latest]

Needs the Docker engine and the image (scripts/ensure-docker, scripts/build-desktop-image).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("DESKTOP_RELAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"]
SCREEN = {"width": 1280, "height": 720}
USER = "kasm_user"


def start_desktop(image: str, password: str) -> tuple[str, int]:
    """docker run the image on a loopback port; returns (container id, port) once it answers."""
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::6901", "-e", f"VNC_PW={password}", "--shm-size=512m", image],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    port = int(subprocess.run(["docker", "port", container, "6901/tcp"], check=True, capture_output=True,
                              text=True).stdout.split(":")[-1])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    auth = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
    deadline = time.monotonic() + 20
    while True:
        try:
            request = urllib.request.Request(f"https://127.0.0.1:{port}/", headers={"Authorization": auth})
            with urllib.request.urlopen(request, context=context, timeout=2) as answer:
                if answer.status == 200:
                    return container, port
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def record(page: Page, url: str, act: Callable[[Page, str], None], container: str) -> list[tuple[float, bytes]]:
    """Connect noVNC once, let ``act`` drive the page, and return what the page sent."""
    sent: list[tuple[float, bytes]] = []

    def opened(ws: object) -> None:
        ws.on("framesent", lambda payload: sent.append(
            (time.monotonic(), payload if isinstance(payload, bytes) else payload.encode())))

    page.on("websocket", opened)
    page.goto(url)
    page.wait_for_selector("html.noVNC_connected", state="attached", timeout=20_000)
    # Let the start-up traffic (encodings, the first full update request) settle.
    page.wait_for_timeout(1000)
    act(page, container)
    page.wait_for_timeout(500)
    page.remove_listener("websocket", opened)
    return sent


def idle(page: Page, container: str) -> None:
    page.wait_for_timeout(5000)


def idle_busy_screen(page: Page, container: str) -> None:
    # The desktop changes its screen by itself (its background, every 0.25 s for 5 s), like a
    # clock or a video: updates flow, and the client answers the server's fences.
    script = (
        "export DISPLAY=:1; for i in $(seq 10); do xsetroot -solid '#3a7fa7'; sleep 0.25; "
        "xsetroot -solid '#2a6f97'; sleep 0.25; done"
    )
    subprocess.run(["docker", "exec", "-d", container, "sh", "-c", script], check=True)
    page.wait_for_timeout(5500)


def typing(page: Page, container: str) -> None:
    # Focus without a click: the recording holds keys only.
    page.locator("#noVNC_container canvas").focus()
    page.keyboard.type("ls -l", delay=40)
    page.keyboard.press("Shift+A")
    page.keyboard.press("Enter")


def mouse(page: Page, container: str) -> None:
    page.mouse.move(200, 200)
    page.mouse.move(600, 400, steps=12)
    page.wait_for_timeout(100)
    page.mouse.click(640, 360)
    page.wait_for_timeout(100)
    page.mouse.down(button="right")
    page.mouse.up(button="right")
    page.mouse.wheel(0, 120)
    page.wait_for_timeout(200)


def pointer_repeat(page: Page, container: str) -> None:
    # The same position twice, and a click at it: only the first move and the button changes
    # are a person's doing as the parser sees it.
    page.mouse.move(300, 300)
    page.wait_for_timeout(100)
    page.mouse.move(300, 300)
    page.wait_for_timeout(100)
    page.mouse.move(300, 300)
    page.wait_for_timeout(100)
    page.mouse.down()
    page.mouse.up()


def clipboard(page: Page, container: str) -> None:
    # What noVNC's clipboard panel does when a person pastes text into it and leaves the box.
    page.evaluate(
        """() => { const box = document.getElementById('noVNC_clipboard_text');
                   box.value = 'pasted by a person';
                   box.dispatchEvent(new Event('change')); }"""
    )
    page.wait_for_timeout(500)


RECORDINGS: dict[str, tuple[Callable[[Page, str], None], str]] = {
    "novnc-idle": (idle, "connect, then 5 s with nobody at the keyboard"),
    "novnc-idle-busy-screen": (
        idle_busy_screen,
        "connect, then 5 s with nobody at the keyboard while the desktop changes its background every 0.25 s",
    ),
    "novnc-typing": (typing, "connect, focus the canvas without a click, type 'ls -l', Shift+A, Enter"),
    "novnc-mouse": (mouse, "connect, move the mouse, left click, right click, one wheel turn down"),
    "novnc-pointer-repeat": (pointer_repeat, "connect, move to (300, 300) three times, click there"),
    "novnc-clipboard": (clipboard, "connect, paste text into noVNC's clipboard panel"),
}


def write(name: str, description: str, sent: list[tuple[float, bytes]], browser_version: str) -> None:
    start = sent[0][0] if sent else 0.0
    header = {
        "recording": name,
        "description": description,
        "client": "noVNC 1.3 from Debian's novnc package (the demo desktop image's web client)",
        "server": "websockify + TigerVNC Xvnc in desktop-relay/demo-desktop (security type None)",
        "browser": f"Chromium {browser_version}, headless, driven by Playwright",
        "made_by": "tests/recordings/record_novnc.py",
        "synthetic": False,
    }
    lines = [json.dumps(header)]
    lines += [json.dumps({"t": round(at - start, 3), "hex": payload.hex()}) for at, payload in sent]
    (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    print(f"{name}: {len(sent)} messages, {sum(len(p) for _, p in sent)} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="desktop-relay/demo-desktop:latest")
    args = parser.parse_args()
    password = secrets.token_urlsafe(12)
    container, port = start_desktop(args.image, password)
    url = f"https://127.0.0.1:{port}/vnc.html?autoconnect=1&path=websockify&resize=remote"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for name, (act, description) in RECORDINGS.items():
                # Containers started on this host meanwhile (by anyone) change its network
                # interfaces, and Chromium then aborts page loads (ERR_NETWORK_CHANGED): try again.
                for attempt in range(3):
                    context = browser.new_context(
                        ignore_https_errors=True, viewport=SCREEN,
                        http_credentials={"username": USER, "password": password},
                    )
                    try:
                        sent = record(context.new_page(), url, act, container)
                        break
                    except PlaywrightTimeout:
                        if attempt == 2:
                            raise
                        print(f"{name}: noVNC did not connect, trying again")
                    finally:
                        context.close()
                write(name, description, sent, browser.version)
            browser.close()
    finally:
        subprocess.run(["docker", "rm", "-f", container], check=False, capture_output=True)


if __name__ == "__main__":
    main()
