// The dashboard's "Hand-outs and hand-ins" section, for teachers: per class they teach, the due
// time (set, moved, cleared), the hand-out's files (added, deleted) and all hand-ins as one zip.
// Everything goes through /api/classwork/; every result is announced (#classwork-status).
"use strict";

(() => {
  const section = document.getElementById("classwork");
  if (!section) { return; }
  const list = document.getElementById("classwork-classes");
  const statusLine = document.getElementById("classwork-status");

  function say(words) {
    statusLine.textContent = "";
    requestAnimationFrame(() => { statusLine.textContent = words; });
  }

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    for (const [name, value] of Object.entries(attributes || {})) { node.setAttribute(name, value); }
    return node;
  }

  function classPath(cls) { return "/classwork/" + encodeURIComponent(cls); }
  function handoutPath(cls, name) {
    return "/classwork/handout/" + encodeURIComponent(cls) + "/" + (name ? encodeURIComponent(name) : "");
  }

  // A datetime-local value ("2026-12-04T08:00") for epoch seconds, in the browser's time zone.
  function localValue(seconds) {
    const when = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}`;
  }

  function dueWords(view) {
    if (view.due === null) { return t("No due time: hand-ins are open."); }
    const when = i18n.dateTime(view.due);
    return view.closed ? t("Due {time}: hand-ins are closed.", { time: when })
      : t("Due {time}: hand-ins are open until then.", { time: when });
  }

  async function problemOf(response) {
    const data = await response.json().catch(() => ({}));
    return data.detail || data.title || t("HTTP error {status}", { status: response.status });
  }

  async function showHandout(cls, files) {
    files.replaceChildren();
    try {
      const folder = await relayApi.call("GET", handoutPath(cls));
      if (!folder.entries.length) { files.append(element("li", t("The hand-out is empty."))); }
      for (const entry of folder.entries) {
        const row = element("li");
        row.append(element("span", entry.name));
        const remove = element("button", t("Delete"), { type: "button", class: "quiet",
          "aria-label": t("Delete {name} from the hand-out", { name: entry.name }) });
        remove.addEventListener("click", async () => {
          const response = await fetch("/api" + handoutPath(cls, entry.name), { method: "DELETE", credentials: "same-origin" });
          say(response.ok ? t("{name} deleted.", { name: entry.name }) : await problemOf(response));
          showHandout(cls, files);
        });
        row.append(remove);
        files.append(row);
      }
    } catch (error) {
      files.append(element("li", error.message));
    }
  }

  function classItem(view, index) {
    const cls = view.class;
    const item = element("li", null, { class: "classwork-class" });
    const box = element("div");
    box.append(element("h3", cls));
    const due = element("p", dueWords(view));
    box.append(due);

    const form = element("form", null, { class: "classwork-due" });
    const dueId = `classwork-due-${index}`;
    form.append(element("label", t("Due time"), { for: dueId }));
    const input = element("input", null, { id: dueId, type: "datetime-local", required: "" });
    if (view.due !== null) { input.value = localValue(view.due); }
    form.append(input, element("button", t("Set due time"), { type: "submit" }));
    const clear = element("button", t("Clear due time"), { type: "button", class: "quiet" });
    form.append(clear);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const updated = await relayApi.call("PUT", classPath(cls) + "/due", { due: new Date(input.value).getTime() / 1000 });
        due.textContent = dueWords(updated);
        say(dueWords(updated));
      } catch (error) { say(error.message); }
    });
    clear.addEventListener("click", async () => {
      try {
        const updated = await relayApi.call("DELETE", classPath(cls) + "/due");
        due.textContent = dueWords(updated);
        input.value = "";
        say(dueWords(updated));
      } catch (error) { say(error.message); }
    });
    box.append(form);

    box.append(element("a", t("Download all hand-ins of {class_group}", { class_group: cls }),
      { href: "/api" + classPath(cls) + "/handins.zip", download: "" }));

    box.append(element("h4", t("Hand-out")));
    const files = element("ul", null, { class: "classwork-files" });
    const uploadId = `classwork-upload-${index}`;
    const upload = element("p");
    upload.append(element("label", t("Add files to the hand-out"), { for: uploadId }), " ");
    const chooser = element("input", null, { id: uploadId, type: "file", multiple: "" });
    upload.append(chooser);
    chooser.addEventListener("change", async () => {
      for (const file of chooser.files) {
        const response = await fetch("/api" + handoutPath(cls, file.name), { method: "PUT", body: file, credentials: "same-origin" });
        say(response.ok ? t("{name} added to the hand-out.", { name: file.name }) : await problemOf(response));
      }
      chooser.value = "";
      showHandout(cls, files);
    });
    box.append(upload, files);
    item.append(box);
    showHandout(cls, files);
    return item;
  }

  async function load() {
    try {
      const answer = await relayApi.call("GET", "/classwork/");
      list.replaceChildren(...answer.classes.map(classItem));
      if (!answer.classes.length) { list.append(element("li", t("You teach no classes here."))); }
    } catch (error) {
      say(error.message);
    }
  }

  load();
})();
