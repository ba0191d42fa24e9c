//! Mutual TLS on the peer port. Every member holds a certificate signed by the cluster's
//! CA and presents it both as a server and as a client; a peer whose certificate the CA
//! did not sign cannot connect at all, and the peer secret is checked on top.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no certificate")]
    Empty { path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// PEM files of this node's peer certificate, its key, and the cluster CA.
#[derive(Clone, Debug)]
pub struct PeerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.into(), message: e.to_string() };
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.into() });
    }
    Ok(certs)
}

impl PeerTls {
    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&self.ca)? {
            roots.add(cert).map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::Pem { path: self.key.clone(), message: e.to_string() })?;
        Ok((certificates(&self.cert)?, key))
    }

    /// The peer listener's configuration: client certificates are required.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let (certs, key) = self.identity()?;
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(config)
    }

    /// The peer client: trusts only the cluster CA and presents this node's certificate.
    pub fn client(&self) -> Result<reqwest::Client, TlsError> {
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let (certs, key) = self.identity()?;
        let tls = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs, key)
            .map_err(config)?;
        peer_http(reqwest::Client::builder().use_preconfigured_tls(tls))
    }
}

/// The peer client without TLS.
pub fn plain_client() -> Result<reqwest::Client, TlsError> {
    peer_http(reqwest::Client::builder())
}

fn peer_http(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, TlsError> {
    builder.pool_max_idle_per_host(8).build().map_err(|e| TlsError::Config(e.to_string()))
}
