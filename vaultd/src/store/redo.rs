//! Crash atomicity for a transaction's writes, without sled batches. sled makes a batch
//! atomic by sealing and writing out its log buffer before and after it, two disk writes
//! and thread hand-offs per transaction; that cost more than anything else sled did for a
//! read's audit event. Instead, a transaction first stores all of its writes as one redo
//! record (in chunks, in the `apply_redo` tree), then makes them one by one.
//!
//! sled recovers a prefix of its log after a crash, so a recovered database holds either
//! no part of the transaction's own writes (the record is absent or incomplete) or the
//! whole record: `recover` then makes every write of it again — setting a key to its new
//! value twice is harmless, and no later transaction can have started. Once the writes
//! are made the record is removed, so it never outlives the data it duplicates.

use sled::IVec;

use super::StoreError;

/// Bytes of redo record per sled value: small enough to stay inline in sled's log.
const CHUNK_BYTES: usize = 32 * 1024;
/// Chunk header: transaction number, chunk count.
const HEADER: usize = 12;

pub struct RedoLog {
    tree: sled::Tree,
    /// The number of the last transaction recorded.
    transaction: u64,
    /// Chunks stored now (some may belong to older, larger transactions).
    stored_chunks: u32,
}

/// A key and its new value (`None`: removed).
pub type Write = (Vec<u8>, Option<IVec>);

impl RedoLog {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let tree = db.open_tree("apply_redo")?;
        let transaction = match tree.get(chunk_key(0))? {
            Some(chunk) => header(&chunk).ok_or(StoreError::Corrupt)?.0,
            None => 0,
        };
        let stored_chunks = u32::try_from(tree.len()).map_err(|_| StoreError::Corrupt)?;
        Ok(RedoLog { tree, transaction, stored_chunks })
    }

    /// Makes the writes of a transaction that a crash interrupted; says whether there was
    /// one to finish.
    pub fn recover(&self, state: &sled::Tree) -> Result<bool, StoreError> {
        let Some(first) = self.tree.get(chunk_key(0))? else { return Ok(false) };
        let (transaction, count) = header(&first).ok_or(StoreError::Corrupt)?;
        let mut record = first[HEADER..].to_vec();
        for n in 1..count {
            match self.tree.get(chunk_key(n))? {
                Some(chunk) if header(&chunk) == Some((transaction, count)) => {
                    record.extend_from_slice(&chunk[HEADER..])
                }
                // Cut short by the crash: none of its writes were made.
                _ => return Ok(false),
            }
        }
        for (key, value) in decode(&record)? {
            match value {
                Some(value) => state.insert(key, value)?,
                None => state.remove(key)?,
            };
        }
        Ok(true)
    }

    /// Records the writes, makes them in order, then removes the record.
    pub fn commit(&mut self, state: &sled::Tree, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let record = encode(&writes)?;
        let chunks: Vec<&[u8]> = record.chunks(CHUNK_BYTES).collect();
        let count = u32::try_from(chunks.len()).map_err(|_| StoreError::Encoding)?;
        self.transaction += 1;
        for (n, chunk) in (0..).zip(&chunks) {
            let mut value = Vec::with_capacity(HEADER + chunk.len());
            value.extend_from_slice(&self.transaction.to_be_bytes());
            value.extend_from_slice(&count.to_be_bytes());
            value.extend_from_slice(chunk);
            self.tree.insert(chunk_key(n), value)?;
        }
        self.stored_chunks = self.stored_chunks.max(count);
        for (key, value) in writes {
            match value {
                Some(value) => state.insert(key, value)?,
                None => state.remove(key)?,
            };
        }
        // Chunk 0 first: without it, what is left is never made again.
        for n in 0..self.stored_chunks {
            self.tree.remove(chunk_key(n))?;
        }
        self.stored_chunks = 0;
        Ok(())
    }

    /// Forgets the record, before the state tree is replaced wholesale.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.tree.clear()?;
        self.stored_chunks = 0;
        Ok(())
    }
}

