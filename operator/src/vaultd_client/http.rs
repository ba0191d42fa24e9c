//! [`VaultAdmin`] over HTTP with reqwest, speaking vaultd's JSON envelope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, MemberAdded};
use strongroom_admin_api::retention::{RunList, RunReport};
use strongroom_admin_api::tokens::{CreateToken, TokenCreated, TokenInfo, TokenList};

use super::{NewToken, RetentionAdmin, RootToken, StatusBody, TrustVault, VaultAdmin, VaultError};

/// The header vaultd reads the token from (Databunker's name).
const TOKEN_HEADER: &str = "X-Bunker-Token";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients per trusted CA kept at most (renewed CAs replace old ones rarely).
const MAX_CACHED_CLIENTS: usize = 64;

/// The real vault client. Cheap to clone. Built without any trusted root: HTTPS works only
/// through [`TrustVault::trusting`], with the vault's own CA.
#[derive(Clone, Debug)]
pub struct HttpVaultAdmin {
    http: reqwest::Client,
    /// One client per CA (PEM), shared by every clone.
    by_ca: Arc<Mutex<HashMap<Vec<u8>, reqwest::Client>>>,
}

fn setup_error(error: impl std::fmt::Display) -> VaultError {
    VaultError::Unreachable { node: "(client setup)".into(), reason: error.to_string() }
}

