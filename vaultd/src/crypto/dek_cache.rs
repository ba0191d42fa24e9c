//! A bounded cache of unwrapped data encryption keys, so hot subjects don't cost an HSM
//! round trip per request. Keys are zeroised when evicted or dropped (`DataKey` wipes
//! itself), and a forgotten subject's key is removed at once.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use uuid::Uuid;

use super::DataKey;

pub struct DekCache {
    keys: Mutex<LruCache<Uuid, DataKey>>,
}

impl DekCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        DekCache { keys: Mutex::new(LruCache::new(capacity)) }
    }

    pub fn get(&self, subject: &Uuid) -> Option<DataKey> {
        self.lock().get(subject).cloned()
    }

    pub fn insert(&self, subject: Uuid, key: DataKey) {
        self.lock().put(subject, key);
    }

    pub fn remove(&self, subject: &Uuid) {
        self.lock().pop(subject);
    }

    /// Drops (and zeroises) every cached key.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, DataKey>> {
        // A panic while holding this lock cannot leave the LRU inconsistent in a way that
        // matters for safety (worst case: a key is missing and gets unwrapped again).
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_forgets_on_remove() {
        let cache = DekCache::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, DataKey::generate());
        cache.insert(b, DataKey::generate());
        cache.insert(c, DataKey::generate());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a).is_none(), "least recently used key is evicted");
        cache.remove(&b);
        assert!(cache.get(&b).is_none());
        assert!(cache.get(&c).is_some());
    }
}
