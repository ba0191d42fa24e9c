//! Where everything lives in the vault's state tree. All replicated state but the audit
//! trail's events is one sled tree (what a snapshot dumps, followed by the trail); each
//! kind of record has its own one-byte key prefix.

use uuid::Uuid;

/// Subject records: `s` + subject token.
pub const SUBJECT: u8 = b's';
/// Blind-index entries: `i` + entry (kind byte + HMAC) → subject token.
const INDEX: u8 = b'i';
/// App records: `a` + subject token + app name.
const APP: u8 = b'a';
/// App names in use: `n` + app name.
pub const APP_NAME: u8 = b'n';
/// Each subject's audit head: `b` + subject token → `SubjectAuditHead` (its newest
/// event; older ones are linked from there by `subject_prev`).
const SUBJECT_AUDIT_HEAD: u8 = b'b';
/// Access tokens: `t` + SHA-256 of the secret.
pub const TOKEN: u8 = b't';
/// Applied erasures: `x` + Raft log index (big-endian) → time applied (ms). A node's
/// erasures past its purged log index are still on its disk in the log.
pub const ERASURE: u8 = b'x';
/// Pending expirations: `k` + SHA-256 of the exptoken → subject token.
const EXP_TOKEN: u8 = b'k';
/// Expirations counting down: `d` + end time (ms, big-endian) + subject token.
pub const EXP_DUE: u8 = b'd';
/// Retention runs: `r` + policy + `0` + sequence number of the run's audit event.
pub const RETENTION_RUN: u8 = b'r';
/// Sessions: `q` + session id → `SessionRecord`.
const SESSION: u8 = b'q';
/// Sessions of a subject: `w` + subject token + session id.
const SESSION_OF_SUBJECT: u8 = b'w';
/// Session expiry: `y` + end time (ms, big-endian) + session id.
pub const SESSION_DUE: u8 = b'y';
/// Shared records: `h` + SHA-256 of the record id (the partner's credential) →
/// `SharedRecord`.
const SHARED: u8 = b'h';
/// Shared records of a subject: `j` + subject token + SHA-256 of the record id.
const SHARED_OF_SUBJECT: u8 = b'j';
/// Shared record expiry: `l` + end time (ms, big-endian) + SHA-256 of the record id.
pub const SHARED_DUE: u8 = b'l';
/// Legal bases: `g` + brief → `LegalBasis`.
pub const LEGAL_BASIS: u8 = b'g';
/// Agreements: `c` + subject token + brief → `Agreement`.
const AGREEMENT: u8 = b'c';
/// Agreements by brief: `f` + brief + `0` + subject token.
const AGREEMENT_BY_BRIEF: u8 = b'f';
/// Agreements to an email or phone that names no subject yet (a cookie banner's
/// visitor): `e` + blind-index entry + brief → `Agreement`. They move to the subject
/// created (or changed) with that identifier.
const PENDING_AGREEMENT: u8 = b'e';
/// Such agreements by brief: `z` + brief + `0` + blind-index entry.
const PENDING_BY_BRIEF: u8 = b'z';
/// The identifier behind a blind-index entry with pending agreements, sealed under a
/// key of its own: `v` + entry → `PendingIdentity`. Forget-me removes it.
const PENDING_IDENTITY: u8 = b'v';
/// Processing activities: `p` + activity → `ProcessingActivity`.
pub const ACTIVITY: u8 = b'p';
/// Requests awaiting a DPO: `o` + rtoken → `RequestRecord`.
pub const REQUEST: u8 = b'o';
/// Requests of a subject: `u` + subject token + rtoken.
const REQUEST_OF_SUBJECT: u8 = b'u';
/// The subset still open: `U` + subject token + rtoken (counted when filing, so a person's
/// settled requests cost nothing there).
const OPEN_REQUEST_OF_SUBJECT: u8 = b'U';
/// Singletons: `m` + name.
const META: u8 = b'm';
/// The erasure ledger: `E` + sequence number (big-endian, from 1) → `LedgerEntry`.
pub const LEDGER: u8 = b'E';

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    key.push(prefix);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub fn subject(subject: &Uuid) -> Vec<u8> {
    key(SUBJECT, &[subject.as_bytes()])
}

