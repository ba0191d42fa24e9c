//! Snapshots: the state tree, and how much of the audit trail goes with it. A snapshot
//! lets a node purge its log and lets a new or wiped node catch up without replaying
//! history.
//!
//! On disk a snapshot is `snapshot.bin`: the state tree and the trail's cut (how many
//! events, how many bytes of the trail belong to it). The trail itself is not copied: it
//! only grows, so the cut stays valid, and it is synced up to the cut before the snapshot
//! counts. A build therefore costs the size of the state, never of the audit history, and
//! applies go on while it is written: it reads the tree through a cut (`store::Cut`),
//! which sees the tree as it was when the build started.
//!
//! Sent to another node, a snapshot is one stream: `snapshot.bin`, then the trail's bytes
//! up to the cut. The receiving node writes the stream to `snapshot.incoming`, checks it
//! whole and keeps it as `snapshot.received` until it is installed: its trail part
//! replaces the node's trail, the rest becomes the node's `snapshot.bin` and is loaded
//! into its tree. Every file is written under a temporary name, synced and renamed, so a
//! crash leaves the old version or the new one, never half of one.
//!
//! Format of `snapshot.bin`: `SRSNAP03`, then length-prefixed records (u32 big-endian
//! length, bytes): the postcard-encoded `SnapshotMeta`, the postcard-encoded `TrailCut`,
//! then key, value, key, value, ... of the state tree; then a trailer, the length
//! `u32::MAX` and the number of key-value pairs (u64 big-endian). A file without its
//! trailer, or with another count, is refused.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::snapshot_stream::{Parts, SnapshotData};
use super::types::SnapshotMeta;
use crate::store::{decode, encode, AuditTrail, Cut, StoreError, TrailCut};

const MAGIC: &[u8; 8] = b"SRSNAP03";
/// The length that marks the trailer instead of a record.
const TRAILER: u32 = u32::MAX;
/// Inserts per sled batch while loading a snapshot.
const LOAD_BATCH: usize = 4096;
/// Buffer for reading and writing snapshot files.
const BUFFER: usize = 1 << 20;

/// A node's snapshot files.
pub struct Snapshots {
    dir: PathBuf,
    current: PathBuf,
    incoming: PathBuf,
    received: PathBuf,
    /// The current snapshot's meta and cut; also serialises replacing the current file.
    current_header: Mutex<Option<Header>>,
}

/// What a snapshot file starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub meta: SnapshotMeta,
    pub cut: TrailCut,
}

