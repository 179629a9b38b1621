-- Cloud Odyssey bridge schema, version 1. Times are Unix seconds (REAL).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    -- The Unix account jobs run as; NULL means the account of the same name.
    unix_user     TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);

-- Refresh tokens are stored only as SHA-256 hashes. Each login starts a
-- family; a rotation marks the old token used. Presenting a used token
-- again revokes the whole family (RFC 9700 section 4.14.2).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    family     TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL,
    revoked_at REAL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- Access tokens revoked before they expire (logout), by JWT id.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    -- Set once sbatch answers; NULL while the submission is in flight.
    slurm_job_id    INTEGER UNIQUE,
    -- Carried to SLURM in --comment so a submission whose reply was lost
    -- can be found again at start-up.
    tag             TEXT NOT NULL UNIQUE,
    idempotency_key TEXT,
    request_hash    TEXT,
    name            TEXT NOT NULL,
    partition       TEXT,
    state           TEXT NOT NULL,
    reason          TEXT,
    exit_code       INTEGER,
    signal          INTEGER,
    nodes           TEXT,
    submitted_at    REAL NOT NULL,
    started_at      REAL,
    ended_at        REAL,
    spec            TEXT NOT NULL,
    script          TEXT NOT NULL,
    stdout_path     TEXT,
    stderr_path     TEXT,
    unix_user       TEXT NOT NULL,
    uid             INTEGER NOT NULL,
    finished        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX jobs_user_id ON jobs (user_id, id);
CREATE INDEX jobs_unfinished ON jobs (finished) WHERE finished = 0;

CREATE TABLE job_events (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    seq    INTEGER NOT NULL,
    at     REAL NOT NULL,
    state  TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (job_id, seq)
);
