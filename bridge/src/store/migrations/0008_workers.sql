-- Issue #11: machines that join the cluster as workers over mutual TLS.
-- A join token is kept only as its SHA-256; using it is one UPDATE that
-- succeeds once.
CREATE TABLE worker_tokens (
    token_hash TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    features TEXT NOT NULL,          -- JSON array of node features
    used_at REAL,
    used_by TEXT                     -- the worker that joined with it
);

-- One row per worker name; a rejoin under the same name reuses it.
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    features TEXT NOT NULL,          -- JSON array
    joined_at REAL NOT NULL,
    state TEXT NOT NULL,             -- joined | leaving | left
    leave_requested INTEGER NOT NULL DEFAULT 0,
    left_at REAL,
    heartbeat_at REAL,
    load REAL,
    free_memory_bytes INTEGER,
    slurmd_running INTEGER
);

-- Every certificate the cluster CA issued to a worker, by the SHA-256 of
-- its DER: the mutual-TLS endpoint finds the caller here on every request,
-- so revocation takes effect at once.
CREATE TABLE worker_certificates (
    fingerprint TEXT PRIMARY KEY,
    worker TEXT NOT NULL REFERENCES workers (name),
    serial TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    revoked_why TEXT
);
CREATE INDEX worker_certificates_worker ON worker_certificates (worker);
