//! Strongroom's vault daemon: encrypted, audited storage for personal data behind the
//! Databunker v1 API.
//!
//! Layers, from the edge inwards:
//! - [`api`]: HTTP routes, request parsing, the JSON envelope;
//! - [`auth`]: the caller and its scopes;
//! - [`vault`]: the service layer; does the cryptography and submits commands;
//! - [`cluster`]: Raft (openraft): the log, replication, membership, the peer port;
//! - [`store`]: commands, the state machine that applies them, and sled storage;
//! - [`crypto`]: KEK (HSM or demo), DEKs, sealing, blind index;
//! - [`audit`]: the hash-chained audit trail;
//! - [`tls`]: TLS on the API and peer ports (rustls);
//! - [`retention`]: storage limitation: retention rules and the expiration sweeper;
//! - [`backup`]: `vaultd backup` and `vaultd restore`: backups of a running vault, where
//!   they are kept, and new vaults made from them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod api_client;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod error;
pub mod identifiers;
pub mod metrics;
pub mod minimize;
pub mod retention;
pub mod server;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod vault;
