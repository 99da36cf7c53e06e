"""Benchmark: from the click on Start on the dashboard to the first desktop pixels in the browser.

A real relay (`twistd desktop-relay`, started the way tests/relay_harness.py does), the real Docker
engine and the demo desktop image, headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright. One signed-in tab; each run opens the dashboard, clicks Start, waits until the web
client's canvas shows the desktop, then stops the session.

    python bench/bench_click_to_desktop.py [--runs 10] [--image desktop-relay/demo-desktop:latest]

Every time is taken in the browser with Date.now() (one clock for all, no Playwright round trips in
between) by a script Playwright adds to every document and frame:

| mark | when |
|---|---|
| click | the Start button's click event (capture phase, before the dashboard's handler) |
| POST answered | the page's `fetch` of `POST /api/sessions` resolved (the response's headers arrived) |
| ready | the first API answer the page parsed that said `"state": "ready"` |
| frame loaded | the `load` event of the web client's document (`/desktop/ID/?path=...`), from its navigation timing |
| first pixels | the first animation frame in which the client's canvas shows the desktop: the root |
| | window's rgb(42,111,151) near the bottom-right corner *and* the xterm's white in the middle |

Starting a container adds network interfaces on the host, and Chromium aborts the requests in
flight when it sees that (ERR_NETWORK_CHANGED): a browser on the same host as Docker, as here but
never in production, would make every start a lottery. So, as root, Chromium runs in a network
namespace of its own (tests/apache/loopback_forward.py); the browser still sees
http://127.0.0.1:PORT. Without root (or with --shared-network) it shares the host's network, and
runs hit by ERR_NETWORK_CHANGED are repeated and counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests"), str(HERE.parent / "tests" / "apache")]

from desktop_browser import CHROMIUM, CHROMIUM_ARGS, SCREEN  # noqa: E402
from loopback_forward import IsolatedChromium, available  # noqa: E402

MARKS = ("post", "ready", "frame", "pixels")
LABELS = {"post": "click -> POST answered", "ready": "-> ready", "frame": "-> frame loaded",
          "pixels": "-> first pixels", "total": "click -> first pixels"}

# Runs in every document and frame of the tab. sessionStorage is shared by the dashboard, the
# session page and the client's frame (same origin, same tab), and survives their navigations.
# Pixels are read in the session page's animation frames, which is when its frame is painted too.
PROBE = r"""
(() => {
  const mark = (name, at) => {
    if (!sessionStorage.getItem("bench." + name)) sessionStorage.setItem("bench." + name, String(at || Date.now()));
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest("button[data-desktop]")) {
      for (const key of Object.keys(sessionStorage)) if (key.startsWith("bench.")) sessionStorage.removeItem(key);
      sessionStorage.setItem("bench.click", String(Date.now()));
    }
  }, true);
  const send = window.fetch;
  window.fetch = async function (resource, options) {
    const response = await send.call(this, resource, options);
    if (options && options.method === "POST" && String(resource).endsWith("/api/sessions")) mark("post");
    return response;
  };
  const parse = Response.prototype.json;
  Response.prototype.json = async function () {
    const value = await parse.call(this);
    if (value && value.state === "ready" && sessionStorage.getItem("bench.click")) mark("ready");
    return value;
  };
  // The web client's document in the session page's frame: its load event, then its canvas
  // until the desktop shows, watched from the session page on every animation frame. (Not from
  // inside the frame: a frame whose src the page was served with may run this script in its
  // initial about:blank document, and an animation frame asked for there never comes.)
  if (window !== window.top) return;
  const desktop = (p) => Math.abs(p[0] - 42) < 6 && Math.abs(p[1] - 111) < 6 && Math.abs(p[2] - 151) < 6;
  const white = (p) => p[0] > 240 && p[1] > 240 && p[2] > 240;
  const look = () => {
    const frame = document.getElementById("desktop");
    const client = frame && frame.contentWindow;
    if (client && new URLSearchParams(client.location.search).has("path")) {
      const navigation = client.performance.getEntriesByType("navigation")[0];
      if (navigation && navigation.loadEventStart > 0) {
        mark("frame", Math.round(client.performance.timeOrigin + navigation.loadEventStart));
      }
      const canvas = client.document.querySelector("canvas");
      const context = canvas && canvas.width > 100 && canvas.getContext("2d", { willReadFrequently: true });
      if (context) {
        const w = canvas.width, h = canvas.height;
        if (desktop(context.getImageData(w - 10, h - 10, 1, 1).data) &&
            white(context.getImageData(Math.floor(w / 2), Math.floor(h * 0.55), 1, 1).data)) mark("pixels");
      }
    }
    if (!sessionStorage.getItem("bench.pixels") || !sessionStorage.getItem("bench.frame")) requestAnimationFrame(look);
  };
  if (document.body && document.body.dataset.session !== undefined) requestAnimationFrame(look);
  else document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.session !== undefined) requestAnimationFrame(look);
  });
})();
"""


def one_run(page, base: str, timeout: float) -> dict[str, float] | None:
    """Click Start once and return the marks in ms after the click, or None for a network change."""
    failures: list[str] = []

    def failed(request) -> None:
        failures.append(request.failure or "")

    page.on("requestfailed", failed)
    page.goto(base + "/")
    page.wait_for_selector("button[data-desktop=demo]")
    page.click("button[data-desktop=demo]")
    try:
        # Both: the desktop may show before the client's document has finished loading (its
        # sounds and fonts), and the frame's step is then negative.
        page.wait_for_function("() => sessionStorage.getItem('bench.pixels') && sessionStorage.getItem('bench.frame')",
                               timeout=timeout * 1000)
    except Exception:
        if any("ERR_NETWORK_CHANGED" in f for f in failures):
            return None
        raise
    finally:
        page.remove_listener("requestfailed", failed)
    stored = page.evaluate("() => Object.fromEntries(Object.entries(sessionStorage))")
    if any("ERR_NETWORK_CHANGED" in f for f in failures):
        return None
    click = float(stored["bench.click"])
    marks = {"post": float(stored["bench.post"]), "ready": float(stored["bench.ready"]),
             "frame": float(stored["bench.frame"]), "pixels": float(stored["bench.pixels"])}
    return {name: value - click for name, value in marks.items()}


def stop_sessions(page) -> None:
    """Stop every session of the signed-in user through the API, as the dashboard's Stop does."""
    page.evaluate("""async () => {
        const sessions = await (await fetch("/api/sessions")).json();
        for (const s of sessions) {
            if (["queued", "starting", "ready"].includes(s.state))
                await fetch("/api/sessions/" + s.id, { method: "DELETE" });
        }
    }""")


