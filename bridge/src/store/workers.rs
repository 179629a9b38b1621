//! Workers (machines that joined over mutual TLS), their one-time join
//! tokens and the certificates the cluster CA issued them.

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, StoreError};

/// Why a join token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("the join token is not one this bridge issued")]
    Unknown,
    #[error("the join token was already used (a token admits one worker, once)")]
    Used,
    #[error("the join token has expired")]
    Expired,
}

/// Why a worker may not take a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRefused {
    #[error("a worker named {0:?} is in the cluster; a name belongs to one worker at a time")]
    Taken(String),
}

/// A certificate to record with the worker it names.
#[derive(Debug, Clone)]
pub struct Issued {
    pub fingerprint: String,
    pub serial: String,
    pub expires_at: f64,
}

/// A worker as stored.
#[derive(Debug, Clone)]
pub struct Worker {
    pub name: String,
    pub features: Vec<String>,
    pub joined_at: f64,
    /// `joined`, `leaving` or `left`.
    pub state: String,
    pub leave_requested: bool,
    pub left_at: Option<f64>,
    pub heartbeat_at: Option<f64>,
    pub load: Option<f64>,
    pub free_memory_bytes: Option<i64>,
    pub slurmd_running: Option<bool>,
    /// The newest certificate: serial and expiry.
    pub serial: Option<String>,
    pub cert_expires_at: Option<f64>,
}

/// What the mutual-TLS endpoint learns about a caller's certificate.
#[derive(Debug, Clone)]
pub struct CertificateOwner {
    pub worker: String,
    pub revoked: bool,
    pub expires_at: f64,
}

pub fn insert_token(
    conn: &Connection,
    token_hash: &str,
    created_by: &str,
    expires_at: f64,
    features: &[String],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO worker_tokens (token_hash, created_by, created_at, expires_at, features) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, created_by, now(), expires_at, json(features)],
    )?;
    Ok(())
}

fn json(features: &[String]) -> String {
    serde_json::to_string(features).unwrap_or_else(|_| "[]".into())
}

fn features(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("worker features {text:?}: {e}")))
}

/// Uses a join token for `name` and records the worker and its first
/// certificate, all in one transaction: a token admits one worker, and a
/// name belongs to one worker that has not left, unless `may_replace`
/// says that one is lost (its certificates are then revoked).
/// Returns the node features the token grants.
pub fn join(
    conn: &mut Connection,
    token_hash: &str,
    name: &str,
    extra_features: &[String],
    cert: &Issued,
    may_replace: impl FnOnce(&Worker) -> bool,
) -> Result<Result<Vec<String>, JoinRefused>, StoreError> {
    let tx = conn.transaction()?;
    let token: Option<(f64, Option<f64>, String)> = tx
        .query_row(
            "SELECT expires_at, used_at, features FROM worker_tokens WHERE token_hash = ?1",
            [token_hash],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let granted = match token {
        None => return Ok(Err(JoinRefused::Token(TokenRefused::Unknown))),
        Some((_, Some(_), _)) => return Ok(Err(JoinRefused::Token(TokenRefused::Used))),
        Some((expires_at, None, _)) if expires_at <= now() => {
            return Ok(Err(JoinRefused::Token(TokenRefused::Expired)))
        }
        Some((_, None, features_json)) => features(&features_json)?,
    };
    if let Some(existing) = get_in(&tx, name)? {
        if existing.state != "left" {
            if !may_replace(&existing) {
                return Ok(Err(JoinRefused::Name(NameRefused::Taken(name.to_owned()))));
            }
            tx.execute(
                "UPDATE worker_certificates SET revoked_at = ?1, revoked_why = 'replaced by a rejoin'
                 WHERE worker = ?2 AND revoked_at IS NULL",
                params![now(), name],
            )?;
        }
    }
    let mut all = granted.clone();
    for f in extra_features {
        if !all.contains(f) {
            all.push(f.clone());
        }
    }
    tx.execute(
        "UPDATE worker_tokens SET used_at = ?1, used_by = ?2 WHERE token_hash = ?3 AND used_at IS NULL",
        params![now(), name, token_hash],
    )?;
    tx.execute(
        "INSERT INTO workers (name, features, joined_at, state) VALUES (?1, ?2, ?3, 'joined')
         ON CONFLICT (name) DO UPDATE SET features = excluded.features, joined_at = excluded.joined_at,
           state = 'joined', leave_requested = 0, left_at = NULL, heartbeat_at = NULL, load = NULL,
           free_memory_bytes = NULL, slurmd_running = NULL",
        params![name, json(&all), now()],
    )?;
    insert_cert_in(&tx, name, cert)?;
    tx.commit()?;
    Ok(Ok(all))
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error(transparent)]
    Token(TokenRefused),
    #[error(transparent)]
    Name(NameRefused),
}

