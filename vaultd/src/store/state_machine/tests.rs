//! The state machine's behaviour through its public face: commands applied in
//! transactions, their outcomes, audit events and what a crash leaves.

use super::*;
use crate::audit::{AuditDraft, Operation};
use crate::store::records::ExpirationStatus;
use crate::store::DEFAULT_CACHE_BYTES;

fn machine() -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    (dir, StateMachine::new(store, Arc::new(DekCache::new(8))).unwrap())
}

fn apply(machine: &mut StateMachine, commands: &[Command]) -> Vec<Receipt> {
    let mut transaction = machine.begin();
    let receipts = commands.iter().map(|c| transaction.apply(c, 7).unwrap()).collect();
    transaction.commit().unwrap();
    receipts
}

fn command(change: Change) -> Command {
    let audit = AuditDraft {
        time: 1_000,
        actor: "root".into(),
        operation: Operation::UserCreate,
        subject: None,
        app: None,
        mode: None,
        purpose: None,
    };
    Command { audit, change }
}

fn create(subject: Uuid, index: Vec<Vec<u8>>) -> Command {
    command(Change::CreateSubject { subject, kek: "k".into(), wrapped_dek: vec![1], profile: vec![2], index })
}

#[test]
fn uniqueness_holds_within_one_batch() {
    let (_dir, mut machine) = machine();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let email = vec![IndexKind::Email as u8, 7, 7];
    let receipts = apply(&mut machine, &[create(a, vec![email.clone()]), create(b, vec![email.clone()])]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Done));
    assert_eq!(receipts[1].outcome, Err(Rejection::Duplicate(IndexKind::Email)));
    assert_eq!(receipts[1].log_index, 7);
    let store = machine.store();
    assert_eq!(store.lookup(&email).unwrap(), Some(a));
    assert!(store.subject(&b).unwrap().is_none(), "the rejected create wrote nothing");
    let (total, events) = store.audit_all(0, 10).unwrap();
    assert_eq!(total, 2, "both attempts are audited");
    assert_eq!(events[0].result, "rejected: duplicate email");
    assert!(store.verify_audit().unwrap().intact);
}

#[test]
fn a_create_proposed_twice_is_applied_once() {
    let (_dir, mut machine) = machine();
    let a = Uuid::new_v4();
    let receipts = apply(&mut machine, &[create(a, vec![]), create(a, vec![])]);
    assert_eq!(receipts[1].outcome, Ok(Applied::Done));
    let mut other_key = create(a, vec![]);
    if let Change::CreateSubject { wrapped_dek, .. } = &mut other_key.change {
        *wrapped_dek = vec![9];
    }
    assert_eq!(apply(&mut machine, &[other_key])[0].outcome, Err(Rejection::Exists));
}

#[test]
fn reads_resolve_their_target_when_applied_and_audit_the_subject() {
    let (_dir, mut machine) = machine();
    let a = Uuid::new_v4();
    let login = vec![IndexKind::Login as u8, 1];
    let read = |target| command(Change::ReadSubject { target });
    let receipts = apply(
        &mut machine,
        &[read(Target::Index(login.clone())), create(a, vec![login.clone()]), read(Target::Index(login.clone()))],
    );
    assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "the read precedes the create in the log");
    match &receipts[2].outcome {
        Ok(Applied::Subject { subject, record }) => {
            assert_eq!(*subject, a);
            assert_eq!(record.version, 1);
        }
        other => panic!("{other:?}"),
    }
    let (_, events) = machine.store().audit_all(0, 10).unwrap();
    assert_eq!((events[0].subject, events[0].result.as_str()), (Some(a), "ok"));
    assert_eq!((events[2].subject, events[2].result.as_str()), (None, "not-found"));

    let app = |name: &str| command(Change::ReadApp { target: Target::Token(a), app: name.into() });
    let put = command(Change::PutApp { subject: a, app: "shop".into(), sealed: vec![5], expected_version: None });
    let receipts = apply(&mut machine, &[app("shop"), put, app("shop")]);
    assert_eq!(receipts[0].outcome, Err(Rejection::AppNotFound));
    assert!(matches!(&receipts[2].outcome, Ok(Applied::App { record, .. }) if record.sealed == vec![5]));
}

