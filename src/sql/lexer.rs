//! A MySQL lexer just deep enough for a proxy: it knows where strings,
//! identifiers, comments, placeholders and statement separators are, so the
//! proxy can split, classify and rewrite text without a full parse.

/// What a token is; the text is found through its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: keyword, identifier or function name.
    Word,
    /// A quoted string literal ('...' or "...").
    Str,
    /// A backtick-quoted identifier.
    Ident,
    /// A numeric literal.
    Number,
    /// `?`, a prepared-statement placeholder.
    Placeholder,
    /// `@name` or `@@name` (with optional scope prefix).
    Variable,
    /// `;`
    Semicolon,
    /// Any other single punctuation character.
    Punct(u8),
}

/// A token and where it sits in the source text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// The token's text in `src`.
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }

    /// True when this is the bare word `kw`, compared case-insensitively.
    pub fn is_word(&self, src: &str, kw: &str) -> bool {
        self.kind == TokenKind::Word && self.text(src).eq_ignore_ascii_case(kw)
    }
}

/// Tokenizes `src`, skipping whitespace and comments. Never panics: an
/// unterminated string or comment ends at the end of the input.
pub fn tokenize(src: &str) -> Vec<Token> {
    tokenize_with::<true>(src)
}

/// [`tokenize`] as a session with NO_BACKSLASH_ESCAPES reads: a backslash
/// in a string is itself, so `'c\'` ends at its second quote.
pub fn tokenize_mode(src: &str, no_backslash_escapes: bool) -> Vec<Token> {
    if no_backslash_escapes {
        tokenize_with::<false>(src)
    } else {
        tokenize_with::<true>(src)
    }
}

/// The tokenizer, its string escapes fixed at compile time (the hot path
/// reads every statement with them).
fn tokenize_with<const ESCAPES: bool>(src: &str) -> Vec<Token> {
    let escapes = ESCAPES;
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(16);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'#' => {
                i = skip_line(b, i);
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(b, i);
                continue;
            }
            b'\'' | b'"' => {
                i = skip_quoted(b, i, c, escapes);
                out.push(tok(TokenKind::Str, start, i));
            }
            b'`' => {
                i = skip_quoted(b, i, c, false);
                out.push(tok(TokenKind::Ident, start, i));
            }
            b'?' => {
                i += 1;
                out.push(tok(TokenKind::Placeholder, start, i));
            }
            b';' => {
                i += 1;
                out.push(tok(TokenKind::Semicolon, start, i));
            }
            b'@' => {
                i += 1;
                if b.get(i) == Some(&b'@') {
                    i += 1;
                }
                match b.get(i) {
                    Some(q @ (b'\'' | b'"' | b'`')) => {
                        i = skip_quoted(b, i, *q, escapes && *q != b'`')
                    }
                    _ => {
                        while i < b.len() && (is_word_byte(b[i]) || b[i] == b'.') {
                            i += 1;
                        }
                    }
                }
                out.push(tok(TokenKind::Variable, start, i));
            }
            // `.5` is a number, unless the period qualifies a name
            // (`t.5col`, `f().x`).
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && out.last().is_none_or(|t: &Token| {
                    t.end != i
                        || !matches!(
                            t.kind,
                            TokenKind::Word
                                | TokenKind::Ident
                                | TokenKind::Variable
                                | TokenKind::Punct(b')')
                        )
                }) =>
            {
                i = number_end(b, start + 1);
                out.push(tok(TokenKind::Number, start, i));
            }
            b'0'..=b'9' => {
                i = number_end(b, start);
                out.push(tok(TokenKind::Number, start, i));
            }
            _ if is_word_byte(c) => {
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                // X'..', B'..', N'..' and _charset'..' literals are strings.
                if b.get(i) == Some(&b'\'') && (i - start == 1 || c == b'_') {
                    i = skip_quoted(b, i, b'\'', escapes);
                    out.push(tok(TokenKind::Str, start, i));
                } else {
                    out.push(tok(TokenKind::Word, start, i));
                }
            }
            _ => {
                i += 1;
                out.push(tok(TokenKind::Punct(c), start, i));
            }
        }
    }
    out
}

