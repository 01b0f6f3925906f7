//! `LOAD DATA LOCAL INFILE`, read at the gate: the statement's options,
//! the file's records split by them, and the INSERTs that carry the
//! records to the shards.
//!
//! No one tablet can take a sharded table's file, so the gate reads it
//! itself (the client sends it in the protocol's LOCAL INFILE exchange,
//! see [`crate::frontend`]) and turns each batch of records into one
//! multi-row INSERT, which the planner routes like any other: each row to
//! the shard its vindex names, sequences and lookup vindexes kept. With
//! LOCAL, MariaDB treats duplicate keys as IGNORE does (the file is on its
//! way and cannot be stopped), so the INSERTs are `INSERT IGNORE` unless
//! the statement says REPLACE.
//!
//! The file's records are split as MariaDB splits them: `FIELDS
//! TERMINATED BY` (tab), `[OPTIONALLY] ENCLOSED BY` (none), `ESCAPED BY`
//! (backslash: `\0 \b \n \r \t \Z`, `\N` for NULL), `LINES STARTING BY`
//! and `TERMINATED BY` (newline), `IGNORE n LINES`.

use super::lexer::{tokenize, Token, TokenKind};
use super::{quote_ident, string_literal, SqlError};
use mysql_common::value::Value;

/// A `LOAD DATA` statement's options.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadData {
    /// LOCAL: the client sends the file.
    pub local: bool,
    /// The file's name, as the client named it (sent back to it).
    pub file: String,
    /// REPLACE rather than skip rows whose key exists.
    pub replace: bool,
    /// The table's keyspace, when the statement names one.
    pub keyspace: Option<String>,
    /// The table.
    pub table: String,
    /// CHARACTER SET of the file, when given: each value is read in it.
    pub charset: Option<String>,
    /// How records are split.
    pub rules: Rules,
    /// How many lines at the start are skipped.
    pub skip_lines: u64,
    /// The columns the fields fill, in order (empty: all, in order).
    pub columns: Vec<String>,
}

/// How a file's bytes become records of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// FIELDS TERMINATED BY.
    pub field_end: Vec<u8>,
    /// ENCLOSED BY.
    pub enclosed: Option<u8>,
    /// ESCAPED BY (none when given as '').
    pub escape: Option<u8>,
    /// LINES STARTING BY.
    pub line_start: Vec<u8>,
    /// LINES TERMINATED BY.
    pub line_end: Vec<u8>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            field_end: b"\t".to_vec(),
            enclosed: None,
            escape: Some(b'\\'),
            line_start: Vec::new(),
            line_end: b"\n".to_vec(),
        }
    }
}

/// A record: its fields, None for NULL.
pub type Record = Vec<Option<Vec<u8>>>;

/// `sql` as a LOAD DATA statement: None when it is not one (one test of
/// its first bytes for any other statement); an error for one the gate
/// cannot read (a SET clause, user variables among the columns).
pub fn parse(sql: &str) -> Option<Result<LoadData, SqlError>> {
    let head = sql.trim_start().as_bytes();
    if head.len() < 4 || !head[..4].eq_ignore_ascii_case(b"load") {
        return None;
    }
    let toks = tokenize(sql);
    if !(toks.first()?.is_word(sql, "load") && toks.get(1)?.is_word(sql, "data")) {
        return None;
    }
    Some(Parser { sql, toks, at: 2 }.load())
}

