//! Key custody against a real SoftHSM token: the KEK is created non-extractable, records
//! are unreadable on disk, startup refuses a wrong PIN, a missing key or a foreign KEK,
//! and forget-me destroys the subject's DEK.

mod support;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde_json::json;
use support::{run_to_exit, serve_command, serve_scratch, SoftHsm, Vault};
use vaultd::store::{Store, SubjectState};

fn key_attributes(hsm: &SoftHsm, label: &str) -> Vec<Attribute> {
    // This test process has its own PKCS#11 context, separate from vaultd's.
    std::env::set_var("SOFTHSM2_CONF", &hsm.env["SOFTHSM2_CONF"]);
    let pkcs11 = Pkcs11::new(&hsm.env["VAULTD_HSM_MODULE"]).unwrap();
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|slot| pkcs11.get_token_info(*slot).unwrap().label().trim_end() == hsm.env["VAULTD_HSM_TOKEN_LABEL"])
        .expect("token by label");
    let session = pkcs11.open_ro_session(slot).unwrap();
    session.login(UserType::User, Some(&AuthPin::from(hsm.pin()))).unwrap();
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.as_bytes().to_vec())])
        .unwrap();
    assert_eq!(keys.len(), 1, "exactly one KEK labelled {label}");
    session
        .get_attributes(
            keys[0],
            &[AttributeType::Token, AttributeType::Sensitive, AttributeType::Extractable, AttributeType::ValueLen],
        )
        .unwrap()
}

#[test]
fn kek_is_created_in_the_token_sensitive_and_not_extractable() {
    let (hsm, _data, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    vault.client().get("/v1/status").assert_ok();
    drop(vault);

    let attributes = key_attributes(&hsm, "strongroom-kek-1");
    assert!(attributes.contains(&Attribute::Token(true)), "{attributes:?}");
    assert!(attributes.contains(&Attribute::Sensitive(true)), "{attributes:?}");
    assert!(attributes.contains(&Attribute::Extractable(false)), "{attributes:?}");
    assert!(attributes.contains(&Attribute::ValueLen(32.into())), "{attributes:?}");
}

#[test]
fn records_survive_restart_and_no_plaintext_reaches_disk_or_logs() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    let profile = json!({
        "first": "Zebulon", "last": "Quixley",
        "login": "zquixley", "email": "Zebulon.Quixley@Example.org", "phone": "07700 900461",
        "diagnosis": "hypertension-stage-two"
    });
    let token = client.create_user(profile.clone());
    client.post(&format!("/v1/userapp/token/{token}/shipping"), json!({"street": "Wobblington Lane 7"})).assert_ok();
    assert_eq!(client.get("/v1/user/email/zebulon.quixley@example.org").assert_ok()["data"], profile);
    assert_eq!(client.get("/v1/user/phone/+447700900461").assert_ok()["token"], token.as_str());
    let log = vault.kill();

    // Acknowledged writes were fsynced: after SIGKILL and restart, everything is there.
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    assert_eq!(client.get("/v1/user/login/zquixley").assert_ok()["data"], profile);
    let app = client.get(&format!("/v1/userapp/token/{token}/shipping"));
    assert_eq!(app.assert_ok()["data"]["street"], "Wobblington Lane 7");
    let log = log + &vault.kill();

    for secret in [
        "Zebulon",
        "Quixley",
        "zquixley",
        "zebulon.quixley@example.org",
        "Example.org",
        "900461",
        "+447700900461",
        "hypertension",
        "Wobblington",
    ] {
        if let Some(file) = support::occurs_in_files(&data_dir, secret) {
            panic!("plaintext {secret:?} found in {}", file.display());
        }
        assert!(!log.contains(secret), "plaintext {secret:?} found in the vault's log");
    }
}

#[test]
fn a_killed_vault_applies_its_log_again_before_it_serves() {
    // sled writes the state in the background: right after SIGKILL the Raft log holds
    // acknowledged writes that the state on disk does not.
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let root = vault.client();
    let created = root.post("/v1/sys/tokens", json!({"name": "reader", "scopes": ["users:read"]}));
    let created = created.assert_ok();
    let (id, secret) = (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string());
    root.with_token(Some(&secret)).get("/v1/user/login/nobody").assert_error(404);
    let tokens: Vec<String> = (0..50).map(|n| root.create_user(json!({"login": format!("u{n}")}))).collect();
    root.delete(&format!("/v1/sys/tokens/{id}")).assert_ok();
    root.delete("/v1/user/login/u0").assert_ok();
    vault.kill();

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let root = vault.client();
    // The first request after the start already sees the revocation.
    root.with_token(Some(&secret)).get("/v1/user/login/u1").assert_error(401);
    root.get("/v1/user/login/u0").assert_error(404);
    for (n, token) in tokens.iter().enumerate().skip(1) {
        assert_eq!(root.get(&format!("/v1/user/login/u{n}")).assert_ok()["token"], token.as_str());
    }
    assert_eq!(root.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);
}

