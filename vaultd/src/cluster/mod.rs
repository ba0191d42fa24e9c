//! Replication: every change to vault state is a command in an openraft log, persisted in
//! segment files and applied by the same state machine on every replica. A standalone
//! vault is a one-member cluster; it takes the same path, so there is one write path to
//! trust.
//!
//! - [`types`]: the Raft type configuration and member addresses;
//! - [`log_store`] (with [`log_file`]) and [`raft_state_machine`] (with [`snapshot`]):
//!   openraft's storage — the log in segment files, the state in sled;
//! - [`network`] and [`peer`]: the peer port, client and server side, and [`rpc`], what
//!   travels over it besides Raft's own messages;
//! - [`proposer`]: batches the commands of concurrent requests into log entries, on the
//!   leader or forwarded to it;
//! - [`membership`]: `/v1/sys/cluster` — bootstrap, learners, promotion, removal, status;
//! - [`compaction`]: removes erased subjects from the log and snapshots promptly;
//! - [`free_space`]: refuses new work before the disk is full, so that a full disk never
//!   stops Raft; a node whose Raft core stopped anyway says so (`Cluster::has_failed`).

mod backup_cut;
mod compaction;
mod free_space;
mod log_file;
mod log_store;
mod membership;
mod network;
mod peer;
mod proposer;
mod raft_state_machine;
mod rpc;
mod snapshot;
mod snapshot_stream;
mod tls;
mod types;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use strongroom_admin_api::cluster::{NodeState, NodeSummary};
use tokio::sync::{mpsc, OnceCell};
use zeroize::Zeroizing;

pub use free_space::{statvfs, Room, DEFAULT_MIN_FREE_BYTES};
pub use log_store::committed_index;
pub use membership::{AdminAction, AdminAnswer, AdminError, AdminRequest};
pub use network::PeerClient;
pub use peer::peer_app;
pub use raft_state_machine::raft_state_keys;
pub use rpc::Refusal;
pub use snapshot::{read_pairs, SnapshotParts};
pub use tls::{plain_client, PeerTls, TlsError};
pub use types::{NodeId, NodeInfo};

use free_space::{FreeSpace, Need};
use log_store::LogStore;
use network::{Network, PeerError, PeerHealth};
use proposer::Pending;
use raft_state_machine::StateMachineStore;
use snapshot::Snapshots;
use types::Raft;

use crate::crypto::DekCache;
use crate::store::{decode, encode, Command, Receipt, StateMachine, Store, StoreError};

/// How long a write may wait for a leader and a quorum before the client is told 503.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The node id, once this node has one, in the `raft_meta` tree.
const NODE_ID: &[u8] = b"node_id";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start Raft: {0}")]
    Raft(String),
}

/// How this node takes part in a cluster.
pub struct ClusterOptions {
    /// `None`: a standalone vault, a one-member cluster that nobody can join.
    pub peer: Option<PeerOptions>,
    /// Log entries between automatic snapshots.
    pub snapshot_every: u64,
    /// Longest an applied erasure stays in the log before the node compacts it away.
    pub erasure_compaction: Duration,
    /// Free bytes the data directory's file system keeps: below them writes are refused
    /// (`free_space`). `None`: the default; 0: never refused.
    pub min_free_bytes: Option<u64>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            peer: None,
            snapshot_every: 20_000,
            erasure_compaction: Duration::from_secs(60),
            min_free_bytes: None,
        }
    }
}

/// The peer port's settings.
pub struct PeerOptions {
    /// How other members reach this node's peer port (`host:port`).
    pub advertise_peer: String,
    /// How clients and other members reach this node's API (a base URL).
    pub advertise_api: String,
    /// Shared by every member; authenticates peer requests.
    pub secret: Zeroizing<String>,
    /// Mutual TLS for the peer port; plain HTTP when absent.
    pub tls: Option<PeerTls>,
}