struct Parser<'a> {
    sql: &'a str,
    toks: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn word(&mut self, kw: &str) -> bool {
        let yes = self
            .toks
            .get(self.at)
            .is_some_and(|t| t.is_word(self.sql, kw));
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.word(kw) {
            Ok(())
        } else {
            Err(self.bad(&format!("{} expected", kw.to_ascii_uppercase())))
        }
    }

    fn bad(&self, what: &str) -> SqlError {
        let near = self
            .toks
            .get(self.at)
            .map_or("the end", |t| t.text(self.sql));
        SqlError::LoadData(format!("{what} near '{near}'"))
    }

    fn string(&mut self) -> Result<Vec<u8>, SqlError> {
        match self.toks.get(self.at) {
            Some(t) if t.kind == TokenKind::Str => {
                self.at += 1;
                Ok(super::raw::restore(
                    string_literal(t.text(self.sql)).into_bytes(),
                ))
            }
            _ => Err(self.bad("a quoted string expected")),
        }
    }

    fn name(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.at) {
            Some(t) if matches!(t.kind, TokenKind::Word | TokenKind::Ident) => {
                self.at += 1;
                Ok(t.text(self.sql).trim_matches('`').replace("``", "`"))
            }
            _ => Err(self.bad("a name expected")),
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        let yes = self
            .toks
            .get(self.at)
            .is_some_and(|t| t.kind == TokenKind::Punct(c));
        if yes {
            self.at += 1;
        }
        yes
    }

    fn one_byte(&self, s: Vec<u8>, what: &str) -> Result<Option<u8>, SqlError> {
        match s.as_slice() {
            [] => Ok(None),
            [b] => Ok(Some(*b)),
            _ => Err(SqlError::LoadData(format!("{what} takes one character"))),
        }
    }

    fn load(mut self) -> Result<LoadData, SqlError> {
        let _ = self.word("low_priority") || self.word("concurrent");
        let local = self.word("local");
        self.expect("infile")?;
        let file = String::from_utf8_lossy(&self.string()?).into_owned();
        let replace = self.word("replace");
        if !replace {
            self.word("ignore");
        }
        self.expect("into")?;
        self.expect("table")?;
        let first = self.name()?;
        let (keyspace, table) = if self.punct(b'.') {
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        if self.word("partition") {
            return Err(SqlError::LoadData("PARTITION is not supported".into()));
        }
        let mut charset = None;
        if self.word("character") {
            self.expect("set")?;
            charset = Some(self.name()?.to_ascii_lowercase());
        } else if self.word("charset") {
            charset = Some(self.name()?.to_ascii_lowercase());
        }
        let mut rules = Rules::default();
        if self.word("fields") || self.word("columns") {
            loop {
                if self.word("terminated") {
                    self.expect("by")?;
                    rules.field_end = self.string()?;
                } else if self.word("optionally") || self.word("enclosed") {
                    self.word("enclosed");
                    self.expect("by")?;
                    let s = self.string()?;
                    rules.enclosed = self.one_byte(s, "ENCLOSED BY")?;
                } else if self.word("escaped") {
                    self.expect("by")?;
                    let s = self.string()?;
                    rules.escape = self.one_byte(s, "ESCAPED BY")?;
                } else {
                    break;
                }
            }
        }
        if self.word("lines") {
            loop {
                if self.word("starting") {
                    self.expect("by")?;
                    rules.line_start = self.string()?;
                } else if self.word("terminated") {
                    self.expect("by")?;
                    rules.line_end = self.string()?;
                } else {
                    break;
                }
            }
        }
        if rules.line_end.is_empty() {
            return Err(SqlError::LoadData(
                "LINES TERMINATED BY '' is not supported".into(),
            ));
        }
        let mut skip_lines = 0;
        if self.word("ignore") {
            skip_lines = match self.toks.get(self.at) {
                Some(t) if t.kind == TokenKind::Number => {
                    t.text(self.sql).parse().map_err(|_| self.bad("a count"))?
                }
                _ => return Err(self.bad("a count expected")),
            };
            self.at += 1;
            if !(self.word("lines") || self.word("rows")) {
                return Err(self.bad("LINES expected"));
            }
        }
        let mut columns = Vec::new();
        if self.punct(b'(') {
            loop {
                if self
                    .toks
                    .get(self.at)
                    .is_some_and(|t| t.kind == TokenKind::Variable)
                {
                    return Err(SqlError::LoadData(
                        "user variables among the columns are not supported".into(),
                    ));
                }
                columns.push(self.name()?);
                if self.punct(b')') {
                    break;
                }
                if !self.punct(b',') {
                    return Err(self.bad("',' or ')' expected"));
                }
            }
        }
        if self.word("set") {
            return Err(SqlError::LoadData("a SET clause is not supported".into()));
        }
        let rest = self.toks[self.at..]
            .iter()
            .any(|t| t.kind != TokenKind::Semicolon);
        if rest {
            return Err(self.bad("end of statement expected"));
        }
        Ok(LoadData {
            local,
            file,
            replace,
            keyspace,
            table,
            charset,
            rules,
            skip_lines,
            columns,
        })
    }
}