/// Cuts the last `bytes` bytes off a stopped vault's audit trail: what a power loss
/// leaves when sled, written back in the background, reached the disk and the trail's
/// newest events did not.
fn lose_trail_tail(data_dir: &std::path::Path, bytes: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(data_dir.join("audit/events.log")).unwrap();
    let length = file.metadata().unwrap().len();
    file.set_len(length - bytes).unwrap();
}

/// The number of events in the chain, which must verify.
fn intact_events(client: &support::Client) -> u64 {
    let reply = client.get("/v1/sys/audit/verify");
    let verification = &reply.assert_ok()["verification"];
    assert_eq!(verification["intact"], true, "{verification}");
    verification["events"].as_u64().unwrap()
}

#[test]
fn a_trail_that_lost_writes_is_rebuilt_by_applying_the_log_again() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let root = vault.client();
    let tokens: Vec<String> = (0..20).map(|n| root.create_user(json!({"login": format!("u{n}")}))).collect();
    root.delete("/v1/user/login/u0").assert_ok();
    let events = intact_events(&root);
    vault.stop();
    assert!(!data_dir.join("snapshot.bin").exists(), "no snapshot yet: the whole log is applied again");
    lose_trail_tail(&data_dir, 1500);

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    assert!(vault.log().contains("restoring the last snapshot"), "{}", vault.log());
    let root = vault.client();
    assert_eq!(intact_events(&root), events, "every event is back");
    root.get("/v1/user/login/u0").assert_error(404);
    for (n, token) in tokens.iter().enumerate().skip(1) {
        assert_eq!(root.get(&format!("/v1/user/login/u{n}")).assert_ok()["token"], token.as_str());
    }
}

#[test]
fn a_trail_that_lost_writes_after_a_snapshot_is_rebuilt_from_it() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--snapshot-every", "40"]);
    let root = vault.client();
    let tokens: Vec<String> = (0..45).map(|n| root.create_user(json!({"login": format!("u{n}")}))).collect();
    support::cluster::poll("a snapshot", std::time::Duration::from_secs(20), || {
        data_dir.join("snapshot.bin").exists().then_some(())
    });
    // A few entries after the snapshot, far fewer than the next one needs: their events
    // are the ones lost.
    for n in 40..45 {
        root.get(&format!("/v1/user/login/u{n}")).assert_ok();
    }
    let events = intact_events(&root);
    vault.stop();
    lose_trail_tail(&data_dir, 700);

    let vault = Vault::hsm(&hsm, &data_dir, &["--snapshot-every", "40"]);
    assert!(vault.log().contains("restoring the last snapshot"), "{}", vault.log());
    let root = vault.client();
    assert_eq!(intact_events(&root), events);
    let listed = root.get(&format!("/v1/audit/list/{}", tokens[44]));
    assert_eq!(listed.assert_ok()["rows"].as_array().unwrap().len(), 2, "created and read: both events are back");
}

#[test]
fn wrong_pin_and_missing_key_refuse_to_start() {
    let (hsm, scratch, data_dir) = serve_scratch();

    let (status, stderr) = run_to_exit(serve_command(&hsm, &data_dir, &[]));
    assert!(!status.success());
    assert!(stderr.contains("not found on token") && stderr.contains("--hsm-create-key"), "{stderr}");

    let wrong_pin = scratch.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "not-the-pin").unwrap();
    let mut command = serve_command(&hsm, &data_dir, &["--hsm-create-key".into()]);
    command.env("VAULTD_HSM_PIN_FILE", &wrong_pin);
    let (status, stderr) = run_to_exit(command);
    assert!(!status.success());
    assert!(stderr.contains("PIN is incorrect"), "{stderr}");
    assert!(!stderr.contains("not-the-pin"), "the PIN must not be echoed");

    let mut command = serve_command(&hsm, &data_dir, &["--hsm-token-label=nonexistent".into()]);
    command.env_remove("VAULTD_HSM_TOKEN_LABEL");
    let (status, stderr) = run_to_exit(command);
    assert!(!status.success());
    assert!(stderr.contains("no PKCS#11 token labelled \"nonexistent\""), "{stderr}");
}

