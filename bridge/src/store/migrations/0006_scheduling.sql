-- Issue #10: which policy routed and ordered each job, and why (JSON), and
-- the policy an admin set at run time (one row; absent: the config file's).
ALTER TABLE jobs ADD COLUMN routing TEXT;
ALTER TABLE jobs ADD COLUMN ordering TEXT;

CREATE TABLE policy (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    body   TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL
);

-- Retries: how many are left, on which failure classes (comma list), which
-- attempt runs now and when it was submitted; every ended attempt that a
-- retry followed or that failed for the infrastructure (node draining
-- counts these).
ALTER TABLE jobs ADD COLUMN retries_left INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_on TEXT NOT NULL DEFAULT 'infrastructure';
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retried_at REAL;

CREATE TABLE job_attempts (
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    attempt       INTEGER NOT NULL,
    slurm_job_id  INTEGER NOT NULL,
    nodes         TEXT,
    state         TEXT NOT NULL,
    reason        TEXT,
    failure_class TEXT,
    failure       TEXT,
    started_at    REAL,
    ended_at      REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_attempts_by_end ON job_attempts (ended_at) WHERE failure_class = 'infrastructure';
