//! Scoped access tokens (`/v1/sys/tokens`). The secret is shown once, at creation; the
//! vault keeps only its SHA-256.

use strongroom_admin_api::tokens::{CreateToken, TokenCreated};

use std::sync::atomic::Ordering;

use super::*;
use crate::store::AccessTokenRecord;

const MAX_NAME_LEN: usize = 64;
/// What a subject token holds, limited to its subject by `Caller::subject`.
const SUBJECT_SCOPES: [&str; 2] = ["users:*", "apps:*:*"];
const SECRET_PREFIX: &str = "sr_";

/// Whether a presented secret has the shape of the secrets this vault hands out.
pub(super) fn is_well_formed(secret: &str) -> bool {
    secret.strip_prefix(SECRET_PREFIX).is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Vault {
    /// Resolves a presented token to an actor and its scopes. Constant-time comparison.
    /// Returns the actor, its scopes, and for a subject token its subject. A token not
    /// known here costs a read barrier (it may have been created through another node);
    /// `may_wait` is asked first, so that a client over its failed-authentication limit
    /// pays nothing for further guesses while tokens known here still work.
    pub async fn authenticate(
        &self,
        secret: &str,
        may_wait: impl FnOnce() -> VaultResult<()>,
    ) -> VaultResult<(String, Vec<Scope>, Option<Uuid>)> {
        let hash = auth::secret_hash(secret);
        if bool::from(subtle::ConstantTimeEq::ct_eq(&hash[..], &self.root_token_hash[..])) {
            // A node just started may not have applied the retirement yet: it catches up
            // once before it takes the root token.
            let checked = &self.root_checked;
            if !checked.load(Ordering::Acquire) && self.cluster.node_id().is_some() {
                self.catch_up().await?;
                checked.store(true, Ordering::Release);
            }
            if self.store.root_retired()? {
                return Err(VaultError::InvalidToken);
            }
            return Ok((ROOT_ACTOR.to_string(), vec![Scope::all()], None));
        }
        let mut token = self.store.token_by_secret_hash(&hash)?;
        if token.is_none() && tokens::is_well_formed(secret) && self.cluster.node_id().is_some() {
            // A token created through another node may not have reached this one yet.
            // (Only secrets shaped like ours: garbage must not cost a cluster round trip.)
            may_wait()?;
            self.catch_up().await?;
            token = self.store.token_by_secret_hash(&hash)?;
        }
        match token {
            Some(token) => {
                let scopes = token.scopes.iter().filter_map(|s| s.parse().ok()).collect();
                Ok((token.id, scopes, token.subject))
            }
            None => Err(VaultError::InvalidToken),
        }
    }

    pub async fn create_token(&self, caller: &Caller, request: CreateToken) -> VaultResult<TokenCreated> {
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(VaultError::bad_request(format!("name must be 1-{MAX_NAME_LEN} printable characters")));
        }
        let subject = match &request.subject {
            None => None,
            Some(_) if !request.scopes.is_empty() => {
                return Err(VaultError::bad_request("a subject token takes no scopes: it gets its subject's own data"))
            }
            Some(token) => Some(self.token_subject(caller, token).await?),
        };
        let requested = match subject {
            Some(_) => SUBJECT_SCOPES.iter().map(|s| s.to_string()).collect(),
            None if request.scopes.is_empty() => return Err(VaultError::bad_request("scopes must not be empty")),
            None => request.scopes,
        };
        let mut scopes = Vec::new();
        for text in &requested {
            let scope: Scope =
                text.parse().map_err(|e: crate::auth::ScopeError| VaultError::bad_request(e.to_string()))?;
            // No caller can hand out more than it holds.
            if !caller.scopes.iter().any(|held| held.covers(&scope)) {
                return Err(VaultError::Forbidden(scope.to_string()));
            }
            scopes.push(scope.to_string());
        }
        let id = format!("tok-{}", crypto::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let secret = format!("{SECRET_PREFIX}{}", crate::audit::hex(&crypto::random_bytes::<32>()));
        let record = AccessTokenRecord {
            id: id.clone(),
            name: name.to_string(),
            scopes: scopes.clone(),
            created: now_ms(),
            secret_hash: auth::secret_hash(&secret),
            subject,
        };
        let receipt = self
            .commit(
                draft(caller, Operation::TokenCreate, subject, None, None),
                Change::CreateAccessToken { token: record },
            )
            .await?;
        receipt.outcome.map_err(rejected)?;
        let subject = subject.map(|s| s.to_string());
        Ok(TokenCreated { id, name: name.to_string(), scopes, token: secret, subject })
    }

    /// Retires the root token on every node, once another token holds `tokens:admin`.
    /// Only the root token itself may do it.
    pub async fn retire_root_token(&self, caller: &Caller) -> VaultResult<()> {
        if caller.actor != ROOT_ACTOR {
            return Err(VaultError::Forbidden("* (only the root token may retire itself)".into()));
        }
        let receipt =
            self.commit(draft(caller, Operation::RootTokenRetire, None, None, None), Change::RetireRootToken).await?;
        receipt.outcome.map_err(rejected).map(drop)
    }

    /// The active subject a subject token is requested for.
    async fn token_subject(&self, caller: &Caller, token: &str) -> VaultResult<Uuid> {
        caller.require_staff()?;
        let subject = Uuid::parse_str(token).map_err(|_| VaultError::bad_request("subject must be a subject token"))?;
        match self.find(&Target::Token(subject)).await? {
            Some(Found::Active(subject, ..)) => Ok(subject),
            _ => Err(VaultError::NotFound("record")),
        }
    }

    pub async fn tokens(&self) -> VaultResult<Vec<AccessTokenRecord>> {
        self.catch_up().await?;
        Ok(self.store.tokens()?)
    }

    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> VaultResult<()> {
        let audit = draft(caller, Operation::TokenRevoke, None, None, None);
        let Some(token) = self.tokens().await?.into_iter().find(|t| t.id == id) else {
            return Err(VaultError::NotFound("access token"));
        };
        // No caller can take away more than it could hand out.
        for scope in token.scopes.iter().filter_map(|s| s.parse::<Scope>().ok()) {
            caller.require(&scope)?;
        }
        let receipt =
            self.commit(audit, Change::RevokeAccessToken { id: token.id, secret_hash: token.secret_hash }).await?;
        receipt.outcome.map_err(rejected).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_secrets_shaped_like_ours_are_well_formed() {
        assert!(super::is_well_formed(&format!("sr_{}", "a1".repeat(32))));
        for bad in ["", "sr_", "DEMO", &format!("sr_{}", "g1".repeat(32)), &format!("xx_{}", "a1".repeat(32))] {
            assert!(!super::is_well_formed(bad), "{bad}");
        }
    }
}
