// The session page: a thin bar over the desktop's web client, which runs in a same-origin frame.
// The page follows the session with the API's long-poll (wait=change) until it ends: it lists the
// start's steps as they happen (in line, starting the container, waiting for the desktop, and its
// own: connecting, from loading the client until it is connected), each with its time, loads the
// client once the desktop is ready, counts down the warning before an idle or lifetime stop, and
// says why the session ended and what to do, with "Start again".
//
// Keyboard: the desktop's frame takes the keyboard when it loads and keeps every key for the
// desktop (Tab included), except Ctrl+Alt+Home, which moves the focus to this bar; from there
// Tab and Shift+Tab go through the bar and back into the desktop. The bar says so while the
// desktop has the keyboard.
"use strict";

const sessionId = document.body.dataset.session;
const bar = document.getElementById("bar");
const frame = document.getElementById("desktop");
const notice = document.getElementById("notice");
const stepList = document.getElementById("steps");
const stopButton = document.getElementById("stop");
const startAgainButton = document.getElementById("start-again");
const keyboardHint = document.getElementById("keyboard-hint");
// Unchanged text is not written again: live regions would announce it again.
function text(id, value) {
  const element = document.getElementById(id);
  if (element.textContent !== (value || "")) { element.textContent = value || ""; }
}

// Told to screen readers (the status region): a step of the start, ready, reconnecting.
function announce(words) {
  text("announce", words);
}

// Only lifetime deadlines closer than this are shown in the bar: a session's end matters when near.
const SHOW_TIME_LEFT = 3600;
let view = null;
// A desktop that was ready when the page was served has its client in the frame from the start.
let clientLoaded = frame.hasAttribute("src");
// Whether the web client in the frame has connected once (noVNC marks its <html> noVNC_connected).
let connected = false;
const steps = new relayApi.StartSteps();

function focusDesktop() {
  if (frame.isConnected && !frame.hidden) { frame.focus(); }
}

// The first of the bar's controls a keyboard user can use.
function focusBar() {
  const target = Array.from(bar.querySelectorAll("a[href], button")).find((element) => !element.hidden);
  if (target) { target.focus(); }
}

function showKeyboardHint() {
  keyboardHint.classList.toggle("off", document.activeElement !== frame || !clientLoaded);
}

function showNotice(title, body, action, detail) {
  text("notice-title", title);
  text("notice-text", body);
  text("notice-action", action);
  text("notice-detail", detail);
  notice.hidden = false;
}

function clientConnected() {
  if (connected) { return; }
  connected = true;
  steps.enter(null);
  notice.hidden = true;
  notice.classList.remove("overlay");
  announce(t("{desktop} is ready.", { desktop: view.title }));
}

// Watches the client in the frame (same origin) for its connection, and gives it the one key
// that leads back to the bar.
function watchClient() {
  let client;
  try {
    client = frame.contentWindow.document;
  } catch (error) {
    return;  // not the relay's own client: nothing to watch
  }
  const root = client.documentElement;
  const check = () => { if (root.classList.contains("noVNC_connected")) { clientConnected(); } };
  new MutationObserver(check).observe(root, { attributes: true, attributeFilter: ["class"] });
  check();
  frame.contentWindow.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.altKey && event.key === "Home") {
      event.preventDefault();
      event.stopImmediatePropagation();
      focusBar();
    }
  }, true);
}

function loadClient() {
  if (clientLoaded) { return; }
  clientLoaded = true;
  frame.hidden = false;
  frame.src = view.client_url;
}

function endClient() {
  // Removing the frame closes its WebSocket; the page offers a new start instead.
  const hadFocus = document.activeElement === frame || document.activeElement === document.body;
  frame.remove();
  return hadFocus;
}

