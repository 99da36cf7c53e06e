// The dashboard's "My classes", for teachers (and admins who see all classes): shown only when
// /api/classes/ lists a class. One class at a time: its pupils with their desktops' states
// (polled every few seconds, paused while a stop's reason is being typed), stop with a reason the
// pupil reads, look over a shoulder (the look page's link), start one desktop for everyone, and
// the desktops offered to the class for a time (list, offer, end). Results are announced
// (#classes-status).
"use strict";

(() => {
  const panel = document.getElementById("classes");
  if (!panel) { return; }
  const choice = document.getElementById("classes-class");
  const table = document.getElementById("classes-pupils");
  const startForm = document.getElementById("classes-start");
  const startDesktop = document.getElementById("classes-start-desktop");
  const assignments = document.getElementById("classes-assignments");
  const assignForm = document.getElementById("classes-assign");
  const assignDesktop = document.getElementById("classes-assign-desktop");
  const statusLine = document.getElementById("classes-status");
  const REFRESH = 5000;
  // The class shown, and whether a stop form is open (the table is not redrawn under it).
  let shown = null;
  let editing = false;
  let timer = null;

  function say(words) {
    statusLine.textContent = "";
    requestAnimationFrame(() => { statusLine.textContent = words; });
  }

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text) { node.textContent = text; }
    Object.assign(node, attributes || {});
    return node;
  }

  function api(method, path, body) {
    return relayApi.call(method, "/classes/" + path, body);
  }

  function stateWords(session, now) {
    if (session.state === "ready") {
      const idle = now - session.idle_since;
      return idle >= 60 ? t("Running, idle for {time}", { time: relayApi.duration(idle) }) : t("Running, in use");
    }
    return relayApi.stateText(session);
  }

  function stopForm(row, pupil, session) {
    editing = true;
    const cell = row.lastChild;
    const form = element("form", null, { className: "stop-reason" });
    const id = "classes-reason-" + session.id;
    const label = element("label", t("Reason {name} reads", { name: pupil.name }), { htmlFor: id });
    const input = element("input", null, { id, maxLength: 200, autocomplete: "off" });
    const confirm = element("button", t("Stop desktop"), { type: "submit" });
    const cancel = element("button", t("Cancel"), { type: "button", className: "quiet" });
    cancel.addEventListener("click", () => { editing = false; refresh(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      confirm.disabled = true;
      try {
        await api("POST", encodeURIComponent(shown) + "/sessions/" + encodeURIComponent(session.id) + "/stop",
                  { reason: input.value });
        say(t("{name}'s desktop was stopped.", { name: pupil.name }));
      } catch (error) {
        say(relayApi.problemText(error));
      }
      editing = false;
      refresh();
    });
    form.append(label, " ", input, " ", confirm, " ", cancel);
    cell.replaceChildren(form);
    input.focus();
  }

  function pupilRows(pupil, now) {
    const sessions = pupil.sessions.length ? pupil.sessions : [null];
    return sessions.map((session) => {
      const tr = element("tr");
      const actions = element("td");
      tr.append(element("td", pupil.name), element("td", session ? session.title : ""),
                element("td", session ? stateWords(session, now) : t("No desktop")), actions);
      if (session) {
        if (session.look_url) {
          const look = element("a", t("Look"), { href: session.look_url });
          look.setAttribute("aria-label", t("Look at {name}'s desktop", { name: pupil.name }));
          actions.append(look, " ");
        }
        const stop = element("button", t("Stop"), { type: "button", className: "quiet" });
        stop.setAttribute("aria-label", t("Stop {name}'s desktop", { name: pupil.name }));
        stop.addEventListener("click", () => stopForm(tr, pupil, session));
        actions.append(stop);
      }
      return tr;
    });
  }

  function options(select, desktops) {
    const keep = select.value;
    select.replaceChildren(...desktops.map((d) => element("option", d.title || d.name, { value: d.name })));
    if (desktops.some((d) => d.name === keep)) { select.value = keep; }
  }

  function drawClass(view) {
    const rows = table.tBodies[0];
    table.caption.textContent = t("Pupils of {name}", { name: view.name });
    rows.replaceChildren(...view.pupils.flatMap((pupil) => pupilRows(pupil, view.now)));
    if (view.pupils.length === 0) {
      const empty = element("td", t("No pupil of this class has signed in yet."));
      empty.colSpan = 4;
      const tr = element("tr");
      tr.append(empty);
      rows.append(tr);
    }
    startForm.hidden = !view.start_for_everyone;
    options(startDesktop, view.desktops);
    options(assignDesktop, view.desktops.filter((d) => d.assignable));
    assignForm.hidden = !view.desktops.some((d) => d.assignable);
  }

  const STATUS = { current: t("offered now"), upcoming: t("from {time}"), ended: t("ended") };

  function drawAssignments(listed) {
    const items = listed.assignments.map((a) => {
      const li = element("li");
      const status = a.status === "upcoming" ? i18n.fill(STATUS.upcoming, { time: i18n.dateTime(a.from) }) : STATUS[a.status];
      li.append(element("strong", a.desktop), element("span", status),
                element("span", t("until {time}", { time: i18n.dateTime(a.until) })));
      if (a.note) { li.append(element("span", a.note)); }
      if (a.status !== "ended") {
        const end = element("button", t("End"), { type: "button", className: "quiet" });
        end.setAttribute("aria-label", t("End the offer of {desktop}", { desktop: a.desktop }));
        end.addEventListener("click", async () => {
          try {
            const ended = await api("DELETE", encodeURIComponent(shown) + "/assignments/" + encodeURIComponent(a.id));
            say(tn("The offer ended; {count} desktop was stopped.", "The offer ended; {count} desktops were stopped.",
                   ended.stopped));
          } catch (error) {
            say(relayApi.problemText(error));
          }
          refresh();
        });
        li.append(end);
      }
      return li;
    });
    if (items.length === 0) { items.push(element("li", t("No desktop is offered to this class."))); }
    assignments.replaceChildren(...items);
  }

  async function refresh() {
    clearTimeout(timer);
    if (shown && !editing) {
      try {
        const path = encodeURIComponent(shown);
        const [view, listed] = await Promise.all([api("GET", path), api("GET", path + "/assignments")]);
        if (!editing) {
          drawClass(view);
          drawAssignments(listed);
        }
      } catch (error) {
        say(relayApi.problemText(error));
      }
    }
    timer = setTimeout(refresh, REFRESH);
  }

  startForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const started = await api("POST", encodeURIComponent(shown) + "/start", { desktop: startDesktop.value });
      const queued = started.pupils.filter((p) => p.session).length;
      say(tn("Started for {count} pupil", "Started for {count} pupils", queued) + " " +
          tn("({count} skipped)", "({count} skipped)", started.pupils.length - queued));
    } catch (error) {
      say(relayApi.problemText(error));
    }
    refresh();
  });

  function moment(id) {
    const value = document.getElementById(id).value;
    return value ? new Date(value).toISOString() : "";
  }

  assignForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", encodeURIComponent(shown) + "/assignments", {
        desktop: assignDesktop.value, from: moment("classes-assign-from"), until: moment("classes-assign-until"),
        note: document.getElementById("classes-assign-note").value,
      });
      say(t("{desktop} is offered to the class.", { desktop: assignDesktop.value }));
      assignForm.reset();
    } catch (error) {
      say(relayApi.problemText(error));
    }
    refresh();
  });

  choice.addEventListener("change", () => { shown = choice.value; editing = false; refresh(); });

  (async () => {
    let listed;
    try {
      listed = await relayApi.call("GET", "/classes/");
    } catch (error) {
      return;  // no class view for this person (or no relay to ask): the section stays hidden
    }
    if (!listed.classes.length) { return; }
    choice.replaceChildren(...listed.classes.map((c) => element(
      "option", tn("{name} ({count} pupil)", "{name} ({count} pupils)", c.pupils, { name: c.name }), { value: c.name })));
    shown = listed.classes[0].name;
    panel.hidden = false;
    refresh();
  })();
})();
