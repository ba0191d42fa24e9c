//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one acts at a time.
//!
//! A replica waits until it holds the Lease, then runs the controllers. kube-lease-manager
//! takes and renews the Lease, but it only reports a *change* of holder: when renewals fail
//! (API server unreachable, say) it logs and retries, and never says that this replica's
//! claim has run out while a standby may already have taken over. So this module keeps a
//! deadline of its own: it reads the Lease every [`OBSERVE_EVERY`], and while the Lease names
//! this replica the deadline is the renewal time it shows plus the lease duration, minus
//! [`STOP_BEFORE_EXPIRY`] — before a standby can see the Lease expire. A read that fails
//! leaves the deadline where it was.
//!
//! Past the deadline [`LeaderGate::holds`] is false — the reconcilers check it right before
//! every change, a vault membership change above all — and [`Leadership::lost`] resolves, on
//! which `main` stops the controllers and exits; Kubernetes restarts it as a candidate. On a
//! clean shutdown [`Leadership::release`] gives the Lease up so a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

/// How long a held Lease stays valid without renewal: a standby takes over this long after
/// the last renewal.
pub const LEASE_SECONDS: u64 = 15;
/// How long before expiry the holder renews the Lease (so every 5 s; a failed renewal is
/// retried within seconds).
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 10;
/// This replica stops acting this long before its last confirmed renewal expires: room for
/// clock skew between nodes and for a call already on its way.
pub const STOP_BEFORE_EXPIRY: Duration = Duration::from_secs(3);
/// How often the Lease is read to confirm renewals.
pub const OBSERVE_EVERY: Duration = Duration::from_secs(2);
/// How long a shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

// A renewal (due `RENEW_BEFORE_EXPIRY_SECONDS` before expiry) must be seen by a read of the
// Lease — even a read one interval late — before the deadline passes.
const _: () = assert!(RENEW_BEFORE_EXPIRY_SECONDS > STOP_BEFORE_EXPIRY.as_secs() + 2 * OBSERVE_EVERY.as_secs());

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
    #[error("the Lease {lease} names another holder right after this replica acquired it")]
    NotHolder { lease: String },
}

/// The deadline confirmed by one read of the Lease, taken at `read_at` (monotonic) and
/// `wall_now` (the wall clock at the same moment): `None` when the Lease does not name
/// `identity` as its holder with a renewal time and duration (a standby may take it).
///
/// The renewal time was written by this replica's own clock, so its age is measured
/// against `wall_now`; a renewal "in the future" counts as made at `read_at`, never later.
/// The Lease's own duration counts when it is shorter than [`LEASE_SECONDS`] — that is what
/// a standby goes by.
pub fn confirmed_deadline(
    spec: Option<&LeaseSpec>,
    identity: &str,
    read_at: Instant,
    wall_now: Timestamp,
) -> Option<Instant> {
    let spec = spec?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?.min(LEASE_SECONDS);
    let age = Duration::try_from(wall_now.duration_since(renewed)).unwrap_or(Duration::ZERO);
    let remaining = Duration::from_secs(seconds).saturating_sub(STOP_BEFORE_EXPIRY).saturating_sub(age);
    Some(read_at + remaining)
}

/// Whether a replica whose confirmed deadline is `deadline` may still act at `now`.
pub fn still_leader(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| now < deadline)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// Leader until this instant unless a later renewal is confirmed.
    Until(Instant),
    /// Leadership is gone for good (lost, or given up on shutdown).
    Revoked,
}

/// Whether this replica may act now. Cheap to clone; `main` and every reconciler share one.
#[derive(Clone, Debug)]
pub struct LeaderGate {
    /// `None`: leader election is off and this replica always acts.
    claim: Option<Arc<watch::Sender<Claim>>>,
}

impl LeaderGate {
    /// For a replica that runs without leader election.
    pub fn always() -> Self {
        Self { claim: None }
    }

    /// Leader until `deadline`, unless a later renewal is confirmed.
    pub fn until(deadline: Instant) -> Self {
        Self { claim: Some(Arc::new(watch::Sender::new(Claim::Until(deadline)))) }
    }

    /// Whether this replica may act right now.
    pub fn holds(&self) -> bool {
        self.claim.is_none() || still_leader(self.deadline(), Instant::now())
    }

    /// The confirmed deadline; `None` once revoked (and without leader election).
    pub fn deadline(&self) -> Option<Instant> {
        match *self.claim.as_ref()?.borrow() {
            Claim::Until(deadline) => Some(deadline),
            Claim::Revoked => None,
        }
    }

    /// Moves the deadline to what the latest read of the Lease confirmed (unless revoked).
    fn confirm(&self, deadline: Instant) {
        if let Some(claim) = &self.claim {
            claim.send_if_modified(|claim| match claim {
                Claim::Until(current) if *current != deadline => {
                    *current = deadline;
                    true
                }
                _ => false,
            });
        }
    }

