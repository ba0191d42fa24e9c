//! The vault's service layer: what the API handlers call. It resolves subjects, does the
//! cryptography (DEKs, sealing, blind index) and turns each change into a `Command` for
//! the command log, so handlers never touch storage and every change is audited.

mod apps;
mod consent;
mod expiration;
mod lifetime;
mod pending;
mod requests;
mod retention;
mod sessions;
mod shares;
mod tokens;
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
pub use requests::SubjectChanges;
pub use sessions::SessionView;
pub use shares::SharedView;

use crate::audit::{now_ms, AuditDraft, Operation};
use crate::auth::{self, Caller, Scope, ROOT_ACTOR};
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::crypto::{self, BlindIndex, CryptoError, DataKey, DekCache, Kek};
use crate::error::{VaultError, VaultResult};
use crate::identity::{self, IndexKind, Mode, PhoneRegion};
use crate::store::{
    ActiveSubject, Applied, Change, Command, ForgetCondition, Receipt, Rejection, Store, StoreError, SubjectRecord,
    SubjectState, Target, WrappedKey,
};

/// Settings of a vault instance that the API's behaviour depends on.
#[derive(Clone, Debug)]
pub struct VaultSettings {
    pub phone_region: PhoneRegion,
    /// `POST /v1/users` lists decrypted profiles in bulk; off unless enabled.
    pub bulk_list_enabled: bool,
    /// `POST /v1/user` without a token (a public sign-up form); off unless enabled.
    pub anonymous_create: bool,
    /// Whether a subject token's changes apply directly or are filed as requests.
    pub subject_changes: SubjectChanges,
    pub dek_cache_capacity: usize,
    /// Bytes of sled page cache.
    pub storage_cache_bytes: u64,
    /// How often the leader looks for subjects whose expiration has ended and for ended
    /// sessions.
    pub expiration_sweep: std::time::Duration,
    /// The longest a session lives.
    pub max_session_ttl: std::time::Duration,
    /// The longest a shared record lasts.
    pub max_share_ttl: std::time::Duration,
    /// The longest expiration countdown (Databunker's `max_user_retention_period`), and
    /// the one `POST /v1/exp/start` starts when it names none.
    pub max_user_retention: std::time::Duration,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            phone_region: PhoneRegion::default(),
            bulk_list_enabled: false,
            anonymous_create: false,
            subject_changes: SubjectChanges::Request,
            dek_cache_capacity: 100_000,
            storage_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            expiration_sweep: std::time::Duration::from_secs(10),
            max_session_ttl: std::time::Duration::from_secs(30 * 86_400),
            max_share_ttl: std::time::Duration::from_secs(30 * 86_400),
            // Databunker's default, `6m`: six months of 31 days.
            max_user_retention: std::time::Duration::from_secs(6 * 31 * 86_400),
        }
    }
}

/// Why a vault could not start. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("this data directory's keys are wrapped by KEK {stored:?}, but the configured KEK is {configured:?}")]
    ForeignKek { stored: String, configured: String },
    #[error("the configured KEK cannot unwrap this data directory's index key (another HSM token, or another key under the same label?): {0}")]
    IndexKeyUnwrap(CryptoError),
    #[error("key operation failed during startup: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot create the blind-index key: {0}")]
    IndexKeyInit(VaultError),
}

pub struct Vault {
    store: Store,
    cluster: Arc<Cluster>,
    kek: Kek,
    deks: Arc<DekCache>,
    /// Loaded at startup when this node holds the key, else on first use (a node that
    /// joins a cluster receives it through the log).
    index: OnceCell<BlindIndex>,
    root_token_hash: [u8; 32],
    settings: VaultSettings,
}

impl Vault {
    pub async fn open(
        data_dir: &Path,
        kek: Kek,
        root_token: Zeroizing<String>,
        settings: VaultSettings,
        cluster: ClusterOptions,
    ) -> Result<Self, StartupError> {
        let store = Store::open(data_dir, settings.storage_cache_bytes)?;
        let deks = Arc::new(DekCache::new(settings.dek_cache_capacity));
        let cluster = Cluster::open(store.clone(), Arc::clone(&deks), data_dir, cluster).await?;
        tokio::spawn(crate::retention::sweeper::run(Arc::clone(&cluster), settings.expiration_sweep));
        let vault = Vault {
            store,
            cluster,
            kek,
            deks,
            index: OnceCell::new(),
            root_token_hash: auth::secret_hash(&root_token),
            settings,
        };
        // Fail fast on a data directory whose keys another KEK wrapped; a standalone
        // vault makes its index key on first start.
        if let Some(wrapped) = vault.store.wrapped_index_key()? {
            let index = vault.unwrap_index_key(wrapped).await?;
            let _ = vault.index.set(index);
        } else if vault.cluster.is_standalone() {
            vault.index().await.map_err(StartupError::IndexKeyInit)?;
        }
        Ok(vault)
    }

    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn kek_label(&self) -> &str {
        self.kek.label()
    }

