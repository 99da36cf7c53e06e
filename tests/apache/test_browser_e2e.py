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

from collections.abc import Callable

import pytest
from apache_harness import ARTIFACTS, free_port
from desktop_browser import BACKGROUND, BLUE, RED, SCREEN, WHITE, DesktopPage
from relay_harness import LABEL_INSTANCE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROXY_TIMEOUT = 5  # Apache's Timeout and worker timeout for this test, seconds
PING_INTERVAL = 2  # the relay's [websocket] ping_interval (also its pong deadline)
IDLE = 8  # longer than both


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


def test_a_pupil_uses_a_desktop_through_apache(chromium, site, docker_client):
    relay, apache = site
    ARTIFACTS.mkdir(exist_ok=True)
    alice = DesktopPage(chromium.new_context(ignore_https_errors=True, viewport=SCREEN).new_page(), apache.url)

    # 1. Sign in, see the dashboard, start the desktop.
    alice.sign_in("alice")
    alice.start_desktop("demo")

    # 2. The dashboard goes to the desktop's page, which shows the client once the desktop is
    #    ready; noVNC connects through Apache.
    desktop_url = alice.page.url
    session_id = alice.session_id
    alice.wait_connected_despite_docker()
    screen = alice.wait_for_xterm(WHITE)
    alice.page.screenshot(path=str(ARTIFACTS / "browser-e2e-desktop.png"))
    # resize=remote: the remote screen is as wide as the window and as high as it, less the bar.
    bar = alice.page.locator("#bar").bounding_box()
    assert bar is not None
    assert (screen.width, screen.height) == (SCREEN["width"], SCREEN["height"] - round(bar["height"]))
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
    assert alice.client.locator("html.noVNC_connected").count() == 1
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
