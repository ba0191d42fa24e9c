//! `spec.monitoring` in the reconcile: the PodMonitor or ServiceMonitor and the
//! PrometheusRule ([`super::builders::monitoring`]) applied while asked for, deleted once
//! they are not (the other monitor kind too, after a switch).
//!
//! Without the Prometheus Operator's API (`monitoring.coreos.com/v1` answers 404), the rest
//! of the reconcile goes on: a Warning Event `MonitoringUnavailable` says so, and the next
//! reconcile tries again.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use tracing::debug;

use super::builders::monitoring::{api_resource, kind_name, monitoring_name, PROMETHEUS_RULE};
use super::builders::{monitor, prometheus_rule};
use super::names::VaultNames;
use super::reconciler::Context;
use crate::controller_kit::{key, publish};
use crate::crd::piivault::MonitorKind;
use crate::crd::PiiVault;
use crate::{Error, FIELD_MANAGER};

/// The reason of the Warning Event when the monitoring API is not installed.
pub const MONITORING_UNAVAILABLE: &str = "MonitoringUnavailable";

/// What became of `spec.monitoring`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitoring {
    /// Applied what was asked for, deleted the rest.
    Converged,
    /// The cluster has no `monitoring.coreos.com/v1` API (or not the kind asked for).
    ApiMissing,
}

/// Applies the monitoring objects `spec.monitoring` asks for and deletes the others.
pub async fn converge<V>(ctx: &Context<V>, vault: &PiiVault) -> Result<Monitoring, Error> {
    let names = VaultNames::of(vault);
    let wanted = [monitor(vault)?, prometheus_rule(vault)?];
    let mut outcome = Monitoring::Converged;
    for kind in [kind_name(MonitorKind::PodMonitor), kind_name(MonitorKind::ServiceMonitor), PROMETHEUS_RULE] {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), names.namespace(), &api_resource(kind));
        let object = wanted.iter().flatten().find(|object| object.types.as_ref().is_some_and(|t| t.kind == kind));
        ctx.control.ensure_leader()?;
        let done = match object {
            Some(object) => apply(&api, kind, object).await?,
            None => delete_if_owned(&api, &monitoring_name(&names), vault).await?,
        };
        if !done {
            outcome = Monitoring::ApiMissing;
        }
    }
    if outcome == Monitoring::ApiMissing && vault.spec.monitoring.is_some() {
        let note = "spec.monitoring asks for Prometheus Operator objects, but the API server has no \
                    monitoring.coreos.com/v1 PodMonitor, ServiceMonitor or PrometheusRule; install the \
                    Prometheus Operator's CRDs"
            .to_string();
        debug!(vault = %key(vault), "{note}");
        publish(&ctx.recorder, vault, EventType::Warning, MONITORING_UNAVAILABLE, "Monitoring", note).await;
    }
    Ok(outcome)
}

/// Server-side applies `object`; `false` when its API does not exist (404).
async fn apply(api: &Api<DynamicObject>, kind: &str, object: &DynamicObject) -> Result<bool, Error> {
    let name = object.metadata.name.clone().ok_or(Error::MissingField("child metadata.name"))?;
    match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(false),
        Err(error) => Err(Error::apply(kind, &name, &error)),
    }
}

/// Deletes the object if there is one and this vault owns it (one a user made under that
/// name is left alone); `true` also when there is none, or no such API. A lookup the
/// operator may not make (403: RBAC without monitoring.coreos.com) counts as none, so that
/// vaults that never asked for monitoring do not depend on those rights.
async fn delete_if_owned(api: &Api<DynamicObject>, name: &str, vault: &PiiVault) -> Result<bool, Error> {
    // A missing API answers 404 to the lookup as well (a plain-text "404 page not found",
    // not a NotFound Status, which `get_opt` would take for no object): nothing to delete.
    let existing = match api.get(name).await {
        Ok(existing) => existing,
        Err(kube::Error::Api(response)) if response.code == 404 || response.code == 403 => return Ok(true),
        Err(error) => return Err(error.into()),
    };
    let uid = vault.metadata.uid.as_deref();
    let owned = existing.metadata.owner_references.iter().flatten().any(|owner| Some(owner.uid.as_str()) == uid);
    if !owned {
        return Ok(true);
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(true),
        Err(error) => Err(error.into()),
    }
}