#[test]
fn a_data_dir_written_under_another_kek_refuses_to_start() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    vault.client().create_user(json!({"login": "a"}));
    vault.kill();

    let other_key = ["--hsm-create-key".to_string(), "--hsm-key-label=strongroom-kek-other".to_string()];
    let (status, stderr) = run_to_exit(serve_command(&hsm, &data_dir, &other_key));
    assert!(!status.success());
    assert!(
        stderr.contains("wrapped by KEK \"strongroom-kek-1\", but the configured KEK is \"strongroom-kek-other\""),
        "{stderr}"
    );
}

#[test]
fn forget_me_destroys_the_dek_and_leaves_a_tombstone() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    let token = client.create_user(json!({"login": "gone", "email": "gone@example.com", "name": "Gone Person"}));
    let kept = client.create_user(json!({"login": "kept"}));
    client.post("/v1/userapp/login/gone/crm", json!({"score": 7})).assert_ok();

    let reply = client.delete("/v1/user/email/gone@example.com");
    assert_eq!(reply.assert_ok()["result"], "done");

    // The token resolves to an empty record; the identifiers no longer resolve.
    let tombstone = client.get(&format!("/v1/user/token/{token}"));
    assert_eq!(tombstone.assert_ok()["data"], json!({}));
    client.get("/v1/user/login/gone").assert_error(404);
    client.get("/v1/user/email/gone@example.com").assert_error(404);
    client.get(&format!("/v1/userapp/token/{token}/crm")).assert_error(404);
    client.put(&format!("/v1/user/token/{token}"), json!({"name": "back"})).assert_error(404);
    // The identifiers are free again.
    client.create_user(json!({"login": "gone"}));
    vault.kill();
    // A killed node may not have written its state yet; restarting applies again from the
    // Raft log whatever sled did not keep, and a clean stop writes it out.
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    assert_eq!(vault.client().get(&format!("/v1/user/token/{token}")).assert_ok()["data"], json!({}));
    vault.stop();

    // On disk: a tombstone without DEK, profile, index or app records.
    let store = Store::open(&data_dir, vaultd::store::DEFAULT_CACHE_BYTES).unwrap();
    let subject = uuid::Uuid::parse_str(&token).unwrap();
    let record = store.subject(&subject).unwrap().unwrap();
    assert!(matches!(record.state, SubjectState::Forgotten { .. }), "{record:?}");
    assert!(store.app(&subject, "crm").unwrap().is_none());
    let other = store.subject(&uuid::Uuid::parse_str(&kept).unwrap()).unwrap().unwrap();
    assert!(matches!(other.state, SubjectState::Active(_)), "other subjects are untouched");
}

#[test]
fn serve_reads_its_settings_from_a_config_file() {
    let hsm = SoftHsm::new();
    let scratch = tempfile::tempdir().unwrap();
    let token_file = scratch.path().join("root-token");
    std::fs::write(&token_file, "config-file-root-token\n").unwrap();
    let config = scratch.path().join("vaultd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nroot_token_file = {:?}\ndefault_country = \"US\"\n\
             max_body_bytes = 2048\n\n[hsm]\nmodule = {:?}\ntoken_label = {:?}\npin_file = {:?}\nkey_label = \"kek-from-file\"\n",
            scratch.path().join("data"),
            token_file,
            hsm.env["VAULTD_HSM_MODULE"],
            hsm.env["VAULTD_HSM_TOKEN_LABEL"],
            hsm.env["VAULTD_HSM_PIN_FILE"],
        ),
    )
    .unwrap();
    let mut command = support::vaultd();
    command
        .args(["serve", "--hsm-create-key", "--config"])
        .arg(&config)
        .env("SOFTHSM2_CONF", &hsm.env["SOFTHSM2_CONF"]);
    let vault = Vault::spawn_command(command);
    let client = support::Client::new(&vault.url, "config-file-root-token");
    assert_eq!(client.get("/v1/status").assert_ok()["kek"], "kek-from-file");
    // default_country = US: a national US number is stored under its E.164 form.
    let token = client.create_user(json!({"phone": "(415) 555-2671"}));
    assert_eq!(client.get("/v1/user/phone/+14155552671").assert_ok()["token"], token.as_str());
    // max_body_bytes = 2048.
    client.post("/v1/user", json!({"note": "x".repeat(4096)})).assert_error(413);

    // No bulk listing: it is off unless turned on.
    client.post("/v1/users", json!({})).assert_error(403);

    let bad = scratch.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nunknown_setting = 1\n").unwrap();
    let mut command = support::vaultd();
    command.args(["serve", "--config"]).arg(&bad);
    let (status, stderr) = run_to_exit(command);
    assert!(!status.success());
    assert!(stderr.contains("unknown field `unknown_setting`"), "{stderr}");
}

