//! Commands: every change to vault state is one of these, applied by the state machine.
//!
//! Request handlers never write to the database. They do the cryptography (so commands
//! carry only ciphertext, wrapped keys and blind-index hashes) and submit a command; Raft
//! replicates it and the state machine of every replica checks its preconditions and
//! applies it atomically together with its audit event.
//!
//! Reads of personal data are commands too: the state machine resolves the subject and
//! returns its (still encrypted) record at the read's position in the log. A read is
//! therefore linearizable and audited by construction, on any node.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use strongroom_admin_api::retention::RunReport;

use super::records::{
    AccessTokenRecord, ActiveSubject, Agreement, AppRecord, Erasure, Expiration, LegalBasis, PendingIdentity,
    ProcessingActivity, RequestRecord, RequestStatus, SessionRecord, SharedRecord, SubjectRecord,
};
use crate::audit::AuditDraft;
use crate::identifiers::IndexKind;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Command {
    pub audit: AuditDraft,
    pub change: Change,
}

/// How a command names its subject: by token, or by an entry that the state machine
/// resolves when it applies the command — a blind-index entry, or the SHA-256 of a
/// pending expiration's exptoken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Token(Uuid),
    Index(Vec<u8>),
    ExpToken([u8; 32]),
}

/// When a forget applies. Conditional forgets come from the retention engine and the
/// expiration sweeper, which decide on what they read earlier: if the subject changed in
/// between, the forget is refused (`Rejection::Stale`) rather than applied to a subject
/// that no longer qualifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForgetCondition {
    Always,
    /// Only if the subject's record is still at this version.
    Version(u64),
    /// Only if the subject's expiration is still counting down and has ended (by the
    /// command's time).
    ExpirationDue,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Change {
    /// No state change: records an access (a failed lookup, a bulk listing) in the audit
    /// chain.
    Access {
        found: bool,
    },
    /// Reads a subject's record (active or forgotten): `Applied::Subject`.
    ReadSubject {
        target: Target,
    },
    /// Reads one app record of an active subject: `Applied::App`.
    ReadApp {
        target: Target,
        app: String,
    },
    /// Stores the wrapped blind-index key unless one is stored already.
    InitIndexKey {
        key: WrappedKey,
    },
    /// Creates a subject. Agreements pending under one of its email or phone entries
    /// (consent before sign-up) become its own in the same step.
    CreateSubject {
        subject: Uuid,
        kek: String,
        wrapped_dek: Vec<u8>,
        profile: Vec<u8>,
        index: Vec<Vec<u8>>,
    },
    /// Replaces a subject's profile and entries; agreements pending under an entry it
    /// gains become the subject's in the same step.
    UpdateSubject {
        subject: Uuid,
        expected_version: u64,
        profile: Vec<u8>,
        index: Vec<Vec<u8>>,
    },
    /// Forget-me: removes the subject's profile, key, index entries, app records,
    /// sessions, shares and subject tokens, cancels its open requests (dropping their
    /// sealed changes), and leaves a tombstone; its agreements stay as evidence. An
    /// index target that names no subject but has pending agreements (consent before
    /// sign-up) forgets the sealed identifier instead, keeping the agreements.
    ForgetSubject {
        target: Target,
        condition: ForgetCondition,
    },
    /// Creates or replaces an app record (`expected_version: None`), or updates the
    /// record at exactly that version.
    PutApp {
        subject: Uuid,
        app: String,
        sealed: Vec<u8>,
        expected_version: Option<u64>,
    },
    /// Deletes an app record (only at `expected_version`, when given).
    DeleteApp {
        target: Target,
        app: String,
        expected_version: Option<u64>,
    },
    /// Starts an expiration: replacing one already started when `replace`, else refused
    /// with `Exists`; only at `expected_version` of the subject, when given.
    StartExpiration {
        subject: Uuid,
        expected_version: Option<u64>,
        replace: bool,
        expiration: Expiration,
    },
    /// Clears a subject's expiration (an admin's cancel).
    CancelExpiration {
        target: Target,
    },
    /// The subject keeps its data: a pending expiration stops counting down.
    RetainData {
        target: Target,
    },
    /// Creates or replaces a session. A linked session needs an active subject. Unless
    /// `may_take`, an existing session of another subject (or unlinked) is not replaced.
    PutSession {
        session: Uuid,
        record: SessionRecord,
        may_take: bool,
    },
    /// Reads a session that has not ended: `Applied::Session`. With `owner`, only a
    /// session linked to that subject (a subject token's own).
    ReadSession {
        session: Uuid,
        owner: Option<Uuid>,
    },
    /// Deletes a session; with `only_if_ended`, only once it has ended (the sweeper); with
    /// `owner`, only a session linked to that subject.
    DeleteSession {
        session: Uuid,
        only_if_ended: bool,
        owner: Option<Uuid>,
    },
    /// Reads a page of a subject's sessions that have not ended: `Applied::Sessions`.
    ReadSessions {
        target: Target,
        offset: u32,
        limit: u32,
    },
    /// Shares fields of an active subject under the SHA-256 of a new record id.
    ShareRecord {
        hash: [u8; 32],
        record: SharedRecord,
    },
    /// Reads a shared record that has not ended, with what it shares from:
    /// `Applied::Shared`.
    ReadShared {
        hash: [u8; 32],
    },
    /// Deletes a shared record once it has ended (the sweeper).
    DeleteEndedShare {
        hash: [u8; 32],
    },
    /// Legal bases, agreements and processing activities.
    Consent(ConsentChange),
    /// Files a subject's request for a DPO (the subject must be active).
    FileRequest {
        rtoken: Uuid,
        record: RequestRecord,
    },
    /// Reads a request (with `owner`, only that subject's): `Applied::Request`.
    ReadRequest {
        rtoken: Uuid,
        owner: Option<Uuid>,
    },
    /// Reads a page of requests, of one subject or of all, optionally of one status:
    /// `Applied::Requests`.
    ReadRequests {
        target: Option<Target>,
        status: Option<RequestStatus>,
        offset: u32,
        limit: u32,
    },
    /// Approves an open request by applying `then` (its effect) in the same step, or
    /// cancels it (`then: None`, with `owner` only the subject's own). Refused, and the
    /// request left open, when the effect is refused.
    ResolveRequest {
        rtoken: Uuid,
        approve: bool,
        reason: String,
        owner: Option<Uuid>,
        then: Option<Box<Change>>,
    },
    /// Records a retention run under its policy (the last `MAX_RUNS_PER_POLICY` are kept).
    RecordRetentionRun {
        report: RunReport,
    },
    CreateAccessToken {
        token: AccessTokenRecord,
    },
    /// Removes the token with this id, found by the proposer under this secret hash.
    RevokeAccessToken {
        id: String,
        secret_hash: [u8; 32],
    },
    /// Hands out a Raft node id that has never been handed out before.
    AllocateNodeId,
    /// Retires the root token for good, as long as another token holds `tokens:admin`.
    RetireRootToken,
    /// A retention rule's minimisation of a profile: applied as `UpdateSubject`, and
    /// recorded in the erasure ledger as `minimised`.
    MinimiseSubject {
        subject: Uuid,
        expected_version: u64,
        profile: Vec<u8>,
        index: Vec<Vec<u8>>,
        minimised: Erasure,
    },
}

