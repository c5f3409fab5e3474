#!/usr/bin/env node
// Charts of benchmark results, as plain SVG (no dependencies): node bench/charts.mjs --out DIR results.json [more.json …]
// For each results file: <name>-latency.svg (percentiles of every phase: HTTP response, request → every socket,
// and the service's own commit → socket histogram) and <name>-rss.svg (server RSS against open sockets, and per
// socket). Given several files, also runs.svg: the same figures side by side, one group per run.
// bench/run.sh calls it for every new run; BENCHMARKS.md shows the charts of the committed runs.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
if (outAt < 0 || !args[outAt + 1] || args.length < 3) {
  console.error("usage: node bench/charts.mjs --out DIR results.json [more.json …]");
  process.exit(2);
}
const outDir = args[outAt + 1];
const files = args.filter((_, i) => i !== outAt && i !== outAt + 1);
mkdirSync(outDir, { recursive: true });

const COLORS = { balance: "#2563eb", "balance storm": "#0891b2", signalr: "#dc2626", socketio: "#d97706", noop: "#6b7280" };
const EXTRA = ["#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
const PERCENTILES = [["p50_ms", "p50"], ["p99_ms", "p99"], ["p999_ms", "p99.9"], ["max_ms", "max"]];
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fmt = (v) => (v >= 1000 ? `${Math.round(v).toLocaleString("en-US")}` : v >= 10 ? `${+v.toFixed(0)}` : v >= 1 ? `${+v.toFixed(1)}` : `${+v.toFixed(2)}`);

function svg(width, height, title, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="16" y="22" font-size="15" font-weight="600" fill="#111827">${esc(title)}</text>
${body}
</svg>
`;
}

// One panel: axes, grid, lines and points. x is categorical (labels) or numeric; y linear or log10.
function panel({ x, y, w, h, title, xLabels, xMax, yLog, yLabel, series, xLabel }) {
  const legendH = 16 * series.length;
  const left = x + 60, top = y + 28, pw = w - 84, ph = h - 56 - legendH - (xLabel ? 16 : 0);
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v > 0 && Number.isFinite(v));
  let lo = values.length ? Math.min(...values) : 1, hi = values.length ? Math.max(...values) : 1;
  let ticks;
  if (yLog) {
    lo = 10 ** Math.floor(Math.log10(lo)); hi = 10 ** Math.ceil(Math.log10(hi * 1.001));
    if (lo === hi) hi = lo * 10;
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  } else {
    const step = niceCeil(hi / 4);
    lo = 0; hi = step * Math.ceil((hi * 1.05) / step);
    ticks = [];
    for (let t = 0; t <= hi + step / 2; t += step) ticks.push(t);
  }
  const sy = (v) => top + ph - (yLog ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo)) * ph;
  // Categories sit in the middle of equal slots, so the first and last labels stay inside the panel.
  const sx = xLabels ? (i) => left + ((i + 0.5) / xLabels.length) * pw : (v) => left + (v / xMax) * pw;
  let out = `<text x="${x + 8}" y="${y + 16}" font-size="13" font-weight="600" fill="#374151">${esc(title)}</text>\n`;
  for (const t of ticks) {
    out += `<line x1="${left}" x2="${left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e7eb"/>`;
    out += `<text x="${left - 6}" y="${sy(t) + 4}" text-anchor="end" fill="#4b5563">${fmt(t)}</text>\n`;
  }
  if (xLabels) xLabels.forEach((l, i) => { out += `<text x="${sx(i)}" y="${top + ph + 16}" text-anchor="middle" fill="#4b5563">${esc(l)}</text>`; });
  else for (const f of [0, 0.25, 0.5, 0.75, 1]) out += `<text x="${sx(f * xMax)}" y="${top + ph + 16}" text-anchor="middle" fill="#4b5563">${fmt(f * xMax)}</text>`;
  out += `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + ph}" stroke="#9ca3af"/><line x1="${left}" x2="${left + pw}" y1="${top + ph}" y2="${top + ph}" stroke="#9ca3af"/>\n`;
  out += `<text transform="translate(${x + 14},${top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#4b5563">${esc(yLabel)}</text>\n`;
  if (xLabel) out += `<text x="${left + pw / 2}" y="${top + ph + 32}" text-anchor="middle" fill="#4b5563">${esc(xLabel)}</text>\n`;
  series.forEach((s) => {
    const pts = s.points.filter((p) => p[1] > 0 && Number.isFinite(p[1])).map(([px, py]) => [sx(px), sy(py)]);
    if (pts.length > 1) out += `<polyline fill="none" stroke="${s.color}" stroke-width="2" ${s.dash ? `stroke-dasharray="${s.dash}"` : ""} points="${pts.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" ")}"/>\n`;
    for (const [px, py] of pts) out += `<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" fill="${s.color}"/>`;
    out += "\n";
  });
  // Legend under the plot, one line per series.
  let ly = top + ph + (xLabel ? 50 : 36);
  for (const s of series) {
    out += `<line x1="${left}" x2="${left + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2" ${s.dash ? `stroke-dasharray="${s.dash}"` : ""}/><text x="${left + 24}" y="${ly}" fill="#111827">${esc(s.label)}</text>\n`;
    ly += 16;
  }
  return out;
}

function niceCeil(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((c) => c >= v);
}

function phaseLabel(p) {
  return `${p.target} ${p.name} (${p.load === "open" ? `open ${Math.round(p.offered_per_second)}/s` : p.load}, ${Math.round(p.tx_per_second)} tx/s)`;
}

function colorFor(p, i) {
  const base = COLORS[p.target] ?? EXTRA[i % EXTRA.length];
  return { color: base, dash: p.name === "half" ? "" : "6 4" };
}

