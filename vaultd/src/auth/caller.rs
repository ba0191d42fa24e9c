//! The authenticated caller of a request, resolved from `X-Bunker-Token`.

use std::net::IpAddr;

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
        let resolving = resolve(req, true);
        Box::pin(async move { resolving.await?.ok_or(VaultError::Unauthenticated) })
    }
}

/// The caller of a route that also serves people without a token: `None` when the
/// request presents no token, which counts against the anonymous limit at once.
pub struct OptionalCaller(pub Option<Caller>);

impl FromRequest for OptionalCaller {
    type Error = VaultError;
    type Future = LocalBoxFuture<'static, Result<OptionalCaller, VaultError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let resolving = resolve(req, false);
        Box::pin(async move { resolving.await.map(OptionalCaller) })
    }
}

/// Authenticates the request's token. A missing token where one is required, and a
/// token that is not valid, count as failed authentications of the client's address;
/// a client over that limit gets no read barrier for a token unknown here.
fn resolve(req: &HttpRequest, token_required: bool) -> LocalBoxFuture<'static, Result<Option<Caller>, VaultError>> {
    let presented = presented(req);
    let vault = req.app_data::<web::Data<Vault>>().cloned();
    let throttle = req.app_data::<web::Data<Throttle>>().cloned();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let client = client_of(req);
    Box::pin(async move {
        let vault = vault.ok_or(VaultError::Unavailable("not initialised"))?;
        let outcome = match presented? {
            // Counted before anything else about the request (its body above all) is read.
            None if !token_required => {
                return match &throttle {
                    Some(throttle) => throttle.anonymous(client).map(|()| None),
                    None => Ok(None),
                }
            }
            None => Err(VaultError::Unauthenticated),
            Some((secret, purpose)) => {
                let may_wait = || throttle.as_ref().map_or(Ok(()), |throttle| throttle.before_auth(client));
                let authenticated = vault.authenticate(&secret, may_wait).await;
                authenticated.map(|(actor, scopes, subject)| Caller { actor, scopes, purpose, subject })
            }
        };
        match outcome {
            Err(failure @ (VaultError::InvalidToken | VaultError::Unauthenticated)) => Err(failed(
                failure,
                client,
                metrics.as_ref().map(|m| m.get_ref()),
                throttle.as_ref().map(|t| t.get_ref()),
            )),
            Ok(caller) => {
                if let (Some(throttle), Some(_)) = (&throttle, caller.subject) {
                    throttle.subject_token(&caller.actor)?;
                }
                Ok(Some(caller))
            }
            Err(other) => Err(other),
        }
    })
}

/// Counts a failed authentication (a missing or invalid token) against the client's
/// address; what was presented is not kept. Past the limit, the answer is 429.
fn failed(
    failure: VaultError,
    client: Option<IpAddr>,
    metrics: Option<&Metrics>,
    throttle: Option<&Throttle>,
) -> VaultError {
    if let Some(metrics) = metrics {
        metrics.auth_failures.inc();
    }
    match throttle.map(|throttle| throttle.failed_auth(client)) {
        Some(Err(limited)) => limited,
        _ => failure,
    }
}

/// Refuses a request without a token on a route that serves none without one here.
pub fn refuse_missing_token(req: &HttpRequest) -> VaultError {
    let metrics = req.app_data::<web::Data<Metrics>>();
    let throttle = req.app_data::<web::Data<Throttle>>();
    failed(VaultError::Unauthenticated, client_of(req), metrics.map(|m| m.get_ref()), throttle.map(|t| t.get_ref()))
}

/// A request's token and its `X-Purpose`.
type Presented = (Zeroizing<String>, Option<String>);

/// The presented token and purpose, checked for shape; `None` without a token.
fn presented(req: &HttpRequest) -> Result<Option<Presented>, VaultError> {
    let Some(secret) = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| Zeroizing::new(v.to_string()))
    else {
        return Ok(None);
    };
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
    Ok(Some((secret, purpose)))
}
