//! Talking to vaultd: its health endpoint, its `/v1/sys/cluster` admin API, and — for
//! retention policies — its token and retention-run APIs.
//!
//! The reconcilers only see the [`VaultAdmin`] and [`RetentionAdmin`] traits, so their tests
//! can script the vault's answers; [`HttpVaultAdmin`] is the real client of both. A node is
//! named by the base URL of its API (`https://<pod>.<headless service>.<namespace>.svc:3000`);
//! [`TrustVault::trusting`] gives the client that trusts one vault's CA.

mod http;

use std::fmt;
use std::future::Future;

pub use strongroom_admin_api::cluster::StatusBody;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, MemberAdded};
use strongroom_admin_api::retention::RunReport;
use strongroom_admin_api::tokens::{CreateToken, TokenInfo};

pub use http::HttpVaultAdmin;

/// A vault bearer token (`X-Bunker-Token`): the root token read from the vault's Secret, or
/// a scoped token the operator created. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RootToken(String);

impl RootToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token in a Secret's value, read the way vaultd reads its token file
    /// (`read_secret_file`): UTF-8, without trailing line breaks (`\n`, `\r`) and otherwise
    /// unchanged — other whitespace is part of the token. `None` when nothing is left.
    pub fn from_secret_value(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let token = text.trim_end_matches(['\n', '\r']);
        (!token.is_empty()).then(|| Self::new(token))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RootToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootToken(<redacted>)")
    }
}

/// Why a call to the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No HTTP answer: connection refused, DNS failure, timeout.
    #[error("{node} is unreachable: {reason}")]
    Unreachable { node: String, reason: String },
    /// The vault answered with an error envelope.
    #[error("{node} answered {status}: {message}")]
    Rejected { node: String, status: u16, message: String },
    /// The vault answered something that is not the expected JSON.
    #[error("{node} answered an unexpected body: {reason}")]
    InvalidResponse { node: String, reason: String },
}

impl VaultError {
    /// The HTTP status of a rejection (e.g. 409 while a learner still lags).
    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one vault: over HTTPS it trusts that vault's CA and nothing else.
pub trait TrustVault: Sized {
    /// This client trusting only the CA in `ca_pem` (PEM) for HTTPS; with `None` no HTTPS
    /// server is trusted at all (for a vault whose TLS is off, which is plain HTTP).
    fn trusting(&self, ca_pem: Option<&[u8]>) -> Result<Self, VaultError>;
}

/// The calls the operator makes to vaultd. Each method names the node it talks to; calls
/// that change membership may go to any member (vaultd forwards them to the leader).
pub trait VaultAdmin: TrustVault + Send + Sync + 'static {
    /// `GET /v1/status`.
    fn node_status(&self, node: &str) -> impl Future<Output = Result<StatusBody, VaultError>> + Send;

    /// `GET /v1/sys/cluster`: the leader's view of the cluster.
    fn cluster_status(
        &self,
        node: &str,
        token: &RootToken,
    ) -> impl Future<Output = Result<ClusterStatus, VaultError>> + Send;

    /// `POST /v1/sys/cluster/init` on an uninitialised node: a one-voter cluster.
    fn init_cluster(
        &self,
        node: &str,
        token: &RootToken,
    ) -> impl Future<Output = Result<MemberAdded, VaultError>> + Send;

    /// `POST /v1/sys/cluster/learners`.
    fn add_learner(
        &self,
        node: &str,
        token: &RootToken,
        learner: &AddLearner,
    ) -> impl Future<Output = Result<MemberAdded, VaultError>> + Send;

    /// `POST /v1/sys/cluster/members/{id}/promote`.
    fn promote(&self, node: &str, token: &RootToken, id: u64) -> impl Future<Output = Result<(), VaultError>> + Send;

    /// `DELETE /v1/sys/cluster/members/{id}`.
    fn remove_member(
        &self,
        node: &str,
        token: &RootToken,
        id: u64,
    ) -> impl Future<Output = Result<(), VaultError>> + Send;

    /// `POST /v1/sys/tokens`: the operator's own scoped token (see
    /// [`RetentionAdmin::create_token`], the same call).
    fn create_scoped_token(
        &self,
        node: &str,
        token: &RootToken,
        request: &CreateToken,
    ) -> impl Future<Output = Result<NewToken, VaultError>> + Send;

    /// Revokes every token named `name` but `keep` (`GET /v1/sys/tokens`, then
    /// `DELETE /v1/sys/tokens/{id}`); returns the ids revoked.
    fn revoke_others_named(
        &self,
        node: &str,
        token: &RootToken,
        name: &str,
        keep: &str,
    ) -> impl Future<Output = Result<Vec<String>, VaultError>> + Send;
}

/// A token the vault just created: its id, and the secret it shows only this once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub secret: RootToken,
}

/// The calls the `RetentionPolicy` controller makes: scoped tokens (`/v1/sys/tokens`, with
/// the root token) and the run history (`/v1/sys/retention/runs`, with the policy's own
/// token). `node` is the base URL of the vault's client Service; any node forwards.
pub trait RetentionAdmin: TrustVault + Send + Sync + 'static {
    /// `POST /v1/sys/tokens`.
    fn create_token(
        &self,
        node: &str,
        token: &RootToken,
        request: &CreateToken,
    ) -> impl Future<Output = Result<NewToken, VaultError>> + Send;

    /// `GET /v1/sys/tokens` (no secrets).
    fn list_tokens(
        &self,
        node: &str,
        token: &RootToken,
    ) -> impl Future<Output = Result<Vec<TokenInfo>, VaultError>> + Send;

    /// `DELETE /v1/sys/tokens/{id}`. A token the vault does not know (404) is already
    /// revoked: that is success.
    fn revoke_token(
        &self,
        node: &str,
        token: &RootToken,
        id: &str,
    ) -> impl Future<Output = Result<(), VaultError>> + Send;

    /// `GET /v1/sys/retention/runs?policy=<policy>&limit=1`: the newest run of `policy`.
    fn latest_run(
        &self,
        node: &str,
        token: &RootToken,
        policy: &str,
    ) -> impl Future<Output = Result<Option<RunReport>, VaultError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_token_loses_only_a_trailing_line_break_like_vaultd_reads_it() {
        let token = |bytes: &[u8]| RootToken::from_secret_value(bytes).map(|token| token.expose().to_string());
        assert_eq!(token(b"abc\n").as_deref(), Some("abc"));
        assert_eq!(token(b"abc\r\n\n").as_deref(), Some("abc"));
        assert_eq!(token(b" abc \t").as_deref(), Some(" abc \t"), "other whitespace is part of the token");
        assert_eq!(token(b"\nabc").as_deref(), Some("\nabc"));
        assert_eq!(token(b"\r\n"), None);
        assert_eq!(token(b""), None);
        assert_eq!(token(&[0xff, 0xfe]), None);
    }
}