/// Where a number that starts at `start` ends: its digits, period, hex
/// or exponent letters, and an exponent's sign (`1e-3`, `2.5E+10`), which
/// is no operator there.
fn number_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len() && (is_word_byte(b[i]) || b[i] == b'.') {
        i += 1;
    }
    let mantissa = &b[start..i.saturating_sub(1)];
    let signed_exponent = i > start
        && matches!(b[i - 1], b'e' | b'E')
        && !mantissa.is_empty()
        && mantissa.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && matches!(b.get(i), Some(b'+' | b'-'))
        && b.get(i + 1).is_some_and(u8::is_ascii_digit);
    if signed_exponent {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    i
}

fn tok(kind: TokenKind, start: usize, end: usize) -> Token {
    Token { kind, start, end }
}

/// Whether `c` can be part of an unquoted word (identifier or keyword).
pub(crate) const fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn skip_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// The text as MariaDB runs it, its executable comments opened:
/// `/*! ... */` or `/*M! ... */` around code (mysqldump writes every SET, LOCK and `ALTER
/// TABLE ... DISABLE KEYS` of a dump so) is code for a server whose
/// version passes the comment's, and the gate must classify, route and
/// plan that code, not a comment. MariaDB's rule, against the version
/// `announced` (see [`version_number`]): no number or one of other than
/// five or six digits runs (the digits then are code); five digits run
/// below 50700 (above is MySQL 5.7's and later); six digits run up to the
/// version. Comments that do not run are taken out (the parser would run
/// them whatever their version). None when the text has no executable
/// comment, found by one search for its slashes (the version is read only
/// when there is one).
pub fn open_executable_comments(src: &str, announced: &str) -> Option<String> {
    let b = src.as_bytes();
    // One pass over the slashes finds whether there is any.
    memchr::memchr_iter(b'/', b).find(|&i| {
        let rest = &b[i + 1..];
        rest.starts_with(b"*!") || rest.starts_with(b"*M!")
    })?;
    let version = version_number(announced);
    let mut out = String::with_capacity(src.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => i = skip_line(b, i),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i)
            }
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(b, i, q, q != b'`'),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let marker = match (b.get(i + 2), b.get(i + 3)) {
                    (Some(b'!'), _) => Some(3),
                    (Some(b'M'), Some(b'!')) => Some(4),
                    _ => None,
                };
                let end = skip_block_comment(b, i);
                let Some(marker) = marker else {
                    i = end;
                    continue;
                };
                let digits = b[i + marker..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let number = || {
                    src[i + marker..i + marker + digits]
                        .parse::<u32>()
                        .unwrap_or(0)
                };
                let (runs, code) = match digits {
                    5 => (number() < 50700, i + marker + digits),
                    6 => (number() <= version, i + marker + digits),
                    _ => (true, i + marker),
                };
                // An unterminated comment is left to the server's error.
                let closed = end >= code + 2 && &b[end - 2..end] == b"*/";
                if closed {
                    out.push_str(&src[copied..i]);
                    out.push(' ');
                    if runs {
                        out.push_str(&src[code..end - 2]);
                        out.push(' ');
                    }
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&src[copied..]);
    Some(out)
}

/// The number executable comments are weighed against, from the version
/// the handshake announces (`5.5.5-10.11.0-MariaDB-...` is 101100), as
/// MariaDB weighs them against its own.
pub fn version_number(announced: &str) -> u32 {
    let v = announced.strip_prefix("5.5.5-").unwrap_or(announced);
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    let (major, minor, patch) = (next(), next(), next());
    major * 10_000 + minor * 100 + patch
}

fn skip_block_comment(b: &[u8], i: usize) -> usize {
    let mut j = i + 2;
    while j + 1 < b.len() {
        if b[j] == b'*' && b[j + 1] == b'/' {
            return j + 2;
        }
        j += 1;
    }
    b.len()
}

fn skip_quoted(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// A list's items (a SET's assignments, EXECUTE's values): `toks` split at
/// the commas outside parentheses. An empty list is one empty item.
pub fn top_level_parts(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0i32, 0usize);
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth -= 1,
            TokenKind::Punct(b',') if depth == 0 => {
                parts.push(&toks[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[from..]);
    parts
}

/// The index of the `)` closing the `(` at `toks[open]`; None when it is
/// not closed (or `toks[open]` is no `(`).
pub fn closing_paren(toks: &[Token], open: usize) -> Option<usize> {
    if toks.get(open)?.kind != TokenKind::Punct(b'(') {
        return None;
    }
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return Some(i);
        }
    }
    None
}