pub fn index(entry: &[u8]) -> Vec<u8> {
    key(INDEX, &[entry])
}

pub fn app(subject: &Uuid, app: &str) -> Vec<u8> {
    key(APP, &[subject.as_bytes(), app.as_bytes()])
}

pub fn app_name(app: &str) -> Vec<u8> {
    key(APP_NAME, &[app.as_bytes()])
}

pub fn subject_audit_head(subject: &Uuid) -> Vec<u8> {
    key(SUBJECT_AUDIT_HEAD, &[subject.as_bytes()])
}

pub fn token(secret_hash: &[u8; 32]) -> Vec<u8> {
    key(TOKEN, &[secret_hash])
}

pub fn erasure(log_index: u64) -> Vec<u8> {
    key(ERASURE, &[&log_index.to_be_bytes()])
}

pub fn exp_token(hash: &[u8; 32]) -> Vec<u8> {
    key(EXP_TOKEN, &[hash])
}

pub fn exp_due(ends_at: u64, subject: &Uuid) -> Vec<u8> {
    key(EXP_DUE, &[&ends_at.to_be_bytes(), subject.as_bytes()])
}

/// All runs of one policy: a policy name never contains a zero byte, so no policy's
/// prefix is a prefix of another's.
pub fn retention_runs(policy: &str) -> Vec<u8> {
    key(RETENTION_RUN, &[policy.as_bytes(), &[0]])
}

pub fn retention_run(policy: &str, audit_seq: u64) -> Vec<u8> {
    key(RETENTION_RUN, &[policy.as_bytes(), &[0], &audit_seq.to_be_bytes()])
}

pub fn session(session: &Uuid) -> Vec<u8> {
    key(SESSION, &[session.as_bytes()])
}

pub fn sessions_of_subject(subject: &Uuid) -> Vec<u8> {
    key(SESSION_OF_SUBJECT, &[subject.as_bytes()])
}

pub fn session_of_subject(subject: &Uuid, session: &Uuid) -> Vec<u8> {
    key(SESSION_OF_SUBJECT, &[subject.as_bytes(), session.as_bytes()])
}

pub fn session_due(expires_at: u64, session: &Uuid) -> Vec<u8> {
    key(SESSION_DUE, &[&expires_at.to_be_bytes(), session.as_bytes()])
}

pub fn shared(hash: &[u8; 32]) -> Vec<u8> {
    key(SHARED, &[hash])
}

pub fn shared_of_subject_prefix(subject: &Uuid) -> Vec<u8> {
    key(SHARED_OF_SUBJECT, &[subject.as_bytes()])
}

pub fn shared_of_subject(subject: &Uuid, hash: &[u8; 32]) -> Vec<u8> {
    key(SHARED_OF_SUBJECT, &[subject.as_bytes(), hash])
}

pub fn shared_due(expires_at: u64, hash: &[u8; 32]) -> Vec<u8> {
    key(SHARED_DUE, &[&expires_at.to_be_bytes(), hash])
}

pub fn legal_basis(brief: &str) -> Vec<u8> {
    key(LEGAL_BASIS, &[brief.as_bytes()])
}

pub fn agreements_of(subject: &Uuid) -> Vec<u8> {
    key(AGREEMENT, &[subject.as_bytes()])
}

pub fn agreement(subject: &Uuid, brief: &str) -> Vec<u8> {
    key(AGREEMENT, &[subject.as_bytes(), brief.as_bytes()])
}

/// Briefs never contain a zero byte, so no brief's prefix is a prefix of another's.
pub fn agreements_by_brief(brief: &str) -> Vec<u8> {
    key(AGREEMENT_BY_BRIEF, &[brief.as_bytes(), &[0]])
}

