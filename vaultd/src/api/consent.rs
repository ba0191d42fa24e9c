//! Consent and legal basis: `/v1/lbasis`, `/v1/agreement`, `/v1/agreements` and
//! `/v1/pactivity`, with Databunker's request and response shapes. Managing legal bases
//! and activities (and revoking a basis for everyone) needs `consent:admin`; recording a
//! subject's agreement needs `users:write`, reading it `users:read`. By an email or
//! phone that names no subject yet, agreements are kept for the subject to come
//! (`vault::pending`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::Vault;

pub async fn list_bases(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let rows = vault.legal_bases().await?;
    Ok(ok(json!({"total": rows.len(), "rows": rows})))
}

pub async fn put_basis(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.put_legal_basis(&caller, &path, &body.optional_object()?).await?;
    Ok(ok(json!({})))
}

pub async fn delete_basis(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.delete_legal_basis(&caller, &path).await?;
    Ok(ok(json!({})))
}

pub async fn accept(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let (brief, mode, id) = path.into_inner();
    vault.accept_agreement(&caller, &brief, parse_mode(&mode)?, &id, &body.optional_object()?).await?;
    Ok(ok(json!({})))
}

pub async fn withdraw(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let (brief, mode, id) = path.into_inner();
    vault.withdraw_agreement(&caller, &brief, parse_mode(&mode)?, &id, &body.optional_object()?).await?;
    Ok(ok(json!({})))
}

pub async fn get_agreement(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (brief, mode, id) = path.into_inner();
    let mut rows = vault.agreements(&caller, parse_mode(&mode)?, &id, Some(&brief)).await?;
    Ok(ok(json!({"data": rows.pop()})))
}

pub async fn revoke_all(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.revoke_basis(&caller, &path).await?;
    Ok(ok(json!({})))
}

pub async fn list_agreements(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    let rows = vault.agreements(&caller, parse_mode(&mode)?, &id, None).await?;
    Ok(ok(json!({"total": rows.len(), "rows": rows})))
}

pub async fn list_activities(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let rows: Vec<_> = vault
        .activities()
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "activity": a.activity,
                "title": a.title,
                "script": a.script,
                "fulldesc": a.fulldesc,
                "applicableto": a.applicableto,
                "legalbasis": a.legalbasis.join(","),
                "creationtime": a.creationtime,
            })
        })
        .collect();
    Ok(ok(json!({"total": rows.len(), "rows": rows})))
}

pub async fn put_activity(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.put_activity(&caller, &path, &body.optional_object()?).await?;
    Ok(ok(json!({})))
}

pub async fn delete_activity(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.delete_activity(&caller, &path).await?;
    Ok(ok(json!({})))
}

pub async fn link(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    let (activity, brief) = path.into_inner();
    vault.link_activity(&caller, &activity, &brief, true).await?;
    Ok(ok(json!({})))
}

pub async fn unlink(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    let (activity, brief) = path.into_inner();
    vault.link_activity(&caller, &activity, &brief, false).await?;
    Ok(ok(json!({})))
}
