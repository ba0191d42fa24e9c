//! `/v1/userapp` and `/v1/userapps`: per-application records of a subject.

use super::doc;
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

#[utoipa::path(
    post,
    path = "/v1/userapp/{mode}/{id}/{app}",
    operation_id = "putAppRecord",
    tag = "apps",
    summary = "Create or replace a subject's app record",
    description = r#"Requires scope `apps:{app}:write` (the path's app, e.g. `apps:shop:write`). Stores the record sealed under the subject's data key, kept apart from the profile. An existing record of the app is replaced. 404 when the subject is unknown or forgotten; 400 for an invalid app name."#,
    extensions(("x-required-scope" = json!("apps:{app}:write"))),
    params(doc::AppRecordPath, doc::Purpose),
    request_body(
        description = r#"The app record: a JSON object, or a form whose fields become string values. Replaces any existing record of the app."#,
        content(
            (doc::Record = "application/json", example = json!({"street": "221B Baker Street", "city": "London"})),
            (doc::FormRecord = "application/x-www-form-urlencoded")
        )
    ),
    responses(
        (
            status = 200,
            description = r#"The subject's token"#,
            links(
                (
                    "GetAppRecord" = (
                        operation_id = "getAppRecord",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token"), ("app" = "$request.path.app")),
                        description = "Read the app record"
                    )
                ),
                (
                    "UpdateAppRecord" = (
                        operation_id = "updateAppRecord",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token"), ("app" = "$request.path.app")),
                        description = "Change the app record"
                    )
                ),
                (
                    "DeleteAppRecord" = (
                        operation_id = "deleteAppRecord",
                        parameters(("mode" = "token"), ("id" = "$response.body#/token"), ("app" = "$request.path.app")),
                        description = "Delete the app record"
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
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn create(vault: web::Data<Vault>, caller: Caller, path: AppPath, body: Body) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    vault.refuse_direct_subject_change(&caller)?;
    let token = vault.put_app(&caller, parse_mode(&mode)?, &id, &app, body.object()?).await?;
    Ok(ok(json!({"token": token})))
}

#[utoipa::path(
    put,
    path = "/v1/userapp/{mode}/{id}/{app}",
    operation_id = "updateAppRecord",
    tag = "apps",
    summary = "Update a subject's app record",
    description = r#"Requires scope `apps:{app}:write` (the path's app, e.g. `apps:shop:write`); a patch array also `apps:{app}:read`. Applies an RFC 7396 merge object or an RFC 6902 patch array to an existing app record. 404 when the subject or the record does not exist; 409 when concurrent writers keep winning the race. With a subject token and `--subject-changes request` (the default), the change is filed for a DPO instead: the answer is `RequestFiled`."#,
    extensions(("x-required-scope" = json!("apps:{app}:write"))),
    params(doc::AppRecordPath, doc::Purpose),
    request_body(
        description = r#"A JSON object, merged into the app record as an RFC 7396 merge patch (a `null` value removes a field), or an array of RFC 6902 JSON Patch operations applied in order. The app record must remain a JSON object. The body is read as JSON whatever its Content-Type."#,
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
pub async fn update(vault: web::Data<Vault>, caller: Caller, path: AppPath, body: Body) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    let mode = parse_mode(&mode)?;
    let update = body.change()?;
    // Whether a patch applies tells what the record holds: patching takes its read scope too.
    if update.is_array() {
        caller.require(&Scope::app(&app, "read"))?;
    }
    if vault.files_requests(&caller) {
        let action = RequestAction::ChangeAppData;
        let rtoken = vault.file_request(&caller, mode, &id, action, Some(&app), Some(&update)).await?;
        return Ok(super::subject_requests::filed(rtoken));
    }
    let token = vault.update_app(&caller, mode, &id, &app, &update).await?;
    Ok(ok(json!({"token": token})))
}

#[utoipa::path(
    get,
    path = "/v1/userapp/{mode}/{id}/{app}",
    operation_id = "getAppRecord",
    tag = "apps",
    summary = "Read a subject's app record",
    description = r#"Requires scope `apps:{app}:read` (the path's app, e.g. `apps:shop:read`). The read is audited before the data is returned. 404 when the subject or the record does not exist."#,
    extensions(("x-required-scope" = json!("apps:{app}:read"))),
    params(doc::AppRecordPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The app record"#,
            body = doc::AppReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21",
                    "app": "shop",
                    "data": {"city": "London"}
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
pub async fn get(vault: web::Data<Vault>, caller: Caller, path: AppPath) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "read"))?;
    let (token, data) = vault.get_app(&caller, parse_mode(&mode)?, &id, &app).await?;
    Ok(ok(json!({"token": token, "app": app, "data": data})))
}

#[utoipa::path(
    delete,
    path = "/v1/userapp/{mode}/{id}/{app}",
    operation_id = "deleteAppRecord",
    tag = "apps",
    summary = "Delete a subject's app record",
    description = r#"Requires scope `apps:{app}:write` (the path's app, e.g. `apps:shop:write`). 404 when the subject or the record does not exist."#,
    extensions(("x-required-scope" = json!("apps:{app}:write"))),
    params(doc::AppRecordPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The record was deleted"#,
            body = doc::DoneTokenReply,
            content_type = "application/json",
            example = json!({"status": "ok", "result": "done", "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21"})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn delete(vault: web::Data<Vault>, caller: Caller, path: AppPath) -> VaultResult<HttpResponse> {
    let (mode, id, app) = path.into_inner();
    let app = app.to_lowercase();
    caller.require(&Scope::app(&app, "write"))?;
    vault.refuse_direct_subject_change(&caller)?;
    let token = vault.delete_app(&caller, parse_mode(&mode)?, &id, &app).await?;
    Ok(ok(json!({"result": "done", "token": token})))
}

#[utoipa::path(
    get,
    path = "/v1/userapp/{mode}/{id}",
    operation_id = "listSubjectApps",
    tag = "apps",
    summary = "List the apps a subject has records for",
    description = r#"Requires scope `users:read`. Audited. A forgotten subject has no apps."#,
    extensions(("x-required-scope" = json!("users:read"))),
    params(doc::SubjectPath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The subject's token and app names"#,
            body = doc::UserAppsReply,
            content_type = "application/json",
            example = json!({"status": "ok", "token": "b9bbd4cd-0a28-4a04-a2f5-2d8f2f0e7c21", "apps": ["shop"]})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/userapps",
    operation_id = "listAppNames",
    tag = "apps",
    summary = "List all app names in use",
    description = r#"Requires scope `apps:*:read`, and not a subject token. The names of the apps any subject has records for; no personal data. A token scoped to a single app (`apps:shop:read`) does not suffice."#,
    extensions(("x-required-scope" = json!("apps:*:read"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"App names"#,
            body = doc::AppNamesReply,
            content_type = "application/json",
            example = json!({"status": "ok", "apps": ["crm", "shop"]})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn names(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::app("*", "read"))?;
    // Every subject's apps, not one subject's data: not for subject tokens.
    caller.require_staff()?;
    Ok(ok(json!({"apps": vault.app_names().await?})))
}
