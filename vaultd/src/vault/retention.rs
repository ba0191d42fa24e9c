//! Retention runs (`POST /v1/sys/retention/run`): applies a policy's rules, one after
//! the other, to the subjects they select, and records the run.
//!
//! A run decides on what it reads and changes through the log like any other writer, so
//! every change is replicated and audited (one event per subject, naming the policy and
//! rule as the purpose). Each change is conditional on what the decision was based on —
//! the subject's record version, the app record's version, the absence of an expiration —
//! so a subject that changed in between is skipped, not changed wrongly, and a rerun
//! (or a run repeated after a leader change cut it short) changes nothing twice.

use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use strongroom_admin_api::retention::{
    parse_duration, valid_policy_name, Action, PolicySpec, Rule, RuleReport, RunReport, RunRequest,
};
use uuid::Uuid;

use super::*;
use crate::metrics::instruments::{ChangeLabels, RunOutcome};
use crate::retention::rules::{edit_profile, Selector};

/// Changes a run keeps in flight: they share log entries with other requests' commands
/// and never take more than this many places in the proposer's queue.
const IN_FLIGHT: usize = 256;

/// What a rule made of one subject.
enum Outcome {
    /// The subject no longer qualifies (it changed since the scan).
    NotMatched,
    /// Qualifies, but there is nothing left to change.
    Unchanged,
    /// Changed (or, in a dry run, would have been); the log index that carried it.
    Changed(u64),
    /// Changed concurrently between decision and change, or edited past
    /// `--max-record-bytes` (a pseudonym is longer than the value it replaces): left as it
    /// is, counted, and the run goes on.
    Skipped(u64),
}

impl Vault {
    pub async fn run_retention(&self, caller: &Caller, request: RunRequest) -> VaultResult<RunReport> {
        let RunRequest { policy, spec } = request;
        if !valid_policy_name(&policy) {
            return Err(VaultError::bad_request(
                "policy must be 1-253 characters of [a-z0-9-./], e.g. shop/drop-phone",
            ));
        }
        spec.validate().map_err(VaultError::bad_request)?;
        if let Some(app) = spec.rules.iter().filter_map(|r| r.selector.app.as_deref()).find(|a| !valid_app_name(a)) {
            return Err(VaultError::bad_request(format!("match.app {app:?} is not a valid app name")));
        }
        // A valid request is a run: how it ends is counted (a caller's mistake is not).
        let result = self.run_valid_retention(caller, policy.clone(), spec).await;
        let instruments = crate::metrics::instruments();
        let outcome = if result.is_ok() { RunOutcome::succeeded } else { RunOutcome::failed };
        instruments.retention_run(&policy, outcome);
        if let Some(report) = result.as_ref().ok().filter(|report| !report.dry_run) {
            for rule in &report.rules {
                let labels = ChangeLabels { policy: instruments.policy_label(&policy), action: rule.action.as_str() };
                instruments.retention_changes.get_or_create(&labels).inc_by(rule.changed);
            }
        }
        result
    }

    async fn run_valid_retention(&self, caller: &Caller, policy: String, spec: PolicySpec) -> VaultResult<RunReport> {
        // Decide on state that includes every write acknowledged before the run began.
        self.catch_up().await?;
        let started_at = now_ms();
        let mut rules = Vec::with_capacity(spec.rules.len());
        for rule in &spec.rules {
            rules.push(self.run_rule(caller, &policy, rule, started_at, spec.dry_run).await?);
        }
        let mut report = RunReport {
            policy: policy.clone(),
            dry_run: spec.dry_run,
            started_at,
            finished_at: now_ms(),
            matched: rules.iter().map(|r| r.matched).sum(),
            changed: rules.iter().map(|r| r.changed).sum(),
            rules,
            audit_event_id: String::new(),
        };
        let mut audit = draft(caller, Operation::RetentionRun, None, None, None);
        audit.purpose = Some(format!("retention {policy}"));
        let receipt = self.commit(audit, Change::RecordRetentionRun { report: report.clone() }).await?;
        receipt.outcome.clone().map_err(rejected)?;
        report.audit_event_id = self.audit_event_id(&receipt).await?;
        tracing::info!(
            policy,
            dry_run = report.dry_run,
            matched = report.matched,
            changed = report.changed,
            "retention run finished"
        );
        Ok(report)
    }

