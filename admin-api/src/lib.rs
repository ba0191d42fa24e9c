//! The request and response bodies of vaultd's `/v1/sys/...` admin API, in one place so
//! that vaultd (which serves them) and the operator (which calls them) cannot drift apart.
//!
//! Every body travels inside vaultd's JSON envelope: a response is
//! `{"status":"ok", ...fields of the body...}`, an error `{"status":"error","message":...}`.

pub mod backup;
pub mod cluster;
pub mod retention;
pub mod tokens;