impl Snapshots {
    /// Finds the current snapshot in `data_dir`; removes files that a crash left half
    /// written. A received snapshot that awaits installation is kept.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let snapshots = Snapshots {
            dir: data_dir.to_path_buf(),
            current: data_dir.join("snapshot.bin"),
            incoming: data_dir.join("snapshot.incoming"),
            received: data_dir.join("snapshot.received"),
            current_header: Mutex::new(None),
        };
        for entry in fs::read_dir(data_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "building") {
                remove_if_present(&path)?;
            }
        }
        remove_if_present(&snapshots.incoming)?;
        remove_if_present(&snapshots.current.with_extension("tmp"))?;
        let header = match open_if_present(&snapshots.current)? {
            Some(file) => Some(Records::new(BufReader::new(file))?.header()?),
            None => None,
        };
        *snapshots.lock_current() = header;
        Ok(snapshots)
    }

    fn lock_current(&self) -> MutexGuard<'_, Option<Header>> {
        self.current_header.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current snapshot's meta and cut.
    pub fn current(&self) -> Option<Header> {
        self.lock_current().clone()
    }

    /// The current snapshot as a stream to send: its file, then `trail` up to its cut.
    pub fn open_current(&self, trail: &AuditTrail) -> Result<Option<(SnapshotMeta, SnapshotData)>, StoreError> {
        let current = self.lock_current();
        let Some(header) = current.as_ref() else {
            return Ok(None);
        };
        let data = stream(File::open(&self.current)?, trail, header.cut)?;
        Ok(Some((header.meta.clone(), data)))
    }

    /// The current snapshot's two parts, opened for a backup: they stay readable while
    /// newer snapshots replace this one (by rename) and the trail grows.
    pub fn open_parts(&self, trail: &AuditTrail) -> Result<Option<SnapshotParts>, StoreError> {
        let current = self.lock_current();
        let Some(header) = current.as_ref() else {
            return Ok(None);
        };
        let state = File::open(&self.current)?;
        let state_bytes = state.metadata()?.len();
        Ok(Some(SnapshotParts {
            header: header.clone(),
            state,
            state_bytes,
            trail: trail.open_data()?,
            trail_bytes: header.cut.bytes,
        }))
    }

    /// Starts a snapshot of the tree as `cut` holds it, which goes with the trail up to
    /// `header.cut`; `PendingBuild::finish` writes it while applies go on.
    pub fn start_build(&self, header: Header, cut: Cut) -> PendingBuild {
        let path = self.dir.join(format!("snapshot-{}.building", header.meta.snapshot_id));
        PendingBuild { path, header, cut }
    }

    /// A fresh file to receive a snapshot from the leader into.
    pub fn receive(&self) -> Result<File, StoreError> {
        remove_if_present(&self.incoming)?;
        Ok(File::options().read(true).write(true).create_new(true).open(&self.incoming)?)
    }

    /// Keeps a received snapshot for installation, after checking that it is whole, that
    /// it is the snapshot `meta` describes and that it is newer than the current one.
    pub fn accept_received(&self, mut file: File, meta: &SnapshotMeta) -> Result<(), StoreError> {
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
        let length = file.metadata()?.len();
        let (header, state_bytes) = read_whole(BufReader::with_capacity(BUFFER, file))?;
        if header.meta.last_log_id != meta.last_log_id || state_bytes.checked_add(header.cut.bytes) != Some(length) {
            return Err(StoreError::Corrupt);
        }
        if self.lock_current().as_ref().is_some_and(|current| current.meta.last_log_id > meta.last_log_id) {
            return Err(StoreError::Corrupt);
        }
        fs::rename(&self.incoming, &self.received)?;
        sync_dir(&self.dir)
    }

    /// Whether a received snapshot awaits installation.
    pub fn has_received(&self) -> bool {
        self.received.exists()
    }

    /// Removes a received snapshot that will not be installed.
    pub fn discard_received(&self) -> Result<(), StoreError> {
        remove_if_present(&self.received)
    }

    /// Moves the received snapshot into place: its trail replaces `trail`, its state
    /// becomes the current snapshot. Can be repeated after a crash until it completes.
    pub fn install_received(&self, trail: &AuditTrail) -> Result<(), StoreError> {
        let mut current = self.lock_current();
        let (header, state_bytes) = read_whole(BufReader::with_capacity(BUFFER, File::open(&self.received)?))?;
        let mut source = File::open(&self.received)?;
        source.seek(SeekFrom::Start(state_bytes))?;
        if trail.replace(BufReader::with_capacity(BUFFER, source), header.cut.bytes)? != header.cut {
            return Err(StoreError::Corrupt);
        }
        let temporary = self.current.with_extension("tmp");
        let mut out = BufWriter::with_capacity(BUFFER, File::create(&temporary)?);
        std::io::copy(&mut File::open(&self.received)?.take(state_bytes), &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&temporary, &self.current)?;
        *current = Some(header);
        fs::remove_file(&self.received)?;
        sync_dir(&self.dir)
    }

    /// Replaces the tree's contents with the current snapshot's and cuts the trail back
    /// to the snapshot's cut; with no snapshot, empties both. Not atomic: the caller marks
    /// the load as in progress and redoes it after a crash.
    pub fn load_current(&self, tree: &sled::Tree, trail: &AuditTrail) -> Result<(), StoreError> {
        let Some(header) = self.current() else {
            tree.clear()?;
            return trail.truncate(TrailCut::default());
        };
        trail.truncate(header.cut)?;
        let mut records = Records::new(BufReader::with_capacity(BUFFER, File::open(&self.current)?))?;
        records.header()?;
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

    /// Renames `path` to the current snapshot unless the current one is newer (a
    /// snapshot installed while this one was being built); then `path` is removed and
    /// the answer is false.
    fn publish(&self, path: &Path, header: &Header) -> Result<bool, StoreError> {
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|c| c.meta.last_log_id > header.meta.last_log_id) {
            fs::remove_file(path)?;
            return Ok(false);
        }
        fs::rename(path, &self.current)?;
        sync_dir(&self.dir)?;
        *current = Some(header.clone());
        Ok(true)
    }
}

