//! The operator's own HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness) and
//! `/readyz` (readiness: the operator reached the Kubernetes API).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{get, web, App, HttpResponse, HttpServer, Responder};
use tracing::error;

use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Default)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    /// Set once the Kubernetes API answered.
    pub ready: AtomicBool,
}

#[get("/metrics")]
async fn metrics(state: web::Data<ServerState>) -> impl Responder {
    match state.metrics.encode() {
        Ok(text) => {
            HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text)
        }
        Err(err) => {
            error!(error = %err, "cannot encode metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

#[get("/healthz")]
async fn healthz() -> impl Responder {
    HttpResponse::Ok().body("ok")
}

#[get("/readyz")]
async fn readyz(state: web::Data<ServerState>) -> impl Responder {
    if state.ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().body("ok")
    } else {
        HttpResponse::ServiceUnavailable().body("not connected to the Kubernetes API yet")
    }
}

/// Binds the endpoints on `address`; the returned server runs when awaited or spawned.
pub fn serve(address: SocketAddr, state: Arc<ServerState>) -> std::io::Result<Server> {
    let state = web::Data::from(state);
    Ok(HttpServer::new(move || App::new().app_data(state.clone()).service(metrics).service(healthz).service(readyz))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5)
        .bind(address)?
        .run())
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{test, App};

    use super::*;

    #[actix_web::test]
    async fn health_readiness_and_metrics() {
        let state = Arc::new(ServerState::default());
        state.metrics.membership_change("piivault", "LearnerAdded");
        let app = test::init_service(
            App::new().app_data(web::Data::from(state.clone())).service(metrics).service(healthz).service(readyz),
        )
        .await;
        let get = |path: &str| test::TestRequest::get().uri(path).to_request();

        assert_eq!(test::call_service(&app, get("/healthz")).await.status(), StatusCode::OK);
        assert_eq!(test::call_service(&app, get("/readyz")).await.status(), StatusCode::SERVICE_UNAVAILABLE);
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(test::call_service(&app, get("/readyz")).await.status(), StatusCode::OK);

        let response = test::call_service(&app, get("/metrics")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        assert!(body.contains("strongroom_operator_membership_changes_total"), "{body}");
    }
}
