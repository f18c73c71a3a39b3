// The dashboard page: cards per device, a chart per metric (a trace per device), live
// updates from /api/stream. Figures come ready-made from the server; this file draws them,
// appends live points and asks for a finer series when the user zooms.
//
// Live work is bounded whatever the rate: readings are gathered and drawn at most a few
// times a second (one Plotly call per chart per frame, for all its traces), nothing is drawn
// while the tab is hidden or a chart is off screen (their points wait, thinned, and are drawn
// on return), and each trace keeps a bounded number of points: older ones are thinned to a
// minimum and a maximum per pixel-wide bucket, as the server thins history (series.py), so a
// spike stays visible. docs/dashboard.md has the figures behind the numbers below.
// Data from devices is only ever put on the page with textContent, never as HTML.
"use strict";

const POINTS = 1000; // asked of the server per trace for one chart…
const CHART_POINTS = 8000; // …and the most one chart holds, all its traces together
const MIN_TRACE_POINTS = 400;
const FRAME_MS = 300; // at most about three draws a second…
const DRAW_SHARE = 0.15; // …and fewer if drawing would take more than 15 % of the time
const MAX_FRAME_MS = 1000;

const state = {
  range: 3600,
  devices: new Map(),
  charts: new Map(),
  order: new Map(), // device -> colour index, the same on every chart and card
  dirtyCards: new Set(),
  timer: null,
  lastDraw: 0,
  interval: FRAME_MS,
};

// app.js runs before plotly.js (index.html): data is fetched while plotly still loads,
// and drawing waits for this.
const plotlyReady = new Promise((resolve) => {
  if (window.Plotly) resolve();
  else document.addEventListener("DOMContentLoaded", resolve, { once: true });
});

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// plotly.js has no time zones: it shows a date axis in UTC. Shifting each time by the
// browser's offset at that moment makes it show the reader's wall clock.
function offsetMs(utcMs) {
  return new Date(utcMs).getTimezoneOffset() * 60000;
}

function plotX(ts) {
  const ms = ts * 1000;
  return ms - offsetMs(ms);
}

function unixFromPlot(value) {
  const wall = typeof value === "number" ? value : Date.parse(String(value).replace(" ", "T") + "Z");
  return (wall + offsetMs(wall)) / 1000;
}

const ZONE = (() => {
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "−" : "+";
  const hhmm = `${String(Math.floor(Math.abs(minutes) / 60)).padStart(2, "0")}:${String(Math.abs(minutes) % 60).padStart(2, "0")}`;
  return `${name} (UTC${sign}${hhmm})`;
})();

function localTime(ts) {
  return new Date(ts * 1000).toLocaleString(undefined, { hour12: false });
}

