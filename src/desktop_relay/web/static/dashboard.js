// The dashboard: lists desktops and sessions from /api/. Start goes straight to the desktop's own
// page, which waits for the desktop while its container starts; sessions that are still changing
// (queued, starting, stopping) are followed here by long-poll, so positions, the start's steps
// (each with its time) and reasons stay current. Step changes are announced to screen readers.
"use strict";

const statusLine = document.getElementById("status");
const announcer = document.getElementById("announce");
// Sessions with a long-poll under way, so a redraw does not start a second one.
const followed = new Set();
// The start's steps of each session seen starting here, kept across redraws.
const startSteps = new Map();
// The last view of each session, for the clock's redraw of their steps.
const views = new Map();

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text) { node.textContent = text; }
  Object.assign(node, attributes || {});
  return node;
}

function announce(words) {
  if (announcer.textContent !== words) { announcer.textContent = words; }
}

async function start(desktop, button) {
  button.disabled = true;
  button.textContent = t("Starting…");
  try {
    const session = await relayApi.call("POST", "/sessions", { desktop: desktop.name });
    // At once, whatever the state: the page loads while the container starts and shows the
    // desktop the moment it is ready.
    window.location.assign(session.url);
  } catch (error) {
    statusLine.textContent = relayApi.problemText(error);
    button.disabled = false;
    button.textContent = t("Start");
  }
}

async function stop(session) {
  try {
    await relayApi.call("DELETE", "/sessions/" + encodeURIComponent(session.id));
  } catch (error) {
    statusLine.textContent = relayApi.problemText(error);
  }
  await refresh();
}

function follow(session) {
  if (followed.has(session.id)) { return; }
  followed.add(session.id);
  relayApi.nextView(session)
    .catch(() => relayApi.sleep(2000))
    .then(() => { followed.delete(session.id); return refresh(); })
    .catch((error) => { statusLine.textContent = error.message; });
}

// The session's steps, noted from its view; a change is announced.
function noteSteps(session) {
  const starting = session.state === "queued" || session.state === "starting";
  if (!startSteps.has(session.id)) {
    if (!starting) { return null; }
    startSteps.set(session.id, new relayApi.StartSteps());
  }
  const steps = startSteps.get(session.id);
  if (steps.note(session, false)) {
    const words = session.state === "ready" ? t("{desktop} is ready.", { desktop: session.title })
      : steps.current ? t("{desktop}: {step}", { desktop: session.title, step: steps.announcement(session) }) : "";
    if (words) { announce(words); }
  }
  return steps;
}

function sessionRow(session) {
  const item = element("li");
  item.dataset.session = session.id;
  item.dataset.state = session.state;
  item.append(element("span", relayApi.stateText(session), { className: "state" }),
              element("span", session.title, { className: "title" }),
              element("time", t("started {time}", { time: i18n.time(session.created) }),
                      { dateTime: new Date(session.created * 1000).toISOString(), title: i18n.dateTime(session.created) }));
  if (session.prestart && !session.prestart.opened && relayApi.ACTIVE.has(session.state)) {
    // Started for the pupil before the lesson: they know it is theirs to open, and until when.
    item.append(element("span", t("Ready for your lesson at {time}; open it by {deadline}.", {
      time: i18n.time(session.prestart.lesson), deadline: i18n.time(session.prestart.claim_deadline),
    }), { className: "prestart" }));
  }
  const steps = noteSteps(session);
  if (steps && steps.current) {
    const list = element("ol", "", { className: "steps" });
    list.setAttribute("aria-label", t("Progress of {desktop}", { desktop: session.title }));
    steps.render(list, session);
    item.append(list);
  }
  if (relayApi.ACTIVE.has(session.state)) {
    if (session.state !== "stopping") {
      item.append(element("a", t("Open"), { href: session.url }));
      const running = session.state === "ready" || session.state === "interrupted";
      const button = element("button", running ? t("Stop") : t("Cancel"), { type: "button", className: "quiet" });
      button.setAttribute("aria-label", running ? t("Stop {desktop}", { desktop: session.title })
        : t("Cancel {desktop}", { desktop: session.title }));
      button.addEventListener("click", () => stop(session));
      item.append(button);
    }
  } else {
    const reason = element("span", "", { className: "reason", title: session.reason || "" });
    reason.append(element("span", relayApi.endText(session), { className: "what" }));
    if (session.state === "failed") {
      reason.append(" ", element("span", relayApi.endAction(session), { className: "action" }));
    }
    item.append(reason);
  }
  return item;
}

// Every second: the running steps' times.
function tick() {
  for (const list of document.querySelectorAll("#sessions li[data-session] ol.steps")) {
    const id = list.parentElement.dataset.session;
    const steps = startSteps.get(id);
    if (steps && views.has(id)) { steps.render(list, views.get(id)); }
  }
}

function drawDesktops(desktopList, desktops) {
  desktopList.dataset.drawn = JSON.stringify(desktops);
  desktopList.replaceChildren();
  for (const desktop of desktops) {
    const item = element("li");
    item.append(element("h3", desktop.title), element("p", desktop.description));
    const button = element("button", t("Start"), { type: "button" });
    button.dataset.desktop = desktop.name;
    button.setAttribute("aria-label", t("Start {desktop}", { desktop: desktop.title }));
    button.addEventListener("click", () => start(desktop, button));
    item.append(button);
    desktopList.append(item);
  }
  if (desktops.length === 0) {
    desktopList.append(element("li", t("No desktops are available for your account.")));
  }
}

async function refresh() {
  const [desktops, sessions] = await Promise.all([relayApi.call("GET", "/desktops"), relayApi.call("GET", "/sessions")]);
  const desktopList = document.getElementById("desktops");
  // Drawn again only when they changed: a redraw would take the keyboard focus off a Start button.
  if (JSON.stringify(desktops) !== desktopList.dataset.drawn) {
    drawDesktops(desktopList, desktops);
  }
  // A redraw must not lose the keyboard's place: the focused control is found again by its role.
  const focused = document.activeElement;
  const focusKey = focused && focused.closest("#sessions li[data-session]")
    ? [focused.closest("li").dataset.session, focused.tagName, focused.textContent] : null;
  for (const session of sessions) { views.set(session.id, session); }
  document.getElementById("sessions").replaceChildren(...sessions.map(sessionRow));
  if (focusKey) {
    const row = document.querySelector(`#sessions li[data-session="${CSS.escape(focusKey[0])}"]`);
    const again = row && Array.from(row.querySelectorAll("a, button"))
      .find((control) => control.tagName === focusKey[1] && control.textContent === focusKey[2]);
    // Its control is gone (a stopped session has none): to the list's heading, not to nowhere.
    (again || document.getElementById("sessions-heading")).focus();
  }
  for (const session of sessions) {
    if (relayApi.ACTIVE.has(session.state)) { follow(session); }
  }
}

setInterval(tick, 1000);
refresh().catch((error) => { statusLine.textContent = error.message; });