/// A snapshot's state file and the trail up to its cut, each with its length.
pub struct SnapshotParts {
    pub header: Header,
    pub state: File,
    pub state_bytes: u64,
    pub trail: File,
    pub trail_bytes: u64,
}

/// A snapshot started at a cut of the tree, not yet written.
pub struct PendingBuild {
    path: PathBuf,
    header: Header,
    cut: Cut,
}

impl PendingBuild {
    /// Writes the snapshot, syncs the trail up to the cut and the file, makes the
    /// snapshot current and returns it as a stream to send. If a snapshot was installed
    /// since the cut, that one is returned instead. A build that fails leaves no file.
    pub fn finish(
        self,
        tree: &sled::Tree,
        snapshots: &Snapshots,
        trail: &AuditTrail,
    ) -> Result<(SnapshotMeta, SnapshotData), StoreError> {
        let path = self.path.clone();
        let finished = self.write(tree, snapshots, trail);
        if !matches!(finished, Ok(Some(_))) {
            remove_if_present(&path)?;
        }
        match finished? {
            Some(built) => Ok(built),
            None => {
                tracing::info!("a snapshot was installed while this one was being built; this one is not kept");
                snapshots.open_current(trail)?.ok_or(StoreError::Corrupt)
            }
        }
    }

    /// The snapshot, or `None` if the tree was replaced since the cut.
    fn write(
        self,
        tree: &sled::Tree,
        snapshots: &Snapshots,
        trail: &AuditTrail,
    ) -> Result<Option<(SnapshotMeta, SnapshotData)>, StoreError> {
        let Some(file) = write_snapshot(&self.path, tree, &self.header, &self.cut)? else {
            return Ok(None);
        };
        drop(self.cut);
        trail.sync()?;
        file.sync_all()?;
        if !snapshots.publish(&self.path, &self.header)? {
            return Ok(None);
        }
        Ok(Some((self.header.meta, stream(file, trail, self.header.cut)?)))
    }
}

/// A snapshot file and the trail up to its cut, as one stream.
fn stream(state: File, trail: &AuditTrail, cut: TrailCut) -> Result<SnapshotData, StoreError> {
    let state_bytes = state.metadata()?.len();
    Ok(SnapshotData::Sending(Parts::new(vec![(state, state_bytes), (trail.open_data()?, cut.bytes)])))
}

/// Writes a snapshot file of the tree as `cut` holds it; `None` if the tree was replaced
/// since the cut.
fn write_snapshot(path: &Path, tree: &sled::Tree, header: &Header, cut: &Cut) -> Result<Option<File>, StoreError> {
    let file = File::options().read(true).write(true).create(true).truncate(true).open(path)?;
    let mut out = BufWriter::with_capacity(BUFFER, file);
    out.write_all(MAGIC)?;
    write_record(&mut out, &encode(&header.meta)?)?;
    write_record(&mut out, &encode(&header.cut)?)?;
    let mut pairs = 0u64;
    let whole = cut.walk(tree, |key, value| {
        write_record(&mut out, key)?;
        write_record(&mut out, value)?;
        pairs += 1;
        Ok(())
    })?;
    if !whole {
        return Ok(None);
    }
    out.write_all(&TRAILER.to_be_bytes())?;
    out.write_all(&pairs.to_be_bytes())?;
    Ok(Some(out.into_inner().map_err(|e| e.into_error())?))
}

