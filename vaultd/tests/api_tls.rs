//! TLS on the API port, against real `vaultd serve` processes with certificates made in the
//! test (rcgen, through strongroom-testkit): HTTPS for clients that trust the CA and for
//! no one else, a certificate rotated on disk served without a restart, client
//! certificates for mutual TLS, the refusal of plain HTTP on a non-loopback address, a
//! cluster whose API speaks HTTPS, and `vaultd minimize` against an HTTPS vault.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use strongroom_testkit::tls::{ApiTls, Ca, Leaf};
use support::cluster::{poll, TestCluster};
use support::{minimize, profile, run_to_exit, serve_command, serve_scratch, Client, Vault, ROOT_TOKEN};

/// A vault serving its API with the certificate of `tls` (plus `extra` flags).
fn tls_vault(hsm: &support::SoftHsm, data_dir: &Path, tls: &ApiTls, extra: &[&str]) -> Vault {
    let mut flags: Vec<String> = tls.flags();
    flags.push("--hsm-create-key".into());
    flags.extend(extra.iter().map(|flag| flag.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Vault::hsm(hsm, data_dir, &flags)
}

/// The certificate the vault presents to a new connection (a fresh client: no pooled
/// connection is reused).
fn served_certificate(vault: &Vault, ca: &Ca) -> Vec<u8> {
    let client = Client::https(&vault.url, ROOT_TOKEN, &ca.pem(), None);
    let response = client.request("GET", "/v1/sys/cluster?local=true").send().unwrap();
    assert_eq!(response.status(), 200);
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS information");
    info.peer_certificate().expect("a server certificate").to_vec()
}

/// A transport error's whole chain, to see why a connection failed.
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

#[test]
fn a_tls_vault_serves_clients_that_trust_its_ca_and_refuses_plain_http() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let tls = ApiTls::create(scratch.path()).unwrap();
    let vault = tls_vault(&hsm, &data_dir, &tls, &[]);
    assert!(vault.url.starts_with("https://127.0.0.1:"), "{}", vault.url);

    let client = Client::https(&vault.url, ROOT_TOKEN, &tls.ca.pem(), None);
    let token = client.create_user(json!({"login": "over-tls", "email": "tls@example.com"}));
    assert_eq!(profile(&client, &token)["login"], "over-tls");
    client.get("/v1/user/email/tls@example.com").assert_ok();

    // Plain HTTP to the TLS port gets no answer, and nothing is written.
    let plain = Client::new(&vault.url.replacen("https://", "http://", 1), ROOT_TOKEN);
    let attempt = plain.try_send(plain.request("POST", "/v1/user").json(&json!({"login": "in-clear"})));
    assert!(attempt.is_err(), "plain HTTP was answered: {}", attempt.map(|r| r.body).unwrap());
    client.get("/v1/user/login/in-clear").assert_error(404);
}

#[test]
fn a_client_with_another_ca_is_refused() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let tls = ApiTls::create(scratch.path()).unwrap();
    let vault = tls_vault(&hsm, &data_dir, &tls, &[]);
    let stranger = Ca::new("another CA").unwrap();
    let client = Client::https(&vault.url, ROOT_TOKEN, &stranger.pem(), None);
    let error = client.try_send(client.request("GET", "/v1/sys/cluster?local=true")).err().expect("refused");
    assert!(causes(&error).contains("UnknownIssuer"), "{}", causes(&error));
}

#[test]
fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let tls = ApiTls::create(scratch.path()).unwrap();
    let vault = tls_vault(&hsm, &data_dir, &tls, &[]);
    let first = served_certificate(&vault, &tls.ca);
    assert_eq!(first, std::fs::read(&tls.cert_file).map(|pem| der_of(&pem)).unwrap());

    let rotated = tls.ca.issue_server("vaultd-rotated").unwrap();
    rotated.write(&tls.cert_file, &tls.key_file).unwrap();
    poll("the rotated certificate to be served", Duration::from_secs(20), || {
        (served_certificate(&vault, &tls.ca) == rotated.der).then_some(())
    });
    let client = Client::https(&vault.url, ROOT_TOKEN, &tls.ca.pem(), None);
    client.create_user(json!({"login": "after-rotation"}));

    // A pair that does not match (another certificate, the current key) is not taken up:
    // the rotated certificate stays in use, and the listener too.
    let mismatched = tls.ca.issue_server("vaultd-mismatched").unwrap();
    std::fs::write(&tls.cert_file, &mismatched.cert_pem).unwrap();
    poll("the mismatched pair to be refused", Duration::from_secs(20), || {
        assert_eq!(served_certificate(&vault, &tls.ca), rotated.der);
        vault.log().contains("changed TLS files do not load").then_some(())
    });
    client.get("/v1/user/login/after-rotation").assert_ok();
    assert!(vault.log().contains("reloaded the API's TLS certificate"), "{}", vault.log());
}

