//! Consent and legal basis: `/v1/lbasis`, `/v1/agreement`, `/v1/agreements` and
//! `/v1/pactivity`, with Databunker's request and response shapes. Managing legal bases
//! and activities (and revoking a basis for everyone) needs `consent:admin`; recording a
//! subject's agreement needs `users:write`, reading it `users:read`. By an email or
//! phone that names no subject yet, agreements are kept for the subject to come
//! (`vault::pending`).

use super::doc;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::vault::Vault;

#[utoipa::path(
    get,
    path = "/v1/lbasis",
    operation_id = "listLegalBases",
    tag = "consent",
    summary = "All legal bases",
    description = r#"Requires scope `users:read`. "#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Legal bases"#,
            body = doc::LegalBasisListReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "total": 1,
                    "rows": [
                        {
                            "brief": "marketing",
                            "status": "active",
                            "module": "",
                            "shortdesc": "Marketing emails",
                            "fulldesc": "",
                            "basistype": "consent",
                            "requiredmsg": "",
                            "usercontrol": true,
                            "requiredflag": false,
                            "creationtime": 1767225600
                        }
                    ]
                }
            )
        ),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn list_bases(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let rows = vault.legal_bases().await?;
    Ok(ok(json!({"total": rows.len(), "rows": rows})))
}

#[utoipa::path(
    post,
    path = "/v1/lbasis/{brief}",
    operation_id = "putLegalBasis",
    tag = "consent",
    summary = "Create or change a legal basis",
    description = r#"Requires scope `consent:admin`. Audited as `legal-basis-change`."#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::BriefPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((Option<doc::LegalBasisBody> = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            links(
                (
                    "AcceptAgreement" = (
                        operation_id = "acceptAgreement",
                        parameters(("brief" = "$request.path.brief")),
                        description = "A subject agrees to this legal basis"
                    )
                ),
                (
                    "DeleteLegalBasis" = (
                        operation_id = "deleteLegalBasis",
                        parameters(("brief" = "$request.path.brief")),
                        description = "Delete the legal basis"
                    )
                ),
                (
                    "RevokeLegalBasis" = (
                        operation_id = "revokeLegalBasis",
                        parameters(("brief" = "$request.path.brief")),
                        description = "Revoke it for everyone"
                    )
                )
            ),
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/lbasis/{brief}",
    operation_id = "deleteLegalBasis",
    tag = "consent",
    summary = "Delete a legal basis",
    description = r#"Requires scope `consent:admin`. Unlinks it from every activity; subjects' agreements to it are kept."#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::BriefPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn delete_basis(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.delete_legal_basis(&caller, &path).await?;
    Ok(ok(json!({})))
}

#[utoipa::path(
    post,
    path = "/v1/agreement/{brief}/{mode}/{id}",
    operation_id = "acceptAgreement",
    tag = "consent",
    summary = "A subject agrees to a legal basis",
    description = r#"Requires scope `users:write`. With `status: no`, records a withdrawal instead. By an `email` or `phone` that names no subject yet (consent before sign-up), the agreement is kept for that identifier (sealed, never in plaintext) and taken over by the subject later created with it. Audited as `consent-accept` / `consent-withdraw`."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::AgreementPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((Option<doc::AgreementBody> = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            links(
                (
                    "GetAgreement" = (
                        operation_id = "getAgreement",
                        parameters(
                            ("brief" = "$request.path.brief"),
                            ("mode" = "$request.path.mode"),
                            ("id" = "$request.path.id")
                        ),
                        description = "Read the agreement"
                    )
                ),
                (
                    "WithdrawAgreement" = (
                        operation_id = "withdrawAgreement",
                        parameters(
                            ("brief" = "$request.path.brief"),
                            ("mode" = "$request.path.mode"),
                            ("id" = "$request.path.id")
                        ),
                        description = "Withdraw it"
                    )
                )
            ),
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/agreement/{brief}/{mode}/{id}",
    operation_id = "withdrawAgreement",
    tag = "consent",
    summary = "A subject withdraws its agreement",
    description = r#"Requires scope `users:write`. Audited as `consent-withdraw`."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::AgreementPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((Option<doc::AgreementBody> = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/agreement/{brief}/{mode}/{id}",
    operation_id = "getAgreement",
    tag = "consent",
    summary = "A subject's agreement to one legal basis",
    description = r#"Requires scope `users:read`. Audited as `consent-read`."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::AgreementPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The agreement"#,
            body = doc::AgreementReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "data": {
                        "token": "861be8ba-4644-49a7-8a41-44e9fe86b57f",
                        "brief": "marketing",
                        "status": "yes",
                        "creationtime": 1767225600,
                        "when": 1767225600,
                        "starttime": 0,
                        "endtime": 0,
                        "mode": "login",
                        "agreementmethod": "api",
                        "referencecode": "web-form",
                        "lastmodifiedby": ""
                    }
                }
            )
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/agreement/{brief}",
    operation_id = "revokeLegalBasis",
    tag = "consent",
    summary = "Revoke a legal basis for everyone",
    description = r#"Requires scope `consent:admin`. Every agreement to it becomes `revoked`. Audited as `consent-revoke-all`."#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::BriefPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn revoke_all(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.revoke_basis(&caller, &path).await?;
    Ok(ok(json!({})))
}