    /// Past runs, newest first: of one policy, or of all.
    pub async fn retention_runs(&self, policy: Option<&str>, limit: usize) -> VaultResult<Vec<RunReport>> {
        self.catch_up().await?;
        let mut runs = Vec::new();
        for (seq, mut report) in self.store.retention_runs(policy, limit)? {
            report.audit_event_id = self.store.audit_event_at(seq)?.map(|e| e.id.to_string()).unwrap_or_default();
            runs.push(report);
        }
        Ok(runs)
    }

    /// The id of the audit event a committed command wrote.
    async fn audit_event_id(&self, receipt: &Receipt) -> VaultResult<String> {
        self.cluster.wait_applied(receipt.log_index).await?;
        let event = self.store.audit_event_at(receipt.audit_seq)?.ok_or(VaultError::Storage(StoreError::Corrupt))?;
        Ok(event.id.to_string())
    }

    /// Applies one rule to every subject it selects, `IN_FLIGHT` at a time, and waits
    /// until this node has applied the rule's changes (so the next rule sees them).
    async fn run_rule(
        &self,
        caller: &Caller,
        policy: &str,
        rule: &Rule,
        now: u64,
        dry_run: bool,
    ) -> VaultResult<RuleReport> {
        let selector = Selector::new(rule, now).ok_or_else(|| VaultError::bad_request("malformed olderThan"))?;
        // First the subjects whose metadata qualifies (ids only: the decision re-reads each).
        let mut candidates = Vec::new();
        for item in self.store.subject_records() {
            let (subject, record) = item?;
            if matches!(record.state, SubjectState::Active(_)) && self.selects(&selector, &subject, &record)? {
                candidates.push(subject);
            }
        }
        let purpose = format!("retention {policy} rule {}", rule.name);
        let mut report =
            RuleReport { name: rule.name.clone(), action: rule.action, matched: 0, changed: 0, skipped: 0 };
        let mut last_index = 0;
        let mut outcomes = stream::iter(candidates)
            .map(|subject| self.apply_to(caller, &selector, &purpose, subject, now, dry_run))
            .buffer_unordered(IN_FLIGHT);
        while let Some(outcome) = outcomes.next().await {
            let outcome = match outcome {
                Err(VaultError::RecordTooLarge { .. }) => Outcome::Skipped(0),
                other => other?,
            };
            match outcome {
                Outcome::NotMatched => continue,
                Outcome::Unchanged => {}
                Outcome::Changed(index) => {
                    report.changed += 1;
                    last_index = last_index.max(index);
                }
                Outcome::Skipped(index) => {
                    report.skipped += 1;
                    last_index = last_index.max(index);
                }
            }
            report.matched += 1;
        }
        if last_index > 0 {
            self.cluster.wait_applied(last_index).await?;
        }
        Ok(report)
    }

    fn selects(&self, selector: &Selector<'_>, subject: &Uuid, record: &SubjectRecord) -> VaultResult<bool> {
        let app = match selector.app() {
            Some(app) => self.store.app(subject, app)?,
            None => None,
        };
        Ok(selector.selects(record, app.as_ref()))
    }

