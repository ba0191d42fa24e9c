//! Snapshots: the whole state tree in one file. A snapshot lets a node purge its log and
//! lets a new or wiped node catch up without replaying history.
//!
//! Snapshots are written, sent, received and loaded as streams: the state (most of it
//! audit history) never has to fit in memory. Building takes two steps. While the state
//! machine holds its applies, [`Snapshots::start_build`] writes every record except the
//! audit blocks: a consistent cut. Applies then go on while [`PendingBuild::finish`]
//! appends the audit blocks up to that cut; a block is written once and never changed,
//! so the blocks up to the cut are the same then as at the cut.
//!
//! Every snapshot file is written under a temporary name, synced and renamed, so a crash
//! leaves either the old snapshot or the new one, never half of one.
//!
//! Format: `SRSNAP02`, then length-prefixed records (u32 big-endian length, bytes): the
//! postcard-encoded `SnapshotMeta`, then key, value, key, value, ... of the state tree;
//! then a trailer, the length `u32::MAX` and the number of key-value pairs (u64
//! big-endian). A file without its trailer, or with another count, is refused.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use super::types::SnapshotMeta;
use crate::store::{decode, encode, keys, StoreError};

const MAGIC: &[u8; 8] = b"SRSNAP02";
/// The length that marks the trailer instead of a record.
const TRAILER: u32 = u32::MAX;
/// Inserts per sled batch while loading a snapshot.
const LOAD_BATCH: usize = 4096;
/// Buffer for reading and writing snapshot files.
const BUFFER: usize = 1 << 20;

/// A node's snapshot files: the current snapshot, and the one being built or received.
pub struct Snapshots {
    dir: PathBuf,
    current: PathBuf,
    incoming: PathBuf,
    /// The current snapshot's meta; also serialises replacing the current file.
    current_meta: Mutex<Option<SnapshotMeta>>,
    /// Held for writing while a load replaces the tree, for reading while audit blocks
    /// are copied out of it.
    tree_rewrite: RwLock<()>,
}

impl Snapshots {
    /// Finds the current snapshot in `data_dir`; removes files that a crash left half
    /// written.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let snapshots = Snapshots {
            dir: data_dir.to_path_buf(),
            current: data_dir.join("snapshot.bin"),
            incoming: data_dir.join("snapshot.incoming"),
            current_meta: Mutex::new(None),
            tree_rewrite: RwLock::new(()),
        };
        for entry in fs::read_dir(data_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "building" || e == "incoming") {
                remove_if_present(&path)?;
            }
        }
        let meta = match open_if_present(&snapshots.current)? {
            Some(mut file) => Some(read_meta(&mut file)?),
            None => None,
        };
        *snapshots.lock_current() = meta;
        Ok(snapshots)
    }

    fn lock_current(&self) -> MutexGuard<'_, Option<SnapshotMeta>> {
        self.current_meta.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current snapshot, opened at its start, and its meta.
    pub fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, StoreError> {
        let current = self.lock_current();
        let Some(meta) = current.clone() else {
            return Ok(None);
        };
        let file = File::open(&self.current)?;
        Ok(Some((meta, file)))
    }

    /// Writes the first part of a snapshot of `tree`: everything but the audit blocks.
    /// The caller makes sure nothing applies meanwhile.
    pub fn start_build(&self, tree: &sled::Tree, meta: &SnapshotMeta) -> Result<PendingBuild, StoreError> {
        let path = self.dir.join(format!("snapshot-{}.building", meta.snapshot_id));
        let mut out = BufWriter::with_capacity(BUFFER, File::create(&path)?);
        out.write_all(MAGIC)?;
        write_record(&mut out, &encode(meta)?)?;
        let audit_cut = tree.scan_prefix([keys::AUDIT_BLOCK]).keys().next_back().transpose()?;
        let mut pairs = 0;
        let before_audit = tree.range(..vec![keys::AUDIT_BLOCK]);
        let after_audit = tree.range(vec![keys::AUDIT_BLOCK + 1]..);
        for item in before_audit.chain(after_audit) {
            let (key, value) = item?;
            write_record(&mut out, &key)?;
            write_record(&mut out, &value)?;
            pairs += 1;
        }
        Ok(PendingBuild { path, out, pairs, audit_cut, meta: meta.clone() })
    }

    /// A fresh file to receive a snapshot from the leader into.
    pub fn receive(&self) -> Result<File, StoreError> {
        remove_if_present(&self.incoming)?;
        Ok(File::options().read(true).write(true).create_new(true).open(&self.incoming)?)
    }

    /// Makes a received snapshot the current one, after checking that `file` is the one
    /// `receive` handed out last, that it is whole and that it is the snapshot `meta`
    /// describes.
    pub fn accept_received(&self, mut file: File, meta: &SnapshotMeta) -> Result<(), StoreError> {
        let received = file.metadata()?;
        let incoming = fs::metadata(&self.incoming)?;
        if (received.dev(), received.ino()) != (incoming.dev(), incoming.ino()) {
            return Err(StoreError::Corrupt);
        }
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
        let mut records = Records::new(BufReader::with_capacity(BUFFER, file))?;
        let found: SnapshotMeta = decode(&records.next_record()?.ok_or(StoreError::Corrupt)?)?;
        if found.last_log_id != meta.last_log_id {
            return Err(StoreError::Corrupt);
        }
        while let Some(_record) = records.next_record()? {}
        // The leader sends only snapshots newer than what this node applied.
        if !self.publish(&self.incoming, meta)? {
            return Err(StoreError::Corrupt);
        }
        Ok(())
    }

    /// Renames `path` to the current snapshot unless the current one is newer (a
    /// snapshot installed while this one was being built); then `path` is removed and
    /// the answer is false.
    fn publish(&self, path: &Path, meta: &SnapshotMeta) -> Result<bool, StoreError> {
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|c| c.last_log_id > meta.last_log_id) {
            fs::remove_file(path)?;
            return Ok(false);
        }
        fs::rename(path, &self.current)?;
        if let Some(dir) = self.current.parent() {
            File::open(dir)?.sync_all()?;
        }
        *current = Some(meta.clone());
        Ok(true)
    }

    /// Replaces the tree's contents with the current snapshot's. Not atomic: the caller
    /// marks the load as in progress and redoes it after a crash.
    pub fn load_current(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        let _rewriting = self.tree_rewrite.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = File::open(&self.current)?;
        load(tree, BufReader::with_capacity(BUFFER, file))
    }
}

