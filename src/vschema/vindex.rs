//! Functional vindexes: column value → keyspace id, bit-exact with Vitess so
//! data sharded by Vitess is found by shardgate and the other way round.

use md5::{Digest, Md5};
use mysql_common::value::Value;

/// Errors mapping a value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VindexError {
    /// The value cannot be read as the vindex's input type.
    #[error("vindex {vindex}: could not map value {value}: {why}")]
    BadValue {
        /// Vindex type.
        vindex: &'static str,
        /// The value as text.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// A vindex type shardgate cannot compute.
    #[error("vindex type '{0}' is not supported for routing")]
    Unsupported(String),
}

/// A vindex function shardgate computes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// DES (zero key) of the big-endian uint64.
    Hash,
    /// xxHash64 (seed 0) of the value's bytes, little-endian.
    Xxhash,
    /// The uint64, big-endian.
    Numeric,
    /// The bytes themselves.
    Binary,
    /// MD5 of the bytes.
    BinaryMd5,
    /// The uint64 with its bits reversed, big-endian.
    ReverseBits,
    /// Every value to keyspace id 0x00 (the first shard).
    Null,
    /// MD5 of the loose (case-, accent- and width-blind) collation key.
    UnicodeLooseMd5,
    /// xxHash64 of the loose collation key, little-endian.
    UnicodeLooseXxhash,
}

