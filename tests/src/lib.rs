//! The set-up of the system tests (`tests/tests/*.rs`): a real Kubernetes API server and
//! etcd, the operator's CRDs and the Helm chart's RBAC applied to it, and the operator
//! binary run under the chart's ServiceAccount.
//!
//! Where the cluster comes from, in this order:
//! 1. `STRONGROOM_E2E_KUBECONFIG` names a kubeconfig: that cluster is used as it is (never
//!    `KUBECONFIG`, which on a workstation often names a cluster that matters). Every test
//!    works in namespaces of its own, so the cluster may be used again.
//! 2. `$KAPI_DIR/bin/kube-apiserver` exists (default `/tmp/kapi`, built by
//!    `../shared/tools/kube-apiserver/build.sh`): `start.sh` of those tools (found beside the
//!    repository, or in `KAPI_TOOLS`) starts a fresh one, once per test binary, and `stop.sh`
//!    stops it when the binary exits.
//! 3. Otherwise, as on CI, every test prints `SKIPPED: <why>` and passes.
//!
//! A test starts with `let Some(env) = Env::get("name") else { return };`.

pub mod operator;
pub mod resources;
pub mod vaultd;
pub mod wait;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

/// The field manager the tests apply with.
pub const TEST_MANAGER: &str = "strongroom-system-tests";

/// A cluster to test against, and the tools that talk to it.
#[derive(Debug)]
pub struct Env {
    /// An admin kubeconfig.
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    /// The repository's root.
    pub repo: PathBuf,
    /// Where the tests keep their files (operator logs, kubeconfigs).
    pub work_dir: PathBuf,
}

static ENV: OnceLock<Result<Option<Env>, String>> = OnceLock::new();
/// The `stop.sh` to run when the test binary exits, when this binary started the server.
static STOP: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

pub use strongroom_testkit::skipped;

impl Env {
    /// The cluster, started on first use. `None` (after printing `SKIPPED: test: why` on
    /// the real standard error, which the test harness does not capture) when there is
    /// none to test against; panics when one should be there but does not start.
    pub fn get(test: &str) -> Option<&'static Env> {
        match ENV.get_or_init(|| set_up().map_err(|error| format!("{error:#}"))) {
            Ok(Some(env)) => Some(env),
            Ok(None) => {
                skipped(test, &skip_reason());
                None
            }
            Err(error) => panic!("cannot set up the Kubernetes API server for {test}: {error}"),
        }
    }

    /// The cluster, as [`Env::get`], for a test that also runs a real vaultd: `None`
    /// (after printing why) when the vaultd binary or SoftHSM is missing too.
    pub fn with_vaultd(test: &str) -> Option<&'static Env> {
        let env = Self::get(test)?;
        match vaultd::unavailable() {
            Some(why) => {
                skipped(test, &why);
                None
            }
            None => Some(env),
        }
    }

    /// A client with the admin kubeconfig (one per test: a client belongs to the runtime
    /// it was made on).
    pub async fn admin(&self) -> Client {
        client_for(&self.kubeconfig).await.expect("admin client")
    }

    /// Runs kubectl with the admin kubeconfig; its standard output.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        run(Command::new(&self.kubectl).args(args).env("KUBECONFIG", &self.kubeconfig), stdin)
    }

    /// A path in the repository.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.repo.join(relative)
    }

    /// Creates a namespace of its own for a test: `e2e-<prefix>-<pid>-<n>`.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("e2e-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("cannot create namespace {name}: {error}"));
        name
    }

    /// Applies the CRDs as users do (`kubectl apply -f crds/`, here server-side) and waits
    /// until the API server serves them.
    pub async fn apply_crds(&self, client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut names = Vec::new();
        for file in [
            "piivaults.strongroom.dev.yaml",
            "retentionpolicies.strongroom.dev.yaml",
            "piivaultbackups.strongroom.dev.yaml",
        ] {
            let path = self.path("crds").join(file);
            let crd: CustomResourceDefinition = read_yaml(&path);
            let name = crd.metadata.name.clone().expect("CRD name");
            crds.patch(&name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&crd))
                .await
                .unwrap_or_else(|error| panic!("cannot apply {}: {error}", path.display()));
            names.push(name);
        }
        for name in names {
            let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
            tokio::time::timeout(wait::timeout(), established)
                .await
                .unwrap_or_else(|_| panic!("CRD {name} not established within {:?}", wait::timeout()))
                .unwrap_or_else(|error| panic!("watching CRD {name}: {error}"));
        }
    }
}