pub fn agreement_by_brief(brief: &str, subject: &Uuid) -> Vec<u8> {
    key(AGREEMENT_BY_BRIEF, &[brief.as_bytes(), &[0], subject.as_bytes()])
}

/// A blind-index entry has a fixed length (kind byte + 32-byte MAC), so no entry's
/// prefix is a prefix of another's.
pub fn pending_agreements_of(entry: &[u8]) -> Vec<u8> {
    key(PENDING_AGREEMENT, &[entry])
}

pub fn pending_agreement(entry: &[u8], brief: &str) -> Vec<u8> {
    key(PENDING_AGREEMENT, &[entry, brief.as_bytes()])
}

pub fn pending_by_brief(brief: &str) -> Vec<u8> {
    key(PENDING_BY_BRIEF, &[brief.as_bytes(), &[0]])
}

pub fn pending_of_brief(brief: &str, entry: &[u8]) -> Vec<u8> {
    key(PENDING_BY_BRIEF, &[brief.as_bytes(), &[0], entry])
}

/// The blind-index entry at the end of a `pending_of_brief` key.
pub fn trailing_entry(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(ENTRY_LEN).map(|start| &key[start..])
}

/// Bytes in a blind-index entry: its kind byte and an HMAC-SHA256.
pub const ENTRY_LEN: usize = 33;

pub fn pending_identity(entry: &[u8]) -> Vec<u8> {
    key(PENDING_IDENTITY, &[entry])
}

pub fn activity(activity: &str) -> Vec<u8> {
    key(ACTIVITY, &[activity.as_bytes()])
}

pub fn ledger(seq: u64) -> Vec<u8> {
    key(LEDGER, &[&seq.to_be_bytes()])
}

pub fn request(rtoken: &Uuid) -> Vec<u8> {
    key(REQUEST, &[rtoken.as_bytes()])
}

pub fn requests_of(subject: &Uuid) -> Vec<u8> {
    key(REQUEST_OF_SUBJECT, &[subject.as_bytes()])
}

pub fn open_requests_of(subject: &Uuid) -> Vec<u8> {
    key(OPEN_REQUEST_OF_SUBJECT, &[subject.as_bytes()])
}

pub fn open_request_of(subject: &Uuid, rtoken: &Uuid) -> Vec<u8> {
    key(OPEN_REQUEST_OF_SUBJECT, &[subject.as_bytes(), rtoken.as_bytes()])
}

pub fn request_of(subject: &Uuid, rtoken: &Uuid) -> Vec<u8> {
    key(REQUEST_OF_SUBJECT, &[subject.as_bytes(), rtoken.as_bytes()])
}

/// The SHA-256 at the end of a key (`shared_of_subject`, `shared_due`).
pub fn trailing_hash(key: &[u8]) -> Option<[u8; 32]> {
    key.len().checked_sub(32).and_then(|start| key[start..].try_into().ok())
}

/// The UUID at the end of a key (`exp_due`, `session_due`, `session_of_subject`).
pub fn trailing_uuid(key: &[u8]) -> Option<Uuid> {
    key.len().checked_sub(16).and_then(|start| Uuid::from_slice(&key[start..]).ok())
}

pub fn meta(name: &str) -> Vec<u8> {
    key(META, &[name.as_bytes()])
}

pub fn is_meta(key: &[u8]) -> bool {
    key.first() == Some(&META)
}

pub const AUDIT_HEAD: &str = "audit_head";
pub const INDEX_KEY: &str = "index_key";
pub const NEXT_NODE_ID: &str = "next_node_id";
/// The sequence number the erasure ledger's next entry takes.
pub const LEDGER_NEXT: &str = "ledger_next";
/// A restored vault's new identity (see `Store::cluster_id`).
pub const CLUSTER_ID: &str = "cluster_id";
/// Present once the root token was retired: from then on it opens nothing.
pub const ROOT_RETIRED: &str = "root_retired";

/// The big-endian sequence number at the end of an audit key (0 when malformed).
pub fn trailing_seq(key: &[u8]) -> u64 {
    key.len().checked_sub(8).and_then(|start| key[start..].try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}
