//! `/v1/sys/retention`: run a retention policy once and list past runs (scope
//! `retention:run`). The bodies are `strongroom_admin_api::retention`'s.

use super::doc;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use strongroom_admin_api::retention::{RunList, RunRequest};

use super::body::Body;
use super::ok_body;
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

#[utoipa::path(
    post,
    path = "/v1/sys/retention/run",
    operation_id = "runRetention",
    tag = "retention",
    summary = "Run a retention policy once",
    description = r#"Requires scope `retention:run`. Applies the rules in order to the active subjects they select, through the replicated log in bounded batches, each change conditional on what it was decided on and audited (operations `retention-delete`, `retention-drop-fields`, `retention-pseudonymize`, `retention-delete-app`, `retention-start-expiration`, purpose `retention <policy> rule <rule>`). A rerun changes nothing twice. The run is recorded (audit operation `retention-run`). `vaultd minimize` calls this."#,
    extensions(("x-required-scope" = json!("retention:run"))),
    params(doc::Purpose),
    request_body(content((doc::RetentionRunRequest = "application/json"))),
    responses(
        (
            status = 200,
            description = r#"The run report"#,
            links(
                (
                    "GetAuditEvent" = (
                        operation_id = "getAuditEvent",
                        parameters(("atoken" = "$response.body#/auditEventId")),
                        description = "The audit event recording the run"
                    )
                )
            ),
            body = doc::RetentionRunReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "policy": "shop/drop-phone",
                    "dryRun": false,
                    "startedAt": 1767225600000_i64,
                    "finishedAt": 1767225601000_i64,
                    "matched": 120,
                    "changed": 118,
                    "rules": [
                        {
                            "name": "drop-phone-after-90d",
                            "action": "dropFields",
                            "matched": 120,
                            "changed": 118,
                            "skipped": 0
                        }
                    ],
                    "auditEventId": "00000000-0a1b-8c7b-be05-dfcc4ab873c9"
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
pub async fn run(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::retention_run())?;
    let request: RunRequest = body.parse()?;
    ok_body(&vault.run_retention(&caller, request).await?)
}

/// `?policy=&limit=`
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs of this policy (`namespace/name`); none or empty: every policy's
    #[param(pattern = r"^[a-z0-9./-]{0,253}$")]
    policy: Option<String>,
    /// Runs to return, newest first
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

const MAX_LIMIT: usize = 100;

#[utoipa::path(
    get,
    path = "/v1/sys/retention/runs",
    operation_id = "listRetentionRuns",
    tag = "retention",
    summary = "Past retention runs, newest first",
    description = r#"Requires scope `retention:run`. The last 100 runs of each policy are kept."#,
    extensions(("x-required-scope" = json!("retention:run"))),
    params(RunsQuery),
    responses(
        (
            status = 200,
            description = r#"Runs"#,
            body = doc::RetentionRunsReply,
            content_type = "application/json",
            example = json!({"status": "ok", "runs": []})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn runs(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::retention_run())?;
    let query: RunsQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| VaultError::bad_request("query takes policy=<namespace/name> and limit=<1-100>"))?;
    if query.limit == 0 || query.limit > MAX_LIMIT {
        return Err(VaultError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let policy = query.policy.as_deref().filter(|p| !p.is_empty());
    if policy.is_some_and(|p| !strongroom_admin_api::retention::valid_policy_name(p)) {
        return Err(VaultError::bad_request("policy must be 1-253 characters of [a-z0-9-./]"));
    }
    let runs = vault.retention_runs(policy, query.limit).await?;
    ok_body(&RunList { runs })
}
