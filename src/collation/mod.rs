//! String order in the MariaDB collations the gate can reproduce, so that a
//! cross-shard ORDER BY, GROUP BY or DISTINCT on a column whose collation
//! is known (declared in the VSchema or learned from the tablets, see
//! [`crate::topo::schema`]) need not ask every shard for `weight_string()`
//! beside each value (vtgate drops the weight strings the same way when it
//! knows a column's type and collation). Measured on sysbench's ranges, the
//! weight strings cost the tablets 9–40 µs per 50-row shard query.
//!
//! Only collations that give each character one weight are here: `binary`,
//! the UTF-8 `_bin` collations, `utf8mb4_general_ci` (16-bit weights) and
//! `latin1_swedish_ci` (8-bit), their tables taken from MariaDB itself (see
//! `tools/general_ci/`). Any other collation keeps the weight strings.

use std::cmp::Ordering;
use std::sync::OnceLock;

/// A collation the gate compares strings in itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collation {
    /// `binary`: byte order; trailing spaces count (NO PAD), as for
    /// VARBINARY and BLOB.
    Binary,
    /// `utf8mb4_bin`, `utf8mb3_bin`: code point order (which is UTF-8's
    /// byte order), trailing spaces ignored (PAD SPACE).
    Utf8Bin,
    /// `utf8mb4_general_ci`, `utf8mb3_general_ci`: one weight per
    /// character (case folded, most accents kept), U+FFFD's for characters
    /// beyond the Basic Multilingual Plane; PAD SPACE.
    Utf8GeneralCi,
    /// `latin1_swedish_ci`, MariaDB's default for latin1: one 8-bit weight
    /// per character (case and most accents folded, `Å Ä Ö` after `Z`);
    /// PAD SPACE. Values reach the gate in UTF-8 (the tablet connection's
    /// character set; a latin1 client's are read as UTF-8 first, see
    /// [`latin1_to_utf8`]), so each character is weighed by the latin1
    /// byte it came from.
    Latin1SwedishCi,
}

impl Collation {
    /// The collation a VSchema column's `collation_name` names, if the gate
    /// can compare in it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "binary" => Self::Binary,
            "utf8mb4_bin" | "utf8mb3_bin" | "utf8_bin" => Self::Utf8Bin,
            "utf8mb4_general_ci" | "utf8mb3_general_ci" | "utf8_general_ci" => Self::Utf8GeneralCi,
            "latin1_swedish_ci" => Self::Latin1SwedishCi,
            _ => return None,
        })
    }

    /// The collation's name (the utf8mb4 one for either UTF-8 charset).
    pub fn name(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Utf8Bin => "utf8mb4_bin",
            Self::Utf8GeneralCi => "utf8mb4_general_ci",
            Self::Latin1SwedishCi => "latin1_swedish_ci",
        }
    }

    /// Orders two strings as MariaDB's `ORDER BY` does in this collation;
    /// `Equal` is what its GROUP BY and DISTINCT take as one value.
    pub fn cmp(self, a: &[u8], b: &[u8]) -> Ordering {
        match self {
            Self::Binary => a.cmp(b),
            Self::Utf8Bin => cmp_bytes_pad_space(a, b),
            Self::Utf8GeneralCi => cmp_general_ci(a, b),
            Self::Latin1SwedishCi => cmp_latin1_swedish_ci(a, b),
        }
    }
}

/// The character sets (by the collation numbers result columns carry)
/// whose text reaches the gate as latin1 rather than UTF-8: a client's
/// `SET NAMES latin1` is replayed on its tablet connections, which then
/// send its values so.
pub fn is_latin1(collation_id: u16) -> bool {
    matches!(
        collation_id,
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 | 1032 | 1071
    )
}

/// Latin1 text as UTF-8, so that the collations here can weigh it.
/// MariaDB's latin1 is Windows-1252: the bytes 0x80–0x9F are `€`, `‚`,
/// ... (the five it leaves undefined stand for the same code points).
pub fn latin1_to_utf8(s: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    if s.is_ascii() {
        return std::borrow::Cow::Borrowed(s);
    }
    let text: String = s
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('?'),
            b => char::from(b),
        })
        .collect();
    std::borrow::Cow::Owned(text.into_bytes())
}

/// PAD SPACE for byte-ordered strings: the shorter one is compared as if
/// padded with spaces.
fn cmp_bytes_pad_space(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let tail = |s: &[u8]| against_spaces(s[n..].iter().map(|&c| u32::from(c)));
        tail(a).then_with(|| tail(b).reverse())
    })
}

