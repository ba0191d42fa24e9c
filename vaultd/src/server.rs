//! Starts the HTTP servers around an opened vault: the API (HTTPS when it has a
//! certificate) and, on a cluster node, the peer port that carries Raft traffic between
//! members.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tokio::signal::unix::{signal, SignalKind};

use crate::api;
use crate::cluster::{self, Cluster, PeerTls};
use crate::metrics::Metrics;
use crate::throttle::{Throttle, ThrottleSettings, FORGET_EVERY};
use crate::vault::Vault;

pub struct ServerOptions {
    pub max_body_bytes: usize,
    pub workers: Option<usize>,
    pub throttle: ThrottleSettings,
    /// HTTPS on the API port (`tls::ApiTls::server_config`); plain HTTP without it.
    pub tls: Option<rustls::ServerConfig>,
}

/// Binds a listener now, so that a kernel-chosen port (`:0`) is known before the vault
/// opens and can be advertised to other members.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address)
}

/// Serves until SIGTERM or SIGINT. Prints `vaultd peer port on ADDR` (cluster nodes;
/// mutual TLS when `PeerTls` is given) and then `vaultd listening on http://ADDR` (or
/// `https://ADDR` with TLS) once the sockets are bound and the signal handlers are in
/// place; scripts and tests wait for those lines.
pub async fn serve(
    vault: Vault,
    api_listener: TcpListener,
    peer_listener: Option<(TcpListener, Option<PeerTls>)>,
    options: ServerOptions,
) -> std::io::Result<()> {
    let cluster = Arc::clone(vault.cluster());
    let shutdown = Arc::clone(&cluster);
    let metrics = web::Data::new(Metrics::new(&vault));
    let vault = web::Data::new(vault);
    let throttle = web::Data::new(Throttle::new(options.throttle));
    let forgetter = tokio::spawn(forget_idle_clients(throttle.clone()));
    let max_body = options.max_body_bytes;
    let api_address = api_listener.local_addr()?;
    let api = HttpServer::new(move || {
        App::new()
            .app_data(vault.clone())
            .app_data(metrics.clone())
            .app_data(throttle.clone())
            .configure(|cfg| api::configure(cfg, max_body))
    })
    .disable_signals();
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let mut api = match options.tls {
        Some(tls) => api.listen_rustls_0_23(api_listener, tls)?,
        None => api.listen(api_listener)?,
    };
    if let Some(workers) = options.workers {
        api = api.workers(workers);
    }
    let peers = match peer_listener {
        Some((listener, tls)) => {
            let address = listener.local_addr()?;
            let server = peer_server(cluster, listener, tls.as_ref())?;
            println!("vaultd peer port on {address}{}", if tls.is_some() { " (mutual TLS)" } else { "" });
            Some(server)
        }
        None => None,
    };
    // Registered before the line is printed: a stop that comes right after it is graceful.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let api = api.run();
    let (api_handle, peer_handle) = (api.handle(), peers.as_ref().map(|server| server.handle()));
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        // Requests in flight finish first; they may still need the peer port.
        api_handle.stop(true).await;
        if let Some(peer_handle) = peer_handle {
            peer_handle.stop(true).await;
        }
        Ok(())
    };
    println!("vaultd listening on {scheme}://{api_address}");
    let result = match peers {
        Some(peers) => futures_util::try_join!(api, peers, stop).map(drop),
        None => futures_util::try_join!(api, stop).map(drop),
    };
    forgetter.abort();
    // SIGTERM or SIGINT: the servers have drained; stop Raft and flush.
    shutdown.shutdown().await;
    tracing::info!("vaultd stopped");
    result
}

/// Keeps the rate limiters' memory to the client addresses seen lately.
async fn forget_idle_clients(throttle: web::Data<Throttle>) {
    let mut every = tokio::time::interval(FORGET_EVERY);
    loop {
        every.tick().await;
        throttle.forget_idle();
    }
}

fn peer_server(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    tls: Option<&PeerTls>,
) -> std::io::Result<actix_web::dev::Server> {
    let cluster = web::Data::new(cluster);
    let server = HttpServer::new(move || App::new().app_data(cluster.clone()).configure(cluster::peer_app))
        .workers(2)
        .disable_signals();
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.server_config().map_err(std::io::Error::other)?)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
