//! The collation key behind Vitess's `unicode_loose_md5` and
//! `unicode_loose_xxhash` vindexes: primary weights only (case, accents and
//! width ignored) of the English/root collation that Vitess takes from Go's
//! `golang.org/x/text/collate` (Unicode 6.2.0, CLDR 23), so that `Tést`,
//! `TEST` and `te\u{301}st` land on the same shard in both systems.
//!
//! The weights live in `unicode_loose.bin`, dumped from that collator by
//! `tools/unicode_loose/` (see its README for how to regenerate): per code
//! point primaries, ranges whose weight is the code point plus a constant
//! (implicit weights of ideographs and unassigned code points), and the
//! contractions (multi-character sequences with weights of their own, such as
//! Catalan `l·`). A code point in none of them has no primary weight.
//!
//! Like Go's collator, a contraction may also match across intervening marks
//! of another combining class (`и` + dot below + breve is `й` + dot below),
//! and marks that follow a starter are ordered by combining class; the
//! table's last section holds the classes that needs.

use std::sync::OnceLock;

/// Why a value has no loose key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LooseError {
    /// Go's collator cannot take invalid UTF-8, so Vitess refuses it too.
    #[error("cannot normalize string containing invalid UTF-8")]
    InvalidUtf8,
}

/// A collation element: primary weight in the low 24 bits, the canonical
/// combining class of the mark it came from in the top 8.
#[derive(Clone, Copy)]
struct Elem(u32);

impl Elem {
    fn primary(self) -> u32 {
        self.0 & 0x00ff_ffff
    }
    fn ccc(self) -> u8 {
        (self.0 >> 24) as u8
    }
}

struct Table {
    /// (first code point, count, offset): primary = code point + offset.
    runs: Vec<(u32, u32, u32)>,
    /// Sorted code points with explicit elements, and where their elements are.
    explicit_cps: Vec<u32>,
    explicit_at: Vec<(u32, u8)>,
    elems: Vec<u32>,
    /// Contractions, sorted by first code point then longest first.
    contractions: Vec<(Vec<u32>, Vec<u32>)>,
    /// Sorted code points whose decomposition starts or ends with a mark,
    /// with those (lead, trail) combining classes.
    mark_cps: Vec<u32>,
    mark_ccc: Vec<(u8, u8)>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::parse(include_bytes!("unicode_loose.bin")))
}

