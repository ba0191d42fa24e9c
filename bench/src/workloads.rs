//! The HTTP workloads: what each request of "create user" and "get user by login" looks
//! like against vaultd, and the matching requests against the trivial handler.
//!
//! Keys become logins `u<key>`, so a create with a unique key makes a unique subject and
//! a get with a key below the pre-created count finds one.

use crate::http::{self, Connection, Endpoint};
use crate::load::{Client, Outcome};

/// The operations the suite measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workload {
    /// Create a user (vaultd, PostgreSQL) or POST the same JSON to the echo handler.
    Create,
    /// Get a user by login (vaultd, PostgreSQL) or GET the trivial handler's `/`.
    Get,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Get => "get",
        }
    }
}

/// Keys whose phone numbers differ: key `n` and key `n + DISTINCT_PHONES` share one, and
/// the vault keeps phones unique, so the second create would be rejected.
pub const DISTINCT_PHONES: u64 = 1_000_000;

/// The profile a create sends, as JSON, for key `n`. Phones are `+4477009` and six
/// digits of `n`: the UK's 07700 9 drama prefix with one digit too many, so no real
/// subscriber's number (vaultd normalises phone numbers and does not reject odd ones).
pub fn profile_json(n: u64) -> String {
    format!(
        r#"{{"login":"u{n}","email":"u{n}@example.com","phone":"+4477009{:06}","first":"Name","last":"Surname"}}"#,
        n % DISTINCT_PHONES
    )
}

/// The login a get looks up for key `n`.
pub fn login(n: u64) -> String {
    format!("u{n}")
}

/// What a request goes to.
#[derive(Clone, Debug)]
pub enum HttpTarget {
    /// vaultd with this root token.
    Vault { token: String },
    /// The trivial actix handler started by the harness.
    Trivial,
}

/// One client with one keep-alive connection, reconnecting after a failure.
pub struct HttpClient {
    endpoint: Endpoint,
    host: String,
    target: HttpTarget,
    workload: Workload,
    connection: Option<Connection>,
    request: Vec<u8>,
}

impl HttpClient {
    pub async fn connect(endpoint: Endpoint, target: HttpTarget, workload: Workload) -> anyhow::Result<Self> {
        let connection = Connection::connect(&endpoint).await?;
        Ok(HttpClient { connection: Some(connection), ..HttpClient::new(endpoint, target, workload) })
    }

    /// A client that connects on its first request (for a server that may be down).
    pub fn new(endpoint: Endpoint, target: HttpTarget, workload: Workload) -> Self {
        HttpClient {
            host: endpoint.addr.to_string(),
            endpoint,
            target,
            workload,
            connection: None,
            request: Vec::with_capacity(512),
        }
    }

    fn build(&mut self, key: u64) {
        let host = &self.host;
        let out = &mut self.request;
        match (&self.target, self.workload) {
            (HttpTarget::Vault { token }, Workload::Create) => {
                let body = profile_json(key);
                http::write_request(out, "POST", "/v1/user", host, &[("X-Bunker-Token", token)], Some(body.as_bytes()))
            }
            (HttpTarget::Vault { token }, Workload::Get) => {
                let path = format!("/v1/user/login/{}", login(key));
                http::write_request(out, "GET", &path, host, &[("X-Bunker-Token", token)], None)
            }
            (HttpTarget::Trivial, Workload::Create) => {
                let body = profile_json(key);
                http::write_request(out, "POST", "/echo", host, &[("X-Bunker-Token", "DEMO")], Some(body.as_bytes()))
            }
            (HttpTarget::Trivial, Workload::Get) => {
                http::write_request(out, "GET", "/", host, &[("X-Bunker-Token", "DEMO")], None)
            }
        }
    }
}

impl Client for HttpClient {
    async fn call(&mut self, key: u64) -> Outcome {
        self.build(key);
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => match Connection::connect(&self.endpoint).await {
                Ok(connection) => connection,
                Err(error) => return Outcome::Failed(format!("connect: {error}")),
            },
        };
        match connection.send(&self.request).await {
            Ok(status) => {
                let outcome = if status == 200 {
                    Outcome::Ok
                } else {
                    let body = String::from_utf8_lossy(connection.body());
                    Outcome::Rejected(format!("HTTP {status}: {}", body.trim()))
                };
                if !connection.is_closing() {
                    self.connection = Some(connection);
                }
                outcome
            }
            Err(error) => Outcome::Failed(format!("request: {error}")),
        }
    }

    fn reset(&mut self) {
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_unique_per_key_and_valid_json() {
        let value: serde_json::Value = serde_json::from_str(&profile_json(42)).unwrap();
        assert_eq!(value["login"], "u42");
        assert_eq!(value["email"], "u42@example.com");
        assert_eq!(value["phone"], "+4477009000042");
        assert_ne!(profile_json(1), profile_json(2));
    }

    #[test]
    fn phones_repeat_only_after_distinct_phones_keys() {
        let phone = |n| serde_json::from_str::<serde_json::Value>(&profile_json(n)).unwrap()["phone"].clone();
        assert_ne!(phone(0), phone(DISTINCT_PHONES - 1));
        assert_ne!(phone(99_999), phone(100_000));
        assert_eq!(phone(0), phone(DISTINCT_PHONES));
    }
}
