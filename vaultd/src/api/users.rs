//! `/v1/user` and `/v1/users`: data subjects' profiles.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::store::RequestAction;
use crate::vault::Vault;

/// `POST /v1/user`. Without any token, only when anonymous creation is enabled (e.g. a
/// public sign-up form); a wrong token is refused either way.
pub async fn create(
    vault: web::Data<Vault>,
    caller: Result<Caller, VaultError>,
    body: Body,
) -> VaultResult<HttpResponse> {
    let caller = match caller {
        Ok(caller) => {
            caller.require(&Scope::users("write"))?;
            caller.require_staff()?;
            caller
        }
        Err(VaultError::Unauthenticated) if vault.settings().anonymous_create => Caller::anonymous(),
        Err(error) => return Err(error),
    };
    let token = vault.create_user(&caller, body.object()?).await?;
    Ok(ok(json!({"token": token})))
}

pub async fn get(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    let (token, data) = vault.get_user(&caller, parse_mode(&mode)?, &id).await?;
    Ok(ok(json!({"token": token, "data": data})))
}

pub async fn update(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let (mode, id) = path.into_inner();
    let mode = parse_mode(&mode)?;
    let update = body.change()?;
    if vault.files_requests(&caller) {
        let rtoken = vault.file_request(&caller, mode, &id, RequestAction::ChangeProfile, None, Some(&update)).await?;
        return Ok(super::requests::filed(rtoken));
    }
    let token = vault.update_user(&caller, mode, &id, &update).await?;
    Ok(ok(json!({"token": token})))
}

pub async fn forget(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let (mode, id) = path.into_inner();
    let mode = parse_mode(&mode)?;
    if vault.files_requests(&caller) {
        let rtoken = vault.file_request(&caller, mode, &id, RequestAction::ForgetMe, None, None).await?;
        return Ok(super::requests::filed(rtoken));
    }
    let token = vault.forget_user(&caller, mode, &id).await?;
    Ok(ok(json!({"result": "done", "token": token})))
}

pub async fn list(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    caller.require_staff()?;
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (users, total) = vault.list_users(&caller, offset, limit).await?;
    let rows: Vec<_> = users.into_iter().map(|(token, data)| json!({"token": token, "data": data})).collect();
    Ok(ok(json!({"total": total, "rows": rows})))
}
