//! What the vault keeps per subject, per app record and per access token, as stored in
//! sled. Personal data appears here only sealed under the subject's DEK.

use serde::{Deserialize, Serialize};

use super::StoreError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// Milliseconds since the Unix epoch; the retention engine ages subjects by these.
    pub created: u64,
    pub updated: u64,
    /// Bumped by every change, so read-modify-write updates cannot lose a concurrent one.
    pub version: u64,
    pub state: SubjectState,
    /// Databunker's expiration flow (`/v1/exp/...`), when one was started.
    pub expiration: Option<Expiration>,
}

/// A subject's expiration: unless the subject retains its data (with its exptoken) or an
/// admin cancels, the vault forgets the subject at `ends_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiration {
    pub status: ExpirationStatus,
    /// Milliseconds since the Unix epoch.
    pub started: u64,
    pub ends_at: u64,
    /// SHA-256 of the exptoken, the credential of `/v1/exp/retain` and `/v1/exp/delete`.
    pub token_hash: [u8; 32],
    /// The exptoken sealed under the subject's DEK, for `/v1/exp/status`; empty once the
    /// subject is forgotten.
    pub sealed_token: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpirationStatus {
    /// Counting down to `ends_at`.
    Wait,
    /// The subject chose to keep its data.
    Retain,
    /// The subject was forgotten by its expiration (or forgotten while one was pending).
    Expired,
}

impl ExpirationStatus {
    /// Databunker's `expstatus` values.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpirationStatus::Wait => "wait",
            ExpirationStatus::Retain => "retain",
            ExpirationStatus::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectState {
    Active(ActiveSubject),
    /// Forget-me leaves this tombstone: the token resolves, to nothing, as evidence of
    /// the erasure. The DEK is gone, so nothing that remains can be decrypted.
    Forgotten {
        at: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSubject {
    /// Label of the KEK version that wrapped `wrapped_dek`.
    pub kek: String,
    pub wrapped_dek: Vec<u8>,
    /// The profile JSON, sealed under the DEK.
    pub profile: Vec<u8>,
    /// This subject's blind-index entries, so that updates and erasure can remove them.
    pub index: Vec<Vec<u8>>,
    /// Names of this subject's app records.
    pub apps: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub created: u64,
    pub updated: u64,
    pub version: u64,
    /// The app's JSON document, sealed under the subject's DEK.
    pub sealed: Vec<u8>,
}

/// A session (Databunker's session API): data an application keeps about a visit or a
/// device, with an end. Linked to a subject, it is sealed under the subject's DEK and
/// goes when the subject is forgotten; unlinked, under a key of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub subject: Option<uuid::Uuid>,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    pub expires_at: u64,
    /// The session's own key, wrapped by the KEK, when it is not linked to a subject.
    pub key: Option<super::WrappedKey>,
    /// The session's JSON document, sealed.
    pub sealed: Vec<u8>,
}

/// A shared record: some fields of a subject's profile (or of one app record, or of one
/// of its sessions), readable by whoever holds the record id until it ends. Only the
/// id's SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRecord {
    pub subject: uuid::Uuid,
    /// Top-level fields shared; `token` is the subject's token.
    pub fields: Vec<String>,
    /// Share from this app's record instead of the profile.
    pub app: Option<String>,
    /// Who it was shared with, for the audit trail (an organisation, not a person).
    pub partner: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    pub expires_at: u64,
    /// Share from this session of the subject's instead of the profile.
    pub session: Option<uuid::Uuid>,
}

/// A legal basis for processing (Databunker's `lbasis`): what a subject agrees to, or
/// another basis (contract, legal obligation). Not personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalBasis {
    pub brief: String,
    /// `active` or `disabled`.
    pub status: String,
    pub module: String,
    pub shortdesc: String,
    pub fulldesc: String,
    pub basistype: String,
    pub requiredmsg: String,
    /// The subject may withdraw on its own.
    pub usercontrol: bool,
    pub requiredflag: bool,
    /// Seconds since the Unix epoch.
    pub creationtime: u64,
}