/// A snapshot whose records up to the cut are written, audit blocks still to come.
pub struct PendingBuild {
    path: PathBuf,
    out: BufWriter<File>,
    pairs: u64,
    /// Key of the newest audit block at the cut.
    audit_cut: Option<sled::IVec>,
    meta: SnapshotMeta,
}

impl PendingBuild {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Appends the audit blocks up to the cut, makes the file durable and current, and
    /// returns it opened at its start. A build that fails leaves no file behind.
    pub fn finish(self, tree: &sled::Tree, snapshots: &Snapshots) -> Result<File, StoreError> {
        let path = self.path.clone();
        let finished = self.write_rest(tree, snapshots);
        if finished.is_err() {
            remove_if_present(&path)?;
        }
        finished
    }

    fn write_rest(mut self, tree: &sled::Tree, snapshots: &Snapshots) -> Result<File, StoreError> {
        if let Some(cut) = &self.audit_cut {
            let _copying = snapshots.tree_rewrite.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut last = None;
            for item in tree.range(vec![keys::AUDIT_BLOCK]..=cut.to_vec()) {
                let (key, value) = item?;
                write_record(&mut self.out, &key)?;
                write_record(&mut self.out, &value)?;
                self.pairs += 1;
                last = Some(key);
            }
            if last.as_ref() != Some(cut) {
                // The tree was replaced since the cut: this copy would be incomplete.
                return Err(StoreError::Corrupt);
            }
        }
        self.out.write_all(&TRAILER.to_be_bytes())?;
        self.out.write_all(&self.pairs.to_be_bytes())?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
        if !snapshots.publish(&self.path, &self.meta)? {
            tracing::info!(snapshot = %self.meta.snapshot_id, "a newer snapshot was installed meanwhile; this one is not kept");
        }
        Ok(file)
    }
}

fn write_record(out: &mut impl Write, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).ok().filter(|&len| len != TRAILER).ok_or(StoreError::Encoding)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Reads a snapshot's records in order, checking the framing and, at the end, the
/// trailer.
struct Records<R> {
    input: R,
    /// Records read after the meta.
    records: u64,
    finished: bool,
}

impl<R: Read> Records<R> {
    fn new(mut input: R) -> Result<Self, StoreError> {
        let mut magic = [0; 8];
        input.read_exact(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err(StoreError::Corrupt);
        }
        Ok(Records { input, records: 0, finished: false })
    }

    /// The next record; `None` after a trailer that matches what was read.
    fn next_record(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.read_array().map_err(truncated)?);
        if len == TRAILER {
            let pairs = u64::from_be_bytes(self.read_array().map_err(truncated)?);
            let after_meta = self.records.checked_sub(1).ok_or(StoreError::Corrupt)?;
            let mut rest = [0; 1];
            if after_meta % 2 != 0 || after_meta / 2 != pairs || self.input.read(&mut rest)? != 0 {
                return Err(StoreError::Corrupt);
            }
            self.finished = true;
            return Ok(None);
        }
        let mut record = Vec::new();
        let read = (&mut self.input).take(u64::from(len)).read_to_end(&mut record)?;
        if read != len as usize {
            return Err(StoreError::Corrupt);
        }
        self.records += 1;
        Ok(Some(record))
    }

    fn read_array<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut bytes = [0; N];
        self.input.read_exact(&mut bytes)?;
        Ok(bytes)
    }
}

/// A file that ends early is corrupt; other read errors stay what they are.
fn truncated(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        StoreError::Corrupt
    } else {
        e.into()
    }
}

fn read_meta(input: impl Read) -> Result<SnapshotMeta, StoreError> {
    let record = Records::new(input)?.next_record()?.ok_or(StoreError::Corrupt)?;
    decode(&record)
}

