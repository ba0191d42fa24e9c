//! The trivial actix-web server: the machine's ceiling for the same load generator.
//!
//! It does no work beyond HTTP and JSON: `GET /` returns a small fixed object and
//! `POST /echo` parses the JSON body and returns it. It runs as a child process (the
//! harness's hidden `trivial-server` command) with actix's default worker count, like
//! vaultd, so it competes with the client for the same cores the vault does.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// The readiness line's prefix; the address follows.
pub const LISTENING: &str = "trivial listening on http://";

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "message": "hello"}))
}

async fn echo(body: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

/// Serves on 127.0.0.1:`port` (0: any free port) until killed.
pub fn serve(port: u16, workers: Option<usize>) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let mut server =
            HttpServer::new(|| App::new().route("/", web::get().to(hello)).route("/echo", web::post().to(echo)))
                .bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        if let Some(workers) = workers {
            server = server.workers(workers);
        }
        for address in server.addrs() {
            println!("{LISTENING}{address}");
        }
        server.run().await?;
        anyhow::Ok(())
    })
}
