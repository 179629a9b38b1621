//! Accounts: name, argon2 hash, role, Unix mapping, disabled flag.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now, StoreError};
use crate::unix::MappedBy;

/// What an account may do. Ordered: admin > user > viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads its own jobs and the nodes; submits and cancels nothing.
    Viewer,
    /// Submits, reads and cancels its own jobs.
    User,
    /// Everything, for every account; manages accounts and nodes.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A row of `users`; `http/users.rs` decides what of it the API shows.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    /// The Unix account jobs run as; `None`: not mapped, so no jobs.
    pub unix_user: Option<String>,
    /// Who set `unix_user`: an admin, the user's PAM proof, or an OpenID
    /// provider's claim.
    pub unix_mapped_by: Option<MappedBy>,
    pub disabled: bool,
    pub created_at: f64,
}

impl User {
    /// The Unix account this user's jobs run as and who mapped it; `None`
    /// until an admin or a PAM proof maps one. Never derived from the name.
    pub fn unix_mapping(&self) -> Option<(&str, MappedBy)> {
        Some((self.unix_user.as_deref()?, self.unix_mapped_by?))
    }

    /// The mapping this account has once an OpenID provider's token claims
    /// `claimed` (issue #15): an admin's mapping stays; a claim replaces any
    /// other; no claim drops only a mapping the provider made.
    pub fn mapping_after_oidc(&self, claimed: Option<&str>) -> (Option<String>, Option<MappedBy>) {
        match (self.unix_mapped_by, claimed) {
            (Some(MappedBy::Admin), _) => (self.unix_user.clone(), self.unix_mapped_by),
            (_, Some(unix_user)) => (Some(unix_user.to_owned()), Some(MappedBy::Oidc)),
            (Some(MappedBy::Oidc), None) => (None, None),
            (_, None) => (self.unix_user.clone(), self.unix_mapped_by),
        }
    }
}

const COLUMNS: &str = "id, name, password_hash, role, unix_user, disabled, created_at, unix_mapped_by";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(3)?;
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, format!("role {role}").into())
        })?,
        unix_user: row.get(4)?,
        disabled: row.get(5)?,
        created_at: row.get(6)?,
        unix_mapped_by: row.get::<_, Option<String>>(7)?.as_deref().and_then(MappedBy::parse),
    })
}

/// Inserts an account; `Ok(None)` when the name is taken.
pub fn create(
    conn: &Connection,
    name: &str,
    password_hash: &str,
    role: Role,
    unix: Option<(&str, MappedBy)>,
) -> Result<Option<User>, StoreError> {
    let inserted = conn.execute(
        "INSERT INTO users (name, password_hash, role, unix_user, unix_mapped_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
        params![name, password_hash, role.as_str(), unix.map(|u| u.0), unix.map(|u| u.1.as_str()), now()],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    by_id(conn, conn.last_insert_rowid())
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([name], from_row).optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY name");
    let mut stmt = conn.prepare(&sql)?;
    let users = stmt.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(users)
}

/// What an admin may change about an account; `None` leaves a field alone.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// The Unix account (checked by the caller); `Some(None)` (JSON null)
    /// unmaps the account, so it can no longer submit.
    #[serde(default, with = "double_option")]
    pub unix_user: Option<Option<String>>,
}

/// Applies a change; the updated account, or `None` if there is no such name.
pub fn update(conn: &Connection, name: &str, change: &UserChange) -> Result<Option<User>, StoreError> {
    let Some(user) = by_name(conn, name)? else {
        return Ok(None);
    };
    let role = change.role.unwrap_or(user.role);
    let disabled = change.disabled.unwrap_or(user.disabled);
    let (unix_user, mapped_by) = match &change.unix_user {
        None => (user.unix_user, user.unix_mapped_by),
        Some(None) => (None, None),
        Some(Some(unix_user)) => (Some(unix_user.clone()), Some(MappedBy::Admin)),
    };
    conn.execute(
        "UPDATE users SET role = ?1, disabled = ?2, unix_user = ?3, unix_mapped_by = ?4 WHERE id = ?5",
        params![role.as_str(), disabled, unix_user, mapped_by.map(MappedBy::as_str), user.id],
    )?;
    by_id(conn, user.id)
}

