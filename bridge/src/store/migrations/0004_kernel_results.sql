-- Kernel jobs (odyssey-mpi) and their collated results. result_path is set
-- at submission (with %j for the SLURM id); when the job has finished, the
-- poller fills either result (rank 0's JSON, with result_verified) or
-- result_error (why there is none, or why it failed verification).
ALTER TABLE jobs ADD COLUMN result_path TEXT;
ALTER TABLE jobs ADD COLUMN result TEXT;
ALTER TABLE jobs ADD COLUMN result_verified INTEGER;
ALTER TABLE jobs ADD COLUMN result_error TEXT;
-- The poller's work list: finished kernel jobs not yet collated.
CREATE INDEX jobs_uncollated ON jobs (id)
    WHERE result_path IS NOT NULL AND result IS NULL AND result_error IS NULL;
