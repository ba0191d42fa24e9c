//! `/v1/status`, `/metrics` (and `/v1/metrics`) and `/v1/openapi.json`. No token needed:
//! none of them reveals personal data.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use strongroom_admin_api::cluster::{NodeState, StatusBody};

use super::ok;
use crate::metrics::Metrics;
use crate::vault::Vault;

/// The OpenAPI 3 description of this API, kept beside the routes it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/status`: always 200 while the process serves (a liveness signal), with the
/// node's Raft role. `?ready=member` makes it a readiness signal: 503 until the node is a
/// member of a cluster that has a leader, so a Service sends no traffic to a node that
/// has not joined.
pub async fn status(vault: web::Data<Vault>, req: HttpRequest) -> HttpResponse {
    let node = vault.cluster().summary();
    let body = StatusBody {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kek: vault.kek_label().to_string(),
        bulk_list_enabled: vault.settings().bulk_list_enabled,
        node: node.clone(),
    };
    let mut body = serde_json::to_value(&body).unwrap_or_default();
    let wants_member = req.query_string().split('&').any(|pair| pair == "ready=member");
    let member = node.state != NodeState::Uninitialized && node.leader.is_some();
    if wants_member && !member {
        if let Value::Object(fields) = &mut body {
            fields.insert("status".into(), json!("error"));
            fields.insert("message".into(), json!("this node is not a member of a cluster with a leader"));
        }
        return HttpResponse::ServiceUnavailable().json(body);
    }
    ok(body)
}

pub async fn metrics(metrics: web::Data<Metrics>, vault: web::Data<Vault>) -> HttpResponse {
    let mut text = metrics.encode();
    // Point-in-time gauges read at scrape time.
    text = text.trim_end_matches("# EOF\n").to_string();
    text.push_str("# HELP vaultd_dek_cache_entries Unwrapped data keys held in memory.\n");
    text.push_str("# TYPE vaultd_dek_cache_entries gauge\n");
    text.push_str(&format!("vaultd_dek_cache_entries {}\n# EOF\n", vault.cached_keys()));
    HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text)
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}
