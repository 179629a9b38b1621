//! Proof of a Unix account: its own password, checked by the machine's PAM
//! stack (`pam_authenticate`, then `pam_acct_mgmt` for locked and expired
//! accounts) under the bridge's service name (`/etc/pam.d/odyssey-bridge`,
//! shipped in `bridge/pam.d/`). Runs on the credential pool: pam_unix
//! sleeps about two seconds after a wrong password, by design.

use super::pool::{Busy, CredentialPool};

#[derive(Debug, thiserror::Error)]
pub enum PamError {
    /// Wrong password, unknown account, locked or expired: one answer for all,
    /// so the reply does not tell which names exist.
    #[error("PAM refused: {0}")]
    Denied(String),
    #[error("PAM service {service:?} cannot start: {reason}")]
    Unavailable { service: String, reason: String },
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Checks `password` for Unix account `user` with PAM service `service`.
pub async fn authenticate(pool: &CredentialPool, service: &str, user: &str, password: String) -> Result<(), PamError> {
    let (service, user) = (service.to_owned(), user.to_owned());
    pool.run(move || {
        let mut client = pam::Client::with_password(&service)
            .map_err(|e| PamError::Unavailable { service: service.clone(), reason: e.to_string() })?;
        client.conversation_mut().set_credentials(&user, &password);
        client.authenticate().map_err(|e| PamError::Denied(e.to_string()))
    })
    .await?
}
