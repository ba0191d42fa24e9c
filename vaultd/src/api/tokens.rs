//! `/v1/sys/tokens`: create, list and revoke scoped access tokens.

use super::doc;
use actix_web::{web, HttpResponse};
use serde_json::json;
use strongroom_admin_api::tokens::{CreateToken, TokenInfo, TokenList};

use super::body::Body;
use super::{ok, ok_body};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::Vault;

#[utoipa::path(
    post,
    path = "/v1/sys/tokens",
    operation_id = "createAccessToken",
    tag = "tokens",
    summary = "Create a scoped access token",
    description = r#"Requires scope `tokens:admin`. The secret (`token`) is returned once and only its SHA-256 is kept. Unknown fields, an empty or over-long name, an empty scope list or an unknown scope are 400; asking for a scope the caller does not hold itself is 403."#,
    extensions(("x-required-scope" = json!("tokens:admin"))),
    params(doc::Purpose),
    request_body(
        content(
            (
                doc::TokenRequest = "application/json",
                example = json!({"name": "shop-backend", "scopes": ["users:read", "apps:shop:*"]})
            )
        )
    ),
    responses(
        (
            status = 200,
            description = r#"The new token, with its secret"#,
            links(
                (
                    "RevokeAccessToken" = (
                        operation_id = "revokeAccessToken",
                        parameters(("id" = "$response.body#/id")),
                        description = "Revoke the new token"
                    )
                )
            ),
            body = doc::CreatedTokenReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "id": "tok-1a2b3c4d5e6f7081",
                    "name": "shop-backend",
                    "scopes": ["users:read", "apps:shop:*"],
                    "token": "sr_…"
                }
            )
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn create(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    let request: CreateToken = body.parse()?;
    ok_body(&vault.create_token(&caller, request).await?)
}

#[utoipa::path(
    get,
    path = "/v1/sys/tokens",
    operation_id = "listAccessTokens",
    tag = "tokens",
    summary = "List access tokens",
    description = r#"Requires scope `tokens:admin`. Ids, names, scopes and creation times; never the secrets."#,
    extensions(("x-required-scope" = json!("tokens:admin"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The access tokens"#,
            body = doc::TokenListReply,
            content_type = "application/json"
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/sys/tokens/{id}",
    operation_id = "revokeAccessToken",
    tag = "tokens",
    summary = "Revoke an access token",
    description = r#"Requires scope `tokens:admin` and every scope the token holds (no caller takes away more than it could hand out). The token stops authenticating at once. 404 when no token has that id."#,
    extensions(("x-required-scope" = json!("tokens:admin"))),
    params(doc::TokenIdPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The token was revoked"#,
            body = doc::DoneReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn revoke(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::tokens_admin())?;
    vault.revoke_token(&caller, &path).await?;
    Ok(ok(json!({"result": "done"})))
}

#[utoipa::path(
    post,
    path = "/v1/sys/root-token/retire",
    operation_id = "retireRootToken",
    tag = "tokens",
    summary = "Retire the root token",
    description = r#"Only the root token itself, and only once another token (not a subject token) holds every scope (`users:*`, `apps:*:*`, `audit:read`, `tokens:admin`, `retention:run`, `cluster:admin`, `consent:admin`, `requests:admin`, `backup:read`); otherwise 409. The last such token cannot be revoked afterwards. From then on the root token is refused on every node (401), for good; administer the vault with scoped tokens. Audited as `root-token-retire`."#,
    extensions(("x-required-scope" = json!("*"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The root token was retired"#,
            body = doc::DoneReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn retire_root(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    vault.retire_root_token(&caller).await?;
    Ok(ok(json!({"result": "done"})))
}
