//! The committed rules file (`charts/strongroom-operator/alerts/strongroom-alerts.yaml`) is
//! what the alert builder renders. Regenerate with `cargo run -p strongroom-operator --bin crdgen`.

use std::path::PathBuf;

use strongroom_operator::piivault::builders::alerts;

#[test]
fn the_rules_file_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(alerts::RULES_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == alerts::rules_file().expect("renders"),
        "{} is out of date: run `cargo run -p strongroom-operator --bin crdgen`",
        path.display()
    );
}

#[test]
fn every_alert_has_a_promtool_test() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/strongroom-operator/alerts/strongroom-alerts.test.yaml");
    let tests = std::fs::read_to_string(&path).expect("the promtool test file");
    for name in alerts::alert_names() {
        assert!(tests.contains(&format!("alertname: {name}\n")), "no promtool test of {name}");
    }
}

/// One vault's rules, as its PrometheusRule carries them, pass `promtool check rules` too
/// (they differ from the rules file in their matchers and the absence checks).
#[test]
fn one_vaults_rules_pass_promtool() {
    let Ok(version) = std::process::Command::new("promtool").arg("--version").output() else {
        eprintln!("SKIPPED: one_vaults_rules_pass_promtool: promtool is missing (hack/test.sh installs it)");
        return;
    };
    assert!(version.status.success());
    let scope = alerts::Scope::Vault { namespace: "pii", name: "vault" };
    let groups = serde_json::json!({ "groups": alerts::rule_groups(scope) });
    let down =
        groups["groups"][0]["rules"].as_array().into_iter().flatten().find(|r| r["alert"] == "StrongroomVaultDown");
    let down = down.and_then(|rule| rule["expr"].as_str()).unwrap_or_default();
    assert!(down.ends_with(r#" or absent(up{namespace="pii",vault="vault"})"#), "no pod at all is down too: {down}");
    let path = std::env::temp_dir().join(format!("strongroom-vault-rules-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_saphyr::to_string(&groups).expect("renders")).expect("writes the rules");
    let checked = std::process::Command::new("promtool").arg("check").arg("rules").arg(&path).output();
    let _ = std::fs::remove_file(&path);
    let checked = checked.expect("promtool runs");
    let said = String::from_utf8_lossy(&checked.stdout).into_owned() + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains(&format!("{} rules found", alerts::alert_names().len())), "{said}");
}