/// Changes to consent records: legal bases, subjects' agreements, processing activities.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConsentChange {
    /// Creates or replaces a legal basis, renaming it from `brief` when `basis.brief`
    /// differs (its agreements and activity links move with it).
    PutLegalBasis {
        brief: String,
        basis: LegalBasis,
    },
    /// Deletes a legal basis and unlinks it from every activity; agreements stay.
    DeleteLegalBasis {
        brief: String,
    },
    /// Records a subject's agreement (`yes`) to an existing basis, or withdrawal (`no`)
    /// of an existing agreement. Acceptance needs an active subject; withdrawal is
    /// possible after erasure, and after the basis was deleted, too.
    PutAgreement {
        target: Target,
        agreement: Agreement,
    },
    /// Reads a subject's agreements (one brief, or all): `Applied::Agreements`.
    ReadAgreements {
        target: Target,
        brief: Option<String>,
    },
    /// Marks every agreement to a basis `revoked`.
    RevokeBasis {
        brief: String,
    },
    /// Creates or replaces a processing activity (keeping its links), renaming it from
    /// `activity` when `record.activity` differs.
    PutActivity {
        activity: String,
        record: ProcessingActivity,
    },
    DeleteActivity {
        activity: String,
    },
    /// Links an activity to an existing legal basis, or unlinks it.
    LinkActivity {
        activity: String,
        brief: String,
        link: bool,
    },
    /// `PutAgreement` by an email or phone entry: for the subject holding the entry when
    /// applied, or else kept under the entry (consent before sign-up), together with the
    /// sealed identifier unless one is kept already.
    PutByIdentifier {
        entry: Vec<u8>,
        agreement: Agreement,
        identity: Option<PendingIdentity>,
    },
    /// `ReadAgreements` by an email or phone entry: the subject's (`Applied::Agreements`)
    /// or else those kept under the entry (`Applied::PendingAgreements`).
    ReadByIdentifier {
        entry: Vec<u8>,
        brief: Option<String>,
    },
}

