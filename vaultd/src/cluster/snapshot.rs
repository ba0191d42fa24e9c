//! Snapshots: the whole state tree in one file. A snapshot lets a node purge its log and
//! lets a new or wiped node catch up without replaying history. The file is written to a
//! temporary name, synced and renamed, so a crash leaves either the old snapshot or the
//! new one, never half of one.
//!
//! Format: `SRSNAP01`, then length-prefixed records (u32 big-endian length, bytes): the
//! postcard-encoded `SnapshotMeta`, then key, value, key, value, ... of the state tree.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::types::SnapshotMeta;
use crate::store::{decode, encode, StoreError};

const MAGIC: &[u8; 8] = b"SRSNAP01";
/// Inserts per sled batch while loading a snapshot.
const LOAD_BATCH: usize = 4096;

/// Serialises the tree as it is now; the caller makes sure nothing applies meanwhile.
pub fn dump(tree: &sled::Tree, meta: &SnapshotMeta) -> Result<Vec<u8>, StoreError> {
    let mut out = MAGIC.to_vec();
    push(&mut out, &encode(meta)?)?;
    for item in tree.iter() {
        let (key, value) = item?;
        push(&mut out, &key)?;
        push(&mut out, &value)?;
    }
    Ok(out)
}

fn push(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).map_err(|_| StoreError::Encoding)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Splits snapshot bytes into records, checking the framing.
struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Some(Err(StoreError::Corrupt));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Some(Err(StoreError::Corrupt));
        }
        let (record, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok(record))
    }
}

fn records(data: &[u8]) -> Result<Records<'_>, StoreError> {
    data.strip_prefix(MAGIC).map(|rest| Records { rest }).ok_or(StoreError::Corrupt)
}

pub fn meta_of(data: &[u8]) -> Result<SnapshotMeta, StoreError> {
    let record = records(data)?.next().ok_or(StoreError::Corrupt)??;
    decode(record)
}

/// Replaces the tree's contents with the snapshot's. Not atomic: the caller marks the
/// load as in progress and redoes it after a crash.
pub fn load(tree: &sled::Tree, data: &[u8]) -> Result<(), StoreError> {
    let mut records = records(data)?;
    records.next().ok_or(StoreError::Corrupt)??;
    tree.clear()?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    while let Some(key) = records.next() {
        let value = records.next().ok_or(StoreError::Corrupt)??;
        batch.insert(key?, value);
        pending += 1;
        if pending == LOAD_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}

/// Where a node keeps its latest snapshot.
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    pub fn new(data_dir: &Path) -> Self {
        SnapshotFile { path: data_dir.join("snapshot.bin") }
    }

    pub fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(&self.path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the snapshot durably: the old one stays until the new one is on disk.
    pub fn write(&self, data: &[u8]) -> Result<(), StoreError> {
        let temporary = self.path.with_extension("tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_loads_back_into_an_identical_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let source = db.open_tree("a").unwrap();
        for i in 0..10_000u32 {
            source.insert(i.to_be_bytes(), vec![i as u8; (i % 50) as usize]).unwrap();
        }
        let meta = SnapshotMeta { snapshot_id: "1-2-3".into(), ..Default::default() };
        let data = dump(&source, &meta).unwrap();
        assert_eq!(meta_of(&data).unwrap(), meta);

        let target = db.open_tree("b").unwrap();
        target.insert(b"stale", b"gone after load").unwrap();
        load(&target, &data).unwrap();
        assert!(source.iter().zip(target.iter()).all(|(a, b)| a.unwrap() == b.unwrap()));
        assert_eq!(source.len(), target.len());

        let truncated = &data[..data.len() - 3];
        assert!(load(&target, truncated).is_err(), "a truncated snapshot is refused");
        assert!(meta_of(b"not a snapshot").is_err());
    }

    #[test]
    fn snapshot_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert_eq!(file.read().unwrap(), None);
        file.write(b"first").unwrap();
        file.write(b"second").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }
}
