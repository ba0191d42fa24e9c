//! The HTTP API: Databunker v1 routes plus Strongroom's `/v1/sys/...` additions. Handlers
//! parse and authorise; the `Vault` does the work. Every response is a JSON envelope:
//! `{"status":"ok", ...}` or `{"status":"error","message":...}` with a fitting code.

mod apps;
mod audit;
mod backup;
mod body;
mod cluster;
mod consent;
pub mod doc;
mod expiration;
mod middleware;
mod retention;
mod sessions;
mod shares;
mod subject_requests;
mod system;
mod table;
mod tokens;
mod users;

use actix_web::{
    middleware::{from_fn, NormalizePath},
    web, HttpResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};

pub use body::BodyLimit;
pub use table::ROUTES;

use crate::error::{VaultError, VaultResult};
use crate::identifiers::Mode;

/// Registers every route. `max_body` is the request-body limit in bytes.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(BodyLimit(max_body)).service(
        web::scope("")
            .wrap(from_fn(middleware::refuse_when_failed))
            .wrap(from_fn(middleware::observe))
            // Databunker's router answers `/v1/user/` like `/v1/user` (its published
            // client posts to the former); so do we, for every route.
            .wrap(NormalizePath::trim())
            .configure(table::register)
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> VaultResult<HttpResponse> {
    Err(VaultError::NotFound("route"))
}

/// `{"status":"ok"}` merged with the payload's fields.
pub(crate) fn ok(payload: Value) -> HttpResponse {
    let mut body = json!({"status": "ok"});
    if let (Value::Object(target), Value::Object(fields)) = (&mut body, payload) {
        target.extend(fields);
    }
    HttpResponse::Ok().json(body)
}

/// `{"status":"ok"}` merged with the fields of an admin-API body.
pub(crate) fn ok_body<T: serde::Serialize>(body: &T) -> VaultResult<HttpResponse> {
    let payload = serde_json::to_value(body).map_err(|_| VaultError::Unavailable("answer cannot be encoded"))?;
    Ok(ok(payload))
}

pub(crate) fn parse_mode(mode: &str) -> VaultResult<Mode> {
    mode.parse().map_err(|_| VaultError::bad_request("unknown mode: use token, login, email, phone or custom"))
}

/// `?offset=&limit=` paging, as Databunker's list routes take it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Rows to skip; any count past the last row is an empty page
    #[serde(default, deserialize_with = "saturating_count")]
    #[param(minimum = 0, default = 0)]
    offset: usize,
    /// Rows to return, 1-1000
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 10)]
    limit: usize,
}

fn default_limit() -> usize {
    10
}

/// A count of decimal digits, however long (past `usize::MAX` it is `usize::MAX`).
fn saturating_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(serde::de::Error::custom("not a non-negative integer"));
    }
    Ok(text.parse().unwrap_or(usize::MAX))
}

impl Paging {
    pub const MAX_LIMIT: usize = 1000;

    pub fn checked(&self) -> VaultResult<(usize, usize)> {
        if self.limit == 0 || self.limit > Self::MAX_LIMIT {
            return Err(VaultError::bad_request(format!("limit must be between 1 and {}", Self::MAX_LIMIT)));
        }
        Ok((self.offset, self.limit))
    }
}

/// Query-string parsing with a JSON error instead of actix's plain-text one.
pub(crate) fn paging(query: &str) -> VaultResult<Paging> {
    serde_urlencoded::from_str(query)
        .map_err(|_| VaultError::bad_request("offset and limit must be non-negative integers"))
}