/// A subject's agreement to a legal basis. Kept after the subject is forgotten: the
/// consent history is evidence the law asks for, and it holds no profile data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub brief: String,
    /// `yes`, `no` (withdrawn) or `revoked` (the basis was revoked for everyone).
    pub status: String,
    /// Seconds since the Unix epoch: first agreed, last changed, valid from, valid until
    /// (0: no end).
    pub creationtime: u64,
    pub when: u64,
    pub starttime: u64,
    pub endtime: u64,
    /// How the subject was looked up when it last changed (`login`, `email`, ...).
    pub mode: String,
    pub agreementmethod: String,
    pub referencecode: String,
    pub lastmodifiedby: String,
}

/// The email or phone number behind a blind-index entry that has agreements but no
/// subject (consent before sign-up): sealed under a key of its own, which is stored only
/// wrapped by the KEK; both are bound to the entry by their AAD. Forget-me of the
/// identifier removes this record (and so the key), leaving the agreements as evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIdentity {
    /// Label of the KEK version that wrapped `wrapped_key`.
    pub kek: String,
    pub wrapped_key: Vec<u8>,
    /// The normalised identifier, sealed.
    pub sealed: Vec<u8>,
}

/// A processing activity (Databunker's `pactivity`) and the legal bases it relies on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingActivity {
    pub activity: String,
    pub title: String,
    pub script: String,
    pub fulldesc: String,
    pub applicableto: String,
    /// Briefs of the linked legal bases, sorted.
    pub legalbasis: Vec<String>,
    /// Seconds since the Unix epoch.
    pub creationtime: u64,
}

/// A change a subject asked for with its own token, waiting for a DPO's decision
/// (`/v1/request/{rtoken}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub subject: uuid::Uuid,
    pub action: RequestAction,
    pub app: Option<String>,
    /// The requested change (a JSON merge object or patch), sealed under the subject's
    /// DEK; empty for forget-me, and cleared once the subject is forgotten.
    pub change: Vec<u8>,
    pub status: RequestStatus,
    /// Why it was approved or cancelled.
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestAction {
    ForgetMe,
    ChangeProfile,
    ChangeAppData,
}

impl RequestAction {
    /// Databunker's action names.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestAction::ForgetMe => "forget-me",
            RequestAction::ChangeProfile => "change-profile",
            RequestAction::ChangeAppData => "change-app-data",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestStatus {
    Open,
    Approved,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Approved => "approved",
            RequestStatus::Cancelled => "cancelled",
        }
    }
}

/// A scoped access token. Only the SHA-256 of its secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenRecord {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created: u64,
    pub secret_hash: [u8; 32],
    /// A subject token reaches only this subject's data.
    pub subject: Option<uuid::Uuid>,
}

/// One entry of the erasure ledger: which subject lost what, or which access token was
/// revoked, and when — no personal data. A restored backup applies the entries newer than
/// itself, so that nobody erased, and no token revoked, after the backup comes back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// When the erasure was applied (ms since the Unix epoch).
    pub time: u64,
    /// The subject whose data it erased (none for a token revocation or an identifier
    /// that named no subject).
    pub subject: Option<uuid::Uuid>,
    pub erasure: Erasure,
}

/// What an erasure removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Erasure {
    /// The whole subject (forget-me, an ended expiration, a retention `delete`).
    Forget,
    /// One app record.
    DeleteApp { app: String },
    /// Profile fields, removed.
    DropFields { fields: Vec<String> },
    /// Profile fields, replaced by keyed pseudonyms.
    Pseudonymize { fields: Vec<String> },
    /// An access token (by id), revoked.
    RevokeToken { id: String },
    /// An identifier kept with agreements before sign-up (its blind-index entry), forgotten.
    ForgetIdentifier { entry: Vec<u8> },
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|_| StoreError::Encoding)
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|_| StoreError::Corrupt)
}