impl Table {
    fn parse(data: &[u8]) -> Table {
        assert_eq!(&data[..5], b"SGUL3", "unicode_loose.bin header");
        let mut pos = 5;
        let mut next = || {
            let mut v = 0u32;
            let mut shift = 0;
            loop {
                let b = data[pos];
                pos += 1;
                v |= u32::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return v;
                }
                shift += 7;
            }
        };
        let runs = (0..next()).map(|_| (next(), next(), next())).collect();
        let n = next() as usize;
        let (mut explicit_cps, mut explicit_at, mut elems) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        let mut cp = 0;
        for _ in 0..n {
            cp += next();
            let k = next();
            explicit_cps.push(cp);
            explicit_at.push((elems.len() as u32, k as u8));
            for _ in 0..k {
                elems.push(next());
            }
        }
        let mut contractions: Vec<(Vec<u32>, Vec<u32>)> = (0..next())
            .map(|_| {
                let cps = (0..next()).map(|_| next()).collect();
                let es = (0..next()).map(|_| next()).collect();
                (cps, es)
            })
            .collect();
        contractions.sort_by(|a, b| a.0[0].cmp(&b.0[0]).then(b.0.len().cmp(&a.0.len())));
        let n = next() as usize;
        let (mut mark_cps, mut mark_ccc) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut cp = 0;
        for _ in 0..n {
            cp += next();
            mark_cps.push(cp);
            mark_ccc.push((next() as u8, next() as u8));
        }
        Table {
            runs,
            explicit_cps,
            explicit_at,
            elems,
            contractions,
            mark_cps,
            mark_ccc,
        }
    }

    /// (lead, trail) canonical combining classes of a code point's NFD form.
    fn ccc(&self, cp: u32) -> (u8, u8) {
        match self.mark_cps.binary_search(&cp) {
            Ok(i) => self.mark_ccc[i],
            Err(_) => (0, 0),
        }
    }

    fn push_single(&self, cp: u32, out: &mut Vec<Elem>) {
        if let Ok(i) = self.explicit_cps.binary_search(&cp) {
            let (at, k) = self.explicit_at[i];
            let es = &self.elems[at as usize..at as usize + k as usize];
            out.extend(es.iter().map(|&e| Elem(e)));
        } else {
            let i = self.runs.partition_point(|r| r.0 <= cp);
            if let Some(&(start, count, offset)) = i.checked_sub(1).map(|i| &self.runs[i]) {
                if cp - start < count {
                    out.push(Elem(cp + offset));
                }
            }
        }
    }

    /// Matches the longest contraction that starts at `cps[0]`, the way Go's
    /// collator walks its contraction trie: first contiguously, then, if the
    /// match stopped at a mark, across marks of another combining class that
    /// do not block it. Appends the contraction's elements and those of the
    /// marks it skipped; returns how many code points it consumed, or None
    /// when `cps[0]` starts no contraction.
    fn append_contraction(&self, cps: &[u32], out: &mut Vec<Elem>) -> Option<usize> {
        let first = self.contractions.partition_point(|c| c.0[0] < cps[0]);
        let cands: Vec<&(Vec<u32>, Vec<u32>)> = self.contractions[first..]
            .iter()
            .take_while(|c| c.0[0] == cps[0])
            .collect();
        if cands.is_empty() {
            return None;
        }
        // The trie path so far, the longest complete contraction on it and
        // where in `cps` that contraction ends.
        let mut path = vec![cps[0]];
        let mut best: Option<usize> = None;
        let mut consumed = 1;
        // Extends the path with cps[p..end] as far as the trie allows;
        // returns the new position.
        let extend = |path: &mut Vec<u32>,
                      best: &mut Option<usize>,
                      consumed: &mut usize,
                      mut p: usize,
                      end: usize| {
            while p < end {
                path.push(cps[p]);
                if !cands.iter().any(|c| c.0.starts_with(path)) {
                    path.pop();
                    break;
                }
                p += 1;
                if let Some(c) = cands.iter().position(|c| c.0 == *path) {
                    *best = Some(c);
                    *consumed = p;
                }
            }
            p
        };
        let done = |path: &Vec<u32>| {
            !cands
                .iter()
                .any(|c| c.0.len() > path.len() && c.0.starts_with(path))
        };
        let mut p = extend(&mut path, &mut best, &mut consumed, 1, cps.len());
        // Marks skipped over, and how many of them precede the last match.
        let mut skipped: Vec<u32> = Vec::new();
        let mut skipped_used = 0;
        if !done(&path) && p < cps.len() && cps[p] >= 0x80 {
            let mut pending = vec![cps[p]];
            let (lead, trail) = self.ccc(cps[p]);
            p += 1;
            if lead != 0 {
                let segment_end = (p..cps.len())
                    .find(|&q| self.ccc(cps[q]).0 == 0)
                    .unwrap_or(cps.len());
                let mut prev = trail;
                while p < cps.len() && !done(&path) && cps[p] >= 0x80 {
                    let (lead, trail) = self.ccc(cps[p]);
                    if lead == 0 || prev >= lead {
                        break;
                    }
                    prev = trail;
                    let q = extend(&mut path, &mut best, &mut consumed, p, segment_end);
                    if q != p {
                        skipped.append(&mut pending);
                        if consumed == q {
                            skipped_used = skipped.len();
                        }
                        p = q;
                    } else {
                        pending.push(cps[p]);
                        p += 1;
                    }
                }
            }
        }
        match best {
            Some(c) => out.extend(cands[c].1.iter().map(|&e| Elem(e))),
            None => self.push_single(cps[0], out),
        }
        // Each skipped mark is then a lookup unit of its own.
        let mut i = 0;
        while i < skipped_used {
            i += self.append_next(&skipped[i..skipped_used], out);
        }
        Some(consumed)
    }

    /// Appends the elements of the next lookup unit (a contraction or one
    /// code point) of `cps`, always at least one, and returns its length.
    fn append_next(&self, cps: &[u32], out: &mut Vec<Elem>) -> usize {
        let before = out.len();
        let len = self.append_contraction(cps, out).unwrap_or_else(|| {
            self.push_single(cps[0], out);
            1
        });
        if out.len() == before {
            out.push(Elem(0));
        }
        len
    }

    /// The elements of `cps` in collation order: marks that follow a starter
    /// are stably sorted by combining class, as canonical ordering would.
    fn elements(&self, cps: &[u32]) -> Vec<Elem> {
        const MAX_COMBINING: usize = 30;
        let mut es = Vec::with_capacity(cps.len() + 4);
        let mut pos = 0;
        // Elements before `fixed` are final.
        let mut fixed = 0;
        loop {
            if fixed == es.len() {
                if pos == cps.len() {
                    return es;
                }
                pos += self.append_next(&cps[pos..], &mut es);
            }
            let mut prev = es[es.len() - 1].ccc();
            if prev == 0 {
                fixed = es.len();
                continue;
            }
            if es[fixed].ccc() == 0 {
                while fixed < es.len() && es[fixed].ccc() == 0 {
                    fixed += 1;
                }
                continue;
            }
            loop {
                let p = es.len();
                if pos == cps.len() {
                    return es;
                }
                pos += self.append_next(&cps[pos..], &mut es);
                let ccc = es[p].ccc();
                if ccc == 0 || es.len() - fixed > MAX_COMBINING {
                    fixed = p;
                    break;
                } else if ccc < prev {
                    let mut at = p - 1;
                    while at > fixed && ccc < es[at - 1].ccc() {
                        at -= 1;
                    }
                    let moved = es.len() - p;
                    es[at..].rotate_right(moved);
                } else {
                    prev = ccc;
                }
            }
        }
    }
}

