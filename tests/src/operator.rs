//! The operator as the Helm chart installs it, minus the Pod: the chart's ServiceAccount and
//! RBAC rendered with `helm template` and applied, the environment of the chart's Deployment,
//! and the operator binary (this package's `operator-under-test`, built from
//! `operator/src/main.rs`) run with a kubeconfig carrying nothing but a token of that
//! ServiceAccount — so whatever the chart forgot to grant fails here as it would in a cluster.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::config::Kubeconfig;
use kube::Client;

use crate::{run, Env};

/// The Helm release (and so the ServiceAccount and Lease) name the tests install.
pub const RELEASE: &str = "strongroom-operator";

/// The chart rendered for one operator namespace and the namespaces it watches.
#[derive(Debug)]
pub struct Install {
    /// The release namespace: the operator's own (its ServiceAccount and Lease).
    pub namespace: String,
    pub watch_namespaces: Vec<String>,
    /// The chart's Deployment, rendered with the same values (for its environment).
    deployment: Deployment,
}

impl Install {
    /// `helm template` of the chart's ServiceAccount and RBAC for `namespace`, watching it
    /// and `watch_namespaces` (a Role in each: the chart's default), applied with kubectl.
    pub fn apply(env: &Env, namespace: &str, watch_namespaces: &[&str]) -> Self {
        let set = match watch_namespaces.is_empty() {
            true => vec![],
            false => vec![format!("watchNamespaces={{{}}}", watch_namespaces.join(","))],
        };
        Self::render(env, namespace, watch_namespaces, &set)
    }

    /// [`Install::apply`] with `clusterWide=true`: a ClusterRole, every namespace watched.
    pub fn apply_cluster_wide(env: &Env, namespace: &str) -> Self {
        Self::render(env, namespace, &[], &["clusterWide=true".to_string()])
    }

    fn render(env: &Env, namespace: &str, watch_namespaces: &[&str], set: &[String]) -> Self {
        let template = |templates: &[&str]| {
            let chart = env.path("charts/strongroom-operator");
            let mut command = Command::new(&env.helm);
            command.args(["template", RELEASE]).arg(chart).args(["--namespace", namespace]);
            for value in set {
                command.args(["--set", value]);
            }
            for template in templates {
                command.args(["--show-only", &format!("templates/{template}")]);
            }
            run(&mut command, None).unwrap_or_else(|error| panic!("helm template failed: {error:#}"))
        };
        let rbac = template(&["serviceaccount.yaml", "rbac.yaml"]);
        env.kubectl(&["apply", "-f", "-"], Some(&rbac)).unwrap_or_else(|error| panic!("cannot apply RBAC: {error:#}"));
        let deployment: Deployment = serde_saphyr::from_str(&template(&["deployment.yaml"])).expect("deployment.yaml");
        Self {
            namespace: namespace.to_string(),
            watch_namespaces: watch_namespaces.iter().map(|ns| ns.to_string()).collect(),
            deployment,
        }
    }

    /// The ServiceAccount the chart's Deployment runs under.
    pub fn service_account(&self) -> String {
        let spec = self.deployment.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        spec.and_then(|spec| spec.service_account_name.clone()).expect("the Deployment names a ServiceAccount")
    }

    /// The operator container's environment as the chart sets it; the fields a Pod would
    /// fill in (`POD_NAME`, `POD_NAMESPACE`) from `identity` and the release namespace.
    fn environment(&self, identity: &str) -> Vec<(String, String)> {
        let spec = self.deployment.spec.as_ref().and_then(|spec| spec.template.spec.as_ref()).expect("pod spec");
        let container = spec.containers.iter().find(|c| c.name == "operator").expect("operator container");
        container
            .env
            .iter()
            .flatten()
            .map(|var| {
                let value = match (var.value.clone(), var.name.as_str()) {
                    (Some(value), _) => value,
                    (None, "POD_NAME") => identity.to_string(),
                    (None, "POD_NAMESPACE") => self.namespace.clone(),
                    (None, other) => panic!("the chart sets {other} from a source the tests do not know"),
                };
                (var.name.clone(), value)
            })
            .collect()
    }
}

/// A running operator process.
pub struct Operator {
    pub identity: String,
    /// Its kubeconfig: the ServiceAccount's token only.
    pub kubeconfig: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator as `identity` (its pod name) under a fresh token of the chart's
    /// ServiceAccount.
    pub fn start(env: &Env, install: &Install, identity: &str) -> Self {
        Self::start_with(env, install, identity, &[])
    }