function rangeSince() {
  return state.range === "all" ? 0 : Date.now() / 1000 - state.range;
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

// ---- colours and theme --------------------------------------------------------------

const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// Golden-angle hues: any number of devices get distinct colours, each device the same one
// everywhere; lightness is picked per scheme so lines stand out on either background.
function colourFor(device) {
  if (!state.order.has(device)) state.order.set(device, state.order.size);
  const hue = (state.order.get(device) * 137.508) % 360;
  return darkQuery.matches ? `hsl(${hue.toFixed(0)} 75% 65%)` : `hsl(${hue.toFixed(0)} 70% 38%)`;
}

function escapeHTML(text) {
  return String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Title and legend are HTML beside the plot (chartFor, renderLegend): plotly redraws its
// own on every extendTraces, which was half the cost of a live frame with ten devices.
function themed(layout) {
  const fg = cssVar("--fg");
  const grid = cssVar("--grid");
  const axis = { gridcolor: grid, linecolor: cssVar("--line"), zerolinecolor: grid, color: fg };
  return {
    ...layout,
    title: undefined,
    showlegend: false,
    height: 300,
    paper_bgcolor: cssVar("--panel"),
    plot_bgcolor: cssVar("--panel"),
    font: { color: fg },
    margin: { l: 52, r: 12, t: 12, b: 44 },
    hovermode: "closest",
    xaxis: { ...layout.xaxis, ...axis, title: { text: `time, ${ZONE}`, standoff: 4 } },
    yaxis: { ...layout.yaxis, ...axis },
  };
}

// One button per device, in its colour: a click hides or shows its trace.
function renderLegend(chart) {
  const items = chart.devices.map((device, index) => {
    const button = el("button", undefined, "key");
    button.type = "button";
    const swatch = el("span", undefined, "swatch");
    swatch.style.background = colourFor(device);
    button.append(swatch, el("span", device));
    const hidden = chart.div.data[index].visible === "legendonly";
    button.setAttribute("aria-pressed", String(!hidden));
    button.addEventListener("click", () => {
      const now = chart.div.data[index].visible === "legendonly";
      Plotly.restyle(chart.div, { visible: now ? true : "legendonly" }, [index]);
      button.setAttribute("aria-pressed", String(now));
    });
    return button;
  });
  chart.legend.replaceChildren(...items);
}

function styleTrace(trace, unit) {
  const device = trace.meta.device;
  trace.line = { ...(trace.line || {}), color: colourFor(device), width: 1.5 };
  trace.hovertemplate = `${escapeHTML(device)}<br>%{x|%Y-%m-%d %H:%M:%S}<br><b>%{y}</b> ${escapeHTML(unit)}<extra></extra>`;
}

// ---- thinning -------------------------------------------------------------------------

// The newest quarter stays as it came (so the last value shown is the last one received);
// older points become each bucket's min and max in time order, a bucket being at least a
// pixel of the chart wide. A null (a gap) is kept where it was.
function thin(xs, ys, cap, pixels) {
  const cut = xs.length - Math.floor(cap / 4);
  const x0 = xs[0];
  const width = Math.max((xs[xs.length - 1] - x0) / pixels, (xs[cut - 1] - x0) / Math.floor(cap / 4), 1e-9);
  const outX = [];
  const outY = [];
  let bucket = -1;
  let lo = -1;
  let hi = -1;
  const close = () => {
    if (lo >= 0) pushBucket(outX, outY, xs, ys, lo, hi);
    lo = hi = -1;
  };
  for (let i = 0; i < cut; i++) {
    const k = Math.floor((xs[i] - x0) / width);
    if (k !== bucket) {
      close();
      bucket = k;
    }
    const y = ys[i];
    if (y === null || y === undefined) {
      close();
      outX.push(xs[i]);
      outY.push(null);
    } else {
      if (lo < 0 || y < ys[lo]) lo = i;
      if (hi < 0 || y > ys[hi]) hi = i;
    }
  }
  close();
  for (let j = cut; j < xs.length; j++) {
    outX.push(xs[j]);
    outY.push(ys[j]);
  }
  return [outX, outY];
}

function pushBucket(outX, outY, xs, ys, lo, hi) {
  const [a, b] = lo <= hi ? [lo, hi] : [hi, lo];
  outX.push(xs[a]);
  outY.push(ys[a]);
  if (b !== a) {
    outX.push(xs[b]);
    outY.push(ys[b]);
  }
}

function traceCap(chart) {
  const traces = Math.max(1, chart.devices.length);
  const px = Math.max(100, chart.div.clientWidth || 600);
  return Math.max(MIN_TRACE_POINTS, Math.min(4 * px, Math.floor(CHART_POINTS / traces)));
}

function pixels(chart) {
  return Math.max(50, chart.div.clientWidth || 600);
}

// ---- cards ----------------------------------------------------------------------------

// The same rule as the API's `late` (iotpipe/dashboard/api.py): three announced intervals missed.
const LATE_AFTER_INTERVALS = 3;
const LATE_SLACK_S = 5;

function isLate(entry) {
  if (!entry.lastTs || !entry.intervalMs) return false;
  const age = Date.now() / 1000 - entry.lastTs;
  return age > (LATE_AFTER_INTERVALS * entry.intervalMs) / 1000 + LATE_SLACK_S;
}

function renderAge(entry) {
  const late = isLate(entry);
  const every = entry.intervalMs ? ` (a reading every ${formatValue(entry.intervalMs / 1000)} s expected)` : "";
  const text = ageText(entry.lastTs) + (late ? ` — late${every}` : "");
  if (entry.age.textContent !== text) entry.age.textContent = text;
  entry.age.classList.toggle("late", late);
}

function cardFor(id) {
  let entry = state.devices.get(id);
  if (!entry) {
    const node = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.device = id;
    node.querySelector(".name").textContent = id;
    node.querySelector(".swatch").style.background = colourFor(id);
    node.querySelector(".csv").href = `/api/devices/${encodeURIComponent(id)}/export.csv`;
    node.querySelector(".read-now").addEventListener("click", () => readNow(id, node));
    document.getElementById("cards").append(node);
    entry = {
      node, units: {}, lastTs: null, values: {}, intervalMs: null,
      cells: new Map(), age: node.querySelector(".age"), list: node.querySelector(".values"),
    };
    state.devices.set(id, entry);
    document.getElementById("empty").hidden = true;
    document.getElementById("device-count").textContent = `(${state.devices.size})`;
  }
  return entry;
}

// Only the text of each value changes: no node is replaced, so nothing else moves.
function renderCard(entry) {
  for (const [metric, value] of Object.entries(entry.values)) {
    let cell = entry.cells.get(metric);
    if (!cell) {
      cell = el("dd");
      entry.list.append(el("dt", metric), cell);
      entry.cells.set(metric, cell);
    }
    const text = `${formatValue(value)} ${entry.units[metric] || ""}`.trim();
    if (cell.textContent !== text) cell.textContent = text;
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

// ---- charts ---------------------------------------------------------------------------

const onScreen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const chart = state.charts.get(e.target.dataset.metric);
    if (chart) chart.visible = e.isIntersecting;
  }
  schedule();
}, { rootMargin: "200px" });

function chartFor(metric) {
  let chart = state.charts.get(metric);
  if (!chart) {
    const box = el("figure", undefined, "chart-box");
    const title = el("figcaption", metric, "chart-title");
    const div = el("div", undefined, "chart");
    div.id = `chart-${metric}`;
    div.dataset.metric = metric;
    const legend = el("div", undefined, "legend");
    legend.setAttribute("aria-label", `devices on ${metric}`);
    box.append(title, div, legend);
    document.getElementById("charts").append(box);
    chart = {
      div, metric, title, legend, unit: "", devices: [], zoomed: false, loading: null,
      visible: true, unordered: false, pending: new Map(),
    };
    state.charts.set(metric, chart);
    onScreen.observe(div);
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

function pointsPerTrace() {
  // Many devices share one chart's budget, so the first draw is as quick as the live ones.
  const devices = Math.max(1, state.devices.size, Number(document.body.dataset.devices) || 0);
  return Math.max(100, Math.min(POINTS, Math.floor(CHART_POINTS / devices)));
}

async function drawChart(chart, metric, window) {
  const span = window ? `since=${window[0]}&until=${window[1]}` : `since=${rangeSince()}`;
  const fig = await getJSON(`/api/charts/${encodeURIComponent(metric)}?${span}&points=${pointsPerTrace()}`);
  await plotlyReady;
  chart.unit = fig.data.length ? fig.data[0].meta.unit || "" : chart.unit;
  for (const trace of fig.data) {
    trace.x = trace.x.map((ms) => ms - offsetMs(ms));
    styleTrace(trace, chart.unit);
    // Live points the answer already holds are not drawn twice.
    const waiting = chart.pending.get(trace.meta.device);
    const last = trace.x.length ? trace.x[trace.x.length - 1] : -Infinity;
    if (waiting) {
      const from = waiting.x.findIndex((x) => x > last);
      if (from < 0) chart.pending.delete(trace.meta.device);
      else waiting.x.splice(0, from), waiting.y.splice(0, from);
    }
  }
  chart.devices = fig.data.map((trace) => trace.meta.device);
  chart.zoomed = Boolean(window);
  if (chart.zoomed) chart.pending.clear();
  chart.title.textContent = chart.unit ? `${metric} (${chart.unit})` : metric;
  chart.unordered = false;
  const layout = themed(fig.layout);
  if (window) layout.xaxis.range = [plotX(window[0]), plotX(window[1])];
  await Plotly.react(chart.div, fig.data, layout, PLOT_CONFIG);
  renderLegend(chart);
  if (!chart.listening) {
    chart.listening = true;
    chart.div.on("plotly_relayout", (change) => onZoom(metric, change));
  }
  schedule();
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

// A chart's waiting points, drawn with one Plotly call: extendTraces while the traces are
// under their cap, or, when one would pass it, react with the thinned traces.
function drawPending(chart) {
  const cap = traceCap(chart);
  const indices = [];
  const xs = [];
  const ys = [];
  let over = false;
  for (const [device, p] of chart.pending) {
    const index = chart.devices.indexOf(device);
    if (index < 0 || !p.x.length) continue;
    indices.push(index);
    xs.push(p.x);
    ys.push(p.y);
    if (chart.div.data[index].x.length + p.x.length > cap) over = true;
  }
  chart.pending.clear();
  if (!indices.length) return;
  const unordered = chart.unordered;
  chart.unordered = false;
  if (!over && !unordered) {
    Plotly.extendTraces(chart.div, { x: xs, y: ys }, indices);
    return;
  }
  const data = chart.div.data;
  indices.forEach((index, k) => {
    let x = data[index].x.concat(xs[k]);
    let y = data[index].y.concat(ys[k]);
    if (unordered) [x, y] = byTime(x, y);
    if (x.length > cap) [x, y] = thin(x, y, cap, pixels(chart));
    data[index].x = x;
    data[index].y = y;
  });
  Plotly.react(chart.div, data, chart.div.layout);
}

// Points waiting for a hidden tab or an off-screen chart are thinned too, so a week away
// costs what a few minutes do.
function queuePoint(chart, device, ts, value) {
  let p = chart.pending.get(device);
  if (!p) {
    p = { x: [], y: [] };
    chart.pending.set(device, p);
  }
  const x = plotX(ts);
  // A reading older than one already drawn (a board's replay after a gap) is put in its
  // place at the next draw; waiting points are sorted before they are thinned.
  const drawn = chart.div.data?.[chart.devices.indexOf(device)]?.x;
  const newest = p.x.length ? p.x[p.x.length - 1] : drawn?.[drawn.length - 1];
  if (newest !== undefined && x < newest) chart.unordered = true;
  p.x.push(x);
  p.y.push(value);
  const cap = traceCap(chart);
  if (p.x.length > cap) {
    if (chart.unordered) [p.x, p.y] = byTime(p.x, p.y);
    [p.x, p.y] = thin(p.x, p.y, cap, pixels(chart));
  }
}

function byTime(xs, ys) {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
  return [order.map((i) => xs[i]), order.map((i) => ys[i])];
}

// ---- the frame loop -------------------------------------------------------------------

function schedule() {
  if (state.timer !== null || document.hidden) return;
  const wait = Math.max(0, state.lastDraw + state.interval - performance.now());
  state.timer = setTimeout(() => requestAnimationFrame(drawFrame), wait);
}

// The vendored plotly.js names hosts of its own (its logo's link, Chart Studio): none of
// them is asked, so the page works offline (tests/test_dashboard_browser_live.py).
const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  showSendToCloud: false,
  showEditInChartStudio: false,
};

function drawFrame() {
  state.timer = null;
  if (document.hidden || !window.Plotly) return; // visibilitychange, plotlyReady schedule again
  const started = performance.now();
  for (const entry of state.dirtyCards) renderCard(entry);
  state.dirtyCards.clear();
  // An off-screen chart keeps its points until the IntersectionObserver schedules it.
  for (const chart of state.charts.values()) {
    if (chart.pending.size && chart.visible && !chart.loading) drawPending(chart);
  }
  state.lastDraw = performance.now();
  const cost = state.lastDraw - started;
  state.interval = Math.min(MAX_FRAME_MS, Math.max(FRAME_MS, cost / DRAW_SHARE));
}

// The one way a live reading enters the page (the stream calls it; so does the browser
// benchmark, to feed a day of readings in seconds).
function takeReading(r) {
  const known = state.devices.has(r.device);
  const entry = cardFor(r.device);
  if (!known) loadDevices().catch(showError); // its units and status
  entry.lastTs = r.ts;
  Object.assign(entry.values, r.metrics);
  state.dirtyCards.add(entry);
  for (const [metric, value] of Object.entries(r.metrics)) {
    const chart = state.charts.get(metric);
    if (!chart || !chart.devices.includes(r.device)) {
      loadChart(metric).catch(showError); // a new metric or device: fetch its figure
    } else if (!chart.zoomed) {
      queuePoint(chart, r.device, r.ts, value);
    }
  }
  schedule();
}

window.iotpipeLive = { take: takeReading };

// ---- loading, the stream, the controls ---------------------------------------------------

async function loadDevices() {
  const devices = await getJSON("/api/devices");
  for (const d of [...devices].sort((a, b) => a.id.localeCompare(b.id))) colourFor(d.id);
  for (const d of devices) {
    const entry = cardFor(d.id);
    entry.units = d.units;
    entry.lastTs = d.last ? d.last.ts : entry.lastTs;
    if (d.last) Object.assign(entry.values, d.last.metrics);
    entry.intervalMs = d.meta.interval_ms || null;
    setStatus(entry, d.status);
    renderCard(entry);
  }
  return devices;
}

// A link from an alert (`/?metric=M&since=S&until=U`, docs/alerts.md) opens the charts at
// that window, the linked metric's in view; a double-click goes back to the live range.
function linkedWindow() {
  const query = new URLSearchParams(location.search);
  const since = Number(query.get("since")), until = Number(query.get("until"));
  const valid = query.has("since") && query.has("until") && since < until;
  return { window: valid ? [since, until] : undefined, metric: query.get("metric") };
}

// The page names the charts it had when served: they are asked for at once, beside the
// devices, rather than after them.
async function loadAll() {
  loadAlerts().catch(showError);
  const link = linkedWindow();
  const named = (document.body.dataset.metrics || "").split(" ").filter(Boolean);
  const early = named.map((m) => loadChart(m, link.window));
  const devices = await loadDevices();
  const metrics = [...new Set(devices.flatMap((d) => d.metrics))].sort();
  for (const m of metrics) chartFor(m); // in order, before any answer arrives
  const rest = metrics.filter((m) => !named.includes(m));
  await Promise.all([...early, ...rest.map((m) => loadChart(m, link.window))]);
  if (link.metric && state.charts.has(link.metric)) {
    state.charts.get(link.metric).div.scrollIntoView({ block: "center" });
  }
}

function showAlert(a, atTop) {
  document.getElementById("alerts").hidden = false;
  const item = el("li", `${localTime(a.ts)} ${a.device}: ${a.message}`);
  const list = document.getElementById("alert-list");
  if (atTop) list.prepend(item);
  else list.append(item);
}

async function loadAlerts() {
  const alerts = await getJSON("/api/alerts");
  document.getElementById("alert-list").replaceChildren();
  for (const a of alerts) showAlert(a, false);
}

function showError(error) {
  document.getElementById("conn").textContent = `error: ${error.message}`;
}

// EventSource reconnects by itself (the server's `retry:` says how soon). The page loads
// its data each time the stream opens, never before: the server subscribes the stream
// before answering, so a reading stored before that moment is in what loadAll fetches
// and one stored after comes on the stream; none falls in between, as one could while a
// first load ran ahead of the stream (a sleeping board's reading then stayed unseen until
// its next one).
function connect() {
  const conn = document.getElementById("conn");
  const stream = new EventSource("/api/stream");
  let loaded = false;
  const load = () => {
    loaded = true;
    loadAll().catch(showError);
  };
  stream.onopen = () => {
    conn.textContent = "live";
    conn.className = "conn live";
    load();
  };
  stream.onerror = () => {
    const refused = stream.readyState === EventSource.CLOSED; // EventSource gave up
    conn.textContent = refused ? "not live: reload the page to try again" : "reconnecting…";
    conn.className = "conn";
    if (refused && !loaded) load(); // e.g. too many live streams: the history anyway
  };
  stream.addEventListener("reading", (e) => takeReading(JSON.parse(e.data)));
  stream.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    setStatus(cardFor(s.device), s.status);
  });
  stream.addEventListener("meta", (e) => {
    const m = JSON.parse(e.data);
    const entry = cardFor(m.device);
    entry.units = { ...entry.units, ...m.units };
    entry.intervalMs = m.interval_ms || null;
    state.dirtyCards.add(entry);
    schedule();
  });
  stream.addEventListener("alert", (e) => showAlert(JSON.parse(e.data), true));
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

// A new colour scheme redraws every chart in its colours; the data stays as it is.
function retheme() {
  for (const entry of state.devices.values()) {
    entry.node.querySelector(".swatch").style.background = colourFor(entry.node.dataset.device);
  }
  for (const chart of state.charts.values()) {
    if (!chart.div.data) continue;
    for (const trace of chart.div.data) styleTrace(trace, chart.unit);
    Plotly.react(chart.div, chart.div.data, themed(chart.div.layout));
    renderLegend(chart);
  }
}

function tick() {
  if (document.hidden) return;
  for (const entry of state.devices.values()) renderAge(entry);
}

document.getElementById("zone").textContent = `times in ${ZONE}`;
document.addEventListener("visibilitychange", schedule);
plotlyReady.then(schedule);
darkQuery.addEventListener("change", retheme);
setupRanges();
connect();
setInterval(tick, 1000);
