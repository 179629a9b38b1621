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