#[test]
fn node_ids_are_never_handed_out_twice() {
    let (_dir, mut machine) = machine();
    let receipts = apply(&mut machine, &[command(Change::AllocateNodeId), command(Change::AllocateNodeId)]);
    assert_eq!(receipts[0].outcome, Ok(Applied::NodeId(2)), "node 1 bootstrapped the cluster");
    assert_eq!(receipts[1].outcome, Ok(Applied::NodeId(3)));
    // The counter lives in the replicated state, not in the machine's memory.
    let mut machine = StateMachine::new(machine.store().clone(), Arc::new(DekCache::new(8))).unwrap();
    assert_eq!(apply(&mut machine, &[command(Change::AllocateNodeId)])[0].outcome, Ok(Applied::NodeId(4)));
}

#[test]
fn audit_reads_find_events_anywhere_in_the_trail() {
    let (_dir, mut machine) = machine();
    let subject = Uuid::new_v4();
    let mut reads: Vec<Command> = (0..150).map(|_| command(Change::Access { found: true })).collect();
    for read in &mut reads {
        read.audit.subject = Some(subject);
    }
    apply(&mut machine, &reads);
    let store = machine.store();
    assert_eq!(store.raw_audit_events().unwrap().len(), 150);
    let (total, newest) = store.audit_all(60, 10).unwrap();
    assert_eq!(total, 150);
    assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), (81..=90).rev().collect::<Vec<_>>());
    let (count, mine) = store.audit_for_subject(&subject, 0, 200).unwrap();
    assert_eq!((count, mine.len(), mine[0].seq, mine[149].seq), (150, 150, 150, 1));
    let middle = &mine[80];
    assert_eq!(store.audit_event(&middle.id).unwrap().as_ref(), Some(middle));
    let mut forged = middle.id.into_bytes();
    forged[15] ^= 1;
    assert_eq!(store.audit_event(&Uuid::from_bytes(forged)).unwrap(), None, "ids cannot be guessed from seq");
    assert!(store.verify_audit().unwrap().intact);
}

#[test]
fn the_trail_is_brought_in_step_with_the_state_at_open() {
    let (_dir, mut machine) = machine();
    let reads: Vec<Command> = (0..5).map(|_| command(Change::Access { found: true })).collect();
    apply(&mut machine, &reads);
    let store = machine.store().clone();
    // A crash after the trail got a transaction's events but before the state did.
    let events = store.raw_audit_events().unwrap();
    let mut next = events[4].clone();
    next.seq = 6;
    store.audit_trail().append(&[next]).unwrap();
    let machine = StateMachine::new(store.clone(), Arc::new(DekCache::new(8))).unwrap();
    assert!(machine.trail_holds_state().unwrap());
    assert_eq!(store.raw_audit_events().unwrap(), events, "the unstored event is gone");
    assert!(store.verify_audit().unwrap().intact);

    // A power loss that kept the state's last transaction but not its events.
    store.audit_trail().keep_through(3).unwrap();
    assert!(!machine.trail_holds_state().unwrap());
}

#[test]
fn a_subjects_events_are_listed_through_their_links() {
    let (_dir, mut machine) = machine();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    // 200 events over three batches: every third about `first`, the rest about
    // `second` or nobody, so `first`'s list skips across blocks and batches.
    for batch in 0..3u64 {
        let reads: Vec<Command> = (0..200 / 3 + 1)
            .map(|i| {
                let mut read = command(Change::Access { found: true });
                read.audit.subject = match (batch * 67 + i) % 3 {
                    0 => Some(first),
                    1 => Some(second),
                    _ => None,
                };
                read
            })
            .collect();
        apply(&mut machine, &reads);
    }
    let store = machine.store();
    let (total, all) = store.audit_all(0, 300).unwrap();
    let expected: Vec<u64> = all.iter().filter(|event| event.subject == Some(first)).map(|event| event.seq).collect();
    let (count, listed) = store.audit_for_subject(&first, 0, 300).unwrap();
    assert_eq!((total, count), (201, expected.len()));
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert_eq!(listed.last().unwrap().subject_prev, None, "the first event starts the list");
    let (_, page) = store.audit_for_subject(&first, 10, 5).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), expected[10..15]);
    let (_, past_the_end) = store.audit_for_subject(&first, count, 5).unwrap();
    assert!(past_the_end.is_empty());
    assert_eq!(store.audit_for_subject(&Uuid::new_v4(), 0, 5).unwrap(), (0, Vec::new()));
    assert!(store.verify_audit().unwrap().intact);
}

