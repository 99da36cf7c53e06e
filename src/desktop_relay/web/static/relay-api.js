// What the dashboard and the session page share: calls to the user API, the server's clock, the
// words a user reads for a session's state and for why it ended, and the steps of a start.
"use strict";

const relayApi = (() => {
  // Milliseconds to add to Date.now() to get the server's time, from the `now` of the last session
  // view: deadlines in the API are the server's epoch seconds.
  let clockOffset = 0;

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      super(problem.detail || problem.title || t("HTTP error {status}", { status }));
      this.status = status;
      this.problem = problem;
      this.retryAfter = retryAfter;
    }
  }

  function noteServerClock(data) {
    const view = Array.isArray(data) ? data[0] : data;
    if (view && typeof view.now === "number") {
      // The view was made somewhere between asking and now; a long-poll's, just before the answer.
      clockOffset = view.now * 1000 - Date.now();
    }
  }

  // Not signed in (any more): to the sign-in page, and back here afterwards.
  function signIn() {
    window.location = "/login?next=" + encodeURIComponent(window.location.pathname);
  }

  async function call(method, path, body, signal) {
    const options = { method, headers: {}, credentials: "same-origin", signal };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch("/api" + path, options);
    const data = await response.json().catch(() => ({}));
    if (response.ok) { noteServerClock(data); }
    if (response.status === 401) { signIn(); }
    if (!response.ok) {
      throw new ApiError(response.status, data, Number(response.headers.get("Retry-After")) || null);
    }
    return data;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The session's next view: the server answers as soon as something the user sees changes
  // (state, queue position, warning), or with the same view after its long-poll limit.
  async function nextView(view) {
    const asked = Date.now();
    const next = await call("GET", "/sessions/" + encodeURIComponent(view.id) +
                                   "?wait=change&since=" + encodeURIComponent(view.updated));
    // A server that answers at once without a change (an older relay, a proxy that cuts long
    // requests) must not turn a caller's loop into a busy one.
    if (next.updated === view.updated && Date.now() - asked < 1000) { await sleep(1000); }
    return next;
  }

  function serverNow() {
    return (Date.now() + clockOffset) / 1000;
  }

  // States in which a session may still change; "interrupted" is a ready session whose container
  // the server cannot confirm while its container engine is away.
  const ACTIVE = new Set(["queued", "starting", "ready", "interrupted", "stopping"]);

  const STATES = {
    queued: t("Waiting"), starting: t("Starting"), ready: t("Running"), interrupted: t("Interrupted"),
    stopping: t("Stopping"), stopped: t("Ended"), failed: t("Failed"),
  };

  function stateText(view) {
    if (view.state === "queued" && view.position) {
      return view.position === 1 ? t("Waiting: next in line")
        : tn("Waiting: number {count} in line", "Waiting: number {count} in line", view.position);
    }
    if (view.state === "interrupted") { return view.reason || STATES.interrupted; }
    return STATES[view.state] || view.state;
  }

  // What happened to an ended session and what to do, as the server words it (view.ending, in
  // the page's language).
  function endText(view) {
    return view.ending ? view.ending.what : t("This desktop has ended.");
  }

  function endAction(view) {
    return view.ending ? view.ending.action : "";
  }

  // "4:05" under an hour, "2 h 10 min" above: for countdowns and time left.
  function duration(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    if (s < 3600) { return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
    return t("{hours} h {minutes} min", { hours: Math.floor(s / 3600), minutes: Math.floor((s % 3600) / 60) });
  }

  // A problem's words (the server wrote them in the page's language), and when to try again.
  function problemText(error) {
    return error.retryAfter
      ? t("{problem} Try again in {seconds} s.", { problem: error.message, seconds: error.retryAfter })
      : error.message;
  }

  // Seconds as a short elapsed time: "8 s", "1:05", "2 h 10 min".
  function elapsed(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return s < 60 ? t("{seconds} s", { seconds: s }) : duration(s);
  }

  // The steps of a start as a page sees them happen: the server's (view.step: queued, creating,
  // waiting, ready) and the browser's own last one, connecting (the web client loaded until it is
  // connected). Each step is kept with when it began, so a finished one shows how long it took.
  const STEP_WORDS = {
    queued: t("Waiting for a free desktop"), creating: t("Starting the container"),
    waiting: t("Waiting for the desktop"), connecting: t("Connecting"),
  };
  const STEP_ORDER = ["queued", "creating", "waiting", "connecting"];

  class StartSteps {
    constructor() {
      this.seen = new Map();  // step -> epoch seconds it began (server clock)
      this.current = null;
    }

    // Takes a view's step; "ready" becomes connecting when the page connects by itself
    // (withConnecting), else it ends the steps. Returns whether the current step changed.
    note(view, withConnecting) {
      let step = view.step;
      if (step === "ready") { step = withConnecting ? "connecting" : null; }
      return this.enter(step, view.step_since);
    }

    enter(step, since) {
      if (step === this.current) { return false; }
      if (step !== null && !this.seen.has(step)) { this.seen.set(step, since || serverNow()); }
      this.current = step;
      return true;
    }

    // What a screen reader is told when the step changes.
    announcement(view) {
      if (this.current === "queued" && view.position) {
        return tn("Number {count} in line for a free desktop.", "Number {count} in line for a free desktop.",
                  view.position);
      }
      return this.current ? t("{step}…", { step: STEP_WORDS[this.current] }) : "";
    }

    // The steps to list: queued if it was seen, every later one up to the current (done, even if
    // this page came too late to see it), and those still to come.
    shown() {
      if (this.current === null) { return STEP_ORDER.filter((step) => this.seen.has(step)); }
      return STEP_ORDER.filter((step) => step !== "queued" || this.seen.has(step));
    }

    // Fills an <ol>: each step done (with how long it took, when seen), current (with how long
    // so far) or to come. Only changed text is written: the list stays put for a screen reader
    // reading it while the clock runs.
    render(list, view) {
      const now = serverNow();
      const shown = this.shown();
      const currentIndex = this.current === null ? STEP_ORDER.length : STEP_ORDER.indexOf(this.current);
      if (Array.from(list.children).map((item) => item.dataset.step).join() !== shown.join()) {
        list.replaceChildren(...shown.map((step) => {
          const item = document.createElement("li");
          item.dataset.step = step;
          const name = document.createElement("span");
          name.className = "step-name";
          const clock = document.createElement("span");
          clock.className = "step-time";
          item.append(name, " ", clock);
          return item;
        }));
      }
      for (const item of list.children) {
        const step = item.dataset.step;
        const index = STEP_ORDER.indexOf(step);
        const began = this.seen.get(step);
        let state = index < currentIndex ? "done" : index === currentIndex ? "current" : "todo";
        // A failed start: its last step is where it failed.
        if (view.state === "failed" && step === shown[shown.length - 1]) { state = "failed"; }
        let words = STEP_WORDS[step];
        let time = "";
        if (state === "current") {
          time = elapsed(now - began);
          if (step === "queued" && view.position) {
            words = tn("{step} (number {count} in line)", "{step} (number {count} in line)", view.position,
                       { step: words });
          }
        } else if (state === "failed" && began !== undefined) {
          time = elapsed(view.updated - began);
        } else if (state === "done" && began !== undefined) {
          const next = STEP_ORDER.slice(index + 1).find((later) => this.seen.has(later));
          time = next !== undefined ? elapsed(this.seen.get(next) - began) : "";
        }
        if (item.className !== state) { item.className = state; }
        if (state === "current") { item.setAttribute("aria-current", "step"); } else { item.removeAttribute("aria-current"); }
        const [name, clock] = item.querySelectorAll("span");
        if (name.textContent !== words) { name.textContent = words; }
        if (clock.textContent !== time) { clock.textContent = time; }
      }
    }
  }

  return {
    ApiError, ACTIVE, StartSteps, call, duration, endAction, endText, nextView, problemText, serverNow, signIn,
    sleep, stateText,
  };
})();