impl LoadData {
    /// The table as the statement named it, quoted.
    pub fn table_name(&self) -> String {
        match &self.keyspace {
            Some(ks) => format!("{}.{}", quote_ident(ks), quote_ident(&self.table)),
            None => quote_ident(&self.table),
        }
    }

    /// The INSERT that carries `records` (rendered for a session with
    /// NO_BACKSLASH_ESCAPES or not): `INSERT IGNORE` (LOCAL's duplicate
    /// rule) or `REPLACE`, into the table as the statement named it. A
    /// record shorter than the column list gets the rest's defaults, as
    /// LOAD DATA gives them; a longer one loses the rest.
    pub fn insert(&self, records: &[Record], no_backslash_escapes: bool) -> String {
        let mut sql = String::with_capacity(64 + records.len() * 32);
        sql.push_str(if self.replace {
            "REPLACE INTO "
        } else {
            "INSERT IGNORE INTO "
        });
        sql.push_str(&self.table_name());
        if !self.columns.is_empty() {
            sql.push_str(" (");
            for (i, c) in self.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&quote_ident(c));
            }
            sql.push(')');
        }
        sql.push_str(" VALUES ");
        let intro = self.charset.as_ref().map(|c| format!("_{c} "));
        for (r, record) in records.iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            let width = if self.columns.is_empty() {
                record.len()
            } else {
                self.columns.len()
            };
            for i in 0..width {
                if i > 0 {
                    sql.push_str(", ");
                }
                match record.get(i) {
                    None => sql.push_str("DEFAULT"),
                    Some(None) => sql.push_str("NULL"),
                    Some(Some(bytes)) => {
                        if let Some(intro) = &intro {
                            sql.push_str(intro);
                        }
                        let lit =
                            super::literal(&Value::Bytes(bytes.clone()), no_backslash_escapes);
                        sql.push_str(&lit);
                    }
                }
            }
            sql.push(')');
        }
        sql
    }
}

/// Splits a file's bytes into records as they arrive.
#[derive(Debug)]
pub struct Splitter {
    rules: Rules,
    buf: Vec<u8>,
    skip: u64,
}

impl Splitter {
    /// A splitter for `load`'s rules that skips its first lines.
    pub fn new(load: &LoadData) -> Splitter {
        Splitter {
            rules: load.rules.clone(),
            buf: Vec::new(),
            skip: load.skip_lines,
        }
    }

    /// Bytes received and not yet a whole record (one line so far).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The records that `bytes` completes (`eof`: the file ended, so what
    /// is left is the last line).
    pub fn feed(&mut self, bytes: &[u8], eof: bool, out: &mut Vec<Record>) {
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        while pos < self.buf.len() {
            let Some((record, next)) = self.record(pos, eof) else {
                break;
            };
            pos = next;
            if self.skip > 0 {
                self.skip -= 1;
            } else if let Some(r) = record {
                out.push(r);
            }
        }
        self.buf.drain(..pos);
    }

    /// The record at `pos` and where the next begins; None when the
    /// buffer ends first (and more may come). A line without the
    /// `STARTING BY` prefix is no record.
    fn record(&self, mut pos: usize, eof: bool) -> Option<(Option<Record>, usize)> {
        let b = &self.buf;
        let r = &self.rules;
        let starts = |at: usize, pat: &[u8]| !pat.is_empty() && b[at..].starts_with(pat);
        if !r.line_start.is_empty() {
            // Up to the prefix, or (without one) the line is skipped.
            loop {
                if starts(pos, &r.line_start) {
                    pos += r.line_start.len();
                    break;
                }
                if starts(pos, &r.line_end) {
                    return Some((None, pos + r.line_end.len()));
                }
                if pos >= b.len() {
                    return eof.then_some((None, b.len()));
                }
                pos += 1;
            }
        }
        let mut fields: Record = Vec::new();
        loop {
            let (field, next, ended) = self.field(pos, eof)?;
            fields.push(field);
            pos = next;
            if ended {
                return Some((Some(fields), pos));
            }
        }
    }

