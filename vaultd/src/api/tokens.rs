//! `/v1/sys/tokens`: create, list and revoke scoped access tokens.

use actix_web::{web, HttpResponse};
use serde_json::json;
use strongroom_admin_api::tokens::{CreateToken, TokenInfo, TokenList};

use super::body::Body;
use super::{ok, ok_body};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::Vault;

pub async fn create(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    let request: CreateToken = body.parse()?;
    ok_body(&vault.create_token(&caller, request).await?)
}

pub async fn list(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    let tokens = vault
        .tokens()
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created: t.created,
            subject: t.subject.map(|s| s.to_string()),
        })
        .collect();
    ok_body(&TokenList { tokens })
}

pub async fn revoke(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    vault.revoke_token(&caller, &path).await?;
    Ok(ok(json!({"result": "done"})))
}
