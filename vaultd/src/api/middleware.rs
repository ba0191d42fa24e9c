//! Cross-cutting request handling: metrics by route pattern, a log line without the path
//! (paths carry identifiers such as emails), a JSON envelope on every error response,
//! including those actix produces itself (unknown route, wrong method), and one plain 503
//! for every request once this node's Raft core has stopped.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::cluster::Refusal;
use crate::metrics::{method_label, Metrics, RequestLabels};
use crate::vault::Vault;

/// Paths still served by a node whose Raft core stopped: the status (which answers 503
/// itself, with the node's state) and the metrics, which only read (what they cannot read
/// they leave out).
const SERVED_WHEN_FAILED: [&str; 3] = ["/v1/status", "/metrics", "/v1/metrics"];

/// Answers 503 with a plain message, before any handler runs, once this node's storage
/// failed and Raft stopped: nothing it could answer would be current or durable.
pub async fn refuse_when_failed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let failed = req.app_data::<web::Data<Vault>>().is_some_and(|vault| vault.cluster().has_failed());
    if failed && !SERVED_WHEN_FAILED.contains(&req.path().trim_end_matches('/')) {
        let (request, _) = req.into_parts();
        let refused = HttpResponse::ServiceUnavailable()
            .json(json!({"status": "error", "message": Refusal::Stopped.to_string()}));
        return Ok(ServiceResponse::new(request, refused));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method()).to_string();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let response = next.call(req).await?.map_into_boxed_body();
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = response.status();
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics
            .requests
            .get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status: status.as_u16() })
            .inc();
        metrics.latency.observe(elapsed.as_secs_f64());
    }
    tracing::debug!(%method, %route, status = status.as_u16(), micros = elapsed.as_micros() as u64, "request");

    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        let (request, _) = response.into_parts();
        let replaced = HttpResponse::build(status).json(json!({"status": "error", "message": message}));
        return Ok(ServiceResponse::new(request, replaced));
    }
    Ok(response)
}