fn expiration(ends_at: u64, token: u8) -> crate::store::Expiration {
    crate::store::Expiration {
        status: ExpirationStatus::Wait,
        started: 0,
        ends_at,
        token_hash: [token; 32],
        sealed_token: vec![token],
    }
}

fn at(time: u64, change: Change) -> Command {
    let mut command = command(change);
    command.audit.time = time;
    command
}

#[test]
fn an_expiration_counts_down_until_retained_cancelled_or_due() {
    let (_dir, mut machine) = machine();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let start = |subject, token, replace| {
        command(Change::StartExpiration {
            subject,
            expected_version: None,
            replace,
            expiration: expiration(5_000, token),
        })
    };
    apply(&mut machine, &[create(a, vec![]), create(b, vec![]), start(a, 1, true), start(b, 2, true)]);
    let store = machine.store().clone();
    assert_eq!(store.due_expirations(4_999, 10).unwrap(), Vec::<Uuid>::new());
    assert_eq!(store.due_expirations(5_000, 10).unwrap().len(), 2);
    assert_eq!(store.subject_by_exptoken(&[1; 32]).unwrap(), Some(a));
    assert_eq!(apply(&mut machine, &[start(a, 3, false)])[0].outcome, Err(Rejection::Exists));

    let due = |subject, time| {
        at(time, Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::ExpirationDue })
    };
    let receipts = apply(
        &mut machine,
        &[
            due(a, 4_000),
            command(Change::RetainData { target: Target::ExpToken([2; 32]) }),
            due(b, 6_000),
            due(a, 6_000),
        ],
    );
    assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "not due yet");
    assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(b)));
    assert_eq!(receipts[2].outcome, Err(Rejection::Stale), "b retained its data");
    assert_eq!(receipts[3].outcome, Ok(Applied::Resolved(a)));
    assert_eq!(store.due_expirations(u64::MAX, 10).unwrap(), Vec::<Uuid>::new());
    let forgotten = store.subject(&a).unwrap().unwrap();
    let ended = forgotten.expiration.unwrap();
    assert_eq!((ended.status, ended.sealed_token.is_empty()), (ExpirationStatus::Expired, true));
    assert_eq!(store.subject_by_exptoken(&[1; 32]).unwrap(), None, "a used-up exptoken resolves nothing");

    let receipts = apply(&mut machine, &[command(Change::CancelExpiration { target: Target::Token(b) })]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(b)));
    assert_eq!(store.subject(&b).unwrap().unwrap().expiration, None);
    assert_eq!(store.subject_by_exptoken(&[2; 32]).unwrap(), None);
}

#[test]
fn conditional_changes_refuse_a_subject_that_changed() {
    let (_dir, mut machine) = machine();
    let a = Uuid::new_v4();
    let put = command(Change::PutApp { subject: a, app: "shop".into(), sealed: vec![5], expected_version: None });
    apply(&mut machine, &[create(a, vec![]), put.clone(), put]);
    let delete_app = |version| {
        command(Change::DeleteApp { target: Target::Token(a), app: "shop".into(), expected_version: Some(version) })
    };
    let forget = |version| {
        command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Version(version) })
    };
    let receipts = apply(&mut machine, &[delete_app(1), delete_app(2), forget(7), forget(1), forget(1)]);
    assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "the app record is at version 2");
    assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(a)));
    assert_eq!(receipts[2].outcome, Err(Rejection::Stale));
    assert_eq!(receipts[3].outcome, Ok(Applied::Resolved(a)));
    assert_eq!(receipts[4].outcome, Err(Rejection::Forgotten), "a conditional forget applies once");
}

