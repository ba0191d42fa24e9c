//! A batch's pending writes over the state tree. Commands of one batch see each other's
//! writes (two creates with one email in one batch: the second is a duplicate), and the
//! whole batch reaches sled through `redo`: after a crash, all of it or none.

use std::collections::{BTreeSet, HashMap};

use sled::IVec;

use super::keys;
use super::redo::RedoLog;
use super::tree_cut::TreeCuts;
use super::StoreError;

pub struct Staged {
    tree: sled::Tree,
    writes: HashMap<Vec<u8>, Option<IVec>>,
}

impl Staged {
    pub fn new(tree: sled::Tree) -> Self {
        Staged { tree, writes: HashMap::new() }
    }

    pub fn get(&self, key: &[u8]) -> sled::Result<Option<IVec>> {
        match self.writes.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.tree.get(key),
        }
    }

    pub fn contains(&self, key: &[u8]) -> sled::Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    pub fn insert(&mut self, key: Vec<u8>, value: impl Into<IVec>) {
        self.writes.insert(key, Some(value.into()));
    }

    /// Removes a key; says whether it was present.
    pub fn remove(&mut self, key: Vec<u8>) -> sled::Result<bool> {
        let existed = self.contains(&key)?;
        self.writes.insert(key, None);
        Ok(existed)
    }

    /// Keys under a prefix, in order, as they will be after this batch.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> sled::Result<Vec<Vec<u8>>> {
        let mut keys = BTreeSet::new();
        for key in self.tree.scan_prefix(prefix).keys() {
            keys.insert(key?.to_vec());
        }
        for (key, value) in self.writes.iter().filter(|(key, _)| key.starts_with(prefix)) {
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Applies every pending write, atomically with respect to crashes. Metadata (the
    /// audit head, the last applied log id) is written last, so a reader that sees it
    /// sees everything it covers. A cut being taken of the tree first gets the values the
    /// writes replace.
    pub fn commit(self, redo: &RedoLog, cuts: &TreeCuts) -> Result<(), StoreError> {
        let mut writes: Vec<_> = self.writes.into_iter().collect();
        writes.sort_by_key(|(key, _)| keys::is_meta(key));
        cuts.before_writes(&self.tree, writes.iter().map(|(key, _)| key.as_slice()))?;
        redo.commit(&self.tree, writes)
    }
}
