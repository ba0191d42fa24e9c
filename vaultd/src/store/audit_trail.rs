//! The audit trail on disk: every chained event in sequence order, appended to one file
//! (`DATA_DIR/audit/events.log`), beside an index of where each event starts
//! (`events.idx`, eight bytes per event, so memory does not grow with the history).
//!
//! The trail only ever grows, so it lives outside sled (which rewrites pages as they
//! change, and would carry every event in its redo record and page rewrites) and outside
//! snapshot files: a snapshot records how much of the trail it covers (its cut), and
//! sending it streams that prefix of this file after the rest of the state.
//!
//! Each record (`store::framing`) holds one event as JSON under its sequence number. The
//! index holds the offset of record `n` at byte `8 * (n - 1)`.
//!
//! Appends are not synced here. The state machine keeps the trail in step with the state
//! that names its head (`StateMachine::trail_holds_state`), and a snapshot syncs the trail
//! up to its cut before it counts.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::framing::{checksum, push_record, split_header, split_record, HEADER};
use super::StoreError;
use crate::audit::AuditEvent;

const DATA: &str = "events.log";
const INDEX: &str = "events.idx";
const TEMPORARY: &str = ".tmp";
/// Records read at a time when the trail is walked.
const CHUNK_RECORDS: u64 = 2048;
/// Read buffer when the index is rebuilt.
const BUFFER: usize = 1 << 20;

/// How much of the trail a snapshot covers: its first `events` events, which are the first
/// `bytes` bytes of the data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrailCut {
    pub events: u64,
    pub bytes: u64,
}

pub struct AuditTrail {
    dir: PathBuf,
    files: RwLock<Files>,
}

struct Files {
    data: Arc<File>,
    index: Arc<File>,
    /// Records held. Record `n` holds event `n` unless the files were tampered with.
    records: u64,
    /// The sequence number of the last record's event (0: none).
    last_seq: u64,
    /// Where the next record goes.
    end: u64,
}

