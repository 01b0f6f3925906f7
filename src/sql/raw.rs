//! Statement bytes that are not UTF-8, carried through text unchanged.
//!
//! A client's statement is bytes: a dump's INSERT holds a VARBINARY
//! column's bytes as they are inside its string literals (`'\0ÿ...'`), and
//! a latin1 client sends `é` as one byte. The gate reads statements as
//! Rust strings, so each byte that is not part of valid UTF-8 becomes a
//! stand-in character at the frontend ([`text_of`]): U+10FF80 + (byte −
//! 0x80), from the last 128 code points of plane 16's private use area.
//! The lexer, the parser and the planner see an ordinary character inside
//! a literal or a name; where text leaves for a tablet ([`wire`]), and
//! where a literal becomes a value ([`restore`]), each stand-in is its
//! byte again. A valid statement that holds one of those code points
//! itself has that character's bytes stood in for too, so it comes out
//! as it came in.
//!
//! What it costs a statement of valid UTF-8: the validation the frontend
//! always made, and one `memchr` for 0xF4 (the lead byte of plane 16) on
//! the way in and once on the way out.

use std::borrow::Cow;

/// The first stand-in code point (for byte 0x80).
const FIRST: u32 = 0x10FF80;

/// Whether `b` starts a stand-in's UTF-8 form (F4 8F BE|BF xx).
fn stand_in_at(b: &[u8]) -> bool {
    b.len() >= 4 && b[0] == 0xF4 && b[1] == 0x8F && (b[2] == 0xBE || b[2] == 0xBF)
}

/// Whether `b` holds a stand-in's UTF-8 form anywhere.
fn holds_stand_in(b: &[u8]) -> bool {
    memchr::memchr_iter(0xF4, b).any(|i| stand_in_at(&b[i..]))
}

/// A client's statement as text: borrowed when it is valid UTF-8 (the
/// common case), else with each byte outside valid UTF-8 (and each byte
/// of a stand-in code point the client sent itself) as its stand-in.
pub fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !holds_stand_in(bytes) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    let stand_in = |out: &mut String, b: u8| {
        out.push(char::from_u32(FIRST + u32::from(b) - 0x80).unwrap_or('\u{FFFD}'))
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if (FIRST..=0x10FFFF).contains(&u32::from(c)) {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    stand_in(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            // Invalid sequences are bytes of 0x80 and above.
            stand_in(&mut out, b.max(0x80));
        }
    }
    Cow::Owned(out)
}

/// The bytes a tablet gets for `text`: each stand-in its byte again.
/// Borrowed when there is none.
pub fn wire(text: &str) -> Cow<'_, [u8]> {
    let b = text.as_bytes();
    if !holds_stand_in(b) {
        return Cow::Borrowed(b);
    }
    Cow::Owned(restore(b.to_vec()))
}

/// `bytes` (a literal's value, or text bound for a tablet) with each
/// stand-in its byte again.
pub fn restore(bytes: Vec<u8>) -> Vec<u8> {
    if !holds_stand_in(&bytes) {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if stand_in_at(&bytes[i..]) {
            out.push(0x80 + (((bytes[i + 2] & 1) << 6) | (bytes[i + 3] & 0x3F)));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_text_is_borrowed_and_every_byte_comes_back() {
        let plain = "select 'é✓' from t";
        assert!(matches!(text_of(plain.as_bytes()), Cow::Borrowed(_)));
        assert!(matches!(wire(plain), Cow::Borrowed(_)));
        // Every byte value, alone and after valid and invalid neighbours.
        let mut sent: Vec<u8> = b"insert into t values ('".to_vec();
        sent.extend((0u8..=255).filter(|&b| b != b'\'' && b != b'\\'));
        sent.extend("é\u{10FF80}\u{10FFFF}x".as_bytes());
        sent.extend([0xC3, 0xF4, 0x8F, 0xBE, 0x80, 0xE2, 0x9C]);
        sent.extend(b"')");
        let text = text_of(&sent);
        assert!(matches!(text, Cow::Owned(_)));
        assert!(text.starts_with("insert into t values ('") && text.ends_with("')"));
        assert_eq!(wire(&text).as_ref(), sent.as_slice());
        // The lexer sees one string literal; its value is the bytes.
        let toks = crate::sql::lexer::tokenize(&text);
        let lit = toks
            .iter()
            .find(|t| t.kind == crate::sql::lexer::TokenKind::Str)
            .unwrap();
        let value = crate::sql::normalize::string_value(lit.text(&text), true);
        let start = b"insert into t values ('".len();
        assert_eq!(
            value,
            mysql_common::value::Value::Bytes(sent[start..sent.len() - 2].to_vec())
        );
    }
}
