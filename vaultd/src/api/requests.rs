//! `/v1/requests` and `/v1/request/{rtoken}`: subjects' changes awaiting a DPO
//! (`requests:admin`), who approves (applies) or cancels them. A subject token sees and
//! may cancel its own requests.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::store::RequestStatus;
use crate::vault::Vault;

/// The answer when a subject token's change became a request.
pub fn filed(rtoken: uuid::Uuid) -> HttpResponse {
    ok(json!({"result": "request-created", "rtoken": rtoken}))
}

/// `?status=` beside the paging parameters.
#[derive(Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

pub async fn list(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::requests_admin())?;
    let query: StatusQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| VaultError::bad_request("query takes status=open|approved|cancelled, offset and limit"))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some("open") => Some(RequestStatus::Open),
        Some("approved") => Some(RequestStatus::Approved),
        Some("cancelled" | "canceled") => Some(RequestStatus::Cancelled),
        Some(_) => return Err(VaultError::bad_request("status must be open, approved or cancelled")),
    };
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, rows) = vault.requests(&caller, status, offset, limit).await?;
    Ok(ok(json!({"total": total, "rows": rows})))
}

pub async fn for_user(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, rows) = vault.user_requests(&caller, parse_mode(&mode)?, &id, offset, limit).await?;
    Ok(ok(json!({"total": total, "rows": rows})))
}

/// A DPO, or the subject itself (its own requests only).
fn may_see(caller: &Caller) -> VaultResult<()> {
    match caller.subject {
        Some(_) => Ok(()),
        None => caller.require(&Scope::requests_admin()),
    }
}

pub async fn get(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    may_see(&caller)?;
    let view = vault.request(&caller, &path).await?;
    Ok(ok(json!({"request": view})))
}

fn reason(body: &Body) -> VaultResult<String> {
    match body.optional_object()?.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(reason)) if reason.len() <= 1024 => Ok(reason.clone()),
        Some(_) => Err(VaultError::bad_request("reason must be a string of at most 1024 bytes")),
    }
}

pub async fn approve(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::requests_admin())?;
    caller.require_staff()?;
    vault.approve_request(&caller, &path, reason(&body)?).await?;
    Ok(ok(json!({"result": "done"})))
}

pub async fn cancel(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    may_see(&caller)?;
    vault.cancel_request(&caller, &path, reason(&body)?).await?;
    Ok(ok(json!({"result": "done"})))
}
