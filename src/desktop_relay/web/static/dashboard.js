// The dashboard: lists desktops and sessions from /api/. Start goes straight to the desktop's own
// page, which waits for the desktop while its container starts; sessions that are still changing
// (queued, starting, stopping) are followed here by long-poll, so positions and reasons stay current.
"use strict";

const statusLine = document.getElementById("status");
// Sessions with a long-poll under way, so a redraw does not start a second one.
const followed = new Set();

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text) { node.textContent = text; }
  Object.assign(node, attributes || {});
  return node;
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

function sessionRow(session) {
  const item = element("li");
  item.dataset.session = session.id;
  item.dataset.state = session.state;
  item.append(element("span", relayApi.stateText(session), { className: "state" }),
              element("span", session.title),
              element("time", t("started {time}", { time: i18n.time(session.created) }),
                      { dateTime: new Date(session.created * 1000).toISOString(), title: i18n.dateTime(session.created) }));
  if (relayApi.ACTIVE.has(session.state)) {
    if (session.state !== "stopping") {
      item.append(element("a", t("Open"), { href: session.url }));
      const running = session.state === "ready" || session.state === "interrupted";
      const button = element("button", running ? t("Stop") : t("Cancel"), { type: "button", className: "quiet" });
      button.addEventListener("click", () => stop(session));
      item.append(button);
    }
  } else {
    item.append(element("span", relayApi.endText(session), { className: "reason", title: session.reason || "" }));
  }
  return item;
}

async function refresh() {
  const [desktops, sessions] = await Promise.all([relayApi.call("GET", "/desktops"), relayApi.call("GET", "/sessions")]);
  const desktopList = document.getElementById("desktops");
  desktopList.replaceChildren();
  for (const desktop of desktops) {
    const item = element("li");
    item.append(element("h3", desktop.title), element("p", desktop.description));
    const button = element("button", t("Start"), { type: "button" });
    button.dataset.desktop = desktop.name;
    button.addEventListener("click", () => start(desktop, button));
    item.append(button);
    desktopList.append(item);
  }
  if (desktops.length === 0) {
    desktopList.append(element("li", t("No desktops are available for your account.")));
  }
  document.getElementById("sessions").replaceChildren(...sessions.map(sessionRow));
  for (const session of sessions) {
    if (relayApi.ACTIVE.has(session.state)) { follow(session); }
  }
}

refresh().catch((error) => { statusLine.textContent = error.message; });
