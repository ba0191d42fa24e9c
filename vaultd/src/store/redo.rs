//! Crash atomicity for a transaction's writes, without sled batches. sled makes a batch
//! atomic by sealing and writing out its log buffer before and after it, two disk writes
//! and thread hand-offs per transaction; for the small transactions of audited reads that
//! cost more than anything else sled did. Instead, a small transaction first stores all of
//! its writes as one redo record (one value in the `apply_redo` tree), then makes them one
//! by one, then removes the record. A large one (creates, retention changes: mostly
//! ciphertext) goes to sled as a batch after all: it pays the two log writes once for
//! many writes, where a record would write all of its values twice.
//!
//! sled recovers a prefix of its log after a crash, so a recovered database holds either
//! no part of the transaction's own writes (no record) or the whole record: `recover`
//! then makes every write of it again — setting a key to its new value twice is harmless,
//! and no later transaction can have started. The record exists only while a commit
//! runs, so nothing else (a snapshot install, say) has to know about it.

use sled::IVec;

use super::StoreError;

/// Larger transactions are applied as a sled batch; a record up to this size stays
/// inline in sled's log.
const MAX_RECORD_BYTES: usize = 32 * 1024;
const RECORD: &[u8] = b"record";

pub struct RedoLog {
    tree: sled::Tree,
}

/// A key and its new value (`None`: removed).
pub type Write = (Vec<u8>, Option<IVec>);

impl RedoLog {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(RedoLog { tree: db.open_tree("apply_redo")? })
    }

    /// Makes the writes of a transaction that a crash interrupted; says whether there was
    /// one to finish.
    pub fn recover(&self, state: &sled::Tree) -> Result<bool, StoreError> {
        let Some(record) = self.tree.get(RECORD)? else { return Ok(false) };
        apply(state, decode(&record)?)?;
        self.tree.remove(RECORD)?;
        Ok(true)
    }

    /// Makes the writes in order, atomically with respect to crashes.
    pub fn commit(&self, state: &sled::Tree, writes: Vec<Write>) -> Result<(), StoreError> {
        let size = record_size(&writes);
        if size > MAX_RECORD_BYTES {
            let mut batch = sled::Batch::default();
            for (key, value) in writes {
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
            return Ok(state.apply_batch(batch)?);
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.tree.insert(RECORD, encode(&writes, size)?)?;
        apply(state, writes)?;
        self.tree.remove(RECORD)?;
        Ok(())
    }
}

fn apply(state: &sled::Tree, writes: Vec<Write>) -> Result<(), StoreError> {
    for (key, value) in writes {
        match value {
            Some(value) => state.insert(key, value)?,
            None => state.remove(key)?,
        };
    }
    Ok(())
}

fn record_size(writes: &[Write]) -> usize {
    writes.iter().map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, |v| v.len())).sum()
}

/// `u32` key length, key, then `u32::MAX` for a removal or the value's length and value.
fn encode(writes: &[Write], size: usize) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size);
    for (key, value) in writes {
        out.extend_from_slice(&u32::try_from(key.len()).map_err(|_| StoreError::Encoding)?.to_be_bytes());
        out.extend_from_slice(key);
        match value {
            Some(value) => {
                let len = u32::try_from(value.len()).ok().filter(|&n| n != u32::MAX).ok_or(StoreError::Encoding)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(value);
            }
            None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
    }
    Ok(out)
}

fn decode(mut bytes: &[u8]) -> Result<Vec<Write>, StoreError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        let (head, rest) = bytes.split_at_checked(n).ok_or(StoreError::Corrupt)?;
        *bytes = rest;
        Ok(head)
    }
    fn length(bytes: &mut &[u8]) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(take(bytes, 4)?.try_into().map_err(|_| StoreError::Corrupt)?))
    }
    let mut writes = Vec::new();
    while !bytes.is_empty() {
        let key_len = length(&mut bytes)? as usize;
        let key = take(&mut bytes, key_len)?.to_vec();
        let value = match length(&mut bytes)? {
            u32::MAX => None,
            len => Some(IVec::from(take(&mut bytes, len as usize)?)),
        };
        writes.push((key, value));
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(values: &[(&str, Option<&str>)]) -> Vec<Write> {
        values.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| IVec::from(v.as_bytes())))).collect()
    }

    #[test]
    fn a_finished_transaction_leaves_no_record() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let state = db.open_tree("state").unwrap();
        let redo = RedoLog::open(&db).unwrap();
        state.insert("gone", "old").unwrap();
        redo.commit(&state, writes(&[("a", Some("1")), ("gone", None)])).unwrap();
        assert_eq!(state.get("a").unwrap().unwrap(), "1");
        assert!(state.get("gone").unwrap().is_none());
        assert!(redo.tree.is_empty(), "the record is removed once its writes are made");
        assert!(!RedoLog::open(&db).unwrap().recover(&state).unwrap());
    }

    #[test]
    fn a_record_left_by_a_crash_is_made_again() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let state = db.open_tree("state").unwrap();
        state.insert("gone", "old").unwrap();
        // As if the crash came after the record, before (some of) the writes.
        let pending = writes(&[("a", Some("1")), ("gone", None), ("b", Some("2"))]);
        let redo = RedoLog::open(&db).unwrap();
        redo.tree.insert(RECORD, encode(&pending, record_size(&pending)).unwrap()).unwrap();
        state.insert("a", "1").unwrap();

        let redo = RedoLog::open(&db).unwrap();
        assert!(redo.recover(&state).unwrap());
        assert_eq!(state.get("a").unwrap().unwrap(), "1");
        assert_eq!(state.get("b").unwrap().unwrap(), "2");
        assert!(state.get("gone").unwrap().is_none());
        assert!(!redo.recover(&state).unwrap(), "made once, the record is gone");
    }

    #[test]
    fn a_large_transaction_is_a_sled_batch_and_leaves_no_record() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let state = db.open_tree("state").unwrap();
        let redo = RedoLog::open(&db).unwrap();
        let big = "y".repeat(MAX_RECORD_BYTES);
        redo.commit(&state, writes(&[("big", Some(&big)), ("small", Some("s"))])).unwrap();
        assert_eq!(state.get("big").unwrap().unwrap(), big.as_bytes());
        assert_eq!(state.get("small").unwrap().unwrap(), "s");
        assert!(redo.tree.is_empty());
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let all = writes(&[("", Some("")), ("k", None), ("key", Some("value"))]);
        assert_eq!(decode(&encode(&all, record_size(&all)).unwrap()).unwrap(), all);
        assert!(matches!(decode(&[0, 0, 0, 9, 1]), Err(StoreError::Corrupt)));
    }
}