def summary(runs: list[dict[str, float]]) -> str:
    """p50/min/max of the total and of each step (each step: since the previous mark)."""
    steps: dict[str, list[float]] = {name: [] for name in (*MARKS, "total")}
    for run in runs:
        previous = 0.0
        for name in MARKS:
            steps[name].append(run[name] - previous)
            previous = run[name]
        steps["total"].append(run["pixels"])
    lines = [f"{'':26} {'p50':>7} {'min':>7} {'max':>7}   (ms, {len(runs)} runs)"]
    for name, values in steps.items():
        lines.append(f"{LABELS[name]:26} {statistics.median(values):7.0f} {min(values):7.0f} {max(values):7.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30, help="seconds per run before giving up")
    parser.add_argument("--image", default=os.environ.get("DESKTOP_RELAY_TEST_IMAGE",
                                                         "desktop-relay/demo-desktop:latest"))
    parser.add_argument("--shared-network", action="store_true",
                        help="run Chromium in the host's network namespace (the default without root)")
    args = parser.parse_args()
    isolate = available() and not args.shared_network
    os.environ["DESKTOP_RELAY_TEST_IMAGE"] = args.image

    import docker
    from playwright.sync_api import sync_playwright
    from relay_harness import PASSWORD, RelayProcess, remove_leftovers

    engine = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-click-") as directory:
        relay = RelayProcess(Path(directory), users={"alice": "pupils"})
        relay.start()
        try:
            with sync_playwright() as playwright:
                isolated = IsolatedChromium(CHROMIUM, Path(directory), relay.port) if isolate else None
                chromium = str(isolated.executable) if isolated else CHROMIUM
                browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport=SCREEN).new_page()
                page.add_init_script(PROBE)
                page.goto(relay.url + "/login")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("text=Signed in as Alice")
                runs: list[dict[str, float]] = []
                network_changes = 0
                while len(runs) < args.runs:
                    run = one_run(page, relay.url, args.timeout)
                    if run is None:
                        network_changes += 1
                    else:
                        runs.append(run)
                        print(f"run {len(runs):2}: " + "  ".join(f"{name} {run[name]:6.0f}" for name in MARKS),
                              flush=True)
                    page.goto(relay.url + "/")
                    stop_sessions(page)
                    time.sleep(0.5)  # let the stopped container go before the next start
                browser.close()
                if isolated:
                    isolated.stop()
        finally:
            relay.stop()
            # Its containers, and the homes its users' desktops made (kept on purpose by the relay).
            remove_leftovers(engine, relay)
    print()
    print("Chromium in a network namespace of its own" if isolate else "Chromium in the host's network")
    print(summary(runs))
    if network_changes:
        print(f"({network_changes} run(s) repeated after ERR_NETWORK_CHANGED)")


if __name__ == "__main__":
    main()
