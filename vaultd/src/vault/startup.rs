//! Opening a vault: the store, the cluster, the sweeper, and the blind-index key — made
//! by the first node, unwrapped by the KEK on every start, refused when another KEK
//! wrapped it.

use super::*;

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

impl Vault {
    pub async fn open(
        data_dir: &Path,
        kek: Kek,
        root_token: Zeroizing<String>,
        settings: VaultSettings,
        cluster: ClusterOptions,
    ) -> Result<Self, StartupError> {
        let store = Store::open(data_dir, settings.storage_cache_bytes)?;
        Self::open_store(store, data_dir, kek, root_token, settings, cluster).await
    }

    /// Opens the vault on a store already open on `data_dir` (a restore writes it first:
    /// sled lets go of a closed database's lock only some time after, so it is opened once).
    pub async fn open_store(
        store: Store,
        data_dir: &Path,
        kek: Kek,
        root_token: Zeroizing<String>,
        settings: VaultSettings,
        cluster: ClusterOptions,
    ) -> Result<Self, StartupError> {
        let deks = Arc::new(DekCache::new(settings.dek_cache_capacity));
        let cluster = Cluster::open(store.clone(), Arc::clone(&deks), data_dir, cluster).await?;
        tokio::spawn(crate::retention::sweeper::run(Arc::clone(&cluster), settings.expiration_sweep));
        if let Some(every) = settings.audit_verification {
            tokio::spawn(crate::audit::scheduled_verification::run(store.clone(), every));
        }
        let vault = Vault {
            store,
            cluster,
            kek,
            deks,
            index: OnceCell::new(),
            root_token_hash: auth::secret_hash(&root_token),
            root_checked: Default::default(),
            settings,
            starts: Default::default(),
            backups: Arc::new(tokio::sync::Semaphore::new(1)),
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

    /// `POST /v1/sys/cluster/init`: bootstraps a cluster on this node and creates the
    /// cluster's blind-index key.
    pub async fn init_cluster(&self) -> VaultResult<strongroom_admin_api::cluster::MemberAdded> {
        let added = self.cluster.bootstrap().await?;
        self.index().await?;
        Ok(added)
    }

    /// The blind index, creating the cluster's index key if nobody has yet.
    pub(super) async fn index(&self) -> VaultResult<&BlindIndex> {
        self.index
            .get_or_try_init(|| async {
                let wrapped = match self.store.wrapped_index_key()? {
                    Some(key) => key,
                    None => {
                        let kek = self.active_kek();
                        let wrapped = self.kek.wrap_key(&kek, &DataKey::generate(), crypto::INDEX_KEY_AAD).await?;
                        let key = WrappedKey { kek, wrapped };
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

    pub(super) async fn unwrap_index_key(&self, wrapped: WrappedKey) -> Result<BlindIndex, StartupError> {
        // Until a rotation can name another, the KEK the vault was started with is the one
        // its keys are wrapped by: another label is a misconfiguration.
        if wrapped.kek != self.kek.label() {
            return Err(StartupError::ForeignKek { stored: wrapped.kek, configured: self.kek.label().to_string() });
        }
        let key = self
            .kek
            .unwrap_key(&wrapped.kek, &wrapped.wrapped, crypto::INDEX_KEY_AAD)
            .await
            .map_err(StartupError::IndexKeyUnwrap)?;
        Ok(BlindIndex::new(key))
    }
}
