//! The cluster's certificate authority (rcgen): it signs the certificates
//! workers present over mutual TLS and the worker endpoint's own server
//! certificate. Its key never leaves `<data-dir>/ca/` (0600, directory 0700).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// How long the CA itself is valid.
const CA_DAYS: i64 = 3650;
/// How long the worker endpoint's server certificate is valid (reissued at
/// start when less than a third is left or its names changed).
const SERVER_DAYS: i64 = 365;

/// A certificate the CA signed.
#[derive(Debug, Clone)]
pub struct Signed {
    pub pem: String,
    /// SHA-256 of the DER, hex: how the worker endpoint knows the caller.
    pub fingerprint: String,
    /// Hex.
    pub serial: String,
    pub expires_at: f64,
}

/// Why a CSR cannot be signed.
#[derive(Debug, thiserror::Error)]
#[error("the certificate signing request is not valid: {0}")]
pub struct BadCsr(String);

pub struct Ca {
    key: KeyPair,
    cert: Certificate,
    pem: String,
    dir: PathBuf,
}

/// The SHA-256 of a certificate's DER, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, and never starting with a zero byte (DER integers).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn unix(at: OffsetDateTime) -> f64 {
    at.unix_timestamp() as f64
}

impl Ca {
    /// Loads the CA from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Ca> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let (key_path, cert_path) = (dir.join("ca.key"), dir.join("ca.pem"));
        if !key_path.exists() || !cert_path.exists() {
            let key = KeyPair::generate().context("generate the CA key")?;
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::CommonName, "Cloud Odyssey cluster CA");
            params.distinguished_name = name;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(CA_DAYS);
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key).context("sign the CA certificate")?;
            write_secret(&key_path, &key.serialize_pem())?;
            write_secret(&cert_path, &cert.pem())?;
            tracing::info!(dir = %dir.display(), "created the cluster CA for workers");
        }
        let key_pem = std::fs::read_to_string(&key_path).with_context(|| format!("read {}", key_path.display()))?;
        let pem = std::fs::read_to_string(&cert_path).with_context(|| format!("read {}", cert_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).with_context(|| format!("parse {}", key_path.display()))?;
        // rcgen signs with a `Certificate`: rebuilt from the stored one's
        // parameters and key, it has the same subject and key, so what it
        // signs verifies against ca.pem.
        let params =
            CertificateParams::from_ca_cert_pem(&pem).with_context(|| format!("parse {}", cert_path.display()))?;
        let cert = params.self_signed(&key).context("load the CA")?;
        Ok(Ca { key, cert, pem, dir: dir.to_owned() })
    }

    /// The CA certificate workers trust and present a chain to.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    fn sign(&self, mut params: CertificateParams, public: CertificateSigningRequestParams) -> Signed {
        params.serial_number = Some(random_serial());
        let serial = hex(params.serial_number.as_ref().map(|s| s.as_ref()).unwrap_or_default());
        let expires_at = unix(params.not_after);
        let csr = CertificateSigningRequestParams { params, public_key: public.public_key };
        let cert = csr.signed_by(&self.cert, &self.key).expect("the CA signs any well-formed parameters");
        Signed { fingerprint: fingerprint(cert.der()), pem: cert.pem(), serial, expires_at }
    }

    /// Signs a worker's CSR (PEM) for `node`: the CSR proves the worker
    /// holds its key (its signature is checked); everything else in it is
    /// ignored. The certificate names the node (CN and DNS name) and is for
    /// client authentication only.
    pub fn sign_worker(&self, csr_pem: &str, node: &str, lifetime: std::time::Duration) -> Result<Signed, BadCsr> {
        if csr_pem.len() > 16 * 1024 {
            return Err(BadCsr("longer than 16 KiB".into()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node);
        name.push(DnType::OrganizationName, "Cloud Odyssey worker");
        params.distinguished_name = name;
        params.subject_alt_names =
            vec![SanType::DnsName(node.try_into().map_err(|_| BadCsr(format!("{node:?} is not a DNS name")))?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::seconds(lifetime.as_secs() as i64);
        params.use_authority_key_identifier_extension = true;
        Ok(self.sign(params, csr))
    }

    /// The worker endpoint's TLS server configuration: a server certificate
    /// for `names` (IP addresses or DNS names) signed by this CA, reused
    /// from `<dir>/server.*` while valid for the same names, and client
    /// certificates required and checked against this CA. Which client may
    /// do what (and revocation) is the endpoint's business, per request.
    pub fn server_config(&self, names: &[String]) -> anyhow::Result<rustls::ServerConfig> {
        let (key_path, cert_path, names_path) =
            (self.dir.join("server.key"), self.dir.join("server.pem"), self.dir.join("server.names"));
        let wanted = names.join(",");
        let fresh = std::fs::read_to_string(&names_path).ok().as_deref() == Some(wanted.as_str())
            && std::fs::read_to_string(self.dir.join("server.expires"))
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .is_some_and(|at| at - crate::store::now() > SERVER_DAYS as f64 * 86400.0 / 3.0);
        if !fresh || !key_path.exists() || !cert_path.exists() {
            let key = KeyPair::generate().context("generate the worker endpoint's key")?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Cloud Odyssey bridge (workers)");
            params.distinguished_name = dn;
            params.subject_alt_names = names
                .iter()
                .map(|n| match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => n
                        .clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|_| anyhow::anyhow!("{n:?} is not a DNS name")),
                })
                .collect::<anyhow::Result<_>>()?;
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(SERVER_DAYS);
            params.serial_number = Some(random_serial());
            let expires = unix(params.not_after);
            let cert =
                params.signed_by(&key, &self.cert, &self.key).context("sign the worker endpoint's certificate")?;
            write_secret(&key_path, &key.serialize_pem())?;
            write_secret(&cert_path, &cert.pem())?;
            write_secret(&self.dir.join("server.expires"), &expires.to_string())?;
            write_secret(&names_path, &wanted)?;
        }
        let pem_der = |path: &Path, label: &str| -> anyhow::Result<Vec<u8>> {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            let parsed = pem::parse(text).with_context(|| format!("parse {}", path.display()))?;
            anyhow::ensure!(parsed.tag() == label, "{} holds a {}, not a {label}", path.display(), parsed.tag());
            Ok(parsed.into_contents())
        };
        let ca_der = pem_der(&self.dir.join("ca.pem"), "CERTIFICATE")?;
        let cert_der = pem_der(&cert_path, "CERTIFICATE")?;
        let key_der = pem_der(&key_path, "PRIVATE KEY")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der.clone().into()).context("the CA certificate as a trust anchor")?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("client certificate verifier")?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert_der.into(), ca_der.into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )
            .context("the worker endpoint's certificate and key")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_survives_a_restart_and_signs_only_csrs_that_prove_their_key() {
        let dir = std::env::temp_dir().join(format!("odyssey-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = Ca::load_or_create(&dir).unwrap();
        let again = Ca::load_or_create(&dir).unwrap();
        assert_eq!(ca.pem(), again.pem(), "the CA is created once");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["someone-else".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "c1");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let signed = again.sign_worker(&csr, "w1", std::time::Duration::from_secs(86400)).unwrap();
        // The node name is the bridge's, whatever the CSR asked for.
        let (_, cert) = x509_parser::pem::parse_x509_pem(signed.pem.as_bytes()).unwrap();
        let cert = cert.parse_x509().unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
        assert_eq!(cn, "w1");
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).expect("signed by the stored CA");
        assert_eq!(
            signed.fingerprint,
            fingerprint(&x509_parser::pem::parse_x509_pem(signed.pem.as_bytes()).unwrap().1.contents)
        );

        // A CSR whose signature does not match its key is refused.
        let mut tampered = csr.clone().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert!(again
            .sign_worker(&String::from_utf8(tampered).unwrap(), "w1", std::time::Duration::from_secs(86400))
            .is_err());
        assert!(again.sign_worker("not a csr", "w1", std::time::Duration::from_secs(86400)).is_err());
        assert!(again.server_config(&["10.199.0.1".into(), "localhost".into()]).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
