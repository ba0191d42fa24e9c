//! The one error type of the vault's request path, and how it maps onto HTTP.
//!
//! Messages are fixed strings or field names: personal data and secrets must never
//! reach an error message, because error messages reach logs and clients. A 5xx answer
//! says only what happened in plain words; the component's own error text (sled's, an
//! I/O error's, openraft's) goes to the log.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde_json::json;

use crate::cluster::{AdminError, Refusal};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or malformed X-Bunker-Token")]
    Unauthenticated,
    #[error("access token is not valid")]
    InvalidToken,
    #[error("token lacks scope {0}")]
    Forbidden(String),
    #[error("a subject token reaches only its own subject's data")]
    NotOwnSubject,
    #[error("a subject token's changes go to the DPO as requests, and this change has no request form")]
    NeedsRequest,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Databunker's words exactly: its published express-session store takes a 4xx
    /// saying "not found" to mean "no session yet", and any other answer as a failure.
    #[error("not found")]
    SessionNotFound,
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the {what} would exceed {limit} bytes, the most this vault stores")]
    RecordTooLarge { what: &'static str, limit: usize },
    /// A client address or subject token over a rate limit; it may try again after this
    /// many seconds.
    #[error("too many requests; retry later")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0} is disabled on this vault")]
    Disabled(&'static str),
    #[error("the vault cannot serve this request right now: {0}")]
    Unavailable(&'static str),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::Refusal),
    #[error("{0}")]
    Admin(crate::cluster::AdminError),
    #[error("storage failure")]
    Storage(#[from] crate::store::StoreError),
    #[error("cryptographic failure")]
    Crypto(#[from] crate::crypto::CryptoError),
}

impl VaultError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        VaultError::BadRequest(message.into())
    }
}

impl ResponseError for VaultError {
    fn status_code(&self) -> StatusCode {
        match self {
            VaultError::BadRequest(_) => StatusCode::BAD_REQUEST,
            VaultError::Unauthenticated | VaultError::InvalidToken => StatusCode::UNAUTHORIZED,
            VaultError::Forbidden(_)
            | VaultError::NotOwnSubject
            | VaultError::NeedsRequest
            | VaultError::Disabled(_) => StatusCode::FORBIDDEN,
            VaultError::NotFound(_) | VaultError::SessionNotFound => StatusCode::NOT_FOUND,
            VaultError::Duplicate(_) | VaultError::Conflict(_) => StatusCode::CONFLICT,
            VaultError::PayloadTooLarge(_) | VaultError::RecordTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            VaultError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            VaultError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            VaultError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            VaultError::Cluster(refusal) => refusal_status(refusal),
            VaultError::Admin(AdminError::BadRequest(_)) => StatusCode::BAD_REQUEST,
            VaultError::Admin(AdminError::NotFound(_)) => StatusCode::NOT_FOUND,
            VaultError::Admin(AdminError::Conflict(_)) => StatusCode::CONFLICT,
            VaultError::Admin(AdminError::Refused(refusal)) => refusal_status(refusal),
            VaultError::Storage(_) | VaultError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = match self {
            VaultError::Cluster(refusal) | VaultError::Admin(AdminError::Refused(refusal)) => {
                refusal_message(refusal).map_or_else(|| self.to_string(), str::to_string)
            }
            _ => self.to_string(),
        };
        if status.is_server_error() {
            // The source chain carries no request data, only the failing component.
            tracing::error!(error = %self, source = ?std::error::Error::source(self), "request failed");
        }
        let mut response = HttpResponse::build(status);
        if let VaultError::TooManyRequests { retry_after_secs } = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        response.json(json!({"status": "error", "message": message}))
    }
}

fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::AlreadyMember => StatusCode::CONFLICT,
        Refusal::Timeout | Refusal::NotLeader | Refusal::NoLeader | Refusal::Uninitialized => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Refusal::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
        Refusal::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A fixed message for a refusal whose own text is a component's error (logged instead).
fn refusal_message(refusal: &Refusal) -> Option<&'static str> {
    match refusal {
        Refusal::Failed(_) => Some("internal error: the cluster could not carry out the request"),
        _ => None,
    }
}

impl From<AdminError> for VaultError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Refused(refusal) => VaultError::Cluster(refusal),
            other => VaultError::Admin(other),
        }
    }
}

pub type VaultResult<T> = Result<T, VaultError>;

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn answer(error: VaultError) -> (u16, String) {
        let response = error.error_response();
        let status = response.status().as_u16();
        let body = response.into_body().try_into_bytes().unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn a_server_error_answers_a_fixed_message_never_the_components_text() {
        let internal = "when Write StateMachine: sled IO error: No space left on device (os error 28)";
        let failures = [
            VaultError::Cluster(Refusal::Failed(internal.into())),
            VaultError::Admin(AdminError::Refused(Refusal::Failed(internal.into()))),
            VaultError::Storage(crate::store::StoreError::Io(std::io::Error::other(internal))),
        ];
        for failure in failures {
            let (status, body) = answer(failure);
            assert_eq!(status, 500);
            assert!(!body.contains("sled") && !body.contains("os error"), "{body}");
        }
        assert_eq!(answer(VaultError::Cluster(Refusal::NoSpace)).0, 507);
        let (status, body) = answer(VaultError::Cluster(Refusal::Stopped));
        assert_eq!(status, 503);
        assert!(body.contains("this node's storage failed; it needs a restart"), "{body}");
    }
}
