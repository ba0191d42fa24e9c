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
