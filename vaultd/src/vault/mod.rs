//! The vault's service layer: what the API handlers call. It resolves subjects, does the
//! cryptography (DEKs, sealing, blind index) and turns each change into a `Command` for
//! the command log, so handlers never touch storage and every change is audited.
//!
//! One file per feature, named as in `api/` and the state machine; beside them
//! `settings`, `startup` (opening, the blind-index key), `lookup` (finding subjects),
//! `updates` (read-modify-write), `limits` (bounds on what a request may build and
//! store) and `lifetime` (Databunker's expiration values). This file holds the `Vault`
//! and what every feature uses.

mod apps;
pub mod backup;
mod consent;
mod expiration;
mod ledger_replay;
mod lifetime;
mod limits;
mod lookup;
mod pending;
mod retention;
mod sessions;
mod settings;
mod shares;
mod startup;
mod subject_requests;
mod tokens;
mod updates;
mod users;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use apps::valid_app_name;
pub use consent::normalise_brief;
pub use expiration::ExpirationView;
pub use sessions::SessionView;
pub use settings::VaultSettings;
pub use shares::SharedView;
pub use startup::StartupError;
pub use subject_requests::SubjectChanges;

use lookup::Found;
use updates::{apply_update, check_update, UPDATE_ATTEMPTS};

use crate::audit::{now_ms, AuditDraft, Operation};
use crate::auth::{self, Caller, Scope, ROOT_ACTOR};
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::crypto::{self, BlindIndex, CryptoError, DataKey, DekCache, Kek};
use crate::error::{VaultError, VaultResult};
use crate::identifiers::{self, IndexKind, Mode};
use crate::store::{
    ActiveSubject, Applied, Change, Command, Erasure, ForgetCondition, Receipt, Rejection, Store, StoreError,
    SubjectRecord, SubjectState, Target, WrappedKey,
};

pub struct Vault {
    store: Store,
    cluster: Arc<Cluster>,
    kek: Kek,
    deks: Arc<DekCache>,
    /// Loaded at startup when this node holds the key, else on first use (a node that
    /// joins a cluster receives it through the log).
    index: OnceCell<BlindIndex>,
    root_token_hash: [u8; 32],
    /// Set once this node has caught up with its cluster after starting: from then on it
    /// learns of the root token's retirement as it learns of a revocation, by applying
    /// the log; before, a root token is checked against the leader's log first.
    root_checked: std::sync::atomic::AtomicBool,
    settings: VaultSettings,
    /// Per subject: a subject token's cap check and the write it guards run one at a time.
    starts: limits::StartLocks,
    /// One backup streams from this node at a time (each one pins a snapshot's files).
    backups: Arc<tokio::sync::Semaphore>,
}

impl Vault {
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The label of the KEK new wraps use (the one the vault was started with). Each wrap
    /// stores it beside the wrapped key, and unwrapping takes the key it names.
    pub fn active_kek(&self) -> String {
        self.kek.label().to_string()
    }

    /// The cache of unwrapped data keys.
    pub fn key_cache(&self) -> &Arc<DekCache> {
        &self.deks
    }

    /// Waits until this node has applied everything the cluster had committed when it was
    /// called, so that its local reads are current.
    pub async fn catch_up(&self) -> VaultResult<()> {
        Ok(self.cluster.read_barrier().await?)
    }

    /// Submits a command and waits until it is committed on a quorum and applied.
    async fn commit(&self, audit: AuditDraft, change: Change) -> VaultResult<Receipt> {
        Ok(self.cluster.submit(Command { audit, change }).await?)
    }

    /// Records an access that changes nothing (a failed lookup, a bulk listing).
    async fn record_access(&self, audit: AuditDraft, found: bool) -> VaultResult<()> {
        self.commit(audit, Change::Access { found }).await.map(drop)
    }

    /// The subject's DEK, from the cache or unwrapped by the KEK.
    async fn dek(&self, subject: &Uuid, active: &ActiveSubject) -> VaultResult<DataKey> {
        if let Some(key) = self.deks.get(subject) {
            return Ok(key);
        }
        let key = self.kek.unwrap_key(&active.kek, &active.wrapped_dek, &crypto::dek_aad(subject)).await?;
        // Cached only if the subject still exists after the unwrap: a forget committed
        // before this check shows here; one committed after it removes the key after the
        // generation was taken, which keeps the insert out.
        let generation = self.deks.generation();
        if matches!(self.store.subject(subject)?, Some(SubjectRecord { state: SubjectState::Active(_), .. })) {
            self.deks.insert(*subject, key.clone(), generation);
        }
        Ok(key)
    }
}

pub(crate) fn draft(
    caller: &Caller,
    operation: Operation,
    subject: Option<Uuid>,
    app: Option<&str>,
    mode: Option<Mode>,
) -> AuditDraft {
    AuditDraft {
        time: now_ms(),
        actor: caller.actor.clone(),
        operation,
        subject,
        app: app.map(String::from),
        mode: mode.map(|m| format!("{m:?}").to_lowercase()),
        purpose: caller.purpose.clone(),
    }
}

fn system_draft(operation: Operation) -> AuditDraft {
    AuditDraft {
        time: now_ms(),
        actor: "system".into(),
        operation,
        subject: None,
        app: None,
        mode: None,
        purpose: None,
    }
}

/// A page's offset and limit as commands carry them.
fn page_bounds(offset: usize, limit: usize) -> (u32, u32) {
    (u32::try_from(offset).unwrap_or(u32::MAX), u32::try_from(limit).unwrap_or(u32::MAX))
}

/// Maps a refused command onto the API's errors.
fn rejected(rejection: Rejection) -> VaultError {
    match rejection {
        Rejection::Duplicate(kind) => VaultError::Duplicate(kind.field()),
        Rejection::SubjectNotFound | Rejection::Forgotten => VaultError::NotFound("record"),
        Rejection::AppNotFound => VaultError::NotFound("app record"),
        Rejection::TokenNotFound => VaultError::NotFound("access token"),
        Rejection::SessionNotFound => VaultError::SessionNotFound,
        Rejection::ShareNotFound => VaultError::NotFound("shared record"),
        Rejection::UnknownBrief => VaultError::NotFound("legal basis or agreement"),
        Rejection::UnknownActivity => VaultError::NotFound("processing activity"),
        Rejection::RequestNotFound => VaultError::NotFound("request"),
        Rejection::RequestClosed => VaultError::Conflict("the request is no longer open"),
        Rejection::Stale => VaultError::Conflict("record changed concurrently; retry"),
        Rejection::Exists => VaultError::Conflict("record already exists"),
        Rejection::NoOtherAdmin => VaultError::Conflict(
            "the vault needs a token holding every scope (users:*, apps:*:*, audit:read, tokens:admin, \
             retention:run, cluster:admin, consent:admin, requests:admin, backup:read) besides the root token",
        ),
    }
}
