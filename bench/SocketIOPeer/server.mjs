// The Socket.IO peer: what many teams pick instead of a hand-written socket — Node, socket.io 4 with a room per
// player, a JWT checked in the connection middleware, and after each posting `io.to(userId).emit("balance", …)`
// with the same balance message as the service's. The harness (bench/Balance.Bench) drives it like the SignalR
// peer: the same posting endpoint and body, the same players, sockets and rate.
//
// The ledger is a Map in memory: no SQLite, no fsync (Node 20 has no SQLite of its own, and a native module would
// need a compiler here). So this peer pays for HTTP, JSON and the fan-out only — its deliveries per CPU-second are
// an upper bound of what the same design with a durable store would do.
//   node server.mjs --port 18095
import { createServer } from "node:http";
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { Server } from "socket.io";

const port = Number(process.argv[process.argv.indexOf("--port") + 1] || 18095);
const key = randomBytes(64);

const b64url = (buf) => Buffer.from(buf).toString("base64url");
function sign(claims) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ ...claims, iss: "peer", aud: "peer", exp: Math.floor(Date.now() / 1000) + 7200 }));
  return `${head}.${body}.${b64url(createHmac("sha256", key).update(`${head}.${body}`).digest())}`;
}
function verify(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) return null;
  const want = createHmac("sha256", key).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return null;
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  return claims.exp > Date.now() / 1000 && claims.iss === "peer" && claims.aud === "peer" ? claims : null;
}

const wallets = new Map(); // user id → { balance (minor units), version }
const replies = new Map(); // Idempotency-Key → the 201 body already sent
const format = (minor) => `${minor < 0 ? "-" : ""}${Math.floor(Math.abs(minor) / 100)}.${String(Math.abs(minor) % 100).padStart(2, "0")}`;
const SIGNS = { deposit: 1, win: 1, bet: -1, withdrawal: -1 };

function post(body, idempotencyKey) {
  const direction = SIGNS[body.type];
  const m = /^(\d{1,15})\.(\d{2})$/.exec(body.amount ?? "");
  if (!direction || !m || body.currency !== "USD" || !wallets.has(body.user_id) || !idempotencyKey) return [400, { code: "validation_failed" }];
  const seen = replies.get(idempotencyKey);
  if (seen) return [200, seen];
  const amount = Number(m[1]) * 100 + Number(m[2]);
  const w = wallets.get(body.user_id);
  if (direction < 0 && w.balance < amount) return [409, { code: "insufficient_funds" }];
  w.balance += direction * amount;
  w.version += 1;
  const now = new Date().toISOString();
  const result = {
    transaction_id: randomUUID(), user_id: body.user_id, type: body.type, amount: body.amount, currency: "USD",
    balance: format(w.balance), version: w.version, created_at: now, reference: null, reverses: null,
  };
  replies.set(idempotencyKey, result);
  io.to(body.user_id).emit("balance", {
    type: "balance", user_id: body.user_id, balance: result.balance, currency: "USD", version: w.version,
    transaction_id: result.transaction_id, transaction_type: body.type, updated_at: now,
  });
  return [201, result];
}

function readJson(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c)).on("end", () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString())); } catch { resolve(null); }
    });
  });
}

const http = createServer(async (req, res) => {
  const send = (status, body) => {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, { "Content-Type": typeof body === "string" ? "text/plain" : "application/json" }).end(text);
  };
  if (req.method === "GET" && req.url === "/healthz") return send(200, "ok");
  if (req.method === "POST" && req.url === "/api/transactions") {
    const auth = verify((req.headers.authorization ?? "").replace(/^Bearer /, ""));
    if (!auth || auth.role !== "operator") return send(401, { code: "unauthorized" });
    const body = await readJson(req);
    if (!body) return send(400, { code: "bad_json" });
    const [status, reply] = post(body, req.headers["idempotency-key"]);
    return send(status, reply);
  }
  if (req.method === "POST" && req.url === "/bench/setup") {
    const { players: n } = (await readJson(req)) ?? {};
    const operatorId = randomUUID();
    const players = [];
    for (let i = 0; i < n; i++) {
      const id = randomUUID();
      wallets.set(id, { balance: 0, version: 0 });
      players.push({ user_id: id, access_token: sign({ sub: id, role: "player" }) });
    }
    return send(200, { operator_token: sign({ sub: operatorId, role: "operator" }), operator_id: operatorId, players });
  }
  send(404, { code: "not_found" });
});

// WebSocket only: at this scale teams turn long-polling off (no sticky sessions, no polling buffers).
const io = new Server(http, { transports: ["websocket"], serveClient: false });
io.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token);
  if (!claims || claims.role !== "player") return next(new Error("unauthorized"));
  socket.data.userId = claims.sub;
  next();
});
io.on("connection", (socket) => socket.join(socket.data.userId));

http.listen(port, "127.0.0.1");
