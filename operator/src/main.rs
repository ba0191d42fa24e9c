//! `strongroom-operator`: runs the Strongroom controllers (`PiiVault`, `RetentionPolicy`
//! and `PiiVaultBackup`) under one leader election.
//!
//! Configured by flags or environment (the Helm chart sets the environment): where to serve
//! metrics and health, which namespaces to watch, and the leader-election Lease.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use futures_util::future::join_all;
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use kube::Client;
use strongroom_operator::controller_kit::api;
use strongroom_operator::crd::piivault::ModuleImage;
use strongroom_operator::crd::{PiiVault, PiiVaultBackup, RetentionPolicy};
use strongroom_operator::leader_election::{self, LeaderGate, Leadership, LeaseConfig};
use strongroom_operator::metrics::Metrics;
use strongroom_operator::piivault::{VaultDefaults, VaultPolicy};
use strongroom_operator::server::{self, ServerState};
use strongroom_operator::vaultd_client::HttpVaultAdmin;
use strongroom_operator::{piivault, piivault_backup, retention, telemetry, FIELD_MANAGER};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Reconciles Strongroom PiiVault resources into vaultd clusters, RetentionPolicy resources into scheduled runs \
             and PiiVaultBackup resources into backups"
)]
struct Args {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "STRONGROOM_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(long, env = "STRONGROOM_WATCH_NAMESPACES", value_delimiter = ',', num_args = 0..)]
    watch_namespaces: Vec<String>,
    /// Take a Lease before acting, so that only one replica reconciles.
    #[arg(long, env = "STRONGROOM_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    #[arg(long, env = "STRONGROOM_LEASE_NAME", default_value = "strongroom-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Image carrying a vendor PKCS#11 library, for PiiVaults with `hsm.pkcs11` that name
    /// no `moduleImage` of their own.
    #[arg(long, env = "STRONGROOM_PKCS11_MODULE_IMAGE")]
    pkcs11_module_image: Option<String>,
    /// Directory inside that image holding the library (copied to /opt/strongroom/pkcs11).
    #[arg(long, env = "STRONGROOM_PKCS11_MODULE_PATH", default_value = "/usr/lib/pkcs11")]
    pkcs11_module_path: String,
    /// vaultd images a PiiVault may use (comma-separated; exact, or a prefix ending in `*`).
    #[arg(long, env = "STRONGROOM_ALLOWED_IMAGES", value_delimiter = ',', default_value = piivault::policy::PROJECT_IMAGES)]
    allowed_images: Vec<String>,
    /// PKCS#11 module images a PiiVault may name (the default module image is always
    /// allowed); none when empty.
    #[arg(long, env = "STRONGROOM_ALLOWED_MODULE_IMAGES", value_delimiter = ',', num_args = 0..)]
    allowed_module_images: Vec<String>,
    /// Names of the `hsm.pkcs11.env` variables a PiiVault may set; none when empty.
    #[arg(long, env = "STRONGROOM_ALLOWED_ENV", value_delimiter = ',', num_args = 0..)]
    allowed_env: Vec<String>,
    /// Let a PiiVault turn TLS off (`spec.tls.enabled: false`).
    #[arg(long, env = "STRONGROOM_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// This replica's identity in the Lease and in Events (its pod name).
    #[arg(long, env = "POD_NAME", default_value = "strongroom-operator")]
    identity: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let args = Args::parse();
    let namespaces: Vec<Option<String>> = if args.watch_namespaces.iter().all(|ns| ns.trim().is_empty()) {
        vec![None]
    } else {
        args.watch_namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
            .map(|ns| Some(ns.to_string()))
            .collect()
    };

    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(ServerState { metrics: metrics.clone(), ..ServerState::default() });
    let http =
        server::serve(args.listen, state.clone()).with_context(|| format!("cannot listen on {}", args.listen))?;
    let http_handle = http.handle();
    tokio::spawn(http);
    info!(listen = %args.listen, "serving /metrics, /healthz and /readyz");