    pub fn cached_keys(&self) -> usize {
        self.deks.len()
    }

    /// Resolves a presented token to an actor and its scopes. Constant-time comparison.
    /// Returns the actor, its scopes, and for a subject token its subject.
    pub async fn authenticate(&self, secret: &str) -> VaultResult<(String, Vec<Scope>, Option<Uuid>)> {
        let hash = auth::secret_hash(secret);
        if bool::from(subtle::ConstantTimeEq::ct_eq(&hash[..], &self.root_token_hash[..])) {
            return Ok((ROOT_ACTOR.to_string(), vec![Scope::all()], None));
        }
        let mut token = self.store.token_by_secret_hash(&hash)?;
        if token.is_none() && tokens::is_well_formed(secret) && self.cluster.node_id().is_some() {
            // A token created through another node may not have reached this one yet.
            // (Only secrets shaped like ours: garbage must not cost a cluster round trip.)
            self.catch_up().await?;
            token = self.store.token_by_secret_hash(&hash)?;
        }
        match token {
            Some(token) => {
                let scopes = token.scopes.iter().filter_map(|s| s.parse().ok()).collect();
                Ok((token.id, scopes, token.subject))
            }
            None => Err(VaultError::InvalidToken),
        }
    }

    /// `POST /v1/sys/cluster/init`: bootstraps a cluster on this node and creates the
    /// cluster's blind-index key.
    pub async fn init_cluster(&self) -> VaultResult<strongroom_admin_api::cluster::MemberAdded> {
        let added = self.cluster.bootstrap().await?;
        self.index().await?;
        Ok(added)
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

    /// The blind index, creating the cluster's index key if nobody has yet.
    async fn index(&self) -> VaultResult<&BlindIndex> {
        self.index
            .get_or_try_init(|| async {
                let wrapped = match self.store.wrapped_index_key()? {
                    Some(key) => key,
                    None => {
                        let wrapped = self.kek.wrap_key(&DataKey::generate(), crypto::INDEX_KEY_AAD).await?;
                        let key = WrappedKey { kek: self.kek.label().to_string(), wrapped };
                        // The first proposal in the log wins; every node gets the same key.
                        match self
                            .commit(system_draft(Operation::KeysInit), Change::InitIndexKey { key })
                            .await?
                            .outcome
                        {
                            Ok(Applied::IndexKey(key)) => key,
                            _ => return Err(VaultError::Storage(StoreError::Corrupt)),
                        }
                    }
                };
                self.unwrap_index_key(wrapped).await.map_err(|error| {
                    tracing::error!(%error, "the blind-index key cannot be used");
                    VaultError::Crypto(CryptoError::Authentication)
                })
            })
            .await
    }

    async fn unwrap_index_key(&self, wrapped: WrappedKey) -> Result<BlindIndex, StartupError> {
        if wrapped.kek != self.kek.label() {
            return Err(StartupError::ForeignKek { stored: wrapped.kek, configured: self.kek.label().to_string() });
        }
        let key =
            self.kek.unwrap_key(&wrapped.wrapped, crypto::INDEX_KEY_AAD).await.map_err(StartupError::IndexKeyUnwrap)?;
        Ok(BlindIndex::new(key))
    }

    /// What a `{mode}/{id}` pair names, as far as the caller may reach it. For a subject
    /// token the pair must name the token's own subject (403 otherwise), and the target
    /// becomes that subject's token, so that an identifier moving to another subject
    /// meanwhile cannot redirect the command.
    async fn target(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<Target> {
        let target = self.identify(mode, id).await?;
        let Some(own) = caller.subject else { return Ok(target) };
        match self.find(&target).await? {
            Some(Found::Active(subject, ..) | Found::Forgotten(subject)) if subject == own => Ok(Target::Token(own)),
            _ => Err(VaultError::NotOwnSubject),
        }
    }

    /// What a `{mode}/{id}` pair names, for the state machine to resolve.
    async fn identify(&self, mode: Mode, id: &str) -> VaultResult<Target> {
        match mode.index_kind() {
            None => Uuid::parse_str(id).map(Target::Token).map_err(|_| VaultError::bad_request("token must be a UUID")),
            Some(kind) => match identity::normalise(kind, id, self.settings.phone_region) {
                None => Err(VaultError::bad_request(format!("{} must not be empty", kind.field()))),
                Some(normalised) => Ok(Target::Index(self.index().await?.entry(kind, &normalised))),
            },
        }
    }

    /// The blind-index entries of a profile; empty identifiers are absent.
    async fn index_entries(&self, profile: &Map<String, Value>) -> VaultResult<Vec<Vec<u8>>> {
        let mut entries = Vec::new();
        for kind in IndexKind::ALL {
            let raw = match profile.get(kind.field()) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(VaultError::bad_request(format!("{} must be a string", kind.field()))),
            };
            if let Some(normalised) = identity::normalise(kind, &raw, self.settings.phone_region) {
                entries.push(self.index().await?.entry(kind, &normalised));
            }
        }
        Ok(entries)
    }

    /// The subject's DEK, from the cache or unwrapped by the KEK.
    async fn dek(&self, subject: &Uuid, active: &ActiveSubject) -> VaultResult<DataKey> {
        if let Some(key) = self.deks.get(subject) {
            return Ok(key);
        }
        let key = self.kek.unwrap_key(&active.wrapped_dek, &crypto::dek_aad(subject)).await?;
        self.deks.insert(*subject, key.clone());
        Ok(key)
    }
}

/// A subject as the read path sees it.
enum Found {
    /// The subject, its record version (for optimistic updates) and its keys and data.
    Active(Uuid, u64, Box<ActiveSubject>),
    Forgotten(Uuid),
}

impl Vault {
    /// The subject a target names, from this node's state. Read-modify-write paths start
    /// here; their writes carry the version they read, so a stale read cannot overwrite
    /// a newer write. A miss may only mean this node lags, so it catches up and looks
    /// again before reporting one.
    async fn find(&self, target: &Target) -> VaultResult<Option<Found>> {
        if let Some(found) = self.find_local(target)? {
            return Ok(Some(found));
        }
        self.catch_up().await?;
        self.find_local(target)
    }

