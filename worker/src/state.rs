//! What a joined worker keeps in its directory: key.pem (0600), cert.pem,
//! ca.pem and worker.json. The SPANK plugin takes cert.pem's presence as
//! "this machine is a joined worker; the agent delivers".

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// The bridge's worker endpoint (mutual TLS).
    pub endpoint: String,
    pub serial: String,
    pub issued_at: f64,
    pub expires_at: f64,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub dir: PathBuf,
    pub record: Record,
}

pub fn write(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

impl Worker {
    pub fn load(dir: &Path) -> anyhow::Result<Worker> {
        let path = dir.join("worker.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("this machine has not joined ({} is missing; run `odyssey-worker join`)", path.display())
        })?;
        let record = serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
        Ok(Worker { dir: dir.to_owned(), record })
    }

    pub fn save(
        dir: &Path,
        record: &Record,
        key_pem: Option<&str>,
        cert_pem: &str,
        ca_pem: &str,
    ) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        if let Some(key) = key_pem {
            write(&dir.join("key.pem"), key.as_bytes(), 0o600)?;
        }
        write(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
        write(&dir.join("worker.json"), serde_json::to_string_pretty(record)?.as_bytes(), 0o644)?;
        // Last: its presence means "joined" to the plugin.
        write(&dir.join("cert.pem"), cert_pem.as_bytes(), 0o644)?;
        Ok(Worker { dir: dir.to_owned(), record: record.clone() })
    }

    pub fn read(&self, file: &str) -> anyhow::Result<String> {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    }

    /// The worker left: its key and certificate go (the bridge revoked the
    /// certificate); worker.json stays as a record of what it was.
    pub fn forget(&self) {
        for file in ["cert.pem", "key.pem"] {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
    }

    pub fn pid_file(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}.pid"))
    }
}
