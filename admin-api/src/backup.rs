//! Backups (`GET /v1/sys/backup`) and the erasure ledger (`GET /v1/sys/erasures`).
//!
//! A backup travels as one stream: its [`Manifest`] as one line of JSON, then the bytes
//! of each part in the manifest's order. Stored, it is a folder holding each part under
//! its name and `manifest.json`, written last: a backup without its manifest was cut
//! short and does not count.

use serde::{Deserialize, Serialize};

/// The data format a backup's parts are in (vaultd's data-directory format).
pub type DataFormat = u32;

/// What a backup holds, and how to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// The vaultd data format of the parts; a restore refuses a newer one.
    pub format: DataFormat,
    /// The vault's identity (a restored vault gets a new one).
    pub cluster_id: String,
    /// Labels of the KEKs that wrap the keys in the backup (the HSM keeps the KEKs).
    pub kek_labels: Vec<String>,
    /// The last Raft log index the backup's state includes.
    pub last_applied_index: u64,
    /// When the backup was cut (ms since the Unix epoch).
    pub created_at: u64,
    /// Active subjects in the backup.
    pub subjects: u64,
    /// The erasure ledger's next sequence number at the cut: entries from this one on
    /// are newer than the backup.
    pub ledger_next: u64,
    /// Audit events in the backup's trail, and the hash of the last one.
    pub audit_events: u64,
    pub audit_head: String,
    pub parts: Vec<Part>,
}

/// One part of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Part {
    /// Its file name: `state.bin` (the state as a snapshot holds it) or `audit.bin` (the
    /// audit trail up to the cut).
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// What `vaultd backup` reports once a backup is stored: printed, and with
/// `--summary-file` also written there (a Job's termination message, which the operator
/// reads into a `PiiVaultBackup`'s status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakeReport {
    /// The backup's id (`vaultd backup list` lists it; `vaultd restore --backup` takes it).
    pub backup: String,
    /// Where it is stored: a directory, or s3://bucket/prefix.
    pub destination: String,
    /// Active subjects in the backup.
    pub subjects: u64,
    /// The parts' bytes together.
    pub bytes: u64,
    pub last_applied_index: u64,
    /// Erasure ledger entries shipped after the backup.
    pub ledger_entries_shipped: u64,
    /// Why shipping the ledger after the backup failed, if it did: the backup is stored
    /// and complete all the same (the next backup or the ledger shipper ships the entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_error: Option<String>,
}

/// What an erasure removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErasureKind {
    /// The whole subject.
    Forget,
    /// One app record (`app`).
    DeleteApp,
    /// Profile fields (`fields`), removed.
    DropFields,
    /// Profile fields (`fields`), replaced by keyed pseudonyms.
    Pseudonymize,
    /// An access token (`accessToken`, its id), revoked.
    RevokeToken,
    /// An email or phone kept with agreements before sign-up (`entry`, its blind-index
    /// entry in hex), forgotten.
    ForgetIdentifier,
}

/// One entry of the erasure ledger. It names no personal data: a subject token, what was
/// erased and when; or an access token that was revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErasureRow {
    /// Its place in the ledger, from 1.
    pub seq: u64,
    /// When it was applied (ms since the Unix epoch).
    pub time: u64,
    /// The subject's token (absent for a token revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub kind: ErasureKind,
    /// The revoked access token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The forgotten identifier's blind-index entry (an HMAC, hex), never the identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// A page of the ledger: `GET /v1/sys/erasures?after=N&limit=M`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasurePage {
    /// The vault whose ledger this is (shipped ledgers are kept per vault).
    pub cluster_id: String,
    pub erasures: Vec<ErasureRow>,
    /// The sequence number the ledger's next entry will take.
    pub next: u64,
}
