//! The operator's error type. Messages name objects and nodes, never secret values.

use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("{0} is missing")]
    MissingField(&'static str),

    #[error("Secret {secret} has no key {key:?}")]
    SecretIncomplete { secret: String, key: String },

    #[error("cannot generate the peer TLS certificate: {0}")]
    Tls(String),

    #[error("vault: {0}")]
    Vault(#[from] VaultError),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short, bounded label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::SecretIncomplete { .. } => "secret_incomplete",
            Error::Tls(_) => "tls",
            Error::Vault(_) => "vault",
            Error::Finalizer(error) => match error.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
        }
    }
}