#[test]
fn run_history_is_bounded_per_policy_even_within_one_batch() {
    use strongroom_admin_api::retention::RunReport;
    let (_dir, mut machine) = machine();
    let run = |policy: &str, started_at| {
        command(Change::RecordRetentionRun {
            report: RunReport {
                policy: policy.into(),
                dry_run: false,
                started_at,
                finished_at: started_at,
                matched: 0,
                changed: 0,
                rules: vec![],
                audit_event_id: String::new(),
            },
        })
    };
    let mut runs: Vec<Command> = (0..retention::MAX_RUNS_PER_POLICY as u64 + 5).map(|i| run("shop/a", i)).collect();
    runs.push(run("shop/ab", 99));
    apply(&mut machine, &runs);
    let kept = machine.store().retention_runs(Some("shop/a"), 1_000).unwrap();
    assert_eq!(kept.len(), retention::MAX_RUNS_PER_POLICY);
    assert_eq!(kept[0].1.started_at, retention::MAX_RUNS_PER_POLICY as u64 + 4, "newest first");
    assert_eq!(kept.last().unwrap().1.started_at, 5, "the oldest were dropped");
    let event = machine.store().audit_event_at(kept[0].0).unwrap().unwrap();
    assert_eq!(event.seq, kept[0].0, "a run is keyed by its audit event");
    assert_eq!(machine.store().retention_runs(Some("shop/ab"), 10).unwrap().len(), 1, "prefixes do not mix");
    assert_eq!(machine.store().retention_runs(None, 1_000).unwrap().len(), retention::MAX_RUNS_PER_POLICY + 1);
    apply(&mut machine, &[run("shop", 7), run("shop/a.b", 8)]);
    let last: Vec<(String, u64)> =
        machine.store().last_retention_runs().unwrap().into_iter().map(|r| (r.policy, r.started_at)).collect();
    let newest_of_a = retention::MAX_RUNS_PER_POLICY as u64 + 4;
    let expected = [("shop", 7), ("shop/a", newest_of_a), ("shop/a.b", 8), ("shop/ab", 99)];
    assert_eq!(last, expected.map(|(policy, at)| (policy.to_string(), at)), "each policy's newest, once");
}

#[test]
fn sessions_end_and_go_with_their_subject() {
    use crate::store::SessionRecord;
    let (_dir, mut machine) = machine();
    let (a, linked, loose) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let session =
        |subject, expires_at| SessionRecord { subject, created: 1_000, expires_at, key: None, sealed: vec![1] };
    let put = |id, record| command(Change::PutSession { session: id, record, may_take: true });
    let receipts = apply(
        &mut machine,
        &[put(linked, session(Some(a), 5_000)), create(a, vec![]), put(linked, session(Some(a), 5_000))],
    );
    assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "a linked session needs its subject");
    assert_eq!(receipts[2].outcome, Ok(Applied::Done));
    apply(&mut machine, &[put(loose, session(None, 3_000))]);

    let read = |id, time| at(time, Change::ReadSession { session: id, owner: None });
    let list = |time| at(time, Change::ReadSessions { target: Target::Token(a), offset: 0, limit: 10 });
    let receipts = apply(&mut machine, &[read(loose, 2_999), read(loose, 3_000), list(4_000), list(5_000)]);
    assert!(matches!(&receipts[0].outcome, Ok(Applied::Session { owner: None, .. })));
    assert_eq!(receipts[1].outcome, Err(Rejection::SessionNotFound), "an ended session is gone for readers");
    assert!(matches!(&receipts[2].outcome, Ok(Applied::Sessions { total: 1, owner: Some(_), .. })));
    assert!(matches!(&receipts[3].outcome, Ok(Applied::Sessions { total: 0, .. })));

    let sweep = |id, time| at(time, Change::DeleteSession { session: id, only_if_ended: true, owner: None });
    let receipts = apply(&mut machine, &[sweep(linked, 4_999), sweep(loose, 3_000)]);
    assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "the sweeper leaves running sessions alone");
    assert_eq!(receipts[1].outcome, Ok(Applied::Done));
    assert_eq!(machine.store().ended_sessions(u64::MAX, 10).unwrap(), vec![linked]);

    apply(
        &mut machine,
        &[command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always })],
    );
    assert_eq!(apply(&mut machine, &[read(linked, 0)])[0].outcome, Err(Rejection::SessionNotFound));
    assert_eq!(machine.store().ended_sessions(u64::MAX, 10).unwrap(), Vec::<Uuid>::new(), "forget-me took it");
}

