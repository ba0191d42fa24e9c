//! The Strongroom operator: reconciles `PiiVault` resources into running vaultd clusters,
//! `RetentionPolicy` resources into scheduled minimisation runs against them, and
//! `PiiVaultBackup` resources into one backup each.
//!
//! - [`crd`]: the custom resource types (the source of the YAML in `crds/`).
//! - [`piivault`]: the `PiiVault` controller — builders for its children, Raft membership
//!   decisions, status, and the reconciler that ties them together.
//! - [`retention`]: the `RetentionPolicy` controller — a CronJob per policy running
//!   `vaultd minimize` with a scoped token, and the runs read back into the status.
//! - [`piivault_backup`]: the `PiiVaultBackup` controller — one backup now, a Job running
//!   `vaultd backup`, and its report read back into the status.
//! - [`controller_kit`]: what the controllers share — the leader gate, the per-object error
//!   backoff, status conditions and the metadata of owned children.
//! - [`vaultd_client`]: the client for vaultd's status, cluster, token and retention-run APIs.
//! - [`leader_election`], [`metrics`], [`telemetry`], [`server`]: running the operator.
//!
//! Each custom resource has its own module in `crd` and its own controller module (like
//! `piivault`, `retention` and `piivault_backup`), all started from `main` under one leader
//! election.

pub mod controller_kit;
pub mod crd;
mod error;
#[cfg(test)]
pub(crate) mod fake_api_server;
pub mod leader_election;
pub mod metrics;
pub mod piivault;
pub mod piivault_backup;
pub mod retention;
pub mod server;
pub mod telemetry;
pub mod vaultd_client;

pub use error::Error;

/// The field manager of every server-side apply, and the value of the children's
/// `app.kubernetes.io/managed-by` label.
pub const FIELD_MANAGER: &str = "strongroom-operator";
