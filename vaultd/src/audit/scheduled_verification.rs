//! Each node walks its whole audit chain at start and then on a schedule, so that a trail
//! edited on disk is noticed without anyone asking. The result is the node's
//! `vaultd_audit_verification_*` metrics (as for `GET /v1/sys/audit/verify`) and, when
//! the chain is broken or cannot be read, an error in the log. A walk reads the trail a
//! chunk at a time on a blocking thread; writes go on meanwhile.

use std::time::Duration;

use crate::store::Store;

pub async fn run(store: Store, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let walked = store.clone();
        let intact = match tokio::task::spawn_blocking(move || walked.verify_audit()).await {
            Ok(Ok(report)) if report.intact => {
                tracing::debug!(events = report.events, "audit chain verified");
                true
            }
            Ok(Ok(report)) => {
                let (broken_at, reason) = (report.broken_at.unwrap_or_default(), report.reason.unwrap_or("unknown"));
                tracing::error!(broken_at, reason, "the audit chain is broken");
                false
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the audit trail to verify it");
                false
            }
            Err(error) => {
                tracing::error!(%error, "the audit chain verification stopped");
                false
            }
        };
        crate::metrics::instruments().audit_verified(intact);
    }
}
