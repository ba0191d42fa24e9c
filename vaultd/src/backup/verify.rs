//! `vaultd backup verify`, and the checks a restore makes before it writes anything: every
//! part has its manifest's size and SHA-256, the state is whole (framing and trailer)
//! and holds the subjects the manifest counts, the audit trail's hash chain is intact up
//! to the manifest's head; with the KEK at hand, the index key and a sample of subject
//! keys unwrap.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use strongroom_admin_api::backup::Manifest;
use uuid::Uuid;

use super::{BackupError, Destination};
use crate::audit::ChainCheck;
use crate::cluster::read_pairs;
use crate::crypto::{self, Kek};
use crate::store::{decode, format, keys, AuditTrail, SubjectRecord, SubjectState, WrappedKey};
use crate::vault::backup::{AUDIT_PART, STATE_PART};

/// Subject keys unwrapped as a sample, with the KEK at hand.
const KEY_SAMPLE: usize = 16;

/// What `vaultd backup verify` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub backup: String,
    pub cluster_id: String,
    pub subjects: u64,
    pub audit_events: u64,
    /// Keys unwrapped with the KEK (none without one): the index key and a sample of
    /// subject keys.
    pub keys_unwrapped: usize,
}

/// A backup fetched into `work` and checked.
pub struct Checked {
    pub id: String,
    pub manifest: Manifest,
    pub state: PathBuf,
    pub audit: PathBuf,
    pub index_key: WrappedKey,
    sample: Vec<SampledKey>,
}

/// A subject key to try unwrapping: whose, under which KEK label, wrapped.
struct SampledKey {
    subject: Uuid,
    kek: String,
    wrapped: Vec<u8>,
}

/// Fetches backup `id` (the newest when `None`) into `work` and checks it.
pub async fn fetch_and_check(source: &Destination, id: Option<&str>, work: &Path) -> Result<Checked, BackupError> {
    let (id, manifest) = source.choose(id).await?;
    if manifest.format != format::CURRENT {
        return Err(BackupError::Refusal(format!(
            "backup {id} is in data format {}, this vaultd reads format {} only{}",
            manifest.format,
            format::CURRENT,
            if manifest.format > format::CURRENT { ": it was made by a newer vaultd" } else { "" }
        )));
    }
    let names: Vec<&str> = manifest.parts.iter().map(|p| p.name.as_str()).collect();
    if names != [STATE_PART, AUDIT_PART] {
        return Err(BackupError::Corrupt(format!("backup {id} has parts {names:?}")));
    }
    let mut paths = Vec::new();
    for part in &manifest.parts {
        let path = work.join(&part.name);
        let mut file = File::create(&path).map_err(|e| local_error(&path, e))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        source
            .read(&source.part(&id, &part.name), |chunk| {
                hasher.update(chunk);
                bytes += chunk.len() as u64;
                file.write_all(chunk).map_err(|e| local_error(&path, e))
            })
            .await?;
        if bytes != part.bytes || crate::audit::hex(&hasher.finalize()) != part.sha256 {
            return Err(BackupError::Corrupt(format!(
                "{} of backup {id} is not what its manifest says ({bytes} bytes, manifest {}; or another checksum)",
                part.name, part.bytes
            )));
        }
        paths.push(path);
    }
    let (state, audit) = (paths[0].clone(), paths[1].clone());
    let (index_key, sample) = check_state(&id, &manifest, &state)?;
    check_audit(&id, &manifest, &audit, work)?;
    Ok(Checked { id, manifest, state, audit, index_key, sample })
}

/// `vaultd backup verify`.
pub async fn verify(source: &Destination, id: Option<&str>, kek: Option<&Kek>) -> Result<VerifyReport, BackupError> {
    let work = tempfile::tempdir().map_err(|e| BackupError::Invalid(format!("cannot make a work directory: {e}")))?;
    let checked = fetch_and_check(source, id, work.path()).await?;
    let keys_unwrapped = match kek {
        Some(kek) => checked.unwrap_keys(kek).await?,
        None => 0,
    };
    Ok(VerifyReport {
        backup: checked.id,
        cluster_id: checked.manifest.cluster_id,
        subjects: checked.manifest.subjects,
        audit_events: checked.manifest.audit_events,
        keys_unwrapped,
    })
}

