//! [`VaultAdmin`] over HTTP with reqwest, speaking vaultd's JSON envelope.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, MemberAdded};

use super::{NodeStatus, RootToken, VaultAdmin, VaultError};

/// The header vaultd reads the token from (Databunker's name).
const TOKEN_HEADER: &str = "X-Bunker-Token";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The real vault client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpVaultAdmin {
    http: reqwest::Client,
}

impl HttpVaultAdmin {
    pub fn new() -> Result<Self, VaultError> {
        let http =
            reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build().map_err(
                |error| VaultError::Unreachable { node: "(client setup)".into(), reason: error.to_string() },
            )?;
        Ok(Self { http })
    }

    fn request(&self, method: Method, node: &str, path: &str, token: Option<&RootToken>) -> RequestBuilder {
        let url = format!("{}{path}", node.trim_end_matches('/'));
        let request = self.http.request(method, url);
        match token {
            Some(token) => request.header(TOKEN_HEADER, token.expose()),
            None => request,
        }
    }

    async fn call<T: DeserializeOwned>(&self, node: &str, request: RequestBuilder) -> Result<T, VaultError> {
        let response = request.send().await.map_err(|error| VaultError::Unreachable {
            node: node.to_string(),
            // Without the URL: reqwest's messages repeat it, and the node is named already.
            reason: error.without_url().to_string(),
        })?;
        decode(node, response).await
    }
}

/// The failure half of vaultd's envelope.
#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    message: String,
}

/// The success half: `status` is `"ok"`, the body's fields sit beside it.
#[derive(Deserialize)]
struct OkEnvelope<T> {
    status: String,
    #[serde(flatten)]
    body: T,
}

/// For calls whose answer carries nothing but `"status":"ok"`.
#[derive(Deserialize)]
struct Empty {}

async fn decode<T: DeserializeOwned>(node: &str, response: Response) -> Result<T, VaultError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|error| VaultError::Unreachable { node: node.to_string(), reason: error.without_url().to_string() })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorEnvelope>(&bytes)
            .map(|envelope| envelope.message)
            .unwrap_or_else(|_| format!("non-JSON error body ({} bytes)", bytes.len()));
        return Err(VaultError::Rejected { node: node.to_string(), status: status.as_u16(), message });
    }
    let envelope: OkEnvelope<T> = serde_json::from_slice(&bytes)
        .map_err(|error| VaultError::InvalidResponse { node: node.to_string(), reason: error.to_string() })?;
    if envelope.status != "ok" {
        return Err(VaultError::InvalidResponse {
            node: node.to_string(),
            reason: format!("status {:?} in a {} answer", envelope.status, status.as_u16()),
        });
    }
    Ok(envelope.body)
}

impl VaultAdmin for HttpVaultAdmin {
    async fn node_status(&self, node: &str) -> Result<NodeStatus, VaultError> {
        self.call(node, self.request(Method::GET, node, "/v1/status", None)).await
    }

    async fn cluster_status(&self, node: &str, token: &RootToken) -> Result<ClusterStatus, VaultError> {
        self.call(node, self.request(Method::GET, node, "/v1/sys/cluster", Some(token))).await
    }

    async fn init_cluster(&self, node: &str, token: &RootToken) -> Result<MemberAdded, VaultError> {
        self.call(node, self.request(Method::POST, node, "/v1/sys/cluster/init", Some(token))).await
    }

    async fn add_learner(
        &self,
        node: &str,
        token: &RootToken,
        learner: &AddLearner,
    ) -> Result<MemberAdded, VaultError> {
        let request = self.request(Method::POST, node, "/v1/sys/cluster/learners", Some(token)).json(learner);
        self.call(node, request).await
    }

    async fn promote(&self, node: &str, token: &RootToken, id: u64) -> Result<(), VaultError> {
        let path = format!("/v1/sys/cluster/members/{id}/promote");
        self.call::<Empty>(node, self.request(Method::POST, node, &path, Some(token))).await.map(|_| ())
    }

    async fn remove_member(&self, node: &str, token: &RootToken, id: u64) -> Result<(), VaultError> {
        let path = format!("/v1/sys/cluster/members/{id}");
        self.call::<Empty>(node, self.request(Method::DELETE, node, &path, Some(token))).await.map(|_| ())
    }
}
