//! Health records delivered by the SPANK plugin, stored as they arrived
//! (JSON) beside the columns the bridge looks them up by.

use odyssey_health_wire::records::{NodeRecord, Record};
use rusqlite::{params, Connection};

use super::{now, StoreError};

/// Inserts records not seen before (by id); returns (inserted, duplicates).
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
            let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(format!("health record: {e}")))?;
            inserted +=
                stmt.execute(params![r.id(), r.job_id(), r.step(), r.node(), r.kind(), body, r.at(), received_at])?;
        }
    }
    tx.commit()?;
    Ok((inserted, records.len() - inserted))
}

/// A stored body that no longer reads as a record (written by another
/// version) is left out and logged, not an error of the whole answer.
fn decode(id_hint: &str, body: &str) -> Option<Record> {
    serde_json::from_str(body)
        .map_err(|e| tracing::warn!(record = id_hint, error = %e, "stored health record does not parse"))
        .ok()
}

/// Every record of a SLURM job written at or after `since` (the bridge
/// job's submission: SLURM ids are reused after a controller reset, and an
/// older job's records must not join a newer one), oldest first.
pub fn for_job(conn: &Connection, slurm_job_id: i64, since: f64) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, body FROM health_records WHERE slurm_job_id = ?1 AND at >= ?2 ORDER BY at, id")?;
    let rows = stmt
        .query_map(params![slurm_job_id, since], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.iter().filter_map(|(id, body)| decode(id, body)).collect())
}

/// The latest node record of each node, with when it was made.
pub fn latest_per_node(conn: &Connection) -> Result<Vec<(NodeRecord, f64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, body, MAX(at) FROM health_records WHERE kind = 'node' GROUP BY node ORDER BY node",
    )?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, f64>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .iter()
        .filter_map(|(id, body, at)| match decode(id, body)? {
            Record::Node(node) => Some((node, *at)),
            Record::Task(_) => None,
        })
        .collect())
}
