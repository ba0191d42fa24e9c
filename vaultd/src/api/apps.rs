//! `/v1/userapp` and `/v1/userapps`: per-application records of a subject.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::store::RequestAction;
use crate::vault::Vault;

/// `{mode}/{id}/{app}`. App names are lower-cased first, as Databunker does, so
/// `Shipping` and `shipping` are the same app.
type AppPath = web::Path<(String, String, String)>;

pub async fn create(vault: web::Data<Vault>, caller: Caller, path: AppPath, body: Body) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    vault.refuse_direct_subject_change(&caller)?;
    let token = vault.put_app(&caller, parse_mode(&mode)?, &id, &app, body.object()?).await?;
    Ok(ok(json!({"token": token})))
}

pub async fn update(vault: web::Data<Vault>, caller: Caller, path: AppPath, body: Body) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    let mode = parse_mode(&mode)?;
    let update = body.change()?;
    if vault.files_requests(&caller) {
        let action = RequestAction::ChangeAppData;
        let rtoken = vault.file_request(&caller, mode, &id, action, Some(&app), Some(&update)).await?;
        return Ok(super::requests::filed(rtoken));
    }
    let token = vault.update_app(&caller, mode, &id, &app, &update).await?;
    Ok(ok(json!({"token": token})))
}

pub async fn get(vault: web::Data<Vault>, caller: Caller, path: AppPath) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "read"))?;
    let (token, data) = vault.get_app(&caller, parse_mode(&mode)?, &id, &app).await?;
    Ok(ok(json!({"token": token, "app": app, "data": data})))
}

pub async fn delete(vault: web::Data<Vault>, caller: Caller, path: AppPath) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    vault.refuse_direct_subject_change(&caller)?;
    let token = vault.delete_app(&caller, parse_mode(&mode)?, &id, &app).await?;
    Ok(ok(json!({"result": "done", "token": token})))
}

pub async fn list_for_user(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    let (token, apps) = vault.user_apps(&caller, parse_mode(&mode)?, &id).await?;
    Ok(ok(json!({"token": token, "apps": apps})))
}

pub async fn names(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::app("*", "read"))?;
    Ok(ok(json!({"apps": vault.app_names().await?})))
}
