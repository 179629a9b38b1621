-- Indexes for the filtered job list: newest first within a user's jobs of
-- one state or one name (GET /v1/jobs?state=...&name=...).
CREATE INDEX jobs_user_state ON jobs (user_id, state, id);
CREATE INDEX jobs_user_name ON jobs (user_id, name, id);
CREATE INDEX jobs_state ON jobs (state, id);
