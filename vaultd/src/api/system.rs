//! `/v1/status`, `/metrics` (and `/v1/metrics`) and `/v1/openapi.json`. No token needed:
//! none of them reveals personal data.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ok;
use crate::metrics::Metrics;
use crate::vault::Vault;

/// The OpenAPI 3 description of this API, kept beside the routes it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn status(vault: web::Data<Vault>) -> HttpResponse {
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "kek": vault.kek_label(),
        "bulkListEnabled": vault.settings().bulk_list_enabled,
        "node": vault.cluster().summary(),
    }))
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
