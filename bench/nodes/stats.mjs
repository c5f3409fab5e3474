// Percentiles of the probe's delays (ms), the same way in latency.mjs and commit-delay.mjs: nearest rank, sorted copy.
export const pct = (a, p) => { if (!a.length) return null; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
export const summary = (a) => ({ count: a.length, p50_ms: pct(a, 0.5), p99_ms: pct(a, 0.99), max_ms: pct(a, 1) });
