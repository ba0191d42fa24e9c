//! Starts the HTTP server around an opened vault.

use std::net::SocketAddr;

use actix_web::{web, App, HttpServer};

use crate::api;
use crate::metrics::Metrics;
use crate::vault::Vault;

pub struct ServerOptions {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub workers: Option<usize>,
}

/// Serves until the process is told to stop. Prints `vaultd listening on http://ADDR`
/// once the socket is bound (scripts and tests wait for that line).
pub async fn serve(vault: Vault, options: ServerOptions) -> std::io::Result<()> {
    let vault = web::Data::new(vault);
    let metrics = web::Data::new(Metrics::default());
    let max_body = options.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new().app_data(vault.clone()).app_data(metrics.clone()).configure(|cfg| api::configure(cfg, max_body))
    })
    .bind(options.listen)?;
    if let Some(workers) = options.workers {
        server = server.workers(workers);
    }
    for address in server.addrs() {
        println!("vaultd listening on http://{address}");
    }
    server.run().await
}
