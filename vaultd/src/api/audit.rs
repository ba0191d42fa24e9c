//! `/v1/audit/...` (Databunker) and `/v1/sys/audit/verify` (the hash chain check).

use super::doc;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::ok;
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

#[utoipa::path(
    get,
    path = "/v1/audit/admin",
    operation_id = "listAuditEvents",
    tag = "audit",
    summary = "List all audit events",
    description = r#"Requires scope `audit:read`. Newest first, paged by `offset` and `limit`. `total` is the number of events in the chain."#,
    extensions(("x-required-scope" = json!("audit:read"))),
    params(super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"A page of audit events"#,
            body = doc::AuditListReply,
            content_type = "application/json"
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn all(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, rows) = vault.store().audit_all(offset, limit)?;
    Ok(ok(json!({"total": total, "rows": rows})))
}

#[utoipa::path(
    get,
    path = "/v1/audit/list/{token}",
    operation_id = "listSubjectAuditEvents",
    tag = "audit",
    summary = "List a subject's audit events",
    description = r#"Requires scope `audit:read`. Newest first, paged by `offset` and `limit`. An unknown subject has no events (an empty page, not 404). 400 when `token` is not a UUID."#,
    extensions(("x-required-scope" = json!("audit:read"))),
    params(doc::SubjectTokenPath, super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"A page of the subject's audit events"#,
            body = doc::AuditListReply,
            content_type = "application/json"
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn for_subject(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let subject = parse_uuid(&path, "token")?;
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, rows) = vault.store().audit_for_subject(&subject, offset, limit)?;
    Ok(ok(json!({"total": total, "rows": rows})))
}

#[utoipa::path(
    get,
    path = "/v1/audit/get/{atoken}",
    operation_id = "getAuditEvent",
    tag = "audit",
    summary = "Read one audit event",
    description = r#"Requires scope `audit:read`. 400 when `atoken` is not a UUID; 404 when no event has that id."#,
    extensions(("x-required-scope" = json!("audit:read"))),
    params(doc::AuditEventPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The audit event"#,
            body = doc::AuditEventReply,
            content_type = "application/json"
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn event(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let id = parse_uuid(&path, "audit event id")?;
    let event = vault.store().audit_event(&id)?.ok_or(VaultError::NotFound("audit event"))?;
    Ok(ok(json!({"event": event})))
}

/// 200 when the chain is intact; 409 with where it breaks otherwise.
#[utoipa::path(
    get,
    path = "/v1/sys/audit/verify",
    operation_id = "verifyAuditChain",
    tag = "audit",
    summary = "Verify the audit hash chain",
    description = r#"Requires scope `audit:read`. Walks the whole chain from genesis, checking each event's hash, its link to the previous event and the recorded head. 200 when intact; 409 with the error envelope plus `verification` saying where the chain breaks."#,
    extensions(("x-required-scope" = json!("audit:read"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The chain is intact"#,
            body = doc::VerifyReply,
            content_type = "application/json",
            example = json!({"status": "ok", "verification": {"intact": true, "events": 42, "head": "9f2c…"}})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (
            status = 409,
            description = r#"The chain is broken"#,
            body = doc::VerifyFailure,
            content_type = "application/json",
            example = json!(
                {
                    "status": "error",
                    "message": "audit chain is broken at event 7: event content does not match its hash",
                    "verification": {
                        "intact": false,
                        "events": 6,
                        "broken_at": 7,
                        "reason": "event content does not match its hash",
                        "head": "9f2c…"
                    }
                }
            )
        ),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn verify(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let report = vault.store().verify_audit()?;
    crate::metrics::instruments().audit_verified(report.intact);
    if report.intact {
        return Ok(ok(json!({"verification": report})));
    }
    let message = format!(
        "audit chain is broken at event {}: {}",
        report.broken_at.unwrap_or_default(),
        report.reason.unwrap_or("unknown")
    );
    Ok(HttpResponse::build(StatusCode::CONFLICT)
        .json(json!({"status": "error", "message": message, "verification": report})))
}

fn parse_uuid(text: &str, what: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| VaultError::bad_request(format!("{what} must be a UUID")))
}