#[test]
fn a_request_is_approved_with_its_effect_or_not_at_all() {
    use crate::store::{RequestAction, RequestRecord, RequestStatus};
    let (_dir, mut machine) = machine();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let login = vec![IndexKind::Login as u8, 1];
    apply(&mut machine, &[create(a, vec![]), create(b, vec![login.clone()])]);
    let request = |action| RequestRecord {
        subject: a,
        action,
        app: None,
        change: vec![1],
        status: RequestStatus::Open,
        reason: String::new(),
        created: 0,
        updated: 0,
    };
    let (rename, forget, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    apply(
        &mut machine,
        &[
            command(Change::FileRequest { rtoken: rename, record: request(RequestAction::ChangeProfile) }),
            command(Change::FileRequest { rtoken: forget, record: request(RequestAction::ForgetMe) }),
            command(Change::FileRequest { rtoken: other, record: request(RequestAction::ChangeProfile) }),
        ],
    );
    let approve = |rtoken, effect: Change| {
        command(Change::ResolveRequest {
            rtoken,
            approve: true,
            reason: "ok".into(),
            owner: None,
            then: Some(Box::new(effect)),
        })
    };
    let taken = Change::UpdateSubject { subject: a, expected_version: 1, profile: vec![3], index: vec![login] };
    let receipts = apply(&mut machine, &[approve(rename, taken)]);
    assert_eq!(receipts[0].outcome, Err(Rejection::Duplicate(IndexKind::Login)));
    assert_eq!(machine.store().request(&rename).unwrap().unwrap().status, RequestStatus::Open, "still open");

    let forget_a = Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always };
    let receipts = apply(&mut machine, &[approve(forget, forget_a.clone()), approve(forget, forget_a)]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(a)));
    assert_eq!(receipts[1].outcome, Err(Rejection::RequestClosed), "approved once");
    let store = machine.store();
    assert!(matches!(store.subject(&a).unwrap().unwrap().state, SubjectState::Forgotten { .. }));
    assert_eq!(store.request(&forget).unwrap().unwrap().status, RequestStatus::Approved);
    let cancelled = store.request(&other).unwrap().unwrap();
    assert_eq!((cancelled.status, cancelled.change.is_empty()), (RequestStatus::Cancelled, true));
    let (_, events) = store.audit_all(0, 1).unwrap();
    assert_eq!(events[0].result, "rejected: the request is no longer open");
}

#[test]
fn stale_updates_and_forgotten_subjects_are_refused() {
    let (_dir, mut machine) = machine();
    let a = Uuid::new_v4();
    let login = vec![IndexKind::Login as u8, 1];
    apply(&mut machine, &[create(a, vec![login.clone()])]);
    let update = |version| {
        command(Change::UpdateSubject { subject: a, expected_version: version, profile: vec![3], index: vec![] })
    };
    let receipts = apply(&mut machine, &[update(1), update(1)]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Done));
    assert_eq!(receipts[1].outcome, Err(Rejection::Stale), "the second writer read version 1 too");
    assert_eq!(machine.store().lookup(&login).unwrap(), None, "the update dropped the login");

    let forget = command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always });
    let receipts = apply(&mut machine, &[forget.clone(), forget, update(3)]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(a)));
    assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(a)), "forgetting twice is idempotent");
    assert_eq!(receipts[2].outcome, Err(Rejection::Forgotten));
}

fn consent(change: crate::store::ConsentChange) -> Command {
    command(Change::Consent(change))
}

fn agreement(brief: &str, status: &str, when: u64) -> crate::store::Agreement {
    crate::store::Agreement {
        brief: brief.into(),
        status: status.into(),
        creationtime: when,
        when,
        starttime: 0,
        endtime: 0,
        mode: "email".into(),
        agreementmethod: "banner".into(),
        referencecode: String::new(),
        lastmodifiedby: String::new(),
    }
}

fn basis(brief: &str) -> Command {
    consent(crate::store::ConsentChange::PutLegalBasis {
        brief: brief.into(),
        basis: crate::store::LegalBasis {
            brief: brief.into(),
            status: "active".into(),
            module: String::new(),
            shortdesc: String::new(),
            fulldesc: String::new(),
            basistype: String::new(),
            requiredmsg: String::new(),
            usercontrol: false,
            requiredflag: false,
            creationtime: 0,
        },
    })
}

fn entry(kind: IndexKind, byte: u8) -> Vec<u8> {
    let mut entry = vec![kind as u8];
    entry.extend_from_slice(&[byte; 32]);
    entry
}

