//! `/v1/session/{uuid}` and `/v1/sessions/{mode}/{id}`: Databunker's session API
//! (`users:write` to create and delete, `users:read` to read).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::{SessionView, Vault};

fn session_id(text: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| VaultError::bad_request("session must be a UUID"))
}

fn row(view: SessionView) -> serde_json::Value {
    json!({"session": view.session, "when": view.when, "data": view.data})
}

pub async fn create(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let session = session_id(&path)?;
    vault.put_session(&caller, session, body.object()?).await?;
    Ok(ok(json!({"session": session})))
}

pub async fn get(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let view = vault.get_session(&caller, session_id(&path)?).await?;
    Ok(ok(row(view)))
}

pub async fn delete(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    vault.delete_session(&caller, session_id(&path)?).await?;
    Ok(ok(json!({})))
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
    let (total, sessions) = vault.user_sessions(&caller, parse_mode(&mode)?, &id, offset, limit).await?;
    let rows: Vec<_> = sessions.into_iter().map(row).collect();
    Ok(ok(json!({"total": total, "rows": rows})))
}