impl AuditTrail {
    /// Opens the trail in `dir`, creating it when missing. A record or index entry that a
    /// crash left unfinished at the end is cut off; the index is rebuilt from the data
    /// file when it is missing (an installed snapshot's trail).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            sync_dir(dir.parent().unwrap_or(dir))?;
        }
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_str().is_some_and(|p| p.ends_with(TEMPORARY)) {
                fs::remove_file(&path)?;
            }
        }
        if !dir.join(INDEX).exists() {
            rebuild_index(dir)?;
        }
        let data = Arc::new(OpenOptions::new().read(true).write(true).open(dir.join(DATA))?);
        let index = Arc::new(OpenOptions::new().read(true).write(true).open(dir.join(INDEX))?);
        let mut files = Files { data, index, records: 0, last_seq: 0, end: 0 };
        // The last indexed record that is whole; entries after it point at records that
        // never reached the disk.
        let data_len = files.data.metadata()?.len();
        let mut records = files.index.metadata()?.len() / 8;
        while records > 0 {
            let offset = files.index_entry(records)?;
            if let Some((seq, length)) = read_header_at(&files.data, offset, data_len)? {
                (files.last_seq, files.end) = (seq, offset + length);
                break;
            }
            records -= 1;
        }
        files.records = records;
        if files.index.metadata()?.len() != records * 8 || data_len != files.end {
            tracing::warn!(records, "cutting off unfinished writes at the end of the audit trail");
            files.shorten()?;
        }
        Ok(AuditTrail { dir: dir.to_path_buf(), files: RwLock::new(files) })
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Files> {
        self.files.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Files> {
        self.files.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sequence number of the last event held (0: none).
    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.read_lock().last_seq
    }

    /// The trail as it is now, as a snapshot's cut.
    pub fn cut(&self) -> TrailCut {
        let files = self.read_lock();
        TrailCut { events: files.records, bytes: files.end }
    }

    /// Appends events that follow the last one held. Not durable until `sync`.
    pub fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
        if events.windows(2).any(|pair| pair[1].seq != pair[0].seq + 1) {
            return Err(StoreError::Corrupt);
        }
        let mut data = Vec::with_capacity(events.len() * 512);
        let mut starts = Vec::with_capacity(events.len());
        for event in events {
            starts.push(data.len() as u64);
            let payload = serde_json::to_vec(event).map_err(|_| StoreError::Encoding)?;
            push_record(&mut data, event.seq, &payload)?;
        }
        let mut files = self.write_lock();
        if first.seq != files.last_seq + 1 {
            return Err(StoreError::Corrupt);
        }
        let index: Vec<u8> = starts.iter().flat_map(|start| (files.end + start).to_le_bytes()).collect();
        files.data.write_all_at(&data, files.end)?;
        files.index.write_all_at(&index, files.records * 8)?;
        files.records += events.len() as u64;
        files.end += data.len() as u64;
        files.last_seq = last.seq;
        Ok(())
    }

    /// Makes every append so far durable. Appends go on meanwhile.
    pub fn sync(&self) -> std::io::Result<()> {
        let (data, index) = {
            let files = self.read_lock();
            (Arc::clone(&files.data), Arc::clone(&files.index))
        };
        data.sync_data()?;
        index.sync_data()
    }

    /// Removes, durably, the events after event `seq` (appended by a transaction that a
    /// crash kept from being stored) and returns event `seq`; `None` when the trail ends
    /// before it.
    pub fn keep_through(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        let mut files = self.write_lock();
        let mut records = files.records;
        let mut kept = None;
        while records > 0 {
            let (at, next) = (files.index_entry(records)?, files.record_end(records)?);
            let mut record = vec![0u8; usize::try_from(next - at).map_err(|_| StoreError::Corrupt)?];
            files.data.read_exact_at(&mut record, at)?;
            let event = decode_record(&record).ok_or(StoreError::Corrupt)?;
            if event.seq <= seq {
                kept = Some(event);
                break;
            }
            records -= 1;
        }
        if records < files.records {
            files.end = files.index_entry(records + 1)?;
            files.records = records;
            files.last_seq = kept.as_ref().map_or(0, |event| event.seq);
            files.shorten()?;
        }
        Ok(kept.filter(|event| event.seq == seq))
    }

    /// Keeps the first `records` records (a snapshot's cut) and removes the rest, durably.
    pub fn truncate(&self, cut: TrailCut) -> Result<(), StoreError> {
        let mut files = self.write_lock();
        if cut.events > files.records || (cut.events < files.records && files.index_entry(cut.events + 1)? != cut.bytes)
        {
            return Err(StoreError::Corrupt);
        }
        if cut.events < files.records {
            files.last_seq = match cut.events {
                0 => 0,
                n => read_header_at(&files.data, files.index_entry(n)?, cut.bytes)?.ok_or(StoreError::Corrupt)?.0,
            };
            (files.records, files.end) = (cut.events, cut.bytes);
            files.shorten()?;
        }
        Ok(())
    }

    /// The event with this sequence number, if the trail holds it.
    pub fn get(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        Ok(self.read(seq..seq.saturating_add(1))?.pop())
    }

    /// The events with sequence numbers in `range` that the trail holds, in order.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        let mut corrupt = None;
        self.walk(range, |position, event| match event {
            Some(event) if event.seq == position => events.push(event),
            _ => corrupt = corrupt.or(Some(position)),
        })?;
        match corrupt {
            Some(seq) => {
                tracing::error!(seq, "an audit event on disk cannot be read");
                Err(StoreError::Corrupt)
            }
            None => Ok(events),
        }
    }

    /// Calls `visit` with each record in `positions` (1 is the first) the trail holds, in
    /// order, reading the files a chunk at a time: its position and its event, or `None`
    /// for a record that does not decode or fails its checksum.
    pub fn walk(
        &self,
        positions: Range<u64>,
        mut visit: impl FnMut(u64, Option<AuditEvent>),
    ) -> Result<(), StoreError> {
        let mut from = positions.start.max(1);
        loop {
            // The lock is held for one chunk's reads: appends wait for a chunk, never for a
            // whole walk (a verification reads the entire trail).
            let (stop, start, bounds, bytes) = {
                let files = self.read_lock();
                let to = positions.end.min(files.records + 1);
                if from >= to {
                    return Ok(());
                }
                let stop = to.min(from + CHUNK_RECORDS);
                // Where records `from..stop` start, and where the last one ends.
                let mut entries = vec![0u8; ((stop - from) * 8) as usize];
                files.index.read_exact_at(&mut entries, (from - 1) * 8)?;
                let mut bounds: Vec<u64> = entries
                    .chunks_exact(8)
                    .map(|entry| u64::from_le_bytes(entry.try_into().unwrap_or_default()))
                    .collect();
                bounds.push(files.record_end(stop - 1)?);
                let start = bounds[0];
                let length = bounds[bounds.len() - 1].checked_sub(start).ok_or(StoreError::Corrupt)?;
                let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| StoreError::Corrupt)?];
                files.data.read_exact_at(&mut bytes, start)?;
                (stop, start, bounds, bytes)
            };
            for (position, edges) in (from..stop).zip(bounds.windows(2)) {
                let record = edges[0]
                    .checked_sub(start)
                    .zip(edges[1].checked_sub(start))
                    .and_then(|(a, b)| bytes.get(a as usize..b as usize));
                visit(position, record.and_then(decode_record));
            }
            from = stop;
        }
    }

    /// The data file, opened for reading a snapshot's prefix of it. It stays readable
    /// even if an installed snapshot replaces the trail meanwhile.
    pub fn open_data(&self) -> Result<File, StoreError> {
        Ok(File::open(self.dir.join(DATA))?)
    }

    /// Replaces the whole trail with the first `bytes` bytes `source` yields (a snapshot's
    /// trail from the leader), durably; refuses a trail that is cut short or whose records
    /// are out of order.
    pub fn replace(&self, source: impl Read, bytes: u64) -> Result<TrailCut, StoreError> {
        let mut files = self.write_lock();
        let temporary = self.dir.join(format!("{DATA}{TEMPORARY}"));
        let mut out = BufWriter::new(File::create(&temporary)?);
        let copied = std::io::copy(&mut source.take(bytes), &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        if copied != bytes {
            fs::remove_file(&temporary)?;
            return Err(StoreError::Corrupt);
        }
        // Without its index the old trail is not used again, even if a crash comes next:
        // `open` rebuilds the index from whichever data file is in place.
        fs::remove_file(self.dir.join(INDEX))?;
        sync_dir(&self.dir)?;
        fs::rename(&temporary, self.dir.join(DATA))?;
        sync_dir(&self.dir)?;
        let (cut, last_seq) = rebuild_index(&self.dir)?;
        let data = Arc::new(OpenOptions::new().read(true).write(true).open(self.dir.join(DATA))?);
        let index = Arc::new(OpenOptions::new().read(true).write(true).open(self.dir.join(INDEX))?);
        *files = Files { data, index, records: cut.events, last_seq, end: cut.bytes };
        if cut.bytes != bytes {
            return Err(StoreError::Corrupt);
        }
        Ok(cut)
    }

    /// Replaces the trail with records of exactly `events`, whatever they hold.
    pub fn rewrite(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        for event in events {
            let payload = serde_json::to_vec(event).map_err(|_| StoreError::Encoding)?;
            push_record(&mut bytes, event.seq, &payload)?;
        }
        self.replace(bytes.as_slice(), bytes.len() as u64).map(drop)
    }
}

