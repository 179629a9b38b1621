-- Issue #15: accounts that sign in through a configured OpenID provider.
-- A Unix mapping may now also come from the provider's claim ('oidc'):
-- SQLite cannot change a CHECK, so `users` is rebuilt with the same rows
-- (ids kept; `migrate` runs this with foreign keys off and checks every
-- reference before the commit).
CREATE TABLE users_new (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    unix_user      TEXT,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL,
    unix_mapped_by TEXT CHECK (unix_mapped_by IN ('admin', 'pam', 'oidc'))
);
INSERT INTO users_new (id, name, password_hash, role, unix_user, disabled, created_at, unix_mapped_by)
    SELECT id, name, password_hash, role, unix_user, disabled, created_at, unix_mapped_by FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

-- Which provider identity (issuer, subject) an account belongs to. Only
-- that identity signs in to it: a provider's username claim never takes
-- over an account of the same name.
CREATE TABLE oidc_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    INTEGER NOT NULL UNIQUE REFERENCES users (id),
    created_at REAL NOT NULL,
    PRIMARY KEY (issuer, subject)
);