    /// One field at `pos`: its value, where what follows it begins, and
    /// whether the line ended with it.
    fn field(&self, start: usize, eof: bool) -> Option<(Option<Vec<u8>>, usize, bool)> {
        let b = &self.buf;
        let r = &self.rules;
        let starts = |at: usize, pat: &[u8]| !pat.is_empty() && b[at..].starts_with(pat);
        let mut out = Vec::new();
        let mut pos = start;
        let quoted = r.enclosed.is_some() && b.get(pos) == r.enclosed.as_ref();
        if quoted {
            pos += 1;
        }
        loop {
            if pos >= b.len() {
                if !eof {
                    return None;
                }
                let value = self.value(out, quoted, start, pos);
                return Some((value, b.len(), true));
            }
            let c = b[pos];
            if Some(c) == r.escape && pos + 1 < b.len() {
                let n = b[pos + 1];
                out.push(match n {
                    b'0' => 0,
                    b'b' => 8,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'Z' => 26,
                    other => other,
                });
                pos += 2;
                continue;
            }
            if Some(c) == r.escape && !eof {
                return None;
            }
            if quoted && Some(c) == r.enclosed {
                if b.get(pos + 1) == Some(&c) {
                    out.push(c);
                    pos += 2;
                    continue;
                }
                let after = pos + 1;
                // What follows the quote may not have arrived whole.
                let cut = |pat: &[u8]| pat.len() > b.len() - after && pat.starts_with(&b[after..]);
                if !eof && (cut(&r.field_end) || cut(&r.line_end)) {
                    return None;
                }
                if starts(after, &r.field_end) {
                    let v = self.value(out, true, start, pos);
                    return Some((v, after + r.field_end.len(), false));
                }
                if starts(after, &r.line_end) {
                    let v = self.value(out, true, start, pos);
                    return Some((v, after + r.line_end.len(), true));
                }
                if after >= b.len() {
                    return Some((self.value(out, true, start, pos), after, true));
                }
                // A quote inside the field that ends nothing is data.
                out.push(c);
                pos += 1;
                continue;
            }
            if !quoted {
                // A terminator may be split across what has arrived.
                let partial = |pat: &[u8]| {
                    !eof && pat.len() > 1 && pat.starts_with(&b[pos..]) && b.len() - pos < pat.len()
                };
                if partial(&r.field_end) || partial(&r.line_end) {
                    return None;
                }
                if starts(pos, &r.field_end) {
                    let v = self.value(out, false, start, pos);
                    return Some((v, pos + r.field_end.len(), false));
                }
                if starts(pos, &r.line_end) {
                    let v = self.value(out, false, start, pos);
                    return Some((v, pos + r.line_end.len(), true));
                }
            }
            out.push(c);
            pos += 1;
        }
    }