    let client = Client::try_default().await.context("cannot configure the Kubernetes client")?;
    for namespace in namespaces.iter().map(Option::as_deref) {
        may_list::<PiiVault>(&client, namespace, "PiiVaults").await?;
        may_list::<RetentionPolicy>(&client, namespace, "RetentionPolicies").await?;
        may_list::<PiiVaultBackup>(&client, namespace, "PiiVaultBackups").await?;
    }
    state.ready.store(true, Ordering::Relaxed);

    let leadership = if args.leader_election {
        let config = LeaseConfig {
            lease_name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
        };
        Some(leader_election::acquire(client.clone(), &config).await?)
    } else {
        None
    };

    let vault_admin = HttpVaultAdmin::new().context("cannot build the vault HTTP client")?;
    let reporter = Reporter { controller: FIELD_MANAGER.to_string(), instance: Some(args.identity.clone()) };
    let defaults = VaultDefaults {
        pkcs11_module_image: args
            .pkcs11_module_image
            .filter(|image| !image.is_empty())
            .map(|image| ModuleImage { image, path: args.pkcs11_module_path.clone() }),
    };
    let policy = VaultPolicy::from_lists(&args.allowed_images, &args.allowed_module_images, &args.allowed_env)
        .allowing_plain_http(args.allow_plain_http);
    info!(?policy, "what PiiVaults may use");
    // Every reconciler checks the gate right before it changes anything.
    let gate = leadership.as_ref().map_or_else(LeaderGate::always, Leadership::gate);
    let retention_ctx = Arc::new(
        retention::Context::new(client.clone(), vault_admin.clone(), metrics.clone(), reporter.clone())
            .with_policy(policy.clone())
            .with_leader_gate(gate.clone()),
    );
    let backup_ctx = Arc::new(piivault_backup::Context::new(
        client.clone(),
        metrics.clone(),
        reporter.clone(),
        policy.clone(),
        gate.clone(),
    ));
    let ctx = Arc::new(
        piivault::Context::new(client, vault_admin, metrics, reporter, defaults)
            .with_policy(policy)
            .with_leader_gate(gate),
    );
    // The controllers stop on SIGTERM or Ctrl+C, once their running reconciles finish.
    let vault_controllers = join_all(namespaces.iter().cloned().map(|namespace| piivault::run(ctx.clone(), namespace)));
    let retention_controllers =
        join_all(namespaces.iter().cloned().map(|namespace| retention::run(retention_ctx.clone(), namespace)));
    let backup_controllers =
        join_all(namespaces.into_iter().map(|namespace| piivault_backup::run(backup_ctx.clone(), namespace)));
    let controllers = futures_util::future::join3(vault_controllers, retention_controllers, backup_controllers);

    let outcome = match leadership {
        Some(mut leadership) => {
            let lost = tokio::select! {
                _ = controllers => false,
                () = leadership.lost() => true,
            };
            if lost {
                Err(anyhow::anyhow!("lost the leader Lease; exiting so that no two replicas act"))
            } else {
                // Asked to stop: hand the Lease over now rather than when it expires.
                leadership.release().await;
                Ok(())
            }
        }
        None => {
            controllers.await;
            Ok(())
        }
    };
    http_handle.stop(true).await;
    if let Err(error) = &outcome {
        error!(%error, "stopping");
    }
    outcome
}

/// Fails unless the `K`s (`plural`) of `namespace` (all when `None`) can be listed: the CRD
/// is installed and this service account may list them.
async fn may_list<K>(client: &Client, namespace: Option<&str>, plural: &str) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    api::<K>(client, namespace).list(&ListParams::default().limit(1)).await.with_context(|| {
        format!("cannot list {plural}: is the CRD installed (crds/) and may this service account list them?")
    })?;
    Ok(())
}
