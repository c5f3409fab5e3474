// Commit → socket across nodes, from outside: SOCKETS sockets spread over the nodes (players round-robin, each player's
// sockets on every node), postings at RATE per second spread over the nodes, and for each posting the time from the
// moment its request was sent to the moment each socket of that player received its balance. That bounds commit →
// socket from above (the commit happens after the request is sent); deliveries are split into same-node (the socket
// is on the node that took the posting) and cross-node (it came through the change feed).
//   node --experimental-websocket latency.mjs '{"nodes":[...],"token":"...","players":[{"id","token"}],"sockets":N,"rate":R,"seconds":S}'
const cfg = JSON.parse(process.argv[2]);
const { nodes, token, players, sockets: socketCount, rate, seconds } = cfg;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sent = new Map(); // transaction id → { node, at }, filled when the answer names the id
const early = new Map(); // arrivals before the answer: transaction id → [{ node, at }]
const delays = { same: [], cross: [] };
let errors = 0, received = 0;

function record(txId, socketNode, at) {
  const s = sent.get(txId);
  if (!s) { (early.get(txId) ?? early.set(txId, []).get(txId)).push({ node: socketNode, at }); return; }
  (socketNode === s.node ? delays.same : delays.cross).push(at - s.at);
}

const open = [];
for (let i = 0; i < socketCount; i++) {
  const player = players[i % players.length];
  const node = Math.floor(i / players.length) % nodes.length; // a player's sockets on every node in turn
  open.push(new Promise((resolve, reject) => {
    const ws = new WebSocket(nodes[node].replace("http", "ws") + "/ws/balance/player");
    let ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", access_token: player.token, data: {} }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type !== "balance") return;
      if (!ready) { ready = true; resolve(ws); return; } // the snapshot
      received++;
      if (m.transaction_id) record(m.transaction_id, node, now());
    };
    ws.onerror = () => { if (!ready) reject(new Error("socket failed")); };
    ws.onclose = (e) => { if (!ready) reject(new Error(`socket closed ${e.code}`)); };
  }));
}
const ws = await Promise.all(open);

let seq = 0;
const started = now();
const inflight = new Set();
async function post(i) {
  const node = i % nodes.length;
  const player = players[(i * 7) % players.length];
  const at = now();
  try {
    const r = await fetch(nodes[node] + "/api/transactions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}`, "Idempotency-Key": `lat-${started}-${i}` },
      body: JSON.stringify({ user_id: player.id, type: "deposit", amount: "0.01", currency: "USD" }),
    });
    const body = await r.json();
    if (r.status !== 201) { errors++; return; }
    sent.set(body.transaction_id, { node, at });
    for (const a of early.get(body.transaction_id) ?? []) record(body.transaction_id, a.node, a.at);
    early.delete(body.transaction_id);
  } catch { errors++; }
}
while (now() - started < seconds * 1000) {
  const due = Math.floor(((now() - started) / 1000) * rate);
  while (seq < due) { const p = post(seq++); inflight.add(p); p.finally(() => inflight.delete(p)); }
  await new Promise((r) => setTimeout(r, 2));
}
await Promise.all(inflight);
await new Promise((r) => setTimeout(r, 1000)); // the last deliveries
for (const s of ws) s.close();
const pct = (a, p) => { if (!a.length) return null; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const summary = (a) => ({ count: a.length, p50_ms: pct(a, 0.5), p99_ms: pct(a, 0.99), max_ms: pct(a, 1) });
console.log("LATENCY " + JSON.stringify({ postings: seq, errors, rate_achieved: seq / seconds, same: summary(delays.same), cross: summary(delays.cross) }));
process.exit(0);
