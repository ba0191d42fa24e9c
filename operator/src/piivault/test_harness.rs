//! Test doubles for the reconciler: a fake API server behind kube-rs's mock service, and a
//! scripted vault. Both record what they were asked, for the tests to assert on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use serde_json::{json, Value};
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, MemberAdded, NodeState, NodeSummary};
use tokio::task::JoinHandle;

use super::defaults::VaultDefaults;
use super::reconciler::Context;
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::vault::{RootToken, StatusBody, VaultAdmin, VaultError};

/// One request the operator sent to the API server.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl ApiRequest {
    pub fn is(&self, method: Method, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// The Events the operator published.
pub fn events(requests: &[ApiRequest]) -> Vec<&Value> {
    requests.iter().filter(|r| r.method == Method::POST && r.path.ends_with("/events")).map(|r| &r.body).collect()
}

/// The reasons of the Events the operator published, in order.
pub fn event_reasons(requests: &[ApiRequest]) -> Vec<String> {
    events(requests).iter().map(|event| event["reason"].as_str().unwrap_or_default().to_string()).collect()
}

/// Paths of every write (anything but GET) except Events.
pub fn writes(requests: &[ApiRequest]) -> Vec<&str> {
    requests
        .iter()
        .filter(|r| r.method != Method::GET && !r.path.ends_with("/events"))
        .map(|r| r.path.as_str())
        .collect()
}

/// How the fake API server misbehaves.
#[derive(Clone, Debug, Default)]
pub struct FakeApiOptions {
    /// Server-side applies (PATCH) of these paths are refused with 422 Invalid.
    pub refuse_patch: Vec<String>,
    /// This gate is revoked when a request for this path arrives (before it is answered):
    /// leadership lost in the middle of a reconcile.
    pub revoke_on: Option<(String, LeaderGate)>,
}

/// Answers the operator's Kubernetes requests from a map of existing objects (by path):
/// GET returns the object or 404, server-side apply answers with the applied object (a
/// status apply with the stored object carrying the new status), POST echoes.
pub fn fake_api_server(
    objects: HashMap<String, Value>,
    options: FakeApiOptions,
) -> (Client, JoinHandle<Vec<ApiRequest>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let bytes = request.into_body().collect_bytes().await.expect("request body");
            let body: Value =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") };
            if let Some((_, gate)) = options.revoke_on.as_ref().filter(|(on, _)| *on == path) {
                gate.revoke();
            }
            let (status, answer) = match method {
                Method::PATCH if options.refuse_patch.contains(&path) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, invalid(&path))
                }
                Method::GET => match objects.get(&path) {
                    Some(object) => (StatusCode::OK, object.clone()),
                    None => (StatusCode::NOT_FOUND, not_found(&path)),
                },
                Method::PATCH => {
                    match (path.strip_suffix("/status").and_then(|o| objects.get(o)), objects.get(&path)) {
                        (Some(object), _) => {
                            let mut object = object.clone();
                            object["status"] = body["status"].clone();
                            (StatusCode::OK, object)
                        }
                        // A JSON patch (the finalizer) or an apply to an existing object.
                        (None, Some(object)) => (StatusCode::OK, object.clone()),
                        (None, None) => (StatusCode::OK, body.clone()),
                    }
                }
                Method::POST => (StatusCode::CREATED, body.clone()),
                Method::DELETE => {
                    (StatusCode::OK, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}))
                }
                _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
            };
            seen.push(ApiRequest { method, path, query, body });
            let response = Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap()));
            respond.send_response(response.unwrap());
        }
        seen
    });
    (Client::new(service, "default"), server)
}

/// A refusal whose message quotes a value, as API server validation messages can.
fn invalid(path: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": format!("{path} is invalid: data[token]: Invalid value: \"c2VjcmV0LXZhbHVl\""),
    })
}

fn not_found(path: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": format!("{path} not found"),
    })
}

/// A call the operator made to the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultCall {
    StatusBody(String),
    ClusterStatus(String),
    Init(String),
    AddLearner(String, AddLearner),
    Promote(String, u64),
    RemoveMember(String, u64),
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
    let context = Context::new(client, vault, Arc::new(Metrics::default()), reporter, VaultDefaults::default());
    (Arc::new(context.with_leader_gate(gate)), server)
}
