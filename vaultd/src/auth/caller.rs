//! The authenticated caller of a request, resolved from `X-Bunker-Token`.

use futures_util::future::LocalBoxFuture;
use zeroize::Zeroizing;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use super::Scope;
use crate::error::VaultError;
use crate::metrics::Metrics;
use crate::throttle::{client_of, Throttle};
use crate::vault::Vault;

pub const ROOT_ACTOR: &str = "root";
const ANONYMOUS_ACTOR: &str = "anonymous";
const TOKEN_HEADER: &str = "X-Bunker-Token";
const PURPOSE_HEADER: &str = "X-Purpose";
const MAX_PURPOSE_LEN: usize = 128;

#[derive(Clone, Debug)]
pub struct Caller {
    /// The token id recorded in audit events (`root` for the root token).
    pub actor: String,
    pub scopes: Vec<Scope>,
    /// Why the caller is accessing the data, from `X-Purpose`; audited.
    pub purpose: Option<String>,
    /// A subject token's subject: the only one whose data the caller may reach.
    pub subject: Option<uuid::Uuid>,
}

impl Caller {
    /// Someone without a token, where a route allows that: holds no scope, and is audited
    /// as `anonymous`.
    pub fn anonymous() -> Self {
        Caller { actor: ANONYMOUS_ACTOR.into(), scopes: Vec::new(), purpose: None, subject: None }
    }

    /// Whether this is someone without a token.
    pub fn is_anonymous(&self) -> bool {
        self.actor == ANONYMOUS_ACTOR && self.scopes.is_empty()
    }

    /// Refuses subject tokens (routes that are not about one subject's own data).
    pub fn require_staff(&self) -> Result<(), VaultError> {
        match self.subject {
            Some(_) => Err(VaultError::NotOwnSubject),
            None => Ok(()),
        }
    }

    pub fn require(&self, needed: &Scope) -> Result<(), VaultError> {
        if self.scopes.iter().any(|held| held.covers(needed)) {
            Ok(())
        } else {
            Err(VaultError::Forbidden(needed.to_string()))
        }
    }
}

impl FromRequest for Caller {
    type Error = VaultError;
    type Future = LocalBoxFuture<'static, Result<Caller, VaultError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = presented(req);
        let vault = req.app_data::<web::Data<Vault>>().cloned();
        let throttle = req.app_data::<web::Data<Throttle>>().cloned();
        let metrics = req.app_data::<web::Data<Metrics>>().cloned();
        let client = client_of(req);
        Box::pin(async move {
            let vault = vault.ok_or(VaultError::Unavailable("not initialised"))?;
            let (secret, purpose) = presented?;
            match vault.authenticate(&secret).await {
                Ok((actor, scopes, subject)) => Ok(Caller { actor, scopes, purpose, subject }),
                Err(VaultError::InvalidToken) => {
                    // Counted and limited by address; what was presented is dropped here.
                    if let Some(metrics) = metrics {
                        metrics.auth_failures.inc();
                    }
                    match throttle {
                        Some(throttle) => throttle.failed_auth(client).and(Err(VaultError::InvalidToken)),
                        None => Err(VaultError::InvalidToken),
                    }
                }
                Err(other) => Err(other),
            }
        })
    }
}

/// The presented token and purpose, checked for shape.
fn presented(req: &HttpRequest) -> Result<(Zeroizing<String>, Option<String>), VaultError> {
    let secret = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| Zeroizing::new(v.to_string()))
        .ok_or(VaultError::Unauthenticated)?;
    let purpose = match req.headers().get(PURPOSE_HEADER) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| VaultError::bad_request("X-Purpose must be printable ASCII"))?;
            if text.len() > MAX_PURPOSE_LEN || text.chars().any(|c| c.is_control()) {
                return Err(VaultError::bad_request(format!(
                    "X-Purpose must be at most {MAX_PURPOSE_LEN} printable characters"
                )));
            }
            Some(text.to_string())
        }
    };
    Ok((secret, purpose))
}
