-- Balance schema for PostgreSQL (Balance:Store=Postgres): N identical nodes on one database. Applied at start under
-- an advisory lock, so nodes that start together create it once; every statement is idempotent. A database already
-- at this build's version is not touched again (re-applying takes table locks that would stall the running nodes), so
-- every change to this file bumps PostgresDatabase.SchemaVersion.
-- Money is bigint minor units. Timestamps are UTC ISO-8601 text with milliseconds, as in the SQLite schema: one
-- format for both engines, so answers are byte-identical and compare correctly as text.

-- Schema 2: the ledger's user_id and posted_by lost their foreign keys to users. A foreign key checks every inserted
-- row with SELECT … FOR KEY SHARE on the user's row: two row locks per posting, the operator's row locked by every
-- batch, and measured here as up to half the writer's throughput. What they guarded still holds: the writer reads the
-- posting's user and its poster inside the batch's transaction (the rules refuse a missing user or a poster who is
-- not an operator), and the triggers at the end refuse to delete, truncate or re-key a user and to change or delete
-- a ledger row, so no row can ever lose the users it names. (reverses keeps its foreign key: it is checked on
-- rollbacks only.) First in the script, and only while the keys exist: the drop locks ledger and users, and taken
-- after a statement that already holds a weaker lock on ledger it would deadlock with the batches of nodes still
-- running the old build.
--
-- Schema 3: an Idempotency-Key belongs to the operator who sent it. The ledger's UNIQUE (idempotency_key) across every
-- poster becomes the unique index ledger_by_key (posted_by, idempotency_key), below; dropped here, first, for the
-- same reason as the keys above. Every row is kept: keys unique across the ledger are unique per poster.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass('ledger') AND conname IN ('ledger_user_id_fkey', 'ledger_posted_by_fkey')) THEN
        ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_user_id_fkey, DROP CONSTRAINT IF EXISTS ledger_posted_by_fkey;
    END IF;
    IF EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass('ledger') AND conname = 'ledger_idempotency_key_key') THEN
        ALTER TABLE ledger DROP CONSTRAINT ledger_idempotency_key_key;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS schema_version (
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    password_hash text NOT NULL,                   -- ASP.NET Core PasswordHasher (PBKDF2)
    role          text NOT NULL CHECK (role IN ('player', 'operator')),
    created_at    text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (lower(username)); -- usernames are case-insensitive
-- Schema 3 (auth): usernames in their normal form, ASCII lower case (Auth/Users.cs); an operator may disable an account.
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at text;
UPDATE users SET username = lower(username) WHERE username <> lower(username) AND username ~ '^[A-Za-z0-9_.-]+$';
-- Schema 4: looked up by the normal form itself (`username = $1`, the same query as SQLite's), so by an index on it;
-- users_username above still keeps two spellings of one name out.
CREATE UNIQUE INDEX IF NOT EXISTS users_username_normal ON users (username);

-- One wallet per (player, currency). A batch first creates the wallets it touches (version 0: not yet posted to,
-- hidden from reads), then locks them all in sorted key order, so two nodes never wait on each other in a cycle.
CREATE TABLE IF NOT EXISTS wallets (
    user_id             uuid   NOT NULL REFERENCES users (id),
    currency            text   NOT NULL,
    balance             bigint NOT NULL CHECK (balance >= 0),
    version             bigint NOT NULL CHECK (version >= 0),
    updated_at          text   NOT NULL,
    last_transaction_id text,
    PRIMARY KEY (user_id, currency)
);

-- The ledger: append-only, one row per committed transaction, and the change log every node's feed reads.
-- `tx` is the writing transaction's id: a feed reads rows below the oldest transaction still running
-- (pg_snapshot_xmin), so a row that commits late is never skipped the way a plain `seq > last` cursor would.
CREATE TABLE IF NOT EXISTS ledger (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx              xid8   NOT NULL DEFAULT pg_current_xact_id(),
    transaction_id  text   NOT NULL UNIQUE,
    user_id         uuid   NOT NULL,                -- a user's id: users are never deleted (below), so no foreign key
    type            text   NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'bet', 'win', 'rollback')),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text   NOT NULL,
    balance_after   bigint NOT NULL CHECK (balance_after >= 0),
    version         bigint NOT NULL CHECK (version > 0),
    idempotency_key text   NOT NULL,                -- unique per poster: ledger_by_key
    request_hash    text   NOT NULL,                -- SHA-256 of the canonical request, for replay checks
    reference       text,
    reverses        text   UNIQUE REFERENCES ledger (transaction_id), -- a bet is rolled back at most once
    posted_by       uuid   NOT NULL,                -- the operator's id, as user_id
    created_at      text   NOT NULL,
    UNIQUE (user_id, currency, version)             -- versions stay contiguous whichever node wrote them
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (user_id, seq);
CREATE INDEX IF NOT EXISTS ledger_by_tx ON ledger (tx, seq);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_by_key ON ledger (posted_by, idempotency_key);


-- A login session (see balance.db.sql). `revoked_tx` is the transaction that ended it, set by the trigger below:
-- every node's feed reads revocations the way it reads the ledger, and closes that login's sockets too.
CREATE TABLE IF NOT EXISTS sessions (
    id                text PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id),
    created_at        text NOT NULL,
    expires_at        text NOT NULL,
    revoked_at        text,
    access_expires_at text,
    revoked_tx        xid8
);
CREATE INDEX IF NOT EXISTS sessions_by_revoked_tx ON sessions (revoked_tx) WHERE revoked_tx IS NOT NULL;

CREATE OR REPLACE FUNCTION sessions_revoked_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        NEW.revoked_tx := pg_current_xact_id();
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER sessions_revoked_tx BEFORE UPDATE OF revoked_at ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_revoked_tx();

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash  text PRIMARY KEY,
    session_id  text NOT NULL REFERENCES sessions (id),
    expires_at  text NOT NULL,
    used_at     text,
    replaced_by text
);
-- For the housekeeping job (Auth/Housekeeping.cs): expired tokens, and sessions with no token left.
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_session ON refresh_tokens (session_id);

-- Failed logins, shared by every node, so spreading guesses over nodes buys nothing. Since schema 3 a key is a
-- username at an address, an address, or a username (Auth/LoginThrottle.cs), and window_started_at is the time of
-- the last failure (Storage/Postgres/PostgresLoginFailures.cs); rows of the old per-username keys age out.
CREATE TABLE IF NOT EXISTS login_failures (
    username_key      text        PRIMARY KEY,
    window_started_at timestamptz NOT NULL,
    failures          integer     NOT NULL
);

-- Settings every node must agree on: in Development, the generated signing key.
CREATE TABLE IF NOT EXISTS settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);

-- A guard the writer's set-based statements call: a wallet that moved under its lock aborts the batch (40001), which
-- the writer runs again once, instead of a silent partial write.
CREATE OR REPLACE FUNCTION balance_assert(ok boolean, message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message; END IF;
END $$;

-- In place of the ledger's foreign keys to users (see the top of this file).
CREATE OR REPLACE FUNCTION balance_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = format('%s of %s refused: %s', TG_OP, TG_TABLE_NAME, TG_ARGV[0]);
END $$;
CREATE OR REPLACE TRIGGER users_never_deleted BEFORE DELETE OR UPDATE OF id OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION balance_refuse_change('users are never deleted or re-keyed: the ledger names them');
CREATE OR REPLACE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION balance_refuse_change('the ledger is append-only');