/// Go's variable-length primary encoding: two bytes up to 0x7FFF, else three
/// with the top bit set.
fn push_primary(w: u32, out: &mut Vec<u8>) {
    if w <= 0x7fff {
        out.extend_from_slice(&[(w >> 8) as u8, w as u8]);
    } else {
        out.extend_from_slice(&[(w >> 16) as u8 | 0x80, (w >> 8) as u8, w as u8]);
    }
}

/// The loose collation key of `input`, after dropping trailing spaces (MySQL
/// ignores them in comparisons, so Vitess does too).
pub fn loose_key(input: &[u8]) -> Result<Vec<u8>, LooseError> {
    let text = std::str::from_utf8(input).map_err(|_| LooseError::InvalidUtf8)?;
    let cps: Vec<u32> = text.trim_end_matches(' ').chars().map(u32::from).collect();
    let mut out = Vec::with_capacity(cps.len() * 2);
    for e in table().elements(&cps) {
        if e.primary() != 0 {
            push_primary(e.primary(), &mut out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vitess's own normalization vectors (unicodeloosemd5_test.go).
    #[test]
    fn vitess_normalization_vectors() {
        let t = b"\x18\x16\x16L\x17\xf3\x18\x16".to_vec();
        for s in ["Test", "TEST", "Te\u{301}st", "Tést", "Test "] {
            assert_eq!(loose_key(s.as_bytes()).unwrap(), t, "{s}");
        }
        assert_eq!(
            loose_key("Bést".as_bytes()).unwrap(),
            b"\x16\x05\x16L\x17\xf3\x18\x16"
        );
        assert_eq!(
            loose_key(b" Test").unwrap(),
            b"\x01\t\x18\x16\x16L\x17\xf3\x18\x16"
        );
        assert_eq!(
            loose_key(b"Test\t").unwrap(),
            b"\x18\x16\x16L\x17\xf3\x18\x16\x01\x00"
        );
        assert_eq!(
            loose_key("TéstLooong".as_bytes()).unwrap(),
            b"\x18\x16\x16L\x17\xf3\x18\x16\x17\x11\x17q\x17q\x17q\x17O\x16\x91"
        );
        assert_eq!(loose_key(b"T").unwrap(), b"\x18\x16");
    }

    /// Inputs over many scripts (marks out of canonical order, contractions,
    /// ideographs, Hangul, unassigned code points, trailing spaces) with the
    /// key and keyspace id Go's collator gives them, made by
    /// `tools/unicode_loose/`.
    #[test]
    fn go_collator_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/unicode_loose_vectors.txt"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut checked = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let input = unhex(f[0]);
            let key = hex(&loose_key(&input).unwrap());
            let want = if f[1] == "-" { "" } else { f[1] };
            assert_eq!(key, want, "{:?}", String::from_utf8_lossy(&input));
            let v = mysql_common::value::Value::Bytes(input);
            let ksid = super::super::vindex::Func::UnicodeLooseMd5.map(&v).unwrap();
            assert_eq!(hex(&ksid.unwrap()), f[2]);
            checked += 1;
        }
        assert!(checked >= 3000, "{checked}");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        for bad in [
            &b"\x99\xeb\x9d\x18\xa4G\x84\x04]\x87\xf3\xc6|\xf2'F"[..],
            b"D\x86\x15\xbb\xda\x081?j\x8e\xb6h\xd2\x0b\xf5\x05",
        ] {
            assert_eq!(loose_key(bad), Err(LooseError::InvalidUtf8));
        }
    }

    #[test]
    fn contractions_and_implicit_weights() {
        // и + combining breve is the letter й, not и with an accent.
        let short_i = loose_key("\u{438}\u{306}".as_bytes()).unwrap();
        assert_eq!(short_i, loose_key("й".as_bytes()).unwrap());
        assert_ne!(short_i, loose_key("и".as_bytes()).unwrap());
        // Sinhala vowel signs: a three-character contraction wins over two.
        let two = loose_key("\u{dd9}\u{dcf}".as_bytes()).unwrap();
        let three = loose_key("\u{dd9}\u{dcf}\u{dca}".as_bytes()).unwrap();
        assert_eq!((two.len(), three.len()), (2, 2));
        assert_ne!(two, three);
        // A contraction matches across a mark of a lower class: и, dot
        // below, breve is й followed by the dot below.
        assert_eq!(
            loose_key("\u{438}\u{323}\u{306}".as_bytes()).unwrap(),
            short_i
        );
        // Ideographs get three-byte implicit weights that keep code point order.
        let a = loose_key("一".as_bytes()).unwrap();
        let b = loose_key("丁".as_bytes()).unwrap();
        assert_eq!(a.len(), 3);
        assert!(a < b);
    }

    /// Any input, valid UTF-8 or not, gives a key or the UTF-8 error, never
    /// a panic: random code points weighted towards marks, contraction
    /// letters and long runs of non-starters (the re-ordering limit).
    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pools: [&[u32]; 4] = [
            &[
                0x438, 0x418, 0xdd9, 0xdcf, 0xdca, 0xe40, 0xe01, 0x4c, 0xb7, 0x387,
            ],
            &[
                0x300, 0x301, 0x306, 0x308, 0x323, 0x327, 0x345, 0x94d, 0xf71, 0xf72, 0xf80,
            ],
            &[0x41, 0x61, 0x20, 0x4e00, 0xac00, 0x1f600, 0x10ffff, 0xfffd],
            &[],
        ];
        for _ in 0..20_000 {
            let n = (next() % 48) as usize;
            let mut s = String::new();
            for _ in 0..n {
                let pool = pools[(next() % 4) as usize];
                let cp = if pool.is_empty() {
                    (next() % 0x11_0000) as u32
                } else {
                    pool[(next() % pool.len() as u64) as usize]
                };
                s.extend(char::from_u32(cp));
            }
            let key = loose_key(s.as_bytes()).unwrap();
            assert_eq!(key, loose_key(s.as_bytes()).unwrap());
            let mut bytes = s.into_bytes();
            if !bytes.is_empty() && next() % 2 == 0 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = (next() % 256) as u8;
                let _ = loose_key(&bytes);
            }
        }
    }
}