/// A kube client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Reads a YAML file (one document) of the repository into `T`.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("cannot parse {}: {error}", path.display()))
}

/// Runs a command to completion; its standard output, or an error with its standard error.
pub fn run(command: &mut Command, stdin: Option<&str>) -> anyhow::Result<String> {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().with_context(|| format!("cannot run {command:?}"))?;
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn kapi_dir() -> PathBuf {
    std::env::var_os("KAPI_DIR").map_or_else(|| PathBuf::from("/tmp/kapi"), PathBuf::from)
}

/// The kube-apiserver tools (`start.sh`, `stop.sh`): `KAPI_TOOLS`, or
/// `../shared/tools/kube-apiserver` beside the repository.
fn kapi_tools() -> PathBuf {
    std::env::var_os("KAPI_TOOLS").map_or_else(|| repo().join("../shared/tools/kube-apiserver"), PathBuf::from)
}

fn explicit_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("STRONGROOM_E2E_KUBECONFIG").filter(|value| !value.is_empty()).map(PathBuf::from)
}

fn skip_reason() -> String {
    let apiserver = kapi_dir().join("bin/kube-apiserver");
    if !apiserver.exists() {
        return format!(
            "no kube-apiserver at {} (../shared/tools/kube-apiserver/build.sh builds one) and no \
             STRONGROOM_E2E_KUBECONFIG",
            apiserver.display()
        );
    }
    format!(
        "{} is absent (set KAPI_TOOLS to the directory of start.sh and stop.sh)",
        kapi_tools().join("start.sh").display()
    )
}

/// `Ok(None)`: nothing to test against (skip).
fn set_up() -> anyhow::Result<Option<Env>> {
    let repo = repo();
    // One directory per test binary, emptied first: logs, kubeconfigs (with tokens), vaultd
    // data of the last run only.
    let binary = std::env::current_exe()?;
    let stem = binary.file_stem().and_then(|stem| stem.to_str()).unwrap_or("tests");
    let work_dir = repo.join("target/system-tests").join(stem.rsplit_once('-').map_or(stem, |(name, _)| name));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir)?;
    let bin = kapi_dir().join("bin");
    let tool = |name: &str| -> PathBuf {
        let beside = bin.join(name);
        if beside.exists() {
            beside
        } else {
            PathBuf::from(name)
        }
    };
    let kubeconfig = match explicit_kubeconfig() {
        Some(kubeconfig) => kubeconfig,
        None => {
            let tools = kapi_tools();
            if !bin.join("kube-apiserver").exists() || !tools.join("start.sh").exists() {
                return Ok(None);
            }
            let started = std::time::Instant::now();
            let mut start = Command::new(tools.join("start.sh"));
            start.env("KAPI_DIR", kapi_dir());
            // start.sh waits 60 s for /readyz; on a machine busy with builds, etcd's fsyncs
            // can take longer than that.
            if std::env::var_os("KAPI_READY_TIMEOUT").is_none() {
                start.env("KAPI_READY_TIMEOUT", "180");
            }
            let out = run(&mut start, None).context(format!(
                "start.sh failed (is another API server using port 6443? stop it with stop.sh; logs in {})",
                kapi_dir().display()
            ))?;
            *STOP.lock().unwrap() = Some((tools.join("stop.sh"), kapi_dir()));
            // SAFETY: registers a plain function, called once at process exit.
            unsafe { libc::atexit(stop_at_exit) };
            let _ = writeln!(
                std::io::stderr(),
                "system tests: started a kube-apiserver in {:.1}s: {}",
                started.elapsed().as_secs_f64(),
                out.trim()
            );
            kapi_dir().join("kubeconfig")
        }
    };
    let helm = if bin.join("helm").exists() {
        bin.join("helm")
    } else {
        PathBuf::from(run(&mut Command::new(repo.join("hack/ensure-helm.sh")), None)?.trim())
    };
    Ok(Some(Env { kubeconfig, kubectl: tool("kubectl"), helm, repo, work_dir }))
}

extern "C" fn stop_at_exit() {
    if let Some((stop, dir)) = STOP.lock().ok().and_then(|mut stop| stop.take()) {
        let _ = Command::new(stop).env("KAPI_DIR", dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
