// The dashboard page: cards per device, a chart per metric (a trace per device), live
// updates from /api/stream. Figures come ready-made from the server; this file only draws
// them, appends live points and asks for a finer series when the user zooms.
// Data from devices is only ever put on the page with textContent, never as HTML.
"use strict";

const POINTS = 1000;
const LIVE_MAX_POINTS = 20000; // per trace, so a page left open for days stays small
const state = { range: 3600, devices: new Map(), charts: new Map(), stream: null };

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Plotly shows dates as given; every time on the page is UTC, written the same way.
function plotTime(ts) {
  return new Date(ts * 1000).toISOString().replace("T", " ").replace("Z", "");
}

function unixFromPlot(text) {
  return Date.parse(String(text).replace(" ", "T") + "Z") / 1000;
}

function rangeQuery() {
  const since = state.range === "all" ? 0 : Date.now() / 1000 - state.range;
  return `since=${since}&points=${POINTS}`;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// Boards send a fixed number of decimals; a computed value is shown with at most three.
function formatValue(value) {
  return typeof value === "number" ? String(Number(value.toFixed(3))) : String(value);
}

function ageText(ts) {
  if (!ts) return "no reading yet";
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// The same rule as the API's `late` (dashboard/api.py): three announced intervals missed.
const LATE_AFTER_INTERVALS = 3;
const LATE_SLACK_S = 5;

function isLate(entry) {
  if (!entry.lastTs || !entry.intervalMs) return false;
  const age = Date.now() / 1000 - entry.lastTs;
  return age > (LATE_AFTER_INTERVALS * entry.intervalMs) / 1000 + LATE_SLACK_S;
}

function renderAge(entry) {
  const age = entry.node.querySelector(".age");
  const late = isLate(entry);
  const every = entry.intervalMs ? ` (a reading every ${formatValue(entry.intervalMs / 1000)} s expected)` : "";
  age.textContent = ageText(entry.lastTs) + (late ? ` — late${every}` : "");
  age.classList.toggle("late", late);
}

function cardFor(id) {
  let entry = state.devices.get(id);
  if (!entry) {
    const node = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.device = id;
    node.querySelector(".name").textContent = id;
    node.querySelector(".csv").href = `/api/devices/${encodeURIComponent(id)}/export.csv`;
    node.querySelector(".read-now").addEventListener("click", () => readNow(id, node));
    document.getElementById("cards").append(node);
    entry = { node, units: {}, lastTs: null, values: {}, intervalMs: null };
    state.devices.set(id, entry);
    document.getElementById("empty").hidden = true;
  }
  return entry;
}

function renderCard(entry) {
  const values = entry.node.querySelector(".values");
  values.replaceChildren();
  for (const [metric, value] of Object.entries(entry.values)) {
    const unit = entry.units[metric] || "";
    values.append(el("dt", metric), el("dd", `${formatValue(value)} ${unit}`.trim()));
  }
  renderAge(entry);
}

function setStatus(entry, status) {
  const badge = entry.node.querySelector(".status");
  badge.textContent = status;
  badge.className = `status ${status}`;
}

async function readNow(id, node) {
  const answer = node.querySelector(".answer");
  answer.textContent = "asking…";
  const started = performance.now();
  try {
    const body = await getJSON(`/api/devices/${encodeURIComponent(id)}/commands`, {
      method: "POST",
      // With the session cookie from /login; the header proves the page itself is asking.
      headers: { "Content-Type": "application/json", "X-Iotpipe-CSRF": "1" },
      body: JSON.stringify({ cmd: "read", args: {} }),
    });
    const ms = Math.round(performance.now() - started);
    const text = body.ok ? JSON.stringify(body.result) : `error: ${body.error}`;
    answer.textContent = `${text} (${ms} ms)`;
  } catch (error) {
    answer.textContent = `no answer: ${error.message}`;
  }
}

function chartFor(metric) {
  let chart = state.charts.get(metric);
  if (!chart) {
    const div = el("div", undefined, "chart");
    div.id = `chart-${metric}`;
    document.getElementById("charts").append(div);
    chart = { div, devices: [], zoomed: false, loading: null };
    state.charts.set(metric, chart);
  }
  return chart;
}

// One fetch per chart at a time: a burst of readings from a new device asks only once.
function loadChart(metric, window) {
  const chart = chartFor(metric);
  if (chart.loading && !window) return chart.loading;
  chart.loading = drawChart(chart, metric, window).finally(() => { chart.loading = null; });
  return chart.loading;
}

async function drawChart(chart, metric, window) {
  const query = window ? `since=${window[0]}&until=${window[1]}&points=${POINTS}` : rangeQuery();
  const fig = await getJSON(`/api/charts/${encodeURIComponent(metric)}?${query}`);
  chart.devices = fig.data.map((trace) => trace.meta.device);
  chart.zoomed = Boolean(window);
  if (window) fig.layout.xaxis.range = [plotTime(window[0]), plotTime(window[1])];
  await Plotly.react(chart.div, fig.data, fig.layout, { responsive: true, displaylogo: false });
  if (!chart.listening) {
    chart.listening = true;
    chart.div.on("plotly_relayout", (change) => onZoom(metric, change));
  }
}

// Zooming asks the server for the zoomed window at full resolution; double-click resets.
function onZoom(metric, change) {
  const range = change["xaxis.range"] || [change["xaxis.range[0]"], change["xaxis.range[1]"]];
  if (range[0] !== undefined) {
    loadChart(metric, [unixFromPlot(range[0]), unixFromPlot(range[1])]).catch(showError);
  } else if (change["xaxis.autorange"]) {
    loadChart(metric).catch(showError);
  }
}

async function loadDevices() {
  const devices = await getJSON("/api/devices");
  for (const d of devices) {
    const entry = cardFor(d.id);
    entry.units = d.units;
    entry.lastTs = d.last ? d.last.ts : null;
    entry.values = d.last ? d.last.metrics : {};
    entry.intervalMs = d.meta.interval_ms || null;
    setStatus(entry, d.status);
    renderCard(entry);
  }
  return devices;
}

async function loadAll() {
  loadAlerts().catch(showError);
  const devices = await loadDevices();
  const metrics = [...new Set(devices.flatMap((d) => d.metrics))].sort();
  await Promise.all(metrics.map((m) => loadChart(m)));
}

function onReading(event) {
  const r = JSON.parse(event.data);
  const known = state.devices.has(r.device);
  const entry = cardFor(r.device);
  if (!known) loadDevices().catch(showError); // its units and status
  entry.lastTs = r.ts;
  Object.assign(entry.values, r.metrics);
  renderCard(entry);
  for (const [metric, value] of Object.entries(r.metrics)) {
    const chart = state.charts.get(metric);
    const index = chart ? chart.devices.indexOf(r.device) : -1;
    if (index < 0) {
      loadChart(metric).catch(showError); // a new metric or device: fetch its figure
    } else if (!chart.zoomed) {
      Plotly.extendTraces(chart.div, { x: [[plotTime(r.ts)]], y: [[value]] }, [index], LIVE_MAX_POINTS);
    }
  }
}

function showAlert(a, atTop) {
  document.getElementById("alerts").hidden = false;
  const item = el("li", `${plotTime(a.ts)} ${a.device}: ${a.message}`);
  const list = document.getElementById("alert-list");
  if (atTop) list.prepend(item);
  else list.append(item);
}

function onAlert(event) {
  showAlert(JSON.parse(event.data), true);
}

async function loadAlerts() {
  const alerts = await getJSON("/api/alerts");
  document.getElementById("alert-list").replaceChildren();
  for (const a of alerts) showAlert(a, false);
}

function showError(error) {
  document.getElementById("conn").textContent = `error: ${error.message}`;
}

// EventSource reconnects by itself (the server's `retry:` says how soon); after a
// reconnect the page reloads its data to fill what it missed while away.
function connect() {
  const conn = document.getElementById("conn");
  const stream = new EventSource("/api/stream");
  let hadError = false;
  stream.onopen = () => {
    conn.textContent = "live";
    conn.className = "conn live";
    if (hadError) loadAll().catch(showError);
  };
  stream.onerror = () => {
    hadError = true;
    conn.textContent = "reconnecting…";
    conn.className = "conn";
  };
  stream.addEventListener("reading", onReading);
  stream.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    setStatus(cardFor(s.device), s.status);
  });
  stream.addEventListener("meta", (e) => {
    const m = JSON.parse(e.data);
    const entry = cardFor(m.device);
    entry.units = { ...entry.units, ...m.units };
    entry.intervalMs = m.interval_ms || null;
    renderCard(entry);
  });
  stream.addEventListener("alert", onAlert);
  state.stream = stream;
}

function setupRanges() {
  for (const button of document.querySelectorAll("#ranges button")) {
    button.addEventListener("click", () => {
      document.querySelectorAll("#ranges button").forEach((b) => b.classList.remove("active"));
      button.classList.add("active");
      const r = button.dataset.range;
      state.range = r === "all" ? "all" : Number(r);
      for (const metric of state.charts.keys()) loadChart(metric).catch(showError);
    });
  }
}

function tick() {
  for (const entry of state.devices.values()) {
    renderAge(entry);
  }
}

setupRanges();
loadAll().catch(showError).finally(connect);
setInterval(tick, 1000);
