//! Commands: every change to vault state is one of these, applied by the state machine.
//!
//! Request handlers never write to the database. They do the cryptography (so commands
//! carry only ciphertext, wrapped keys and blind-index hashes) and submit a command; the
//! state machine checks its preconditions and applies it atomically together with its
//! audit event. A single node applies commands through its group-commit log; a cluster
//! replicates the same commands through Raft.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::AccessTokenRecord;
use crate::audit::AuditDraft;
use crate::identity::IndexKind;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Command {
    pub audit: AuditDraft,
    pub change: Change,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Change {
    /// No state change: records an access (a read or a failed lookup) in the audit chain.
    Access {
        found: bool,
    },
    /// Stores the wrapped blind-index key unless one is stored already.
    InitIndexKey {
        key: WrappedKey,
    },
    CreateSubject {
        subject: Uuid,
        kek: String,
        wrapped_dek: Vec<u8>,
        profile: Vec<u8>,
        index: Vec<Vec<u8>>,
    },
    UpdateSubject {
        subject: Uuid,
        expected_version: u64,
        profile: Vec<u8>,
        index: Vec<Vec<u8>>,
    },
    ForgetSubject {
        subject: Uuid,
    },
    /// Creates or replaces an app record (`expected_version: None`), or updates the
    /// record at exactly that version.
    PutApp {
        subject: Uuid,
        app: String,
        sealed: Vec<u8>,
        expected_version: Option<u64>,
    },
    DeleteApp {
        subject: Uuid,
        app: String,
    },
    CreateAccessToken {
        token: AccessTokenRecord,
    },
    /// Removes the token with this id, found by the proposer under this secret hash.
    RevokeAccessToken {
        id: String,
        secret_hash: [u8; 32],
    },
}

/// A key wrapped by the KEK version named by `kek`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub kek: String,
    pub wrapped: Vec<u8>,
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The wrapped blind-index key now in force (the stored one if there was one).
    IndexKey(WrappedKey),
}

/// Why a command was refused. A refused command changes nothing but its audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("duplicate {}", .0.field())]
    Duplicate(IndexKind),
    #[error("subject not found")]
    SubjectNotFound,
    #[error("subject was forgotten")]
    Forgotten,
    #[error("app record not found")]
    AppNotFound,
    #[error("access token not found")]
    TokenNotFound,
    #[error("record changed concurrently")]
    Stale,
    #[error("already exists")]
    Exists,
}

impl Rejection {
    /// The audit event's `result` for this rejection.
    pub fn audit_result(&self) -> String {
        match self {
            Rejection::Duplicate(kind) => format!("rejected: duplicate {}", kind.field()),
            other => format!("rejected: {other}"),
        }
    }
}

/// The answer to a submitted command: what happened, and where it was audited.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub outcome: Result<Applied, Rejection>,
    pub audit_seq: u64,
}
