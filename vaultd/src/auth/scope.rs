//! Scopes are colon-separated segments; `*` in a granted scope covers any one segment,
//! and a lone `*` covers everything (the root token). A request needs one concrete scope
//! (`apps:shop:read`); a token may hold patterns (`apps:*:read`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(Vec<String>);

#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}; valid scopes: users:read|write|*, apps:<app|*>:read|write|*, audit:read, tokens:admin, retention:run, cluster:admin, consent:admin, requests:admin, backup:read")]
pub struct ScopeError(String);

const ACTIONS: [&str; 3] = ["read", "write", "*"];

impl Scope {
    /// Everything: the root token's scope.
    pub fn all() -> Self {
        Scope(vec!["*".into()])
    }

    pub fn users(action: &str) -> Self {
        Scope(vec!["users".into(), action.into()])
    }

    pub fn app(app: &str, action: &str) -> Self {
        Scope(vec!["apps".into(), app.into(), action.into()])
    }

    pub fn audit_read() -> Self {
        Scope(vec!["audit".into(), "read".into()])
    }

    pub fn tokens_admin() -> Self {
        Scope(vec!["tokens".into(), "admin".into()])
    }

    /// Manage legal bases and processing activities, and revoke a basis for everyone.
    pub fn consent_admin() -> Self {
        Scope(vec!["consent".into(), "admin".into()])
    }

    /// Decide on subjects' requests (a DPO).
    pub fn requests_admin() -> Self {
        Scope(vec!["requests".into(), "admin".into()])
    }

    pub fn retention_run() -> Self {
        Scope(vec!["retention".into(), "run".into()])
    }

    pub fn cluster_admin() -> Self {
        Scope(vec!["cluster".into(), "admin".into()])
    }

    /// Take backups and read the erasure ledger.
    pub fn backup_read() -> Self {
        Scope(vec!["backup".into(), "read".into()])
    }

    /// One pattern of each kind, which together grant every scope there is.
    pub fn every() -> [Scope; 9] {
        [
            Scope::users("*"),
            Scope::app("*", "*"),
            Scope::audit_read(),
            Scope::tokens_admin(),
            Scope::retention_run(),
            Scope::cluster_admin(),
            Scope::consent_admin(),
            Scope::requests_admin(),
            Scope::backup_read(),
        ]
    }

    /// Whether holding `self` grants everything `other` grants.
    pub fn covers(&self, other: &Scope) -> bool {
        if self.0 == ["*"] {
            return true;
        }
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(mine, theirs)| mine == "*" || mine == theirs)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        let parts: Vec<&str> = s.split(':').collect();
        let valid = match parts.as_slice() {
            ["users", action] => ACTIONS.contains(action),
            ["apps", app, action] => (*app == "*" || crate::vault::valid_app_name(app)) && ACTIONS.contains(action),
            ["audit", "read"]
            | ["tokens", "admin"]
            | ["retention", "run"]
            | ["cluster", "admin"]
            | ["consent", "admin"]
            | ["requests", "admin"]
            | ["backup", "read"] => true,
            _ => false,
        };
        if valid {
            Ok(Scope(parts.into_iter().map(String::from).collect()))
        } else {
            Err(ScopeError(s.chars().take(64).collect()))
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, ScopeError> {
        s.parse()
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(":"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scope {
        x.parse().unwrap()
    }

    #[test]
    fn patterns_cover_concrete_scopes() {
        assert!(s("users:*").covers(&s("users:read")));
        assert!(!s("users:read").covers(&s("users:write")));
        assert!(s("apps:*:read").covers(&s("apps:shop:read")));
        assert!(!s("apps:shop:*").covers(&s("apps:crm:read")));
        assert!(!s("users:read").covers(&s("apps:shop:read")));
        assert!(Scope::all().covers(&s("cluster:admin")));
        assert!(!s("users:read").covers(&s("users:*")), "a narrower scope cannot grant a wider one");
    }

    #[test]
    fn unknown_scopes_are_rejected() {
        for bad in ["users", "users:delete", "apps:Shop Name:read", "root", "*", "cluster:*"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        assert_eq!(s("retention:run").to_string(), "retention:run");
    }
}
