//! A bounded cache of unwrapped data encryption keys, so hot subjects don't cost an HSM
//! round trip per request. Keys are zeroised when evicted or dropped (`DataKey` wipes
//! itself), and a forgotten subject's key is removed at once. A key unwrapped while a
//! removal happened is not cached ([`DekCache::generation`]): otherwise a read racing a
//! forget-me could put the forgotten subject's key back after the removal.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use uuid::Uuid;

use super::DataKey;

pub struct DekCache {
    inner: Mutex<Inner>,
}

struct Inner {
    keys: LruCache<Uuid, DataKey>,
    /// Removals so far (a clear counts as one).
    removals: u64,
    /// The latest removals and their numbers, so that a removal of another subject does
    /// not keep a key out of the cache; a clear empties it.
    recent: VecDeque<(u64, Uuid)>,
}

/// Removals remembered by subject.
const RECENT_REMOVALS: usize = 1024;

/// How many removals the cache had seen when a caller started to unwrap a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

impl DekCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        DekCache { inner: Mutex::new(Inner { keys: LruCache::new(capacity), removals: 0, recent: VecDeque::new() }) }
    }

    pub fn get(&self, subject: &Uuid) -> Option<DataKey> {
        let found = self.lock().keys.get(subject).cloned();
        let instruments = crate::metrics::instruments();
        match found {
            Some(_) => instruments.key_cache_hits.inc(),
            None => instruments.key_cache_misses.inc(),
        };
        found
    }

    /// Taken before unwrapping a key that is to be cached with [`DekCache::insert`].
    pub fn generation(&self) -> Generation {
        Generation(self.lock().removals)
    }

    /// Caches `key`, unless this subject's key was removed since `since` (it was
    /// forgotten meanwhile), or that can no longer be told.
    pub fn insert(&self, subject: Uuid, key: DataKey, since: Generation) {
        let mut inner = self.lock();
        let covered = inner.recent.front().is_some_and(|(first, _)| *first <= since.0 + 1);
        let removed_since = |inner: &Inner| inner.recent.iter().any(|(n, s)| *n > since.0 && *s == subject);
        if inner.removals == since.0 || (covered && !removed_since(&inner)) {
            inner.keys.put(subject, key);
        }
    }

    pub fn remove(&self, subject: &Uuid) {
        let mut inner = self.lock();
        inner.keys.pop(subject);
        inner.removals += 1;
        let number = inner.removals;
        if inner.recent.len() == RECENT_REMOVALS {
            inner.recent.pop_front();
        }
        inner.recent.push_back((number, *subject));
    }

    /// Drops (and zeroises) every cached key.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.keys.clear();
        inner.removals += 1;
        inner.recent.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the LRU inconsistent in a way that
        // matters for safety (worst case: a key is missing and gets unwrapped again).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_forgets_on_remove() {
        let cache = DekCache::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, DataKey::generate(), cache.generation());
        cache.insert(b, DataKey::generate(), cache.generation());
        cache.insert(c, DataKey::generate(), cache.generation());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a).is_none(), "least recently used key is evicted");
        cache.remove(&b);
        assert!(cache.get(&b).is_none());
        assert!(cache.get(&c).is_some());
    }

    #[test]
    fn a_key_unwrapped_across_a_removal_is_not_cached() {
        let cache = DekCache::new(4);
        let subject = Uuid::new_v4();
        // A read misses, and starts unwrapping the key...
        let before = cache.generation();
        // ...while the subject is forgotten (its key, not cached yet, is removed)...
        cache.remove(&subject);
        // ...and then the read finishes: the key must not come back.
        cache.insert(subject, DataKey::generate(), before);
        assert!(cache.get(&subject).is_none());
        cache.insert(subject, DataKey::generate(), cache.generation());
        assert!(cache.get(&subject).is_some());

        // Another subject's removal meanwhile does not keep a key out; a clear does.
        let (other, later) = (Uuid::new_v4(), Uuid::new_v4());
        let before = cache.generation();
        cache.remove(&other);
        cache.insert(later, DataKey::generate(), before);
        assert!(cache.get(&later).is_some());
        let before = cache.generation();
        cache.clear();
        cache.insert(later, DataKey::generate(), before);
        assert!(cache.get(&later).is_none());
    }
}
