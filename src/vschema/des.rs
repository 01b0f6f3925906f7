//! DES encryption of one 64-bit block: the `hash` vindex's keyspace id is
//! Vitess's DES of the id under an all-zero key. Every point select on a
//! hashed keyspace maps its id, so this is on the hot path: the standard
//! tables are folded once into per-byte permutation tables and per-S-box
//! lookup tables (S-box output already run through P), which makes a block
//! about a tenth of the work of a bit-by-bit round function.
//!
//! Encryption only (a vindex never decrypts). Checked against the `des`
//! crate for random keys and blocks, and by Vitess's vindex vectors.

use std::sync::OnceLock;

/// Initial permutation (FIPS 46-3): output bit i is input bit IP[i],
/// bits numbered 1..=64 from the most significant.
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, //
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, //
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, //
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// Permutation of the S-boxes' 32 output bits.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: the key's 56 bits (parity bits dropped).
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, //
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, //
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: a round's 48 key bits from the 56.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, //
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, //
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of the key halves before each round.
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The eight S-boxes, each four rows of sixteen.
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, //
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8, //
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, //
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, //
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5, //
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, //
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, //
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1, //
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, //
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, //
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9, //
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, //
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, //
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6, //
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, //
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, //
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8, //
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, //
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, //
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6, //
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, //
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, //
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2, //
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, //
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// Output bit i (from the most significant) is bit `table[i]` (1-based,
/// from the most significant) of the `width`-bit input.
fn permute(input: u64, width: u32, table: &[u8]) -> u64 {
    table.iter().fold(0, |out, &t| {
        (out << 1) | ((input >> (width - u32::from(t))) & 1)
    })
}

/// The key-independent tables, built once.
struct Tables {
    /// Initial and final permutations, one table per input byte: a
    /// permutation of a block is the OR of its eight bytes' entries.
    ip: [[u64; 256]; 8],
    fp: [[u64; 256]; 8],
    /// Per S-box, per 6-bit input: its output, placed and permuted by P.
    sp: [[u32; 64]; 8],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Box<Tables>> = OnceLock::new();
    T.get_or_init(|| {
        let mut fp_table = [0u8; 64];
        for (i, &src) in IP.iter().enumerate() {
            fp_table[usize::from(src) - 1] = i as u8 + 1;
        }
        let mut t = Box::new(Tables {
            ip: [[0; 256]; 8],
            fp: [[0; 256]; 8],
            sp: [[0; 64]; 8],
        });
        for byte in 0..8 {
            for v in 0..256u64 {
                let placed = v << (56 - 8 * byte);
                t.ip[byte][v as usize] = permute(placed, 64, &IP);
                t.fp[byte][v as usize] = permute(placed, 64, &fp_table);
            }
        }
        for (b, sbox) in S.iter().enumerate() {
            for v in 0..64usize {
                let row = ((v >> 4) & 2) | (v & 1);
                let col = (v >> 1) & 0xf;
                let out = u64::from(sbox[row * 16 + col]) << (28 - 4 * b);
                t.sp[b][v] = permute(out, 32, &P) as u32;
            }
        }
        t
    })
}

fn by_bytes(table: &[[u64; 256]; 8], x: u64) -> u64 {
    let b = x.to_be_bytes();
    (0..8).fold(0, |out, i| out | table[i][usize::from(b[i])])
}

/// A DES key's schedule: per round, the eight 6-bit key chunks placed
/// where [`Des::encrypt`] meets them in a doubled half-block, the even
/// S-boxes' in one word and the odd ones' in another (within each, the
/// chunks do not overlap, so one XOR keys four S-box inputs).
pub struct Des {
    rounds: [(u64, u64); 16],
}

/// Where S-box `i`'s six input bits sit in a doubled half-block.
const fn sbox_shift(i: usize) -> u32 {
    32 - 4 * i as u32
}

impl Des {
    /// Schedules `key` (8 bytes, parity bits ignored).
    pub fn new(key: [u8; 8]) -> Des {
        let cd = permute(u64::from_be_bytes(key), 64, &PC1);
        let (mut c, mut d) = ((cd >> 28) as u32, (cd & 0x0fff_ffff) as u32);
        let rot = |x: u32, n: u32| ((x << n) | (x >> (28 - n))) & 0x0fff_ffff;
        let mut rounds = [(0u64, 0u64); 16];
        for (round, &n) in rounds.iter_mut().zip(&SHIFTS) {
            c = rot(c, n);
            d = rot(d, n);
            let k = permute((u64::from(c) << 28) | u64::from(d), 56, &PC2);
            for i in 0..8 {
                let chunk = ((k >> (42 - 6 * i)) & 0x3f) << sbox_shift(i);
                if i % 2 == 0 {
                    round.0 |= chunk;
                } else {
                    round.1 |= chunk;
                }
            }
        }
        Des { rounds }
    }

    /// Encrypts one block (big-endian bytes as a u64).
    pub fn encrypt(&self, block: u64) -> u64 {
        let t = tables();
        let x = by_bytes(&t.ip, block);
        let (mut l, mut r) = ((x >> 32) as u32, x as u32);
        for &(even, odd) in &self.rounds {
            // Expansion E: S-box i reads the six bits of R from DES bit
            // 4i (bit 0 being bit 32) on: the low six bits of R rotated
            // left by 5 + 4i, which are bits 32 - 4i on of R rotated by 5
            // and doubled to 64 bits (no wrapping for any i).
            let x = r.rotate_left(5);
            let x = (u64::from(x) << 32) | u64::from(x);
            let (u, v) = (x ^ even, x ^ odd);
            let s = |i: usize, w: u64| t.sp[i][((w >> sbox_shift(i)) & 0x3f) as usize];
            let f = s(0, u) ^ s(1, v) ^ s(2, u) ^ s(3, v) ^ s(4, u) ^ s(5, v) ^ s(6, u) ^ s(7, v);
            (l, r) = (r, l ^ f);
        }
        by_bytes(&t.fp, (u64::from(r) << 32) | u64::from(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::cipher::{BlockEncrypt, KeyInit};

    /// FIPS 81's worked example and the zero key's first blocks agree with
    /// the `des` crate, and so do random keys and blocks.
    #[test]
    fn matches_the_des_crate() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut keys = vec![[0u8; 8], 0x0123_4567_89ab_cdefu64.to_be_bytes()];
        keys.extend((0..30).map(|_| next().to_be_bytes()));
        for key in keys {
            let ours = Des::new(key);
            let theirs = des::Des::new(&key.into());
            let mut blocks = vec![0u64, 1, 2, u64::MAX, 0x4e6f_7720_6973_2074];
            blocks.extend((0..200).map(|_| next()));
            for b in blocks {
                let mut want = b.to_be_bytes().into();
                theirs.encrypt_block(&mut want);
                assert_eq!(
                    ours.encrypt(b).to_be_bytes(),
                    want.as_slice(),
                    "key {key:?} block {b:#x}"
                );
            }
        }
        // FIPS 81, appendix B: "Now is t" under 0123456789abcdef.
        let k = Des::new(0x0123_4567_89ab_cdefu64.to_be_bytes());
        assert_eq!(k.encrypt(0x4e6f_7720_6973_2074), 0x3fa4_0e8a_984d_4815);
    }
}
