// Commit → socket across nodes, from outside, while wrk keeps the nodes at the load under test: a light probe of its
// own players, each with one socket on every node, posts RATE deposits per second spread over the nodes, and for each
// posting takes the time from the moment its request was sent to the moment each socket of that player received the
// balance. That bounds commit → socket from above (the commit happens after the request is sent); deliveries are split
// into same-node (the socket is on the node that took the posting) and cross-node (it came through the change feed).
//   node --experimental-websocket latency.mjs '{"nodes":[...],"token":"...","players":[{"id","token"}],"rate":R,"seconds":S}'
import http from "node:http";
import { summary } from "./stats.mjs";

const cfg = JSON.parse(process.argv[2]);
const { nodes, token, players, rate, seconds, arrivals } = cfg;
const socketCount = players.length * nodes.length;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sent = new Map(); // transaction id → { node, at }, filled when the answer names the id
const early = new Map(); // arrivals before the answer: transaction id → [{ node, at }]
const delays = { same: [], cross: [] };
// Also from the ledger row's own time (created_at: stamped by the node's writer just before its batch commits, the same
// clock as this box's, to the millisecond) to arrival: closer to commit → socket, without the request's wait for a batch.
const stamped = { same: [], cross: [] };
const wallClock = () => performance.timeOrigin + performance.now();
// Every delivery, when `arrivals` names a file: transaction id, same|cross, wall-clock arrival in ms. bench/nodes.sh joins
// them with PostgreSQL's own commit timestamps (track_commit_timestamp) for commit → socket itself.
const delivered = [];
let errors = 0, received = 0;

function record(txId, socketNode, at, wall, stamp) {
  const s = sent.get(txId);
  if (!s) { (early.get(txId) ?? early.set(txId, []).get(txId)).push({ node: socketNode, at, wall, stamp }); return; }
  const same = socketNode === s.node;
  (same ? delays.same : delays.cross).push(at - s.at);
  (same ? stamped.same : stamped.cross).push(wall - stamp);
  delivered.push(`${txId}\t${same ? "same" : "cross"}\t${wall.toFixed(3)}`);
}

const open = [];
for (let i = 0; i < socketCount; i++) {
  const player = players[i % players.length];
  const node = Math.floor(i / players.length); // one socket of each player on every node
  open.push(new Promise((resolve, reject) => {
    const ws = new WebSocket(nodes[node].replace("http", "ws") + "/ws/balance/player");
    let ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", access_token: player.token, data: {} }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type !== "balance") return;
      if (!ready) { ready = true; resolve(ws); return; } // the snapshot
      received++;
      if (m.transaction_id) record(m.transaction_id, node, now(), wallClock(), Date.parse(m.updated_at));
    };
    ws.onerror = () => { if (!ready) reject(new Error("socket failed")); };
    ws.onclose = (e) => { if (!ready) reject(new Error(`socket closed ${e.code}`)); };
  }));
}
const ws = await Promise.all(open);

// Plain http with keep-alive: fetch costs several times the CPU per request, and a generator that busy hides the server.
const agents = nodes.map(() => new http.Agent({ keepAlive: true, maxSockets: 32 }));
const targets = nodes.map((n) => new URL(n));
let seq = 0;
const started = now();
const inflight = new Set();
function post(i) {
  const node = i % nodes.length;
  const player = players[(i * 7) % players.length];
  const body = JSON.stringify({ user_id: player.id, type: "deposit", amount: "0.01", currency: "USD" });
  const at = now();
  return new Promise((resolve) => {
    const req = http.request({
      agent: agents[node], host: targets[node].hostname, port: targets[node].port, method: "POST", path: "/api/transactions",
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), Authorization: `Bearer ${token}`, "Idempotency-Key": `lat-${started}-${i}` },
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        if (res.statusCode !== 201) { errors++; return resolve(); }
        const id = JSON.parse(text).transaction_id;
        sent.set(id, { node, at });
        for (const a of early.get(id) ?? []) record(id, a.node, a.at, a.wall, a.stamp);
        early.delete(id);
        resolve();
      });
    });
    req.on("error", () => { errors++; resolve(); });
    req.end(body);
  });
}
while (now() - started < seconds * 1000) {
  const due = Math.floor(((now() - started) / 1000) * rate);
  while (seq < due) { const p = post(seq++); inflight.add(p); p.finally(() => inflight.delete(p)); }
  await new Promise((r) => setTimeout(r, 2));
}
await Promise.all(inflight);
await new Promise((r) => setTimeout(r, 1000)); // the last deliveries
for (const s of ws) s.close();
if (arrivals) (await import("node:fs")).writeFileSync(arrivals, delivered.join("\n") + "\n");
console.log("LATENCY " + JSON.stringify({ postings: seq, errors, rate_achieved: seq / seconds, same: summary(delays.same), cross: summary(delays.cross),
  stamp_same: summary(stamped.same), stamp_cross: summary(stamped.cross) }));
process.exit(0);
