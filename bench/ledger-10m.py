# Builds a 10 M-row ledger (schema 4) for the writer's start-up measurement by replicating the probe's 1 M-row file
# (bench/ledger.sh makes it: LEDGER_PROBE_DIR/template-1000000-10000-log.db) nine times: seqs, versions, balances,
# history chains, keys and their hashes shifted per copy, every row inside the key window. Pre-filling schema 1 with
# 10 M random keys and upgrading it runs for over an hour on a 2-core box; this takes a few minutes.
#   python3 bench/ledger-10m.py <1M-row schema-4 file> <out file> [copies=10]
# Then: bench/Balance.Bench/bin/Release/net10.0/Balance.Bench ledger-probe-run log <copy of out file> 10000 64 0 1 startup-only
import shutil, sqlite3, struct, sys, time

src, dst = sys.argv[1], sys.argv[2]
copies = int(sys.argv[3]) if len(sys.argv) > 3 else 10
shutil.copy(src, dst)
c = sqlite3.connect(dst, isolation_level=None)
assert c.execute("PRAGMA user_version").fetchone()[0] == 4, "expects a schema-4 file (ledger_key_runs)"
c.execute("PRAGMA cache_size = -1048576")
c.execute("PRAGMA synchronous = OFF")
n = c.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
per = c.execute("SELECT MAX(version) FROM ledger").fetchone()[0]
step = c.execute("SELECT MAX(balance_after) FROM ledger").fetchone()[0]
runs = c.execute("SELECT first_seq, hashes FROM ledger_key_runs WHERE first_seq <= ? ORDER BY first_seq", (n,)).fetchall()
t = time.time()
c.execute("BEGIN")
c.execute("CREATE TEMP TABLE last AS SELECT user_id, MAX(seq) AS seq FROM ledger GROUP BY user_id")
c.execute("CREATE UNIQUE INDEX temp.last_user ON last (user_id)")
for k in range(1, copies):
    c.execute("""INSERT INTO ledger SELECT seq + ?1 * ?2, transaction_id || '.' || ?1, user_id, type, amount, currency, balance_after + ?1 * ?4,
                 version + ?1 * ?3, idempotency_key || '.' || ?1, request_hash, reference, reverses, posted_by, created_at,
                 COALESCE(user_prev + ?1 * ?2, (SELECT l.seq + (?1 - 1) * ?2 FROM last l WHERE l.user_id = ledger.user_id))
                 FROM ledger WHERE seq <= ?2 ORDER BY seq""", (k, n, per, step))
    # The hashes shifted by k (each copy's keys differ, as they would), not recomputed: the measurement is the load.
    for first, hashes in runs:
        shifted = [((h + k + 2**63) % 2**64) - 2**63 for h in struct.unpack(f"<{len(hashes) // 8}q", hashes)]
        c.execute("INSERT INTO ledger_key_runs (first_seq, hashes) VALUES (?, ?)", (first + k * n, struct.pack(f"<{len(shifted)}q", *shifted)))
    print(f"copy {k}: {time.time() - t:.0f} s", flush=True)
c.execute("UPDATE wallet_checkpoint SET seq = seq + ? * ?", (copies - 1, n))
c.execute("UPDATE ledger_meta SET value = (SELECT MAX(seq) FROM ledger) WHERE name = 'checkpoint_seq'")
c.execute("COMMIT")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(c.execute("SELECT COUNT(*), MAX(seq) FROM ledger").fetchone(), f"{time.time() - t:.0f} s", flush=True)
