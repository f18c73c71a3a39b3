// The page's alerts: what fires now (at the top), acknowledge and silence for a logged-in
// user, each destination's health, a refused rules file, and browser notifications
// (Notification API, once the user allows them). Kept apart from app.js on purpose.
"use strict";

function alertsEl(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text; // text, never HTML: names come from boards
  if (cls) el.className = cls;
  return el;
}

async function alertsPost(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Iotpipe-CSRF": "1" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function alertsWhen(ts) {
  return new Date(ts * 1000).toLocaleString();
}

function alertsRow(a) {
  const li = alertsEl("li", undefined, "firing");
  const what = [a.rule, a.device, a.metric, a.value === null ? "" : String(a.value)];
  li.append(alertsEl("strong", what.filter(Boolean).join(" · ")));
  li.append(alertsEl("span", ` since ${alertsWhen(a.since)}`));
  if (a.acked) li.append(alertsEl("span", " · acknowledged", "acked"));
  if (a.silenced_until && a.silenced_until * 1000 > Date.now()) {
    li.append(alertsEl("span", ` · silenced until ${alertsWhen(a.silenced_until)}`, "silenced"));
  }
  const status = alertsEl("span", "", "alert-answer");
  const act = (label, path, body) => {
    const b = alertsEl("button", label);
    b.type = "button";
    b.addEventListener("click", () => {
      alertsPost(path, body).then(refreshFiring).catch((e) => { status.textContent = ` ${e.message}`; });
    });
    li.append(" ", b);
  };
  if (!a.acked) act("acknowledge", "/api/alerts/ack", { key: a.key });
  act("silence 1 h", "/api/alerts/silence", { key: a.key, for: "1h" });
  li.append(status);
  return li;
}

async function refreshFiring() {
  const response = await fetch("/api/alerts/firing");
  if (!response.ok) return;
  const view = await response.json();
  const box = document.getElementById("alerts-firing");
  const list = alertsEl("ul", undefined, "firing-list");
  for (const a of view.firing) list.append(alertsRow(a));
  const parts = [];
  if (view.firing.length) parts.push(alertsEl("h2", `Firing (${view.firing.length})`), list);
  if (view.rules_error) parts.push(alertsEl("p", `Alert rules not reloaded: ${view.rules_error}`, "rules-error"));
  for (const d of view.destinations.filter((x) => !x.ok)) {
    parts.push(alertsEl("p", `Alert destination ${d.name} (${d.url}) failing since ${alertsWhen(d.since)}: retrying`, "dest-failing"));
  }
  parts.push(alertsNotifyButton());
  box.replaceChildren(...parts);
}

function alertsNotifyButton() {
  if (!("Notification" in window) || Notification.permission !== "default") return "";
  const b = alertsEl("button", "notify me in this browser", "notify-me");
  b.type = "button";
  b.addEventListener("click", () => Notification.requestPermission().then(refreshFiring));
  return b;
}

function onAlertEvent(event) {
  const a = JSON.parse(event.data);
  if ("Notification" in window && Notification.permission === "granted" && a.notified) {
    new Notification(`[${a.state}] ${a.rule}`, { body: a.message, tag: a.key });
  }
  refreshFiring().catch(() => {});
}

// The page's live stream carries the alert events too: alerts.js is loaded before app.js
// and listens on every /api/stream EventSource the page opens, so the page holds one
// stream (one server thread), never polls into a server restart, and asks for the firing
// list only when the stream has just (re)opened. Should no stream be opened by the time
// the page has loaded, it opens one itself.
const PageEventSource = window.EventSource;
let alertsHooked = false;
window.EventSource = class extends PageEventSource {
  constructor(url, options) {
    super(url, options);
    if (String(url).includes("/api/stream")) {
      alertsHooked = true;
      this.addEventListener("alert", onAlertEvent);
      this.addEventListener("open", () => refreshFiring().catch(() => {}));
    }
  }
};

document.addEventListener("DOMContentLoaded", () => {
  setTimeout(() => { if (!alertsHooked) new window.EventSource("/api/stream"); }, 3000);
});
