//! The cleaner's key map, as Kafka's `SkimpyOffsetMap`: for each key seen in
//! the dirty part of a log, the offset of its latest record, in a fixed amount
//! of memory.
//!
//! A key is stored as a 128-bit hash (two SipHash-1-3 hashes under random
//! keys drawn per map), so every entry has the same size: one array of
//! `memory_bytes / OFFSET_MAP_SLOT_BYTES` slots, open addressing with linear
//! probing, filled to at most 90%. Two distinct keys share a hash with a
//! probability of about n²/2¹²⁹, and the random hash keys stop anyone from
//! choosing keys that collide (Kafka relies on MD5 the same way). The array
//! is allocated zeroed, so the pages of a large map that no key touches cost
//! no memory.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Bytes of one slot: a 128-bit key hash and an offset.
pub const OFFSET_MAP_SLOT_BYTES: usize = 24;
/// The share of slots that may hold entries, in thousandths; past it the map
/// is full, so probe sequences stay short (Kafka's dedupe load factor, 0.9).
const OFFSET_MAP_LOAD_PER_MILLE: usize = 900;
/// The smallest map, whatever the memory given: it must make progress.
const OFFSET_MAP_SLOTS_MIN: usize = 16;

pub(crate) struct OffsetMap {
    /// Per slot: the key hash (two words) and the offset plus one; an offset
    /// word of zero marks an empty slot, so a zeroed array is an empty map.
    slots: Vec<[u64; 3]>,
    entries: usize,
    entries_max: usize,
    hashers: (RandomState, RandomState),
}

impl OffsetMap {
    /// A map in about `memory_bytes` of memory.
    pub(crate) fn new(memory_bytes: usize) -> Self {
        let slot_count = (memory_bytes / OFFSET_MAP_SLOT_BYTES).max(OFFSET_MAP_SLOTS_MIN);
        OffsetMap {
            slots: vec![[0u64; 3]; slot_count],
            entries: 0,
            entries_max: slot_count * OFFSET_MAP_LOAD_PER_MILLE / 1000,
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    fn hash(&self, key: &[u8]) -> [u64; 2] {
        [self.hashers.0.hash_one(key), self.hashers.1.hash_one(key)]
    }

    /// The slot holding `hash`, or the empty slot where it belongs.
    fn find(&self, hash: [u64; 2]) -> usize {
        let slot_count = self.slots.len();
        // The high bits of a 64x64-bit product spread the hash over the slots.
        let mut index = ((u128::from(hash[0]) * slot_count as u128) >> 64) as usize;
        // Bounded: the map is never full, so an empty slot ends every probe.
        loop {
            let slot = &self.slots[index];
            if slot[2] == 0 || (slot[0] == hash[0] && slot[1] == hash[1]) {
                return index;
            }
            index = (index + 1) % slot_count;
        }
    }

    /// Records `offset` as the latest of `key`. Returns false, changing
    /// nothing, if `key` is new and the map is full.
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) -> bool {
        assert!(offset >= 0, "offsets in the map are never negative");
        let hash = self.hash(key);
        let index = self.find(hash);
        let slot = &mut self.slots[index];
        if slot[2] == 0 {
            if self.entries >= self.entries_max {
                return false;
            }
            self.entries += 1;
        }
        *slot = [hash[0], hash[1], offset as u64 + 1];
        assert!(self.entries < self.slots.len(), "an empty slot must remain");
        true
    }

    /// The latest offset recorded for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        let slot = &self.slots[self.find(self.hash(key))];
        (slot[2] != 0).then(|| slot[2] as i64 - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// The most entries this map takes.
    #[cfg(test)]
    pub(crate) fn entries_max(&self) -> usize {
        self.entries_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_map_keeps_the_latest_offset_per_key() {
        // Proves put overwrites a key's offset and get returns the last one put.
        let mut map = OffsetMap::new(1 << 16);
        for round in 0..3i64 {
            for key in 0..100u32 {
                assert!(map.put(&key.to_be_bytes(), round * 1000 + i64::from(key)));
            }
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.get(&7u32.to_be_bytes()), Some(2007));
        assert_eq!(map.get(b"absent"), None);
    }

    #[test]
    fn full_offset_map_refuses_new_keys_but_updates_known_ones() {
        // Proves the map never grows past its bound: new keys are refused, known keys still update.
        let mut map = OffsetMap::new(OFFSET_MAP_SLOT_BYTES * 100);
        let entries_max = map.entries_max();
        assert_eq!(entries_max, 90);
        for key in 0..entries_max as u32 {
            assert!(map.put(&key.to_be_bytes(), i64::from(key)));
        }
        assert!(!map.put(b"one too many", 1));
        assert_eq!(map.get(b"one too many"), None);
        assert!(map.put(&0u32.to_be_bytes(), 5000));
        assert_eq!(map.get(&0u32.to_be_bytes()), Some(5000));
        assert_eq!(map.len(), entries_max);
    }
}
