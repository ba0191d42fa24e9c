//! `/v1/requests` and `/v1/request/{rtoken}`: subjects' changes awaiting a DPO
//! (`requests:admin`), who approves (applies) or cancels them. A subject token sees and
//! may cancel its own requests.

use super::doc;
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

#[utoipa::path(
    get,
    path = "/v1/requests",
    operation_id = "listRequests",
    tag = "requests",
    summary = "The DPO's queue",
    description = r#"Requires scope `requests:admin`. Audited as `request-list`. Newest first."#,
    extensions(("x-required-scope" = json!("requests:admin"))),
    params(doc::RequestStatusQuery, super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Requests"#,
            body = doc::RequestListReply,
            content_type = "application/json",
            example = json!({"status": "ok", "total": 0, "rows": []})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/requests/{mode}/{id}",
    operation_id = "listUserRequests",
    tag = "requests",
    summary = "A subject's requests",
    description = r#"Requires scope `users:read` (a subject token: its own). Newest first."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Requests"#,
            body = doc::RequestListReply,
            content_type = "application/json",
            example = json!({"status": "ok", "total": 0, "rows": []})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/request/{rtoken}",
    operation_id = "getRequest",
    tag = "requests",
    summary = "A request with the data it would change",
    description = r#"Requires scope `requests:admin`, or the subject's own token. Audited as `request-read`."#,
    extensions(("x-required-scope" = json!("requests:admin"))),
    params(doc::RequestPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The request"#,
            body = doc::RequestReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "request": {
                        "rtoken": "c663c265-2aeb-48c9-9de8-99fd72b79418",
                        "token": "62575d06-ee35-406c-a70d-b23e232c0006",
                        "action": "change-profile",
                        "status": "open",
                        "reason": "",
                        "creationtime": 1767225600,
                        "when": 1767225600,
                        "original": {"first": "Ann"},
                        "change": {"first": "Annie"}
                    }
                }
            )
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn get(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    may_see(&caller)?;
    let view = vault.request(&caller, &path).await?;
    Ok(ok(json!({"request": view})))
}

fn reason(body: &Body) -> VaultResult<String> {
    match body.optional_object()?.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(reason)) if reason.chars().count() <= 1024 => Ok(reason.clone()),
        Some(_) => Err(VaultError::bad_request("reason must be a string of at most 1024 characters")),
    }
}

#[utoipa::path(
    post,
    path = "/v1/request/{rtoken}",
    operation_id = "approveRequest",
    tag = "requests",
    summary = "Approve a request",
    description = r#"Requires scope `requests:admin`. Applies the change (or forget-me) and marks the request approved in one step; audited as the change itself with purpose `request <rtoken> approved`. 409 when it is no longer open."#,
    extensions(("x-required-scope" = json!("requests:admin"))),
    params(doc::RequestPath, doc::Purpose),
    request_body(content((Option<doc::ReasonBody> = "application/json"))),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::ResultReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/request/{rtoken}",
    operation_id = "cancelRequest",
    tag = "requests",
    summary = "Cancel a request",
    description = r#"Requires scope `requests:admin`, or the subject's own token. Audited as `request-cancel`. 409 when it is no longer open."#,
    extensions(("x-required-scope" = json!("requests:admin"))),
    params(doc::RequestPath, doc::Purpose),
    request_body(content((Option<doc::ReasonBody> = "application/json"))),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::ResultReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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
