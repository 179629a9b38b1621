//! How a batch of health records travels from the SPANK plugin to the
//! bridge's `POST /v1/health-reports`: JSON lines, with the sender's Unix
//! time in [`TIMESTAMP_HEADER`] and, in [`SIGNATURE_HEADER`], the hex
//! HMAC-SHA256 of `<timestamp>.<body>` under the cluster's shared secret.
//! Both sides use this crate, so they cannot drift apart: the records
//! themselves are typed once, in [`records`].

pub mod records;
pub mod spool;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-odyssey-timestamp";
pub const SIGNATURE_HEADER: &str = "x-odyssey-signature";

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// Whether `signature` (hex) signs `body` at `timestamp`; compared in
/// constant time.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature) else { return false };
    mac(secret, timestamp, body).verify_slice(&given).is_ok()
}

/// The SPANK plugin's name (`plugin_name`), as SLURM knows it.
pub const PLUGIN_NAME: &str = "odyssey_health";

/// The plugin's option on the command line: `--health-report[=MODE]`.
pub const OPTION: &str = "health-report";

/// How a job carries the option's value to the plugin in slurmstepd: sbatch
/// puts `_SLURM_SPANK_OPTION_<plugin>_<option, - as _>=<value>` into the
/// job's SPANK environment (`job_desc_msg_t.spank_job_env`); a submission
/// through libslurm must do the same.
pub fn spank_option_env(value: &str) -> String {
    format!("{}={value}", spank_option_name())
}

/// The variable's name alone: `_SLURM_SPANK_OPTION_<plugin>_<option>`.
pub fn spank_option_name() -> String {
    format!("_SLURM_SPANK_OPTION_{PLUGIN_NAME}_{}", OPTION.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_time_and_body() {
        let sig = sign(b"secret", "1700000000", b"{\"id\":\"a\"}\n");
        assert!(verify(b"secret", "1700000000", b"{\"id\":\"a\"}\n", &sig));
        assert!(!verify(b"other", "1700000000", b"{\"id\":\"a\"}\n", &sig));
        assert!(!verify(b"secret", "1700000001", b"{\"id\":\"a\"}\n", &sig));
        assert!(!verify(b"secret", "1700000000", b"{\"id\":\"b\"}\n", &sig));
        assert!(!verify(b"secret", "1700000000", b"{\"id\":\"a\"}\n", "not hex"));
    }
}
