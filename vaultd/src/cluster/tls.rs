//! Mutual TLS on the peer port. Every member holds a certificate signed by the cluster's
//! CA and presents it both as a server and as a client; a peer whose certificate the CA
//! did not sign cannot connect at all, and the peer secret is checked on top.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use crate::tls::TlsError;
use crate::tls::{certificates, private_key, provider, roots};

/// PEM files of this node's peer certificate, its key, and the cluster CA.
#[derive(Clone, Debug)]
pub struct PeerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl PeerTls {
    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        roots(&self.ca)
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        Ok((certificates(&self.cert)?, private_key(&self.key)?))
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
    // A peer that answers with a redirect must not make this node send its credentials
    // (the peer secret, an adoption proof) wherever the redirect points.
    builder
        .pool_max_idle_per_host(8)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}