pub struct Cluster {
    store: Store,
    me: NodeInfo,
    standalone: bool,
    raft_config: Arc<openraft::Config>,
    raft: OnceCell<Raft>,
    /// The storage halves openraft takes over when this node gets its id.
    parts: Mutex<Option<(LogStore, StateMachineStore)>>,
    peers: PeerClient,
    peer_secret_hash: [u8; 32],
    health: Arc<PeerHealth>,
    /// The multi-threaded runtime Raft and peer calls run on (HTTP workers have their own
    /// single-threaded ones).
    runtime: tokio::runtime::Handle,
    proposals: mpsc::Sender<Pending>,
    erasure_compaction: Duration,
    free_space: FreeSpace,
    /// This node's snapshot files (openraft's state machine builds and installs them).
    snapshots: Arc<Snapshots>,
    /// Set once a deliberate shutdown begins: Raft stopping then is no failure.
    stopping: AtomicBool,
}

impl Cluster {
    /// Opens this node's Raft storage. A node that already has an id rejoins its cluster;
    /// a standalone vault bootstraps itself on first start; any other node waits to be
    /// initialised or added through `/v1/sys/cluster`.
    pub async fn open(
        store: Store,
        dek_cache: Arc<DekCache>,
        data_dir: &Path,
        options: ClusterOptions,
    ) -> Result<Arc<Self>, ClusterError> {
        let log_store = LogStore::open(&store, &data_dir.join("raft-log"))?;
        let snapshots = Arc::new(Snapshots::open(data_dir)?);
        let machine = StateMachineStore::open(StateMachine::new(store.clone(), dek_cache)?, Arc::clone(&snapshots))?;
        let raft_config = openraft::Config {
            cluster_name: "strongroom".into(),
            heartbeat_interval: 150,
            // openraft has a follower wait out the leader's lease (the maximum) before its
            // own timeout, so an election starts 1.2–1.6 s after a dead leader's last
            // heartbeat; with 600–1,200 ms it was 1.8–2.4 s, and failover took over 3 s
            // when a vote was lost.
            election_timeout_min: 400,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            install_snapshot_timeout: 10_000,
            // The peer port's body limit for snapshot messages is sized from this.
            snapshot_max_chunk_size: rpc::SNAPSHOT_CHUNK as u64,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            // Entries kept behind a snapshot for followers that lag a little.
            max_in_snapshot_log_to_keep: options.snapshot_every.min(1_000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let (me, standalone, peers, secret) = match options.peer {
            Some(peer) => {
                let http = match &peer.tls {
                    Some(tls) => tls.client(),
                    None => plain_client(),
                }
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
                (
                    NodeInfo { raft_address: peer.advertise_peer, api_address: peer.advertise_api },
                    false,
                    PeerClient::new(http, peer.tls.is_some(), peer.secret.clone()),
                    peer.secret,
                )
            }
            None => {
                // A standalone vault never calls a peer; the client only fills the slot.
                let http = plain_client().map_err(|e| ClusterError::Raft(e.to_string()))?;
                (NodeInfo::default(), true, PeerClient::new(http, false, Zeroizing::default()), Zeroizing::default())
            }
        };
        let (proposals, queue) = mpsc::channel(proposer::QUEUE);
        let cluster = Arc::new(Cluster {
            store,
            me,
            standalone,
            raft_config: Arc::new(raft_config),
            raft: OnceCell::new(),
            parts: Mutex::new(Some((log_store, machine))),
            peers,
            peer_secret_hash: crate::auth::secret_hash(&secret),
            health: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            proposals,
            erasure_compaction: options.erasure_compaction,
            free_space: FreeSpace::new(data_dir, options.min_free_bytes),
            snapshots,
            stopping: AtomicBool::new(false),
        });
        tokio::spawn(proposer::run(Arc::clone(&cluster), queue));
        match cluster.stored_node_id()? {
            Some(id) => {
                let log_end = cluster.start(id).await?;
                if standalone {
                    cluster.apply_own_log(log_end).await?;
                } else {
                    tokio::spawn(Arc::clone(&cluster).advertise_own_addresses(id));
                }
            }
            None if standalone => {
                cluster.bootstrap().await.map_err(|e| ClusterError::Raft(e.to_string()))?;
            }
            None => tracing::info!("this node has not joined a cluster yet; waiting for /v1/sys/cluster"),
        }
        Ok(cluster)
    }

    fn stored_node_id(&self) -> Result<Option<NodeId>, StoreError> {
        let meta = self.store.db().open_tree("raft_meta")?;
        meta.get(NODE_ID)?.map(|v| decode(&v)).transpose()
    }

    /// Takes an id for good: stored durably before Raft starts under it.
    fn claim_node_id(&self, id: NodeId) -> Result<(), Refusal> {
        let fail = |e: StoreError| Refusal::Failed(e.to_string());
        let meta = self.store.db().open_tree("raft_meta").map_err(|e| fail(e.into()))?;
        let claimed = meta
            .compare_and_swap(NODE_ID, None as Option<&[u8]>, Some(encode(&id).map_err(fail)?))
            .map_err(|e| fail(e.into()))?;
        if claimed.is_err() {
            return Err(Refusal::AlreadyMember);
        }
        self.store.flush().map_err(fail)
    }

    /// Starts Raft under `id`, on the main runtime. Returns the index of the last entry
    /// its log held then.
    async fn start(self: &Arc<Self>, id: NodeId) -> Result<Option<u64>, ClusterError> {
        let (log_store, machine) = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .ok_or_else(|| ClusterError::Raft("Raft is already running".into()))?;
        let log_end = log_store.last_index().map_err(|e| ClusterError::Raft(e.to_string()))?;
        let network = Network { client: self.peers.clone(), health: Arc::clone(&self.health) };
        let config = Arc::clone(&self.raft_config);
        let raft = self
            .runtime
            .spawn(async move { Raft::new(id, config, network, log_store, machine).await })
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let leaders = raft.server_metrics();
        self.raft.set(raft).map_err(|_| ClusterError::Raft("Raft is already running".into()))?;
        self.runtime.spawn(compaction::run(Arc::clone(self)));
        self.runtime.spawn(count_leader_changes(leaders));
        tracing::info!(node = id, "Raft started");
        Ok(log_end)
    }

    /// After a restart, applies what the log holds beyond the state sled kept before the
    /// vault serves anything: a standalone vault is its own quorum, so its whole log is
    /// committed, and local reads (access tokens above all) must not see an older state.
    /// `log_end` comes from the log itself: Raft's metrics may not have been published
    /// yet right after its start, and would then name no entry at all.
    async fn apply_own_log(&self, log_end: Option<u64>) -> Result<(), ClusterError> {
        if let Some(index) = log_end {
            self.wait_applied(index)
                .await
                .map_err(|_| ClusterError::Raft(format!("the log up to entry {index} was not applied in time")))?;
        }
        Ok(())
    }

    pub fn raft(&self) -> Result<&Raft, Refusal> {
        self.raft.get().ok_or(Refusal::Uninitialized)
    }

    pub fn node_id(&self) -> Option<NodeId> {
        self.raft.get().map(|raft| raft.metrics().borrow().id)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether this node is the leader as far as it knows (a deposed leader may not know
    /// yet; what it proposes then fails, it is never applied twice).
    pub fn is_leader(&self) -> bool {
        self.raft.get().is_some_and(|raft| {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            metrics.current_leader == Some(metrics.id)
        })
    }

    pub fn is_standalone(&self) -> bool {
        self.standalone
    }

    /// Whether a presented peer secret is the cluster's (constant time). A standalone
    /// vault has no peer port and accepts none.
    pub fn peer_secret_matches(&self, presented: &str) -> bool {
        !self.standalone
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                &crate::auth::secret_hash(presented)[..],
                &self.peer_secret_hash[..],
            ))
    }

    /// Whether a presented adoption proof is the one for `id` (constant time).
    fn adopt_proof_matches(&self, id: NodeId, presented: &str) -> bool {
        !self.standalone
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                rpc::adopt_proof(&self.peer_secret_hash, id).as_bytes(),
                presented.as_bytes(),
            ))
    }

