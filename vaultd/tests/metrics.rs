//! The Raft metrics of a real three-node cluster, scraped from `/metrics` while its leader
//! and then a follower are cut off, and while the leader is killed: has-leader drops to 0
//! and comes back, the leader sees the lost member's lag rise and fall, a leader cut off
//! from its quorum reports no member as lagging or unhealthy, and leader changes are
//! counted. Then what one node reports of its storage, keys, retention and build.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cluster::{poll, Netns, TestCluster};
use support::sample;

/// A scrape of the node in `slot`.
fn scrape(cluster: &TestCluster, slot: usize) -> String {
    cluster.client(slot).metrics()
}

const HAS_LEADER: &str = "vaultd_raft_has_leader";
const IS_LEADER: &str = "vaultd_raft_is_leader";
const COMMITTED: &str = "vaultd_raft_committed_index";

#[test]
fn a_cluster_reports_its_leader_its_followers_lag_and_their_changes() {
    let test = "a_cluster_reports_its_leader_its_followers_lag_and_their_changes";
    let Some(netns) = Netns::create() else {
        strongroom_testkit::skipped(test, "network namespaces need root and iproute2 (CI runs this test as root)");
        return;
    };
    let outside = || (netns.host_ip.clone(), None);
    let inside = (netns.inner_ip.clone(), Some(netns.name.clone()));
    // Slot 0, in a network namespace of its own, bootstraps the cluster and so leads first.
    let mut cluster = TestCluster::start_at(&[inside, outside(), outside()], &["--tls-disable"]);
    let cut_off = 0;
    let cut_off_url = format!("{}/metrics", cluster.slots[cut_off].url());
    let scrape_cut_off = || netns.get_text(&cut_off_url);
    assert_eq!(cluster.leader(), cut_off, "the node that bootstrapped leads");
    for slot in 0..3 {
        let text = scrape(&cluster, slot);
        assert_eq!(sample(&text, HAS_LEADER), Some(1.0), "{text}");
        assert_eq!(sample(&text, IS_LEADER), Some(f64::from(u8::from(slot == cut_off))), "{text}");
        assert!(sample(&text, "vaultd_raft_leader_changes_total") >= Some(1.0), "{text}");
        assert_eq!(sample(&text, "vaultd_raft_members{role=\"voter\"}"), Some(3.0), "{text}");
    }
    let lost = cluster.node_id(cut_off);
    let lag = format!("vaultd_raft_follower_lag_entries{{member=\"{lost}\"}}");
    let healthy = format!("vaultd_raft_member_healthy{{member=\"{lost}\"}}");

    // While the node is cut off, the majority's leader (found by its own metrics) sees it
    // fall behind and go quiet; the node itself commits nothing and knows no leader.
    let falls_behind = |writes: &str| {
        let leader = poll("a leader on the connected side", Duration::from_secs(30), || {
            (1..3).find(|slot| sample(&scrape(&cluster, *slot), IS_LEADER) == Some(1.0))
        });
        for n in 0..20 {
            cluster.client(leader).create_user(json!({"login": format!("{writes}-{n}")}));
        }
        poll("the leader to see the cut-off node lag", Duration::from_secs(30), || {
            (sample(&scrape(&cluster, leader), &lag)? >= 20.0).then_some(())
        });
        poll("the leader to count it unhealthy", Duration::from_secs(30), || {
            (sample(&scrape(&cluster, leader), &healthy)? == 0.0).then_some(())
        });
        poll("the cut-off node to have no leader", Duration::from_secs(30), || {
            (sample(&scrape_cut_off(), HAS_LEADER)? == 0.0).then_some(())
        });
        let committed = sample(&scrape(&cluster, leader), COMMITTED).unwrap_or_default();
        let on_its_own = sample(&scrape_cut_off(), COMMITTED).unwrap_or(f64::MAX);
        assert!(on_its_own < committed, "the cut-off node commits nothing: {on_its_own} < {committed}");
        committed
    };
    // Connected again: it has a leader, and catches up.
    let comes_back = |committed: f64| {
        netns.set_connected(true);
        poll("the node to rejoin and catch up", Duration::from_secs(30), || {
            let back = scrape_cut_off();
            let caught_up =
                sample(&scrape(&cluster, cluster.leader()), &lag)? == 0.0 && sample(&back, COMMITTED)? >= committed;
            (sample(&back, HAS_LEADER)? == 1.0 && caught_up).then_some(())
        });
    };

    // The leader cut off: it still thinks it leads, but reports no leader its quorum
    // acknowledges, and no member as lagging or unhealthy (it cannot know).
    netns.set_connected(false);
    let committed = falls_behind("while-the-leader-is-cut-off");
    let stale = scrape_cut_off();
    assert_eq!(sample(&stale, IS_LEADER), Some(1.0), "{stale}");
    assert!(!stale.contains("vaultd_raft_member_healthy{") && !stale.contains("vaultd_raft_follower_lag_entries{"));
    // A write it takes cannot be confirmed: a failed proposal (answered 503).
    let base = cluster.slots[cut_off].url();
    let (status, _) = netns.curl("POST", &format!("{base}/v1/user"), Some(r#"{"login": "never-confirmed"}"#));
    assert_eq!(status, 503);
    assert_eq!(sample(&scrape_cut_off(), "vaultd_raft_proposals_failed_total"), Some(1.0));
    comes_back(committed);
    assert_eq!(sample(&scrape_cut_off(), IS_LEADER), Some(0.0), "back as a follower");

    // A follower cut off.
    netns.set_connected(false);
    let committed = falls_behind("while-a-follower-is-cut-off");
    comes_back(committed);

    // The leader killed: the others count the change and agree on a new one.
    let old_leader = cluster.leader();
    let survivor = (0..3).find(|slot| *slot != old_leader).unwrap_or(0);
    let changes_before = sample(&scrape(&cluster, survivor), "vaultd_raft_leader_changes_total").unwrap_or_default();
    cluster.kill(old_leader);
    let new_leader = cluster.leader();
    assert_ne!(new_leader, old_leader);
    poll("the survivor to know the new leader", Duration::from_secs(30), || {
        let text = scrape(&cluster, survivor);
        let counted = sample(&text, "vaultd_raft_leader_changes_total")? > changes_before;
        (sample(&text, HAS_LEADER)? == 1.0 && counted).then_some(())
    });
    assert_eq!(sample(&scrape(&cluster, new_leader), IS_LEADER), Some(1.0));
}

#[test]
fn a_node_reports_its_storage_keys_retention_and_build() {
    // No sweep after the one at start: an ended expiration stays due.
    let cluster = TestCluster::start(1, &["--expiration-sweep-secs=3600"]);
    let client = cluster.client(0);
    let person = client.create_user(json!({"login": "metered", "email": "metered@example.com", "fax": "0207946000"}));
    client.create_user(json!({"login": "faxless"}));
    client.get(&format!("/v1/user/token/{person}")).assert_ok();
    client.get("/v1/sys/audit/verify").assert_ok();
    let rules = json!([{"name": "drop-fax", "match": {}, "action": "dropFields", "fields": ["fax"]}]);
    let run = |policy: &str, spec| client.post("/v1/sys/retention/run", json!({"policy": policy, "spec": spec}));
    run("shop/dry", json!({"rules": rules, "dryRun": true})).assert_ok();
    run("shop/drop-fax", json!({"rules": rules})).assert_ok();
    let bad = json!({"rules": [{"name": "nothing", "match": {}, "action": "dropFields", "fields": []}]});
    run("shop/bad", bad).assert_error(400);
    client.post(&format!("/v1/exp/start/token/{person}"), json!({"expiration": "1s"})).assert_ok();
    let text = poll("the expiration to be due", Duration::from_secs(30), || {
        let text = client.metrics();
        (sample(&text, "vaultd_expirations_due")? == 1.0).then_some(text)
    });
    assert_eq!(sample(&text, "vaultd_audit_verification_ok"), Some(1.0), "{text}");
    assert!(sample(&text, "vaultd_audit_verification_timestamp_seconds") > Some(0.0), "{text}");
    assert_eq!(sample(&text, "vaultd_audit_verification_interval_seconds"), Some(21600.0), "{text}");
    let series = |name: &str, policy: &str, label: &str| format!("{name}{{policy=\"{policy}\",{label}}}");
    let runs = |policy: &str, outcome: &str| {
        sample(&text, &series("vaultd_retention_runs_total", policy, &format!("outcome=\"{outcome}\"")))
    };
    assert_eq!(runs("shop/drop-fax", "succeeded"), Some(1.0), "{text}");
    assert_eq!(runs("shop/drop-fax", "failed"), Some(0.0), "both outcomes from a policy's first run on");
    assert_eq!(runs("shop/dry", "succeeded"), Some(1.0), "{text}");
    assert_eq!(runs("shop/bad", "failed"), None, "a bad request is no run");
    let failed_at = "vaultd_retention_last_failure_timestamp_seconds{policy=\"shop/drop-fax\"}";
    assert_eq!(sample(&text, failed_at), Some(0.0), "never failed");
    let changed = |policy: &str| {
        sample(&text, &series("vaultd_retention_records_changed_total", policy, "action=\"dropFields\""))
    };
    assert_eq!(changed("shop/drop-fax"), Some(1.0), "one subject had a fax: {text}");
    assert_eq!(changed("shop/dry"), None, "a dry run changes nothing");
    assert_eq!(sample(&text, "vaultd_hsm_errors_total{operation=\"Decrypt\"}"), Some(0.0), "there from the start");
    for policy in ["shop/drop-fax", "shop/dry"] {
        let last = format!("vaultd_retention_last_run_timestamp_seconds{{policy=\"{policy}\"}}");
        assert!(sample(&text, &last) > Some(0.0), "{policy}: {text}");
    }
    let committed = sample(&text, "vaultd_raft_committed_index");
    assert!(committed > Some(0.0) && committed <= sample(&text, "vaultd_raft_last_log_index"), "{text}");
    assert!(sample(&text, "vaultd_raft_proposals_total") > Some(0.0), "{text}");
    assert!(sample(&text, "vaultd_raft_log_segments") >= Some(1.0), "{text}");
    assert!(sample(&text, "vaultd_state_flush_duration_seconds_count") > Some(0.0), "{text}");
    for part in ["log", "state", "audit"] {
        let bytes = sample(&text, &format!("vaultd_data_directory_bytes{{part=\"{part}\"}}"));
        assert!(bytes > Some(0.0), "{part}: {text}");
    }
    assert!(sample(&text, "vaultd_volume_free_bytes") > Some(0.0), "{text}");
    assert!(sample(&text, "vaultd_audit_events") >= Some(2.0), "{text}");
    assert!(sample(&text, "vaultd_raft_log_fsync_duration_seconds_count") > Some(0.0), "{text}");
    assert!(sample(&text, "vaultd_hsm_call_duration_seconds_count{operation=\"Encrypt\"}") > Some(0.0), "{text}");
    assert!(sample(&text, "vaultd_key_cache_hits_total") > Some(0.0), "{text}");
    assert!(sample(&text, "vaultd_open_files") > Some(0.0), "{text}");
    let build = format!("vaultd_build_info{{version=\"{}\",data_format=\"8\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert!(!text.contains("metered") && !text.contains("0207946000"), "no personal data in metrics");
}

/// The metric names of the README's "## Metrics" table (a name written `_suffix` continues
/// the first name of its row after that name's first two words, `vaultd_raft_`).
fn documented_metrics() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("\n## Metrics\n").nth(1).unwrap().split("\n## ").next().unwrap().to_string();
    let mut names = Vec::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let first_column = row.split('|').nth(1).unwrap_or_default();
        let in_row: Vec<&str> = first_column.split('`').skip(1).step_by(2).collect();
        let prefix = in_row[0].splitn(3, '_').take(2).collect::<Vec<_>>().join("_");
        for name in in_row {
            names.push(if name.starts_with('_') { format!("{prefix}{name}") } else { name.to_string() });
        }
    }
    names
}

#[test]
fn every_metric_the_readme_documents_is_served() {
    let cluster = TestCluster::start(1, &[]);
    let client = cluster.client(0);
    client.create_user(json!({"login": "documented"}));
    client.get("/v1/sys/audit/verify").assert_ok();
    let spec = json!({"rules": [{"name": "drop-fax", "match": {}, "action": "dropFields", "fields": ["fax"]}]});
    client.post("/v1/sys/retention/run", json!({"policy": "shop/drop-fax", "spec": spec})).assert_ok();
    let text = client.get("/metrics").body.as_str().unwrap_or_default().to_string();
    let documented = documented_metrics();
    assert!(documented.len() > 40, "{documented:?}");
    for name in documented {
        // A counter's and an info's family drop the `_total` and `_info` of their samples.
        let family = name.strip_suffix("_total").or_else(|| name.strip_suffix("_info")).unwrap_or(&name);
        assert!(text.contains(&format!("# TYPE {family} ")), "{name} is documented but not served:\n{text}");
    }
}
