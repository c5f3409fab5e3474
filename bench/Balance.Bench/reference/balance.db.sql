-- Balance schema. Applied at every start; every statement is idempotent.
-- Money is INTEGER minor units (cents, satoshis); never REAL, never TEXT decimals.
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,                -- GUID
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,                   -- ASP.NET Core PasswordHasher (PBKDF2)
    role          TEXT NOT NULL CHECK (role IN ('player', 'operator')),
    created_at    TEXT NOT NULL
);

-- One wallet per (player, currency), created by its first credit. The ledger writer moves `version` up by
-- exactly one per posting, guarded in the UPDATE itself (WHERE version = new - 1), so a wallet's versions
-- are unique and gapless without a second per-player index on the ledger.
CREATE TABLE IF NOT EXISTS wallets (
    user_id             TEXT    NOT NULL REFERENCES users (id),
    currency            TEXT    NOT NULL,
    balance             INTEGER NOT NULL CHECK (balance >= 0),
    version             INTEGER NOT NULL CHECK (version > 0),
    updated_at          TEXT    NOT NULL,
    last_transaction_id TEXT,                      -- the ledger row that set this balance
    PRIMARY KEY (user_id, currency)
) WITHOUT ROWID;

-- The ledger is the audit trail: append-only, one row per committed transaction.
CREATE TABLE IF NOT EXISTS ledger (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order, used for paging
    transaction_id  TEXT    NOT NULL UNIQUE,
    user_id         TEXT    NOT NULL REFERENCES users (id),
    type            TEXT    NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'bet', 'win', 'rollback')),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    balance_after   INTEGER NOT NULL CHECK (balance_after >= 0),
    version         INTEGER NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    request_hash    TEXT    NOT NULL,              -- SHA-256 of the canonical request, for replay checks
    reference       TEXT,
    reverses        TEXT UNIQUE REFERENCES ledger (transaction_id), -- a bet is rolled back at most once
    posted_by       TEXT    NOT NULL REFERENCES users (id),
    created_at      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (user_id, seq);

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