/// How the tail of the longer string compares with spaces: the first
/// weight that is not a space's decides.
fn against_spaces(mut weights: impl Iterator<Item = u32>) -> Ordering {
    weights
        .find(|&w| w != u32::from(b' '))
        .map_or(Ordering::Equal, |w| w.cmp(&u32::from(b' ')))
}

/// The weight table: every BMP code point's weight.
fn weights() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<u16> = (0..=u16::MAX).collect();
        for pair in include_bytes!("general_ci.bin").chunks_exact(4) {
            let cp = u16::from_le_bytes([pair[0], pair[1]]);
            t[usize::from(cp)] = u16::from_le_bytes([pair[2], pair[3]]);
        }
        t
    })
}

/// The weights of a UTF-8 string's characters, one per character, by
/// `weigh` (of the code point). Bytes that are not UTF-8 weigh as
/// themselves plus 0x10000, after every character (MariaDB compares such
/// strings by their bytes from there; the columns this serves hold valid
/// UTF-8, which their collation's character set converts to).
struct Chars<'a, F> {
    s: &'a [u8],
    weigh: F,
}

impl<F: Fn(u32) -> u32> Iterator for Chars<'_, F> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (&first, _) = self.s.split_first()?;
        if first < 0x80 {
            self.s = &self.s[1..];
            return Some((self.weigh)(u32::from(first)));
        }
        let len = match first {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        let ch = self
            .s
            .get(..len)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.chars().next());
        Some(match ch {
            Some(c) => {
                self.s = &self.s[len..];
                (self.weigh)(u32::from(c))
            }
            None => {
                self.s = &self.s[1..];
                0x10000 + u32::from(first)
            }
        })
    }
}

/// Two UTF-8 strings compared by their characters' weights, PAD SPACE (a
/// space weighs 0x20 in every collation here).
fn cmp_chars(a: &[u8], b: &[u8], weigh: impl Fn(u32) -> u32 + Copy) -> Ordering {
    // Equal bytes weigh the same: weigh from the character that holds the
    // first difference. The decoder stops at every byte that is not a
    // UTF-8 continuation byte, so starting there agrees with starting at 0.
    let continuation = |c: Option<&u8>| c.is_some_and(|&c| c & 0xC0 == 0x80);
    let mut start = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    // Two ASCII bytes there are whole characters after equal ones: when
    // they weigh differently they decide, with no decoding (most sort keys
    // differ early and in ASCII; a case-only difference reads on).
    if let (Some(&p), Some(&q)) = (a.get(start), b.get(start)) {
        if p < 0x80 && q < 0x80 {
            let (p, q) = (weigh(u32::from(p)), weigh(u32::from(q)));
            if p != q {
                return p.cmp(&q);
            }
        }
    }
    while start > 0 && (continuation(a.get(start)) || continuation(b.get(start))) {
        start -= 1;
    }
    let x = Chars {
        s: &a[start..],
        weigh,
    };
    let y = Chars {
        s: &b[start..],
        weigh,
    };
    cmp_weights(x, y)
}

/// Two strings' character weights compared in order, PAD SPACE.
fn cmp_weights<F: Fn(u32) -> u32>(mut x: Chars<'_, F>, mut y: Chars<'_, F>) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p == q => {}
            (Some(p), Some(q)) => return p.cmp(&q),
            (None, None) => return Ordering::Equal,
            (Some(p), None) => return against_spaces(std::iter::once(p).chain(x)),
            (None, Some(q)) => return against_spaces(std::iter::once(q).chain(y)).reverse(),
        }
    }
}

/// A code point's `utf8mb4_general_ci` weight from the BMP `table`.
fn general_ci_weight(table: &[u16], cp: u32) -> u32 {
    match usize::try_from(cp) {
        Ok(i) if i <= 0xFFFF => u32::from(table[i]),
        _ => 0xFFFD,
    }
}

fn cmp_general_ci(a: &[u8], b: &[u8]) -> Ordering {
    let table = weights();
    cmp_chars(a, b, |cp| general_ci_weight(table, cp))
}

/// latin1_swedish_ci's weight of each latin1 character, by the Unicode
/// code point the byte stands for (MariaDB's latin1 is Windows-1252: the
/// bytes 0x80–0x9F are `€`, `‚`, ...). Index: code points below 256;
/// `high`: the others, sorted.
struct Latin1 {
    low: [u16; 256],
    high: Vec<(u32, u8)>,
}

