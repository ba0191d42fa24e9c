//! `POST /v1/sharedrecord/{mode}/{id}` (scope `users:write`, and the scope that reads
//! what is shared: `users:read` for profile and session fields, `apps:<app>:read` for an
//! app record's) and `GET /v1/get/{record}` (no token: the record id is the
//! partner's credential).

use super::doc;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::VaultResult;
use crate::throttle::Anonymous;
use crate::vault::Vault;

#[utoipa::path(
    post,
    path = "/v1/sharedrecord/{mode}/{id}",
    operation_id = "shareRecord",
    tag = "sharing",
    summary = "Share chosen fields of a subject",
    description = r#"Requires scope `users:write` and the scope that reads what is shared: `users:read` for profile or session fields, `apps:<app>:read` (instead) with `app`. The vault keeps only the SHA-256 of the record id; the share ends at its expiration and goes when the subject is forgotten. Audited as `share-create` (purpose `shared with <partner>`). `fields` is required; `app` shares from an app record, `session` from one of the subject's sessions (not both)."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SubjectPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((doc::ShareRequest = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"The record id to hand to the partner"#,
            links(
                (
                    "GetSharedRecord" = (
                        operation_id = "getSharedRecord",
                        parameters(("record" = "$response.body#/record")),
                        description = "Read the shared fields"
                    )
                )
            ),
            body = doc::ShareCreated,
            content_type = "application/json",
            example = json!({"status": "ok", "record": "9d3e5f0a-6b1c-4e2d-8f7a-1c2b3d4e5f60"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/get/{record}",
    operation_id = "getSharedRecord",
    tag = "sharing",
    summary = "Read a shared record",
    description = r#"No access token: the record id is the credential. Only the shared fields, until the share ends (then 404). Audited as `share-read`; an unknown or ended record is answered from the node's state, without an audit event. Rate-limited per client address (`--anonymous-requests-per-minute`). A share of an app record also answers `app`, a share of a session `session`."#,
    security(()),
    params(doc::RecordPath),
    responses(
        (
            status = 200,
            description = r#"The shared fields"#,
            body = doc::SharedReply,
            content_type = "application/json",
            example = json!({"status": "ok", "data": {"first": "John", "email": "john@example.com"}})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 404, response = doc::NotFound),
        (status = 429, response = doc::TooManyRequests),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn get(_: Anonymous, vault: web::Data<Vault>, path: web::Path<String>) -> VaultResult<HttpResponse> {
    let shared = vault.get_shared(&path).await?;
    Ok(match (shared.app, shared.session) {
        (Some(app), _) => ok(json!({"app": app, "data": shared.data})),
        (None, Some(session)) => ok(json!({"session": session, "data": shared.data})),
        (None, None) => ok(json!({"data": shared.data})),
    })
}