impl Func {
    /// The function for a Vitess vindex type name, if it is functional and known.
    pub fn from_type(t: &str) -> Result<Func, VindexError> {
        Ok(match t {
            "hash" | "hash_test" => Func::Hash,
            "xxhash" => Func::Xxhash,
            "numeric" => Func::Numeric,
            "binary" => Func::Binary,
            "binary_md5" => Func::BinaryMd5,
            "reverse_bits" => Func::ReverseBits,
            "null" => Func::Null,
            "unicode_loose_md5" => Func::UnicodeLooseMd5,
            "unicode_loose_xxhash" => Func::UnicodeLooseXxhash,
            other => return Err(VindexError::Unsupported(other.to_string())),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Hash => "hash",
            Func::Xxhash => "xxhash",
            Func::Numeric => "numeric",
            Func::Binary => "binary",
            Func::BinaryMd5 => "binary_md5",
            Func::ReverseBits => "reverse_bits",
            Func::Null => "null",
            Func::UnicodeLooseMd5 => "unicode_loose_md5",
            Func::UnicodeLooseXxhash => "unicode_loose_xxhash",
        }
    }

    /// True when keyspace ids keep the order of the values they come from,
    /// so `col BETWEEN a AND b` holds only ids between those of `a` and `b`
    /// and can skip the shards outside (Vitess's sequential vindexes).
    pub fn is_sequential(self) -> bool {
        matches!(self, Func::Numeric | Func::Binary)
    }

    /// Maps a value to its keyspace id; None when the value has none (NULL
    /// for integer vindexes), which routes nowhere.
    pub fn map(self, v: &Value) -> Result<Option<KeyspaceId>, VindexError> {
        match self {
            Func::Null => Ok(Some(KeyspaceId::Bytes(vec![0]))),
            Func::Binary => Ok(match v {
                Value::NULL => None,
                other => Some(KeyspaceId::Bytes(bytes_of(other))),
            }),
            Func::BinaryMd5 => Ok(Some(KeyspaceId::Bytes(Md5::digest(bytes_of(v)).to_vec()))),
            Func::Xxhash => Ok(Some(xxhash(&bytes_of(v)))),
            Func::UnicodeLooseMd5 | Func::UnicodeLooseXxhash => {
                let key = super::unicode_loose::loose_key(&bytes_of(v)).map_err(|e| {
                    VindexError::BadValue {
                        vindex: self.name(),
                        value: format!("{v:?}"),
                        why: match e {
                            super::unicode_loose::LooseError::InvalidUtf8 => "invalid UTF-8",
                        },
                    }
                })?;
                Ok(Some(if self == Func::UnicodeLooseMd5 {
                    KeyspaceId::Bytes(Md5::digest(key).to_vec())
                } else {
                    xxhash(&key)
                }))
            }
            Func::Hash | Func::Numeric | Func::ReverseBits => {
                let Some(n) = self.uint(v)? else {
                    return Ok(None);
                };
                Ok(Some(KeyspaceId::Word(match self {
                    Func::Hash => des_encrypt(n),
                    Func::Numeric => n.to_be_bytes(),
                    _ => n.reverse_bits().to_be_bytes(),
                })))
            }
        }
    }

    /// Reads a value as Vitess's uint64 input (negative integers wrap).
    fn uint(self, v: &Value) -> Result<Option<u64>, VindexError> {
        let bad = |why| VindexError::BadValue {
            vindex: self.name(),
            value: format!("{v:?}"),
            why,
        };
        match v {
            Value::NULL => Ok(None),
            Value::Int(i) => Ok(Some(*i as u64)),
            Value::UInt(u) => Ok(Some(*u)),
            Value::Bytes(b) => {
                let s = std::str::from_utf8(b)
                    .map_err(|_| bad("not a number"))?
                    .trim();
                if let Ok(u) = s.parse::<u64>() {
                    Ok(Some(u))
                } else if let Ok(i) = s.parse::<i64>() {
                    Ok(Some(i as u64))
                } else if let Some(n) = number_text(s) {
                    Ok(n)
                } else if self == Func::Numeric {
                    Ok(None)
                } else {
                    Err(bad("not an integer"))
                }
            }
            Value::Double(d) if d.is_finite() => Ok(integral(*d)),
            _ if self == Func::Numeric => Ok(None),
            _ => Err(bad("not an integer")),
        }
    }
}

/// The integer a double equals (negative ones wrap, as Vitess's), or
/// None: no integer column holds a value equal to it.
fn integral(d: f64) -> Option<u64> {
    if d.fract() != 0.0 || d.abs() >= 1.8e19 {
        return None;
    }
    Some(if d < 0.0 { d as i64 as u64 } else { d as u64 })
}

/// A number written with a fraction, an exponent or in hex (`1.0`,
/// `-2.50`, `1e3`, `0x1f`), read as MySQL compares it with an integer
/// column: `Some(Some(n))` for the integer it equals, `Some(None)` when
/// it equals none (the statement's rows are on no shard), None when `s`
/// is no such number. Why: `id = 1.0` finds id 1 on MariaDB, and was
/// refused as a value the vindex cannot map. An integer too large for any
/// integer column equals none either.
fn number_text(s: &str) -> Option<Option<u64>> {
    if let Some(hex) = s.strip_prefix("0x") {
        let n = (!hex.is_empty() && hex.len() <= 16).then(|| u64::from_str_radix(hex, 16));
        return n?.ok().map(Some);
    }
    let numeric = |c: u8| c.is_ascii_digit() || b"+-.eE".contains(&c);
    if !s.bytes().all(numeric) || !s.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    // An integer no BIGINT holds (the caller read those that fit): no
    // row equals it.
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.bytes().all(|c| c.is_ascii_digit()) {
        return Some(None);
    }
    if s.contains(['e', 'E']) {
        return Some(integral(s.parse().ok()?));
    }
    let (int, frac) = s.split_once('.')?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.bytes().any(|c| c != b'0') {
        return Some(None);
    }
    let int = match int {
        "" | "-" | "+" => "0",
        other => other,
    };
    match int.parse::<i64>() {
        Ok(i) => Some(Some(i as u64)),
        Err(_) => int.parse::<u64>().ok().map(Some),
    }
}

/// A keyspace id. Most vindexes give eight bytes, kept inline so that
/// routing a point query allocates nothing for its id; the others (md5's
/// sixteen, `binary`'s any length) are on the heap. Compared, ordered and
/// printed as its bytes.
#[derive(Clone)]
pub enum KeyspaceId {
    /// Eight bytes: hash, numeric, xxhash, reverse_bits.
    Word([u8; 8]),
    /// Any other length.
    Bytes(Vec<u8>),
}

impl std::ops::Deref for KeyspaceId {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            KeyspaceId::Word(w) => w,
            KeyspaceId::Bytes(b) => b,
        }
    }
}

impl PartialEq for KeyspaceId {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for KeyspaceId {}

impl PartialOrd for KeyspaceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyspaceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::fmt::Debug for KeyspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A value's bytes as Vitess's `ToBytes` gives them (integers as decimal text).
fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::NULL => Vec::new(),
        Value::Bytes(b) => b.clone(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        other => other.as_sql(true).trim_matches('\'').as_bytes().to_vec(),
    }
}

