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

/// Jobs that asked for health reports, ended between `from` and `to` on
/// nodes, and have no node record since their (latest) submission: the
/// plugin writes one for every step, the batch step included, before it
/// sends anything, so such a job's batch host owes one. Each job's SLURM
/// node list.
pub fn missing_reports(conn: &Connection, from: f64, to: f64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.nodes FROM jobs j
          WHERE j.ended_at >= ?1 AND j.ended_at < ?2 AND j.nodes IS NOT NULL AND j.nodes != ''
            AND j.slurm_job_id IS NOT NULL
            AND json_extract(j.spec, '$.health_report') IN (1, 'summary', 'full')
            AND NOT EXISTS (SELECT 1 FROM health_records h
                             WHERE h.slurm_job_id = j.slurm_job_id AND h.kind = 'node'
                               AND h.at >= COALESCE(j.retried_at, j.submitted_at) - 1)
          ORDER BY j.ended_at",
    )?;
    let rows = stmt.query_map(params![from, to], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
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

#[cfg(test)]
mod tests {
    use odyssey_health_wire::records::Known;

    use super::*;
    use crate::job_state::JobState;
    use crate::store::jobs::{self, tests::job_with_spec, tests::seen};

    /// A job that asked for reports and ended without its node record is
    /// owed by its nodes until one arrives; jobs that did not ask, and jobs
    /// that ended too recently or too long ago, owe nothing.
    #[test]
    fn a_job_owes_its_node_record_until_it_arrives() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let user =
            crate::store::users::create(&conn, "alice", "x", crate::store::users::Role::User, None).unwrap().unwrap();
        let asked = job_with_spec(&mut conn, user.id, "a", serde_json::json!({"health_report": "summary"}));
        let silent = job_with_spec(&mut conn, user.id, "b", serde_json::json!({"health_report": false}));
        let also = job_with_spec(&mut conn, user.id, "c", serde_json::json!({"health_report": true}));
        for (id, slurm_id) in [(asked, 11), (silent, 12), (also, 13)] {
            jobs::set_slurm_id(&mut conn, id, slurm_id).unwrap();
        }
        let ended = |at: f64| jobs::Observation {
            nodes: Some("c[2-3]".into()),
            ended_at: Some(at),
            ..seen(JobState::Completed, None)
        };
        let t = now();
        jobs::observe(&mut conn, &[(asked, ended(t - 600.0)), (silent, ended(t - 600.0)), (also, ended(t - 10.0))])
            .unwrap();
        assert_eq!(missing_reports(&conn, t - 3600.0, t - 300.0).unwrap(), ["c[2-3]"]);
        assert!(missing_reports(&conn, t - 3600.0, t - 700.0).unwrap().is_empty(), "ended after the window");

        let record = Record::Node(NodeRecord {
            id: "r1".into(),
            job_id: 11,
            step_id: 0,
            node: "c2".into(),
            load: Known::unknown("test"),
            mem_available_bytes: Known::unknown("test"),
            workdir_free_bytes: Known::unknown("test"),
            step_start: t - 700.0,
            step_end: t - 600.0,
            tasks: 1,
            tasks_ok: 1,
            // Written after the submission (the test recorded it at `t`).
            at: t,
        });
        insert(&mut conn, &[record]).unwrap();
        assert!(missing_reports(&conn, t - 3600.0, t - 300.0).unwrap().is_empty());
    }
}
