//! The Raft log's bytes on disk: append-only segment files of checksummed records, one
//! record per log entry, in the data directory's `raft-log/`. The log is the only thing
//! a write waits for: an append is one `write` and each group of appends one
//! `fdatasync`, while the state machine's sled database is flushed in the background
//! (a crash loses at most entries the log still holds, and openraft applies them again).
//!
//! A segment is named by the index of its first entry (`00000000000000000042.seg`); only
//! the last one grows. Each record (`store::framing`) holds one encoded entry. On
//! open, a record cut short or failing its checksum at the end of the last segment is a
//! write a crash interrupted — never acknowledged — and is cut off; anywhere else it is
//! corruption and the log refuses to open.
//!
//! Purging rewrites a segment that holds both purged and kept entries, so removed entries
//! (erasures among them) leave the disk rather than waiting for their whole segment.

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::framing::{push_record, split_record, HEADER};
use crate::store::StoreError;

/// A segment that has grown past this is closed and a new one started.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".seg";
const TEMPORARY: &str = ".tmp";

/// The log's segment files. Appends, truncation and purges come from one caller (Raft's
/// core); reads and syncs may come from other threads at the same time.
pub struct LogFiles {
    dir: PathBuf,
    segments: RwLock<Vec<Segment>>,
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Where each entry's record starts: entry `first + i` at `offsets[i]`.
    offsets: Vec<u64>,
    /// Where the next record goes.
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// The byte range of entries `from..to` (clamped to this segment).
    fn span(&self, from: u64, to: u64) -> Option<(u64, u64)> {
        let start = from.max(self.first);
        let stop = to.min(self.next_index());
        if start >= stop {
            return None;
        }
        let at = |index: u64| {
            let i = (index - self.first) as usize;
            self.offsets.get(i).copied().unwrap_or(self.end)
        };
        Some((at(start), at(stop)))
    }
}

