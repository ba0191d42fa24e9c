//! The `PiiVault` reconciler's test double for vaultd: a scripted vault that records what
//! it was asked, and the test context wiring it to the fake API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kube::runtime::events::Reporter;
use serde_json::Value;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, MemberAdded, NodeState, NodeSummary};
use strongroom_admin_api::tokens::CreateToken;
use tokio::task::JoinHandle;

use super::defaults::VaultDefaults;
use super::policy::VaultPolicy;
use super::reconciler::Context;
use crate::fake_api_server::{fake_api_server, ApiRequest, FakeApiOptions};
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::vaultd_client::{NewToken, RootToken, StatusBody, TrustVault, VaultAdmin, VaultError};

/// The secret of the scoped token the scripted vault hands out.
pub const SCOPED_TOKEN: &str = "scoped-operator-token";

/// A call the operator made to the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultCall {
    StatusBody(String),
    ClusterStatus(String),
    Init(String),
    AddLearner(String, AddLearner),
    Promote(String, u64),
    RemoveMember(String, u64),
    /// `POST /v1/sys/tokens`: the node and the scopes asked for.
    CreateToken(String, Vec<String>),
    /// Tokens of a name revoked but one: the name and the id kept.
    RevokeOthers(String, String),
}

impl VaultCall {
    /// Calls that change the cluster.
    pub fn is_change(&self) -> bool {
        !matches!(self, VaultCall::StatusBody(_) | VaultCall::ClusterStatus(_))
    }
}

#[derive(Default)]
struct Script {
    nodes: BTreeMap<String, NodeSummary>,
    cluster: Option<ClusterStatus>,
    next_id: u64,
    calls: Vec<VaultCall>,
    tokens: Vec<RootToken>,
    /// Token creation answers 401 (the root token was retired).
    refuse_tokens: bool,
    /// The CAs the reconciler asked the client to trust.
    trusted: Vec<Option<Vec<u8>>>,
    /// Tokens the vault does not know (401).
    unknown_tokens: Vec<RootToken>,
}

/// A vault whose answers the test sets up. Nodes not scripted are unreachable, and so is
/// the cluster API when no cluster is scripted.
#[derive(Clone, Default)]
pub struct ScriptedVault {
    script: Arc<Mutex<Script>>,
}

impl ScriptedVault {
    pub fn node(&self, api_address: String, state: NodeState, id: Option<u64>) -> &Self {
        let summary = NodeSummary { id, state, leader: None };
        self.script.lock().unwrap().nodes.insert(api_address, summary);
        self
    }

    pub fn cluster(&self, cluster: ClusterStatus) -> &Self {
        let mut script = self.script.lock().unwrap();
        script.next_id = cluster.members.iter().map(|member| member.id).max().unwrap_or(0) + 1;
        script.cluster = Some(cluster);
        self
    }

    /// Refuses token creation, as a vault whose root token was retired.
    pub fn refuse_tokens(&self) -> &Self {
        self.script.lock().unwrap().refuse_tokens = true;
        self
    }

    /// Answers 401 to `token`, as a vault that never issued it.
    pub fn unknown_token(&self, token: RootToken) -> &Self {
        self.script.lock().unwrap().unknown_tokens.push(token);
        self
    }

    /// The CAs (PEM) the reconciler's clients trusted, in order.
    pub fn trusted(&self) -> Vec<Option<Vec<u8>>> {
        self.script.lock().unwrap().trusted.clone()
    }

    pub fn calls(&self) -> Vec<VaultCall> {
        self.script.lock().unwrap().calls.clone()
    }

    pub fn changes(&self) -> Vec<VaultCall> {
        self.calls().into_iter().filter(VaultCall::is_change).collect()
    }

    /// The tokens the admin calls carried.
    pub fn tokens(&self) -> Vec<RootToken> {
        self.script.lock().unwrap().tokens.clone()
    }

    fn record(&self, call: VaultCall, token: Option<&RootToken>) {
        let mut script = self.script.lock().unwrap();
        script.calls.push(call);
        script.tokens.extend(token.cloned());
    }

    fn unreachable(node: &str) -> VaultError {
        VaultError::Unreachable { node: node.to_string(), reason: "connection refused".to_string() }
    }

    /// A node id never handed out before.
    fn allocate(&self) -> MemberAdded {
        let mut script = self.script.lock().unwrap();
        let id = script.next_id.max(1);
        script.next_id = id + 1;
        MemberAdded { id }
    }
}

