//! What every controller of this operator needs: act only while leading, back off per
//! object after failures — and, around that, the few things the `PiiVault` and
//! `RetentionPolicy` controllers would otherwise each write again.
//!
//! - [`Control`], held by each controller's `Context`: the [`LeaderGate`] checked before
//!   every write ([`Control::ensure_leader`]) and the consecutive failures per object
//!   (`namespace/name`, see [`key`]) behind the error backoff ([`Control::backoff`],
//!   [`Control::reset_backoff`], [`backoff_delay`]).
//! - [`api`]: the resources and children a controller watches, in one namespace or all.
//! - [`condition`]: a status condition whose transition time moves only when it flips.
//! - [`child_meta`]: the metadata of a child the resource owns (so Kubernetes deletes the
//!   child with it).
//! - [`apply_object`], [`write_status`], [`publish`]: a child applied, a status written
//!   (both server-side applies with the operator's field manager) and an Event recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use crate::leader_election::LeaderGate;
use crate::{Error, FIELD_MANAGER};

/// Error backoff: doubles from the first delay up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The leader gate and the per-object failure counts of one controller.
pub struct Control {
    /// Whether this replica still holds the leader Lease.
    leader: LeaderGate,
    /// Consecutive failures per object (`namespace/name`), for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

impl Control {
    /// Acts always (no leader election) and has seen no failures.
    pub fn new() -> Self {
        Self { leader: LeaderGate::always(), failures: Mutex::new(HashMap::new()) }
    }

    /// Acts only while `gate` holds (leader election).
    pub fn set_leader_gate(&mut self, gate: LeaderGate) {
        self.leader = gate;
    }

    /// Fails unless this replica may act right now.
    pub fn ensure_leader(&self) -> Result<(), Error> {
        if self.leader.holds() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    /// Forgets the failures of `key` (after a reconcile that succeeded).
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }
}

/// The delay before retry number `failures` (1-based): 5 s, 10 s, 20 s, ... at most 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_CAP)
}

/// The API of the `K`s a controller watches: those in `namespace`, or in all namespaces.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// `namespace/name` of a namespaced object: the key of its failure count and of its logs.
pub fn key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// The condition `type_` as of `now`, given the `previous` conditions of the same object.
/// Its transition time moves only when its status flips.
pub fn condition(
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|old| old.status == status)
        .map_or(Time(now), |old| old.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Metadata of a child of `owner`: its `name`, the owner's namespace, `labels`, and the
/// owner as its controlling owner. An owner without a uid (not yet stored by the API server)
/// fails as [`Error::MissingField`] with `uid_field`.
pub fn child_meta<K>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
    uid_field: &'static str,
) -> Result<ObjectMeta, Error>
where
    K: Resource<DynamicType = ()>,
{
    let owner_reference = owner.controller_owner_ref(&()).ok_or(Error::MissingField(uid_field))?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(owner.namespace().unwrap_or_default()),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference]),
        ..ObjectMeta::default()
    })
}

/// Server-side apply with the operator's field manager, taking over conflicting fields.
pub async fn apply_object<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().ok_or(Error::MissingField("child metadata.name"))?;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|error| Error::apply(&K::kind(&()), &name, &error))
}

/// Writes `status` as the status of `object` (a server-side apply to its status
/// subresource: fields the operator no longer sets are removed).
pub async fn write_status<K, S>(client: &Client, object: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Records an Event about `object`. Events are best effort: a failure to record one is
/// logged, not fatal.
pub async fn publish<K>(recorder: &Recorder, object: &K, type_: EventType, reason: &str, action: &str, note: String)
where
    K: Resource<DynamicType = ()>,
{
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        warn!(object = %key(object), %error, "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_delay(1), Duration::from_secs(5));
        assert_eq!(backoff_delay(2), Duration::from_secs(10));
        assert_eq!(backoff_delay(4), Duration::from_secs(40));
        assert_eq!(backoff_delay(7), Duration::from_secs(300));
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn failures_are_counted_per_object_until_reset() {
        let control = Control::new();
        assert_eq!(control.backoff("ns/a"), Duration::from_secs(5));
        assert_eq!(control.backoff("ns/a"), Duration::from_secs(10));
        assert_eq!(control.backoff("ns/b"), Duration::from_secs(5));
        control.reset_backoff("ns/a");
        assert_eq!(control.backoff("ns/a"), Duration::from_secs(5));
        assert_eq!(control.backoff("ns/b"), Duration::from_secs(10));
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_it_flips() {
        let then: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let previous = [condition(&[], Some(1), then, "Ready", true, "Fine", String::new())];
        let same = condition(&previous, Some(2), now, "Ready", true, "Fine", "still".into());
        assert_eq!((same.last_transition_time, same.observed_generation), (Time(then), Some(2)));
        assert_eq!(
            condition(&previous, Some(2), now, "Ready", false, "Bad", String::new()).last_transition_time,
            Time(now)
        );
        assert_eq!(
            condition(&previous, Some(2), now, "Degraded", true, "Bad", String::new()).last_transition_time,
            Time(now)
        );
    }
}
