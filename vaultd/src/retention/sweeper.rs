//! Forgets subjects whose expiration has ended and deletes sessions and shared records
//! that have ended.
//! Every node runs the sweeper; only the leader acts, so each is proposed once per sweep,
//! and the change is conditional (`ForgetCondition::ExpirationDue`, `only_if_ended`): a
//! subject that retained its data, or a session replaced with a new end, after the sweep
//! read it is left alone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use crate::audit::{now_ms, AuditDraft, Operation};
use crate::cluster::Cluster;
use crate::store::{Change, Command, ForgetCondition, Target};

/// Subjects forgotten per sweep at most; the rest wait for the next sweep.
pub const PER_SWEEP: usize = 10_000;
/// Forgets in flight at once.
const IN_FLIGHT: usize = 256;

pub async fn run(cluster: Arc<Cluster>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !cluster.is_leader() {
            continue;
        }
        match sweep(&cluster).await {
            Ok([0, 0, 0]) => {}
            Ok([forgotten, sessions, shares]) => {
                tracing::info!(forgotten, sessions, shares, "expired subjects, sessions and shared records removed")
            }
            Err(error) => tracing::warn!(%error, "expiration sweep failed; retrying at the next one"),
        }
    }
}

/// Proposes the removal of every subject, session and shared record due now; returns how
/// many of each were removed.
async fn sweep(cluster: &Cluster) -> Result<[usize; 3], String> {
    let now = now_ms();
    let subjects = cluster.store().due_expirations(now, PER_SWEEP).map_err(|e| e.to_string())?;
    let sessions = cluster.store().ended_sessions(now, PER_SWEEP).map_err(|e| e.to_string())?;
    let forgets = subjects.into_iter().map(|subject| {
        let change =
            Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::ExpirationDue };
        (system(now, Operation::ExpirationDelete, Some(subject), "expiration ended"), change)
    });
    let deletions = sessions.into_iter().map(|session| {
        let change = Change::DeleteSession { session, only_if_ended: true, owner: None };
        (system(now, Operation::SessionExpire, None, "session ended"), change)
    });
    let shares = cluster.store().ended_shares(now, PER_SWEEP).map_err(|e| e.to_string())?;
    let unshares = shares.into_iter().map(|hash| {
        (system(now, Operation::ShareExpire, None, "shared record ended"), Change::DeleteEndedShare { hash })
    });
    Ok([submit_all(cluster, forgets).await, submit_all(cluster, deletions).await, submit_all(cluster, unshares).await])
}

/// Submits the commands `IN_FLIGHT` at a time; returns how many were applied.
async fn submit_all(cluster: &Cluster, changes: impl Iterator<Item = (AuditDraft, Change)>) -> usize {
    stream::iter(changes)
        .map(|(audit, change)| cluster.submit(Command { audit, change }))
        .buffer_unordered(IN_FLIGHT)
        .filter(|receipt| std::future::ready(matches!(receipt, Ok(r) if r.outcome.is_ok())))
        .count()
        .await
}

fn system(now: u64, operation: Operation, subject: Option<Uuid>, purpose: &str) -> AuditDraft {
    AuditDraft {
        time: now,
        actor: "system".into(),
        operation,
        subject,
        app: None,
        mode: None,
        purpose: Some(purpose.into()),
    }
}
