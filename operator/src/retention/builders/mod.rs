//! The desired state of a `RetentionPolicy`'s children, as pure functions of the policy
//! (and of its vault, whose image and client Service the Jobs use).
//!
//! Like the `PiiVault` builders: nothing here talks to the API server, the reconciler
//! applies what they return with server-side apply, and every child is owned by the policy
//! (so Kubernetes deletes it with the policy).

mod config_map;
mod cron_job;
mod secret;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{labels, PolicyNames};
use crate::controller_kit;
use crate::crd::RetentionPolicy;
use crate::Error;

pub use config_map::{config_map, policy_file};
pub use cron_job::{cron_job, POLICY_DIR, TOKEN_DIR};
pub use secret::token_secret;

/// Metadata of a child: its name, the policy's namespace and labels, and the policy as its
/// controlling owner.
fn child_meta(policy: &RetentionPolicy, name: String) -> Result<ObjectMeta, Error> {
    controller_kit::child_meta(policy, name, labels(&PolicyNames::of(policy)), "RetentionPolicy metadata.uid")
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Asserts shared by the builder tests.

    /// Asserts that an object carries the policy's labels and the policy as controlling owner.
    pub fn assert_owned_by_policy(meta: &kube::api::ObjectMeta) {
        let owners = meta.owner_references.as_ref().expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "RetentionPolicy");
        assert_eq!(owners[0].name, "drop-phone");
        assert_eq!(owners[0].uid, crate::retention::test_support::POLICY_UID);
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "drop-phone");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "strongroom-operator");
    }
}
