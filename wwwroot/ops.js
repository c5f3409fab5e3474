// The operations page: polls GET /api/ops/nodes (operators only) once a second and draws what the service's own
// meter says — one table row and one line per node. uPlot is vendored under /vendor/uplot (no CDN).
const $ = (selector) => document.querySelector(selector);
const STORE = "balance.ops.tokens";
const WINDOW_MS = 10 * 60 * 1000;
const CLOSE_MEANINGS = {
  1000: "normal", 1001: "going away (server restart, or the client left)", 1006: "dropped", 1008: "rate limited", 1009: "frame too large",
  4001: "token expired", 4002: "auth timeout", 4003: "slow consumer", 4004: "too many connections",
  4500: "bad request", 4501: "invalid token", 4503: "forbidden",
};
const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2"];

const nodes = new Map(); // node_id → { latest, series: [sample, …] }
const charts = [];
let lastAt = 0;
let timer = 0;

// Exposed for the browser tests and for a curious operator's console.
window.opsState = { nodes, charts };

function tokens() {
  try { return JSON.parse(sessionStorage.getItem(STORE) ?? "null"); } catch { return null; }
}

async function login(username, password) {
  const response = await fetch("/api/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username, password }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ?? `login failed (${response.status})`);
  if (body.role !== "operator") {
    // A player's token has no business here; end that login rather than leave it lying around.
    await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${body.access_token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: body.refresh_token }) });
    throw new Error("This page is for operators; that login is a player's.");
  }
  sessionStorage.setItem(STORE, JSON.stringify({ access: body.access_token, refresh: body.refresh_token }));
}

async function refresh() {
  const held = tokens();
  if (!held) return false;
  const response = await fetch("/api/auth/refresh", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: held.refresh }),
  });
  if (!response.ok) return false;
  const body = await response.json();
  sessionStorage.setItem(STORE, JSON.stringify({ access: body.access_token, refresh: body.refresh_token }));
  return true;
}

async function fetchNodes() {
  for (let attempt = 0; attempt < 2; attempt++) {
    const held = tokens();
    if (!held) return null;
    const response = await fetch(`/api/ops/nodes${lastAt ? `?since=${lastAt}` : ""}`, { headers: { Authorization: `Bearer ${held.access}` } });
    if (response.ok) return response.json();
    if (response.status === 401 && attempt === 0 && await refresh()) continue;
    if (response.status === 401 || response.status === 403) { signOut(response.status === 403 ? "Operators only." : "Your login has ended; log in again."); return null; }
    throw new Error(`ops endpoint answered ${response.status}`);
  }
  return null;
}

function signOut(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(STORE);
  $("#ops-view").hidden = true;
  $("#who").hidden = true;
  $("#login-view").hidden = false;
  $("#login-error").textContent = message ?? "";
}

function show() {
  $("#login-view").hidden = true;
  $("#ops-view").hidden = false;
  $("#who").hidden = false;
  poll();
}

async function poll() {
  clearTimeout(timer);
  try {
    const view = await fetchNodes();
    if (!view) return;
    merge(view);
    render();
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("#updated").textContent = `${error.message}; retrying`;
  }
  timer = setTimeout(poll, 1000);
}

function merge(view) {
  const cutoff = Date.now() - WINDOW_MS;
  for (const node of view.nodes) {
    const held = nodes.get(node.node_id) ?? { series: [] };
    held.latest = node;
    held.series.push(...node.series.filter((s) => s.at > (held.series.at(-1)?.at ?? 0)));
    while (held.series.length && held.series[0].at < cutoff) held.series.shift();
    nodes.set(node.node_id, held);
    for (const s of node.series) lastAt = Math.max(lastAt, s.at);
  }
}

const number = (v, digits = 0) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const ms = (v) => (v === null || v === undefined ? "—" : `${number(v, v < 10 ? 2 : 1)} ms`);
const bytes = (b) => (b < 1024 * 1024 ? `${number(b / 1024, 0)} KiB` : `${number(b / 1024 / 1024, 1)} MiB`);
const duration = (s) => (s < 120 ? `${Math.floor(s)} s` : s < 7200 ? `${Math.floor(s / 60)} min` : `${number(s / 3600, 1)} h`);

function cell(row, field, text, warn = false) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text;
  if (warn) td.className = "warn";
  row.append(td);
}