impl Files {
    /// Where record `position` starts.
    fn index_entry(&self, position: u64) -> Result<u64, StoreError> {
        let mut bytes = [0u8; 8];
        self.index.read_exact_at(&mut bytes, position.checked_sub(1).ok_or(StoreError::Corrupt)? * 8)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Where record `position` ends.
    fn record_end(&self, position: u64) -> Result<u64, StoreError> {
        if position >= self.records {
            Ok(self.end)
        } else {
            self.index_entry(position + 1)
        }
    }

    /// Shortens both files to what `records` and `end` say, durably.
    fn shorten(&mut self) -> Result<(), StoreError> {
        self.index.set_len(self.records * 8)?;
        self.data.set_len(self.end)?;
        self.index.sync_all()?;
        self.data.sync_all()?;
        Ok(())
    }
}

/// Writes the index of the data file in `dir` from its records, cutting off a record the
/// file ends in the middle of; returns what the trail holds and its last event's
/// sequence number.
fn rebuild_index(dir: &Path) -> Result<(TrailCut, u64), StoreError> {
    let data_path = dir.join(DATA);
    let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&data_path)?;
    let mut input = BufReader::with_capacity(BUFFER, &data);
    let temporary = dir.join(format!("{INDEX}{TEMPORARY}"));
    let mut index = BufWriter::with_capacity(BUFFER, File::create(&temporary)?);
    let mut cut = TrailCut::default();
    let mut last_seq = 0;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if !read_whole(&mut input, &mut header)? {
            break;
        }
        let (length, crc, seq) = split_header(&header);
        payload.resize(length as usize, 0);
        if !read_whole(&mut input, &mut payload)? || crc != checksum(seq, &payload) {
            break;
        }
        if seq <= last_seq {
            return Err(StoreError::Corrupt);
        }
        index.write_all(&cut.bytes.to_le_bytes())?;
        cut.events += 1;
        cut.bytes += (HEADER + payload.len()) as u64;
        last_seq = seq;
    }
    drop(input);
    if data.metadata()?.len() != cut.bytes {
        tracing::warn!(records = cut.events, "cutting off an unfinished write at the end of the audit trail");
        data.set_len(cut.bytes)?;
    }
    data.sync_all()?;
    let index = index.into_inner().map_err(|e| e.into_error())?;
    index.sync_all()?;
    fs::rename(&temporary, dir.join(INDEX))?;
    sync_dir(dir)?;
    Ok((cut, last_seq))
}

