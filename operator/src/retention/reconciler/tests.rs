//! The reconciler against a fake API server (kube-rs's mock service) and a scripted vault.
