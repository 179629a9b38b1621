//! Unix accounts that jobs run as: the lookup (NSS), and the rules an
//! account must pass before any job runs as it. Nothing here knows HTTP.
//! Every function blocks (NSS may ask LDAP, shadow reads a file); async
//! callers use the `_off_thread` forms, which run on the blocking pool, or
//! `cache::AccountCache` (submissions), which keeps recent resolutions.

pub mod cache;

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};

/// A Unix account, as the job's processes will carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one included), as `initgroups`
    /// would set them: sbatch runs with exactly these.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Who tied a bridge account to a Unix account. Only these exist: a claim
/// by the user is never enough (docs/SECURITY.md, "Identity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MappedBy {
    /// An administrator set it (`PATCH /v1/users/{name}`, `bridge user add`).
    Admin,
    /// The user proved it with the Unix account's own password (PAM).
    Pam,
    /// A configured OpenID provider vouched for it in a verified token's
    /// claim (`unix_user_claim`); an admin's mapping takes precedence.
    Oidc,
}

impl MappedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MappedBy::Admin => "admin",
            MappedBy::Pam => "pam",
            MappedBy::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Option<MappedBy> {
        match s {
            "admin" => Some(MappedBy::Admin),
            "pam" => Some(MappedBy::Pam),
            "oidc" => Some(MappedBy::Oidc),
            _ => None,
        }
    }
}

/// The uid range jobs may run in (`--uid-floor`, `--uid-ceiling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub floor: u32,
    pub ceiling: u32,
}

/// Why an account may not run jobs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnixError {
    #[error("there is no Unix account {0:?}")]
    NoSuchAccount(String),
    #[error("cannot look up Unix account {name:?}: {reason}")]
    Lookup { name: String, reason: String },
    #[error("Unix account {name:?} is root's (uid or gid 0): no job runs as root")]
    Root { name: String },
    #[error("Unix account {name:?} has uid {uid}, outside the allowed range {floor}-{ceiling}")]
    OutOfRange { name: String, uid: u32, floor: u32, ceiling: u32 },
    #[error("Unix account {name:?} has no login shell ({shell}); only an admin can map it")]
    NoLogin { name: String, shell: String },
    #[error("Unix account {name:?} is locked; only an admin can map it")]
    Locked { name: String },
}

/// Looks up an account by name, with its groups.
pub fn lookup(name: &str) -> Result<UnixAccount, UnixError> {
    let lookup_err = |e: nix::Error| UnixError::Lookup { name: name.to_owned(), reason: e.to_string() };
    let user = User::from_name(name).map_err(lookup_err)?.ok_or_else(|| UnixError::NoSuchAccount(name.to_owned()))?;
    account(user)
}

/// Looks up an account by uid (a job's owner, for cancel).
pub fn lookup_uid(uid: u32) -> Result<UnixAccount, UnixError> {
    let lookup_err = |e: nix::Error| UnixError::Lookup { name: format!("uid {uid}"), reason: e.to_string() };
    let user = User::from_uid(Uid::from_raw(uid))
        .map_err(lookup_err)?
        .ok_or_else(|| UnixError::NoSuchAccount(uid.to_string()))?;
    account(user)
}

fn account(user: User) -> Result<UnixAccount, UnixError> {
    let c_name = CString::new(user.name.as_str())
        .map_err(|_| UnixError::Lookup { name: user.name.clone(), reason: "NUL in name".into() })?;
    let groups = nix::unistd::getgrouplist(&c_name, user.gid)
        .map_err(|e| UnixError::Lookup { name: user.name.clone(), reason: format!("groups: {e}") })?;
    Ok(UnixAccount {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
        home: user.dir,
        shell: user.shell,
        name: user.name,
    })
}

/// The checks every mapping passes, whoever made it: never root, never
/// outside the uid range. An account made by PAM proof must also be able to
/// log in (a login shell, an unlocked password); an admin may map a
/// service account without one, deliberately.
pub fn check(account: &UnixAccount, range: UidRange, by: MappedBy) -> Result<(), UnixError> {
    let name = account.name.clone();
    if account.uid == 0 || account.gid == 0 {
        return Err(UnixError::Root { name });
    }
    if account.uid < range.floor || account.uid > range.ceiling {
        return Err(UnixError::OutOfRange { name, uid: account.uid, floor: range.floor, ceiling: range.ceiling });
    }
    if by == MappedBy::Admin {
        return Ok(());
    }
    if !has_login_shell(account) {
        return Err(UnixError::NoLogin { name, shell: account.shell.display().to_string() });
    }
    if is_locked(&account.name) {
        return Err(UnixError::Locked { name });
    }
    Ok(())
}

