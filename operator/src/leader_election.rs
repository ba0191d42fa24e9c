//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles at a time.
//!
//! A replica waits until it holds the Lease, then runs the controllers; if it ever loses
//! the Lease (API server unreachable for longer than the lease, for instance) it must stop
//! acting at once — `main` exits and Kubernetes restarts it as a candidate.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// How long a held Lease stays valid without renewal, and how long before expiry the holder
/// renews it.
const LEASE_SECONDS: u64 = 15;
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 5;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    #[error("leader election: {0}")]
    Lease(#[from] LeaseManagerError),
    #[error("leader election stopped before this replica became leader")]
    Stopped,
}

/// Leadership held by this replica. Dropping it gives the Lease up.
pub struct Leadership {
    state: watch::Receiver<bool>,
    _task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Resolves when this replica is no longer the leader.
    pub async fn lost(&mut self) {
        // An error means the lease task ended: leadership is gone as well.
        let _ = self.state.wait_for(|leader| !*leader).await;
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, config: &LeaseConfig) -> Result<Leadership, LeaderElectionError> {
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_BEFORE_EXPIRY_SECONDS)
        .with_field_manager(format!("{}-lease", crate::FIELD_MANAGER))
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    info!(lease = %config.lease_name, identity = %config.identity, "waiting to become leader");
    state.wait_for(|leader| *leader).await.map_err(|_| LeaderElectionError::Stopped)?;
    info!(lease = %config.lease_name, identity = %config.identity, "became leader");
    Ok(Leadership { state, _task: task })
}
