//! `/v1/session/{uuid}` and `/v1/sessions/{mode}/{id}`: Databunker's session API
//! (`users:write` to create and delete, `users:read` to read).

use super::doc;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::{SessionView, Vault};

fn session_id(text: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| VaultError::bad_request("session must be a UUID"))
}

fn row(view: SessionView) -> serde_json::Value {
    json!({"session": view.session, "when": view.when, "data": view.data})
}

#[utoipa::path(
    post,
    path = "/v1/session/{session}",
    operation_id = "putSession",
    tag = "sessions",
    summary = "Create or replace a session",
    description = r#"Requires scope `users:write`. Sealed under the linked subject's key (and removed when the subject is forgotten), or under a key of its own. Audited as `session-create`. A `login`, `email`, `phone`, `custom` or `token` field (tried in that order, as Databunker does) links the session to that subject (one naming no active subject leaves it unlinked, as in Databunker; a subject token may only link its own subject); `expiration` (`30s`, `12h`, `30d`, `6m`, seconds or a Unix time; one the vault cannot read asks for the maximum, as in Databunker) ends it, at most `--max-session-ttl` after now."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SessionPath, doc::Purpose),
    request_body(
        description = "Also taken as a form (`application/x-www-form-urlencoded`) of the same fields, their values as text.",
        content((doc::SessionBody = "application/json"))
    ),
    responses(
        (
            status = 200,
            description = r#"Stored"#,
            links(
                (
                    "GetSession" = (
                        operation_id = "getSession",
                        parameters(("session" = "$response.body#/session")),
                        description = "Read the session"
                    )
                ),
                (
                    "DeleteSession" = (
                        operation_id = "deleteSession",
                        parameters(("session" = "$response.body#/session")),
                        description = "Delete the session"
                    )
                )
            ),
            body = doc::SessionCreated,
            content_type = "application/json",
            example = json!({"status": "ok", "session": "2b0e1c35-3c1c-4b52-9d6a-0f4c2a8e9b11"})
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
    path: web::Path<String>,
    body: Body,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    let session = session_id(&path)?;
    vault.put_session(&caller, session, body.object()?).await?;
    Ok(ok(json!({"session": session})))
}

#[utoipa::path(
    get,
    path = "/v1/session/{session}",
    operation_id = "getSession",
    tag = "sessions",
    summary = "Read a session that has not ended",
    description = r#"Requires scope `users:read`. Audited as `session-read`. A missing or ended session is 404 with the message `not found`, as in Databunker (its session store reads that as "no session yet")."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SessionPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The session"#,
            body = doc::SessionReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "session": "2b0e1c35-3c1c-4b52-9d6a-0f4c2a8e9b11",
                    "when": 1767225600,
                    "data": {"ip": "203.0.113.7"}
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
pub async fn get(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let view = vault.get_session(&caller, session_id(&path)?).await?;
    Ok(ok(row(view)))
}

#[utoipa::path(
    delete,
    path = "/v1/session/{session}",
    operation_id = "deleteSession",
    tag = "sessions",
    summary = "Delete a session",
    description = r#"Requires scope `users:write`. Audited as `session-delete`. Deleting a session that does not exist succeeds, as in Databunker."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SessionPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Deleted"#,
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
pub async fn delete(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("write"))?;
    vault.delete_session(&caller, session_id(&path)?).await?;
    Ok(ok(json!({})))
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{mode}/{id}",
    operation_id = "listUserSessions",
    tag = "sessions",
    summary = "A subject's sessions that have not ended",
    description = r#"Requires scope `users:read`. Audited as `session-list`."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"Sessions"#,
            body = doc::SessionListReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "total": 1,
                    "rows": [
                        {
                            "session": "2b0e1c35-3c1c-4b52-9d6a-0f4c2a8e9b11",
                            "when": 1767225600,
                            "data": {"ip": "203.0.113.7"}
                        }
                    ]
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
pub async fn for_user(
    vault: web::Data<Vault>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    let (mode, id) = path.into_inner();
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (total, sessions) = vault.user_sessions(&caller, parse_mode(&mode)?, &id, offset, limit).await?;
    let rows: Vec<_> = sessions.into_iter().map(row).collect();
    Ok(ok(json!({"total": total, "rows": rows})))
}
