//! Databunker's own published Node.js clients (`@databunker/store`,
//! `@databunker/session-store` under express-session) run unchanged against a real vaultd:
//! one demo node, and every node of a 3-node cluster. The calls and what they must answer
//! are in `databunker-clients/clients.js`; `hack/databunker-clients.sh` installs the
//! packages.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;
use support::cluster::TestCluster;
use support::{Client, Vault, ROOT_TOKEN};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/databunker-clients")
}

/// Installs the packages once per test binary (the script does nothing when they are there).
fn install_clients() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/databunker-clients.sh");
        let output = Command::new("bash").arg(script).output().unwrap();
        assert!(
            output.status.success(),
            "hack/databunker-clients.sh failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// The legal basis the sign-up page of `clients.js` lists and accepts.
fn create_signup_basis(client: &Client) {
    let basis = json!({"module": "signup-page", "basistype": "consent", "shortdesc": "Privacy policy"});
    client.post("/v1/lbasis/privacy-accept", basis).assert_ok();
}

/// Runs `clients.js` against `url`; panics with its output unless every call behaved.
fn run_clients(url: &str, token: &str) {
    install_clients();
    let output = Command::new("node")
        .arg("clients.js")
        .current_dir(clients_dir())
        .env("VAULT_URL", url)
        .env("VAULT_TOKEN", token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Databunker clients failed against {url}:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("@databunker/store: ok"), "{stdout}");
    assert!(stdout.contains("@databunker/session-store: ok"), "{stdout}");
}

#[test]
fn the_published_clients_work_unchanged_against_a_demo_vault() {
    let vault = Vault::demo();
    create_signup_basis(&vault.demo_client());
    run_clients(&vault.url, "DEMO");
}

#[test]
fn the_published_clients_work_unchanged_against_every_node_of_a_cluster() {
    let cluster = TestCluster::start(3, &[]);
    create_signup_basis(&cluster.client(cluster.leader()));
    for slot in 0..3 {
        run_clients(&cluster.slots[slot].url(), ROOT_TOKEN);
    }
}
