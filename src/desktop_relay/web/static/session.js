// The session page: a thin bar over the desktop's web client, which runs in a same-origin frame.
// The page follows the session with the API's long-poll (wait=change) until it ends: it shows the
// queue position or "starting", loads the client once the desktop is ready, counts down the warning
// before an idle or lifetime stop, and says why the session ended, with "Start again".
"use strict";

const sessionId = document.body.dataset.session;
const bar = document.getElementById("bar");
const frame = document.getElementById("desktop");
const notice = document.getElementById("notice");
const stopButton = document.getElementById("stop");
const startAgainButton = document.getElementById("start-again");
// Unchanged text is not written again: the warning's live region would announce it every second.
function text(id, value) {
  const element = document.getElementById(id);
  if (element.textContent !== (value || "")) { element.textContent = value || ""; }
}

// Only lifetime deadlines closer than this are shown in the bar: a session's end matters when near.
const SHOW_TIME_LEFT = 3600;
// Parameters added to the client's address for the frame. KasmVNC's client changes behaviour
// when framed (it takes itself for Kasm's own portal): it hides its control bar, turns the
// clipboard off and disconnects after its own idle time (20 min). show_control_bar makes it behave
// as it does in a tab of its own; the relay's idle stop, with its warning here, decides instead.
// noVNC ignores both.
const FRAME_PARAMETERS = "&show_control_bar=1&idle_disconnect=100000";

let view = null;
let clientLoaded = false;

function focusDesktop() {
  if (frame.isConnected && !frame.hidden) { frame.focus(); }
}

function showNotice(title, body, detail) {
  text("notice-title", title);
  text("notice-text", body);
  text("notice-detail", detail);
  notice.hidden = false;
}

function loadClient() {
  if (clientLoaded) { return; }
  clientLoaded = true;
  notice.hidden = true;
  frame.hidden = false;
  frame.src = view.client_url + FRAME_PARAMETERS;
}

function endClient() {
  // Removing the frame closes its WebSocket; the page offers a new start instead.
  frame.remove();
}

function show(next) {
  // The Stop button's answer and the long-poll's can cross: an older view never replaces a newer.
  if (view !== null && next.updated < view.updated) { return; }
  view = next;
  document.body.dataset.state = view.state;
  text("title", view.title);
  text("state", relayApi.stateText(view));
  text("notice-error", "");
  const running = view.state === "ready" || view.state === "interrupted";
  stopButton.hidden = !relayApi.ACTIVE.has(view.state) || view.state === "stopping";
  stopButton.textContent = running ? t("Stop") : t("Cancel");
  if (running) {
    // Interrupted: the client keeps trying to reconnect by itself while the server waits for
    // its container engine.
    loadClient();
  } else if (view.state === "queued") {
    showNotice(t("Waiting for a free desktop"),
      view.position ? tn("You are number {count} in line. The desktop opens here by itself.",
                         "You are number {count} in line. The desktop opens here by itself.", view.position) : "",
      t("All desktops are in use right now."));
  } else if (view.state === "starting") {
    showNotice(t("Starting {desktop}…", { desktop: view.title }), t("The desktop opens here in a moment."), "");
  } else if (view.state === "stopping") {
    showNotice(t("Stopping…"), "", "");
  } else {
    endClient();
    showNotice(view.state === "failed" ? t("{desktop} failed", { desktop: view.title }) : t("{desktop} has ended", { desktop: view.title }),
      relayApi.endText(view), view.reason);
    startAgainButton.hidden = false;
  }
  tick();
}

// The warning and the time left, once a second from the server's clock.
function tick() {
  const warning = document.getElementById("warning");
  if (!view || !(view.state === "ready" || view.state === "interrupted")) {
    warning.hidden = true;
    text("time-left", "");
    document.title = view ? view.title + " · " + relayApi.stateText(view) : t("Desktop");
    return;
  }
  const now = relayApi.serverNow();
  if (view.warning) {
    const left = relayApi.duration(view.warning.at - now);
    text("warning-text", view.warning.reason === "idle"
      ? t("Nobody has used this desktop for a while. It stops in")
      : t("This desktop reaches its time limit. Save your work: it stops in"));
    text("countdown", left);
    text("warning-hint", view.warning.reason === "idle" ? t("Type or move the mouse in the desktop to keep it.") : "");
    warning.hidden = false;
    text("time-left", "");
    document.title = t("Stops in {time}", { time: left }) + " · " + view.title;
    return;
  }
  warning.hidden = true;
  const lifetimeLeft = view.lifetime_deadline ? view.lifetime_deadline - now : Infinity;
  text("time-left", lifetimeLeft < SHOW_TIME_LEFT ? t("{time} left", { time: relayApi.duration(lifetimeLeft) }) : "");
  document.title = view.title;
}

async function follow() {
  // Retries after errors: at once first (a request the browser dropped on a network change),
  // then backing off while the server is unreachable.
  let retry = 0;
  for (;;) {
    let next;
    try {
      next = view === null
        ? await relayApi.call("GET", "/sessions/" + encodeURIComponent(sessionId))
        : await relayApi.nextView(view);
      retry = 0;
    } catch (error) {
      if (error.status === 401) { return; }
      if (error.status === 404) {
        endClient();
        showNotice(t("No such desktop"), t("There is no desktop session with this address for you."), "");
        return;
      }
      text("state", t("Reconnecting to the server…"));
      await relayApi.sleep(retry);
      retry = Math.min(Math.max(1000, retry * 2), 15000);
      continue;
    }
    show(next);
    if (!relayApi.ACTIVE.has(next.state)) { return; }
  }
}

async function stop() {
  stopButton.disabled = true;
  try {
    show(await relayApi.call("DELETE", "/sessions/" + encodeURIComponent(sessionId)));
  } catch (error) {
    text("state", error.message);
  } finally {
    stopButton.disabled = false;
  }
}

async function startAgain() {
  startAgainButton.disabled = true;
  try {
    const started = await relayApi.call("POST", "/sessions", { desktop: view.desktop });
    window.location.assign(started.url);
  } catch (error) {
    text("notice-error", relayApi.problemText(error));
    startAgainButton.disabled = false;
  }
}

// The bar never takes the keyboard from the desktop: a press on it does not move the focus, and
// after a click the frame has it again. Nothing on this page listens to keys.
bar.addEventListener("mousedown", (event) => event.preventDefault());
bar.addEventListener("click", () => setTimeout(focusDesktop));
frame.addEventListener("load", focusDesktop);
stopButton.addEventListener("click", stop);
startAgainButton.addEventListener("click", startAgain);
setInterval(tick, 1000);
follow();