impl Checked {
    /// Unwraps the index key and the sample of subject keys with `kek`: a backup whose
    /// keys another KEK wrapped is refused here, before anything is written.
    pub async fn unwrap_keys(&self, kek: &Kek) -> Result<usize, BackupError> {
        let wrong = |what: &str| {
            BackupError::Refusal(format!(
                "the KEK {:?} cannot unwrap the backup's {what}: the backup's keys are wrapped by KEK(s) {:?} \
                 (another HSM token, or another key under the same label?)",
                kek.label(),
                self.manifest.kek_labels
            ))
        };
        let index = &self.index_key;
        kek.unwrap_key(&index.kek, &index.wrapped, crypto::INDEX_KEY_AAD).await.map_err(|_| wrong("index key"))?;
        for key in &self.sample {
            let aad = crypto::dek_aad(&key.subject);
            kek.unwrap_key(&key.kek, &key.wrapped, &aad).await.map_err(|_| wrong("subject keys"))?;
        }
        Ok(1 + self.sample.len())
    }
}

/// The state's framing, trailer and subject count; its index key and a key sample.
fn check_state(id: &str, manifest: &Manifest, path: &Path) -> Result<(WrappedKey, Vec<SampledKey>), BackupError> {
    let damaged = |what: String| BackupError::Corrupt(format!("state of backup {id}: {what}"));
    let file = File::open(path).map_err(|e| local_error(path, e))?;
    let index_key_name = keys::meta(keys::INDEX_KEY);
    let (mut subjects, mut index_key, mut sample) = (0u64, None, Vec::new());
    read_pairs(BufReader::with_capacity(1 << 20, file), |key, value| {
        if key.first() == Some(&keys::SUBJECT) {
            if let SubjectState::Active(active) = decode::<SubjectRecord>(value)?.state {
                subjects += 1;
                if sample.len() < KEY_SAMPLE {
                    let subject = Uuid::from_slice(&key[1..]).map_err(|_| crate::store::StoreError::Corrupt)?;
                    sample.push(SampledKey { subject, kek: active.kek, wrapped: active.wrapped_dek });
                }
            }
        } else if key == index_key_name.as_slice() {
            index_key = Some(decode::<WrappedKey>(value)?);
        }
        Ok(())
    })
    .map_err(|e| damaged(e.to_string()))?;
    if subjects != manifest.subjects {
        return Err(damaged(format!("{subjects} subjects, the manifest says {}", manifest.subjects)));
    }
    let index_key = index_key.ok_or_else(|| damaged("no index key".into()))?;
    Ok((index_key, sample))
}

/// The trail's records and hash chain, up to the manifest's head.
fn check_audit(id: &str, manifest: &Manifest, path: &Path, work: &Path) -> Result<(), BackupError> {
    let damaged = |what: String| BackupError::Corrupt(format!("audit trail of backup {id}: {what}"));
    let dir = work.join("audit-check");
    let trail = AuditTrail::open(&dir).map_err(|e| damaged(e.to_string()))?;
    let file = File::open(path).map_err(|e| local_error(path, e))?;
    let bytes = file.metadata().map_err(|e| local_error(path, e))?.len();
    let cut = trail.replace(BufReader::with_capacity(1 << 20, file), bytes).map_err(|e| damaged(e.to_string()))?;
    let mut chain = ChainCheck::default();
    trail
        .walk(1..cut.events + 1, |position, event| chain.push(event.ok_or(position)))
        .map_err(|e| damaged(e.to_string()))?;
    let verdict = chain.finish(&manifest.audit_head);
    if !verdict.intact || verdict.events != manifest.audit_events {
        return Err(damaged(format!(
            "the hash chain does not verify ({} of {} events; {})",
            verdict.events,
            manifest.audit_events,
            verdict.reason.unwrap_or("another head")
        )));
    }
    Ok(())
}

fn local_error(path: &Path, error: std::io::Error) -> BackupError {
    BackupError::Invalid(format!("{}: {error}", path.display()))
}
