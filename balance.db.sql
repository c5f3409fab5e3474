-- Balance schema. Applied at every start; every statement is idempotent.
-- Money is INTEGER minor units (cents, satoshis); never REAL, never TEXT decimals.
PRAGMA journal_mode = WAL;

-- `username` is in its normal form: ASCII, lower case (Auth/Users.cs; older rows are lowered at start).
-- `disabled_at`: set while an operator has disabled the account (schema 2; added in place to older databases).
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,                -- GUID
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,                   -- ASP.NET Core PasswordHasher (PBKDF2)
    role          TEXT NOT NULL CHECK (role IN ('player', 'operator')),
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);

-- The ledger is the audit trail and the only record of money: append-only, one row per committed transaction. It
-- is written by one writer (the service's ledger loop), which holds every wallet, the recent Idempotency-Keys and the
-- history chains' heads in memory, checks every rule there, and appends each batch's rows in one transaction, whose
-- WAL is fsynced before it answers (Storage/Sqlite/WalFlusher.cs). So the only indexes a posting writes grow at one end: the rowid, and
-- transaction_id (UUIDv7, time-ordered). See Storage/Sqlite/LedgerState.cs.
CREATE TABLE IF NOT EXISTS ledger (
    seq             INTEGER PRIMARY KEY,           -- commit order, assigned by the writer; history pages
    transaction_id  TEXT    NOT NULL UNIQUE,
    user_id         TEXT    NOT NULL REFERENCES users (id),
    type            TEXT    NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'bet', 'win', 'rollback')),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    balance_after   INTEGER NOT NULL CHECK (balance_after >= 0),
    version         INTEGER NOT NULL CHECK (version > 0), -- the wallet's: steps by exactly one per posting to it
    idempotency_key TEXT    NOT NULL,              -- unique per poster within Balance:IdempotencyWindow (the writer checks it)
    request_hash    TEXT    NOT NULL,              -- SHA-256 of the canonical request, for replay checks
    reference       TEXT,
    reverses        TEXT REFERENCES ledger (transaction_id),
    posted_by       TEXT    NOT NULL REFERENCES users (id),
    created_at      TEXT    NOT NULL,
    user_prev       INTEGER                        -- seq of the same user's previous row: the player's history is this chain
);
-- A bet is rolled back at most once (the writer checks it first; this is the backstop). Partial: no entry per other row.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_reverses ON ledger (reverses) WHERE reverses IS NOT NULL;

-- The Idempotency-Keys of the ledger's rows as keyed 64-bit hashes (HMAC-SHA256 with ledger_meta.key_seed, first 8
-- bytes), one row per committed batch: so a posting adds no row of its own here, and the writer rebuilds its in-memory
-- key index at start from one narrow row per batch instead of the whole ledger. Appended in seq order like the ledger;
-- a hash names candidates only, the ledger row is always compared. (Schema 3 had a row per posting, ledger_keys.)
CREATE TABLE IF NOT EXISTS ledger_key_runs (
    first_seq INTEGER PRIMARY KEY,                 -- the batch's first ledger row
    hashes    BLOB    NOT NULL                     -- 8 bytes (little-endian) per row: first_seq, first_seq + 1, ...
);

-- Where the writer starts from: each wallet's newest ledger row as of ledger_meta.checkpoint_seq, written by the
-- writer inside a batch's transaction at most every 10 s. A checkpoint only: at start the rows after it are
-- replayed from the ledger, which is never contradicted.
CREATE TABLE IF NOT EXISTS wallet_checkpoint (
    user_id  TEXT    NOT NULL,
    currency TEXT    NOT NULL,
    seq      INTEGER NOT NULL,                     -- the wallet's newest ledger row
    PRIMARY KEY (user_id, currency)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ledger_meta (
    name  TEXT PRIMARY KEY,                        -- key_seed (hex), checkpoint_seq
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One wallet per (player, currency), created by its first credit: its ledger's newest row. For audits and ad-hoc
-- queries (it scans the ledger); the service reads wallets from the writer's memory.
CREATE VIEW IF NOT EXISTS wallets AS
    SELECT user_id, currency, balance_after AS balance, version, created_at AS updated_at,
           transaction_id AS last_transaction_id, MAX(seq) AS seq
    FROM ledger GROUP BY user_id, currency;

-- A login session: every access and refresh token carries its id (sid). A login slides: each refresh extends it
-- by Auth:RefreshTokenLifetime, up to `expires_at`, its absolute end, set once at login (Auth:SessionLifetime).
-- `access_expires_at` is when the newest access token issued for it expires: a revoked session is remembered
-- (loaded at every start) until then, so no token of an ended login works again after a restart.
CREATE TABLE IF NOT EXISTS sessions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    revoked_at        TEXT,
    access_expires_at TEXT
);

-- Refresh tokens are stored as SHA-256 hashes; a used one is kept to detect reuse. `replaced_by` is the hash of
-- the token it was rotated into: within Auth:RefreshReuseGrace of that rotation, a spent token whose successor
-- was never used (the answer was lost) is rotated again, and the unseen successor is spent.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    replaced_by TEXT
) WITHOUT ROWID;
-- For the housekeeping job (Auth/Housekeeping.cs): expired tokens, and sessions with no token left.
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_session ON refresh_tokens (session_id);
