//! `/v1/exp/...`: Databunker's expiration flow. Start, status and cancel need a token with
//! `users:write` / `users:read`; retain and delete need only the exptoken, which is the
//! subject's credential for them.

use super::doc;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::body::Body;
use super::{ok, ok_body, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::throttle::Anonymous;
use crate::vault::Vault;

/// `POST /v1/exp/start/{mode}/{id}` with `{"expiration":"30d"}` (JSON or form). No body,
/// or no `expiration`, starts the vault's maximum retention period.
#[utoipa::path(
    post,
    path = "/v1/exp/start/{mode}/{id}",
    operation_id = "startExpiration",
    tag = "expiration",
    summary = "Start a subject's expiration",
    description = r#"Requires scope `users:write`. Starts (or restarts, with a new exptoken) a countdown; when it ends the leader forgets the subject unless the subject retained its data. Audited as `expiration-start`. No body, or no `expiration`, starts the vault's maximum (`--max-user-retention-period`, six months of 31 days by default), and a longer one is cut to it."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SubjectPath, doc::Purpose),
    request_body(
        description = "Optional: no body, or no `expiration`, starts the vault's maximum retention period. Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((Option<doc::ExpirationStart> = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"The exptoken to hand to the subject"#,
            links(
                (
                    "RetainData" = (
                        operation_id = "retainData",
                        parameters(("exptoken" = "$response.body#/exptoken")),
                        description = "The subject keeps its data"
                    )
                ),
                (
                    "DeleteByExptoken" = (
                        operation_id = "deleteByExptoken",
                        parameters(("exptoken" = "$response.body#/exptoken")),
                        description = "The subject has its data forgotten"
                    )
                ),
                (
                    "ExpirationStatus" = (
                        operation_id = "expirationStatus",
                        parameters(("mode" = "$request.path.mode"), ("id" = "$request.path.id")),
                        description = "The countdown just started"
                    )
                ),
                (
                    "CancelExpiration" = (
                        operation_id = "cancelExpiration",
                        parameters(("mode" = "$request.path.mode"), ("id" = "$request.path.id")),
                        description = "Stop the countdown"
                    )
                )
            ),
            body = doc::ExpirationStarted,
            content_type = "application/json",
            example = json!({"status": "ok", "exptoken": "6f1c1a4e-2d0b-4a6e-9b7e-0d3c9f1e2a10"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/exp/status/{mode}/{id}",
    operation_id = "expirationStatus",
    tag = "expiration",
    summary = "A subject's expiration",
    description = r#"Requires scope `users:read`. Audited as `expiration-status`. The exptoken (which erases the subject) is answered only to a caller that may erase the subject: one holding `users:write` whose changes are not filed as requests; others get it empty."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The expiration"#,
            body = doc::ExpirationStatusReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "exptime": 1767225600,
                    "expstatus": "wait",
                    "exptoken": "6f1c1a4e-2d0b-4a6e-9b7e-0d3c9f1e2a10"
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
pub async fn status(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    ok_body(&vault.expiration_status(&caller, parse_mode(&mode)?, &id).await?)
}

#[utoipa::path(
    delete,
    path = "/v1/exp/cancel/{mode}/{id}",
    operation_id = "cancelExpiration",
    tag = "expiration",
    summary = "Cancel a subject's expiration",
    description = r#"Requires scope `users:write`. The exptoken stops working. Audited as `expiration-cancel`."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Cancelled"#,
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
#[utoipa::path(
    get,
    path = "/v1/exp/retain/{exptoken}",
    operation_id = "retainData",
    tag = "expiration",
    summary = "The subject keeps its data",
    description = r#"No access token: the exptoken is the credential. The countdown stops (`expstatus: retain`). Audited as `expiration-retain`; an exptoken with no countdown is answered from the node's state, without an audit event. Rate-limited per client address (`--anonymous-requests-per-minute`)."#,
    security(()),
    params(doc::ExptokenPath),
    responses(
        (
            status = 200,
            description = r#"Retained"#,
            body = doc::ResultReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "retained"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 404, response = doc::NotFound),
        (status = 429, response = doc::TooManyRequests),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn retain(_: Anonymous, vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    vault.retain_data(&path).await?;
    Ok(ok(json!({"result": "retained"})))
}

/// `GET /v1/exp/delete/{exptoken}`: no access token; the exptoken is the credential.
#[utoipa::path(
    get,
    path = "/v1/exp/delete/{exptoken}",
    operation_id = "deleteByExptoken",
    tag = "expiration",
    summary = "The subject has its data forgotten now",
    description = r#"No access token: the exptoken is the credential. Forget-me at once (`expstatus: expired`); the exptoken then answers 404. Audited as `expiration-delete`; an exptoken with no countdown is answered from the node's state, without an audit event. Rate-limited per client address (`--anonymous-requests-per-minute`)."#,
    security(()),
    params(doc::ExptokenPath),
    responses(
        (
            status = 200,
            description = r#"Forgotten"#,
            body = doc::ResultReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "deleted"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 404, response = doc::NotFound),
        (status = 429, response = doc::TooManyRequests),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn delete(_: Anonymous, vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    vault.delete_by_exptoken(&path).await?;
    Ok(ok(json!({"result": "deleted"})))
}
