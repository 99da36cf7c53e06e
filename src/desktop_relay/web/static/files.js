// The dashboard's "My files" panel, shown on request (and then again on the next visits): each
// view of a home starts its files container on the server, which a pupil who never looks at
// their files should not cost. A home's folders come from /api/files/, opened one at a time with
// a path of links back up; files downloaded by plain links, uploaded (chosen or dropped, several
// at once, one after another) with a progress bar each, folders made and things deleted. Shared
// folders are shown read-only. Every result is announced to screen readers (#files-status).
"use strict";

(() => {
  const panel = document.getElementById("files");
  if (!panel) { return; }
  const statusLine = document.getElementById("files-status");
  const homeChoice = document.getElementById("files-home");
  const crumbs = document.getElementById("files-crumbs");
  const table = document.getElementById("files-list");
  const uploads = document.getElementById("files-uploads");
  const chooser = document.getElementById("files-input");
  const drop = document.getElementById("files-drop");
  const folderForm = document.getElementById("files-new-folder");
  const folderName = document.getElementById("files-folder-name");
  const show = document.getElementById("files-show");
  const body = document.getElementById("files-body");
  const usageLine = document.getElementById("files-usage");
  // Whether this browser last left the panel open.
  const REMEMBER = "desktop-relay-files-shown";
  // Where the panel is: the home's key and the folder's path below it ("" for the home itself).
  const place = { key: null, path: "", writable: false };
  let maxUpload = Infinity;
  // The homes' usage by key, as the relay last measured it (GET /api/homes; never measured here).
  let usage = {};
  const queue = [];
  let uploading = false;

  function say(words) {
    statusLine.textContent = "";
    // Set in the next frame, so the same words said twice are announced twice.
    requestAnimationFrame(() => { statusLine.textContent = words; });
  }

  // A path's address in the API, below /api (as relayApi.call takes it); a folder's ends in "/".
  function apiPath(path, folder) {
    const parts = path ? path.split("/").map(encodeURIComponent) : [];
    return "/files/" + encodeURIComponent(place.key) + "/" + parts.join("/") + (folder && parts.length ? "/" : "");
  }

  function join(folder, name) {
    return folder ? folder + "/" + name : name;
  }

  function size(bytes) {
    if (bytes < 1024) { return tn("{count} byte", "{count} bytes", bytes); }
    const units = [t("{size} KB"), t("{size} MB"), t("{size} GB")];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return i18n.fill(units[unit], { size: new Intl.NumberFormat(i18n.lang, { maximumFractionDigits: 1 }).format(value) });
  }

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text) { node.textContent = text; }
    Object.assign(node, attributes || {});
    return node;
  }

  function drawCrumbs() {
    const names = place.path ? place.path.split("/") : [];
    const items = [{ name: t("My files"), path: "" }].concat(
      names.map((name, i) => ({ name, path: names.slice(0, i + 1).join("/") })));
    crumbs.replaceChildren(...items.map((item, i) => {
      const li = element("li");
      if (i === items.length - 1) {
        const here = element("span", item.name);
        here.setAttribute("aria-current", "location");
        li.append(here);
      } else {
        const back = element("button", item.name, { type: "button", className: "link" });
        back.addEventListener("click", () => open(item.path, true));
        li.append(back);
      }
      return li;
    }));
  }

  function row(entry) {
    const tr = element("tr");
    const path = join(place.path, entry.name);
    const name = element("td");
    if (entry.type === "directory") {
      const button = element("button", entry.name, { type: "button", className: "link folder" });
      button.setAttribute("aria-label", t("Open folder {name}", { name: entry.name }));
      button.addEventListener("click", () => open(path, true));
      name.append(button);
    } else if (entry.type === "file") {
      name.append(element("a", entry.name, { href: "/api" + apiPath(path, false), download: entry.name, className: "file" }));
    } else {
      name.append(element("span", entry.name));
    }
    const kind = entry.type === "directory" ? t("Folder") : entry.type === "file" ? size(entry.size) : "";
    const modified = element("time", i18n.dateTime(entry.modified),
                             { dateTime: new Date(entry.modified * 1000).toISOString() });
    const actions = element("td");
    if (entry.writable) {
      const remove = element("button", t("Delete"), { type: "button", className: "quiet" });
      remove.setAttribute("aria-label", t("Delete {name}", { name: entry.name }));
      remove.addEventListener("click", () => removeEntry(entry, path));
      actions.append(remove);
    } else {
      actions.append(element("span", t("read-only"), { className: "read-only" }));
    }
    const when = element("td");
    when.append(modified);
    tr.append(name, element("td", kind), when, actions);
    return tr;
  }

  function draw(listing) {
    place.writable = listing.writable;
    drawCrumbs();
    const rows = table.tBodies[0];
    table.caption.textContent = t("Files in {folder}", { folder: place.path || t("My files") });
    rows.replaceChildren(...listing.entries.map(row));
    if (listing.entries.length === 0) {
      const empty = element("td", t("This folder is empty."));
      empty.colSpan = 4;
      const tr = element("tr");
      tr.append(empty);
      rows.append(tr);
    }
    for (const control of [chooser, folderName, folderForm.querySelector("button"), document.getElementById("files-choose")]) {
      control.disabled = !place.writable;
    }
    drop.classList.toggle("read-only", !place.writable);
    document.getElementById("files-read-only").hidden = place.writable;
  }

  async function open(path, focus) {
    try {
      const listing = await relayApi.call("GET", apiPath(path, true));
      place.path = path;
      draw(listing);
    } catch (error) {
      say(relayApi.problemText(error));
      return;
    }
    if (focus) { document.getElementById("files-heading").focus(); }
  }

  async function removeEntry(entry, path) {
    if (!window.confirm(t("Delete {name}? This cannot be undone.", { name: entry.name }))) { return; }
    try {
      await relayApi.call("DELETE", apiPath(path, false));
      say(t("{name} deleted.", { name: entry.name }));
    } catch (error) {
      say(relayApi.problemText(error));
    }
    await open(place.path, false);
    document.getElementById("files-heading").focus();
  }

  // One upload as the list shows it: its name, a progress bar, and how it ended.
  function uploadItem(file) {
    const item = element("li");
    const label = element("span", file.name, { className: "name" });
    const bar = element("progress", "", { max: 100, value: 0 });
    bar.setAttribute("aria-label", t("Uploading {name}", { name: file.name }));
    const state = element("span", t("waiting"), { className: "state" });
    item.append(label, bar, state);
    uploads.append(item);
    return { item, bar, state };
  }

  function send(file, folder, shown) {
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("PUT", "/api" + apiPath(join(folder, file.name), false));
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) { shown.bar.value = Math.round((100 * event.loaded) / event.total); }
      });
      request.addEventListener("load", () => {
        if (request.status === 401) { relayApi.signIn(); }
        if (request.status === 200 || request.status === 201) {
          shown.bar.value = 100;
          resolve({ ok: true });
          return;
        }
        let problem = {};
        try { problem = JSON.parse(request.responseText); } catch (_) { /* not a problem document */ }
        resolve({ ok: false, words: problem.detail || problem.title || t("HTTP error {status}", { status: request.status }) });
      });
      request.addEventListener("error", () => resolve({ ok: false, words: t("The upload broke off.") }));
      request.send(file);
    });
  }

  async function uploadNext() {
    if (uploading) { return; }
    uploading = true;
    while (queue.length) {
      const { file, folder, shown } = queue.shift();
      shown.state.textContent = t("uploading");
      const result = file.size > maxUpload
        ? { ok: false, words: t("Files up to {megabytes} MB can be uploaded.", { megabytes: Math.floor(maxUpload / 1048576) }) }
        : await send(file, folder, shown);
      shown.state.textContent = result.ok ? t("done") : result.words;
      shown.item.className = result.ok ? "done" : "failed";
      say(result.ok ? t("{name} uploaded.", { name: file.name })
        : t("{name} was not uploaded: {problem}", { name: file.name, problem: result.words }));
      if (folder === place.path) { await open(place.path, false); }
    }
    uploading = false;
  }

  function upload(files) {
    if (!place.writable) { say(t("Shared folders can be read, not changed.")); return; }
    for (const file of files) {
      queue.push({ file, folder: place.path, shown: uploadItem(file) });
    }
    uploadNext();
  }

  chooser.addEventListener("change", () => { upload(Array.from(chooser.files)); chooser.value = ""; });
  document.getElementById("files-choose").addEventListener("click", () => chooser.click());
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) { return; }
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  drop.addEventListener("dragleave", (event) => {
    if (!drop.contains(event.relatedTarget)) { drop.classList.remove("dragging"); }
  });
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    upload(Array.from(event.dataTransfer.files));
  });

  folderForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = folderName.value.trim();
    if (!name) { say(t("Type the new folder's name first.")); folderName.focus(); return; }
    try {
      await relayApi.call("POST", apiPath(place.path, true), { folder: name });
      folderName.value = "";
      say(t("Folder {name} made.", { name }));
      await open(place.path, false);
    } catch (error) {
      say(relayApi.problemText(error));
    }
  });

  function drawUsage() {
    const home = usage[place.key];
    if (!home || home.usage === null) {
      usageLine.hidden = true;
      return;
    }
    usageLine.textContent = home.quota === null
      ? t("Your home folder holds {usage}.", { usage: size(home.usage) })
      : t("Your home folder holds {usage} of {quota}.", { usage: size(home.usage), quota: size(home.quota) });
    usageLine.hidden = false;
  }

  homeChoice.addEventListener("change", () => { place.key = homeChoice.value; drawUsage(); open("", false); });

  function showPanel(shown) {
    body.hidden = !shown;
    show.setAttribute("aria-expanded", String(shown));
    show.textContent = shown ? t("Hide my files") : t("Show my files");
    try { window.localStorage.setItem(REMEMBER, shown ? "1" : ""); } catch (_) { /* storage refused */ }
    if (shown) { open(place.path, false); }
  }

  show.addEventListener("click", () => showPanel(body.hidden));

  async function start() {
    let homes;
    try {
      homes = await relayApi.call("GET", "/files/");
    } catch (error) {
      say(relayApi.problemText(error));
      return;
    }
    maxUpload = homes.max_upload;
    if (homes.homes.length === 0) {
      panel.hidden = true;
      return;
    }
    homeChoice.replaceChildren(...homes.homes.map((home) => element("option", home.title, { value: home.key })));
    homeChoice.parentElement.hidden = homes.homes.length < 2;
    place.key = homes.homes[0].key;
    try {
      const measured = await relayApi.call("GET", "/homes");
      usage = Object.fromEntries(measured.items.map((home) => [home.key, home]));
    } catch (_) { /* the usage line is a courtesy: the panel works without it */ }
    drawUsage();
    let remembered = false;
    try { remembered = window.localStorage.getItem(REMEMBER) === "1"; } catch (_) { /* storage refused */ }
    if (remembered) { showPanel(true); }
  }

  start();
})();