impl HttpVaultAdmin {
    pub fn new() -> Result<Self, VaultError> {
        let http = Self::builder().build().map_err(setup_error)?;
        Ok(Self { http, by_ca: Arc::default() })
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tls_built_in_root_certs(false)
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

impl TrustVault for HttpVaultAdmin {
    fn trusting(&self, ca_pem: Option<&[u8]>) -> Result<Self, VaultError> {
        let Some(ca_pem) = ca_pem else { return Ok(Self { http: self.http.clone(), by_ca: self.by_ca.clone() }) };
        let mut by_ca = self.by_ca.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let http = match by_ca.get(ca_pem) {
            Some(http) => http.clone(),
            None => {
                let ca = reqwest::Certificate::from_pem(ca_pem).map_err(setup_error)?;
                let http = Self::builder().add_root_certificate(ca).build().map_err(setup_error)?;
                if by_ca.len() >= MAX_CACHED_CLIENTS {
                    by_ca.clear();
                }
                by_ca.insert(ca_pem.to_vec(), http.clone());
                http
            }
        };
        Ok(Self { http, by_ca: self.by_ca.clone() })
    }
}

impl VaultAdmin for HttpVaultAdmin {
    async fn node_status(&self, node: &str) -> Result<StatusBody, VaultError> {
        self.call(node, self.request(Method::GET, node, "/v1/status", None)).await
    }

    async fn cluster_status(&self, node: &str, token: &RootToken) -> Result<ClusterStatus, VaultError> {
        self.call(node, self.request(Method::GET, node, "/v1/sys/cluster", Some(token))).await
    }

    async fn init_cluster(&self, node: &str, token: &RootToken) -> Result<MemberAdded, VaultError> {
        // vaultd reads a JSON object here (no field is required): send an empty one.
        let request =
            self.request(Method::POST, node, "/v1/sys/cluster/init", Some(token)).json(&serde_json::json!({}));
        self.call(node, request).await
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

    async fn create_scoped_token(
        &self,
        node: &str,
        token: &RootToken,
        request: &CreateToken,
    ) -> Result<NewToken, VaultError> {
        RetentionAdmin::create_token(self, node, token, request).await
    }

    async fn revoke_others_named(
        &self,
        node: &str,
        token: &RootToken,
        name: &str,
        keep: &str,
    ) -> Result<Vec<String>, VaultError> {
        let mut revoked = Vec::new();
        for other in self.list_tokens(node, token).await?.into_iter().filter(|t| t.name == name && t.id != keep) {
            self.revoke_token(node, token, &other.id).await?;
            revoked.push(other.id);
        }
        Ok(revoked)
    }
}

impl RetentionAdmin for HttpVaultAdmin {
    async fn create_token(&self, node: &str, token: &RootToken, request: &CreateToken) -> Result<NewToken, VaultError> {
        let call = self.request(Method::POST, node, "/v1/sys/tokens", Some(token)).json(request);
        // The secret goes straight into a redacting wrapper; `TokenCreated` is never kept.
        let created: TokenCreated = self.call(node, call).await?;
        Ok(NewToken { id: created.id, secret: RootToken::new(created.token) })
    }

    async fn list_tokens(&self, node: &str, token: &RootToken) -> Result<Vec<TokenInfo>, VaultError> {
        let list: TokenList = self.call(node, self.request(Method::GET, node, "/v1/sys/tokens", Some(token))).await?;
        Ok(list.tokens)
    }

    async fn revoke_token(&self, node: &str, token: &RootToken, id: &str) -> Result<(), VaultError> {
        // Token ids are `tok-` and URL-safe characters; anything else cannot be one of ours.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(VaultError::InvalidResponse { node: node.to_string(), reason: format!("bad token id {id:?}") });
        }
        let path = format!("/v1/sys/tokens/{id}");
        match self.call::<Empty>(node, self.request(Method::DELETE, node, &path, Some(token))).await {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(404) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn latest_run(&self, node: &str, token: &RootToken, policy: &str) -> Result<Option<RunReport>, VaultError> {
        let request = self
            .request(Method::GET, node, "/v1/sys/retention/runs", Some(token))
            .query(&[("policy", policy), ("limit", "1")]);
        let list: RunList = self.call(node, request).await?;
        // Newest first; the vault filters by policy, but a report of another is not ours.
        Ok(list.runs.into_iter().find(|run| run.policy == policy))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use strongroom_admin_api::cluster::NodeState;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// One request as the tiny server received it.
    #[derive(Clone, Debug, Default)]
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
        }
    }

    /// A one-request HTTP/1.1 server on 127.0.0.1 that answers `status` and `body`.
    async fn serve_once(status: u16, body: &'static str) -> (String, Arc<Mutex<Received>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Received::default()));
        let record = received.clone();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, content_length) = loop {
                let read = socket.read(&mut chunk).await.unwrap();
                buffer.extend_from_slice(&chunk[..read]);
                if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_string))
                        .map_or(0, |value| value.trim().parse::<usize>().unwrap());
                    break (end + 4, length);
                }
            };
            while buffer.len() < head_end + content_length {
                let read = socket.read(&mut chunk).await.unwrap();
                buffer.extend_from_slice(&chunk[..read]);
            }
            let head = String::from_utf8_lossy(&buffer[..head_end - 4]).to_string();
            let mut lines = head.lines();
            *record.lock().unwrap() = Received {
                request_line: lines.next().unwrap_or_default().to_string(),
                headers: lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
                    .collect(),
                body: String::from_utf8_lossy(&buffer[head_end..]).to_string(),
            };
            let reason = if status < 400 { "OK" } else { "Error" };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        (address, received)
    }

    fn token() -> RootToken {
        RootToken::new("root-token-for-tests-0123456789abcdef")
    }

    #[tokio::test]
    async fn node_status_is_read_without_a_token() {
        let (node, received) = serve_once(
            200,
            r#"{"status":"ok","version":"0.1.0","kek":"strongroom-kek-1","node":{"id":null,"state":"uninitialized","leader":null}}"#,
        )
        .await;
        let status = HttpVaultAdmin::new().unwrap().node_status(&node).await.unwrap();
        assert_eq!(status.node.state, NodeState::Uninitialized);
        assert_eq!(status.kek, "strongroom-kek-1");
        let received = received.lock().unwrap().clone();
        assert_eq!(received.request_line, "GET /v1/status HTTP/1.1");
        assert_eq!(received.header("x-bunker-token"), None);
    }

    #[tokio::test]
    async fn cluster_status_sends_the_root_token_and_reads_the_envelope() {
        let (node, received) = serve_once(
            200,
            r#"{"status":"ok","nodeId":1,"state":"leader","leader":1,"term":4,"lastLogIndex":9,"appliedIndex":9,
               "snapshotIndex":null,"purgedIndex":null,
               "members":[{"id":1,"raftAddress":"v-0.h.ns.svc:3001","apiAddress":"http://v-0.h.ns.svc:3000","voter":true,"lag":0,"healthy":true}],
               "erasures":{"pending":0,"compactionDeadlineMs":60000}}"#,
        )
        .await;
        let cluster = HttpVaultAdmin::new().unwrap().cluster_status(&node, &token()).await.unwrap();
        assert_eq!(cluster.leader, Some(1));
        assert_eq!(cluster.members[0].healthy, Some(true));
        let received = received.lock().unwrap().clone();
        assert_eq!(received.request_line, "GET /v1/sys/cluster HTTP/1.1");
        assert_eq!(received.header("x-bunker-token"), Some("root-token-for-tests-0123456789abcdef"));
    }

    #[tokio::test]
    async fn init_cluster_posts_an_empty_json_object() {
        let (node, received) = serve_once(200, r#"{"status":"ok","id":1}"#).await;
        let added = HttpVaultAdmin::new().unwrap().init_cluster(&node, &token()).await.unwrap();
        assert_eq!(added.id, 1);
        let received = received.lock().unwrap().clone();
        assert_eq!(received.request_line, "POST /v1/sys/cluster/init HTTP/1.1");
        assert_eq!(received.header("content-type"), Some("application/json"));
        assert_eq!(received.header("x-bunker-token"), Some("root-token-for-tests-0123456789abcdef"));
        assert_eq!(received.body, "{}");
    }

    #[tokio::test]
    async fn add_learner_posts_the_camel_case_body() {
        let (node, received) = serve_once(200, r#"{"status":"ok","id":7}"#).await;
        let learner = AddLearner {
            raft_address: "v-3.h.ns.svc:3001".into(),
            api_address: "http://v-3.h.ns.svc:3000".into(),
            replace: false,
        };
        let added = HttpVaultAdmin::new().unwrap().add_learner(&node, &token(), &learner).await.unwrap();
        assert_eq!(added.id, 7);
        let received = received.lock().unwrap().clone();
        assert_eq!(received.request_line, "POST /v1/sys/cluster/learners HTTP/1.1");
        let body: serde_json::Value = serde_json::from_str(&received.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"raftAddress": "v-3.h.ns.svc:3001", "apiAddress": "http://v-3.h.ns.svc:3000", "replace": false})
        );
    }

    #[tokio::test]
    async fn promote_and_remove_use_the_member_id_in_the_path() {
        let (node, received) = serve_once(200, r#"{"status":"ok"}"#).await;
        HttpVaultAdmin::new().unwrap().promote(&node, &token(), 4).await.unwrap();
        assert_eq!(received.lock().unwrap().request_line, "POST /v1/sys/cluster/members/4/promote HTTP/1.1");
        let (node, received) = serve_once(200, r#"{"status":"ok"}"#).await;
        HttpVaultAdmin::new().unwrap().remove_member(&node, &token(), 5).await.unwrap();
        assert_eq!(received.lock().unwrap().request_line, "DELETE /v1/sys/cluster/members/5 HTTP/1.1");
    }

    #[tokio::test]
    async fn an_error_envelope_becomes_a_rejection_with_status_and_message() {
        let (node, _) = serve_once(409, r#"{"status":"error","message":"learner 4 lags by 900 entries"}"#).await;
        let error = HttpVaultAdmin::new().unwrap().promote(&node, &token(), 4).await.unwrap_err();
        assert_eq!(error.status(), Some(409));
        assert!(error.to_string().contains("learner 4 lags by 900 entries"), "{error}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_never_shows_the_token() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let error = HttpVaultAdmin::new().unwrap().cluster_status(&node, &token()).await.unwrap_err();
        assert!(matches!(error, VaultError::Unreachable { .. }), "{error:?}");
        assert!(!format!("{error} {error:?}").contains("root-token-for-tests"));
        assert!(!format!("{:?}", token()).contains("root-token-for-tests"));
    }

    #[tokio::test]
    async fn create_token_posts_name_and_scopes_and_keeps_the_secret_redacted() {
        let (node, received) = serve_once(
            200,
            r#"{"status":"ok","id":"tok-7","name":"retention-shop-drop-phone","scopes":["retention:run"],"token":"s3cret-scoped"}"#,
        )
        .await;
        let request = CreateToken {
            name: "retention-shop-drop-phone".into(),
            scopes: vec!["retention:run".into()],
            subject: None,
        };
        let created = HttpVaultAdmin::new().unwrap().create_token(&node, &token(), &request).await.unwrap();
        assert_eq!(created.id, "tok-7");
        assert_eq!(created.secret.expose(), "s3cret-scoped");
        assert!(!format!("{created:?}").contains("s3cret"));
        let received = received.lock().unwrap().clone();
        assert_eq!(received.request_line, "POST /v1/sys/tokens HTTP/1.1");
        assert_eq!(received.header("x-bunker-token"), Some("root-token-for-tests-0123456789abcdef"));
        let body: serde_json::Value = serde_json::from_str(&received.body).unwrap();
        assert_eq!(body, serde_json::json!({"name": "retention-shop-drop-phone", "scopes": ["retention:run"]}));
    }

    #[tokio::test]
    async fn revoking_an_unknown_token_is_success() {
        let (node, received) = serve_once(404, r#"{"status":"error","message":"no such token"}"#).await;
        HttpVaultAdmin::new().unwrap().revoke_token(&node, &token(), "tok-7").await.unwrap();
        assert_eq!(received.lock().unwrap().request_line, "DELETE /v1/sys/tokens/tok-7 HTTP/1.1");
        let (node, _) = serve_once(403, r#"{"status":"error","message":"missing scope tokens:admin"}"#).await;
        let error = HttpVaultAdmin::new().unwrap().revoke_token(&node, &token(), "tok-7").await.unwrap_err();
        assert_eq!(error.status(), Some(403));
        let error = HttpVaultAdmin::new().unwrap().revoke_token("http://127.0.0.1:1", &token(), "../x").await;
        assert!(matches!(error, Err(VaultError::InvalidResponse { .. })), "{error:?}");
    }

    #[tokio::test]
    async fn list_tokens_reads_the_list() {
        let (node, received) = serve_once(
            200,
            r#"{"status":"ok","tokens":[{"id":"tok-1","name":"retention-shop-x","scopes":["retention:run"],"created":1}]}"#,
        )
        .await;
        let tokens = HttpVaultAdmin::new().unwrap().list_tokens(&node, &token()).await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].name, "retention-shop-x");
        assert_eq!(received.lock().unwrap().request_line, "GET /v1/sys/tokens HTTP/1.1");
    }

    #[tokio::test]
    async fn latest_run_asks_for_one_run_of_the_policy() {
        let (node, received) = serve_once(
            200,
            r#"{"status":"ok","runs":[{"policy":"shop/drop-phone","dryRun":false,"startedAt":1000,"finishedAt":2000,
               "matched":3,"changed":2,"rules":[],"auditEventId":"evt-9"}]}"#,
        )
        .await;
        let run = HttpVaultAdmin::new().unwrap().latest_run(&node, &token(), "shop/drop-phone").await.unwrap();
        let run = run.expect("a run");
        assert_eq!((run.matched, run.changed, run.audit_event_id.as_str()), (3, 2, "evt-9"));
        assert_eq!(
            received.lock().unwrap().request_line,
            "GET /v1/sys/retention/runs?policy=shop%2Fdrop-phone&limit=1 HTTP/1.1"
        );
        let (node, _) = serve_once(200, r#"{"status":"ok","runs":[]}"#).await;
        assert_eq!(HttpVaultAdmin::new().unwrap().latest_run(&node, &token(), "shop/x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_envelope_is_invalid() {
        let (node, _) = serve_once(200, r#"{"unexpected":true}"#).await;
        let error = HttpVaultAdmin::new().unwrap().node_status(&node).await.unwrap_err();
        assert!(matches!(error, VaultError::InvalidResponse { .. }), "{error:?}");
    }

    /// An HTTPS vaultd stand-in on 127.0.0.1 serving `/v1/status` with the certificate in
    /// `tls` (`tls.crt`, `tls.key`); its base URL under the name `localhost`.
    async fn serve_https(tls: &std::collections::BTreeMap<String, k8s_openapi::ByteString>) -> String {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(&tls["tls.crt"].0).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(&tls["tls.key"].0).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().route(
                "/v1/status",
                actix_web::web::get().to(|| async {
                    actix_web::HttpResponse::Ok().content_type("application/json").body(
                        r#"{"status":"ok","version":"0.1.0","kek":"k","node":{"id":null,"state":"uninitialized","leader":null}}"#,
                    )
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, config)
        .unwrap()
        .run();
        tokio::spawn(server);
        format!("https://localhost:{port}")
    }

    #[tokio::test]
    async fn over_https_only_the_vaults_own_ca_is_trusted() {
        use crate::piivault::api_tls::{generate_ca, issue, today};
        use crate::piivault::names::VaultNames;
        let names = VaultNames::new("vault", "pii");
        let ca = generate_ca(&names, today()).unwrap();
        let (tls, _) = issue(&names, &ca, today()).unwrap();
        let node = serve_https(&tls).await;
        let client = HttpVaultAdmin::new().unwrap();

        let trusting = client.trusting(Some(&ca["ca.crt"].0)).unwrap();
        let status = trusting.node_status(&node).await.unwrap();
        assert_eq!(status.node.state, NodeState::Uninitialized);
        // The same client again, from the cache.
        client.trusting(Some(&ca["ca.crt"].0)).unwrap().node_status(&node).await.unwrap();

        // No CA, or another vault's CA: the certificate is refused.
        let error = client.node_status(&node).await.unwrap_err();
        assert!(matches!(error, VaultError::Unreachable { .. }), "{error:?}");
        let other = generate_ca(&names, today()).unwrap();
        let error = client.trusting(Some(&other["ca.crt"].0)).unwrap().node_status(&node).await.unwrap_err();
        assert!(matches!(error, VaultError::Unreachable { .. }), "{error:?}");
    }
}
