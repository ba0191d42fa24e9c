//! Applies the retention command: a policy run's report recorded, the oldest dropped
//! beyond [`MAX_RUNS_PER_POLICY`]. What a run changes goes through the subject and app
//! commands like any other change.

use super::{write, Outcome};
use crate::store::command::Applied;
use crate::store::keys;
use crate::store::staged::Staged;
use crate::store::StoreError;
use strongroom_admin_api::retention::RunReport;

/// Retention runs kept per policy; older ones are dropped as new ones are recorded.
pub const MAX_RUNS_PER_POLICY: usize = 100;

/// Records a run's report under its audit sequence number.
pub(super) fn record_run(staged: &mut Staged, report: &RunReport, audit_seq: u64) -> Result<Outcome, StoreError> {
    write(staged, keys::retention_run(&report.policy, audit_seq), report)?;
    let runs = staged.keys_with_prefix(&keys::retention_runs(&report.policy))?;
    for old in runs.iter().take(runs.len().saturating_sub(MAX_RUNS_PER_POLICY)) {
        staged.remove(old.clone())?;
    }
    Ok(Ok(Applied::Done))
}
