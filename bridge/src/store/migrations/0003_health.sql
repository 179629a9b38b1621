-- Health records from the SPANK plugin, one row per record id: a record
-- delivered twice is stored once (delivery is at least once; this makes it
-- exactly once in effect).
CREATE TABLE health_records (
    id           TEXT PRIMARY KEY,
    slurm_job_id INTEGER NOT NULL,
    step         TEXT NOT NULL,
    node         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('task', 'node')),
    body         TEXT NOT NULL,
    at           REAL NOT NULL,
    received_at  REAL NOT NULL
);
CREATE INDEX health_records_job ON health_records (slurm_job_id);
CREATE INDEX health_records_node ON health_records (node, kind, at);
