//! Refresh-token families and revoked access tokens.

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, StoreError};

/// A stored refresh token, found by its hash.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub user_id: i64,
    pub family: String,
    pub expires_at: f64,
    pub used: bool,
    pub revoked: bool,
}

pub fn insert_refresh(
    conn: &Connection,
    token_hash: &str,
    user_id: i64,
    family: &str,
    expires_at: f64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, family, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, user_id, family, now(), expires_at],
    )?;
    Ok(())
}

pub fn find_refresh(conn: &Connection, token_hash: &str) -> Result<Option<RefreshToken>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT user_id, family, expires_at, used_at IS NOT NULL, revoked_at IS NOT NULL
             FROM refresh_tokens WHERE token_hash = ?1",
            [token_hash],
            |row| {
                Ok(RefreshToken {
                    user_id: row.get(0)?,
                    family: row.get(1)?,
                    expires_at: row.get(2)?,
                    used: row.get(3)?,
                    revoked: row.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Marks a token used; false if it already was (a concurrent rotation won).
pub fn mark_used(conn: &Connection, token_hash: &str) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND revoked_at IS NULL",
        params![now(), token_hash],
    )?;
    Ok(changed == 1)
}

pub fn revoke_family(conn: &Connection, family: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?1 WHERE family = ?2 AND revoked_at IS NULL",
        params![now(), family],
    )?;
    Ok(())
}

/// Every login family a user has had (to revoke their access tokens too).
pub fn families_of(conn: &Connection, user_id: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT family FROM refresh_tokens WHERE user_id = ?1")?;
    let families = stmt.query_map([user_id], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(families)
}

/// Revokes every refresh token of a user (disabled account, logout).
pub fn revoke_user(conn: &Connection, user_id: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
        params![now(), user_id],
    )?;
    Ok(())
}

pub fn revoke_access(conn: &Connection, jti: &str, expires_at: f64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2) ON CONFLICT (jti) DO NOTHING",
        params![jti, expires_at],
    )?;
    Ok(())
}

pub fn revoke_access_family(conn: &Connection, family: &str, expires_at: f64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO revoked_families (family, expires_at) VALUES (?1, ?2)
         ON CONFLICT (family) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
        params![family, expires_at],
    )?;
    Ok(())
}

/// Revoked access tokens and login families that still matter (loaded at
/// start-up), each with its expiry; expired ones are deleted, since the
/// tokens they covered fail their signature check anyway.
#[allow(clippy::type_complexity)]
pub fn live_revocations(conn: &Connection) -> Result<(Vec<(String, f64)>, Vec<(String, f64)>), StoreError> {
    let now = now();
    conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])?;
    conn.execute("DELETE FROM revoked_families WHERE expires_at < ?1", [now])?;
    let pairs = |sql: &str| -> Result<Vec<(String, f64)>, StoreError> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    };
    Ok((
        pairs("SELECT jti, expires_at FROM revoked_tokens")?,
        pairs("SELECT family, expires_at FROM revoked_families")?,
    ))
}