function showSteps() {
  steps.render(stepList, view);
  stepList.hidden = stepList.children.length === 0;
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
  if (!connected && steps.note(view, true)) {
    // In line, the notice itself tells the place (a live region of its own).
    announce(view.state === "queued" ? "" : steps.announcement(view));
  } else if (view.state === "interrupted") {
    announce(view.reason);
  }
  if (running) {
    // Interrupted: the client keeps trying to reconnect by itself while the server waits for
    // its container engine.
    loadClient();
    if (!connected) {
      // Over the desktop's frame (which already has its final size) until the client connects.
      notice.classList.add("overlay");
      showNotice(t("Connecting to {desktop}…", { desktop: view.title }), "", "", "");
    }
  } else if (view.state === "queued") {
    showNotice(t("Waiting for a free desktop"),
      view.position ? tn("You are number {count} in line. The desktop opens here by itself.",
                         "You are number {count} in line. The desktop opens here by itself.", view.position) : "",
      "", view.engine === "unreachable"
        ? t("The server that runs desktops is not answering right now; your start waits until it is back.")
        : t("All desktops are in use right now."));
  } else if (view.state === "starting") {
    showNotice(t("Starting {desktop}…", { desktop: view.title }), t("The desktop opens here in a moment."), "", "");
  } else if (view.state === "stopping") {
    showNotice(t("Stopping…"), "", "", "");
  } else {
    const hadFocus = endClient();
    notice.classList.remove("overlay");
    showNotice(view.state === "failed" ? t("{desktop} could not start", { desktop: view.title })
      : t("{desktop} has ended", { desktop: view.title }),
      relayApi.endText(view), relayApi.endAction(view), view.reason);
    startAgainButton.hidden = false;
    // The keyboard was in the desktop, which is gone: to what the user can do next.
    if (hadFocus || document.activeElement === stopButton || document.activeElement === document.body) {
      startAgainButton.focus();
    }
  }
  showLooks();
  tick();
}

// Who is watching this desktop (a teacher's look, web/looks.py), who has control, and a teacher's
// request for control with Accept and Refuse; shown at once, as the long-poll wakes for it.
function showLooks() {
  const looks = (view && view.looks) || { watching: [], control_request: null };
  const box = document.getElementById("looks");
  const names = looks.watching.map((look) => look.name);
  const controlling = looks.watching.filter((look) => look.control).map((look) => look.name);
  const lines = [];
  if (controlling.length) {
    lines.push(t("{names} has control of your screen.", { names: controlling.join(", ") }));
  } else if (names.length) {
    lines.push(t("{names} is watching your screen.", { names: names.join(", ") }));
  }
  if (looks.control_request) {
    lines.push(t("{name} asks to control your desktop.", { name: looks.control_request.name }));
  }
  const words = lines.join(" ");
  if (document.getElementById("looks-text").textContent !== words) { text("looks-text", words); }
  box.hidden = lines.length === 0;
  document.getElementById("control-accept").hidden = !looks.control_request;
  document.getElementById("control-refuse").hidden = !looks.control_request;
  document.getElementById("control-take-back").hidden = controlling.length === 0;
}

async function answerControl(method, suffix, body) {
  try {
    await relayApi.call(method, "/looks/" + encodeURIComponent(sessionId) + suffix, body);
  } catch (error) {
    text("notice-error", error.message);
  }
}

