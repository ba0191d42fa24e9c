//! `/v1/sys/tokens`: create, list and revoke scoped access tokens.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::ok;
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::{TokenRequest, Vault};

pub async fn create(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    let request: TokenRequest = body.parse()?;
    let created = vault.create_token(&caller, request).await?;
    Ok(ok(json!({"id": created.id, "name": created.name, "scopes": created.scopes, "token": created.token})))
}

pub async fn list(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    let tokens: Vec<_> = vault
        .tokens()
        .await?
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "scopes": t.scopes, "created": t.created}))
        .collect();
    Ok(ok(json!({"tokens": tokens})))
}

pub async fn revoke(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    vault.revoke_token(&caller, &path).await?;
    Ok(ok(json!({"result": "done"})))
}
