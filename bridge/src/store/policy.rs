//! The scheduling policy an admin set at run time (one row).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, StoreError};
use crate::scheduling::Policy;

/// The stored policy, who set it and when; None if none was ever set.
pub fn load(conn: &Connection) -> Result<Option<(Policy, String, f64)>, StoreError> {
    let row: Option<(String, String, f64)> = conn
        .query_row("SELECT body, set_by, set_at FROM policy WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    row.map(|(body, by, at)| {
        serde_json::from_str(&body)
            .map(|policy| (policy, by, at))
            .map_err(|e| StoreError::Corrupt(format!("stored policy: {e}")))
    })
    .transpose()
}

pub fn save(conn: &Connection, policy: &Policy, set_by: &str) -> Result<f64, StoreError> {
    let body = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let at = now();
    conn.execute(
        "INSERT INTO policy (id, body, set_by, set_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body, set_by = excluded.set_by, set_at = excluded.set_at",
        params![body, set_by, at],
    )?;
    Ok(at)
}
