//! The bridge's durable state in SQLite (rusqlite only; nothing here knows
//! HTTP or SLURM). Calls go through `Store::call`, which runs the closure
//! off the async workers (`crate::blocking`: in place on the bridge's
//! multi-threaded runtime) under a `std::sync::Mutex`: rusqlite blocks, and
//! the lock is never held across an `.await` (mini-redis `db.rs`).

pub mod health;
pub mod jobs;
pub mod policy;
pub mod tokens;
pub mod users;
pub mod workers;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_indexes.sql"),
    include_str!("migrations/0003_health.sql"),
    include_str!("migrations/0004_kernel_results.sql"),
    include_str!("migrations/0005_proven_identity.sql"),
    include_str!("migrations/0006_scheduling.sql"),
    include_str!("migrations/0007_ended_index.sql"),
    include_str!("migrations/0008_workers.sql"),
    include_str!("migrations/0009_oidc.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task: {0}")]
    Task(String),
    #[error("database file {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Cheap to clone: every clone shares the same connections. One connection
/// writes; reads spread over a few read-only ones, which WAL lets run
/// beside the writer and each other.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
}

/// Read connections: enough to keep both cores of a small machine and the
/// blocking pool busy without holding many file handles.
const READERS: usize = 4;

/// Seconds since the Unix epoch, as stored in every time column.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Runs `f` off the async workers (`crate::blocking`).
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    crate::blocking::run(f).await.map_err(|e| StoreError::Task(format!("a store call panicked: {e}")))?
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // WAL lets readers proceed during writes and survives a crash between
        // them; NORMAL sync is durable at every checkpoint and safe in WAL.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        migrate(&mut conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path).map_err(open_err)?;
            reader.pragma_update(None, "query_only", "ON").map_err(open_err)?;
            reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Store { conn: Arc::new(Mutex::new(conn)), readers: Arc::new(readers), next_reader: Default::default() })
    }

    /// Runs a read-only `f` on one of the read connections, on the blocking
    /// pool (`blocking::pooled`: many reads at once keep the async workers
    /// free). It sees every write committed before it starts.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        crate::blocking::pooled(move || {
            // A free connection if there is one, else wait for the next in turn.
            let n = readers.len();
            let guard = (0..n)
                .find_map(|i| readers[(start + i) % n].try_lock().ok())
                .unwrap_or_else(|| readers[start % n].lock().unwrap_or_else(|e| e.into_inner()));
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Task(format!("a store read panicked: {e}")))?
    }

    /// Runs `f` with the write connection, off the async workers.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        blocking(move || {
            // A panic in an earlier closure poisons the lock; the connection
            // itself is still sound (every write is a transaction).
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
    }

    /// A consistent copy of the live database at `dest` (SQLite online backup).
    /// Whether the database takes writes now: a write transaction that
    /// changes nothing still needs the write lock and a writable file (the
    /// cheapest honest check, for `/readyz`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.call(|conn| Ok(conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?)).await
    }

    pub async fn backup(&self, dest: std::path::PathBuf) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.backup(rusqlite::DatabaseName::Main, &dest, None)?;
            // The copy inherits WAL mode; a backup is one self-contained
            // file, so it gets a rollback journal (no -wal or -shm beside it,
            // whoever opens it later).
            let copy = Connection::open(&dest)?;
            copy.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

/// Checks that `path` holds a database this bridge can serve: SQLite's
/// integrity check passes, it has the bridge's tables, and its schema
/// version is one this bridge knows (an older one is migrated forward at
/// the next start). Returns that version.
pub fn check_backup(path: &Path) -> Result<usize, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!("{} fails SQLite's integrity check: {verdict}", path.display())));
    }
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let jobs: i64 =
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'", [], |r| r.get(0))?;
    if version == 0 || jobs == 0 {
        return Err(StoreError::Corrupt(format!("{} is not a bridge database", path.display())));
    }
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "{} has schema version {version}, newer than this bridge knows ({})",
            path.display(),
            MIGRATIONS.len()
        )));
    }
    Ok(version)
}

/// Replaces the content of the database at `db` with `from`'s, through
/// SQLite's backup API (page by page, honouring the WAL). No bridge may be
/// serving `db` (`lock::DataDirLock`); check `from` first (`check_backup`).
pub fn restore(db: &Path, from: &Path) -> Result<(), StoreError> {
    let mut conn = Connection::open(db)?;
    conn.restore(rusqlite::DatabaseName::Main, from, None::<fn(rusqlite::backup::Progress)>)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "schema version {applied} is newer than this bridge knows ({})",
            MIGRATIONS.len()
        )));
    }
    // SQLite's procedure for changing a table others refer to: foreign keys
    // off (only possible outside a transaction), the change, then every
    // reference checked before the commit (sqlite.org/lang_altertable.html).
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = (|| {
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            let dangling: usize =
                tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| row.get(0))?;
            if dangling > 0 {
                return Err(StoreError::Corrupt(format!(
                    "migration {} leaves {dangling} rows referring to missing rows",
                    idx + 1
                )));
            }
            tx.pragma_update(None, "user_version", idx + 1)?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 9 rebuilds `users`; rows that refer to it survive, and the
    /// new mapping kind is accepted.
    #[test]
    fn the_users_rebuild_keeps_every_row_that_refers_to_an_account() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, name, password_hash, role, unix_user, unix_mapped_by, created_at)
                 VALUES (7, 'alice', 'x', 'user', 'alice', 'pam', 1);
             INSERT INTO refresh_tokens (token_hash, user_id, family, issued_at, expires_at) VALUES ('h', 7, 'f', 1, 2);
             INSERT INTO jobs (user_id, tag, name, state, submitted_at, spec, script, unix_user, uid)
                 VALUES (7, 't', 'j', 'PENDING', 1, '{}', '', 'alice', 2001);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT count(*) FROM jobs WHERE user_id = 7"), 1);
        assert_eq!(count("SELECT count(*) FROM refresh_tokens WHERE user_id = 7"), 1);
        assert_eq!(count("SELECT count(*) FROM users WHERE id = 7 AND unix_mapped_by = 'pam'"), 1);
        let foreign_keys: i64 = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0)).unwrap();
        assert_eq!(foreign_keys, 1, "foreign keys are enforced again after migrating");
        conn.execute("UPDATE users SET unix_mapped_by = 'oidc' WHERE id = 7", []).unwrap();
        assert!(conn.execute("UPDATE users SET unix_mapped_by = 'claimed' WHERE id = 7", []).is_err());
        // A job of a missing account is still refused.
        assert!(conn
            .execute(
                "INSERT INTO jobs (user_id, tag, name, state, submitted_at, spec, script, unix_user, uid)
                 VALUES (99, 't2', 'j', 'PENDING', 1, '{}', '', 'alice', 2001)",
                [],
            )
            .is_err());
    }
}