fn load(tree: &sled::Tree, input: impl Read) -> Result<(), StoreError> {
    let mut records = Records::new(input)?;
    records.next_record()?.ok_or(StoreError::Corrupt)?;
    tree.clear()?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    while let Some(key) = records.next_record()? {
        let value = records.next_record()?.ok_or(StoreError::Corrupt)?;
        batch.insert(key, value);
        pending += 1;
        if pending == LOAD_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}

fn open_if_present(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        let last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 1), index));
        SnapshotMeta { last_log_id, snapshot_id: format!("1-{index}-1"), ..Default::default() }
    }

    fn audit_block(first_seq: u64) -> Vec<u8> {
        let mut key = vec![keys::AUDIT_BLOCK];
        key.extend_from_slice(&first_seq.to_be_bytes());
        key
    }

    fn contents(tree: &sled::Tree) -> Vec<(sled::IVec, sled::IVec)> {
        tree.iter().map(Result::unwrap).collect()
    }

    #[test]
    fn a_build_holds_the_tree_as_it_was_at_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let source = db.open_tree("source").unwrap();
        for i in 0..5_000u32 {
            // Records on both sides of the audit blocks' prefix, and audit blocks.
            let prefix = if i % 2 == 0 { b'a' } else { b'z' };
            source.insert([&[prefix][..], &i.to_be_bytes()].concat(), vec![i as u8; (i % 50) as usize]).unwrap();
            source.insert(audit_block(u64::from(i) * 64), vec![7; 300]).unwrap();
        }
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let pending = snapshots.start_build(&source, &meta(10)).unwrap();
        let at_cut = contents(&source);
        // Applies go on after the cut: new audit blocks and other records.
        source.insert(audit_block(u64::MAX - 1), b"after the cut".to_vec()).unwrap();
        source.insert(b"zz after the cut", b"".to_vec()).unwrap();
        pending.finish(&source, &snapshots).unwrap();

        let target = db.open_tree("target").unwrap();
        target.insert(b"stale", b"gone after load").unwrap();
        snapshots.load_current(&target).unwrap();
        assert_eq!(contents(&target), at_cut);

        let reopened = Snapshots::open(dir.path()).unwrap();
        let (found, _) = reopened.open_current().unwrap().unwrap();
        assert_eq!(found, meta(10), "the current snapshot is found again after a restart");
    }

    /// Receives `bytes` as if streamed from a leader and tries to accept them.
    fn receive(snapshots: &Snapshots, bytes: &[u8], meta: &SnapshotMeta) -> Result<(), StoreError> {
        let mut file = snapshots.receive().unwrap();
        file.write_all(bytes).unwrap();
        snapshots.accept_received(file, meta)
    }

    #[test]
    fn only_a_whole_received_snapshot_of_the_announced_log_becomes_current() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("state").unwrap();
        for i in 0..100u32 {
            tree.insert(i.to_be_bytes(), vec![1; 10]).unwrap();
        }
        tree.insert(audit_block(0), vec![2; 10]).unwrap();
        let leader_dir = tempfile::tempdir().unwrap();
        let leader = Snapshots::open(leader_dir.path()).unwrap();
        leader.start_build(&tree, &meta(5)).unwrap().finish(&tree, &leader).unwrap();
        let whole = fs::read(leader_dir.path().join("snapshot.bin")).unwrap();

        let snapshots = Snapshots::open(dir.path()).unwrap();
        let mut wrong_count = whole.clone();
        let last = wrong_count.len() - 1;
        wrong_count[last] ^= 1;
        let mut trailing = whole.clone();
        trailing.push(0);
        for bad in [&whole[..whole.len() - 9], &whole[..whole.len() - 3], &wrong_count, &trailing, b"SRSNAP01"] {
            assert!(matches!(receive(&snapshots, bad, &meta(5)), Err(StoreError::Corrupt)));
            assert!(snapshots.open_current().unwrap().is_none(), "a refused snapshot is not kept");
        }
        assert!(matches!(receive(&snapshots, &whole, &meta(6)), Err(StoreError::Corrupt)), "another log position");

        receive(&snapshots, &whole, &meta(5)).unwrap();
        let target = db.open_tree("target").unwrap();
        snapshots.load_current(&target).unwrap();
        assert_eq!(contents(&target), contents(&tree));
    }

    #[test]
    fn a_build_finished_after_a_newer_install_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("state").unwrap();
        tree.insert(b"k", b"v").unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let older = snapshots.start_build(&tree, &meta(3)).unwrap();
        let leader_dir = tempfile::tempdir().unwrap();
        let leader = Snapshots::open(leader_dir.path()).unwrap();
        leader.start_build(&tree, &meta(9)).unwrap().finish(&tree, &leader).unwrap();
        receive(&snapshots, &fs::read(leader_dir.path().join("snapshot.bin")).unwrap(), &meta(9)).unwrap();
        older.finish(&tree, &snapshots).unwrap();
        assert_eq!(snapshots.open_current().unwrap().unwrap().0, meta(9));
        assert_eq!(Snapshots::open(dir.path()).unwrap().open_current().unwrap().unwrap().0, meta(9));
    }
}
