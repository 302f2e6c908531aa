//! The core: the key-value map. One thread owns it, so it needs no lock.
//! A key may carry an expiry: checked whenever the key is read, as Redis
//! does, and swept a few keys at a time on the loop's timer, so keys
//! nobody reads again do not stay forever. The memory the keys and values
//! take is counted, and bounded by `--max-memory`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

// ANCHOR: store
// ANCHOR: store_get
/// One value, and when it expires (milliseconds on the server's clock).
pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) expires: Option<u64>,
    /// Its key is in `Store::volatile`, the sweep's list.
    listed: bool,
}

/// What we count for an entry besides its key and value bytes: the map's
/// slot, the two headers, the allocator's rounding. An estimate, as Redis's
/// own `used_memory` is.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

pub(crate) struct Store {
    map: HashMap<Box<[u8]>, Entry, BuildHasherDefault<Fnv>>,
    /// Keys that have (or had) an expiry, for the sweep.
    volatile: Vec<Box<[u8]>>,
    cursor: usize,
    pub(crate) used: usize,
    pub(crate) max: usize,
}

/// The write would take the memory over `--max-memory`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OutOfMemory;

impl Store {
    pub(crate) fn new(max: usize) -> Store {
        Store {
            map: HashMap::default(),
            volatile: Vec::new(),
            cursor: 0,
            used: 0,
            max,
        }
    }

    /// The live entry of `key` at time `now`; an expired one is deleted
    /// here, on access. While no key has an expiry (the sweep's list is
    /// empty), one lookup, with no expiry to check.
    pub(crate) fn get(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        if !self.volatile.is_empty() {
            let expired = self
                .map
                .get(key)
                .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
            if expired {
                self.delete(key);
                return None;
            }
        }
        self.map.get_mut(key)
    }
    // ANCHOR_END: store_get

    // ANCHOR: store_set
    /// Sets `key` to `value`, expiring at `expires` (or never). An existing
    /// value's memory is reused when it is big enough, so a client that
    /// keeps setting the same keys makes no allocation, and one lookup.
    pub(crate) fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires: Option<u64>,
    ) -> Result<(), OutOfMemory> {
        if let Some(entry) = self.map.get_mut(key) {
            let capacity = entry.value.capacity();
            if self.used + value.len().saturating_sub(capacity) > self.max {
                return Err(OutOfMemory);
            }
            write_value(entry, value, expires, key, &mut self.volatile);
            // Count what the value really holds (an allocator may round up).
            self.used = self.used - capacity + entry.value.capacity();
            return Ok(());
        }
        if self.used + key.len() + value.len() + ENTRY_OVERHEAD > self.max {
            return Err(OutOfMemory);
        }
        let entry = self.map.entry(key.into()).or_insert(Entry {
            value: Vec::new(),
            expires: None,
            listed: false,
        });
        write_value(entry, value, expires, key, &mut self.volatile);
        self.used += key.len() + entry.value.capacity() + ENTRY_OVERHEAD;
        Ok(())
    }
    // ANCHOR_END: store_set

    /// Deletes `key`; whether it was there.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(entry) => {
                self.used -= key.len() + entry.value.capacity() + ENTRY_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.volatile.clear();
        self.cursor = 0;
        self.used = 0;
    }

    /// Looks at up to `budget` keys of the sweep's list, from where the last
    /// sweep stopped: deletes those that have expired, and drops from the
    /// list those that are gone or no longer expire. Returns how many it
    /// deleted. Bounded, so a sweep never holds up the loop for long.
    pub(crate) fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut deleted = 0;
        for _ in 0..budget.min(self.volatile.len()) {
            if self.cursor >= self.volatile.len() {
                self.cursor = 0;
            }
            let key = &self.volatile[self.cursor];
            let (keep, expired) = match self.map.get(key) {
                Some(e) => match e.expires {
                    Some(t) if t <= now => (false, true),
                    Some(_) => (true, false),
                    None => (false, false),
                },
                None => (false, false),
            };
            if keep {
                self.cursor += 1;
                continue;
            }
            let key = self.volatile.swap_remove(self.cursor);
            if expired {
                self.delete(&key);
                deleted += 1;
            } else if let Some(e) = self.map.get_mut(&key) {
                e.listed = false;
            }
        }
        deleted
    }
}

/// Writes `value` into `entry` (reusing its memory), with its expiry; a
/// key that now expires joins the sweep's list.
fn write_value(
    entry: &mut Entry,
    value: &[u8],
    expires: Option<u64>,
    key: &[u8],
    volatile: &mut Vec<Box<[u8]>>,
) {
    entry.value.clear();
    entry.value.reserve_exact(value.len());
    entry.value.extend_from_slice(value);
    entry.expires = expires;
    if expires.is_some() && !entry.listed {
        entry.listed = true;
        volatile.push(key.into());
    }
}

/// FNV-1a: a simple, fast hash for short keys. The default (SipHash)
/// resists clients that choose keys to collide, at a cost per lookup that
/// shows in a benchmark of GETs; a server facing the Internet should keep
/// it (Redis uses SipHash too).
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
// ANCHOR_END: store

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_delete_and_count_memory() {
        let mut store = Store::new(1 << 20);
        store.set(b"k", b"hello", None).unwrap();
        assert_eq!(store.get(b"k", 0).unwrap().value, b"hello");
        assert_eq!(store.used, 1 + 5 + ENTRY_OVERHEAD);
        store.set(b"k", b"hi", None).unwrap();
        assert_eq!(store.used, 1 + 5 + ENTRY_OVERHEAD, "the memory is reused");
        assert!(store.delete(b"k"));
        assert!(!store.delete(b"k"));
        assert_eq!((store.used, store.map.len()), (0, 0));
    }

    #[test]
    fn expired_keys_vanish_on_access_and_in_the_sweep() {
        let mut store = Store::new(1 << 20);
        store.set(b"a", b"1", Some(100)).unwrap();
        store.set(b"b", b"2", Some(100)).unwrap();
        store.set(b"c", b"3", Some(500)).unwrap();
        assert!(store.get(b"a", 99).is_some());
        assert!(store.get(b"a", 100).is_none());
        assert_eq!(store.sweep(100, 10), 1, "b");
        assert_eq!(store.map.len(), 1);
        assert_eq!(store.sweep(100, 10), 0, "c lives on");
        store.set(b"c", b"3", None).unwrap(); // no expiry any more
        assert_eq!(store.sweep(1000, 10), 0);
        assert!(store.get(b"c", 1000).is_some());
        assert!(store.volatile.is_empty());
    }

    #[test]
    fn the_sweep_is_bounded() {
        let mut store = Store::new(1 << 20);
        for i in 0..100u32 {
            store.set(&i.to_be_bytes(), b"v", Some(1)).unwrap();
        }
        assert_eq!(store.sweep(5, 20), 20);
        assert_eq!(store.map.len(), 80);
    }

    #[test]
    fn memory_is_bounded() {
        let mut store = Store::new(200);
        store.set(b"k", &[0; 100], None).unwrap();
        assert_eq!(store.set(b"j", &[0; 100], None), Err(OutOfMemory));
        assert!(store.get(b"j", 0).is_none());
        store.clear();
        store.set(b"j", &[0; 100], None).unwrap();
    }
}
