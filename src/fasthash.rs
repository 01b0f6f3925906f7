//! A quick hash for the maps on the statement path whose keys shardgate
//! picks or learns from the topology: prepared statement ids, parameter
//! positions, tablet aliases. std's SipHash resists keys chosen to
//! collide, which these maps never see, and costs a few hundred
//! instructions per statement across them; this is a multiply-rotate
//! hash (the shape of rustc's FxHash).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Map with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate hasher; see the module note for where it fits.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(i.into());
    }

    fn write_u16(&mut self, i: u16) {
        self.add(i.into());
    }

    fn write_u32(&mut self, i: u32) {
        self.add(i.into());
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_hash_apart_and_maps_work() {
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..1000u32 {
            m.insert(format!("zone1-{i}"), i);
        }
        assert_eq!(m.len(), 1000);
        assert!((0..1000u32).all(|i| m[&format!("zone1-{i}")] == i));
        // Same prefix, different tail past a word boundary.
        let h = |s: &str| {
            let mut x = FastHasher::default();
            x.write(s.as_bytes());
            x.finish()
        };
        assert_ne!(h("zone1-0000000100"), h("zone1-0000000101"));
    }
}
