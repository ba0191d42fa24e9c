//! Scoped access tokens (`/v1/sys/tokens`, scope `tokens:admin`).
//!
//! - `POST /v1/sys/tokens` with [`CreateToken`] answers [`TokenCreated`]: the secret is
//!   shown this once; the vault keeps only its SHA-256.
//! - `GET /v1/sys/tokens` answers [`TokenList`] (no secrets).
//! - `DELETE /v1/sys/tokens/{id}` revokes a token (404 when no token has that id).

use serde::{Deserialize, Serialize};

/// `POST /v1/sys/tokens`. A caller can only hand out scopes it holds itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1–64 printable characters; shown in the token list, not unique.
    pub name: String,
    /// E.g. `users:read`, `apps:shop:*`, `retention:run`, `cluster:admin`. Empty for a
    /// subject token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Makes a subject token (self-service): the token of the data subject (a UUID) whose
    /// own data — profile, app records, sessions, agreements, shares — and nothing else
    /// the token may read and manage. Its scopes are `users:*` and `apps:*:*`, limited to
    /// that subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The answer to `POST /v1/sys/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token's id (`tok-…`): what audit events name as the actor, and what
    /// `DELETE /v1/sys/tokens/{id}` takes.
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// The bearer secret for `X-Bunker-Token`. Not retrievable later.
    pub token: String,
    /// The subject a subject token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// One entry of `GET /v1/sys/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// `GET /v1/sys/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}