impl ConsentChange {
    /// The subject a change concerns, for the state machine to resolve.
    pub fn target(&self) -> Option<&Target> {
        match self {
            ConsentChange::PutAgreement { target, .. } | ConsentChange::ReadAgreements { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The blind-index entry of a change that falls back to pending agreements when the
    /// entry names no subject.
    pub fn pending_entry(&self) -> Option<&[u8]> {
        match self {
            ConsentChange::PutByIdentifier { entry, .. } | ConsentChange::ReadByIdentifier { entry, .. } => Some(entry),
            _ => None,
        }
    }
}

impl Change {
    /// Whether applying the change forgets its subject (directly, or as the effect of an
    /// approved request).
    pub fn forgets(&self) -> bool {
        match self {
            Change::ForgetSubject { .. } => true,
            Change::ResolveRequest { then: Some(effect), .. } => effect.forgets(),
            _ => false,
        }
    }

    /// Whether the change only reads, records an access or removes data or privilege: what
    /// a node whose disk is nearly full still accepts (`cluster::free_space`). Its log
    /// entry and audit event are small, reads must go on being audited, and neither an
    /// erasure nor a revocation should wait for disk space.
    pub fn is_essential(&self) -> bool {
        match self {
            Change::Access { .. }
            | Change::ReadSubject { .. }
            | Change::ReadApp { .. }
            | Change::ReadSession { .. }
            | Change::ReadSessions { .. }
            | Change::ReadShared { .. }
            | Change::ReadRequest { .. }
            | Change::ReadRequests { .. }
            | Change::Consent(ConsentChange::ReadAgreements { .. } | ConsentChange::ReadByIdentifier { .. })
            | Change::ForgetSubject { .. }
            | Change::MinimiseSubject { .. }
            | Change::DeleteApp { .. }
            | Change::DeleteSession { .. }
            | Change::DeleteEndedShare { .. }
            | Change::RevokeAccessToken { .. }
            | Change::RetireRootToken => true,
            // Cancelling a request, or approving an erasure.
            Change::ResolveRequest { then, .. } => then.as_ref().is_none_or(|effect| effect.is_essential()),
            Change::InitIndexKey { .. }
            | Change::CreateSubject { .. }
            | Change::UpdateSubject { .. }
            | Change::PutApp { .. }
            | Change::StartExpiration { .. }
            | Change::CancelExpiration { .. }
            | Change::RetainData { .. }
            | Change::PutSession { .. }
            | Change::ShareRecord { .. }
            | Change::Consent(_)
            | Change::FileRequest { .. }
            | Change::RecordRetentionRun { .. }
            | Change::CreateAccessToken { .. }
            | Change::AllocateNodeId => false,
        }
    }
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
    /// A subject's record as of the read.
    Subject {
        subject: Uuid,
        record: SubjectRecord,
    },
    /// An active subject (for its DEK) and one of its app records, as of the read.
    App {
        subject: Uuid,
        owner: ActiveSubject,
        record: AppRecord,
    },
    /// The subject a command resolved its target to.
    Resolved(Uuid),
    /// A session, and the subject it is linked to (for its DEK).
    Session {
        record: SessionRecord,
        owner: Option<ActiveSubject>,
    },
    /// A shared record, the subject (for its DEK), and the app record or session it
    /// shares from.
    Shared {
        record: SharedRecord,
        owner: ActiveSubject,
        app: Option<AppRecord>,
        session: Option<SessionRecord>,
    },
    /// A request, and its subject (for its DEK; `None` once forgotten).
    Request {
        record: RequestRecord,
        owner: Option<ActiveSubject>,
    },
    /// A page of requests (rtoken and record) and how many match in all.
    Requests {
        total: u64,
        page: Vec<(Uuid, RequestRecord)>,
    },
    /// A subject's agreements, in brief order.
    Agreements {
        subject: Uuid,
        agreements: Vec<Agreement>,
    },
    /// A page of a subject's sessions (id and record), how many it has in all, and the
    /// subject (for its DEK; `None` when forgotten, and then there are no sessions).
    Sessions {
        subject: Uuid,
        owner: Option<ActiveSubject>,
        total: u64,
        page: Vec<(Uuid, SessionRecord)>,
    },
    NodeId(u64),
    /// Agreements kept under an email or phone that names no subject, in brief order.
    PendingAgreements {
        agreements: Vec<Agreement>,
    },
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
    #[error("session not found")]
    SessionNotFound,
    #[error("shared record not found")]
    ShareNotFound,
    #[error("unknown legal basis")]
    UnknownBrief,
    #[error("unknown processing activity")]
    UnknownActivity,
    #[error("request not found")]
    RequestNotFound,
    #[error("the request is no longer open")]
    RequestClosed,
    #[error("record changed concurrently")]
    Stale,
    #[error("already exists")]
    Exists,
    #[error("no other token holds every scope")]
    NoOtherAdmin,
}

impl Rejection {
    /// The audit event's `result` for this rejection.
    pub fn audit_result(&self) -> String {
        match self {
            Rejection::Duplicate(kind) => format!("rejected: duplicate {}", kind.field()),
            Rejection::SubjectNotFound
            | Rejection::Forgotten
            | Rejection::AppNotFound
            | Rejection::SessionNotFound
            | Rejection::ShareNotFound
            | Rejection::UnknownBrief
            | Rejection::UnknownActivity
            | Rejection::RequestNotFound => "not-found".into(),
            other => format!("rejected: {other}"),
        }
    }
}

/// The answer to a submitted command: what happened, and where it was applied and audited.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub outcome: Result<Applied, Rejection>,
    pub audit_seq: u64,
    /// The Raft log index of the entry that carried the command; a node that has applied
    /// this index sees the command's effects.
    pub log_index: u64,
}

/// The commands one Raft log entry carries: whatever concurrent requests submitted while
/// the previous entry was being proposed. Shared, so that proposing a batch again after a
/// leader change copies no ciphertext.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Batch {
    pub commands: std::sync::Arc<[Command]>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Log lines name the size of a batch, never its contents.
        write!(f, "batch of {} commands", self.commands.len())
    }
}