/// Looks an account up and checks it.
pub fn resolve(name: &str, range: UidRange, by: MappedBy) -> Result<UnixAccount, UnixError> {
    let account = lookup(name)?;
    check(&account, range, by)?;
    Ok(account)
}

/// `resolve` on the blocking pool.
pub async fn resolve_off_thread(name: &str, range: UidRange, by: MappedBy) -> Result<UnixAccount, UnixError> {
    let name = name.to_owned();
    off_thread(name.clone(), move || resolve(&name, range, by)).await
}

/// `lookup_uid` on the blocking pool.
pub async fn lookup_uid_off_thread(uid: u32) -> Result<UnixAccount, UnixError> {
    off_thread(format!("uid {uid}"), move || lookup_uid(uid)).await
}

/// A lookup whose task died (it panicked) is a failed lookup of `what`.
async fn off_thread(
    what: String,
    lookup: impl FnOnce() -> Result<UnixAccount, UnixError> + Send + 'static,
) -> Result<UnixAccount, UnixError> {
    tokio::task::spawn_blocking(lookup)
        .await
        .unwrap_or_else(|e| Err(UnixError::Lookup { name: what, reason: format!("lookup task: {e}") }))
}

fn has_login_shell(account: &UnixAccount) -> bool {
    let shell = account.shell.file_name().and_then(|s| s.to_str()).unwrap_or("");
    !matches!(shell, "" | "nologin" | "false")
}

/// Whether the shadow entry's password is locked (`!...`) or unusable
/// (`*`). An account without a shadow entry is not called locked here:
/// PAM decides whether its password works.
fn is_locked(name: &str) -> bool {
    let Ok(c_name) = CString::new(name) else {
        return true;
    };
    let mut entry: nix::libc::spwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as nix::libc::c_char; 16 * 1024];
    let mut result: *mut nix::libc::spwd = std::ptr::null_mut();
    // SAFETY: getspnam_r writes into `entry` and `buf`, which outlive the
    // call; `result` is null or points at `entry`.
    let rc = unsafe { nix::libc::getspnam_r(c_name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || entry.sp_pwdp.is_null() {
        return false;
    }
    // SAFETY: sp_pwdp points into `buf`, NUL-terminated by getspnam_r.
    let password = unsafe { std::ffi::CStr::from_ptr(entry.sp_pwdp) };
    matches!(password.to_bytes().first(), Some(b'!' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: UidRange = UidRange { floor: 1000, ceiling: 60000 };

    fn account(uid: u32, gid: u32, shell: &str) -> UnixAccount {
        UnixAccount { name: "x".into(), uid, gid, groups: vec![gid], home: "/home/x".into(), shell: shell.into() }
    }

    #[test]
    fn root_and_out_of_range_are_refused_whoever_maps() {
        for by in [MappedBy::Admin, MappedBy::Pam, MappedBy::Oidc] {
            assert!(matches!(check(&account(0, 100, "/bin/bash"), RANGE, by), Err(UnixError::Root { .. })));
            assert!(matches!(check(&account(2000, 0, "/bin/bash"), RANGE, by), Err(UnixError::Root { .. })));
            assert!(matches!(check(&account(999, 999, "/bin/bash"), RANGE, by), Err(UnixError::OutOfRange { .. })));
            // nobody (65534) is above the default ceiling.
            assert!(matches!(
                check(&account(65534, 65534, "/usr/sbin/nologin"), RANGE, by),
                Err(UnixError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn nologin_needs_an_admin() {
        let service = account(2000, 2000, "/usr/sbin/nologin");
        assert!(matches!(check(&service, RANGE, MappedBy::Pam), Err(UnixError::NoLogin { .. })));
        assert_eq!(check(&service, RANGE, MappedBy::Admin), Ok(()));
    }

    #[test]
    fn real_system_accounts_are_refused() {
        assert!(matches!(resolve("root", RANGE, MappedBy::Admin), Err(UnixError::Root { .. })));
        assert!(matches!(resolve("daemon", RANGE, MappedBy::Admin), Err(UnixError::OutOfRange { .. })));
        assert!(matches!(resolve("nobody", RANGE, MappedBy::Admin), Err(UnixError::OutOfRange { .. })));
        assert!(matches!(resolve("no-such-user-here", RANGE, MappedBy::Admin), Err(UnixError::NoSuchAccount(_))));
    }
}