/// Splits a COM_QUERY holding several statements into its statements, so each
/// one can be routed on its own. Compound statements (CREATE PROCEDURE /
/// FUNCTION / TRIGGER / EVENT with BEGIN ... END bodies) are kept whole.
pub fn split_statements(src: &str) -> Vec<&str> {
    split_statements_mode(src, false)
}

/// [`split_statements`] as a session with NO_BACKSLASH_ESCAPES reads:
/// `'c\'; select 1` is two statements there.
pub fn split_statements_mode(src: &str, no_backslash_escapes: bool) -> Vec<&str> {
    // The common case, one statement and no `;` anywhere, needs no tokens.
    if !src.contains(';') {
        let s = src.trim();
        return if s.is_empty() { Vec::new() } else { vec![s] };
    }
    let toks = tokenize_mode(src, no_backslash_escapes);
    let mut out = Vec::new();
    let mut stmt_start = 0;
    let mut first_tok: Option<usize> = None;
    let mut idx = 0;
    while idx < toks.len() {
        let t = toks[idx];
        if first_tok.is_none() {
            if t.kind == TokenKind::Semicolon {
                stmt_start = t.end;
                idx += 1;
                continue;
            }
            first_tok = Some(idx);
            if is_compound_create(src, &toks[idx..]) {
                out.push(src[t.start..].trim_end_matches(|c: char| c.is_whitespace() || c == ';'));
                return out;
            }
        }
        if t.kind == TokenKind::Semicolon {
            let s = src[stmt_start..t.start].trim();
            if !s.is_empty() {
                out.push(s);
            }
            stmt_start = t.end;
            first_tok = None;
        }
        idx += 1;
    }
    let s = src[stmt_start..].trim();
    if !s.is_empty() && first_tok.is_some() {
        out.push(s);
    } else if out.is_empty() && !s.is_empty() {
        // Only comments: hand it over as one statement.
        out.push(s);
    }
    out
}