    /// Ends leadership for good.
    pub fn revoke(&self) {
        if let Some(claim) = &self.claim {
            claim.send_replace(Claim::Revoked);
        }
    }

    /// Resolves when the claim changes (a confirmed renewal, a revocation); never without
    /// leader election.
    async fn changed(&self, seen: &mut Option<watch::Receiver<Claim>>) {
        match seen {
            Some(receiver) => {
                // The sender lives as long as `self`: an error cannot happen here.
                let _ = receiver.changed().await;
            }
            None => std::future::pending().await,
        }
    }

    fn subscribe(&self) -> Option<watch::Receiver<Claim>> {
        self.claim.as_ref().map(|claim| claim.subscribe())
    }
}

/// Leadership held by this replica.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    observer: JoinHandle<()>,
    gate: LeaderGate,
}

impl Leadership {
    /// The gate the reconcilers check before acting.
    pub fn gate(&self) -> LeaderGate {
        self.gate.clone()
    }

    /// Resolves when this replica must stop acting: the Lease went to another holder, the
    /// lease task ended, or the last confirmed renewal ran out. The gate is revoked then.
    pub async fn lost(&mut self) {
        let mut claims = self.gate.subscribe();
        loop {
            let deadline = match self.gate.deadline() {
                Some(deadline) if still_leader(Some(deadline), Instant::now()) => deadline,
                _ => {
                    warn!("leadership is no longer confirmed (no renewal of the Lease seen in time, or revoked); stopping");
                    break;
                }
            };
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() || !*self.state.borrow_and_update() {
                        warn!("the Lease is no longer held by this replica");
                        break;
                    }
                }
                // Then look again: a renewal may have moved the deadline meanwhile.
                () = tokio::time::sleep_until(deadline) => {}
                () = self.gate.changed(&mut claims) => {}
            }
        }
        self.gate.revoke();
        self.observer.abort();
    }

    /// Gives the Lease up (on shutdown, after the controllers have stopped), so that a
    /// standby takes over at once instead of after the lease duration.
    pub async fn release(self) {
        let Leadership { state, task, observer, gate } = self;
        gate.revoke();
        observer.abort();
        // The lease task releases the Lease when its channel closes.
        drop(state);
        match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
            Ok(Ok(Ok(_))) => info!("released the leader Lease"),
            Ok(Ok(Err(error))) => {
                warn!(%error, "cannot release the leader Lease; a standby takes over when it expires")
            }
            Ok(Err(error)) => warn!(%error, "the lease task failed; a standby takes over when the Lease expires"),
            Err(_) => warn!("timed out releasing the leader Lease; a standby takes over when it expires"),
        }
    }
}

/// Reads the Lease once: the deadline it confirms, `Ok(None)` when another replica holds it.
async fn read_deadline(leases: &Api<Lease>, config: &LeaseConfig) -> Result<Option<Instant>, kube::Error> {
    let (read_at, wall_now) = (Instant::now(), Timestamp::now());
    let lease = leases.get(&config.lease_name).await?;
    Ok(confirmed_deadline(lease.spec.as_ref(), &config.identity, read_at, wall_now))
}

/// Confirms renewals until the Lease names another holder.
async fn observe(leases: Api<Lease>, config: LeaseConfig, gate: LeaderGate) {
    let mut ticker = tokio::time::interval(OBSERVE_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match read_deadline(&leases, &config).await {
            Ok(Some(deadline)) => gate.confirm(deadline),
            Ok(None) => {
                warn!(lease = %config.lease_name, "the Lease names another holder; stopping");
                gate.revoke();
                return;
            }
            Err(error) => {
                warn!(lease = %config.lease_name, %error, "cannot read the Lease; acting only until the last confirmed renewal runs out")
            }
        }
    }
}

