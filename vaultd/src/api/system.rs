//! `/v1/status`, `/metrics` (and `/v1/metrics`) and `/v1/openapi.json`. No token needed:
//! none of them reveals personal data.

use super::doc;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use strongroom_admin_api::cluster::{NodeState, StatusBody};

use super::ok;
use crate::cluster::Refusal;
use crate::metrics::Metrics;
use crate::vault::Vault;

/// `GET /v1/status`: 200 while the node serves (a liveness signal), with the node's Raft
/// role and its disk's state; 503 once its Raft core stopped after a storage failure, so
/// that the liveness probe restarts it. A nearly full disk (writes refused with 507) is
/// still 200: reads go on, and a restart would not free space. `?ready=member` makes it a
/// readiness signal: 503 until the node is a member of a cluster that has a leader, so a
/// Service sends no traffic to a node that has not joined.
#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "status",
    tag = "system",
    summary = "Vault status",
    description = r#"No token needed. Version, the label of the key encryption key in use, whether bulk listing is enabled, this node's place in the cluster and the state of its storage. Reveals no personal data. 503 when this node's storage failed and its Raft core stopped (it needs a restart; a liveness probe on this path does that), and with `?ready=member` while the node is not a member of a cluster with a leader. A nearly full disk is `storage.state: full` with 200: writes are refused with 507, reads go on."#,
    security(()),
    responses(
        (
            status = 200,
            description = r#"The vault is serving"#,
            body = doc::StatusReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "version": "0.1.0",
                    "kek": "strongroom-kek-1",
                    "bulkListEnabled": false,
                    "node": {"id": 1, "state": "leader", "leader": 1},
                    "storage": {"state": "ok", "freeBytes": 9_663_676_416_u64, "minFreeBytes": 67_108_864}
                }
            )
        ),
        (
            status = 503,
            description = r#"This node's storage failed and its Raft core stopped (it needs a restart), or, with `?ready=member`, the node is not a member of a cluster with a leader"#,
            body = doc::ErrorReply,
            content_type = "application/json"
        )
    ),
)]
pub async fn status(vault: web::Data<Vault>, req: HttpRequest) -> HttpResponse {
    let node = vault.cluster().summary();
    let body = StatusBody {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kek: vault.active_kek(),
        bulk_list_enabled: vault.settings().bulk_list_enabled,
        node: node.clone(),
    };
    let mut body = serde_json::to_value(&body).unwrap_or_default();
    let cluster = vault.cluster();
    let failed = cluster.has_failed();
    let room = cluster.room();
    let storage = match (failed, room) {
        (true, _) => json!({"state": "failed"}),
        (false, Some(room)) => json!({
            "state": if room.is_full() { "full" } else { "ok" },
            "freeBytes": room.free,
            "minFreeBytes": room.reserve,
        }),
        (false, None) => json!({"state": "ok"}),
    };
    if let Value::Object(fields) = &mut body {
        fields.insert("storage".into(), storage);
    }
    let wants_member = req.query_string().split('&').any(|pair| pair == "ready=member");
    let member = node.state != NodeState::Uninitialized && node.leader.is_some();
    let refusal = if failed {
        Some(Refusal::Stopped.to_string())
    } else if wants_member && !member {
        Some("this node is not a member of a cluster with a leader".to_string())
    } else {
        None
    };
    if let Some(message) = refusal {
        if let Value::Object(fields) = &mut body {
            fields.insert("status".into(), json!("error"));
            fields.insert("message".into(), json!(message));
        }
        return HttpResponse::ServiceUnavailable().json(body);
    }
    ok(body)
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    summary = "Prometheus metrics",
    description = r#"No token needed. The same as `/v1/metrics`, at the path Prometheus scrapes by default."#,
    security(()),
    responses(
        (
            status = 200,
            description = r#"Metrics in OpenMetrics text format"#,
            body = String,
            content_type = "application/openmetrics-text",
            example = json!(
                "# TYPE vaultd_http_requests_total counter\nvaultd_http_requests_total{method=\"GET\",route=\"/v1/user/{mode}/{id}\",status=\"200\"} 1\n# EOF\n"
            )
        )
    ),
)]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    let encoder = metrics.clone();
    // Collectors read the disk: one scrape at a time, off the worker that serves requests.
    // The permit goes with the encoding, which goes on if the scraper hangs up.
    let encoded = match std::sync::Arc::clone(&metrics.scrapes).acquire_owned().await {
        Ok(one_at_a_time) => web::block(move || {
            let text = encoder.encode();
            drop(one_at_a_time);
            text
        })
        .await
        .ok(),
        Err(_) => None,
    };
    match encoded {
        Some(text) => {
            HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text)
        }
        None => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "error", "message": "metrics are unavailable"})),
    }
}

/// `GET /v1/metrics`: the same as `/metrics`.
#[utoipa::path(
    get,
    path = "/v1/metrics",
    operation_id = "metricsV1",
    tag = "system",
    summary = "Prometheus metrics",
    description = r#"No token needed. OpenMetrics text (`application/openmetrics-text; version=1.0.0`): request counts by method, route pattern and status, latencies, and point-in-time gauges. Labels carry route patterns, never identifiers. Same as `/metrics`."#,
    security(()),
    responses(
        (
            status = 200,
            description = r#"Metrics in OpenMetrics text format"#,
            body = String,
            content_type = "application/openmetrics-text",
            example = json!(
                "# TYPE vaultd_http_requests_total counter\nvaultd_http_requests_total{method=\"GET\",route=\"/v1/user/{mode}/{id}\",status=\"200\"} 1\n# EOF\n"
            )
        )
    ),
)]
pub async fn metrics_v1(metrics: web::Data<Metrics>) -> HttpResponse {
    self::metrics(metrics).await
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "system",
    summary = "This OpenAPI document",
    description = r#"No token needed. The OpenAPI 3 description of the API."#,
    security(()),
    responses(
        (status = 200, description = r#"The OpenAPI document"#, body = doc::Document, content_type = "application/json")
    ),
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc::document())
}
