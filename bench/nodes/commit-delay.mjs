// Commit → socket from PostgreSQL's own commit time: joins the probe's deliveries (transaction id, same|cross, arrival
// in wall-clock ms) with each transaction's commit timestamp (pg_xact_commit_timestamp, taken as the commit record is
// written, before its WAL flush), both read from this box's one clock.
//   node commit-delay.mjs ARRIVALS COMMITS     (COMMITS: transaction id, commit time in epoch ms; tab-separated)
import fs from "node:fs";
import { summary } from "./stats.mjs";

const read = (f) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => l.split("\t"));
const committed = new Map(read(process.argv[3]).map(([id, ms]) => [id, Number(ms)]));
const delays = { same: [], cross: [] };
let unmatched = 0;
for (const [id, kind, at] of read(process.argv[2])) {
  const c = committed.get(id);
  if (c === undefined || Number.isNaN(c)) { unmatched++; continue; }
  delays[kind].push(Number(at) - c);
}
console.log(JSON.stringify({ commit_same: summary(delays.same), commit_cross: summary(delays.cross), unmatched }));
