//! Certificates for vaultd under test, made with rcgen when needed: a CA ([`Ca`]), the
//! certificates it signs ([`Leaf`]: for servers on 127.0.0.1, or for callers presenting a
//! client certificate), the API's TLS files with the flags that serve them ([`ApiTls`]),
//! and blocking HTTPS clients that trust a CA.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::cluster::private_file;

/// A certificate authority: a self-signed CA certificate and its key, in memory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's DER bytes, as a TLS peer presents it.
    pub der: Vec<u8>,
}

impl Ca {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ok(Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)? })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.pem()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// A certificate named `common_name`, valid for `names` (IP addresses or DNS names;
    /// none for a client certificate), with a fresh key.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() })
    }

    /// A certificate for a server on 127.0.0.1 (and `localhost`).
    pub fn issue_server(&self, common_name: &str) -> anyhow::Result<Leaf> {
        self.issue(common_name, &["127.0.0.1", "localhost"])
    }
}

impl Leaf {
    /// Writes the certificate to `cert` and the key to `key` (readable by its owner only).
    pub fn write(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        std::fs::write(cert, &self.cert_pem).with_context(|| format!("cannot write {}", cert.display()))?;
        private_file(key)?.write_all(self.key_pem.as_bytes())?;
        Ok(())
    }

    /// The certificate and key as a client identity for reqwest.
    pub fn identity(&self) -> anyhow::Result<reqwest::Identity> {
        Ok(reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())?)
    }
}

/// TLS files for vaultd's API in one directory: a CA (`api-ca.pem`) and a certificate for
/// 127.0.0.1 it signed (`api-cert.pem`, `api-key.pem`).
pub struct ApiTls {
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ApiTls {
    /// Makes the files in `dir` (which exists).
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let ca = Ca::new("strongroom test API CA")?;
        let tls = ApiTls {
            ca_file: dir.join("api-ca.pem"),
            cert_file: dir.join("api-cert.pem"),
            key_file: dir.join("api-key.pem"),
            ca,
        };
        tls.ca.write(&tls.ca_file)?;
        tls.ca.issue_server("vaultd")?.write(&tls.cert_file, &tls.key_file)?;
        Ok(tls)
    }

    /// The flags that serve the API with these files: `--tls-cert` and `--tls-key`.
    pub fn flags(&self) -> Vec<String> {
        vec![format!("--tls-cert={}", self.cert_file.display()), format!("--tls-key={}", self.key_file.display())]
    }
}

/// A blocking HTTPS client that trusts `ca_pem` only (PEM, one or more certificates) and,
/// with `identity`, presents it as its client certificate.
pub fn https_client(
    ca_pem: &str,
    identity: Option<&Leaf>,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder().timeout(timeout).tls_info(true);
    for cert in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())? {
        builder = builder.add_root_certificate(cert);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity.identity()?);
    }
    Ok(builder.build()?)
}
