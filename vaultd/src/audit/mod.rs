//! The audit trail: one event per access to personal data, hash-chained so that editing
//! or removing a stored event is detectable (`GET /v1/sys/audit/verify`).
//!
//! An event names the actor by token id (never the secret), the subject by its token and
//! the lookup by its mode only: the identifier itself (an email, a phone) is personal
//! data and is never recorded.

pub mod scheduled_verification;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What the caller did. Serialised as kebab-case strings, e.g. `user-read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    UserCreate,
    UserRead,
    UserUpdate,
    UserForget,
    UserList,
    AppCreate,
    AppRead,
    AppUpdate,
    AppDelete,
    AppList,
    TokenCreate,
    TokenRevoke,
    KeysInit,
    /// A node id was handed to a node joining the cluster.
    NodeIdAllocate,
    ExpirationStart,
    ExpirationStatus,
    ExpirationCancel,
    /// The subject kept its data, by its exptoken.
    ExpirationRetain,
    /// The subject was forgotten by its expiration: by its exptoken, or because it ended.
    ExpirationDelete,
    /// A retention policy ran; its report is in `GET /v1/sys/retention/runs`.
    RetentionRun,
    /// Changes made by a retention rule, one event per subject.
    RetentionDelete,
    RetentionDropFields,
    RetentionPseudonymize,
    RetentionDeleteApp,
    RetentionStartExpiration,
    SessionCreate,
    SessionRead,
    SessionDelete,
    SessionList,
    /// An ended session was deleted by the sweeper.
    SessionExpire,
    ShareCreate,
    /// A partner read a shared record with its id.
    ShareRead,
    /// An ended shared record was deleted by the sweeper.
    ShareExpire,
    ConsentAccept,
    ConsentWithdraw,
    ConsentRead,
    /// A legal basis was revoked for every subject.
    ConsentRevokeAll,
    LegalBasisChange,
    ActivityChange,
    /// A subject's change filed for a DPO (its approval is audited as the change itself,
    /// with the request in the purpose).
    RequestCreate,
    RequestRead,
    RequestList,
    RequestCancel,
    /// The root token was retired; other admin tokens remain.
    RootTokenRetire,
    /// A backup of the whole vault was taken.
    BackupRead,
    /// The erasure ledger was read (to ship it beside backups).
    LedgerRead,
    /// A restored vault applied an erasure of the ledger that came after its backup.
    LedgerReplay,
}

impl Operation {
    /// Whether the operation removes personal data on purpose (forget-me, app record
    /// deletion, retention and expiration changes). Such a change must reach the disk:
    /// the node compacts the removed data out of its Raft log promptly (see
    /// `cluster::compaction`), where an ordinary update's old value waits for the next
    /// regular snapshot.
    pub fn erases_data(self) -> bool {
        matches!(
            self,
            Operation::UserForget
                | Operation::AppDelete
                | Operation::ExpirationDelete
                | Operation::RetentionDelete
                | Operation::RetentionDropFields
                | Operation::RetentionPseudonymize
                | Operation::RetentionDeleteApp
                | Operation::LedgerReplay
        )
    }
}

/// Milliseconds since the Unix epoch: the clock of audit events and record ages.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the proposer of a change knows about it before it is applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditDraft {
    /// Milliseconds since the Unix epoch, stamped by the node that took the request.
    pub time: u64,
    pub actor: String,
    pub operation: Operation,
    pub subject: Option<Uuid>,
    pub app: Option<String>,
    pub mode: Option<String>,
    pub purpose: Option<String>,
}

/// A chained event as stored. `hash` covers every other field, `prev` included; `id`
/// is derived from `seq` and `hash` (see [`event_id`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub id: Uuid,
    pub time: u64,
    pub actor: String,
    pub operation: Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Uuid>,
    /// The sequence number of the subject's event before this one: a subject's events
    /// form a list from its newest, so listing them needs no index entry per event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_prev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub result: String,
    pub prev: String,
    pub hash: String,
}

/// The hash of the (empty) chain before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEvent {
    /// Chains a draft after the event whose hash is `prev`; `subject_prev` is the
    /// subject's previous event, if it has one.
    pub fn chain(draft: AuditDraft, seq: u64, result: String, prev: &str, subject_prev: Option<u64>) -> Self {
        let mut event = AuditEvent {
            seq,
            id: Uuid::nil(),
            time: draft.time,
            actor: draft.actor,
            operation: draft.operation,
            subject: draft.subject,
            subject_prev,
            app: draft.app,
            mode: draft.mode,
            purpose: draft.purpose,
            result,
            prev: prev.to_string(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event.id = event_id(seq, &event.hash);
        event
    }

    /// SHA-256 over the canonical JSON of the event with an empty `hash` and a nil `id`.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        unhashed.id = Uuid::nil();
        // Serialising a struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex(&Sha256::digest(bytes))
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub intact: bool,
    pub events: u64,
    /// The sequence number of the first event that does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub head: String,
}

/// A walk along the chain from genesis, fed one stored event at a time, so that checking
/// a long history needs no more memory than one event.
pub struct ChainCheck {
    prev: String,
    count: u64,
    broken: Option<(u64, &'static str)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck { prev: GENESIS.to_string(), count: 0, broken: None }
    }
}

impl ChainCheck {
    /// Checks the next stored event; `Err(seq)` stands for one that cannot be decoded.
    /// Everything after the first break is ignored.
    pub fn push(&mut self, item: Result<AuditEvent, u64>) {
        if self.broken.is_some() {
            return;
        }
        let event = match item {
            Ok(event) => event,
            Err(seq) => return self.broken = Some((seq, "event cannot be decoded")),
        };
        if event.seq != self.count + 1 {
            return self.broken = Some((self.count + 1, "event missing from the sequence"));
        }
        if event.prev != self.prev {
            return self.broken = Some((event.seq, "previous-hash link does not match"));
        }
        if event.compute_hash() != event.hash || event.id != event_id(event.seq, &event.hash) {
            return self.broken = Some((event.seq, "event content does not match its hash"));
        }
        self.prev = event.hash;
        self.count += 1;
    }

    /// The verdict, given the hash the chain must end in.
    pub fn finish(self, head: &str) -> Verification {
        let broken = self
            .broken
            .or_else(|| (self.prev != head).then_some((self.count + 1, "chain is shorter than its recorded head")));
        Verification {
            intact: broken.is_none(),
            events: self.count,
            broken_at: broken.map(|(seq, _)| seq),
            reason: broken.map(|(_, reason)| reason),
            head: head.to_string(),
        }
    }
}

/// An event's id (Databunker's `atoken`): a version-8 UUID holding the 48-bit sequence
/// number, so the event can be found without a second index, and 74 bits of its hash,
/// so ids cannot be guessed from sequence numbers alone.
pub fn event_id(seq: u64, hash: &str) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&seq.to_be_bytes()[2..]);
    for (i, byte) in bytes[6..].iter_mut().enumerate() {
        *byte = u8::from_str_radix(hash.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The sequence number an event id was made from (the event must still match the id).
pub fn seq_of_id(id: &Uuid) -> u64 {
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&id.as_bytes()[..6]);
    u64::from_be_bytes(seq)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Events with sequence numbers in `range`, of varied sizes, each chained to genesis:
/// stored and read back by the storage tests.
#[cfg(test)]
pub(crate) fn sample_events(range: std::ops::Range<u64>) -> Vec<AuditEvent> {
    range
        .map(|seq| {
            let draft = AuditDraft {
                time: seq,
                actor: "root".into(),
                operation: Operation::UserRead,
                subject: None,
                app: None,
                mode: Some("login".into()),
                purpose: (seq % 3 == 0).then(|| "x".repeat(seq as usize % 700)),
            };
            AuditEvent::chain(draft, seq, "ok".into(), GENESIS, None)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a whole chain given in sequence order.
    fn verify(events: impl IntoIterator<Item = Result<AuditEvent, u64>>, head: &str) -> Verification {
        let mut chain = ChainCheck::default();
        for event in events {
            chain.push(event);
        }
        chain.finish(head)
    }

    fn draft(n: u64) -> AuditDraft {
        AuditDraft {
            time: n,
            actor: "root".into(),
            operation: Operation::UserRead,
            subject: Some(Uuid::new_v4()),
            app: None,
            mode: Some("email".into()),
            purpose: None,
        }
    }

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::chain(draft(seq), seq, "ok".into(), &prev, None);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let events = chain(5);
        let head = events[4].hash.clone();
        let report = verify(events.into_iter().map(Ok), &head);
        assert!(report.intact, "{report:?}");
        assert_eq!(report.events, 5);
    }

    #[test]
    fn edits_removals_and_truncation_are_detected() {
        let events = chain(5);
        let head = events[4].hash.clone();

        let mut edited = events.clone();
        edited[2].result = "denied".into();
        let report = verify(edited.into_iter().map(Ok), &head);
        assert_eq!((report.intact, report.broken_at), (false, Some(3)));

        let mut removed = events.clone();
        removed.remove(1);
        assert_eq!(verify(removed.into_iter().map(Ok), &head).broken_at, Some(2));

        let truncated = events[..4].to_vec();
        assert!(!verify(truncated.into_iter().map(Ok), &head).intact);

        let mut reassigned = events.clone();
        reassigned[1].id = Uuid::new_v4();
        assert_eq!(verify(reassigned.into_iter().map(Ok), &head).broken_at, Some(2));
    }

    #[test]
    fn ids_carry_the_sequence_number() {
        for event in chain(3) {
            assert_eq!(seq_of_id(&event.id), event.seq);
            assert_eq!(event.id.get_version_num(), 8);
        }
    }
}