#[test]
fn serve_refuses_a_duration_setting_that_is_not_a_positive_duration() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    for flag in ["max-session-ttl", "max-share-ttl", "max-user-retention-period"] {
        for bad in ["0s", "30", "30x", "-1d", ""] {
            let extra = ["--hsm-create-key".to_string(), format!("--{flag}={bad}")];
            let (status, stderr) = run_to_exit(serve_command(&hsm, &data_dir, &extra));
            assert!(!status.success(), "serve started with --{flag}={bad:?}");
            assert!(stderr.contains(flag), "the error names the flag: {stderr}");
        }
    }
}

#[test]
fn the_environment_turns_off_what_the_config_file_turns_on() {
    let (hsm, scratch, data_dir) = serve_scratch();
    let config = scratch.path().join("vaultd.toml");
    // The file uses the older key, which is still read.
    std::fs::write(&config, "bulk_list_enabled = true\nenable_anonymous_create = true\n").unwrap();
    let on = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--config", config.to_str().unwrap()]);
    on.client().post("/v1/users", json!({})).assert_ok();
    on.client().with_token(None).post("/v1/user", json!({"login": "anon"})).assert_ok();
    drop(on);

    let mut command = serve_command(&hsm, &data_dir, &["--config".to_string(), config.display().to_string()]);
    command.env("VAULTD_ENABLE_BULK_LIST", "false").env("VAULTD_ENABLE_ANONYMOUS_CREATE", "false");
    let off = Vault::spawn_command(command);
    let client = support::Client::new(&off.url, support::ROOT_TOKEN);
    client.post("/v1/users", json!({})).assert_error(403);
    client.with_token(None).post("/v1/user", json!({"login": "anon2"})).assert_error(401);
}

#[test]
fn an_imported_kek_is_one_key_across_tokens_and_stays_non_extractable() {
    let (first, second) = (SoftHsm::new(), SoftHsm::new());
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("kek");
    std::fs::write(&key_file, vaultd::crypto::random_bytes::<32>()).unwrap();
    let import = |hsm: &SoftHsm, file: &std::path::Path| {
        let mut command = support::vaultd();
        command.arg("hsm-import-key").arg("--key-file").arg(file).envs(&hsm.env);
        run_to_exit(command)
    };
    for hsm in [&first, &second] {
        let (status, stderr) = import(hsm, &key_file);
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("stored KEK \"strongroom-kek-1\""), "{stderr}");
        let attributes = key_attributes(hsm, "strongroom-kek-1");
        assert!(attributes.contains(&Attribute::Sensitive(true)), "{attributes:?}");
        assert!(attributes.contains(&Attribute::Extractable(false)), "{attributes:?}");
        assert!(attributes.contains(&Attribute::Token(true)), "{attributes:?}");
    }
    let (status, stderr) = import(&first, &key_file);
    assert!(status.success() && stderr.contains("already holds"), "importing twice leaves the key: {stderr}");
    let short = scratch.path().join("short");
    std::fs::write(&short, [7u8; 16]).unwrap();
    let (status, stderr) = import(&SoftHsm::new(), &short);
    assert!(!status.success() && stderr.contains("exactly 32 bytes"), "{stderr}");

    // Data written under one token's copy of the key reads back under the other's.
    let data_dir = scratch.path().join("vault");
    let vault = Vault::hsm(&first, &data_dir, &[]);
    vault.client().create_user(json!({"login": "shared", "email": "shared@example.com"}));
    vault.stop();
    let vault = Vault::hsm(&second, &data_dir, &[]);
    let reply = vault.client().get("/v1/user/login/shared");
    assert_eq!(reply.assert_ok()["data"]["email"], "shared@example.com");
}