// The warning, the time left and the steps' times, once a second from the server's clock.
function tick() {
  if (view && !notice.hidden) { showSteps(); }
  showKeyboardHint();
  showHomeWarning();
  const warning = document.getElementById("warning");
  if (!view || !(view.state === "ready" || view.state === "interrupted")) {
    hideWarning(warning);
    text("time-left", "");
    document.title = view ? view.title + " · " + relayApi.stateText(view) : t("Desktop");
    return;
  }
  const now = relayApi.serverNow();
  if (view.warning) {
    const left = relayApi.duration(view.warning.at - now);
    // Shown before its text is written: an alert is announced when its text changes while shown.
    warning.hidden = false;
    text("warning-text", view.warning.reason === "idle"
      ? t("Nobody has used this desktop for a while. It stops in")
      : t("This desktop reaches its time limit. Save your work: it stops in"));
    text("countdown", left);
    text("warning-hint", view.warning.reason === "idle" ? t("Type or move the mouse in the desktop to keep it.") : "");
    text("time-left", "");
    document.title = t("Stops in {time}", { time: left }) + " · " + view.title;
    return;
  }
  hideWarning(warning);
  const lifetimeLeft = view.lifetime_deadline ? view.lifetime_deadline - now : Infinity;
  text("time-left", lifetimeLeft < SHOW_TIME_LEFT ? t("{time} left", { time: relayApi.duration(lifetimeLeft) }) : "");
  document.title = view.title;
}

// A home over its quota: warned about, not enforced inside the desktop (the engine's volumes
// have no size limit; docs/homes.md), so the pupil learns it before their disk use hurts others.
function showHomeWarning() {
  const warning = document.getElementById("home-warning");
  const home = view && (view.state === "ready" || view.state === "interrupted") ? view.home : null;
  if (!home || !home.over_quota) {
    warning.hidden = true;
    text("home-warning-text", "");
    return;
  }
  warning.hidden = false;
  text("home-warning-text", t("Your home folder holds {usage}, more than its {quota}. Delete files you no longer need.",
    { usage: byteSize(home.usage), quota: byteSize(home.quota) }));
}

// Bytes as people read them, in the page's language: "1.2 GB", "1,2 GB", "350 MB". Counted in
// 1024s, as relay.ini's sizes are, so that a quota of 1g reads "1 GB".
function byteSize(bytes) {
  const [unit, size] = bytes >= 2 ** 30 ? ["gigabyte", 2 ** 30] : ["megabyte", 2 ** 20];
  return new Intl.NumberFormat(i18n.lang, { style: "unit", unit, maximumFractionDigits: 1 }).format(bytes / size);
}

// Hidden and emptied, so that the next warning is announced again.
function hideWarning(warning) {
  warning.hidden = true;
  text("warning-text", "");
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
        showNotice(t("No such desktop"), t("There is no desktop session with this address for you."),
          t("Go back to your desktops and start one there."), "");
        return;
      }
      text("state", t("Reconnecting to the server…"));
      announce(t("Reconnecting to the server…"));
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

// A mouse on the bar never takes the keyboard from the desktop: a press on it does not move the
// focus, and after a click the frame has it again. A keyboard user's Enter or Space on a control
// (a click with detail 0) leaves the focus where they put it.
bar.addEventListener("mousedown", (event) => event.preventDefault());
bar.addEventListener("click", (event) => { if (event.detail > 0) { setTimeout(focusDesktop); } });
function clientArrived() { watchClient(); focusDesktop(); showKeyboardHint(); }
frame.addEventListener("load", clientArrived);
// The page's own frame may have finished loading before this script ran.
if (clientLoaded && frame.contentDocument && frame.contentDocument.readyState === "complete" &&
    frame.contentWindow.location.href !== "about:blank") { clientArrived(); }
frame.addEventListener("focus", showKeyboardHint);
frame.addEventListener("blur", showKeyboardHint);
// Focus moving into the frame blurs this window; moving back focuses it.
window.addEventListener("blur", () => setTimeout(showKeyboardHint));
window.addEventListener("focus", showKeyboardHint);
stopButton.addEventListener("click", stop);
document.getElementById("control-accept").addEventListener("click",
  () => answerControl("POST", "/control/answer", { accept: true }));
document.getElementById("control-refuse").addEventListener("click",
  () => answerControl("POST", "/control/answer", { accept: false }));
document.getElementById("control-take-back").addEventListener("click", () => answerControl("DELETE", "/control"));
startAgainButton.addEventListener("click", startAgain);
setInterval(tick, 1000);
follow();
