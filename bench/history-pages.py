# History pages on the log schema: the per-player chain (user_prev) against an index on (user_id, seq).
# python3 bench/history-pages.py  (reads /tmp/balance-ledger-probe/hist.db: a copy of the probe's upgraded 1 M-row file,
#   cp "$LEDGER_PROBE_DIR/template-1000000-10000-log.db" /tmp/balance-ledger-probe/hist.db after bench/ledger.sh).
# Prints median and p99 per page for each; builds the index on that copy, so use a copy.
import sqlite3, random, time, statistics, shutil, sys
cols = "transaction_id, user_id, type, amount, currency, balance_after, version, request_hash, reference, reverses, created_at"
def chain_sql(take): return f"""WITH RECURSIVE chain (seq, n) AS (SELECT ?, 1 UNION ALL SELECT l.user_prev, chain.n + 1 FROM chain JOIN ledger l ON l.seq = chain.seq WHERE chain.n < {take} AND l.user_prev IS NOT NULL)
SELECT {cols} FROM chain JOIN ledger ON ledger.seq = chain.seq ORDER BY chain.n"""
c = sqlite3.connect("/tmp/balance-ledger-probe/hist.db")
heads = dict(c.execute("SELECT user_id, MAX(seq) FROM ledger GROUP BY user_id").fetchall())
users = list(heads)
random.seed(1)
sample = [random.choice(users) for _ in range(2000)]
def run_chain(limit):
    t=[]
    for u in sample:
        s=time.perf_counter(); rows=c.execute(chain_sql(limit+1), (heads[u],)).fetchall(); t.append(time.perf_counter()-s)
        assert len(rows)==limit+1, len(rows)
    return t
def run_index(limit):
    t=[]
    for u in sample:
        s=time.perf_counter(); rows=c.execute(f"SELECT {cols} FROM ledger WHERE user_id = ? ORDER BY seq DESC LIMIT {limit+1}", (u,)).fetchall(); t.append(time.perf_counter()-s)
        assert len(rows)==limit+1
    return t
def q(t): t=sorted(t); return f"median {statistics.median(t)*1e6:.0f} us, p99 {t[int(len(t)*.99)]*1e6:.0f} us"
for limit in (50,):
    run_chain(limit)
    for rep in range(3): print(f"chain, page of {limit}: {q(run_chain(limit))}")
s=time.perf_counter(); c.execute("CREATE INDEX ledger_by_user ON ledger (user_id, seq)"); c.commit(); print(f"index built in {time.perf_counter()-s:.1f} s")
for limit in (50,):
    run_index(limit)
    for rep in range(3): print(f"index, page of {limit}: {q(run_index(limit))}")
    for rep in range(2): print(f"chain, page of {limit}: {q(run_chain(limit))}")