fn write_record(out: &mut impl Write, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).ok().filter(|&len| len != TRAILER).ok_or(StoreError::Encoding)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Reads a snapshot file's key-value pairs in order, checking the framing and the
/// trailer; returns its header.
pub fn read_pairs(
    input: impl Read,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<Header, StoreError> {
    let mut records = Records::new(input)?;
    let header = records.header()?;
    while let Some(key) = records.next_record()? {
        let value = records.next_record()?.ok_or(StoreError::Corrupt)?;
        each(&key, &value)?;
    }
    Ok(header)
}

/// Reads a snapshot's header and records up to the trailer, checking them; returns the
/// header and how many bytes the state part takes (where the trail part starts).
fn read_whole(input: impl Read) -> Result<(Header, u64), StoreError> {
    let mut records = Records::new(input)?;
    let header = records.header()?;
    while records.next_record()?.is_some() {}
    Ok((header, records.consumed))
}

/// Reads a snapshot's records in order, checking the framing and, at the end, the
/// trailer.
struct Records<R> {
    input: R,
    /// Records read after the header.
    records: u64,
    /// Bytes read so far.
    consumed: u64,
    finished: bool,
}

impl<R: Read> Records<R> {
    fn new(mut input: R) -> Result<Self, StoreError> {
        let mut magic = [0; 8];
        input.read_exact(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err(StoreError::Corrupt);
        }
        Ok(Records { input, records: 0, consumed: MAGIC.len() as u64, finished: false })
    }

    fn header(&mut self) -> Result<Header, StoreError> {
        let meta = decode(&self.next_record()?.ok_or(StoreError::Corrupt)?)?;
        let cut = decode(&self.next_record()?.ok_or(StoreError::Corrupt)?)?;
        self.records = 0;
        Ok(Header { meta, cut })
    }

    /// The next record; `None` after a trailer that matches what was read.
    fn next_record(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.read_array()?);
        if len == TRAILER {
            let pairs = u64::from_be_bytes(self.read_array()?);
            if self.records % 2 != 0 || self.records / 2 != pairs {
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
        self.consumed += u64::from(len);
        Ok(Some(record))
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut bytes = [0; N];
        self.input.read_exact(&mut bytes).map_err(truncated)?;
        self.consumed += N as u64;
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

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};
    use tokio::io::AsyncReadExt;

    use std::sync::Arc;

    use super::*;
    use crate::audit::sample_events as events;
    use crate::store::TreeCuts;

    /// A node's state: a sled tree and an audit trail in `dir`.
    struct Node {
        _db: sled::Db,
        tree: sled::Tree,
        trail: AuditTrail,
        snapshots: Snapshots,
        cuts: Arc<TreeCuts>,
    }

    impl Node {
        /// Builds a snapshot of the tree as it is now, at log index `index`.
        fn build(&self, index: u64) -> PendingBuild {
            self.snapshots.start_build(header(self, index), self.cuts.take())
        }

        fn finish(&self, pending: PendingBuild) -> (SnapshotMeta, SnapshotData) {
            pending.finish(&self.tree, &self.snapshots, &self.trail).unwrap()
        }

        /// A write as the state machine makes it.
        fn insert(&self, key: &[u8], value: &[u8]) {
            self.cuts.before_writes(&self.tree, [key].into_iter()).unwrap();
            self.tree.insert(key, value).unwrap();
        }
    }

    fn node(dir: &Path) -> Node {
        let db = sled::open(dir.join("db")).unwrap();
        let tree = db.open_tree("state").unwrap();
        let trail = AuditTrail::open(&dir.join("audit")).unwrap();
        Node { _db: db, tree, trail, snapshots: Snapshots::open(dir).unwrap(), cuts: Arc::default() }
    }

    fn header(node: &Node, index: u64) -> Header {
        let last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 1), index));
        let meta = SnapshotMeta { last_log_id, snapshot_id: format!("1-{index}-1"), ..Default::default() };
        Header { meta, cut: node.trail.cut() }
    }

    fn contents(tree: &sled::Tree) -> Vec<(sled::IVec, sled::IVec)> {
        tree.iter().map(Result::unwrap).collect()
    }

    async fn bytes_of(data: SnapshotData) -> Vec<u8> {
        let mut data = data;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    /// Receives `bytes` as if streamed from a leader and tries to accept them.
    fn receive(node: &Node, bytes: &[u8], meta: &SnapshotMeta) -> Result<(), StoreError> {
        let mut file = node.snapshots.receive().unwrap();
        file.write_all(bytes).unwrap();
        node.snapshots.accept_received(file, meta)
    }

    /// A leader with state and 300 audit events, and the snapshot it built of them.
    async fn leader_with_snapshot(dir: &Path) -> (Node, Header, Vec<u8>) {
        let leader = node(dir);
        for i in 0..2_000u32 {
            leader.tree.insert(i.to_be_bytes(), vec![i as u8; (i % 50) as usize]).unwrap();
        }
        leader.trail.append(&events(1..301)).unwrap();
        let header = header(&leader, 10);
        let (meta, data) = leader.finish(leader.build(10));
        assert_eq!(meta, header.meta);
        (leader, header, bytes_of(data).await)
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_tree_and_the_trail_at_its_cut_to_another_node() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (leader, header, built) = leader_with_snapshot(leader_dir.path()).await;
        let at_cut = contents(&leader.tree);
        // Applies go on after the cut; the snapshot does not change.
        leader.insert(b"after the cut", b"");
        leader.trail.append(&events(301..302)).unwrap();
        let (meta, current) = leader.snapshots.open_current(&leader.trail).unwrap().unwrap();
        assert_eq!(meta, header.meta);
        assert_eq!(bytes_of(current).await, built, "sent as built, whatever was applied since");
        let state_bytes = fs::metadata(leader_dir.path().join("snapshot.bin")).unwrap().len();
        assert_eq!(built.len() as u64, state_bytes + header.cut.bytes, "the trail is streamed, not copied");

        let follower_dir = tempfile::tempdir().unwrap();
        let follower = node(follower_dir.path());
        follower.tree.insert(b"stale", b"gone after install").unwrap();
        follower.trail.append(&events(1..5)).unwrap();
        receive(&follower, &built, &header.meta).unwrap();
        assert!(follower.snapshots.has_received());
        follower.snapshots.install_received(&follower.trail).unwrap();
        follower.snapshots.load_current(&follower.tree, &follower.trail).unwrap();
        assert_eq!(contents(&follower.tree), at_cut);
        assert_eq!(follower.trail.read(1..u64::MAX).unwrap(), events(1..301));
        assert!(!follower.snapshots.has_received());

        let reopened = Snapshots::open(follower_dir.path()).unwrap();
        assert_eq!(reopened.current(), Some(header), "the installed snapshot is current after a restart");
        let (_, resent) = reopened.open_current(&follower.trail).unwrap().unwrap();
        assert_eq!(bytes_of(resent).await, built, "the follower can send it on");
    }

    #[tokio::test]
    async fn only_a_whole_received_snapshot_of_the_announced_log_is_kept() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (_leader, header, whole) = leader_with_snapshot(leader_dir.path()).await;
        let dir = tempfile::tempdir().unwrap();
        let follower = node(dir.path());
        let state_bytes = whole.len() - header.cut.bytes as usize;
        let mut wrong_count = whole.clone();
        wrong_count[state_bytes - 1] ^= 1;
        let mut trailing = whole.clone();
        trailing.push(0);
        let refused: [&[u8]; 5] =
            [&whole[..whole.len() - 3], &whole[..state_bytes - 9], &wrong_count, &trailing, b"SRSNAP02"];
        for bad in refused {
            assert!(matches!(receive(&follower, bad, &header.meta), Err(StoreError::Corrupt)));
            assert!(!follower.snapshots.has_received(), "a refused snapshot is not kept");
        }
        let mut other = header.meta.clone();
        other.last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 1), 11));
        assert!(matches!(receive(&follower, &whole, &other), Err(StoreError::Corrupt)), "another log position");
        receive(&follower, &whole, &header.meta).unwrap();
    }

    #[tokio::test]
    async fn an_install_cut_short_by_a_crash_is_done_again() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (leader, header, whole) = leader_with_snapshot(leader_dir.path()).await;
        let dir = tempfile::tempdir().unwrap();
        let follower = node(dir.path());
        receive(&follower, &whole, &header.meta).unwrap();
        // A crash after the trail was replaced, before the state file was.
        let state_bytes = whole.len() - header.cut.bytes as usize;
        follower.trail.replace(&whole[state_bytes..], header.cut.bytes).unwrap();
        let restarted = Snapshots::open(dir.path()).unwrap();
        assert!(restarted.has_received() && restarted.current().is_none());
        restarted.install_received(&follower.trail).unwrap();
        restarted.load_current(&follower.tree, &follower.trail).unwrap();
        assert_eq!(contents(&follower.tree), contents(&leader.tree));
        assert_eq!(follower.trail.cut(), header.cut);
        assert_eq!(Snapshots::open(dir.path()).unwrap().current(), Some(header));
    }

    #[tokio::test]
    async fn a_build_holds_the_tree_as_it_was_when_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path());
        for i in 0..5_000u32 {
            node.insert(&i.to_be_bytes(), &[1; 40]);
        }
        node.trail.append(&events(1..11)).unwrap();
        let at_start = contents(&node.tree);
        let pending = node.build(7);
        // Applies go on while the build waits to be written.
        for i in (0..10_000u32).step_by(7) {
            node.insert(&i.to_be_bytes(), b"changed after the start");
            node.cuts.before_writes(&node.tree, [&(i + 1).to_be_bytes()[..]].into_iter()).unwrap();
            node.tree.remove((i + 1).to_be_bytes()).unwrap();
        }
        node.trail.append(&events(11..20)).unwrap();
        node.finish(pending);
        let copy_dir = tempfile::tempdir().unwrap();
        let copy = super::tests::node(copy_dir.path());
        node.snapshots.load_current(&copy.tree, &node.trail).unwrap();
        assert_eq!(contents(&copy.tree), at_start);
        assert_eq!(node.trail.read(1..100).unwrap(), events(1..11), "the trail is cut back to the snapshot's cut");
    }

    #[tokio::test]
    async fn loading_a_snapshot_cuts_the_trail_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path());
        node.insert(b"k", b"at the snapshot");
        node.trail.append(&events(1..11)).unwrap();
        let header = header(&node, 3);
        node.finish(node.build(3));
        node.insert(b"k", b"after");
        node.trail.append(&events(11..20)).unwrap();
        node.snapshots.load_current(&node.tree, &node.trail).unwrap();
        assert_eq!(node.tree.get(b"k").unwrap().as_deref(), Some(&b"at the snapshot"[..]));
        assert_eq!(node.trail.cut(), header.cut);

        let empty_dir = tempfile::tempdir().unwrap();
        let empty = super::tests::node(empty_dir.path());
        empty.tree.insert(b"k", b"v").unwrap();
        empty.trail.append(&events(1..3)).unwrap();
        empty.snapshots.load_current(&empty.tree, &empty.trail).unwrap();
        assert!(contents(&empty.tree).is_empty() && empty.trail.cut() == TrailCut::default(), "no snapshot: nothing");
    }

    #[tokio::test]
    async fn a_build_finished_after_a_newer_install_gives_way_to_it() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (_leader, newer, whole) = leader_with_snapshot(leader_dir.path()).await;
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path());
        node.insert(b"k", b"v");
        // Installed before the older build is written, and after it is written.
        for replace_tree in [true, false] {
            let older = node.build(3);
            receive(&node, &whole, &newer.meta).unwrap();
            node.snapshots.install_received(&node.trail).unwrap();
            if replace_tree {
                let _rewriting = node.cuts.rewriting();
                node.snapshots.load_current(&node.tree, &node.trail).unwrap();
            }
            let (meta, data) = node.finish(older);
            assert_eq!(meta, newer.meta, "the installed snapshot is the current one");
            assert_eq!(bytes_of(data).await, whole);
            assert_eq!(Snapshots::open(dir.path()).unwrap().current(), Some(newer.clone()));
            assert!(!dir.path().join("snapshot-1-3-1.building").exists(), "the older build leaves no file");
        }
    }
}
