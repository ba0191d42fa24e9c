//! The Strongroom operator: reconciles `PiiVault` resources into running vaultd clusters.
//!
//! - [`crd`]: the custom resource types (the source of the YAML in `crds/`).
//! - [`piivault`]: the `PiiVault` controller — builders for its children, Raft membership
//!   decisions, status, and the reconciler that ties them together.
//! - [`vault`]: the client for vaultd's status and cluster admin API.
//! - [`leader_election`], [`metrics`], [`telemetry`], [`server`]: running the operator.
//!
//! A second custom resource gets its own module in `crd` and its own controller module
//! beside `piivault`, and is started from `main` next to it.

pub mod crd;
mod error;
pub mod leader_election;
pub mod metrics;
pub mod piivault;
pub mod server;
pub mod telemetry;
pub mod vault;

pub use error::Error;

/// The field manager of every server-side apply, and the value of the children's
/// `app.kubernetes.io/managed-by` label.
pub const FIELD_MANAGER: &str = "strongroom-operator";
