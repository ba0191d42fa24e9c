//! `/v1/sys/retention`: run a retention policy once and list past runs (scope
//! `retention:run`). The bodies are `strongroom_admin_api::retention`'s.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use strongroom_admin_api::retention::{RunList, RunRequest};

use super::body::Body;
use super::ok_body;
use crate::auth::{Caller, Scope};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

pub async fn run(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::retention_run())?;
    let request: RunRequest = body.parse()?;
    ok_body(&vault.run_retention(&caller, request).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    policy: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

const MAX_LIMIT: usize = 100;

pub async fn runs(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::retention_run())?;
    let query: RunsQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| VaultError::bad_request("query takes policy=<namespace/name> and limit=<1-100>"))?;
    if query.limit == 0 || query.limit > MAX_LIMIT {
        return Err(VaultError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let runs = vault.retention_runs(query.policy.as_deref().filter(|p| !p.is_empty()), query.limit).await?;
    ok_body(&RunList { runs })
}
