//! The settings a vault's behaviour depends on, and their defaults. How they are read
//! (flags, environment, file) is `crate::config`'s job.

use std::time::Duration;

use super::SubjectChanges;
use crate::identifiers::PhoneRegion;

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
    pub expiration_sweep: Duration,
    /// The longest a session lives.
    pub max_session_ttl: Duration,
    /// The longest a shared record lasts.
    pub max_share_ttl: Duration,
    /// The longest expiration countdown (Databunker's `max_user_retention_period`), and
    /// the one `POST /v1/exp/start` starts when it names none.
    pub max_user_retention: Duration,
    /// The largest JSON encoding of a stored profile, app record or session.
    pub max_record_bytes: usize,
    /// How often each node verifies its whole audit chain (`None`: only when asked).
    pub audit_verification: Option<Duration>,
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
            expiration_sweep: Duration::from_secs(10),
            max_session_ttl: Duration::from_secs(30 * 86_400),
            max_share_ttl: Duration::from_secs(30 * 86_400),
            // Databunker's default, `6m`: six months of 31 days.
            max_user_retention: Duration::from_secs(6 * 31 * 86_400),
            max_record_bytes: crate::config::DEFAULT_MAX_BODY,
            audit_verification: Some(Duration::from_secs(6 * 3600)),
        }
    }
}
