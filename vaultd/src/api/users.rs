//! `/v1/user` and `/v1/users`: data subjects' profiles.

use super::doc;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::Body;
use super::{ok, parse_mode};
use crate::auth::{refuse_missing_token, Caller, OptionalCaller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::store::RequestAction;
use crate::vault::Vault;

/// `POST /v1/user`. Without any token, only when anonymous creation is enabled (e.g. a
/// public sign-up form); a wrong token is refused either way.
#[utoipa::path(
    post,
    path = "/v1/user",
    operation_id = "createUser",
    tag = "users",
    summary = "Create a data subject",
    description = r#"Requires scope `users:write`. Stores a new profile, encrypted under a fresh per-subject key, and returns the subject's token. An empty `login`, `email`, `phone` or `custom` is treated as absent. Phones are normalised to E.164 and emails are lowercased before indexing. 409 when an identifier is already taken. Without any token only when the vault runs with `--enable-anonymous-create` (audited with actor `anonymous`); a wrong token is always 401."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::Purpose),
    request_body(
        description = r#"The profile: a non-empty JSON object, or a form whose fields become string values. `login`, `email`, `phone` and `custom`, when present and not empty, are indexed for lookup and must be unique in the vault. A body labelled as a form that is itself a JSON object is read as JSON."#,
        content(
            (
                doc::Profile = "application/json",
                example = json!(
                    {
                        "first": "John",
                        "last": "Doe",
                        "login": "john",
                        "email": "john@example.com",
                        "phone": "+44 20 7946 0958"
                    }
                )
            ),
            (
                doc::ProfileForm = "application/x-www-form-urlencoded",
                example = json!({"first": "John", "last": "Doe", "login": "john"})
            )
        )
    ),
    responses(
        (
            status = 200,
            description = r#"The new subject's token"#,
            links(
                (
                    "GetUser" = (
                        operation_id = "getUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Read the new subject's profile"
                    )
                ),
                (
                    "UpdateUser" = (
                        operation_id = "updateUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Change the new subject's profile"
                    )
                ),
                (
                    "ForgetUser" = (
                        operation_id = "forgetUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Forget the new subject"
                    )
                ),
                (
                    "PutAppRecord" = (
                        operation_id = "putAppRecord",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Store an app record of the new subject"
                    )
                ),
                (
                    "ListSubjectApps" = (
                        operation_id = "listSubjectApps",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "The new subject's apps"
                    )
                ),
                (
                    "ListUserSessions" = (
                        operation_id = "listUserSessions",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "The new subject's sessions"
                    )
                ),
                (
                    "ListAgreements" = (
                        operation_id = "listAgreements",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "The new subject's agreements"
                    )
                ),
                (
                    "ShareRecord" = (
                        operation_id = "shareRecord",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Share fields of the new subject's profile"
                    )
                ),
                (
                    "StartExpiration" = (
                        operation_id = "startExpiration",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Start the new subject's expiration"
                    )
                ),
                (
                    "ExpirationStatus" = (
                        operation_id = "expirationStatus",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "The new subject's expiration"
                    )
                ),
                (
                    "ListSubjectAuditEvents" = (
                        operation_id = "listSubjectAuditEvents",
                        parameters(("token" = "$response.body#/token")),
                        description = "The new subject's audit events"
                    )
                )
            ),
            body = doc::TokenReply,
            content_type = "application/json",
            example = json!({"status": "ok", "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn create(
    req: HttpRequest,
    vault: web::Data<Vault>,
    caller: OptionalCaller,
    body: Body,
) -> VaultResult<HttpResponse> {
    let caller = match caller.0 {
        Some(caller) => {
            caller.require(&Scope::users("write"))?;
            caller.require_staff()?;
            caller
        }
        None if vault.settings().anonymous_create => Caller::anonymous(),
        None => return Err(refuse_missing_token(&req)),
    };
    let token = match vault.create_user(&caller, body.object()?).await {
        // A public sign-up form must not tell whether an identifier is registered: a
        // duplicate answers as a creation would, with a token that names nobody (the
        // refused attempt is audited as such).
        Err(VaultError::Duplicate(_)) if caller.is_anonymous() => uuid::Uuid::new_v4(),
        created => created?,
    };
    Ok(ok(json!({"token": token})))
}

#[utoipa::path(
    get,
    path = "/v1/user/{mode}/{id}",
    operation_id = "getUser",
    tag = "users",
    summary = "Read a subject's profile",
    description = r#"Requires scope `users:read`. The read is audited before the data is returned. A forgotten subject still resolves by token, to `data: {}`, as evidence of erasure."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The subject's token and profile"#,
            links(
                (
                    "UpdateUser" = (
                        operation_id = "updateUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Change this profile"
                    )
                ),
                (
                    "ForgetUser" = (
                        operation_id = "forgetUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Forget this subject"
                    )
                )
            ),
            body = doc::UserReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21",
                    "data": {"first": "John", "last": "Doe", "login": "john"}
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

#[utoipa::path(
    put,
    path = "/v1/user/{mode}/{id}",
    operation_id = "updateUser",
    tag = "users",
    summary = "Update a subject's profile",
    description = r#"Requires scope `users:write`; a patch array also `users:read` (whether it applies tells what the profile holds). Applies an RFC 7396 merge object or an RFC 6902 patch array to the profile. Identifier changes are re-indexed and must stay unique (409 otherwise); 409 also when concurrent writers keep winning the race. A forgotten subject is 404. With a subject token and `--subject-changes request` (the default), the change is filed for a DPO instead: the answer is `RequestFiled`."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SubjectPath, doc::Purpose),
    request_body(
        description = r#"A JSON object, merged into the profile as an RFC 7396 merge patch (a `null` value removes a field), or an array of RFC 6902 JSON Patch operations applied in order. The profile must remain a JSON object. The body is read as JSON whatever its Content-Type."#,
        content(
            (
                doc::UpdateBody = "application/json",
                examples(
                    ("merge" = (summary = "RFC 7396 merge patch", value = json!({"last": "Smith", "phone": null}))),
                    (
                        "patch" = (
                            summary = "RFC 6902 JSON Patch",
                            value = json!(
                                [
                                    {"op": "replace", "path": "/last", "value": "Smith"},
                                    {"op": "remove", "path": "/phone"}
                                ]
                            )
                        )
                    )
                )
            )
        )
    ),
    responses(
        (
            status = 200,
            description = r#"The subject's token"#,
            links(
                (
                    "GetRequest" = (
                        operation_id = "getRequest",
                        parameters(("rtoken" = "$response.body#/rtoken")),
                        description = "Read the filed request (a subject token's change under `--subject-changes request`)"
                    )
                ),
                (
                    "CancelRequest" = (
                        operation_id = "cancelRequest",
                        parameters(("rtoken" = "$response.body#/rtoken")),
                        description = "Cancel the filed request (a subject token's change under `--subject-changes request`)"
                    )
                ),
                (
                    "GetUser" = (
                        operation_id = "getUser",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token")),
                        description = "Read the changed profile"
                    )
                )
            ),
            body = doc::ChangeReply,
            content_type = "application/json",
            example = json!({"status": "ok", "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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
    // Whether a patch applies tells what the profile holds (`test`, or a path that must
    // exist): patching takes the scope that reads it too.
    if update.is_array() {
        caller.require(&Scope::users("read"))?;
    }
    if vault.files_requests(&caller) {
        let rtoken = vault.file_request(&caller, mode, &id, RequestAction::ChangeProfile, None, Some(&update)).await?;
        return Ok(super::subject_requests::filed(rtoken));
    }
    let token = vault.update_user(&caller, mode, &id, &update).await?;
    Ok(ok(json!({"token": token})))
}

#[utoipa::path(
    delete,
    path = "/v1/user/{mode}/{id}",
    operation_id = "forgetUser",
    tag = "users",
    summary = "Forget a subject (right to erasure)",
    description = r#"Requires scope `users:write`. Removes the profile, its lookup identifiers and app records, and destroys the subject's data key (crypto-shredding). The token keeps resolving to an empty record as evidence of the erasure; forgetting a forgotten subject again succeeds. With a subject token and `--subject-changes request` (the default), the change is filed for a DPO instead: the answer is `RequestFiled`."#,
    extensions(("x-required-scope" = json!("users:write"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The subject was forgotten"#,
            links(
                (
                    "GetRequest" = (
                        operation_id = "getRequest",
                        parameters(("rtoken" = "$response.body#/rtoken")),
                        description = "Read the filed request (a subject token's change under `--subject-changes request`)"
                    )
                ),
                (
                    "CancelRequest" = (
                        operation_id = "cancelRequest",
                        parameters(("rtoken" = "$response.body#/rtoken")),
                        description = "Cancel the filed request (a subject token's change under `--subject-changes request`)"
                    )
                )
            ),
            body = doc::ForgetReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done", "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21"})
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
        return Ok(super::subject_requests::filed(rtoken));
    }
    let token = vault.forget_user(&caller, mode, &id).await?;
    Ok(ok(json!({"result": "done", "token": token})))
}

#[utoipa::path(
    post,
    path = "/v1/users",
    operation_id = "listUsers",
    tag = "users",
    summary = "List subjects' profiles in bulk",
    description = r#"Requires scope `users:read`. Returns decrypted profiles of active subjects in token order, each read audited. Off unless enabled in the vault's configuration: 403 when disabled. Paged by the `offset` and `limit` query parameters; any request body is ignored."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(super::Paging, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"A page of profiles"#,
            body = doc::UserListReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "total": 1,
                    "rows": [{"token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21", "data": {"login": "john"}}]
                }
            )
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn list(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::users("read"))?;
    caller.require_staff()?;
    let (offset, limit) = super::paging(req.query_string())?.checked()?;
    let (users, total) = vault.list_users(&caller, offset, limit).await?;
    let rows: Vec<_> = users.into_iter().map(|(token, data)| json!({"token": token, "data": data})).collect();
    Ok(ok(json!({"total": total, "rows": rows})))
}