    /// Decides about one subject on its current record and submits the change.
    async fn apply_to(
        &self,
        caller: &Caller,
        selector: &Selector<'_>,
        purpose: &str,
        subject: Uuid,
        now: u64,
        dry_run: bool,
    ) -> VaultResult<Outcome> {
        let Some(record) = self.store.subject(&subject)? else { return Ok(Outcome::NotMatched) };
        let SubjectState::Active(active) = &record.state else { return Ok(Outcome::NotMatched) };
        if !self.selects(selector, &subject, &record)? {
            return Ok(Outcome::NotMatched);
        }
        let rule = selector.rule;
        let mut profile = match selector.needs_profile() {
            true => match self.open_profile(&subject, active).await? {
                Value::Object(map) => Some(map),
                _ => return Err(VaultError::Crypto(CryptoError::Malformed)),
            },
            false => None,
        };
        if profile.as_ref().is_some_and(|p| !selector.has_fields(p)) {
            return Ok(Outcome::NotMatched);
        }
        let (operation, change) = match rule.action {
            Action::Delete => (
                Operation::RetentionDelete,
                Change::ForgetSubject {
                    target: Target::Token(subject),
                    condition: ForgetCondition::Version(record.version),
                },
            ),
            Action::DropFields | Action::Pseudonymize => {
                let Some(profile) = profile.as_mut() else { return Ok(Outcome::NotMatched) };
                let index = self.index().await?;
                if !edit_profile(rule, profile, |field, value| index.pseudonym(field, value)) {
                    return Ok(Outcome::Unchanged);
                }
                if dry_run {
                    return Ok(Outcome::Changed(0));
                }
                let fields = rule.fields.clone();
                let (operation, minimised) = match rule.action {
                    Action::DropFields => (Operation::RetentionDropFields, Erasure::DropFields { fields }),
                    _ => (Operation::RetentionPseudonymize, Erasure::Pseudonymize { fields }),
                };
                (operation, self.profile_change(subject, record.version, active, profile, Some(minimised)).await?)
            }
            Action::DeleteApp => {
                let Some(app) = selector.app() else { return Ok(Outcome::NotMatched) };
                let Some(app_record) = self.store.app(&subject, app)? else { return Ok(Outcome::NotMatched) };
                let change = Change::DeleteApp {
                    target: Target::Token(subject),
                    app: app.to_string(),
                    expected_version: Some(app_record.version),
                };
                (Operation::RetentionDeleteApp, change)
            }
            Action::StartExpiration => {
                if record.expiration.is_some() {
                    // Under way, retained, or cancelled and started again by an admin:
                    // the subject's choice stands.
                    return Ok(Outcome::Unchanged);
                }
                if dry_run {
                    return Ok(Outcome::Changed(0));
                }
                let seconds = rule.expiration.as_deref().and_then(parse_duration).unwrap_or(0);
                let ends_at = now.saturating_add(seconds.saturating_mul(1000));
                let (_, expiration) = self.new_expiration(&subject, active, now, ends_at).await?;
                let change = Change::StartExpiration {
                    subject,
                    expected_version: Some(record.version),
                    replace: false,
                    expiration,
                };
                (Operation::RetentionStartExpiration, change)
            }
        };
        // A dry run stops at the decision; the costly sealing above was skipped already.
        if dry_run {
            return Ok(Outcome::Changed(0));
        }
        let mut audit = draft(caller, operation, Some(subject), selector.app(), None);
        audit.purpose = Some(purpose.to_string());
        let receipt = self.commit_conditional(audit, change).await?;
        Ok(match receipt.outcome {
            Ok(_) => Outcome::Changed(receipt.log_index),
            Err(_) => Outcome::Skipped(receipt.log_index),
        })
    }

    /// Commits a conditional change, proposing it again when the cluster could not
    /// confirm it (a leader change, a slow quorum): a long run should not end at the first
    /// hiccup. Safe because the change is conditional on the version it was decided on —
    /// if an earlier attempt was applied after all, the repeat is refused as stale (and
    /// reported as skipped; the next run finds nothing left to change there).
    async fn commit_conditional(&self, audit: AuditDraft, change: Change) -> VaultResult<Receipt> {
        let mut attempt = 0;
        loop {
            match self.commit(audit.clone(), change.clone()).await {
                Err(VaultError::Cluster(refusal)) if refusal.is_transient() && attempt < COMMIT_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(%refusal, attempt, "retention change not confirmed; proposing it again");
                    // Waits for a leader (up to the proposal timeout); if none turns up,
                    // the next attempt reports why.
                    let _ = self.catch_up().await;
                }
                other => return other,
            }
        }
    }
}

/// How often a retention change is proposed again after the cluster failed to confirm it.
const COMMIT_ATTEMPTS: u32 = 5;