    /// A field's value: NULL when it is `\N` as written, or the word NULL
    /// unenclosed when fields may be enclosed.
    fn value(&self, out: Vec<u8>, quoted: bool, start: usize, end: usize) -> Option<Vec<u8>> {
        let raw = &self.buf[start..end];
        let escaped_null = self
            .rules
            .escape
            .is_some_and(|e| raw.len() == 2 && raw[0] == e && raw[1] == b'N');
        let word_null = !quoted && self.rules.enclosed.is_some() && raw == b"NULL";
        if escaped_null || word_null {
            None
        } else {
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(load: &LoadData, bytes: &[u8], step: usize) -> Vec<Record> {
        let mut s = Splitter::new(load);
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            s.feed(chunk, false, &mut out);
        }
        s.feed(&[], true, &mut out);
        out
    }

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_the_statements_options() {
        let l = parse(
            "LOAD DATA LOCAL INFILE '/tmp/x y.csv' REPLACE INTO TABLE ks.`t` CHARACTER SET latin1 \
             FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' \
             LINES STARTING BY '>' TERMINATED BY '\\r\\n' IGNORE 1 LINES (a, `b`)",
        )
        .unwrap()
        .unwrap();
        assert!(l.local && l.replace);
        assert_eq!(l.file, "/tmp/x y.csv");
        assert_eq!((l.keyspace.as_deref(), l.table.as_str()), (Some("ks"), "t"));
        assert_eq!(l.charset.as_deref(), Some("latin1"));
        assert_eq!(
            l.rules,
            Rules {
                field_end: b",".to_vec(),
                enclosed: Some(b'"'),
                escape: None,
                line_start: b">".to_vec(),
                line_end: b"\r\n".to_vec(),
            }
        );
        assert_eq!(l.skip_lines, 1);
        assert_eq!(l.columns, ["a", "b"]);
        let plain = parse("load data infile 'f' into table t").unwrap().unwrap();
        assert!(!plain.local && !plain.replace);
        assert_eq!(plain.rules, Rules::default());
        assert!(parse("select 1").is_none());
        assert!(parse("loadx").is_none());
        for bad in [
            "load data local infile 'f' into table t (a, @b)",
            "load data local infile 'f' into table t (a) set b = 1",
            "load data local infile 'f' into table t fields enclosed by 'ab'",
            "load data local infile 'f' into t",
            "load data local infile 'f' into table t lines terminated by ''",
        ] {
            assert!(matches!(parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn splits_records_as_mariadb_reads_them_in_any_pieces() {
        let tsv = parse("load data local infile 'f' into table t")
            .unwrap()
            .unwrap();
        let bytes = b"1\tA\\tB\\\\C\\N\n2\t\\N\n3\t\n4\ta\\\nb\n\n5";
        let want: Vec<Record> = vec![
            vec![v("1"), v("A\tB\\CN")],
            vec![v("2"), None],
            vec![v("3"), v("")],
            vec![v("4"), v("a\nb")],
            vec![v("")],
            vec![v("5")],
        ];
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(split(&tsv, bytes, step), want, "pieces of {step}");
        }
        let csv = parse(
            "load data local infile 'f' into table t fields terminated by ',' \
             optionally enclosed by '\"' lines terminated by '\\r\\n' ignore 1 lines",
        )
        .unwrap()
        .unwrap();
        let bytes = b"id,name\r\n1,\"a,b\"\r\n2,\"say \"\"hi\"\"\"\r\n3,NULL\r\n4,\"NULL\"\r\n5,\"x\r\ny\"\r\n";
        let want: Vec<Record> = vec![
            vec![v("1"), v("a,b")],
            vec![v("2"), v("say \"hi\"")],
            vec![v("3"), None],
            vec![v("4"), v("NULL")],
            vec![v("5"), v("x\r\ny")],
        ];
        for step in [1, 2, 5, 100] {
            assert_eq!(split(&csv, bytes, step), want, "pieces of {step}");
        }
        let prefixed = parse(
            "load data local infile 'f' into table t fields terminated by ',' \
             lines starting by 'xx'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            split(&prefixed, b"xx1,a\nskipped\nnoise xx2,b\n", 4),
            vec![vec![v("1"), v("a")], vec![v("2"), v("b")]]
        );
    }

    #[test]
    fn records_become_one_insert() {
        let l = parse("load data local infile 'f' into table t (a, b, c)")
            .unwrap()
            .unwrap();
        let records = vec![
            vec![v("1"), v("it's"), None],
            vec![v("2")],
            vec![Some(vec![0xff, 0x00]), v("a\\b"), v("x"), v("extra")],
        ];
        assert_eq!(
            l.insert(&records, false),
            "INSERT IGNORE INTO `t` (`a`, `b`, `c`) VALUES ('1', 'it\\'s', NULL), \
             ('2', DEFAULT, DEFAULT), (X'ff00', 'a\\\\b', 'x')"
        );
        let r = parse("load data local infile 'f' replace into table ks.t character set latin1")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.insert(&[vec![v("é"), None]], true),
            "REPLACE INTO `ks`.`t` VALUES (_latin1 'é', NULL)"
        );
    }
}