fn sealed_identity(byte: u8) -> crate::store::PendingIdentity {
    crate::store::PendingIdentity { kek: "k".into(), wrapped_key: vec![byte], sealed: vec![byte, byte] }
}

fn put_pending(entry: &[u8], agreement: crate::store::Agreement, identity: u8) -> Command {
    consent(crate::store::ConsentChange::PutByIdentifier {
        entry: entry.to_vec(),
        agreement,
        identity: Some(sealed_identity(identity)),
    })
}

fn read_pending(entry: &[u8], brief: Option<&str>) -> Command {
    consent(crate::store::ConsentChange::ReadByIdentifier { entry: entry.to_vec(), brief: brief.map(String::from) })
}

fn statuses(outcome: &Outcome) -> Vec<(String, String)> {
    match outcome {
        Ok(Applied::PendingAgreements { agreements } | Applied::Agreements { agreements, .. }) => {
            agreements.iter().map(|a| (a.brief.clone(), a.status.clone())).collect()
        }
        other => panic!("{other:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(b, s)| (b.to_string(), s.to_string())).collect()
}

#[test]
fn agreements_by_an_unknown_identifier_are_kept_and_taken_over_by_its_subject() {
    let (_dir, mut machine) = machine();
    let (email, phone, other) = (entry(IndexKind::Email, 1), entry(IndexKind::Phone, 2), entry(IndexKind::Email, 3));
    apply(&mut machine, &[basis("news"), basis("ads"), basis("stats")]);
    let receipts = apply(
        &mut machine,
        &[
            read_pending(&email, None),
            put_pending(&email, agreement("nope", "yes", 10), 1),
            put_pending(&email, agreement("ads", "no", 10), 1),
            put_pending(&email, agreement("news", "yes", 10), 1),
            put_pending(&email, agreement("ads", "yes", 11), 9),
            put_pending(&phone, agreement("ads", "yes", 8), 2),
            put_pending(&phone, agreement("ads", "no", 9), 2),
            put_pending(&phone, agreement("stats", "yes", 12), 2),
            put_pending(&other, agreement("news", "yes", 13), 3),
            read_pending(&email, Some("stats")),
        ],
    );
    assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "nothing kept yet");
    assert_eq!(receipts[1].outcome, Err(Rejection::UnknownBrief));
    assert_eq!(receipts[2].outcome, Err(Rejection::UnknownBrief), "nothing to withdraw");
    assert_eq!(receipts[6].outcome, Ok(Applied::Done), "withdrawing what this batch agreed to");
    assert_eq!(receipts[9].outcome, Err(Rejection::UnknownBrief));
    let store = machine.store().clone();
    assert_eq!(store.pending_identity(&email).unwrap(), Some(sealed_identity(1)), "the first identity stays");
    let receipts = apply(&mut machine, &[read_pending(&email, None), read_pending(&phone, Some("stats"))]);
    assert_eq!(statuses(&receipts[0].outcome), pairs(&[("ads", "yes"), ("news", "yes")]));
    assert_eq!(statuses(&receipts[1].outcome), pairs(&[("stats", "yes")]));
    let (_, events) = store.audit_all(0, 1).unwrap();
    assert_eq!((events[0].subject, events[0].result.as_str()), (None, "ok"));

    // Revoking and renaming a basis reach kept agreements too.
    let rename = consent(crate::store::ConsentChange::PutLegalBasis {
        brief: "ads".into(),
        basis: crate::store::LegalBasis { brief: "adverts".into(), ..basis_record("adverts") },
    });
    let revoke = consent(crate::store::ConsentChange::RevokeBasis { brief: "news".into() });
    apply(&mut machine, &[rename, revoke]);
    let receipts = apply(&mut machine, &[read_pending(&email, None), read_pending(&phone, None)]);
    assert_eq!(statuses(&receipts[0].outcome), pairs(&[("adverts", "yes"), ("news", "revoked")]));
    assert_eq!(statuses(&receipts[1].outcome), pairs(&[("adverts", "no"), ("stats", "yes")]));

    // A subject created with both identifiers takes over both sets in the same step;
    // of two agreements to one basis the one changed last wins.
    let a = Uuid::new_v4();
    let receipts = apply(
        &mut machine,
        &[
            create(a, vec![email.clone(), phone.clone()]),
            read_pending(&email, None),
            consent(crate::store::ConsentChange::ReadAgreements { target: Target::Token(a), brief: None }),
        ],
    );
    assert_eq!(receipts[0].outcome, Ok(Applied::Done));
    assert!(matches!(&receipts[1].outcome, Ok(Applied::Agreements { subject, .. }) if *subject == a));
    assert_eq!(statuses(&receipts[2].outcome), pairs(&[("adverts", "yes"), ("news", "revoked"), ("stats", "yes")]));
    assert_eq!(store.pending_identity(&email).unwrap(), None, "the sealed identifiers went");
    assert_eq!(store.pending_identity(&phone).unwrap(), None);
    assert_eq!(store.pending_identity(&other).unwrap(), Some(sealed_identity(3)), "another's stays");
    let leftover = |prefix: u8| store.state_tree().scan_prefix([prefix]).count();
    assert_eq!((leftover(b'e'), leftover(b'z')), (1, 1), "only the other identifier's agreement is kept");
    // Revoking still reaches the moved agreements, through the subject's index.
    apply(&mut machine, &[consent(crate::store::ConsentChange::RevokeBasis { brief: "stats".into() })]);
    let receipts = apply(&mut machine, &[read_pending(&phone, Some("stats"))]);
    assert_eq!(statuses(&receipts[0].outcome), pairs(&[("stats", "revoked")]));
}

fn basis_record(brief: &str) -> crate::store::LegalBasis {
    match basis(brief).change {
        Change::Consent(crate::store::ConsentChange::PutLegalBasis { basis, .. }) => basis,
        _ => unreachable!(),
    }
}

#[test]
fn an_identifier_gained_by_an_update_brings_its_kept_agreements_and_forget_keeps_them() {
    let (_dir, mut machine) = machine();
    let (login, email, forgotten) =
        (entry(IndexKind::Login, 1), entry(IndexKind::Email, 2), entry(IndexKind::Email, 3));
    let a = Uuid::new_v4();
    apply(&mut machine, &[basis("news"), create(a, vec![login.clone()])]);
    let own = consent(crate::store::ConsentChange::PutAgreement {
        target: Target::Token(a),
        agreement: agreement("news", "yes", 20),
    });
    apply(&mut machine, &[own, put_pending(&email, agreement("news", "no", 15), 1)]);
    apply(&mut machine, &[put_pending(&email, agreement("news", "yes", 10), 1)]);
    let update = command(Change::UpdateSubject {
        subject: a,
        expected_version: 1,
        profile: vec![3],
        index: vec![login.clone(), email.clone()],
    });
    apply(&mut machine, &[update]);
    let receipts = apply(&mut machine, &[read_pending(&email, None)]);
    assert_eq!(statuses(&receipts[0].outcome), pairs(&[("news", "yes")]), "the subject's own was newer");
    assert_eq!(machine.store().pending_identity(&email).unwrap(), None);

    // Forget-me of an identifier with kept agreements drops its sealed identifier only.
    apply(&mut machine, &[put_pending(&forgotten, agreement("news", "yes", 30), 4)]);
    let forget = |entry: &[u8]| {
        let mut command = command(Change::ForgetSubject {
            target: Target::Index(entry.to_vec()),
            condition: ForgetCondition::Always,
        });
        command.audit.operation = Operation::UserForget;
        command
    };
    let nobody = entry(IndexKind::Phone, 9);
    let receipts = apply(&mut machine, &[forget(&forgotten), forget(&forgotten), forget(&nobody)]);
    assert_eq!(receipts[0].outcome, Ok(Applied::Done));
    assert_eq!(receipts[1].outcome, Ok(Applied::Done), "forgetting twice is idempotent");
    assert_eq!(receipts[2].outcome, Err(Rejection::SubjectNotFound));
    let store = machine.store();
    assert_eq!(store.pending_identity(&forgotten).unwrap(), None);
    assert!(store.erasures_after(0).unwrap().0 > 0, "an erasure, to be compacted out of the log");
    let receipts = apply(&mut machine, &[read_pending(&forgotten, None)]);
    assert_eq!(statuses(&receipts[0].outcome), pairs(&[("news", "yes")]), "the evidence stays");
}