fn xxhash(bytes: &[u8]) -> KeyspaceId {
    KeyspaceId::Word(twox_hash::XxHash64::oneshot(0, bytes).to_le_bytes())
}

fn des_encrypt(n: u64) -> [u8; 8] {
    // The key schedule is computed once; the key is always zero.
    static CIPHER: std::sync::OnceLock<super::des::Des> = std::sync::OnceLock::new();
    let cipher = CIPHER.get_or_init(|| super::des::Des::new([0u8; 8]));
    cipher.encrypt(n).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Every vector of ../shared/compat/vindex_vectors.json (Vitess's own tests).
    #[test]
    fn vitess_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/compat/vindex_vectors.json"
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("compat vectors")).unwrap();
        let mut checked = 0;
        for (kind, cases) in doc.as_object().unwrap() {
            let Ok(func) = Func::from_type(kind) else {
                continue;
            };
            for case in cases.as_array().unwrap() {
                let input = match (case.get("in"), case.get("in_int")) {
                    (_, Some(i)) => {
                        let s = i.as_str().unwrap();
                        match s.parse::<i64>() {
                            Ok(n) => Value::Int(n),
                            Err(_) => Value::UInt(s.parse().unwrap()),
                        }
                    }
                    (Some(serde_json::Value::Null), _) => Value::NULL,
                    (Some(s), _) => Value::Bytes(s.as_str().unwrap().as_bytes().to_vec()),
                    _ => panic!("bad case {case}"),
                };
                let want = case["ksid"].as_str().map(str::to_string);
                let got = func.map(&input).unwrap().map(|k| hex(&k));
                assert_eq!(got, want, "{kind} {case}");
                checked += 1;
            }
        }
        assert!(checked >= 30, "only {checked} vectors checked");
    }

    #[test]
    fn numbers_written_otherwise_map_as_the_integer_they_equal() {
        let ksid = |f: Func, v: &str| {
            f.map(&Value::Bytes(v.as_bytes().to_vec()))
                .map(|k| k.map(|k| hex(&k)))
        };
        for f in [Func::Hash, Func::Numeric, Func::ReverseBits] {
            let one = ksid(f, "1").unwrap();
            for same in ["1.0", "1.", "+1.00", "1e0", "0.1e1", "0x1", "0x01"] {
                assert_eq!(ksid(f, same).unwrap(), one, "{same}");
            }
            assert_eq!(ksid(f, "-1.0").unwrap(), ksid(f, "-1").unwrap());
            assert_eq!(ksid(f, "0.0").unwrap(), ksid(f, "0").unwrap());
            // No integer equals them: no shard holds their rows.
            for none in [
                "1.5",
                "-0.25",
                "1e-3",
                ".5",
                "99999999999999999999",
                "-9223372036854775809",
            ] {
                assert_eq!(ksid(f, none).unwrap(), None, "{none}");
            }
            assert_eq!(f.map(&Value::Double(2.5)).unwrap(), None);
            assert_eq!(
                f.map(&Value::Double(2.0)).unwrap().map(|k| hex(&k)),
                ksid(f, "2").unwrap()
            );
        }
        // Text that is no number stays refused where it was.
        assert!(ksid(Func::Hash, "abc").is_err());
        assert!(ksid(Func::Hash, "0x").is_err());
    }

    #[test]
    fn key_range_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/compat/vindex_vectors.json"
        );
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        for case in doc["key_ranges"].as_array().unwrap() {
            let kr = crate::topo::KeyRange::parse(case["shard"].as_str().unwrap()).unwrap();
            for id in case["contains"].as_array().unwrap() {
                assert!(kr.contains(&unhex(id.as_str().unwrap())), "{case}");
            }
            for id in case["excludes"].as_array().unwrap() {
                assert!(!kr.contains(&unhex(id.as_str().unwrap())), "{case}");
            }
        }
    }

    #[test]
    fn text_integers_hash_like_integers() {
        assert_eq!(
            Func::Hash.map(&Value::Bytes(b"1".to_vec())).unwrap(),
            Func::Hash.map(&Value::Int(1)).unwrap()
        );
        assert!(Func::Hash.map(&Value::Bytes(b"abc".to_vec())).is_err());
        assert_eq!(
            Func::Null.map(&Value::NULL).unwrap().as_deref(),
            Some(&[0u8][..])
        );
    }
}
