//! The `PiiVault` controller.
//!
//! - [`names`]: names, labels and addresses of a vault's children.
//! - [`builders`]: the desired children, as pure functions of the resource.
//! - [`defaults`]: operator-wide defaults filled into a vault's spec.
//! - [`policy`]: which images and environment a vault may ask for.
//! - [`api_tls`]: the API certificate and the CA the operator trusts.
//! - [`secret_material`]: the Secrets the operator generates.
//! - [`membership`]: the next Raft membership step, as a pure function of observations.
//! - `restore`: a new vault's first node restored from a backup (`spec.bootstrap`).
//! - `backups`: the backup token, the ledger shipper and the scheduled backups.
//! - `monitoring`: the Prometheus Operator objects of `spec.monitoring`.
//! - [`status`]: the status written back to the resource.
//! - [`reconciler`]: observes, decides, applies and reports; `run` starts the controller.

pub mod api_tls;
mod backups;
pub mod builders;
pub mod defaults;
pub mod membership;
mod monitoring;
pub mod names;
pub mod policy;
pub mod reconciler;
mod restore;
pub mod secret_material;
pub mod status;
#[cfg(test)]
pub(crate) mod test_harness;

pub use defaults::VaultDefaults;
pub use policy::VaultPolicy;
pub use reconciler::{run, Context};
