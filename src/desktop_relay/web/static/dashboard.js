// The dashboard: lists desktops and sessions from /api/, starts one and waits until it is ready.
"use strict";

const statusLine = document.getElementById("status");

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/api" + path, options);
  const data = await response.json();
  if (response.status === 401) { window.location = "/login"; }
  if (!response.ok) { throw new Error(data.detail || data.title || response.statusText); }
  return data;
}

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text) { node.textContent = text; }
  Object.assign(node, attributes || {});
  return node;
}

async function waitUntilReady(session) {
  while (session.state === "starting") {
    statusLine.textContent = "";
    document.title = "Starting " + session.title + "…";
    await new Promise((resolve) => setTimeout(resolve, 1000));
    session = await api("GET", "/sessions/" + session.id);
  }
  if (session.state === "ready") {
    window.location = session.url;
  } else {
    statusLine.textContent = session.title + " could not start: " + (session.reason || session.state);
    await refresh();
  }
}

async function start(desktop, button) {
  button.disabled = true;
  button.textContent = "Starting…";
  try {
    const session = await api("POST", "/sessions", { desktop: desktop.name });
    await waitUntilReady(session);
  } catch (error) {
    statusLine.textContent = error.message;
    button.disabled = false;
    button.textContent = "Start";
  }
}

async function stop(session) {
  try {
    await api("DELETE", "/sessions/" + session.id);
  } catch (error) {
    statusLine.textContent = error.message;
  }
  await refresh();
}

async function refresh() {
  const [desktops, sessions] = await Promise.all([api("GET", "/desktops"), api("GET", "/sessions")]);
  const desktopList = document.getElementById("desktops");
  desktopList.replaceChildren();
  for (const desktop of desktops) {
    const item = element("li");
    item.append(element("h3", desktop.title), element("p", desktop.description));
    const button = element("button", "Start", { type: "button" });
    button.dataset.desktop = desktop.name;
    button.addEventListener("click", () => start(desktop, button));
    item.append(button);
    desktopList.append(item);
  }
  if (desktops.length === 0) {
    desktopList.append(element("li", "No desktops are available for your account."));
  }
  const sessionList = document.getElementById("sessions");
  sessionList.replaceChildren();
  for (const session of sessions) {
    const item = element("li");
    item.append(element("span", session.state, { className: "state" }), element("span", session.title));
    if (session.state === "ready") {
      item.append(element("a", "Open", { href: session.url }));
    }
    if (session.state === "ready" || session.state === "starting") {
      const button = element("button", "Stop", { type: "button", className: "quiet" });
      button.addEventListener("click", () => stop(session));
      item.append(button);
    }
    if (session.reason) { item.append(element("span", session.reason)); }
    sessionList.append(item);
  }
  const starting = sessions.find((s) => s.state === "starting");
  if (starting) { waitUntilReady(starting); }
}

refresh().catch((error) => { statusLine.textContent = error.message; });