#[utoipa::path(
    get,
    path = "/v1/agreements/{mode}/{id}",
    operation_id = "listAgreements",
    tag = "consent",
    summary = "A subject's agreements",
    description = r#"Requires scope `users:read`. Kept after the subject is forgotten. Audited as `consent-read`."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Agreements"#,
            body = doc::AgreementListReply,
            content_type = "application/json",
            example = json!({"status": "ok", "total": 0, "rows": []})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/pactivity",
    operation_id = "listActivities",
    tag = "consent",
    summary = "All processing activities",
    description = r#"Requires scope `users:read`. "#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Activities"#,
            body = doc::ActivityListReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "total": 1,
                    "rows": [
                        {
                            "activity": "newsletter",
                            "title": "Newsletter",
                            "script": "",
                            "fulldesc": "",
                            "applicableto": "",
                            "legalbasis": "marketing",
                            "creationtime": 1767225600
                        }
                    ]
                }
            )
        ),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    post,
    path = "/v1/pactivity/{activity}",
    operation_id = "putActivity",
    tag = "consent",
    summary = "Create or change a processing activity",
    description = r#"Requires scope `consent:admin`. Keeps its links. Audited as `activity-change`."#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::ActivityPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((Option<doc::ActivityBody> = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            links(
                (
                    "DeleteActivity" = (
                        operation_id = "deleteActivity",
                        parameters(("activity" = "$request.path.activity")),
                        description = "Delete the activity"
                    )
                ),
                (
                    "LinkActivity" = (
                        operation_id = "linkActivity",
                        parameters(("activity" = "$request.path.activity")),
                        description = "Link a legal basis to it"
                    )
                )
            ),
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/pactivity/{activity}",
    operation_id = "deleteActivity",
    tag = "consent",
    summary = "Delete a processing activity",
    description = r#"Requires scope `consent:admin`. "#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::ActivityPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn delete_activity(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<String>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::consent_admin())?;
    vault.delete_activity(&caller, &path).await?;
    Ok(ok(json!({})))
}

#[utoipa::path(
    post,
    path = "/v1/pactivity/{activity}/{brief}",
    operation_id = "linkActivity",
    tag = "consent",
    summary = "Link an activity to a legal basis",
    description = r#"Requires scope `consent:admin`. "#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::ActivityBriefPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            links(
                (
                    "UnlinkActivity" = (
                        operation_id = "unlinkActivity",
                        parameters(("activity" = "$request.path.activity"), ("brief" = "$request.path.brief")),
                        description = "Unlink it again"
                    )
                )
            ),
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    delete,
    path = "/v1/pactivity/{activity}/{brief}",
    operation_id = "unlinkActivity",
    tag = "consent",
    summary = "Unlink an activity from a legal basis",
    description = r#"Requires scope `consent:admin`. "#,
    extensions(("x-required-scope" = json!("consent:admin"))),
    params(doc::ActivityBriefPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Done"#,
            body = doc::OkReply,
            content_type = "application/json",
            example = json!({"status": "ok"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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
