//! The chart's cluster-wide install (`clusterWide=true`): a ClusterRole and every namespace
//! watched. A test binary of its own, since such an operator manages every vault there is.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use strongroom_operator::crd::PiiVault;
use strongroom_system_tests::operator::Deployed;
use strongroom_system_tests::resources::*;
use strongroom_system_tests::wait::{check, until};
use strongroom_system_tests::Env;

#[tokio::test]
async fn with_a_cluster_role_the_operator_runs_vaults_in_any_namespace() {
    let Some(env) = Env::get("with_a_cluster_role_the_operator_runs_vaults_in_any_namespace") else { return };
    let deployed = Deployed::cluster_wide(env, "cluster").await;
    let client = &deployed.client;
    assert!(deployed.install.watch_namespaces.is_empty());
    let roles = env.kubectl(&["get", "clusterrolebindings", "-o", "name"], None).expect("kubectl");
    assert!(roles.contains("clusterrolebinding.rbac.authorization.k8s.io/strongroom-operator"), "{roles}");
    until("the operator to hold the Lease", || async {
        let holder = lease_holder(client, &deployed.install.namespace).await?;
        check(holder == deployed.operator.identity, || format!("held by {holder}"))
    })
    .await;

    // Two namespaces the install knew nothing about.
    for prefix in ["tenant-a", "tenant-b"] {
        let namespace = env.namespace(client, prefix).await;
        apply_example(env, &namespace, "piivault-softhsm.yaml");
        let vaults: Api<PiiVault> = Api::namespaced(client.clone(), &namespace);
        let vault = vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
        let set: StatefulSet = get(client, &namespace, "vault").await;
        assert_child_of(&set.metadata, &vault, "StatefulSet vault");
        let secret: Secret = get(client, &namespace, "vault-softhsm").await;
        assert_child_of(&secret.metadata, &vault, "Secret vault-softhsm");
    }
}
