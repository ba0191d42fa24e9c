//! Test doubles for the retention reconciler: a scripted vault token and run API that
//! records what it was asked, wired to the fake API server (`crate::fake_api_server`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::Reporter;
use serde_json::Value;
use strongroom_admin_api::retention::RunReport;
use strongroom_admin_api::tokens::{CreateToken, TokenInfo};
use tokio::task::JoinHandle;

use super::reconciler::Context;
use crate::fake_api_server::{fake_api_server, ApiRequest, FakeApiOptions};
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::vaultd_client::{NewToken, RetentionAdmin, RootToken, TrustVault, VaultError};

/// A call the operator made to the vault, with the token it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    CreateToken { node: String, request: CreateToken },
    ListTokens { node: String },
    Revoke { node: String, id: String },
    LatestRun { node: String, policy: String },
}

#[derive(Default)]
struct Script {
    /// Tokens the vault holds (by id), with their secrets.
    tokens: Vec<(TokenInfo, String)>,
    next_id: u64,
    runs: Vec<RunReport>,
    /// Every call fails as if the vault were down.
    unreachable: bool,
    calls: Vec<(Call, String)>,
    /// The CAs the reconciler asked the client to trust.
    trusted: Vec<Option<Vec<u8>>>,
}

/// A vault whose token store and run history the test sets up.
#[derive(Clone, Default)]
pub struct ScriptedVault {
    script: Arc<Mutex<Script>>,
}

impl ScriptedVault {
    /// A token the vault already holds.
    pub fn holding(&self, id: &str, name: &str, secret: &str) -> &Self {
        let info = TokenInfo {
            id: id.into(),
            name: name.into(),
            scopes: vec!["retention:run".into()],
            created: 1,
            subject: None,
        };
        self.script.lock().unwrap().tokens.push((info, secret.into()));
        self
    }

    /// A run the vault recorded (newest last).
    pub fn ran(&self, report: RunReport) -> &Self {
        self.script.lock().unwrap().runs.push(report);
        self
    }

    pub fn unreachable(&self) -> &Self {
        self.script.lock().unwrap().unreachable = true;
        self
    }

    /// The CAs (PEM) the reconciler's clients trusted, in order.
    pub fn trusted(&self) -> Vec<Option<Vec<u8>>> {
        self.script.lock().unwrap().trusted.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.script.lock().unwrap().calls.iter().map(|(call, _)| call.clone()).collect()
    }

    /// The tokens each call carried, in order.
    pub fn tokens_used(&self) -> Vec<String> {
        self.script.lock().unwrap().calls.iter().map(|(_, token)| token.clone()).collect()
    }

    /// The ids of the tokens the vault holds now.
    pub fn live_tokens(&self) -> Vec<String> {
        self.script.lock().unwrap().tokens.iter().map(|(info, _)| info.id.clone()).collect()
    }

    fn record(&self, call: Call, token: &RootToken) -> Result<(), VaultError> {
        let mut script = self.script.lock().unwrap();
        script.calls.push((call, token.expose().to_string()));
        if script.unreachable {
            return Err(VaultError::Unreachable { node: "vault".into(), reason: "connection refused".into() });
        }
        Ok(())
    }

    fn is_root(token: &RootToken) -> Result<(), VaultError> {
        match token.expose() {
            ROOT_TOKEN | OPERATOR_TOKEN => Ok(()),
            _ => Err(VaultError::Rejected { node: "vault".into(), status: 403, message: "missing scope".into() }),
        }
    }
}

/// The root token the tests' vaults hold in their generated Secret.
pub const ROOT_TOKEN: &str = "root-token-of-the-customers-vault";
/// The operator's scoped token of the tests' vault (`tokens:admin` among its scopes).
pub const OPERATOR_TOKEN: &str = "operator-token-of-the-customers-vault";

impl TrustVault for ScriptedVault {
    fn trusting(&self, ca_pem: Option<&[u8]>) -> Result<Self, VaultError> {
        self.script.lock().unwrap().trusted.push(ca_pem.map(<[u8]>::to_vec));
        Ok(self.clone())
    }
}

impl RetentionAdmin for ScriptedVault {
    async fn create_token(&self, node: &str, token: &RootToken, request: &CreateToken) -> Result<NewToken, VaultError> {
        self.record(Call::CreateToken { node: node.into(), request: request.clone() }, token)?;
        Self::is_root(token)?;
        let mut script = self.script.lock().unwrap();
        script.next_id += 1;
        let id = format!("tok-new-{}", script.next_id);
        let secret = format!("scoped-secret-{}", script.next_id);
        let info = TokenInfo {
            id: id.clone(),
            name: request.name.clone(),
            scopes: request.scopes.clone(),
            created: 2,
            subject: None,
        };
        script.tokens.push((info, secret.clone()));
        Ok(NewToken { id, secret: RootToken::new(secret) })
    }

    async fn list_tokens(&self, node: &str, token: &RootToken) -> Result<Vec<TokenInfo>, VaultError> {
        self.record(Call::ListTokens { node: node.into() }, token)?;
        Self::is_root(token)?;
        Ok(self.script.lock().unwrap().tokens.iter().map(|(info, _)| info.clone()).collect())
    }

    async fn revoke_token(&self, node: &str, token: &RootToken, id: &str) -> Result<(), VaultError> {
        self.record(Call::Revoke { node: node.into(), id: id.into() }, token)?;
        Self::is_root(token)?;
        self.script.lock().unwrap().tokens.retain(|(info, _)| info.id != id);
        Ok(())
    }

    async fn latest_run(&self, node: &str, token: &RootToken, policy: &str) -> Result<Option<RunReport>, VaultError> {
        self.record(Call::LatestRun { node: node.into(), policy: policy.into() }, token)?;
        let script = self.script.lock().unwrap();
        let known = token.expose() == ROOT_TOKEN || script.tokens.iter().any(|(_, secret)| secret == token.expose());
        if !known {
            return Err(VaultError::Rejected { node: node.into(), status: 401, message: "invalid token".into() });
        }
        Ok(script.runs.iter().rev().find(|run| run.policy == policy).cloned())
    }
}

/// A reconciler context over the fake API server and a scripted vault.
pub fn test_context(
    objects: HashMap<String, Value>,
    vault: ScriptedVault,
    gate: LeaderGate,
) -> (Arc<Context<ScriptedVault>>, JoinHandle<Vec<ApiRequest>>) {
    let (client, server) = fake_api_server(objects, FakeApiOptions::default());
    let reporter = Reporter { controller: "strongroom-operator".into(), instance: Some("test".into()) };
    let context = Context::new(client, vault, Arc::new(Metrics::default()), reporter)
        .with_policy(crate::piivault::test_harness::test_policy());
    (Arc::new(context.with_leader_gate(gate)), server)
}