/// Waits until this replica holds the Lease and a read of the Lease has confirmed it.
pub async fn acquire(client: Client, config: &LeaseConfig) -> Result<Leadership, LeaderElectionError> {
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
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

    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let deadline = loop {
        match read_deadline(&leases, config).await {
            Ok(Some(deadline)) => break deadline,
            Ok(None) => return Err(LeaderElectionError::NotHolder { lease: config.lease_name.clone() }),
            Err(error) => {
                warn!(lease = %config.lease_name, %error, "cannot read the Lease to confirm leadership; retrying");
                tokio::time::sleep(OBSERVE_EVERY).await;
            }
        }
    };
    let gate = LeaderGate::until(deadline);
    let observer = tokio::spawn(observe(leases, config.clone(), gate.clone()));
    info!(lease = %config.lease_name, identity = %config.identity, "became leader");
    Ok(Leadership { state, task, observer, gate })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<Timestamp>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed.map(MicroTime),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    fn wall() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn seconds_before(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 - seconds).unwrap()
    }

    /// A held leadership whose Lease tasks never end by themselves.
    fn held(state: watch::Receiver<bool>, gate: &LeaderGate) -> Leadership {
        Leadership {
            state,
            task: tokio::spawn(std::future::pending()),
            observer: tokio::spawn(std::future::pending()),
            gate: gate.clone(),
        }
    }

    #[test]
    fn the_deadline_is_the_last_renewal_plus_the_duration_minus_the_grace() {
        let read_at = Instant::now();
        let spec = lease(Some("me"), Some(seconds_before(4)), Some(15));
        let deadline = confirmed_deadline(Some(&spec), "me", read_at, wall()).unwrap();
        assert_eq!(deadline, read_at + Duration::from_secs(15 - 3 - 4));
        assert!(still_leader(Some(deadline), read_at + Duration::from_secs(7)));
        assert!(!still_leader(Some(deadline), read_at + Duration::from_secs(8)), "stops at the deadline");
        assert!(!still_leader(Some(deadline), read_at + Duration::from_secs(60)));
    }

    #[test]
    fn without_a_confirmed_renewal_this_replica_is_not_leader() {
        let read_at = Instant::now();
        let cases = [
            lease(Some("other"), Some(wall()), Some(15)),
            lease(None, Some(wall()), Some(15)),
            lease(Some("me"), None, Some(15)),
            lease(Some("me"), Some(wall()), None),
            lease(Some("me"), Some(wall()), Some(-1)),
        ];
        for spec in cases {
            assert_eq!(confirmed_deadline(Some(&spec), "me", read_at, wall()), None, "{spec:?}");
        }
        assert_eq!(confirmed_deadline(None, "me", read_at, wall()), None);
        assert!(!still_leader(None, read_at));
    }

    #[test]
    fn a_stale_renewal_is_already_past_its_deadline() {
        let read_at = Instant::now();
        let spec = lease(Some("me"), Some(seconds_before(20)), Some(15));
        let deadline = confirmed_deadline(Some(&spec), "me", read_at, wall());
        assert_eq!(deadline, Some(read_at));
        assert!(!still_leader(deadline, read_at));
    }

    #[test]
    fn a_renewal_in_the_future_counts_from_the_read_and_a_shorter_lease_counts() {
        let read_at = Instant::now();
        let future = Timestamp::from_second(1_800_000_030).unwrap();
        let spec = lease(Some("me"), Some(future), Some(15));
        assert_eq!(confirmed_deadline(Some(&spec), "me", read_at, wall()), Some(read_at + Duration::from_secs(12)));
        let longer = lease(Some("me"), Some(wall()), Some(600));
        assert_eq!(confirmed_deadline(Some(&longer), "me", read_at, wall()), Some(read_at + Duration::from_secs(12)));
        let shorter = lease(Some("me"), Some(wall()), Some(10));
        assert_eq!(confirmed_deadline(Some(&shorter), "me", read_at, wall()), Some(read_at + Duration::from_secs(7)));
    }

    #[test]
    fn the_gate_follows_confirmations_until_revoked() {
        assert!(LeaderGate::always().holds());
        let now = Instant::now();
        let gate = LeaderGate::until(now + Duration::from_secs(60));
        assert!(gate.holds());
        gate.confirm(now);
        assert!(!gate.holds(), "past the confirmed deadline");
        gate.confirm(now + Duration::from_secs(60));
        assert!(gate.clone().holds(), "a later renewal was confirmed");
        gate.revoke();
        gate.confirm(now + Duration::from_secs(120));
        assert!(!gate.holds(), "revoked for good");
        assert_eq!(gate.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_resolves_when_the_deadline_passes_without_a_renewal() {
        let (sender, state) = watch::channel(true);
        let gate = LeaderGate::until(Instant::now() + Duration::from_secs(5));
        let mut leadership = held(state, &gate);
        let started = Instant::now();
        // kube-lease-manager never sends `false` here: only the deadline ends leadership.
        leadership.lost().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(!gate.holds());
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_waits_for_a_renewed_deadline() {
        let (_sender, state) = watch::channel(true);
        let gate = LeaderGate::until(Instant::now() + Duration::from_secs(5));
        let mut leadership = held(state, &gate);
        let started = Instant::now();
        let renewer = {
            let gate = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                gate.confirm(Instant::now() + Duration::from_secs(10));
            })
        };
        leadership.lost().await;
        assert_eq!(started.elapsed(), Duration::from_secs(13));
        renewer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn lost_resolves_as_soon_as_the_gate_is_revoked() {
        let (_sender, state) = watch::channel(true);
        let gate = LeaderGate::until(Instant::now() + Duration::from_secs(60));
        let mut leadership = held(state, &gate);
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // What the observer does when the Lease names another holder.
            gate.revoke();
        });
        leadership.lost().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1), "not only at the old deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn lost_resolves_when_the_lease_manager_reports_false() {
        let (sender, state) = watch::channel(true);
        let gate = LeaderGate::until(Instant::now() + Duration::from_secs(60));
        let mut leadership = held(state, &gate);
        sender.send(false).unwrap();
        leadership.lost().await;
        assert!(!gate.holds());
    }
}