    /// [`Operator::start`] with more environment (`HTTP_PROXY`, say).
    pub fn start_with(env: &Env, install: &Install, identity: &str, more: &[(String, String)]) -> Self {
        let account = install.service_account();
        let token = env
            .kubectl(&["create", "token", &account, "-n", &install.namespace, "--duration", "2h"], None)
            .unwrap_or_else(|error| panic!("cannot create a token for {account}: {error:#}"));
        let kubeconfig = env.work_dir.join(format!("{}-{identity}.kubeconfig", install.namespace));
        std::fs::write(&kubeconfig, token_kubeconfig(env, token.trim(), &install.namespace)).expect("kubeconfig");
        let log = env.work_dir.join(format!("{}-{identity}.log", install.namespace));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(binary());
        command.env_clear().envs(install.environment(identity));
        // The metrics port of a pod of its own: any free one here, as several run at once.
        command.env("STRONGROOM_LISTEN", "127.0.0.1:0").env("KUBECONFIG", &kubeconfig);
        command.env("RUST_LOG", "info,strongroom_operator=debug").envs(more.iter().cloned());
        command.stdin(Stdio::null()).stdout(log_file.try_clone().expect("log")).stderr(log_file);
        let child = command.spawn().expect("cannot start the operator");
        Self { identity: identity.to_string(), kubeconfig, child: Some(child), log }
    }

    /// Whether the operator's ServiceAccount may `verb` `resource` (`kind.group`, or
    /// `kind.group/subresource`) in `namespace` (all namespaces when `None`): `kubectl auth
    /// can-i` with its own kubeconfig.
    pub fn may(&self, env: &Env, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let mut command = Command::new(&env.kubectl);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(["auth", "can-i", verb]);
        match resource.split_once('/') {
            Some((resource, subresource)) => command.args([resource, "--subresource", subresource]),
            None => command.arg(resource),
        };
        match namespace {
            Some(namespace) => command.args(["-n", namespace]),
            None => command.arg("--all-namespaces"),
        };
        let output = command.output().expect("kubectl auth can-i");
        match String::from_utf8_lossy(&output.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => {
                panic!("kubectl auth can-i {verb} {resource}: {other} {}", String::from_utf8_lossy(&output.stderr))
            }
        }
    }

    /// What the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Asks it to stop (SIGTERM, as Kubernetes does) and waits until it has.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = crate::wait::until("the operator to exit after SIGTERM", || {
            let status = child.try_wait();
            async move {
                match status {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        status
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- operator {} log ({}), last lines:", self.identity, self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `operator-under-test`, which cargo builds before it runs the integration tests, beside
/// their directory (`target/<profile>/deps/..`).
fn binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    let binary = test.parent().and_then(|deps| deps.parent()).expect("target directory").join("operator-under-test");
    assert!(binary.exists(), "{} is missing: run the tests with cargo test", binary.display());
    binary
}

/// A kubeconfig for the admin kubeconfig's cluster that authenticates with `token` only.
fn token_kubeconfig(env: &Env, token: &str, namespace: &str) -> String {
    let admin = Kubeconfig::read_from(&env.kubeconfig).expect("admin kubeconfig");
    let context = admin
        .current_context
        .as_ref()
        .and_then(|current| admin.contexts.iter().find(|c| &c.name == current))
        .and_then(|named| named.context.clone())
        .expect("the admin kubeconfig has a current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|named| named.cluster.clone())
        .expect("the current context's cluster");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator", "namespace": namespace}}],
        "current-context": "operator",
    });
    serde_json::to_string_pretty(&config).expect("kubeconfig JSON")
}

/// A test's own operator: namespaces for the operator and for its vaults, the chart's RBAC
/// confined to the latter (`watchNamespaces`), the CRDs, and the operator running.
pub struct Deployed {
    pub client: Client,
    pub install: Install,
    /// The namespace whose PiiVaults and RetentionPolicies the operator manages.
    pub namespace: String,
    pub operator: Operator,
}

impl Deployed {
    pub async fn new(env: &Env, prefix: &str) -> Self {
        Self::deploy(env, prefix, true, &[]).await
    }

    /// [`Deployed::new`], the operator with more environment.
    pub async fn with_env(env: &Env, prefix: &str, more: &[(String, String)]) -> Self {
        Self::deploy(env, prefix, true, more).await
    }

    /// With `clusterWide=true`: a ClusterRole, every namespace watched. Only for a test
    /// binary of its own: it manages every test's vaults.
    pub async fn cluster_wide(env: &Env, prefix: &str) -> Self {
        Self::deploy(env, prefix, false, &[]).await
    }

    async fn deploy(env: &Env, prefix: &str, confined: bool, more: &[(String, String)]) -> Self {
        let client = env.admin().await;
        env.apply_crds(&client).await;
        let operator_namespace = env.namespace(&client, &format!("{prefix}-op")).await;
        let namespace = env.namespace(&client, prefix).await;
        let install = match confined {
            true => Install::apply(env, &operator_namespace, &[&namespace]),
            false => Install::apply_cluster_wide(env, &operator_namespace),
        };
        let operator = Operator::start_with(env, &install, &format!("{RELEASE}-0"), more);
        Self { client, install, namespace, operator }
    }
}
