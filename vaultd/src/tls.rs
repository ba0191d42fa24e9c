//! TLS with rustls (ring provider): reading PEM certificates, keys and CAs, shared by the
//! peer port's mutual TLS (`cluster::tls`) and the API's TLS ([`ApiTls`]). The API's
//! certificate is re-read when its files change, so that a rotated certificate is served
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// How often, at most, the API's certificate files are checked for a change (on a new
/// connection's handshake).
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no certificate")]
    Empty { path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_in(path, &read(path)?)
}

fn certificates_in(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.into(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.into() });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    private_key_in(path, &read(path)?)
}

fn private_key_in(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem { path: path.into(), message: e.to_string() })
}

/// The CA certificates of a PEM file, as a trust store.
pub fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("CA certificate in {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| TlsError::Pem { path: path.into(), message: e.to_string() })
}

/// TLS on the API port: the server's certificate chain and key (PEM files, re-read when
/// they change) and, for mutual TLS, the CA that signs the callers' certificates.
#[derive(Clone, Debug)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every caller must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

impl ApiTls {
    /// The API listener's configuration. Fails when the files do not hold a matching
    /// certificate and key (or a CA, when one is named).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let resolver = Arc::new(ReloadingCert::load(self.cert.clone(), self.key.clone())?);
        let builder =
            ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(config)?;
        let builder = match &self.client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            ),
            None => builder.with_no_client_auth(),
        };
        Ok(builder.with_cert_resolver(resolver))
    }
}

/// Serves the certificate and key of two PEM files, checking them for a change at most
/// every [`RELOAD_CHECK`] when a handshake comes in. A changed pair that does not load
/// (half written, key and certificate not matching) leaves the current one in place and
/// is logged; it is tried again once the files change again.
#[derive(Debug)]
struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<Check>,
}

#[derive(Debug)]
struct Check {
    at: Instant,
    /// Digest of the two files' contents last tried.
    digest: [u8; 32],
}

impl ReloadingCert {
    fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, TlsError> {
        let (cert, key) = (read(&cert_path)?, read(&key_path)?);
        let certified = certified_key(&cert_path, &cert, &key_path, &key)?;
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(certified)),
            check: Mutex::new(Check { at: Instant::now(), digest: digest(&cert, &key) }),
            cert_path,
            key_path,
        })
    }

    /// Re-reads the files if they were not checked for a while; one handshake checks
    /// while the others go on with the current certificate.
    fn refresh(&self) {
        let Ok(mut check) = self.check.try_lock() else { return };
        if check.at.elapsed() < RELOAD_CHECK {
            return;
        }
        check.at = Instant::now();
        let (cert, key) = match (read(&self.cert_path), read(&self.key_path)) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot read the API's TLS files; serving the certificate loaded before");
                return;
            }
        };
        let digest = digest(&cert, &key);
        if digest == check.digest {
            return;
        }
        check.digest = digest;
        match certified_key(&self.cert_path, &cert, &self.key_path, &key) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                tracing::info!(cert = %self.cert_path.display(), "reloaded the API's TLS certificate");
            }
            Err(error) => {
                tracing::warn!(%error, "the API's changed TLS files do not load; serving the certificate loaded before")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

fn certified_key(cert_path: &Path, cert: &[u8], key_path: &Path, key: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs = certificates_in(cert_path, cert)?;
    let key = private_key_in(key_path, key)?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Config(format!("{} and {}: {e}", cert_path.display(), key_path.display())))
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}
