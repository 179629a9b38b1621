//! Health records delivered by the SPANK plugin.

use rusqlite::{params, Connection};

use super::{now, StoreError};

/// One record as received: the fields the bridge indexes, and the whole
/// record as JSON.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub slurm_job_id: i64,
    pub step: String,
    pub node: String,
    pub kind: String,
    pub body: serde_json::Value,
    pub at: f64,
}

/// Inserts records not seen before; returns (inserted, duplicates).
pub fn insert(conn: &mut Connection, records: &[Record]) -> Result<(usize, usize), StoreError> {
    let tx = conn.transaction()?;
    let mut inserted = 0;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO health_records (id, slurm_job_id, step, node, kind, body, at, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        )?;
        let received_at = now();
        for r in records {
            inserted += stmt.execute(params![
                r.id,
                r.slurm_job_id,
                r.step,
                r.node,
                r.kind,
                r.body.to_string(),
                r.at,
                received_at
            ])?;
        }
    }
    tx.commit()?;
    Ok((inserted, records.len() - inserted))
}

/// Every record of a SLURM job written at or after `since` (the bridge
/// job's submission: SLURM ids are reused after a controller reset, and an
/// older job's records must not join a newer one), oldest first.
pub fn for_job(conn: &Connection, slurm_job_id: i64, since: f64) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT body FROM health_records WHERE slurm_job_id = ?1 AND at >= ?2 ORDER BY at, id")?;
    let rows = stmt
        .query_map(params![slurm_job_id, since], |row| row.get::<_, String>(0))?
        .map(|body| Ok(serde_json::from_str(&body?).unwrap_or(serde_json::Value::Null)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(rows)
}

/// The latest node record of each node, with when it was received.
pub fn latest_per_node(conn: &Connection) -> Result<Vec<(String, serde_json::Value, f64)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT node, body, MAX(at) FROM health_records WHERE kind = 'node' GROUP BY node")?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, f64>(2)?)))?
        .map(|r| {
            let (node, body, at) = r?;
            Ok((node, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null), at))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(rows)
}