    /// Whether an adopted node's answer proves it holds the peer secret.
    fn adopted_proof_matches(&self, id: NodeId, challenge: &[u8; 32], presented: &str) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self.adopted_proof(id, challenge).as_bytes(), presented.as_bytes()))
    }

    /// This node's answer to an adoption's challenge (see [`rpc::Adopt`]).
    fn adopted_proof(&self, id: NodeId, challenge: &[u8; 32]) -> String {
        rpc::adopted_proof(&self.peer_secret_hash, id, challenge)
    }

    /// The proof that adopting `id` comes from a member (see [`rpc::ADOPT_PROOF_HEADER`]).
    fn adopt_proof(&self, id: NodeId) -> String {
        rpc::adopt_proof(&self.peer_secret_hash, id)
    }

    /// Applies a command through the log and returns its receipt once the entry that
    /// carries it is committed on a quorum and applied.
    ///
    /// A command that adds data is refused while this node's disk is nearly full (the
    /// leader checks its own disk again).
    pub async fn submit(&self, command: Command) -> Result<Receipt, Refusal> {
        if self.has_failed() {
            return Err(Refusal::Stopped);
        }
        self.free_space.admit(need_of(&command))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.proposals
            .send(Pending { command, reply })
            .await
            .map_err(|_| Refusal::Failed("proposer stopped".into()))?;
        answer.await.map_err(|_| Refusal::Failed("proposer stopped".into()))?
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), Refusal> {
        let raft = self.raft()?;
        raft.wait(Some(PROPOSE_TIMEOUT))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(drop)
            .map_err(|_| Refusal::Timeout)
    }

    /// Makes this node's local reads linearizable: waits until it has applied everything
    /// the leader had committed when the barrier was asked for.
    pub async fn read_barrier(self: &Arc<Self>) -> Result<(), Refusal> {
        let cluster = Arc::clone(self);
        let index = self
            .on_runtime(async move {
                let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
                loop {
                    let attempt = match cluster.leader()? {
                        Some((leader, _)) if Some(leader) == cluster.node_id() => cluster.leader_read_index().await,
                        Some((_, node)) => cluster
                            .peers
                            .call::<_, rpc::ReadIndexResult>(
                                &node.raft_address,
                                rpc::READ_INDEX,
                                None,
                                &(),
                                PROPOSE_TIMEOUT,
                            )
                            .await
                            .unwrap_or_else(|e| Err(refusal_of(e))),
                        None => Err(Refusal::NoLeader),
                    };
                    match attempt {
                        Err(Refusal::NotLeader | Refusal::NoLeader) if tokio::time::Instant::now() < deadline => {
                            cluster.await_leader_change().await
                        }
                        other => return other,
                    }
                }
            })
            .await?;
        self.wait_applied(index).await
    }

    /// On the leader: the log index a linearizable read must wait for.
    async fn leader_read_index(&self) -> Result<u64, Refusal> {
        match self.raft()?.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |id| id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(Refusal::NotLeader),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(Refusal::NoLeader),
            Err(RaftError::Fatal(_)) => Err(Refusal::Stopped),
        }
    }

    /// The current leader and how to reach it, as this node believes.
    fn leader(&self) -> Result<Option<(NodeId, NodeInfo)>, Refusal> {
        self.with_metrics(|metrics| {
            metrics.current_leader.and_then(|leader| {
                metrics.membership_config.membership().get_node(&leader).map(|node| (leader, node.clone()))
            })
        })
    }

    /// Waits a little for the cluster's view to change (a new leader, a new term).
    async fn await_leader_change(&self) {
        if let Ok(raft) = self.raft() {
            let mut metrics = raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
        }
    }

    /// Runs peer-calling work on the main runtime, where the peer client's connections live.
    async fn on_runtime<T: Send + 'static, E: From<Refusal> + Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E> {
        self.runtime.spawn(work).await.map_err(|e| E::from(Refusal::Failed(e.to_string())))?
    }

    /// Whether this node knows a leader that can commit: a leader whose quorum has not
    /// acknowledged it for longer than an election takes has none (openraft keeps such a
    /// leader leading).
    pub fn has_working_leader(&self) -> bool {
        let quorum_within = Duration::from_millis(2 * ELECTION_TIMEOUT_MAX_MS);
        self.with_metrics(|metrics| match metrics.current_leader {
            Some(leader) if leader == metrics.id => {
                metrics.millis_since_quorum_ack.is_some_and(|ms| u128::from(ms) <= quorum_within.as_millis())
            }
            Some(_) => true,
            None => false,
        })
        .unwrap_or(false)
    }

    /// Reads Raft's latest metrics.
    fn with_metrics<T>(&self, read: impl FnOnce(&types::RaftMetrics) -> T) -> Result<T, Refusal> {
        let receiver = self.raft()?.metrics();
        let metrics = receiver.borrow();
        Ok(read(&metrics))
    }

    /// Stops Raft and makes the state machine durable (a clean shutdown; a crash loses
    /// nothing either, since the log is durable, but then restart replays the tail).
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(raft) = self.raft.get() {
            let raft = raft.clone();
            if let Err(error) = self.runtime.spawn(async move { raft.shutdown().await }).await {
                tracing::warn!(%error, "Raft did not shut down cleanly");
            }
        }
        let flushed = self.store.audit_trail().sync().map_err(StoreError::from).and_then(|()| self.store.flush());
        if let Err(error) = flushed {
            tracing::error!(%error, "cannot flush the store at shutdown");
        }
    }

    /// Whether this node's Raft core stopped on its own (after a storage failure): the
    /// node serves nothing until it is restarted.
    pub fn has_failed(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
            && self
                .with_metrics(|metrics| metrics.state == ServerState::Shutdown || metrics.running_state.is_err())
                .unwrap_or(false)
    }

    /// Whether this node may store what the leader replicates: refused only below half
    /// the reserve, where its own reads and erasures stop too, so that a follower whose
    /// disk fills up lags behind instead of stopping. Meanwhile it stands for no election:
    /// hearing nothing it could store from the leader, it would otherwise start one and
    /// depose a leader that is fine (its vote still counts).
    pub(super) fn admit_replication(&self) -> Result<(), Refusal> {
        let admitted = self.free_space.admit(Need::Essential);
        if let Ok(raft) = self.raft() {
            raft.runtime_config().elect(admitted.is_ok());
        }
        admitted
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.free_space.dir()
    }

    /// The free-space reserve on a data volume of `size` bytes (`None`: the guard is off).
    pub fn reserve_for(&self, size: u64) -> Option<u64> {
        self.free_space.reserve_for(size)
    }

    /// The data directory's free space and reserve, measured now (`None` when the guard
    /// is off).
    pub fn room(&self) -> Option<Room> {
        self.free_space.measure()
    }

    /// This node's id, role and leader, for `/v1/status`.
    pub fn summary(&self) -> NodeSummary {
        self.with_metrics(|metrics| NodeSummary {
            id: Some(metrics.id),
            state: node_state(metrics.state),
            leader: metrics.current_leader,
        })
        .unwrap_or(NodeSummary { id: None, state: NodeState::Uninitialized, leader: None })
    }
}

