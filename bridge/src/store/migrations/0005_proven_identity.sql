-- Issue #8: a bridge account maps to a Unix account only when an admin set
-- it or the user proved it (PAM). NULL unix_user now means "not mapped"
-- (it used to mean "the Unix account of the same name", which let anyone
-- who registered a name run jobs as that Unix account). Mappings set before
-- this migration were set by an admin (PATCH or `bridge user add`).
ALTER TABLE users ADD COLUMN unix_mapped_by TEXT CHECK (unix_mapped_by IN ('admin', 'pam'));
UPDATE users SET unix_mapped_by = 'admin' WHERE unix_user IS NOT NULL;

-- Login families whose access tokens are revoked (logout, refresh-token
-- reuse), until the last access token they may have issued expires.
CREATE TABLE revoked_families (
    family     TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