fn insert_cert_in(conn: &Connection, name: &str, cert: &Issued) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO worker_certificates (fingerprint, worker, serial, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![cert.fingerprint, name, cert.serial, now(), cert.expires_at],
    )?;
    Ok(())
}

/// A renewed certificate replaces the one the worker called with, which is
/// revoked in the same transaction.
pub fn renew(conn: &mut Connection, name: &str, old_fingerprint: &str, cert: &Issued) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_cert_in(&tx, name, cert)?;
    tx.execute(
        "UPDATE worker_certificates SET revoked_at = ?1, revoked_why = 'renewed' WHERE fingerprint = ?2 AND revoked_at IS NULL",
        params![now(), old_fingerprint],
    )?;
    tx.commit()?;
    Ok(())
}

pub fn certificate_owner(conn: &Connection, fingerprint: &str) -> Result<Option<CertificateOwner>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT worker, revoked_at IS NOT NULL, expires_at FROM worker_certificates WHERE fingerprint = ?1",
            [fingerprint],
            |row| Ok(CertificateOwner { worker: row.get(0)?, revoked: row.get(1)?, expires_at: row.get(2)? }),
        )
        .optional()?)
}

const WORKER_COLUMNS: &str = "w.name, w.features, w.joined_at, w.state, w.leave_requested, w.left_at, w.heartbeat_at,
    w.load, w.free_memory_bytes, w.slurmd_running,
    (SELECT serial FROM worker_certificates c WHERE c.worker = w.name ORDER BY issued_at DESC LIMIT 1),
    (SELECT expires_at FROM worker_certificates c WHERE c.worker = w.name ORDER BY issued_at DESC LIMIT 1)";

fn worker_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Worker, String)> {
    Ok((
        Worker {
            name: row.get(0)?,
            features: Vec::new(),
            joined_at: row.get(2)?,
            state: row.get(3)?,
            leave_requested: row.get(4)?,
            left_at: row.get(5)?,
            heartbeat_at: row.get(6)?,
            load: row.get(7)?,
            free_memory_bytes: row.get(8)?,
            slurmd_running: row.get(9)?,
            serial: row.get(10)?,
            cert_expires_at: row.get(11)?,
        },
        row.get(1)?,
    ))
}

fn with_features((mut worker, text): (Worker, String)) -> Result<Worker, StoreError> {
    worker.features = features(&text)?;
    Ok(worker)
}

fn get_in(conn: &Connection, name: &str) -> Result<Option<Worker>, StoreError> {
    conn.query_row(&format!("SELECT {WORKER_COLUMNS} FROM workers w WHERE w.name = ?1"), [name], worker_row)
        .optional()?
        .map(with_features)
        .transpose()
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Worker>, StoreError> {
    get_in(conn, name)
}

/// Every worker, by name.
pub fn list(conn: &Connection) -> Result<Vec<Worker>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {WORKER_COLUMNS} FROM workers w ORDER BY w.name"))?;
    let rows = stmt.query_map([], worker_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(with_features).collect()
}

/// A heartbeat; returns whether an admin asked the worker to leave.
pub fn heartbeat(
    conn: &Connection,
    name: &str,
    load: Option<f64>,
    free_memory_bytes: Option<i64>,
    slurmd_running: bool,
) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE workers SET heartbeat_at = ?1, load = ?2, free_memory_bytes = ?3, slurmd_running = ?4 WHERE name = ?5",
        params![now(), load, free_memory_bytes, slurmd_running, name],
    )?;
    Ok(conn
        .query_row("SELECT leave_requested FROM workers WHERE name = ?1", [name], |row| row.get(0))
        .optional()?
        .unwrap_or(false))
}