impl TrustVault for ScriptedVault {
    fn trusting(&self, ca_pem: Option<&[u8]>) -> Result<Self, VaultError> {
        self.script.lock().unwrap().trusted.push(ca_pem.map(<[u8]>::to_vec));
        Ok(self.clone())
    }
}

impl VaultAdmin for ScriptedVault {
    async fn node_status(&self, node: &str) -> Result<StatusBody, VaultError> {
        self.record(VaultCall::StatusBody(node.to_string()), None);
        let summary = self.script.lock().unwrap().nodes.get(node).cloned().ok_or_else(|| Self::unreachable(node))?;
        Ok(StatusBody {
            version: "0.1.0".into(),
            kek: "strongroom-kek-1".into(),
            bulk_list_enabled: false,
            node: summary,
        })
    }

    async fn cluster_status(&self, node: &str, token: &RootToken) -> Result<ClusterStatus, VaultError> {
        self.record(VaultCall::ClusterStatus(node.to_string()), Some(token));
        if self.script.lock().unwrap().unknown_tokens.contains(token) {
            return Err(VaultError::Rejected { node: node.to_string(), status: 401, message: "invalid token".into() });
        }
        self.script.lock().unwrap().cluster.clone().ok_or_else(|| Self::unreachable(node))
    }

    async fn init_cluster(&self, node: &str, token: &RootToken) -> Result<MemberAdded, VaultError> {
        self.record(VaultCall::Init(node.to_string()), Some(token));
        Ok(self.allocate())
    }

    async fn add_learner(
        &self,
        node: &str,
        token: &RootToken,
        learner: &AddLearner,
    ) -> Result<MemberAdded, VaultError> {
        self.record(VaultCall::AddLearner(node.to_string(), learner.clone()), Some(token));
        Ok(self.allocate())
    }

    async fn promote(&self, node: &str, token: &RootToken, id: u64) -> Result<(), VaultError> {
        self.record(VaultCall::Promote(node.to_string(), id), Some(token));
        Ok(())
    }

    async fn remove_member(&self, node: &str, token: &RootToken, id: u64) -> Result<(), VaultError> {
        self.record(VaultCall::RemoveMember(node.to_string(), id), Some(token));
        Ok(())
    }

    async fn create_scoped_token(
        &self,
        node: &str,
        token: &RootToken,
        request: &CreateToken,
    ) -> Result<NewToken, VaultError> {
        self.record(VaultCall::CreateToken(node.to_string(), request.scopes.clone()), Some(token));
        if self.script.lock().unwrap().refuse_tokens {
            return Err(VaultError::Rejected { node: node.to_string(), status: 401, message: "invalid token".into() });
        }
        Ok(NewToken { id: "tok-operator".into(), secret: RootToken::new(SCOPED_TOKEN) })
    }

    async fn revoke_others_named(
        &self,
        _node: &str,
        token: &RootToken,
        name: &str,
        keep: &str,
    ) -> Result<Vec<String>, VaultError> {
        self.record(VaultCall::RevokeOthers(name.to_string(), keep.to_string()), Some(token));
        Ok(vec![])
    }
}

/// The policy of the tests: the test vault's image registry.
pub fn test_policy() -> VaultPolicy {
    VaultPolicy::from_lists(&["registry.example/strongroom/*".into()], &[], &[])
}

/// A reconciler context over the fake API server and a scripted vault.
pub fn test_context(
    objects: HashMap<String, Value>,
    vault: ScriptedVault,
) -> (Arc<Context<ScriptedVault>>, JoinHandle<Vec<ApiRequest>>) {
    test_context_with(objects, vault, FakeApiOptions::default(), LeaderGate::always())
}

/// [`test_context`] with a misbehaving API server and a leader gate.
pub fn test_context_with(
    objects: HashMap<String, Value>,
    vault: ScriptedVault,
    options: FakeApiOptions,
    gate: LeaderGate,
) -> (Arc<Context<ScriptedVault>>, JoinHandle<Vec<ApiRequest>>) {
    let (client, server) = fake_api_server(objects, options);
    let reporter = Reporter { controller: "strongroom-operator".into(), instance: Some("test".into()) };
    let context = Context::new(client, vault, Arc::new(Metrics::default()), reporter, VaultDefaults::default())
        .with_policy(test_policy());
    (Arc::new(context.with_leader_gate(gate)), server)
}
