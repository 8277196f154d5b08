//! The engine table's lookup structures: a hash of `(worker_id, dp_rank)`, an open-addressing
//! index from that hash to engine position, and the interned worker ids behind `worker_index`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::hash::FastBuildHasher;

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Little-endian word from exactly 8 bytes (fixed-size: no variable-length copy).
#[inline]
fn word8(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        w.copy_from_slice(src);
    }
    u64::from_le_bytes(w)
}

/// Hash of an engine key, 16 bytes per multiply (engine names are ~20-60 bytes). Names of 16
/// bytes or more end with an overlapping read of their last 16 bytes (the length is mixed in
/// first). Not keyed: names come from inside the cluster and the table is capped at
/// `max_engines`.
#[inline]
pub(super) fn key_hash(worker_id: &str, dp_rank: i64) -> u64 {
    let b = worker_id.as_bytes();
    let n = b.len();
    let mut h = K0 ^ (n as u64);
    if n >= 16 {
        let mut at = 0;
        while at + 16 < n {
            h = fold_mul(word8(b, at) ^ K1, word8(b, at + 8) ^ h);
            at += 16;
        }
        h = fold_mul(word8(b, n - 16) ^ K1, word8(b, n - 8) ^ h);
    } else if n >= 8 {
        h = fold_mul(word8(b, 0) ^ K1, word8(b, n - 8) ^ h);
    } else {
        let tail = b.iter().rev().fold(0u64, |w, &x| (w << 8) | u64::from(x));
        h = fold_mul(tail ^ K1, h);
    }
    fold_mul(h ^ K2, (dp_rank as u64) ^ K1)
}

/// Open-addressing index from `key_hash(worker_id, dp_rank)` to engine position.
///
/// A slot packs the hash's high 32 bits (the tag: it picks the home bucket and spares most key
/// comparisons) with `position + 1` (0 = empty); linear probing, at most half full, so growing
/// re-places slots without rehashing keys.
#[derive(Debug, Clone, Default)]
pub(super) struct EngineIndex {
    slots: Vec<u64>,
    len: usize,
}

// `position + 1` must fit the slot's low 32 bits.
const _: () = assert!(super::MAX_ENGINES_LIMIT < u32::MAX as usize);

impl EngineIndex {
    const MIN_SLOTS: usize = 16;

    #[inline]
    pub(super) fn find(&self, h: u64, is_key: impl Fn(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let tag = h >> 32;
        let mut i = tag as usize & mask;
        loop {
            let s = *self.slots.get(i)?;
            if s == 0 {
                return None;
            }
            let pos = (s & 0xffff_ffff) as usize - 1;
            if s >> 32 == tag && is_key(pos) {
                return Some(pos);
            }
            i = (i + 1) & mask;
        }
    }

    pub(super) fn insert(&mut self, h: u64, pos: usize) {
        if (self.len + 1) * 2 > self.slots.len() {
            let n = (self.slots.len() * 2).max(Self::MIN_SLOTS);
            let old = std::mem::replace(&mut self.slots, vec![0; n]);
            self.len = 0;
            for s in old.into_iter().filter(|&s| s != 0) {
                self.place(s);
            }
        }
        self.place(((h >> 32) << 32) | (pos as u64 + 1));
    }

    fn place(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut i = (slot >> 32) as usize & mask;
        while self.slots.get(i).is_some_and(|&s| s != 0) {
            i = (i + 1) & mask;
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = slot;
            self.len += 1;
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = 0);
        self.len = 0;
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
    }
}

/// Interned worker ids: `worker_index` per name, reused (lowest first) once a worker's last
/// engine is removed, so indices stay below the number of workers known at once.
#[derive(Debug, Clone, Default)]
pub(super) struct WorkerIds {
    by_name: HashMap<Box<str>, u32, FastBuildHasher>,
    engines_of: Vec<u32>,
    free: BinaryHeap<Reverse<u32>>,
}

impl WorkerIds {
    pub(super) fn acquire(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            if let Some(n) = self.engines_of.get_mut(i as usize) {
                *n += 1;
            }
            return i;
        }
        let i = match self.free.pop() {
            Some(Reverse(i)) => i,
            None => {
                self.engines_of.push(0);
                (self.engines_of.len() - 1) as u32
            }
        };
        if let Some(n) = self.engines_of.get_mut(i as usize) {
            *n = 1;
        }
        self.by_name.insert(name.into(), i);
        i
    }

    pub(super) fn release(&mut self, name: &str, i: u32) {
        let Some(n) = self.engines_of.get_mut(i as usize) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.by_name.remove(name);
            self.free.push(Reverse(i));
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let names: usize = self.by_name.keys().map(|k| k.len()).sum();
        names
            + self.by_name.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.engines_of.capacity() * 4
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_home_buckets_still_resolve_by_key() {
        let mut idx = EngineIndex::default();
        let names: Vec<String> = (0..64).map(|i| format!("w{i}")).collect();
        for (pos, _) in names.iter().enumerate() {
            // same tag for every key: only the key check tells them apart
            idx.insert(0xabcd_0000_0000_0000, pos);
        }
        for (pos, name) in names.iter().enumerate() {
            let hit = idx.find(0xabcd_0000_0000_0000, |i| names.get(i) == Some(name));
            assert_eq!(hit, Some(pos));
        }
        assert_eq!(idx.find(0xabcd_0000_0000_0000, |_| false), None);
    }

    #[test]
    fn key_hash_separates_ranks_and_names() {
        let a = key_hash("decode-1-6f9c2d7b84-x2k9q", 0);
        assert_ne!(a, key_hash("decode-1-6f9c2d7b84-x2k9q", 1));
        assert_ne!(a, key_hash("decode-2-6f9c2d7b84-x2k9q", 0));
        assert_ne!(key_hash("", 0), key_hash("\0", 0));
        // every length class: short, 8..16, 16 (one chunk), 17 (overlapping tail), long
        let names = [
            "ab",
            "abcdefghij",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqrstuvwxyz0123456789",
        ];
        for (i, x) in names.iter().enumerate() {
            for y in names.iter().skip(i + 1) {
                assert_ne!(key_hash(x, 0), key_hash(y, 0), "{x} vs {y}");
            }
            let mut flipped = x.as_bytes().to_vec();
            flipped[0] ^= 1;
            let flipped = String::from_utf8(flipped).expect("ascii");
            assert_ne!(key_hash(x, 0), key_hash(&flipped, 0), "{x}: first byte");
        }
        assert_eq!(a, key_hash("decode-1-6f9c2d7b84-x2k9q", 0));
    }
}