function render() {
  const body = $("#nodes tbody");
  body.replaceChildren();
  const closes = $("#closes tbody");
  closes.replaceChildren();
  for (const [id, { latest }] of nodes) {
    const c = latest.current ?? {};
    const row = document.createElement("tr");
    row.dataset.node = id;
    cell(row, "node_id", id);
    cell(row, "uptime", duration(latest.uptime_seconds));
    cell(row, "sockets_open", number(c.sockets_open));
    cell(row, "sockets_authenticated", number(c.sockets_authenticated));
    cell(row, "postings_per_second", number(c.postings_per_second, 1));
    cell(row, "messages_per_second", number(c.messages_per_second, 1));
    cell(row, "push_delay_p50_ms", ms(c.push_delay_p50_ms));
    cell(row, "push_delay_p99_ms", ms(c.push_delay_p99_ms), c.push_delay_p99_ms > 5);
    cell(row, "batch_size", c.batch_size_mean === null || c.batch_size_mean === undefined ? "—" : `${number(c.batch_size_mean, 1)} / ${c.batch_size_max}`);
    cell(row, "wal", `${number(c.wal_pages)} pages, ${bytes(c.wal_file_bytes ?? 0)} file`);
    cell(row, "slow_consumer_closes", number(latest.slow_consumer_closes), latest.slow_consumer_closes > 0);
    body.append(row);
    for (const [code, count] of Object.entries(latest.closes_by_code).sort(([a], [b]) => a - b)) {
      const line = document.createElement("tr");
      line.dataset.node = id;
      line.dataset.code = code;
      cell(line, "node_id", id);
      cell(line, "code", code);
      cell(line, "meaning", CLOSE_MEANINGS[code] ?? "");
      cell(line, "count", number(count));
      closes.append(line);
    }
  }
  if (!closes.children.length) {
    const line = document.createElement("tr");
    line.innerHTML = '<td colspan="4" class="muted">No socket has closed yet.</td>';
    closes.append(line);
  }
  drawCharts();
}

// One chart per measure, one line per node (two for the delay: p50 dashed, p99 solid).
const CHARTS = [
  { el: "#chart-sockets", lines: [{ field: "sockets_authenticated" }] },
  { el: "#chart-postings", lines: [{ field: "postings_per_second" }] },
  { el: "#chart-delay", lines: [{ field: "push_delay_p50_ms", label: "p50", dash: [4, 4] }, { field: "push_delay_p99_ms", label: "p99" }] },
  { el: "#chart-wal", lines: [{ field: "wal_pages" }] },
];
let chartNodes = "";

function drawCharts() {
  const ids = [...nodes.keys()];
  // Every node's samples on one time axis: the union of their seconds, gaps where a node has none.
  const times = [...new Set(ids.flatMap((id) => nodes.get(id).series.map((s) => Math.round(s.at / 1000))))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  if (chartNodes !== ids.join("|")) {
    charts.splice(0).forEach((c) => c.destroy());
    chartNodes = ids.join("|");
    for (const spec of CHARTS) {
      const el = $(spec.el);
      el.replaceChildren();
      const series = [{}];
      ids.forEach((id, n) => spec.lines.forEach((line) => series.push({
        label: ids.length > 1 || line.label ? `${ids.length > 1 ? id : ""} ${line.label ?? ""}`.trim() : spec.el.slice(7),
        stroke: COLORS[n % COLORS.length], dash: line.dash, width: 1.5, spanGaps: false, points: { show: false },
      })));
      const chart = new uPlot({
        width: Math.max(280, el.clientWidth || el.parentElement.clientWidth - 36), height: 160, series,
        legend: { show: ids.length > 1 || spec.lines.length > 1 },
        axes: [{ size: 30 }, { size: 50 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
      }, [times, ...series.slice(1).map(() => [])], el);
      chart.spec = spec;
      charts.push(chart);
    }
  }
  for (const chart of charts) {
    const data = [times];
    for (const id of ids) {
      for (const line of chart.spec.lines) {
        const ys = new Array(times.length).fill(null);
        for (const s of nodes.get(id).series) ys[index.get(Math.round(s.at / 1000))] = s[line.field];
        data.push(ys);
      }
    }
    chart.setData(data);
  }
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  try {
    await login($("#username").value, $("#password").value);
    show();
  } catch (error) {
    $("#login-error").textContent = error.message;
  }
});

// The access token may have run out since the last poll: then refresh once and end the login with the new pair,
// so the login really ends on the server and not only on this page.
async function logout() {
  for (let attempt = 0; attempt < 2; attempt++) {
    const held = tokens();
    if (!held) return;
    const response = await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${held.access}`, "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: held.refresh }) }).catch(() => null);
    if (response?.status === 401 && attempt === 0 && await refresh()) continue;
    return;
  }
}

$("#logout").addEventListener("click", async () => {
  await logout();
  signOut();
});

if (tokens()) show();