/// The DER bytes of the first certificate of a PEM file.
fn der_of(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

#[test]
fn with_a_client_ca_only_callers_with_its_certificate_and_a_token_get_in() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let tls = ApiTls::create(scratch.path()).unwrap();
    let callers = Ca::new("service callers").unwrap();
    let callers_file = scratch.path().join("callers-ca.pem");
    callers.write(&callers_file).unwrap();
    let flag = format!("--tls-client-ca={}", callers_file.display());
    let vault = tls_vault(&hsm, &data_dir, &tls, &[&flag]);
    let ca = tls.ca.pem();

    let service = callers.issue("billing-service", &[]).unwrap();
    let client = Client::https(&vault.url, ROOT_TOKEN, &ca, Some(&service));
    client.create_user(json!({"login": "mutual"}));
    // The certificate lets a caller connect; its token still decides what it may do.
    client.with_token(Some("not-a-token-0123456789")).get("/v1/user/login/mutual").assert_error(401);
    client.with_token(None).get("/v1/user/login/mutual").assert_error(401);

    let refused = |identity: Option<&Leaf>, what: &str| {
        let client = Client::https(&vault.url, ROOT_TOKEN, &ca, identity);
        let attempt = client.try_send(client.request("GET", "/v1/user/login/mutual"));
        assert!(attempt.is_err(), "{what} was answered: {}", attempt.map(|r| r.body).unwrap());
    };
    refused(None, "a caller without a certificate");
    let outsider = Ca::new("outsiders").unwrap().issue("intruder", &[]).unwrap();
    refused(Some(&outsider), "a caller with a certificate of another CA");
    // The server's own CA does not sign callers either.
    refused(Some(&tls.ca.issue("server-ca-client", &[]).unwrap()), "a caller signed by the server's CA");
}

#[test]
fn plain_http_on_a_non_loopback_address_needs_tls_disable() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let (status, stderr) = run_to_exit(serve_command(&hsm, &data_dir, &["--listen=0.0.0.0:0".into()]));
    assert!(!status.success());
    for named in ["0.0.0.0:0", "--tls-cert", "--tls-key", "--tls-disable"] {
        assert!(stderr.contains(named), "{named} not in: {stderr}");
    }
    assert!(!data_dir.exists(), "refused before the vault opened");

    let (status, stderr) = run_to_exit(serve_command(
        &hsm,
        &data_dir,
        &["--listen=0.0.0.0:0".into(), "--tls-disable".into(), "--tls-cert=/c.pem".into(), "--tls-key=/k.pem".into()],
    ));
    assert!(!status.success());
    assert!(stderr.contains("--tls-disable contradicts"), "{stderr}");

    let vault = Vault::hsm(&hsm, &data_dir, &["--listen=0.0.0.0:0", "--tls-disable", "--hsm-create-key"]);
    assert!(vault.url.starts_with("http://0.0.0.0:"), "{}", vault.url);
    let client = Client::new(&vault.url.replacen("0.0.0.0", "127.0.0.1", 1), ROOT_TOKEN);
    client.create_user(json!({"login": "plain-by-choice"}));
}

#[test]
fn the_demo_with_its_well_known_root_token_listens_on_loopback_only() {
    let data_dir = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0", "::", "192.0.2.7"] {
        let mut command = support::vaultd();
        command.args(["demo", "--port", "0", "--bind", bind, "--data-dir"]).arg(data_dir.path());
        let (status, stderr) = run_to_exit(command);
        assert!(!status.success(), "demo started on {bind}");
        assert!(stderr.contains("loopback address only"), "{stderr}");
    }
    let mut command = support::vaultd();
    command.args(["demo", "--port", "0", "--bind", "127.0.0.2", "--data-dir"]).arg(data_dir.path());
    let vault = Vault::spawn_command(command);
    assert!(vault.url.starts_with("http://127.0.0.2:"), "{}", vault.url);
}

#[test]
fn a_cluster_with_tls_on_the_api_takes_writes_through_every_node() {
    let cluster = TestCluster::start_with_api_tls(3, &[]);
    for slot in 0..3 {
        cluster.client(slot).create_user(json!({"login": format!("via-{slot}")}));
    }
    for slot in 0..3 {
        for written in 0..3 {
            poll("the write to reach every node", Duration::from_secs(15), || {
                let reply = cluster.client(slot).get(&format!("/v1/user/login/via-{written}"));
                (reply.status == 200).then_some(())
            });
        }
    }
    let status = cluster.client(0).get("/v1/sys/cluster").assert_ok().clone();
    let addresses: Vec<&str> =
        status["members"].as_array().unwrap().iter().map(|m| m["apiAddress"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 3);
    for (slot, address) in (0..3).zip(&addresses) {
        assert!(address.starts_with("https://127.0.0.1:"), "{address}");
        assert!(addresses.contains(&cluster.slots[slot].url().as_str()), "{addresses:?}");
    }
}

#[test]
fn vaultd_minimize_verifies_the_vaults_certificate() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let tls = ApiTls::create(scratch.path()).unwrap();
    let vault = tls_vault(&hsm, &data_dir, &tls, &[]);
    let client = Client::https(&vault.url, ROOT_TOKEN, &tls.ca.pem(), None);
    client.create_user(json!({"login": "kept"}));
    let token_file = data_dir.with_extension("root-token");
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "metadata: {name: trial}\nspec:\n  dryRun: true\n  rules:\n  - {name: all, match: {}, action: delete}\n",
    )
    .unwrap();
    let ca_flag = |path: &PathBuf| format!("--ca-file={}", path.display());

    let (code, report, stderr) = minimize(&vault.url, &token_file, &policy, &[&ca_flag(&tls.ca_file)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["matched"], 1, "{report}");

    let other = scratch.path().join("other-ca.pem");
    Ca::new("another CA").unwrap().write(&other).unwrap();
    for (extra, what) in [(vec![ca_flag(&other)], "another CA"), (vec![], "no CA")] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (code, report, stderr) = minimize(&vault.url, &token_file, &policy, &extra);
        assert_ne!(code, 0, "{what}: {report}");
        assert!(stderr.contains("cannot reach the vault"), "{what}: {stderr}");
        assert!(stderr.contains("UnknownIssuer"), "{what}: {stderr}");
    }
    client.get("/v1/user/login/kept").assert_ok();
}