/// Fills `buffer` from `input`; false if the input ends first.
fn read_whole(input: &mut impl Read, buffer: &mut [u8]) -> Result<bool, StoreError> {
    match input.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The sequence number and whole length of the record at `offset`, if one is there,
/// ends by `data_len` and its checksum matches.
fn read_header_at(data: &File, offset: u64, data_len: u64) -> Result<Option<(u64, u64)>, StoreError> {
    if offset + HEADER as u64 > data_len {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    data.read_exact_at(&mut header, offset)?;
    let (length, crc, seq) = split_header(&header);
    let total = HEADER as u64 + u64::from(length);
    if offset + total > data_len {
        return Ok(None);
    }
    let mut payload = vec![0u8; length as usize];
    data.read_exact_at(&mut payload, offset + HEADER as u64)?;
    Ok((crc == checksum(seq, &payload)).then_some((seq, total)))
}

/// The event in a whole record, if the record is intact.
fn decode_record(record: &[u8]) -> Option<AuditEvent> {
    match split_record(record)? {
        (seq, payload, []) => serde_json::from_slice::<AuditEvent>(payload).ok().filter(|event| event.seq == seq),
        _ => None,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sample_events as events;

    fn read_all(trail: &AuditTrail) -> Vec<AuditEvent> {
        trail.read(1..u64::MAX).unwrap()
    }

    #[test]
    fn appended_events_are_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!(trail.last_seq(), 0);
        trail.append(&events(1..4)).unwrap();
        trail.append(&events(4..3000)).unwrap();
        assert!(trail.append(&events(3001..3002)).is_err(), "a gap is refused");
        assert_eq!(trail.get(2).unwrap(), events(2..3).pop());
        assert_eq!(trail.get(3000).unwrap(), None);
        assert_eq!(trail.get(0).unwrap(), None);
        let cut = trail.cut();
        assert_eq!(cut.events, 2999);
        drop(trail);

        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!((trail.cut(), trail.last_seq()), (cut, 2999));
        assert_eq!(read_all(&trail), events(1..3000));
        let mut walked = Vec::new();
        trail.walk(1500..1600, |position, event| walked.push((position, event.unwrap()))).unwrap();
        assert_eq!(walked, (1500..1600).zip(events(1500..1600)).collect::<Vec<_>>());
    }

    #[test]
    fn unfinished_writes_at_the_end_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        trail.append(&events(1..11)).unwrap();
        let whole = trail.cut();
        trail.append(&events(11..12)).unwrap();
        drop(trail);
        // Event 11's record only half written; its index entry written.
        let data = OpenOptions::new().write(true).open(dir.path().join(DATA)).unwrap();
        data.set_len(whole.bytes + 20).unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!((trail.cut(), trail.last_seq()), (whole, 10));
        trail.append(&events(11..13)).unwrap();
        drop(trail);
        // An index entry cut short: the record is whole but cannot be found, so it goes.
        let index = OpenOptions::new().write(true).open(dir.path().join(INDEX)).unwrap();
        index.set_len(11 * 8 + 3).unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!(trail.last_seq(), 11);
        assert_eq!(read_all(&trail), events(1..12));
    }

    #[test]
    fn events_after_a_kept_one_or_a_cut_are_removed_durably() {
        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        trail.append(&events(1..4)).unwrap();
        let three = trail.cut();
        trail.append(&events(4..8)).unwrap();
        assert_eq!(trail.keep_through(5).unwrap(), events(5..6).pop());
        assert_eq!(trail.last_seq(), 5);
        assert_eq!(trail.keep_through(9).unwrap(), None, "the trail ends before event 9");
        trail.truncate(three).unwrap();
        assert_eq!((trail.cut(), trail.last_seq()), (three, 3));
        assert!(trail.truncate(TrailCut { events: 2, bytes: 1 }).is_err(), "a cut that is no record boundary");
        trail.append(&events(4..5)).unwrap();
        drop(trail);
        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!(read_all(&trail), events(1..5));
        assert_eq!(trail.keep_through(0).unwrap(), None);
        assert_eq!((trail.cut(), trail.last_seq()), (TrailCut::default(), 0));
    }

    #[test]
    fn a_replaced_trail_is_checked_and_indexed() {
        let source_dir = tempfile::tempdir().unwrap();
        let source = AuditTrail::open(source_dir.path()).unwrap();
        source.append(&events(1..500)).unwrap();
        let cut = source.cut();
        let bytes = fs::read(source_dir.path().join(DATA)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        trail.append(&events(1..3)).unwrap();
        assert_eq!(trail.replace(&bytes[..], cut.bytes).unwrap(), cut);
        assert_eq!(read_all(&trail), events(1..500));
        assert!(trail.replace(&bytes[..100], cut.bytes).is_err(), "a short copy is refused");
        drop(trail);
        // A crash after the old index was removed: the index is rebuilt at open.
        let _ = fs::remove_file(dir.path().join(INDEX));
        fs::write(dir.path().join(DATA), &bytes).unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        assert_eq!((trail.cut(), trail.last_seq()), (cut, 499));
        assert_eq!(trail.get(499).unwrap(), events(499..500).pop());
    }

    #[test]
    fn a_damaged_record_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        trail.append(&events(1..10)).unwrap();
        let offset = trail.read_lock().index_entry(5).unwrap();
        drop(trail);
        let data = OpenOptions::new().write(true).open(dir.path().join(DATA)).unwrap();
        data.write_all_at(b"X", offset + HEADER as u64 + 2).unwrap();
        let trail = AuditTrail::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        trail.walk(1..10, |position, event| seen.push((position, event.map(|e| e.seq)))).unwrap();
        let expected: Vec<_> = (1..10).map(|n| (n, (n != 5).then_some(n))).collect();
        assert_eq!(seen, expected);
        assert!(matches!(trail.get(5), Err(StoreError::Corrupt)));
        assert_eq!(trail.get(6).unwrap(), events(6..7).pop());
    }
}
