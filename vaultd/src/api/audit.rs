//! `/v1/audit/...` (Databunker) and `/v1/sys/audit/verify` (the hash chain check).

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::ok;
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

pub async fn all(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, rows) = vault.store().audit_all(offset, limit)?;
    Ok(ok(json!({"total": total, "rows": rows})))
}

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

pub async fn event(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let id = parse_uuid(&path, "audit event id")?;
    let event = vault.store().audit_event(&id)?.ok_or(VaultError::NotFound("audit event"))?;
    Ok(ok(json!({"event": event})))
}

/// 200 when the chain is intact; 409 with where it breaks otherwise.
pub async fn verify(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::audit_read())?;
    vault.catch_up().await?;
    let report = vault.store().verify_audit()?;
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