/// Counts each leader this node sees elected — a committed vote of a term it had not seen
/// one of, so the same node elected again counts too — until Raft stops. The server
/// metrics change only with the vote, the state, the leader or the membership.
async fn count_leader_changes(
    mut metrics: tokio::sync::watch::Receiver<openraft::metrics::RaftServerMetrics<NodeId, NodeInfo>>,
) {
    let elected = |vote: &openraft::Vote<NodeId>| vote.is_committed().then_some(*vote.leader_id());
    let mut leader = elected(&metrics.borrow().vote);
    while metrics.changed().await.is_ok() {
        let now = elected(&metrics.borrow().vote);
        if now.is_some() && now != leader {
            crate::metrics::instruments().leader_changes.inc();
            leader = now;
        }
    }
}

/// The longest a follower waits for its leader before it stands for election.
const ELECTION_TIMEOUT_MAX_MS: u64 = 800;

fn node_state(state: ServerState) -> NodeState {
    match state {
        ServerState::Leader => NodeState::Leader,
        ServerState::Follower => NodeState::Follower,
        ServerState::Learner => NodeState::Learner,
        ServerState::Candidate => NodeState::Candidate,
        ServerState::Shutdown => NodeState::Shutdown,
    }
}

/// What a command needs from the disk.
fn need_of(command: &Command) -> Need {
    if command.change.is_essential() {
        Need::Essential
    } else {
        Need::Growth
    }
}

/// What a failed call to the leader means for the caller.
fn refusal_of(error: PeerError) -> Refusal {
    match error {
        // Never delivered: the caller may try again once a leader is known.
        PeerError::Unreachable(_) => Refusal::NoLeader,
        // Maybe delivered: the outcome is unknown.
        PeerError::Transport(_) => Refusal::Timeout,
        other => Refusal::Failed(other.to_string()),
    }
}
