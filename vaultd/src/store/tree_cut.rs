//! A consistent copy of the state tree as it was at one moment, read while writes go on.
//! sled has no snapshots of its own. Instead, while a cut is taken, the first write to
//! each key records the key's value at the cut (its pre-image) before the write is made,
//! and the reader walks the tree as it is, taking the pre-image wherever there is one.
//! Raft snapshots are built this way, so applies do not wait while the state is copied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockWriteGuard};

use sled::IVec;

use super::StoreError;

/// The cut being taken, if one is.
#[derive(Default)]
pub struct TreeCuts {
    recording: Mutex<Option<Recording>>,
    /// Held for reading while a cut is walked, and for writing while the tree is replaced
    /// wholesale (a snapshot loaded), which pre-images do not record.
    rewrite: RwLock<()>,
    /// How many times the tree was replaced wholesale.
    rewrites: AtomicU64,
}

#[derive(Default)]
struct Recording {
    pre_images: HashMap<Vec<u8>, PreImage>,
    /// The last key a walk has passed (walks go in key order).
    walked_to: Option<Vec<u8>>,
}

struct PreImage {
    /// The value at the cut (`None`: absent).
    value: Option<IVec>,
    /// Whether the walk has dealt with the key already.
    walked: bool,
}

impl TreeCuts {
    fn lock(&self) -> MutexGuard<'_, Option<Recording>> {
        self.recording.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a cut of the tree as it is now; the caller makes sure no write is under way.
    /// Pre-images are recorded until the cut is dropped.
    pub fn take(self: &Arc<Self>) -> Cut {
        *self.lock() = Some(Recording::default());
        Cut { cuts: Arc::clone(self), rewrites: self.rewrites.load(Ordering::SeqCst) }
    }

    /// Called before `keys` are written: records the values of those not yet written since
    /// the cut.
    pub fn before_writes<'k>(&self, tree: &sled::Tree, keys: impl Iterator<Item = &'k [u8]>) -> sled::Result<()> {
        let mut recording = self.lock();
        if let Some(recording) = recording.as_mut() {
            for key in keys {
                if !recording.pre_images.contains_key(key) {
                    // A key the walk has passed was written out with its value at the cut.
                    let walked = recording.walked_to.as_deref().is_some_and(|to| key <= to);
                    recording.pre_images.insert(key.to_vec(), PreImage { value: tree.get(key)?, walked });
                }
            }
        }
        Ok(())
    }

    /// Waits until no cut is being walked, and keeps new walks waiting while the tree is
    /// replaced; cuts taken before are void.
    pub fn rewriting(&self) -> RwLockWriteGuard<'_, ()> {
        let guard = self.rewrite.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.rewrites.fetch_add(1, Ordering::SeqCst);
        guard
    }
}

/// A cut of the tree; recording stops when it is dropped.
pub struct Cut {
    cuts: Arc<TreeCuts>,
    /// `TreeCuts::rewrites` when the cut was taken.
    rewrites: u64,
}

impl Cut {
    /// Calls `visit` once with every key and value the tree held at the cut: first in key
    /// order, then those removed since. False, and no call, if the tree was replaced
    /// wholesale since the cut.
    pub fn walk(
        &self,
        tree: &sled::Tree,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let _reading = self.cuts.rewrite.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.cuts.rewrites.load(Ordering::SeqCst) != self.rewrites {
            return Ok(false);
        }
        for item in tree.iter() {
            // Read before the pre-images are looked at: a write that has changed the
            // value since the cut has recorded the old one by then.
            let (key, value) = item?;
            let at_cut = {
                let mut recording = self.cuts.lock();
                let recording = recording.as_mut().ok_or(StoreError::Corrupt)?;
                recording.walked_to = Some(key.to_vec());
                match recording.pre_images.get_mut(key.as_ref()) {
                    None => Some(value),
                    Some(pre_image) => {
                        pre_image.walked = true;
                        pre_image.value.clone()
                    }
                }
            };
            if let Some(value) = at_cut {
                visit(&key, &value)?;
            }
        }
        // Keys the cut held that were removed before the walk came to them.
        let removed: Vec<(Vec<u8>, IVec)> = self
            .cuts
            .lock()
            .iter()
            .flat_map(|recording| &recording.pre_images)
            .filter(|(_, pre_image)| !pre_image.walked)
            .filter_map(|(key, pre_image)| Some((key.clone(), pre_image.value.clone()?)))
            .collect();
        for (key, value) in removed {
            visit(&key, &value)?;
        }
        Ok(true)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        *self.cuts.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn walked(cut: &Cut, tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut seen = BTreeMap::new();
        let whole = cut
            .walk(tree, |key, value| {
                assert!(seen.insert(key.to_vec(), value.to_vec()).is_none(), "each key once");
                Ok(())
            })
            .unwrap();
        assert!(whole);
        seen
    }

    fn write(cuts: &TreeCuts, tree: &sled::Tree, key: &str, value: Option<&str>) {
        cuts.before_writes(tree, [key.as_bytes()].into_iter()).unwrap();
        match value {
            Some(value) => tree.insert(key, value).map(drop).unwrap(),
            None => tree.remove(key).map(drop).unwrap(),
        }
    }

    #[test]
    fn a_cut_reads_the_tree_as_it_was_whatever_is_written_since() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        let cuts = Arc::new(TreeCuts::default());
        for key in ["a", "b", "c", "d"] {
            write(&cuts, &tree, key, Some(key));
        }
        let at_cut: BTreeMap<Vec<u8>, Vec<u8>> =
            tree.iter().map(|i| i.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let cut = cuts.take();
        write(&cuts, &tree, "a", Some("changed"));
        write(&cuts, &tree, "a", Some("changed again"));
        write(&cuts, &tree, "b", None);
        write(&cuts, &tree, "e", Some("new"));
        write(&cuts, &tree, "c", None);
        write(&cuts, &tree, "c", Some("back"));
        assert_eq!(walked(&cut, &tree), at_cut);

        drop(cut);
        write(&cuts, &tree, "d", Some("after the cut"));
        assert!(cuts.lock().is_none(), "nothing is recorded without a cut");
        let now = cuts.take();
        assert_eq!(walked(&now, &tree).get(&b"d"[..]).map(Vec::as_slice), Some(&b"after the cut"[..]));
        drop(cuts.rewriting());
        assert!(!now.walk(&tree, |_, _| panic!("a void cut visits nothing")).unwrap(), "the tree was replaced");
    }

    #[test]
    fn a_cut_holds_while_writes_race_the_walk() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        let cuts = Arc::new(TreeCuts::default());
        for i in 0..20_000u32 {
            tree.insert(i.to_be_bytes(), &i.to_le_bytes()).unwrap();
        }
        let at_cut: BTreeMap<Vec<u8>, Vec<u8>> =
            tree.iter().map(|i| i.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let cut = cuts.take();
        let writer = {
            let (cuts, tree) = (Arc::clone(&cuts), tree.clone());
            std::thread::spawn(move || {
                for i in (0..40_000u32).step_by(3) {
                    let key = i.to_be_bytes();
                    cuts.before_writes(&tree, [&key[..]].into_iter()).unwrap();
                    if i % 2 == 0 {
                        tree.insert(key, b"changed").unwrap();
                    } else {
                        tree.remove(key).unwrap();
                    }
                }
            })
        };
        let seen = walked(&cut, &tree);
        writer.join().unwrap();
        assert_eq!(seen, at_cut);
    }
}