fn chunk_key(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

fn header(chunk: &[u8]) -> Option<(u64, u32)> {
    let transaction = u64::from_be_bytes(chunk.get(0..8)?.try_into().ok()?);
    let count = u32::from_be_bytes(chunk.get(8..12)?.try_into().ok()?);
    Some((transaction, count))
}

/// `u32` key length, key, then `u32::MAX` for a removal or the value's length and value.
fn encode(writes: &[Write]) -> Result<Vec<u8>, StoreError> {
    let size = writes.iter().map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, |v| v.len())).sum();
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

    /// Stores a record as `commit` does, without making its writes.
    fn record_only(redo: &mut RedoLog, writes: &[Write]) {
        let state = sled::Config::new().temporary(true).open().unwrap().open_tree("scratch").unwrap();
        let tree = redo.tree.clone();
        redo.commit(&state, writes.to_vec()).unwrap();
        // Put the record back as it was before its removal.
        let record = encode(writes).unwrap();
        let chunks: Vec<&[u8]> = record.chunks(CHUNK_BYTES).collect();
        for (n, chunk) in (0..).zip(&chunks) {
            let mut value = redo.transaction.to_be_bytes().to_vec();
            value.extend_from_slice(&u32::try_from(chunks.len()).unwrap().to_be_bytes());
            value.extend_from_slice(chunk);
            tree.insert(chunk_key(n), value).unwrap();
        }
    }

    #[test]
    fn a_finished_transaction_leaves_no_record() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let state = db.open_tree("state").unwrap();
        let mut redo = RedoLog::open(&db).unwrap();
        state.insert("gone", "old").unwrap();
        redo.commit(&state, writes(&[("a", Some("1")), ("gone", None)])).unwrap();
        assert_eq!(state.get("a").unwrap().unwrap(), "1");
        assert!(state.get("gone").unwrap().is_none());
        assert!(redo.tree.is_empty(), "the record is removed once its writes are made");
        assert!(!RedoLog::open(&db).unwrap().recover(&state).unwrap());
    }

    #[test]
    fn a_complete_record_is_made_again_and_an_incomplete_one_ignored() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let state = db.open_tree("state").unwrap();
        let mut redo = RedoLog::open(&db).unwrap();
        state.insert("gone", "old").unwrap();
        let big = "x".repeat(CHUNK_BYTES * 2);
        // As if the crash came after the record, before the writes.
        record_only(&mut redo, &writes(&[("a", Some("1")), ("gone", None), ("big", Some(&big))]));

        let mut redo = RedoLog::open(&db).unwrap();
        assert_eq!((redo.transaction, redo.stored_chunks), (1, 3));
        assert!(redo.recover(&state).unwrap());
        assert_eq!(state.get("a").unwrap().unwrap(), "1");
        assert_eq!(state.get("big").unwrap().unwrap(), big.as_bytes());
        assert!(state.get("gone").unwrap().is_none());

        // The next transaction removes all of it, its own record and the old chunks.
        redo.commit(&state, writes(&[("b", Some("2"))])).unwrap();
        assert!(redo.tree.is_empty());

        // A record whose later chunks are from another transaction is incomplete.
        record_only(&mut redo, &writes(&[("c", Some("3")), ("big", Some(&big))]));
        let mut first = redo.tree.get(chunk_key(0)).unwrap().unwrap().to_vec();
        first[0..8].copy_from_slice(&99u64.to_be_bytes());
        redo.tree.insert(chunk_key(0), first).unwrap();
        assert!(!redo.recover(&state).unwrap());
        assert!(state.get("c").unwrap().is_none(), "nothing of an incomplete record is made");
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let all = writes(&[("", Some("")), ("k", None), ("key", Some("value"))]);
        assert_eq!(decode(&encode(&all).unwrap()).unwrap(), all);
        assert!(matches!(decode(&[0, 0, 0, 9, 1]), Err(StoreError::Corrupt)));
    }
}
