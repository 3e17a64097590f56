//! A small bounded map with per-entry expiry and least-recently-used eviction.
//!
//! Sized for hundreds to a few thousand images: eviction scans the map, which costs
//! microseconds and only happens on a miss that fills the cache. Time is passed in so the
//! logic is tested without sleeping.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

struct Slot<V> {
    value: V,
    /// None: never expires (digest-addressed content).
    expires: Option<Instant>,
    last_used: u64,
}

pub(crate) struct BoundedCache<K, V> {
    map: HashMap<K, Slot<V>>,
    capacity: usize,
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    /// A capacity of 0 caches nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedCache {
            map: HashMap::new(),
            capacity,
            tick: 0,
        }
    }

    pub(crate) fn get<Q>(&mut self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        let tick = self.tick;
        match self.map.get_mut(key) {
            Some(slot) if slot.expires.is_none_or(|e| now < e) => {
                slot.last_used = tick;
                Some(slot.value.clone())
            }
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V, expires: Option<Instant>, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            // Expired entries go first; otherwise the least recently used one.
            self.map.retain(|_, s| s.expires.is_none_or(|e| now < e));
            if self.map.len() >= self.capacity
                && let Some(victim) = self
                    .map
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&victim);
            }
        }
        self.map.insert(
            key,
            Slot {
                value,
                expires,
                last_used: self.tick,
            },
        );
    }

    pub(crate) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_at_their_deadline_and_digest_entries_never() {
        let t0 = Instant::now();
        let mut cache = BoundedCache::new(10);
        cache.insert("tag", 1, Some(t0 + Duration::from_secs(60)), t0);
        cache.insert("digest", 2, None, t0);
        assert_eq!(cache.get(&"tag", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(cache.get(&"tag", t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.len(), 1, "an expired entry is dropped when seen");
        assert_eq!(
            cache.get(&"digest", t0 + Duration::from_secs(86_400 * 365)),
            Some(2)
        );
    }

    #[test]
    fn evicts_expired_then_least_recently_used() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let mut cache = BoundedCache::new(3);
        cache.insert("a", 1, None, t0);
        cache.insert("b", 2, None, t0);
        cache.insert("c", 3, Some(t0 + Duration::from_secs(5)), t0);
        // "c" has expired by `later`: it goes before any live entry.
        cache.insert("d", 4, None, later);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"c", later), None);
        // "a" is used, so "b" is now the least recently used.
        assert_eq!(cache.get(&"a", later), Some(1));
        cache.insert("e", 5, None, later);
        assert_eq!(cache.get(&"b", later), None);
        for (k, v) in [("a", 1), ("d", 4), ("e", 5)] {
            assert_eq!(cache.get(&k, later), Some(v), "{k}");
        }
        // Replacing an existing key never evicts.
        cache.insert("a", 10, None, later);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"a", later), Some(10));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let t0 = Instant::now();
        let mut cache = BoundedCache::new(0);
        cache.insert("a", 1, None, t0);
        assert_eq!(cache.get(&"a", t0), None);
    }
}
