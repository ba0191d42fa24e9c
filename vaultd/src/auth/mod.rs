//! Who is calling and what they may do: the root token, scoped access tokens, and the
//! scope grammar (`users:read`, `apps:shop:*`, `cluster:admin`, ...).

mod caller;
mod scope;

pub use caller::{refuse_missing_token, Caller, OptionalCaller, ROOT_ACTOR};
pub use scope::{Scope, ScopeError};

use sha2::{Digest, Sha256};

/// Tokens are stored and compared as SHA-256 digests, never as themselves.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The digest a UUID capability (an exptoken, a shared record's id) is stored and found
/// under, like an access token's.
pub fn capability_hash(id: &uuid::Uuid) -> [u8; 32] {
    secret_hash(&id.hyphenated().to_string())
}