/// A character latin1 cannot hold (its columns never do) weighs after all.
const NOT_LATIN1: u16 = 0x100;

fn latin1() -> &'static Latin1 {
    static TABLE: OnceLock<Latin1> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Latin1 {
            low: [NOT_LATIN1; 256],
            high: Vec::new(),
        };
        for e in include_bytes!("latin1_swedish_ci.bin").chunks_exact(5) {
            let cp = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            match usize::try_from(cp) {
                Ok(i) if i < 256 => t.low[i] = u16::from(e[4]),
                _ => t.high.push((cp, e[4])),
            }
        }
        t.high.sort_unstable();
        t
    })
}

impl Latin1 {
    /// A code point's weight.
    fn weight(&self, cp: u32) -> u32 {
        match usize::try_from(cp) {
            Ok(i) if i < 256 => u32::from(self.low[i]),
            _ => self
                .high
                .binary_search_by_key(&cp, |e| e.0)
                .map_or(u32::from(NOT_LATIN1), |k| u32::from(self.high[k].1)),
        }
    }
}

fn cmp_latin1_swedish_ci(a: &[u8], b: &[u8]) -> Ordering {
    let t = latin1();
    cmp_chars(a, b, |cp| t.weight(cp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// Latin1 text read as the characters it stands for (Windows-1252's
    /// for 0x80-0x9F), then weighed as UTF-8.
    #[test]
    fn latin1_text_is_read_as_its_characters() {
        assert_eq!(&*latin1_to_utf8(b"abc"), b"abc");
        assert_eq!(&*latin1_to_utf8(b"\xC9t\xE9"), "Été".as_bytes());
        assert_eq!(&*latin1_to_utf8(b"\x80\x8C\x81"), "€Œ\u{81}".as_bytes());
        let c = Collation::Utf8GeneralCi;
        assert_eq!(
            c.cmp(&latin1_to_utf8(b"\xC9t\xE9"), &latin1_to_utf8(b"ete")),
            Equal
        );
        assert!(is_latin1(8) && is_latin1(47) && !is_latin1(45) && !is_latin1(63));
    }

    #[test]
    fn names() {
        assert_eq!(
            Collation::from_name("UTF8MB4_general_ci"),
            Some(Collation::Utf8GeneralCi)
        );
        assert_eq!(Collation::from_name("utf8_bin"), Some(Collation::Utf8Bin));
        assert_eq!(Collation::from_name("binary"), Some(Collation::Binary));
        assert_eq!(Collation::from_name("utf8mb4_unicode_ci"), None);
        assert_eq!(Collation::from_name("big5_bin"), None);
    }

    #[test]
    fn general_ci_folds_case_and_some_letters() {
        let c = Collation::Utf8GeneralCi;
        assert_eq!(c.cmp(b"abc", b"ABC"), Equal);
        assert_eq!(c.cmp("straße".as_bytes(), b"STRASE"), Equal);
        assert_eq!(c.cmp("é".as_bytes(), b"e"), Equal);
        assert_eq!(c.cmp(b"a", b"B"), Less);
        // Letters weigh as capitals, so `_` (0x5F) sorts after `a`.
        assert_eq!(c.cmp(b"_", b"a"), Greater);
        // Beyond the BMP: all one weight, U+FFFD's.
        assert_eq!(c.cmp("😀".as_bytes(), "🙂".as_bytes()), Equal);
        assert_eq!(c.cmp("😀".as_bytes(), "\u{FFFD}".as_bytes()), Equal);
        assert_eq!(c.cmp("😀".as_bytes(), "\u{FFFF}".as_bytes()), Less);
    }

    #[test]
    fn pad_space() {
        for c in [Collation::Utf8GeneralCi, Collation::Utf8Bin] {
            assert_eq!(c.cmp(b"a", b"a  "), Equal, "{c:?}");
            assert_eq!(c.cmp(b"a", b"a\t"), Greater, "{c:?}");
            assert_eq!(c.cmp(b"a\t", b"a"), Less, "{c:?}");
            assert_eq!(c.cmp(b"a", b"a b"), Less, "{c:?}");
            assert_eq!(c.cmp(b"", b"   "), Equal, "{c:?}");
        }
        assert_eq!(Collation::Binary.cmp(b"a", b"a "), Less);
    }

    #[test]
    fn bin_is_code_point_order() {
        let c = Collation::Utf8Bin;
        assert_eq!(c.cmp(b"a", b"B"), Greater);
        assert_eq!(c.cmp("\u{FFFF}".as_bytes(), "😀".as_bytes()), Less);
        assert_eq!(c.cmp("é".as_bytes(), b"z"), Greater);
    }

    #[test]
    fn shared_prefixes_split_inside_a_character() {
        let c = Collation::Utf8GeneralCi;
        // é (C3 A9), ê (C3 AA), É (C3 89) and ø (C3 B8) differ in their
        // second byte; the first three weigh as E, ø as Ø, Æ as itself.
        assert_eq!(c.cmp("xé".as_bytes(), "xÉ".as_bytes()), Equal);
        assert_eq!(c.cmp("xé".as_bytes(), "xê".as_bytes()), Equal);
        assert_eq!(c.cmp("xé".as_bytes(), "xø".as_bytes()), Less);
        assert_eq!(c.cmp("xø".as_bytes(), "xÆ".as_bytes()), Greater);
        assert_eq!(c.cmp("aé b".as_bytes(), "aÉ".as_bytes()), Greater);
        assert_eq!(c.cmp("ab".as_bytes(), "ab  ".as_bytes()), Equal);
        assert_eq!(c.cmp("😀a".as_bytes(), "🙂A".as_bytes()), Equal);
    }

    #[test]
    fn latin1_swedish_ci_orders_as_mariadb() {
        let c = Collation::Latin1SwedishCi;
        assert_eq!(Collation::from_name("latin1_swedish_ci"), Some(c));
        assert_eq!(c.cmp(b"abc", b"ABC"), Equal);
        assert_eq!(c.cmp("é".as_bytes(), b"E"), Equal);
        // Swedish: Å (0x5B) and Ä (0x5C) after Z (0x5A); ü weighs as Y.
        assert_eq!(c.cmp("ä".as_bytes(), b"z"), Greater);
        assert_eq!(c.cmp("å".as_bytes(), "ä".as_bytes()), Less);
        assert_eq!(c.cmp("ü".as_bytes(), b"y"), Equal);
        // The euro sign is latin1's 0x80 (weight 0x80), after ASCII.
        assert_eq!(c.cmp("€".as_bytes(), b"~"), Greater);
        assert_eq!(c.cmp(b"a", b"a  "), Equal);
        assert_eq!(c.cmp(b"a", b"a\t"), Greater);
    }

    /// The shortcuts (equal prefixes skipped, a first ASCII difference
    /// deciding) order strings as weighing every character from the start.
    #[test]
    fn shortcuts_agree_with_weighing_every_character() {
        // Every character weighed from the first, no shortcut taken.
        fn full(a: &[u8], b: &[u8], weigh: impl Fn(u32) -> u32 + Copy) -> Ordering {
            cmp_weights(Chars { s: a, weigh }, Chars { s: b, weigh })
        }
        let pieces: [&[u8]; 12] = [
            b"a",
            b"A",
            b"b",
            b"_",
            b" ",
            b"\t",
            b"1",
            "é".as_bytes(),
            "É".as_bytes(),
            "ø".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let word = |next: &mut dyn FnMut() -> u64| {
            let n = next() % 5;
            (0..n)
                .flat_map(|_| pieces[(next() % 12) as usize].to_vec())
                .collect::<Vec<u8>>()
        };
        for _ in 0..20_000 {
            let a = word(&mut next);
            let b = word(&mut next);
            assert_eq!(
                Collation::Utf8GeneralCi.cmp(&a, &b),
                full(&a, &b, |cp| general_ci_weight(weights(), cp)),
                "general_ci {a:?} {b:?}"
            );
            assert_eq!(
                Collation::Latin1SwedishCi.cmp(&a, &b),
                full(&a, &b, |cp| latin1().weight(cp)),
                "latin1_swedish_ci {a:?} {b:?}"
            );
        }
    }

    #[test]
    fn bad_utf8_sorts_after_characters() {
        let c = Collation::Utf8GeneralCi;
        assert_eq!(c.cmp(b"a\xff", "a\u{FFFF}".as_bytes()), Greater);
        assert_eq!(c.cmp(b"a\xff", b"a\xff"), Equal);
        assert_eq!(c.cmp(b"a\xc3", b"a\xc4"), Less);
    }
}
