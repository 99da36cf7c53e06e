// What the dashboard and the session page share: calls to the user API, the server's clock,
// and the words a user reads for a session's state and for why it ended.
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

  // view.end_reason in plain words.
  const END_REASONS = {
    "idle": t("This desktop was stopped because nobody used it for a while."),
    "lifetime": t("This desktop reached the longest time a desktop may run."),
    "disconnected": t("This desktop was stopped because no browser showed it for a while."),
    "user": t("This desktop was stopped by you."),
    "signed-out": t("This desktop was stopped because you signed out."),
    "admin": t("This desktop was stopped by an administrator."),
    "container-exited": t("This desktop stopped by itself: the desktop exited or crashed."),
    "out-of-memory": t("This desktop ran out of memory and was stopped."),
    "engine-lost": t("This desktop was lost when the server's container engine restarted."),
    "start-failed": t("This desktop could not start."),
  };

  function stateText(view) {
    if (view.state === "queued" && view.position) {
      return view.position === 1 ? t("Waiting: next in line")
        : tn("Waiting: number {count} in line", "Waiting: number {count} in line", view.position);
    }
    if (view.state === "interrupted") { return view.reason || STATES.interrupted; }
    return STATES[view.state] || view.state;
  }

  function endText(view) {
    return END_REASONS[view.end_reason] || t("This desktop has ended.");
  }

  // A problem's words (the server wrote them in the page's language), and when to try again.
  function problemText(error) {
    return error.retryAfter
      ? t("{problem} Try again in {seconds} s.", { problem: error.message, seconds: error.retryAfter })
      : error.message;
  }

  // "4:05" under an hour, "2 h 10 min" above: for countdowns and time left.
  function duration(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    if (s < 3600) { return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
    return t("{hours} h {minutes} min", { hours: Math.floor(s / 3600), minutes: Math.floor((s % 3600) / 60) });
  }

  return { ApiError, ACTIVE, call, duration, endText, nextView, problemText, serverNow, signIn, sleep, stateText };
})();
