//! A fake Kubernetes API server behind kube-rs's mock service, for the reconcilers' unit
//! tests (nothing real can run inside them): it answers what the operator reads, accepts
//! what it writes, and records every request for the tests to assert on. The system
//! tests in the top-level `tests/` run the operator against a real API server instead.

use std::collections::HashMap;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::leader_election::LeaderGate;

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
    /// Every request under these path prefixes is answered 404: an API group the cluster
    /// does not have (e.g. `/apis/monitoring.coreos.com/`).
    pub missing_apis: Vec<String>,
}

/// Answers the operator's Kubernetes requests from a map of existing objects (by path):
/// GET returns the object or 404, server-side apply answers with the applied object (a
/// status apply with the stored object carrying the new status), POST echoes, DELETE of an
/// object answers success.
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
            let missing_api = options.missing_apis.iter().any(|prefix| path.starts_with(prefix.as_str()));
            let (status, answer) = match method {
                _ if missing_api => {
                    // As a real API server answers for a group it does not serve: plain text.
                    seen.push(ApiRequest { method, path, query, body });
                    let response = Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::from(b"404 page not found\n".to_vec()));
                    respond.send_response(response.unwrap());
                    continue;
                }
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
                // One object's deletion is a Status; a collection's, the (empty) list.
                Method::DELETE if objects.contains_key(&path) => {
                    (StatusCode::OK, json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}))
                }
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