fn is_compound_create(src: &str, toks: &[Token]) -> bool {
    if !toks.first().is_some_and(|t| t.is_word(src, "create")) {
        return false;
    }
    toks.iter()
        .skip(1)
        .take_while(|t| t.kind != TokenKind::Semicolon && !t.is_word(src, "begin"))
        .take(12)
        .any(|t| {
            ["procedure", "function", "trigger", "event"]
                .iter()
                .any(|k| t.is_word(src, k))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_versions_weigh_comments() {
        assert_eq!(version_number("5.5.5-10.11.0-MariaDB-shardgate"), 101100);
        assert_eq!(version_number("10.6.21-MariaDB-log"), 100621);
        assert_eq!(version_number("8.0.30-Vitess"), 80030);
    }

    #[test]
    fn executable_comments_open_as_mariadb_runs_them() {
        let open = |sql: &str| open_executable_comments(sql, "5.5.5-10.11.0-MariaDB-shardgate");
        assert_eq!(open("select 1 + 1"), None);
        assert_eq!(
            open("/*!40101 SET NAMES utf8mb4 */").as_deref(),
            Some("  SET NAMES utf8mb4  ")
        );
        // Five digits run below MySQL 5.7's; six up to the version.
        for (sql, runs) in [
            ("select 1 /*!50699 + 1 */", true),
            ("select 1 /*!50700 + 1 */", false),
            ("select 1 /*!99999 + 1 */", false),
            ("select 1 /*!101100 + 1 */", true),
            ("select 1 /*!101101 + 1 */", false),
            ("select 1 /*M!100000 + 1 */", true),
            ("select 1 /*M!999999 + 1 */", false),
            ("select 1 /*! + 1 */", true),
        ] {
            let opened = open(sql).unwrap();
            assert_eq!(opened.contains("+ 1"), runs, "{sql}: {opened}");
            assert!(!opened.contains("/*"), "{sql}: {opened}");
        }
        // Digits of another count are code themselves (MariaDB's 1064).
        assert_eq!(
            open("select /*!1 + 1 */").as_deref(),
            Some("select  1 + 1  ")
        );
        // Not in strings, names or line comments; an open one is left.
        for sql in [
            "select '/*!40101 x */'",
            "select `/*!40101 x */`",
            "select 1 -- /*!40101 x */",
            "select 1 # /*!40101 x */",
        ] {
            assert_eq!(open(sql), None, "{sql}");
        }
        assert_eq!(open("select 1 /*!40101 + 1"), None);
        assert_eq!(
            open("select /*+ hint */ 1 /*!40101 + 1 */, 'a'").as_deref(),
            Some("select /*+ hint */ 1   + 1  , 'a'")
        );
    }

    #[test]
    fn a_leading_period_starts_a_number_unless_it_qualifies_a_name() {
        let kinds = |sql: &str| -> Vec<(TokenKind, String)> {
            tokenize(sql)
                .iter()
                .map(|t| (t.kind, t.text(sql).to_string()))
                .collect()
        };
        let number = |s: &str| (TokenKind::Number, s.to_string());
        assert_eq!(kinds("select .5")[1], number(".5"));
        assert_eq!(kinds("select -.5e3, (.25)")[2], number(".5e3"));
        assert_eq!(kinds("where a>.5")[3], number(".5"));
        // An exponent's sign is the number's.
        assert_eq!(kinds("select 1e-3")[1], number("1e-3"));
        assert_eq!(kinds("select -2.5E+10, .5e-2")[2], number("2.5E+10"));
        assert_eq!(kinds("select .5e-2")[1], number(".5e-2"));
        // Not a hex number's or a name's: there it is an operator.
        assert_eq!(kinds("select 0x1e-5")[1], number("0x1e"));
        assert_eq!(
            kinds("select a1e-5")[2],
            (TokenKind::Punct(b'-'), "-".into())
        );
        // A name's qualifier stays a period.
        for sql in ["select t.5c", "select `t`.5", "select f().5"] {
            assert!(
                kinds(sql).iter().any(|(k, _)| *k == TokenKind::Punct(b'.')),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_parenthesis_closes_where_its_depth_ends() {
        let toks = tokenize("(a, (b)) (c");
        assert_eq!(closing_paren(&toks, 0), Some(6));
        assert_eq!(closing_paren(&toks, 3), Some(5));
        assert_eq!(closing_paren(&toks, 7), None);
        assert_eq!(closing_paren(&toks, 4), None);
    }

    #[test]
    fn no_backslash_escapes_ends_a_string_at_its_quote() {
        let sql = r"select 'c\', x'00', 1";
        let texts = |nbe| -> Vec<String> {
            tokenize_mode(sql, nbe)
                .iter()
                .map(|t| t.text(sql).to_string())
                .collect()
        };
        assert_eq!(texts(true), ["select", r"'c\'", ",", "x'00'", ",", "1"]);
        // Read with escapes, the quote after the backslash is escaped.
        assert_eq!(texts(false)[1], r"'c\', x'");
    }

    #[test]
    fn splits_as_the_session_reads_backslashes() {
        let s = r"select 'c\'; select 2";
        assert_eq!(
            split_statements_mode(s, true),
            vec![r"select 'c\'", "select 2"]
        );
        assert_eq!(split_statements(s), vec![s]);
    }

    #[test]
    fn splits_outside_strings_and_comments() {
        let s = "select 'a;b'; select `x;y` from t -- c;\n; /* ; */ select 3;";
        assert_eq!(
            split_statements(s),
            vec![
                "select 'a;b'",
                "select `x;y` from t -- c;",
                "/* ; */ select 3"
            ]
        );
    }

    #[test]
    fn keeps_procedures_whole() {
        let s = "create procedure p() begin select 1; select 2; end";
        assert_eq!(split_statements(s), vec![s]);
    }

    #[test]
    fn placeholders_and_variables() {
        let s = "select ?, '?', @a, @@session.sql_mode from t where x = ?";
        let toks = tokenize(s);
        let ph: Vec<_> = toks
            .iter()
            .filter(|t| t.kind == TokenKind::Placeholder)
            .collect();
        assert_eq!(ph.len(), 2);
        let vars: Vec<_> = toks
            .iter()
            .filter(|t| t.kind == TokenKind::Variable)
            .map(|t| t.text(s))
            .collect();
        assert_eq!(vars, vec!["@a", "@@session.sql_mode"]);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'abc", "/* abc", "`abc", "@", "@@", "x'", "\\", "é'"] {
            let _ = tokenize(s);
            let _ = split_statements(s);
        }
    }
}