/// An admin asks a worker to leave (it does at its next heartbeat).
pub fn request_leave(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE workers SET leave_requested = 1 WHERE name = ?1 AND state != 'left'", [name])? == 1)
}

pub fn set_leaving(conn: &Connection, name: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE workers SET state = 'leaving' WHERE name = ?1 AND state = 'joined'", [name])?;
    Ok(())
}

/// The worker is gone from SLURM: every certificate of it is revoked.
pub fn set_left(conn: &mut Connection, name: &str, why: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let at = now();
    tx.execute(
        "UPDATE workers SET state = 'left', left_at = ?1, leave_requested = 0 WHERE name = ?2",
        params![at, name],
    )?;
    tx.execute(
        "UPDATE worker_certificates SET revoked_at = ?1, revoked_why = ?2 WHERE worker = ?3 AND revoked_at IS NULL",
        params![at, why, name],
    )?;
    tx.commit()?;
    Ok(())
}

/// Names of workers that have not left: their health records come only
/// over mutual TLS, never with the cluster's shared secret.
pub fn present_names(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM workers WHERE state != 'left'")?;
    let names = stmt.query_map([], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let dir = std::env::temp_dir().join(format!(
            "workers-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        drop(super::super::Store::open(&path).unwrap());
        Connection::open(path).unwrap()
    }

    fn cert(n: u8) -> Issued {
        Issued { fingerprint: format!("fp{n}"), serial: format!("s{n}"), expires_at: now() + 3600.0 }
    }

    #[test]
    fn a_token_admits_one_worker_once_and_a_name_one_worker() {
        let mut conn = store();
        insert_token(&conn, "t1", "admin", now() + 60.0, &["gpu".into()]).unwrap();
        insert_token(&conn, "t2", "admin", now() + 60.0, &[]).unwrap();
        insert_token(&conn, "old", "admin", now() - 1.0, &[]).unwrap();
        let granted = join(&mut conn, "t1", "w1", &["big".into()], &cert(1), |_| false).unwrap().unwrap();
        assert_eq!(granted, vec!["gpu".to_owned(), "big".to_owned()]);
        let again = join(&mut conn, "t1", "w9", &[], &cert(2), |_| false).unwrap();
        assert_eq!(again, Err(JoinRefused::Token(TokenRefused::Used)));
        let expired = join(&mut conn, "old", "w9", &[], &cert(2), |_| false).unwrap();
        assert_eq!(expired, Err(JoinRefused::Token(TokenRefused::Expired)));
        let unknown = join(&mut conn, "nope", "w9", &[], &cert(2), |_| false).unwrap();
        assert_eq!(unknown, Err(JoinRefused::Token(TokenRefused::Unknown)));
        // w1 is present: its name is refused, and the token stays unused.
        let taken = join(&mut conn, "t2", "w1", &[], &cert(2), |_| false).unwrap();
        assert_eq!(taken, Err(JoinRefused::Name(NameRefused::Taken("w1".into()))));
        assert!(certificate_owner(&conn, "fp2").unwrap().is_none());
        // A lost worker's name may be taken over; its certificate is revoked.
        join(&mut conn, "t2", "w1", &[], &cert(2), |_| true).unwrap().unwrap();
        assert!(certificate_owner(&conn, "fp1").unwrap().unwrap().revoked);
        assert!(!certificate_owner(&conn, "fp2").unwrap().unwrap().revoked);
        set_left(&mut conn, "w1", "left").unwrap();
        assert!(certificate_owner(&conn, "fp2").unwrap().unwrap().revoked);
        assert_eq!(get(&conn, "w1").unwrap().unwrap().state, "left");
        assert!(present_names(&conn).unwrap().is_empty());
    }
}
