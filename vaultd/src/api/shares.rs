//! `POST /v1/sharedrecord/{mode}/{id}` (scope `users:write`, and the scope that reads
//! what is shared: `users:read` for profile and session fields, `apps:<app>:read` for an
//! app record's) and `GET /v1/get/{record}` (no token: the record id is the
//! partner's credential).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::Vault;

pub async fn create(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let (mode, id) = path.into_inner();
    let record = vault.share_record(&caller, parse_mode(&mode)?, &id, &body.object()?).await?;
    Ok(ok(json!({"record": record})))
}

pub async fn get(vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    let shared = vault.get_shared(&path).await?;
    Ok(match (shared.app, shared.session) {
        (Some(app), _) => ok(json!({"app": app, "data": shared.data})),
        (None, Some(session)) => ok(json!({"session": session, "data": shared.data})),
        (None, None) => ok(json!({"data": shared.data})),
    })
}
