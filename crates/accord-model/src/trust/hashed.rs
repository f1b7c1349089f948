//! Maps and sets keyed by change hashes, without hashing them again.
//!
//! A change hash is a SHA-256 output, so its bytes are already uniformly
//! spread; the standard SipHash costs more than the rest of judging a
//! change when a whole document (hundreds of thousands of changes) arrives.
//! Only authenticated members can send changes, and steering many of them
//! into one bucket would mean grinding SHA-256 outputs for every change.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use automerge::ChangeHash;

/// A set of change hashes.
pub type ChangeHashSet = HashSet<ChangeHash, BuildHasherDefault<PreHashed>>;
/// A map keyed by change hashes (or lists of them).
pub type ChangeHashMap<K, V> = HashMap<K, V, BuildHasherDefault<PreHashed>>;

/// Folds the written bytes eight at a time with a multiply, as FxHash
/// does: one round for each 8 bytes of a change hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct PreHashed(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl PreHashed {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        if !rest.is_empty() {
            tail[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(tail));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
        BuildHasherDefault::<PreHashed>::default().hash_one(value)
    }

    #[test]
    fn different_hashes_and_lists_hash_differently() {
        let a = ChangeHash([1; 32]);
        let mut b = a;
        b.0[31] ^= 1;
        assert_ne!(hash_of(&a), hash_of(&b), "every byte counts");
        assert_ne!(hash_of(&vec![a, b]), hash_of(&vec![b, a]), "order counts");
        assert_eq!(
            hash_of(&vec![a]),
            hash_of(&[a][..]),
            "a list and its slice agree"
        );
    }

    #[test]
    fn sets_and_maps_work_as_usual() {
        let mut set = ChangeHashSet::default();
        for n in 0..=255u8 {
            set.insert(ChangeHash([n; 32]));
        }
        assert_eq!(set.len(), 256);
        assert!(set.contains(&ChangeHash([7; 32])));
        let mut map: ChangeHashMap<Vec<ChangeHash>, u8> = ChangeHashMap::default();
        map.insert(vec![ChangeHash([1; 32])], 1);
        assert_eq!(map.get(&[ChangeHash([1; 32])][..]), Some(&1));
    }
}