/// Maps an account to the Unix account its holder proved with PAM, and
/// clears its bridge password: whoever registered the name before the
/// proof (perhaps not its owner) can no longer log in with it.
pub fn map_by_pam(conn: &Connection, id: i64, unix_user: &str, no_password: &str) -> Result<Option<User>, StoreError> {
    conn.execute(
        "UPDATE users SET unix_user = ?1, unix_mapped_by = 'pam', password_hash = ?2 WHERE id = ?3",
        params![unix_user, no_password, id],
    )?;
    by_id(conn, id)
}

/// What a verified OpenID token says about its holder (issue #15).
pub struct OidcClaims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    /// The account name (used when the identity signs in the first time).
    pub name: &'a str,
    pub role: Role,
    /// The Unix account the provider names, already checked against the
    /// mapping rules; `None` when the claim is absent.
    pub unix_user: Option<&'a str>,
}

/// The account of a provider identity, created at its first sign-in, with
/// its role and (unless an admin mapped it) its Unix mapping brought up to
/// what the token says. `Ok(None)`: a first sign-in whose name belongs to
/// another account (never taken over).
pub fn sign_in_oidc(
    conn: &mut Connection,
    claims: &OidcClaims<'_>,
    no_password: &str,
) -> Result<Option<User>, StoreError> {
    let tx = conn.transaction()?;
    let known: Option<i64> = tx
        .query_row(
            "SELECT user_id FROM oidc_identities WHERE issuer = ?1 AND subject = ?2",
            params![claims.issuer, claims.subject],
            |row| row.get(0),
        )
        .optional()?;
    let user = match known {
        Some(id) => by_id(&tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("identity of missing user {id}")))?,
        None => {
            let Some(user) = create(&tx, claims.name, no_password, claims.role, None)? else {
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![claims.issuer, claims.subject, user.id, now()],
            )?;
            user
        }
    };
    let (unix_user, mapped_by) = user.mapping_after_oidc(claims.unix_user);
    if user.role != claims.role || unix_user != user.unix_user || mapped_by != user.unix_mapped_by {
        tx.execute(
            "UPDATE users SET role = ?1, unix_user = ?2, unix_mapped_by = ?3 WHERE id = ?4",
            params![claims.role.as_str(), unix_user, mapped_by.map(MappedBy::as_str), user.id],
        )?;
    }
    let user = by_id(&tx, user.id)?;
    tx.commit()?;
    Ok(user)
}

pub fn set_password(conn: &Connection, id: i64, password_hash: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", params![password_hash, id])?;
    Ok(())
}

/// Distinguishes a missing field from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(unix_user: Option<&str>, by: Option<MappedBy>) -> User {
        User {
            id: 1,
            name: "ada".into(),
            password_hash: String::new(),
            role: Role::User,
            unix_user: unix_user.map(str::to_owned),
            disabled: false,
            created_at: 0.0,
            unix_mapped_by: by,
        }
    }

    #[test]
    fn a_providers_claim_never_overrides_an_admin_and_drops_only_its_own_mapping() {
        let own = |u: &str| (Some(u.to_owned()), Some(MappedBy::Oidc));
        let admin = mapped(Some("carol"), Some(MappedBy::Admin));
        assert_eq!(admin.mapping_after_oidc(Some("alice")), (Some("carol".into()), Some(MappedBy::Admin)));
        assert_eq!(admin.mapping_after_oidc(None), (Some("carol".into()), Some(MappedBy::Admin)));
        let pam = mapped(Some("bob"), Some(MappedBy::Pam));
        assert_eq!(pam.mapping_after_oidc(Some("alice")), own("alice"));
        assert_eq!(pam.mapping_after_oidc(None), (Some("bob".into()), Some(MappedBy::Pam)));
        let oidc = mapped(Some("alice"), Some(MappedBy::Oidc));
        assert_eq!(oidc.mapping_after_oidc(Some("dave")), own("dave"));
        assert_eq!(oidc.mapping_after_oidc(None), (None, None));
        assert_eq!(mapped(None, None).mapping_after_oidc(None), (None, None));
    }
}