impl LogFiles {
    /// Opens the log in `dir`, creating it when missing, and checks every record.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            sync_dir(dir.parent().unwrap_or(dir))?;
        }
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMPORARY) {
                // A purge's copy that a crash interrupted before it was renamed.
                fs::remove_file(entry.path())?;
            } else if let Some(first) = name.strip_suffix(SUFFIX).and_then(|n| n.parse::<u64>().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(firsts.len());
        for (n, &first) in firsts.iter().enumerate() {
            let segment = scan(dir, first, n + 1 == firsts.len())?;
            match segments.last() {
                Some(previous) if previous.first < first && first < previous.next_index() => {
                    // A purge copied this segment's tail and crashed before deleting it.
                    fs::remove_file(&previous.path)?;
                    segments.pop();
                }
                Some(previous) if previous.next_index() != first => return Err(StoreError::Corrupt),
                _ => {}
            }
            segments.push(segment);
        }
        Ok(LogFiles { dir: dir.to_path_buf(), segments: RwLock::new(segments) })
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Vec<Segment>> {
        self.segments.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Vec<Segment>> {
        self.segments.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The indexes the files hold.
    pub fn indexes(&self) -> Range<u64> {
        let segments = self.read_lock();
        match (segments.first(), segments.last()) {
            (Some(first), Some(last)) => first.first..last.next_index(),
            _ => 0..0,
        }
    }

    /// Writes entries with consecutive indexes after the last one (any index when the
    /// log is empty). Not durable until `sync`.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let Some(&(first_index, _)) = entries.first() else {
            return Ok(());
        };
        let mut segments = self.write_lock();
        match segments.last() {
            Some(last) if last.next_index() != first_index => return Err(StoreError::Corrupt),
            Some(last) if last.end < SEGMENT_BYTES => {}
            // Full: closed durably before the next one starts, so that syncing the last
            // segment covers everything.
            Some(last) => {
                last.file.sync_data()?;
                segments.push(create(&self.dir, first_index)?);
            }
            None => segments.push(create(&self.dir, first_index)?),
        }
        let segment = segments.last_mut().ok_or(StoreError::Corrupt)?;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for (expected, (index, payload)) in (first_index..).zip(entries) {
            if *index != expected {
                return Err(StoreError::Corrupt);
            }
            offsets.push(segment.end + bytes.len() as u64);
            push_record(&mut bytes, *index, payload)?;
        }
        segment.file.write_all_at(&bytes, segment.end)?;
        segment.end += bytes.len() as u64;
        segment.offsets.extend(offsets);
        Ok(())
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        let file = self.read_lock().last().map(|segment| Arc::clone(&segment.file));
        match file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    /// The entries in `range` that the files hold, in order, each decoded from its
    /// payload straight out of the read buffer.
    pub fn read<T>(
        &self,
        range: Range<u64>,
        decode: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut entries = Vec::new();
        let segments = self.read_lock();
        for segment in segments.iter() {
            let Some((start, stop)) = segment.span(range.start, range.end) else {
                continue;
            };
            let mut bytes = vec![0; usize::try_from(stop - start).map_err(|_| StoreError::Corrupt)?];
            segment.file.read_exact_at(&mut bytes, start)?;
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let (_, payload, after) = split_record(rest).ok_or(StoreError::Corrupt)?;
                entries.push(decode(payload)?);
                rest = after;
            }
        }
        Ok(entries)
    }

    /// Removes the entries at `index` and after, durably.
    pub fn truncate(&self, index: u64) -> Result<(), StoreError> {
        let mut segments = self.write_lock();
        let mut removed = false;
        while segments.last().is_some_and(|segment| segment.first >= index) {
            if let Some(segment) = segments.pop() {
                fs::remove_file(&segment.path)?;
                removed = true;
            }
        }
        if let Some(segment) = segments.last_mut() {
            if let Some(&cut) = segment.offsets.get(index.saturating_sub(segment.first) as usize) {
                segment.file.set_len(cut)?;
                segment.file.sync_all()?;
                segment.offsets.truncate((index - segment.first) as usize);
                segment.end = cut;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Removes the entries up to and including `index` from the disk.
    pub fn purge(&self, index: u64) -> Result<(), StoreError> {
        let mut segments = self.write_lock();
        let mut kept = Vec::with_capacity(segments.len());
        for segment in segments.drain(..) {
            if segment.first > index {
                kept.push(segment);
            } else if segment.next_index() <= index + 1 {
                fs::remove_file(&segment.path)?;
            } else {
                kept.push(rewrite_from(&self.dir, &segment, index + 1)?);
                fs::remove_file(&segment.path)?;
            }
        }
        *segments = kept;
        sync_dir(&self.dir)
    }
}

/// A copy of `segment` from entry `first` on, durable under its own name.
fn rewrite_from(dir: &Path, segment: &Segment, first: u64) -> Result<Segment, StoreError> {
    let (start, stop) = segment.span(first, u64::MAX).ok_or(StoreError::Corrupt)?;
    let mut bytes = vec![0; usize::try_from(stop - start).map_err(|_| StoreError::Corrupt)?];
    segment.file.read_exact_at(&mut bytes, start)?;
    let temporary = dir.join(format!("{}{TEMPORARY}", segment_name(first)));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temporary)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_all()?;
    let path = dir.join(segment_name(first));
    fs::rename(&temporary, &path)?;
    sync_dir(dir)?;
    let offsets = segment.offsets[(first - segment.first) as usize..].iter().map(|offset| offset - start).collect();
    Ok(Segment { first, path, file: Arc::new(file), offsets, end: stop - start })
}

fn create(dir: &Path, first: u64) -> Result<Segment, StoreError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    sync_dir(dir)?;
    Ok(Segment { first, path, file: Arc::new(file), offsets: Vec::new(), end: 0 })
}

/// Reads a segment file and indexes its records; `last` allows a torn tail, which is cut.
fn scan(dir: &Path, first: u64, last: bool) -> Result<Segment, StoreError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let bytes = fs::read(&path)?;
    let mut offsets = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let expected = first + offsets.len() as u64;
        match split_record(&bytes[at..]) {
            Some((index, payload, _)) if index == expected => {
                offsets.push(at as u64);
                at += HEADER + payload.len();
            }
            _ if last => {
                tracing::warn!(segment = %path.display(), offset = at, "cutting off an unfinished write at the end of the Raft log");
                file.set_len(at as u64)?;
                file.sync_all()?;
                break;
            }
            _ => return Err(StoreError::Corrupt),
        }
    }
    Ok(Segment { first, path, file: Arc::new(file), offsets, end: at as u64 })
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, format!("entry {i}").into_bytes())).collect()
    }

    fn read(log: &LogFiles, range: Range<u64>) -> Vec<Vec<u8>> {
        log.read(range, |payload| Ok(payload.to_vec())).unwrap()
    }

    fn payloads(range: Range<u64>) -> Vec<Vec<u8>> {
        entries(range).into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn appends_are_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(log.indexes(), 0..0);
        log.append(&entries(1..4)).unwrap();
        log.append(&entries(4..6)).unwrap();
        log.sync().unwrap();
        assert_eq!(read(&log, 2..5), payloads(2..5));
        drop(log);
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(log.indexes(), 1..6);
        assert_eq!(read(&log, 0..100), payloads(1..6));
    }

    #[test]
    fn an_append_out_of_order_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.append(&entries(1..3)).unwrap();
        assert!(log.append(&entries(4..5)).is_err(), "a gap");
        assert!(log.append(&[(3, vec![]), (5, vec![])]).is_err(), "a gap inside the batch");
        assert_eq!(log.indexes(), 1..3, "nothing of a refused append is kept");
    }

    #[test]
    fn a_torn_tail_is_cut_and_corruption_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.append(&entries(1..4)).unwrap();
        drop(log);
        let path = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.truncate(whole - 3);
        fs::write(&path, &bytes).unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(log.indexes(), 1..3, "the cut record is dropped");
        log.append(&entries(3..5)).unwrap();
        assert_eq!(read(&log, 1..5), payloads(1..5));
        drop(log);

        // A flipped byte in the first record of a segment that is not the last.
        let log = LogFiles::open(dir.path()).unwrap();
        log.purge(0).unwrap();
        drop(log);
        fs::write(dir.path().join(segment_name(5)), []).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(LogFiles::open(dir.path()), Err(StoreError::Corrupt)));
    }

    #[test]
    fn truncation_removes_the_tail_durably() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.append(&entries(1..6)).unwrap();
        log.truncate(3).unwrap();
        assert_eq!(log.indexes(), 1..3);
        log.append(&[(3, b"other".to_vec())]).unwrap();
        drop(log);
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(read(&log, 1..10), vec![b"entry 1".to_vec(), b"entry 2".to_vec(), b"other".to_vec()]);
        log.truncate(1).unwrap();
        assert_eq!(log.indexes(), 0..0);
        log.append(&entries(1..2)).unwrap();
        assert_eq!(read(&log, 0..10), payloads(1..2));
    }

    #[test]
    fn purging_removes_entries_from_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.append(&[(1, b"erased secret".to_vec())]).unwrap();
        log.append(&entries(2..5)).unwrap();
        log.purge(2).unwrap();
        assert_eq!(log.indexes(), 3..5);
        assert_eq!(read(&log, 0..10), payloads(3..5));
        for file in fs::read_dir(dir.path()).unwrap() {
            let bytes = fs::read(file.unwrap().path()).unwrap();
            assert!(!bytes.windows(6).any(|w| w == b"secret"), "the purged entry is gone from every file");
        }
        log.append(&entries(5..7)).unwrap();
        drop(log);
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(read(&log, 0..10), payloads(3..7));
        log.purge(6).unwrap();
        assert_eq!(log.indexes(), 0..0, "everything purged");
        log.append(&entries(7..8)).unwrap();
        assert_eq!(log.indexes(), 7..8);
    }

    #[test]
    fn a_purge_interrupted_after_its_copy_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.append(&entries(1..6)).unwrap();
        drop(log);
        let original = fs::read(dir.path().join(segment_name(1))).unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        log.purge(2).unwrap();
        drop(log);
        // As if the crash came after the copy's rename, before the old segment's removal,
        // with another copy still unrenamed.
        fs::write(dir.path().join(segment_name(1)), &original).unwrap();
        fs::write(dir.path().join(format!("{}{TEMPORARY}", segment_name(4))), b"partial").unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(log.indexes(), 3..6);
        assert_eq!(read(&log, 0..10), payloads(3..6));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the leftovers are removed");
    }

    #[test]
    fn a_full_segment_is_closed_and_the_next_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFiles::open(dir.path()).unwrap();
        let big = vec![7u8; (SEGMENT_BYTES / 2) as usize];
        log.append(&[(1, big.clone()), (2, big.clone())]).unwrap();
        log.append(&[(3, b"small".to_vec())]).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        drop(log);
        let log = LogFiles::open(dir.path()).unwrap();
        assert_eq!(log.indexes(), 1..4);
        assert_eq!(read(&log, 2..4), vec![big, b"small".to_vec()]);
        log.purge(2).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the first segment is deleted whole");
        assert_eq!(read(&log, 0..10), vec![b"small".to_vec()]);
    }
}
