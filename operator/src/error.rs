//! The operator's error type. Messages name objects and nodes, never secret values.

use crate::vaultd_client::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// A server-side apply was refused. For a Secret, `detail` carries only the API's reason
    /// and code (an API message could quote the data).
    #[error("cannot apply {kind} {name}: {detail}")]
    Apply { kind: String, name: String, detail: String },

    #[error("{0} is missing")]
    MissingField(&'static str),

    /// A Secret the spec names does not exist.
    #[error("Secret {secret} does not exist")]
    SecretMissing { secret: String },

    /// A generated Secret is gone after the vault got members: new material would cut the
    /// nodes off from each other or from their data.
    #[error(
        "Secret {secret} is missing; it is not generated again because the vault's nodes depend on its \
         old content (restore it from a backup)"
    )]
    GeneratedSecretMissing { secret: String },

    #[error("Secret {secret} has no key {key:?}")]
    SecretIncomplete { secret: String, key: String },

    /// A Secret with a generated name exists but is not controlled by this vault.
    #[error(
        "Secret {secret} exists but is not controlled by this PiiVault; the operator does not take it over \
         (remove it, or give the vault another name)"
    )]
    SecretConflict { secret: String },

    /// A Secret of a name the operator writes (a retention policy's token Secret) exists
    /// but is controlled by something else.
    #[error(
        "Secret {secret} exists but is not controlled by this {owner}; the operator does not take it over \
         (remove it, or give the {owner} another name)"
    )]
    ForeignSecret { secret: String, owner: &'static str },

    /// A child could not be rendered (e.g. the policy file as YAML).
    #[error("cannot render {what}: {reason}")]
    Render { what: &'static str, reason: String },

    /// A retention policy's schedule does not parse.
    #[error("{0}")]
    InvalidSchedule(String),

    /// A CA or certificate (peer or API) could not be made or used.
    #[error("TLS material: {0}")]
    Tls(String),

    #[error("vault: {0}")]
    Vault(#[from] VaultError),

    /// The operator's own scoped token could not be created (after the bootstrap, with the
    /// root token: it fails once the root token was retired before the operator made it).
    #[error("cannot create the operator's vault token: {0}")]
    OperatorToken(VaultError),

    /// The spec asks for something the operator's policy does not allow (an image, a
    /// module image, an environment variable): nothing is rendered.
    #[error("{0}")]
    NotAllowed(String),

    /// The leader Lease is no longer confirmed: this replica must not act.
    #[error("this replica no longer holds the leader Lease")]
    NotLeader,

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The reconciler's own error inside a finalizer error (itself otherwise).
    pub fn cause(&self) -> &Error {
        match self {
            Error::Finalizer(error) => match error.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.cause(),
                _ => self,
            },
            _ => self,
        }
    }

    /// A short, bounded label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self.cause() {
            Error::Kube(_) => "kube",
            Error::Apply { .. } => "apply",
            Error::MissingField(_) => "missing_field",
            Error::SecretMissing { .. } | Error::GeneratedSecretMissing { .. } => "secret_missing",
            Error::SecretIncomplete { .. } => "secret_incomplete",
            Error::SecretConflict { .. } | Error::ForeignSecret { .. } => "secret_conflict",
            Error::Render { .. } => "render",
            Error::InvalidSchedule(_) => "invalid_schedule",
            Error::Tls(_) => "tls",
            Error::Vault(_) => "vault",
            Error::NotAllowed(_) => "not_allowed",
            Error::OperatorToken(_) => "operator_token",
            Error::NotLeader => "not_leader",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// The reason of the `Degraded` condition (and of the Warning Event) for this failure.
    pub fn condition_reason(&self) -> &'static str {
        match self.cause() {
            Error::Kube(_) => "KubernetesApiError",
            Error::Apply { .. } => "ApplyFailed",
            Error::MissingField(_) => "InvalidResource",
            Error::SecretMissing { .. } | Error::GeneratedSecretMissing { .. } => "SecretMissing",
            Error::SecretIncomplete { .. } => "SecretIncomplete",
            Error::SecretConflict { .. } | Error::ForeignSecret { .. } => "SecretConflict",
            Error::Render { .. } => "RenderFailed",
            Error::InvalidSchedule(_) => "InvalidSchedule",
            Error::Tls(_) => "SecretGenerationFailed",
            Error::Vault(_) => "VaultUnreachable",
            Error::NotAllowed(_) => "NotAllowed",
            Error::OperatorToken(_) => "OperatorTokenFailed",
            Error::NotLeader => "NotLeader",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }

    /// A failed apply of `kind`/`name`.
    pub fn apply(kind: &str, name: &str, error: &kube::Error) -> Self {
        let detail = match error {
            kube::Error::Api(status) if kind == "Secret" => format!("{} ({})", status.reason, status.code),
            error => error.to_string(),
        };
        Error::Apply { kind: kind.to_string(), name: name.to_string(), detail }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    #[test]
    fn a_refused_secret_apply_does_not_repeat_the_api_message() {
        let status = Status::failure("data[kek]: Invalid value: \"c2VjcmV0\"", "Invalid").with_code(422);
        let error = Error::apply("Secret", "vault-softhsm", &kube::Error::Api(Box::new(status.clone())));
        assert_eq!(error.to_string(), "cannot apply Secret vault-softhsm: Invalid (422)");
        assert_eq!(error.condition_reason(), "ApplyFailed");
        let error = Error::apply("StatefulSet", "vault", &kube::Error::Api(Box::new(status)));
        assert!(error.to_string().contains("Invalid value"), "{error}");
    }
}