    fn find_local(&self, target: &Target) -> VaultResult<Option<Found>> {
        let subject = match target {
            Target::Token(subject) => *subject,
            Target::Index(entry) => match self.store.lookup(entry)? {
                Some(subject) => subject,
                None => return Ok(None),
            },
            Target::ExpToken(hash) => match self.store.subject_by_exptoken(hash)? {
                Some(subject) => subject,
                None => return Ok(None),
            },
        };
        Ok(self.store.subject(&subject)?.map(|record| match record.state {
            SubjectState::Active(active) => Found::Active(subject, record.version, Box::new(active)),
            SubjectState::Forgotten { .. } => Found::Forgotten(subject),
        }))
    }

    /// Like `find`, but a missing subject is a 404 and is audited as a failed access.
    async fn find_audited(
        &self,
        caller: &Caller,
        op: Operation,
        mode: Mode,
        app: Option<&str>,
        id: &str,
    ) -> VaultResult<Found> {
        match self.find(&self.target(caller, mode, id).await?).await? {
            Some(found) => Ok(found),
            None => {
                self.record_access(draft(caller, op, None, app, Some(mode)), false).await?;
                Err(VaultError::NotFound("record"))
            }
        }
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
    }
}

/// Applies a PUT body to a JSON object: an object is an RFC 7396 merge, an array an
/// RFC 6902 patch. The result must still be an object.
pub(crate) fn apply_update(current: &mut Value, update: &Value) -> VaultResult<()> {
    check_update(update)?;
    match update {
        Value::Object(_) => json_patch::merge(current, update),
        Value::Array(_) => {
            let patch: json_patch::Patch =
                serde_json::from_value(update.clone()).map_err(|_| VaultError::bad_request("malformed JSON patch"))?;
            json_patch::patch(current, &patch).map_err(|_| VaultError::bad_request("JSON patch cannot be applied"))?;
        }
        _ => return Err(VaultError::bad_request("body must be a JSON object (merge) or array (JSON patch)")),
    }
    if !current.is_object() {
        return Err(VaultError::bad_request("the record must remain a JSON object"));
    }
    Ok(())
}

/// Checks that a PUT body can be applied to a JSON object at all (a merge object, or a
/// patch array that parses), without applying it. An empty one (`{}`, `[]`) changes
/// nothing and is refused, as Databunker refuses it.
pub(crate) fn check_update(update: &Value) -> VaultResult<()> {
    match update {
        Value::Object(map) if map.is_empty() => Err(VaultError::bad_request("the change is empty")),
        Value::Array(ops) if ops.is_empty() => Err(VaultError::bad_request("the change is empty")),
        Value::Object(_) => Ok(()),
        Value::Array(_) => serde_json::from_value::<json_patch::Patch>(update.clone())
            .map(drop)
            .map_err(|_| VaultError::bad_request("malformed JSON patch")),
        _ => Err(VaultError::bad_request("body must be a JSON object (merge) or array (JSON patch)")),
    }
}

/// How many times a read-modify-write retries when a concurrent write got there first.
/// Among n writers racing for one record one wins per commit batch, so this bounds how
/// many may race before some get a 409 and must retry themselves.
const UPDATE_ATTEMPTS: u32 = 32;

impl Vault {
    /// After a read-modify-write lost a race: waits until this node has applied the write
    /// that won (so the next read sees it), then a short random pause, growing with the
    /// attempt, so racing writers spread over several log entries.
    async fn after_conflict(&self, receipt: &Receipt, attempt: u32) -> VaultResult<()> {
        self.cluster.wait_applied(receipt.log_index).await?;
        backoff(attempt).await;
        Ok(())
    }
}

async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap_micros = 200u64 << attempt.min(5);
    let pause = rand::thread_rng().gen_range(0..=cap_micros);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}
