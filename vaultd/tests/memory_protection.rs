//! Key material stays out of core dumps and swap: a running vault has a zero core-file
//! limit, and (where it may lock memory, as root here and on CI) locks what it touches.

mod support;

use serde_json::json;
use support::{serve_scratch, Vault};

fn proc_file(vault: &Vault, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{}/{name}", vault.child.id())).unwrap()
}

fn assert_protected(vault: &Vault) {
    let limits = proc_file(vault, "limits");
    let core = limits.lines().find(|line| line.starts_with("Max core file size")).unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    // Root holds CAP_IPC_LOCK; elsewhere locking may be refused (and is logged).
    if running_as_root() {
        let status = proc_file(vault, "status");
        let locked = status.lines().find(|line| line.starts_with("VmLck:")).unwrap();
        let kib: u64 = locked.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(kib > 0, "{locked}");
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn demo_and_serve_turn_off_core_dumps_and_lock_memory() {
    let demo = Vault::demo();
    demo.demo_client().create_user(json!({"login": "ann"}));
    assert_protected(&demo);

    let (hsm, _scratch, data_dir) = serve_scratch();
    let serve = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    serve.client().create_user(json!({"login": "ann"}));
    assert_protected(&serve);
}
