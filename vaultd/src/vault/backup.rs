//! Backups and the erasure ledger, as the API serves them. A backup is the state of a
//! fresh snapshot — taken after a read barrier, so it holds everything acknowledged
//! before the request — and the audit trail up to that snapshot's cut, described by a
//! manifest. Both parts are the snapshot's own files, as encrypted as at rest, read in
//! chunks: memory does not grow with the vault.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use strongroom_admin_api::backup::{ErasureKind, ErasurePage, ErasureRow, Manifest, Part};

use super::*;
use crate::cluster::{read_pairs, SnapshotParts};
use crate::store::{decode, format, keys, LedgerEntry};

/// The parts of a backup, in the order they are sent.
pub const STATE_PART: &str = "state.bin";
pub const AUDIT_PART: &str = "audit.bin";

/// A backup ready to send: its manifest, then each part (a file and how many of its
/// first bytes belong to the backup). While it lives, no other backup starts on this node.
pub struct BackupStream {
    pub manifest: Manifest,
    pub parts: Vec<(Arc<File>, u64)>,
    pub permit: tokio::sync::OwnedSemaphorePermit,
}

impl Vault {
    /// `GET /v1/sys/backup`: a backup of the whole vault. Audited as `backup-read`.
    pub async fn backup(&self, caller: &Caller) -> VaultResult<BackupStream> {
        caller.require(&Scope::backup_read())?;
        caller.require_staff()?;
        let permit = Arc::clone(&self.backups)
            .try_acquire_owned()
            .map_err(|_| VaultError::Conflict("a backup is being taken from this node; try again when it is done"))?;
        self.catch_up().await?;
        let cluster_id = self.store.cluster_id()?.ok_or(VaultError::Unavailable("the vault has no keys yet"))?;
        let mut kek_labels = vec![self.active_kek()];
        if let Some(index_key) = self.store.wrapped_index_key()? {
            if !kek_labels.contains(&index_key.kek) {
                kek_labels.push(index_key.kek);
            }
        }
        let parts = self.cluster.snapshot_for_backup().await?;
        let audit_head = match parts.header.cut.events {
            0 => crate::audit::GENESIS.to_string(),
            last => self.store.audit_trail().get(last)?.ok_or(StoreError::Corrupt)?.hash,
        };
        let described = tokio::task::spawn_blocking(move || describe(parts))
            .await
            .map_err(|_| VaultError::Unavailable("backup"))??;
        let manifest = Manifest {
            format: format::CURRENT,
            cluster_id: cluster_id.to_string(),
            kek_labels,
            last_applied_index: described.last_applied_index,
            created_at: now_ms(),
            subjects: described.subjects,
            ledger_next: described.ledger_next,
            audit_events: described.audit_events,
            audit_head,
            parts: described.parts,
        };
        self.record_access(draft(caller, Operation::BackupRead, None, None, None), true).await?;
        Ok(BackupStream { manifest, parts: described.files, permit })
    }

    /// `GET /v1/sys/erasures`: the erasure ledger after `after`, at most `limit` entries,
    /// as this node has it after a read barrier. A page with entries is audited as
    /// `ledger-read`.
    pub async fn erasures(&self, caller: &Caller, after: u64, limit: usize) -> VaultResult<ErasurePage> {
        caller.require(&Scope::backup_read())?;
        caller.require_staff()?;
        self.catch_up().await?;
        let cluster_id = self.store.cluster_id()?.ok_or(VaultError::Unavailable("the vault has no keys yet"))?;
        let (entries, next) = self.store.ledger_after(after, limit)?;
        if !entries.is_empty() {
            self.record_access(draft(caller, Operation::LedgerRead, None, None, None), true).await?;
        }
        let erasures = entries.into_iter().map(|(seq, entry)| erasure_row(seq, entry)).collect();
        Ok(ErasurePage { cluster_id: cluster_id.to_string(), erasures, next })
    }
}

fn erasure_row(seq: u64, entry: LedgerEntry) -> ErasureRow {
    let token = entry.subject.map(|subject| subject.to_string());
    let row = |kind| ErasureRow {
        seq,
        time: entry.time,
        token: token.clone(),
        kind,
        access_token: None,
        entry: None,
        app: None,
        fields: Vec::new(),
    };
    match entry.erasure {
        Erasure::Forget => row(ErasureKind::Forget),
        Erasure::DeleteApp { app } => ErasureRow { app: Some(app), ..row(ErasureKind::DeleteApp) },
        Erasure::DropFields { fields } => ErasureRow { fields, ..row(ErasureKind::DropFields) },
        Erasure::Pseudonymize { fields } => ErasureRow { fields, ..row(ErasureKind::Pseudonymize) },
        Erasure::RevokeToken { id } => ErasureRow { access_token: Some(id), ..row(ErasureKind::RevokeToken) },
        Erasure::ForgetIdentifier { entry } => {
            ErasureRow { entry: Some(crate::audit::hex(&entry)), ..row(ErasureKind::ForgetIdentifier) }
        }
    }
}

/// What the manifest says about a snapshot's parts, read from the parts themselves.
struct Described {
    last_applied_index: u64,
    subjects: u64,
    ledger_next: u64,
    audit_events: u64,
    parts: Vec<Part>,
    files: Vec<(Arc<File>, u64)>,
}

/// Reads both parts once: their checksums, and from the state its active subjects and
/// the ledger's next sequence number.
fn describe(parts: SnapshotParts) -> Result<Described, StoreError> {
    let SnapshotParts { header, state, state_bytes, trail, trail_bytes } = parts;
    let mut subjects = 0;
    let mut ledger_next = 1;
    let ledger_key = keys::meta(keys::LEDGER_NEXT);
    let mut reader = Hashing::new(BufReader::with_capacity(1 << 20, ReadAt::new(&state, state_bytes)));
    read_pairs(&mut reader, |key, value| {
        if key.first() == Some(&keys::SUBJECT)
            && matches!(decode::<SubjectRecord>(value)?.state, SubjectState::Active(_))
        {
            subjects += 1;
        } else if key == ledger_key.as_slice() {
            ledger_next = decode(value)?;
        }
        Ok(())
    })?;
    let state_sha = reader.finish()?;
    let trail_reader = Hashing::new(BufReader::with_capacity(1 << 20, ReadAt::new(&trail, trail_bytes)));
    let trail_sha = trail_reader.finish()?;
    Ok(Described {
        last_applied_index: header.meta.last_log_id.map_or(0, |id| id.index),
        subjects,
        ledger_next,
        audit_events: header.cut.events,
        parts: vec![
            Part { name: STATE_PART.into(), bytes: state_bytes, sha256: state_sha },
            Part { name: AUDIT_PART.into(), bytes: trail_bytes, sha256: trail_sha },
        ],
        files: vec![(Arc::new(state), state_bytes), (Arc::new(trail), trail_bytes)],
    })
}

/// The first `len` bytes of a file, read by position (the file's cursor is not moved, so
/// the file can be read again, and by others).
pub struct ReadAt<'f> {
    file: &'f File,
    offset: u64,
    len: u64,
}

impl<'f> ReadAt<'f> {
    pub fn new(file: &'f File, len: u64) -> Self {
        ReadAt { file, offset: 0, len }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let wanted = buf.len().min(usize::try_from(self.len - self.offset).unwrap_or(usize::MAX));
        if wanted == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..wanted], self.offset)?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than the backup part"));
        }
        self.offset += read as u64;
        Ok(read)
    }
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new() }
    }

    /// Reads what is left and returns the SHA-256 of everything read, in hex.
    pub fn finish(mut self) -> Result<String, StoreError> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(crate::audit::hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}
