//! Where `odyssey login` keeps the bridge's URL and the tokens:
//! `$XDG_CONFIG_HOME/odyssey/credentials.json` (else `~/.config/...`), a
//! 0600 file in a 0700 directory, replaced atomically. `ODYSSEY_CONFIG_DIR`
//! overrides the directory (tests, several identities).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub name: String,
    pub access_token: String,
    /// Unix time after which the access token is refreshed before use.
    pub access_expires_at: f64,
    pub refresh_token: String,
}

pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ODYSSEY_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(base) if !base.is_empty() => PathBuf::from(base),
        _ => {
            PathBuf::from(std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?).join(".config")
        }
    };
    Ok(base.join("odyssey"))
}

fn path() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("credentials.json"))
}

/// The stored credentials, if `odyssey login` ran.
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("{} is damaged; run odyssey login", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

pub fn save(credentials: &Credentials) -> anyhow::Result<()> {
    let dir = dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let path = path()?;
    let tmp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

pub fn remove() -> anyhow::Result<()> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
