//! `/v1/exp/...`: Databunker's expiration flow. Start, status and cancel need a token with
//! `users:write` / `users:read`; retain and delete need only the exptoken, which is the
//! subject's credential for them.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::body::Body;
use super::{ok, ok_body, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

/// `POST /v1/exp/start/{mode}/{id}` with `{"expiration":"30d"}` (JSON or form). No body,
/// or no `expiration`, starts the vault's maximum retention period.
pub async fn start(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    // The controller's tool: a subject could otherwise erase itself past the DPO.
    caller.require_staff()?;
    let (mode, id) = path.into_inner();
    let mode = parse_mode(&mode)?;
    let request = body.optional_object()?;
    match request.get("status") {
        None | Some(Value::Null) => {}
        Some(Value::String(status)) if status == "wait" => {}
        Some(_) => return Err(VaultError::bad_request("status may only be \"wait\"")),
    }
    let exptoken = vault.start_expiration(&caller, mode, &id, request.get("expiration")).await?;
    Ok(ok(json!({"exptoken": exptoken})))
}

pub async fn status(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    ok_body(&vault.expiration_status(&caller, parse_mode(&mode)?, &id).await?)
}

pub async fn cancel(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    caller.require_staff()?;
    let (mode, id) = path.into_inner();
    vault.cancel_expiration(&caller, parse_mode(&mode)?, &id).await?;
    Ok(ok(json!({})))
}

/// `GET /v1/exp/retain/{exptoken}`: no access token; the exptoken is the credential.
pub async fn retain(vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    vault.retain_data(&path).await?;
    Ok(ok(json!({"result": "retained"})))
}

/// `GET /v1/exp/delete/{exptoken}`: no access token; the exptoken is the credential.
pub async fn delete(vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    vault.delete_by_exptoken(&path).await?;
    Ok(ok(json!({"result": "deleted"})))
}
