//! Forgets subjects whose expiration has ended. Every node runs the sweeper; only the
//! leader acts, so a due subject is proposed once per sweep, and the forget is
//! conditional (`ForgetCondition::ExpirationDue`): a subject that retained its data or
//! whose expiration was cancelled after the sweep read it is left alone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use crate::audit::{now_ms, AuditDraft, Operation};
use crate::cluster::Cluster;
use crate::store::{Change, Command, ForgetCondition, Target};

/// Subjects forgotten per sweep at most; the rest wait for the next sweep.
const PER_SWEEP: usize = 10_000;
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
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "expired subjects forgotten"),
            Err(error) => tracing::warn!(%error, "expiration sweep failed; retrying at the next one"),
        }
    }
}

/// Proposes a forget for every subject due now; returns how many were forgotten.
async fn sweep(cluster: &Cluster) -> Result<usize, String> {
    let now = now_ms();
    let due = cluster.store().due_expirations(now, PER_SWEEP).map_err(|e| e.to_string())?;
    let forgotten = stream::iter(due)
        .map(|subject| cluster.submit(expire(subject, now)))
        .buffer_unordered(IN_FLIGHT)
        .filter(|receipt| std::future::ready(matches!(receipt, Ok(r) if r.outcome.is_ok())))
        .count()
        .await;
    Ok(forgotten)
}

fn expire(subject: Uuid, now: u64) -> Command {
    let audit = AuditDraft {
        time: now,
        actor: "system".into(),
        operation: Operation::ExpirationDelete,
        subject: Some(subject),
        app: None,
        mode: None,
        purpose: Some("expiration ended".into()),
    };
    Command {
        audit,
        change: Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::ExpirationDue },
    }
}
