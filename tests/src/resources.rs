//! What the tests look at: the operator's resources, children, Events and Lease, read
//! with an admin client, and waited for.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use strongroom_operator::crd::PiiVault;
use strongroom_operator::FIELD_MANAGER;

use crate::operator::RELEASE;
use crate::wait::{check, until};
use crate::Env;

pub const VAULT_FINALIZER: &str = "strongroom.dev/piivault-cleanup";
pub const POLICY_FINALIZER: &str = "strongroom.dev/retention-cleanup";

/// The conditions of a vault none of whose pods answers (no kubelet runs here): waiting
/// for its first pod, nothing wrong.
pub const WAITING_FOR_POD: [(&str, &str); 4] = [
    ("Ready", "False/WaitingForPod"),
    ("Available", "False/NotInitialized"),
    ("Progressing", "True/WaitingForPod"),
    ("Degraded", "False/AsExpected"),
];

/// `kubectl apply -n namespace -f examples/file`, as the README tells users to.
pub fn apply_example(env: &Env, namespace: &str, file: &str) {
    let path = env.path("charts/strongroom-operator/examples").join(file);
    env.kubectl(&["apply", "-n", namespace, "-f", &path.to_string_lossy()], None)
        .unwrap_or_else(|error| panic!("cannot apply {file}: {error:#}"));
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// `type=status/reason` of every condition, for assertions and messages — but the SoftHSM
/// warning `InsecureKeyStorage`, which every example vault carries (its own test checks it).
pub fn summary(conditions: &[Condition]) -> BTreeMap<String, String> {
    conditions
        .iter()
        .filter(|c| c.type_ != INSECURE_KEY_STORAGE)
        .map(|c| (c.type_.clone(), format!("{}/{}", c.status, c.reason)))
        .collect()
}

/// The warning condition of a SoftHSM vault.
pub const INSECURE_KEY_STORAGE: &str = "InsecureKeyStorage";

pub fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(type_, value)| (type_.to_string(), value.to_string())).collect()
}

/// The vault once the operator has written a status for its current generation with
/// conditions as `wanted` (`type` → `status/reason`).
pub async fn vault_reported(vaults: &Api<PiiVault>, name: &str, wanted: &[(&str, &str)]) -> PiiVault {
    let wanted = expected(wanted);
    until(&format!("PiiVault {name} to report {wanted:?}"), || async {
        let vault = vaults.get(name).await.map_err(|error| error.to_string())?;
        let status = vault.status.clone().ok_or("no status yet")?;
        let seen = summary(&status.conditions);
        check(status.observed_generation == vault.metadata.generation && seen == wanted, || {
            format!("generation {:?}, status {status:?}", vault.metadata.generation)
        })?;
        Ok(vault)
    })
    .await
}

/// Asserts that `meta` is a child the operator applied for `owner`: the owner as its
/// controller, the operator's labels and field manager.
pub fn assert_child_of<K: Resource<DynamicType = ()>>(meta: &ObjectMeta, owner: &K, what: &str) {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{what}: owner references {owners:?}");
    let reference = &owners[0];
    assert_eq!(reference.kind, K::kind(&()), "{what}");
    assert_eq!(Some(&reference.name), owner.meta().name.as_ref(), "{what}");
    assert_eq!(Some(&reference.uid), owner.meta().uid.as_ref(), "{what}");
    assert_eq!(reference.controller, Some(true), "{what}");
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some(FIELD_MANAGER), "{what}");
    let managers: Vec<_> = meta.managed_fields.iter().flatten().filter_map(|entry| entry.manager.clone()).collect();
    assert!(managers.iter().any(|manager| manager == FIELD_MANAGER), "{what}: managed by {managers:?}");
}

pub async fn get<K>(client: &Client, namespace: &str, name: &str) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    until(&format!("{} {name}", K::kind(&())), || async {
        api.get_opt(name).await.map_err(|error| error.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await
}

/// The Events the operator recorded about `object`: `(type, reason)`.
pub async fn events_about(client: &Client, namespace: &str, object: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .map(|event| (event.type_.unwrap_or_default(), event.reason.unwrap_or_default()))
        .collect()
}

pub async fn lease_holder(client: &Client, namespace: &str) -> Result<String, String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = leases.get_opt(RELEASE).await.map_err(|error| error.to_string())?.ok_or("no Lease")?;
    lease.spec.and_then(|spec| spec.holder_identity).ok_or_else(|| "no holder".to_string())
}
