//! Storage limitation: data is kept no longer than its purpose needs.
//!
//! Two mechanisms, both executed as ordinary replicated commands and audited:
//! - Databunker's expiration flow (`/v1/exp/...`): a subject's data is forgotten when its
//!   expiration ends unless the subject retains it. The [`sweeper`] on the leader
//!   forgets subjects whose expiration is due.
//! - Retention policies (`POST /v1/sys/retention/run`, run by `vaultd minimize` from a
//!   `RetentionPolicy`'s CronJob): [`rules`] decides which subjects a rule selects and
//!   what its action makes of them; the service layer (`vault::retention`) runs them.

pub mod rules;
pub mod sweeper;