function latencyChart(r, name) {
  const phases = r.phases;
  const panels = [
    ["HTTP response", "response", phases],
    ["request → every socket (delivery)", "delivery", phases.filter((p) => p.delivery)],
    ["commit → socket (service histogram, bucket bound)", "commit_to_socket", phases.filter((p) => p.commit_to_socket)],
  ];
  const w = 400, h = 330 + 16 * phases.length;
  let body = "";
  panels.forEach(([title, key, list], k) => {
    const labels = key === "commit_to_socket" ? PERCENTILES.slice(0, 3) : PERCENTILES;
    body += panel({
      x: k * w, y: 30, w, h: h - 30, title, xLabels: labels.map((l) => l[1]), yLog: true, yLabel: "ms (log scale)",
      series: list.map((p, i) => ({ label: phaseLabel(p), ...colorFor(p, i), points: labels.map(([f], j) => [j, p[key][f]]) })),
    });
  });
  return svg(3 * w, h + 10, `Latency percentiles per phase — ${r.started_utc} (${name})`, body);
}

function rssChart(r, name) {
  const w = 600, h = 340 + 16 * r.sockets.length;
  const xMax = niceCeil(Math.max(...r.sockets.map((s) => s.open)));
  const fleet = (s) => (s.connect === "storm" ? `${s.target} storm` : s.target); // runs before the storm have no `connect`
  const absolute = r.sockets.map((s, i) => ({
    label: `${fleet(s)} (${(s.rss_bytes_per_socket / 1024).toFixed(1)} KiB/socket at ${s.open.toLocaleString("en-US")})`,
    color: COLORS[fleet(s)] ?? EXTRA[i], dash: "",
    points: s.rss_samples?.length ? [[0, s.rss_before_bytes / 1048576], ...s.rss_samples.map((p) => [p.sockets, p.rss_bytes / 1048576])]
      : [[0, s.rss_before_bytes / 1048576], [s.open, s.rss_after_bytes / 1048576]],
  }));
  // Per socket only from a few hundred on: below that the fixed start-up cost swamps it.
  const perSocket = r.sockets.map((s, i) => ({
    label: s.rss_samples?.length ? fleet(s) : `${fleet(s)} (settled figure only: this run predates the samples)`,
    color: COLORS[fleet(s)] ?? EXTRA[i], dash: "",
    points: s.rss_samples?.length
      ? s.rss_samples.filter((p) => p.sockets >= Math.min(200, s.open)).map((p) => [p.sockets, (p.rss_bytes - s.rss_before_bytes) / p.sockets / 1024])
      : [[s.open, s.rss_bytes_per_socket / 1024]],
  }));
  const body = panel({ x: 0, y: 30, w, h: h - 30, title: "server RSS against open sockets", xMax, yLabel: "MiB", xLabel: "open sockets", series: absolute })
    + panel({ x: w, y: 30, w, h: h - 30, title: "RSS per socket ((RSS − idle RSS) / sockets)", xMax, yLabel: "KiB per socket", xLabel: "open sockets", series: perSocket });
  return svg(2 * w, h + 20, `Memory per socket — ${r.started_utc} (${name})`, body);
}

function runsChart(runs) {
  const w = 600, h = 380;
  const labels = runs.map(({ r }) => r.started_utc.slice(11, 16));
  const targets = [...new Set(runs.flatMap(({ r }) => r.sockets.map((s) => s.target)))];
  const rss = targets.map((t, i) => ({
    label: `${t} RSS per socket`, color: COLORS[t] ?? EXTRA[i], dash: "",
    points: runs.map(({ r }, j) => [j, (r.sockets.find((s) => s.target === t)?.rss_bytes_per_socket ?? NaN) / 1024]),
  }));
  const half = (r) => r.phases.find((p) => p.target === "balance" && p.name === "half");
  const latency = [
    { label: "balance half rate: request → socket p99", color: COLORS.balance, dash: "", points: runs.map(({ r }, j) => [j, half(r)?.delivery?.p99_ms]) },
    { label: "balance half rate: commit → socket p99 (bucket bound)", color: EXTRA[0], dash: "6 4", points: runs.map(({ r }, j) => [j, half(r)?.commit_to_socket?.p99_ms]) },
    { label: "signalr half rate: request → socket p99", color: COLORS.signalr, dash: "", points: runs.map(({ r }, j) => [j, r.phases.find((p) => p.target === "signalr" && p.name === "half")?.delivery?.p99_ms]) },
  ];
  const body = panel({ x: 0, y: 30, w, h: h - 30, title: "RSS per idle socket, by run", xLabels: labels, yLabel: "KiB", series: rss })
    + panel({ x: w, y: 30, w, h: h - 30, title: "half-rate p99, by run", xLabels: labels, yLog: true, yLabel: "ms (log scale)", series: latency });
  return svg(2 * w, h + 20, `Runs compared: ${runs.length} runs, ${runs[0].r.started_utc} to ${runs.at(-1).r.started_utc}`, body);
}

const runs = files.map((file) => ({ r: JSON.parse(readFileSync(file, "utf8")), name: basename(file, ".json") }))
  .sort((a, b) => a.r.started_utc.localeCompare(b.r.started_utc));
for (const { r, name } of runs) {
  writeFileSync(join(outDir, `${name}-latency.svg`), latencyChart(r, name));
  writeFileSync(join(outDir, `${name}-rss.svg`), rssChart(r, name));
  console.log(`charts: ${join(outDir, `${name}-latency.svg`)}, ${join(outDir, `${name}-rss.svg`)}`);
}
if (runs.length > 1) {
  writeFileSync(join(outDir, "runs.svg"), runsChart(runs));
  console.log(`charts: ${join(outDir, "runs.svg")}`);
}
