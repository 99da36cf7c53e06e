// The look page: a teacher watches a pupil's desktop in a frame (view-only, enforced by the relay),
// asks for control, gives it back. The bar follows the look's state from /api/looks/SESSION.
"use strict";

const lookSession = document.body.dataset.session;
const askButton = document.getElementById("ask-control");
const giveBackButton = document.getElementById("give-back");
const modeText = document.getElementById("mode");
const lookError = document.getElementById("look-error");

async function lookCall(method, suffix) {
  const options = { method, credentials: "same-origin" };
  const response = await fetch("/api/looks/" + encodeURIComponent(lookSession) + suffix, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(data.detail || data.title || t("HTTP error {status}", { status: response.status })); }
  return data;
}

// The web client's own view-only switch (noVNC's and KasmVNC's settings checkbox), only for the
// teacher's comfort: the relay drops a view-only look's input whatever the client sends.
function setClientViewOnly(viewOnly) {
  try {
    const box = document.getElementById("desktop").contentDocument.getElementById("noVNC_setting_view_only");
    if (box && box.checked !== viewOnly) {
      box.checked = viewOnly;
      box.dispatchEvent(new Event("change"));
    }
  } catch (error) {
    // The client is not loaded yet: the next refresh sets it.
  }
}

function showLook(look) {
  const control = look.control;
  setClientViewOnly(control !== "granted");
  modeText.textContent = control === "granted" ? t("you have control")
    : control === "asked" ? t("view only — waiting for the pupil's answer") : t("view only");
  askButton.hidden = look.teacher_control === "off" || control !== "none";
  giveBackButton.hidden = control !== "granted";
}

async function refreshLook() {
  try {
    showLook(await lookCall("GET", ""));
    lookError.textContent = "";
  } catch (error) {
    lookError.textContent = error.message;
  }
}

askButton.addEventListener("click", async () => {
  try { await lookCall("POST", "/control"); } catch (error) { lookError.textContent = error.message; }
  refreshLook();
});
giveBackButton.addEventListener("click", async () => {
  try { await lookCall("DELETE", "/control"); } catch (error) { lookError.textContent = error.message; }
  refreshLook();
});

refreshLook();
setInterval(refreshLook, 2000);
