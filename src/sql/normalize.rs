//! Literal normalization: `select * from t where id = 5` and `... id = 7`
//! become the same template `select * from t where id = :v1` with different
//! bind values, so they share one cached plan. Prepared-statement `?`
//! parameters become bind variables the same way. Works on tokens (no
//! parse), so a plan-cache hit costs a tokenize, not a full parse.

use std::fmt::Write as _;

use mysql_common::value::Value;

use super::lexer::{tokenize, Token, TokenKind};

/// A bind value: its value for routing and for evaluation at the gate, and
/// the exact SQL text to put back when a statement is built from binds.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    /// The value.
    pub value: Value,
    /// The text as the client wrote it, or how to render a parameter.
    text: Text,
}

/// Where a bind's SQL text comes from.
#[derive(Debug, Clone, PartialEq)]
enum Text {
    /// A literal in the statement, as written.
    Written(String),
    /// A prepared statement's parameter: its text is rendered from the
    /// value only when asked for. Most executions route on the value and
    /// send the parameters on as they came, so none is built for them.
    Param { no_backslash_escapes: bool },
}

impl Bind {
    /// A literal written in a statement.
    pub fn written(text: &str, value: Value) -> Bind {
        Bind {
            value,
            text: Text::Written(text.to_string()),
        }
    }

    /// A prepared statement's parameter, rendered as a literal for the
    /// session's `NO_BACKSLASH_ESCAPES` when its text is needed.
    pub fn param(value: Value, no_backslash_escapes: bool) -> Bind {
        Bind {
            value,
            text: Text::Param {
                no_backslash_escapes,
            },
        }
    }

    /// The SQL text to put back in a statement.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.text {
            Text::Written(t) => std::borrow::Cow::Borrowed(t),
            Text::Param {
                no_backslash_escapes,
            } => std::borrow::Cow::Owned(super::literal(&self.value, *no_backslash_escapes)),
        }
    }

    /// Whether the text is a quoted string (a string literal, or a
    /// parameter's valid UTF-8 bytes, which render as one), as opposed to
    /// a number or hex literal: string binds compare as strings at the gate.
    pub fn is_quoted_string(&self) -> bool {
        match (&self.text, &self.value) {
            (Text::Written(t), _) => t.starts_with(['\'', '"']),
            (Text::Param { .. }, Value::Bytes(b)) => std::str::from_utf8(b).is_ok(),
            (Text::Param { .. }, _) => false,
        }
    }
}

/// A statement with its literals replaced by `:vN` (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The template (the plan-cache key).
    pub template: String,
    /// Bind values, `:v1` first.
    pub binds: Vec<Bind>,
}

/// Words after which a `-` is a sign, not a subtraction.
const SIGN_AFTER: &[&str] = &[
    "select", "where", "and", "or", "not", "in", "values", "value", "by", "between", "like", "set",
    "when", "then", "else", "limit", "offset", "is", "on", "having", "return", "interval",
];

/// Type names whose parenthesized numbers are part of the type, not values.
const TYPE_WORDS: &[&str] = &[
    "decimal",
    "numeric",
    "char",
    "varchar",
    "binary",
    "varbinary",
    "float",
    "double",
    "datetime",
    "time",
    "timestamp",
    "bit",
    "int",
    "integer",
    "tinyint",
    "smallint",
    "mediumint",
    "bigint",
    "dec",
    "fixed",
    "real",
    "nchar",
    "nvarchar",
];

/// Normalizes `sql`, taking `?` parameters from `params` in order.
pub fn normalize(sql: &str, params: &[Value], no_backslash_escapes: bool) -> Normalized {
    shape(sql, no_backslash_escapes).into_normalized(params, no_backslash_escapes)
}

/// The bind of a `?` parameter (NULL when the execution sent too few).
fn param_bind(v: Option<&Value>, no_backslash_escapes: bool) -> Bind {
    Bind::param(v.cloned().unwrap_or(Value::NULL), no_backslash_escapes)
}

/// Where one bind value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// The next `?` parameter of the execution.
    Param,
    /// A literal written in the statement.
    Literal(Bind),
}

/// A statement's template and where each of its binds comes from. The
/// template does not depend on parameter values, so a prepared statement
/// computes its shape once and each execution only fills in the parameters
/// (no tokenizing, no template building).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The template (the plan-cache key).
    pub template: String,
    slots: Vec<Slot>,
}

impl Shape {
    /// The `?` parameters an execution fills in.
    pub fn params(&self) -> usize {
        self.slots.iter().filter(|s| **s == Slot::Param).count()
    }

    /// The bind values of one execution, `?` parameters taken in order
    /// (missing ones are NULL).
    pub fn binds(&self, params: &[Value], no_backslash_escapes: bool) -> Vec<Bind> {
        let mut params = params.iter();
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Literal(b) => b.clone(),
                Slot::Param => param_bind(params.next(), no_backslash_escapes),
            })
            .collect()
    }

    /// The template with the bind values of one execution, the shape's own
    /// literals moved rather than copied (a statement normalized once).
    pub fn into_normalized(self, params: &[Value], no_backslash_escapes: bool) -> Normalized {
        let mut params = params.iter();
        let binds = self
            .slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Literal(b) => b,
                Slot::Param => param_bind(params.next(), no_backslash_escapes),
            })
            .collect();
        Normalized {
            template: self.template,
            binds,
        }
    }
}

/// The ORDER BY and GROUP BY lists open at each parenthesis depth, a bit
/// per depth.
struct ByLists(u128);

impl ByLists {
    fn bit(depth: i32) -> u128 {
        u32::try_from(depth)
            .ok()
            .and_then(|d| 1u128.checked_shl(d))
            .unwrap_or(0)
    }
    fn open(&mut self, depth: i32) {
        self.0 |= Self::bit(depth);
    }
    fn close(&mut self, depth: i32) {
        self.0 &= !Self::bit(depth);
    }
    /// Closes the lists deeper than `depth` (their parenthesis closed).
    fn close_above(&mut self, depth: i32) {
        // Bits 0 to `depth` (all of them past 127; none below 0).
        let keep = Self::bit(depth + 1).wrapping_sub(1);
        self.0 &= if depth < 0 { 0 } else { keep };
    }
    fn is_open(&self, depth: i32) -> bool {
        self.0 & Self::bit(depth) != 0
    }
}

/// The [`Shape`] of `sql`: its literals and `?` parameters replaced by
/// `:vN`, in order.
pub fn shape(sql: &str, no_backslash_escapes: bool) -> Shape {
    let toks = crate::sql::lexer::tokenize_mode(sql, no_backslash_escapes);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut binds = Vec::new();
    let mut copied = 0;
    // Clause tracking: numbers right after ORDER BY / GROUP BY (or a comma
    // in that list) are column positions and must stay. The lists open at
    // each depth (a window's `OVER (ORDER BY ...)` or a subquery's inside
    // the statement's own) end with their parentheses: a bit per depth
    // (no allocation on the hot path; past 127 parentheses, none).
    let mut by_lists = ByLists(0);
    let mut depth = 0i32;
    let mut type_paren: Vec<bool> = Vec::new();
    let mut seen = Seen::new(dedups(sql, &toks));
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        match t.kind {
            TokenKind::Punct(b'(') => {
                depth += 1;
                let typed = i > 0 && TYPE_WORDS.iter().any(|w| toks[i - 1].is_word(sql, w));
                type_paren.push(typed);
            }
            TokenKind::Punct(b')') => {
                depth -= 1;
                type_paren.pop();
                by_lists.close_above(depth);
            }
            TokenKind::Word => {
                let w = t.text(sql);
                if w.eq_ignore_ascii_case("by")
                    && i > 0
                    && (toks[i - 1].is_word(sql, "order") || toks[i - 1].is_word(sql, "group"))
                {
                    by_lists.open(depth);
                } else if by_lists.is_open(depth)
                    && [
                        "limit", "having", "union", "for", "into", "lock", "with", "window",
                    ]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    by_lists.close(depth);
                }
            }
            _ => {}
        }
        let is_literal = matches!(
            t.kind,
            TokenKind::Number | TokenKind::Str | TokenKind::Placeholder
        );
        if !is_literal {
            i += 1;
            continue;
        }
        let position = by_lists.is_open(depth)
            && t.kind == TokenKind::Number
            && i > 0
            && (toks[i - 1].is_word(sql, "by") || toks[i - 1].kind == TokenKind::Punct(b','));
        let in_type = type_paren.last().copied().unwrap_or(false);
        // GROUP_CONCAT's separator is part of the aggregate's shape (the
        // gate joins the shards' parts with it), not a value.
        let separator = t.kind == TokenKind::Str && i > 0 && toks[i - 1].is_word(sql, "separator");
        if t.kind != TokenKind::Placeholder && (position || in_type || separator) {
            i += 1;
            continue;
        }
        // A leading unary minus belongs to the number.
        let mut start = t.start;
        if t.kind == TokenKind::Number
            && i > 0
            && toks[i - 1].kind == TokenKind::Punct(b'-')
            && is_sign(sql, &toks, i - 1)
        {
            start = toks[i - 1].start;
        }
        out.push_str(&sql[copied..start]);
        copied = t.end;
        let text = &sql[start..t.end];
        let shared = seen.on && t.kind != TokenKind::Placeholder && !is_limit(sql, &toks, i);
        if let Some(n) = shared.then(|| seen.find(text, &binds)).flatten() {
            // Writing into a String cannot fail.
            let _ = write!(out, ":v{n}");
            i += 1;
            continue;
        }
        let bind = match t.kind {
            TokenKind::Placeholder => Slot::Param,
            TokenKind::Number => Slot::Literal(Bind::written(text, number_value(text))),
            _ => Slot::Literal(Bind::written(
                text,
                string_value(text, no_backslash_escapes),
            )),
        };
        binds.push(bind);
        if t.kind != TokenKind::Placeholder {
            seen.add(&binds, shared);
        }
        let _ = write!(out, ":v{}", binds.len());
        i += 1;
    }
    out.push_str(&sql[copied..]);
    Shape {
        template: out,
        slots: binds,
    }
}

/// Literals longer than this get a bind each, as in vtgate: comparing
/// them costs more than a second bind.
const SHARED_LITERAL_MAX: usize = 256;

/// Whether a statement's equal literals share one bind, as vtgate's
/// normalizer does inside a SELECT: `select left(c, 1) ... group by
/// left(c, 1)` becomes `left(c, :v1)` twice, so the grouped item is the
/// group's text and the gate can hand it on rather than compute it. Not
/// for writes (an INSERT's rows would multiply the templates of a table's
/// inserts) nor for anything that is not a SELECT.
fn dedups(sql: &str, toks: &[Token]) -> bool {
    const FIRST: &[&str] = &[
        "select", "insert", "update", "delete", "replace", "set", "call", "load", "do",
    ];
    toks.iter()
        .find(|t| FIRST.iter().any(|w| t.is_word(sql, w)))
        .is_some_and(|t| t.is_word(sql, "select"))
}

/// Whether literal `i` is a LIMIT's count or offset, which vtgate never
/// shares with an equal value elsewhere (a plan may rewrite a LIMIT).
fn is_limit(sql: &str, toks: &[Token], i: usize) -> bool {
    let word = |k: usize, w: &str| toks.get(k).is_some_and(|t| t.is_word(sql, w));
    let before = |k: usize| i.checked_sub(k);
    let after_word = before(1).is_some_and(|k| word(k, "limit") || word(k, "offset"));
    let after_comma = before(1).is_some_and(|k| toks[k].kind == TokenKind::Punct(b','))
        && before(3).is_some_and(|k| word(k, "limit"));
    after_word || after_comma
}

/// Finds the literals a statement has bound so far by their text, for
/// [`dedups`]: a few are compared in turn, more are looked up.
struct Seen {
    on: bool,
    /// LIMIT binds, never shared.
    unshared: Vec<usize>,
    many: Option<std::collections::HashMap<String, usize>>,
}

impl Seen {
    /// Past this many binds, a map finds a literal (a long IN list).
    const FEW: usize = 16;

    fn new(on: bool) -> Self {
        Seen {
            on,
            unshared: Vec::new(),
            many: None,
        }
    }

    /// The bind number (1-based) of an equal literal bound before.
    fn find(&self, text: &str, binds: &[Slot]) -> Option<usize> {
        if !self.on || text.len() > SHARED_LITERAL_MAX {
            return None;
        }
        match &self.many {
            Some(m) => m.get(text).copied(),
            None => (0..binds.len())
                .find(|&k| written(&binds[k]) == Some(text) && !self.unshared.contains(&(k + 1)))
                .map(|k| k + 1),
        }
    }

    /// Notes bind `n` (1-based, the last of `binds`); `shared` when later
    /// equal literals may use it.
    fn add(&mut self, binds: &[Slot], shared: bool) {
        if !self.on {
            return;
        }
        let n = binds.len();
        if !shared {
            self.unshared.push(n);
            return;
        }
        if let Some(m) = &mut self.many {
            if let Some(t) = written(&binds[n - 1]).filter(|t| t.len() <= SHARED_LITERAL_MAX) {
                m.entry(t.to_string()).or_insert(n);
            }
        } else if n > Self::FEW {
            let mut m = std::collections::HashMap::new();
            for (k, slot) in binds.iter().enumerate() {
                if let Some(t) = written(slot).filter(|t| t.len() <= SHARED_LITERAL_MAX) {
                    if !self.unshared.contains(&(k + 1)) {
                        m.entry(t.to_string()).or_insert(k + 1);
                    }
                }
            }
            self.many = Some(m);
        }
    }
}

/// A literal slot's text as written.
fn written(slot: &Slot) -> Option<&str> {
    match slot {
        Slot::Literal(Bind {
            text: Text::Written(t),
            ..
        }) => Some(t),
        _ => None,
    }
}

fn is_sign(sql: &str, toks: &[Token], minus: usize) -> bool {
    if minus == 0 {
        return true;
    }
    let prev = toks[minus - 1];
    match prev.kind {
        TokenKind::Punct(b')') => false,
        TokenKind::Punct(_) | TokenKind::Semicolon => true,
        TokenKind::Word => SIGN_AFTER.iter().any(|w| prev.is_word(sql, w)),
        _ => false,
    }
}

/// The value of a numeric literal: integers as Int/UInt, others as text.
pub fn number_value(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(u) = text.parse::<u64>() {
        Value::UInt(u)
    } else {
        Value::Bytes(text.as_bytes().to_vec())
    }
}

/// The value of a string literal ('..' or ".."), unescaped; other forms
/// (X'..', _charset'..') keep their text.
pub fn string_value(text: &str, no_backslash_escapes: bool) -> Value {
    let b = text.as_bytes();
    if b.len() < 2 || !(b[0] == b'\'' || b[0] == b'"') {
        if let Some(hex) = text
            .strip_prefix(['x', 'X'])
            .and_then(|h| h.strip_prefix('\''))
            .and_then(|h| h.strip_suffix('\''))
        {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                })
                .collect();
            if let Some(bytes) = bytes {
                return Value::Bytes(bytes);
            }
        }
        return Value::Bytes(text.as_bytes().to_vec());
    }
    let q = b[0];
    let inner = &b[1..b.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c == b'\\' && !no_backslash_escapes && i + 1 < inner.len() {
            let n = inner[i + 1];
            out.push(match n {
                b'0' => 0,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'Z' => 26,
                other => other,
            });
            i += 2;
        } else if c == q && inner.get(i + 1) == Some(&q) {
            out.push(q);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Value::Bytes(super::raw::restore(out))
}

/// SQL whose `:name` placeholders are found once, when a plan is built:
/// a statement pushed to several shards on every execution is then
/// filled in by copying, not tokenized again each time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    sql: String,
    /// Byte ranges of the placeholders (colon included), in order.
    holes: Vec<(usize, usize)>,
    /// Where the first FROM starts, when the SQL can run as a prepared
    /// statement with parameters for its binds ([`Template::fill_params`]):
    /// one SELECT, no subquery, and no placeholder but `:vN`.
    params_from: Option<usize>,
}

impl Template {
    /// Finds the placeholders of `sql` (see `holes`).
    pub fn new(sql: String) -> Self {
        let mut tokens = tokenize(&sql);
        // The parser renders a shared row lock as MySQL 8 writes it.
        let sql = match super::share_lock(&sql, &tokens, true) {
            Some(mariadb) => {
                tokens = tokenize(&mariadb);
                mariadb
            }
            None => sql,
        };
        let holes = holes_of(&sql, &tokens);
        let word =
            |t: &Token, w: &str| t.kind == TokenKind::Word && t.text(&sql).eq_ignore_ascii_case(w);
        let selects = tokens.iter().filter(|t| word(t, "select")).count();
        let named = holes
            .iter()
            .any(|&(s, e)| !is_name(&sql, s) && bind_index(&sql[s + 1..e]).is_none());
        let params_from = (selects == 1 && !named)
            .then(|| tokens.iter().find(|t| word(t, "from")).map(|t| t.start))
            .flatten();
        Template {
            sql,
            holes,
            params_from,
        }
    }

    /// The SQL as a prepared statement, its `?` parameters appended to
    /// `params`: a bind that came as a client's parameter in the WHERE
    /// clause and after it becomes a parameter, every other bind stays as
    /// written. A result's column types then never hang on a parameter
    /// (the SELECT list's binds are inlined; a subquery rules it out), so
    /// the tablet can say them when the statement is prepared; the SQL
    /// text stays the same from one execution of a client's statement to
    /// the next, so the tablet prepares it once. None when the SQL cannot
    /// run so (see `params_from`).
    pub fn fill_params(&self, binds: &[Bind], params: &mut Vec<Value>) -> Option<String> {
        let from = self.params_from?;
        let mut out = String::with_capacity(self.sql.len());
        let mut copied = 0;
        for &(start, end) in &self.holes {
            if is_name(&self.sql, start) {
                out.push_str(&self.sql[copied..start]);
                out.push_str(&filled_name(&self.sql[start..end], binds));
                copied = end;
                continue;
            }
            let bind = bind_index(&self.sql[start + 1..end]).and_then(|k| binds.get(k))?;
            out.push_str(&self.sql[copied..start]);
            if start > from && matches!(bind.text, Text::Param { .. }) {
                out.push('?');
                params.push(bind.value.clone());
            } else {
                out.push_str(&bind.text());
            }
            copied = end;
        }
        out.push_str(&self.sql[copied..]);
        Some(out)
    }

    /// The SQL with its placeholders as written.
    pub fn as_str(&self) -> &str {
        &self.sql
    }

    /// The SQL with `:vN` replaced by bind N (1-based) and any other
    /// placeholder by what `named` gives for its name (without the colon);
    /// a placeholder with neither stays as written.
    pub fn fill<'a>(&self, binds: &[Bind], named: impl Fn(&str) -> Option<&'a str>) -> String {
        fill_holes(&self.sql, &self.holes, binds, named)
    }
}

/// Byte ranges of the `:name` placeholders of `sql` (a `:` directly
/// followed by a word, outside literals and comments), colon included.
fn holes(sql: &str) -> Vec<(usize, usize)> {
    holes_of(sql, &tokenize(sql))
}

/// [`holes`] of a tokenized SQL; a name the planner marked
/// ([`template_name`]) is one too, quotes included.
fn holes_of(sql: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
    let mut holes = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b':') => {
                if let Some(w) = tokens
                    .get(i + 1)
                    .filter(|w| w.kind == TokenKind::Word && w.start == t.end)
                {
                    holes.push((t.start, w.end));
                }
            }
            TokenKind::Ident if is_name(sql, t.start) => holes.push((t.start, t.end)),
            _ => {}
        }
    }
    holes
}

/// Starts a column name the planner wrote from a template's text (a
/// computed column it had to name, which its client left unnamed): the
/// name's placeholders are filled with the statement's values when it is
/// sent, and the mark dropped, so that `round(avg(x), 2)` is named so and
/// not `round(avg(x), :v1)`. No name a client writes holds it.
const NAME_MARK: char = '\u{1}';

/// A column name for `text`, the rendering of a template's expression:
/// marked when it holds placeholders, so that they are filled when the
/// statement is sent (a mark no name a client writes holds).
pub fn template_name(text: &str) -> String {
    match text.contains(":v") {
        true => format!("{NAME_MARK}{text}"),
        false => text.to_string(),
    }
}

/// Starts, after [`NAME_MARK`], the name of a WITH table's column, and
/// ends its position there: MariaDB 10.11 names such a column by its text
/// only up to [`NAME_LENGTH`] characters, and a longer one `Name_exp_N`
/// by its position N, which is known only once the placeholders are
/// filled (a derived table's column keeps its whole text).
const WITH_MARK: char = '\u{2}';

/// The longest name MariaDB gives a WITH table's column by its text
/// (`NAME_CHAR_LEN`).
pub const NAME_LENGTH: usize = 64;

/// The name of a WITH table's computed column at `position` (from 1):
/// its text, or `Name_exp_N` where the text is longer than MariaDB names
/// such a column by; marked ([`template_name`]) when that waits for its
/// placeholders.
pub fn with_name(text: &str, position: usize) -> String {
    match text.contains(":v") {
        true => format!("{NAME_MARK}{WITH_MARK}{position}{WITH_MARK}{text}"),
        false => with_named(text.to_string(), position),
    }
}

/// `name`, or `Name_exp_N` when it is longer than [`NAME_LENGTH`].
fn with_named(name: String, position: usize) -> String {
    match name.chars().count() > NAME_LENGTH {
        true => format!("Name_exp_{position}"),
        false => name,
    }
}

/// A marked name's placeholders filled ([`name_filled`]), a WITH
/// table's column's (see [`WITH_MARK`]) its position past its length.
fn marked_filled(marked: &str, binds: &[Bind]) -> String {
    let with = marked
        .strip_prefix(WITH_MARK)
        .and_then(|rest| rest.split_once(WITH_MARK))
        .and_then(|(position, text)| Some((position.parse::<usize>().ok()?, text)));
    match with {
        Some((position, text)) => with_named(name_filled(text, binds), position),
        None => name_filled(marked, binds),
    }
}

/// A column name the gate gives a column it computes: a marked name
/// ([`template_name`]) with its placeholders filled and the mark dropped;
/// any other with its placeholders filled.
pub fn column_name(name: &str, binds: &[Bind]) -> String {
    match name.strip_prefix(NAME_MARK) {
        Some(marked) => marked_filled(marked, binds),
        None => name_filled(name, binds),
    }
}

/// A column name's placeholders filled as MariaDB names the column: a
/// literal as written, a prepared statement's parameter as the `?` it
/// was (`a + ?`, whatever its value).
fn name_filled(text: &str, binds: &[Bind]) -> String {
    // A string literal alone is named by its value, as MariaDB names it
    // (`select 'x'` is column `x`).
    let alone = text
        .strip_prefix(':')
        .and_then(bind_index)
        .and_then(|k| binds.get(k));
    if let Some(b) = alone.filter(|b| matches!(b.text, Text::Written(_)) && b.is_quoted_string()) {
        if let Value::Bytes(v) = &b.value {
            return String::from_utf8_lossy(v).into_owned();
        }
    }
    fn as_named(b: &Bind) -> std::borrow::Cow<'_, str> {
        match &b.text {
            Text::Param { .. } => std::borrow::Cow::Borrowed("?"),
            Text::Written(w) => std::borrow::Cow::Borrowed(w),
        }
    }
    fill_holes_as(text, &holes(text), binds, as_named, |_| None)
}

/// Whether the hole at `start` is a marked name.
fn is_name(sql: &str, start: usize) -> bool {
    sql[start..].starts_with('`') && sql[start + 1..].starts_with(NAME_MARK)
}

/// A marked name (quotes included), its placeholders filled, quoted
/// again, the mark dropped.
fn filled_name(quoted: &str, binds: &[Bind]) -> String {
    let inner = quoted[1..quoted.len().saturating_sub(1)].replace("``", "`");
    let inner = inner.strip_prefix(NAME_MARK).unwrap_or(&inner);
    super::quote_ident(&marked_filled(inner, binds))
}

/// The bind a placeholder named `vN` stands for: N - 1 (None for any
/// other name).
fn bind_index(name: &str) -> Option<usize> {
    name.strip_prefix('v')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

/// `sql` with its placeholders at `holes` filled in: `:vN` by bind N
/// (1-based), any other by what `named` gives; the rest stay as written.
fn fill_holes<'a>(
    sql: &str,
    holes: &[(usize, usize)],
    binds: &[Bind],
    named: impl Fn(&str) -> Option<&'a str>,
) -> String {
    fill_holes_as(sql, holes, binds, Bind::text, named)
}

/// [`fill_holes`] with each bind written by `bind_text`.
fn fill_holes_as<'a, 'b>(
    sql: &str,
    holes: &[(usize, usize)],
    binds: &'b [Bind],
    bind_text: impl Fn(&'b Bind) -> std::borrow::Cow<'b, str>,
    named: impl Fn(&str) -> Option<&'a str>,
) -> String {
    let mut out = String::with_capacity(sql.len() + binds.len() * 8);
    let mut copied = 0;
    for &(start, end) in holes {
        if is_name(sql, start) {
            out.push_str(&sql[copied..start]);
            out.push_str(&filled_name(&sql[start..end], binds));
            copied = end;
            continue;
        }
        let name = &sql[start + 1..end];
        let text = bind_index(name)
            .and_then(|k| binds.get(k))
            .map(&bind_text)
            .or_else(|| named(name).map(std::borrow::Cow::Borrowed));
        if let Some(text) = text {
            out.push_str(&sql[copied..start]);
            out.push_str(&text);
            copied = end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Puts bind values back into SQL rendered from a template's AST.
pub fn substitute_binds(sql: &str, binds: &[Bind]) -> String {
    fill_holes(sql, &holes(sql), binds, |_| None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WITH table's column named past 64 characters is `Name_exp_N`,
    /// counted once its placeholders are filled (`:v1`, three characters,
    /// filled with `1` makes 64, with `12` 65).
    #[test]
    fn a_with_table_s_long_column_is_named_by_its_position() {
        let short = "a".repeat(64);
        assert_eq!(with_name(&short, 3), short);
        assert_eq!(with_name(&"a".repeat(65), 3), "Name_exp_3");
        let marked = with_name(&format!("{} + :v1", "a".repeat(60)), 2);
        let one = |text: &str| vec![Bind::written(text, Value::Int(1))];
        assert_eq!(
            column_name(&marked, &one("1")),
            format!("{} + 1", "a".repeat(60))
        );
        assert_eq!(column_name(&marked, &one("12")), "Name_exp_2");
    }

    #[test]
    fn literals_become_binds_and_come_back() {
        let sql = "select a, 'x''y' from t where id = -5 and b in (1, 2.5) and c - 3 > 0 order by 2, a limit 10";
        let n = normalize(sql, &[], false);
        assert_eq!(
            n.template,
            "select a, :v1 from t where id = :v2 and b in (:v3, :v4) and c - :v5 > :v6 order by 2, a limit :v7"
        );
        assert_eq!(n.binds[0].value, Value::Bytes(b"x'y".to_vec()));
        assert_eq!(n.binds[1].value, Value::Int(-5));
        assert_eq!(n.binds[3].value, Value::Bytes(b"2.5".to_vec()));
        assert_eq!(substitute_binds(&n.template, &n.binds), sql);
    }

    #[test]
    fn marked_names_are_filled_with_the_values() {
        let n = normalize(
            "select round(avg(x), 2), y from t where z = 'a'",
            &[],
            false,
        );
        let name = crate::sql::quote_ident(&template_name("round(avg(x), :v1)"));
        let sql = format!("SELECT sg_a AS {name}, y AS `y:v2` FROM t WHERE z = :v2");
        let t = Template::new(sql.clone());
        let want = "SELECT sg_a AS `round(avg(x), 2)`, y AS `y:v2` FROM t WHERE z = 'a'";
        assert_eq!(t.fill(&n.binds, |_| None), want);
        assert_eq!(substitute_binds(&sql, &n.binds), want);
        // Prepared: the name is filled, the WHERE's value a parameter
        // only when the client sent it as one.
        let mut params = Vec::new();
        assert_eq!(t.fill_params(&n.binds, &mut params).as_deref(), Some(want));
        // A name without placeholders is not marked.
        assert_eq!(template_name("count(*)"), "count(*)");
        // A client's parameter is named as the `?` it was, a literal as
        // written.
        let binds = [
            Bind::param(Value::Int(5), false),
            Bind::written("'x'", Value::Bytes(b"x".to_vec())),
        ];
        let marked = template_name("count(*) + :v1, concat(a, :v2)");
        assert_eq!(column_name(&marked, &binds), "count(*) + ?, concat(a, 'x')");
    }

    #[test]
    fn a_separator_stays_in_the_template() {
        let n = normalize(
            "select group_concat(a separator '|') from t where b = 'x'",
            &[],
            false,
        );
        assert_eq!(
            n.template,
            "select group_concat(a separator '|') from t where b = :v1"
        );
        assert_eq!(n.binds.len(), 1);
    }

    #[test]
    fn a_template_fills_parameters_after_its_from() {
        let t = Template::new(
            "select :v1, c from t where id between :v2 and :v3 and name = :v4".into(),
        );
        let binds = [
            Bind::param(Value::Int(7), false),
            Bind::param(Value::Int(1), false),
            Bind::written("10", Value::Int(10)),
            Bind::param(Value::Bytes(b"x".to_vec()), false),
        ];
        let mut params = Vec::new();
        // The SELECT list's parameter and the written literal stay text.
        assert_eq!(
            t.fill_params(&binds, &mut params).as_deref(),
            Some("select 7, c from t where id between ? and 10 and name = ?")
        );
        assert_eq!(params, [Value::Int(1), Value::Bytes(b"x".to_vec())]);
        // A subquery, or a placeholder the caller fills, rules it out.
        for sql in [
            "select c from t where id in (select id from u where x = :v1)",
            "select c from t where id in (:vIN)",
            "select c from t order by c limit :vLIMIT",
        ] {
            assert_eq!(
                Template::new(sql.into()).fill_params(&binds, &mut params),
                None,
                "{sql}"
            );
        }
    }

    #[test]
    fn a_template_fills_like_substitution() {
        let sql = "select a, 'x''y', ':v1' from t where id = -5 and b in (1, 2.5) limit 10";
        let n = normalize(sql, &[], false);
        let t = Template::new(n.template.clone());
        assert_eq!(t.fill(&n.binds, |_| None), sql);
        assert_eq!(
            t.fill(&n.binds, |_| None),
            substitute_binds(&n.template, &n.binds)
        );
        // Named holes are the caller's; unknown ones stay as written.
        let t = Template::new(
            "select x from t where id in (:vIN) and y = :v1 limit :vLIMIT /* :v1 */".into(),
        );
        let binds = [Bind::written("'a:v2'", Value::Bytes(b"a:v2".to_vec()))];
        assert_eq!(
            t.fill(&binds, |n| (n == "vIN").then_some("1, 2")),
            "select x from t where id in (1, 2) and y = 'a:v2' limit :vLIMIT /* :v1 */"
        );
    }

    #[test]
    fn same_shape_same_template() {
        let a = normalize("select * from t where id = 5", &[], false);
        let b = normalize("select * from t where id = 7", &[], false);
        assert_eq!(a.template, b.template);
    }

    #[test]
    fn a_select_shares_a_bind_between_equal_literals() {
        let n = normalize(
            "select left(c, 1), 'x' from t where a = 1 and b = 'x' and c = '1' group by left(c, 1) limit 1",
            &[],
            false,
        );
        assert_eq!(
            n.template,
            "select left(c, :v1), :v2 from t where a = :v1 and b = :v2 and c = :v3 group by left(c, :v1) limit :v4"
        );
        assert_eq!(n.binds.len(), 4);
        // Parameters stay apart; a write's literals too.
        let p = normalize(
            "select ?, 2 from t where a = ? and b = 2",
            &[1.into(), 1.into()],
            false,
        );
        assert_eq!(
            p.template,
            "select :v1, :v2 from t where a = :v3 and b = :v2"
        );
        let w = normalize("insert into t values (1, 1)", &[], false);
        assert_eq!(w.template, "insert into t values (:v1, :v2)");
        // A long list is looked up, and still shares.
        let list: Vec<String> = (0..40).map(|k| (k % 20).to_string()).collect();
        let l = normalize(
            &format!(
                "select * from t where a in ({}) limit 5, 5",
                list.join(", ")
            ),
            &[],
            false,
        );
        assert_eq!(l.binds.len(), 22);
        assert!(
            l.template.ends_with(":v19, :v20) limit :v21, :v22"),
            "{}",
            l.template
        );
        let shape = super::shape(
            &format!("select 1 from t where a in ({})", list.join(", ")),
            false,
        );
        assert_eq!(shape.binds(&[], false).len(), 20);
    }

    #[test]
    fn types_and_positions_stay() {
        let n = normalize(
            "select cast(a as decimal(10, 2)) from t group by 1 order by 1 desc",
            &[],
            false,
        );
        assert_eq!(
            n.template,
            "select cast(a as decimal(10, 2)) from t group by 1 order by 1 desc"
        );
        assert!(n.binds.is_empty());
    }

    #[test]
    fn a_position_after_a_window_s_order_stays() {
        // The window's ORDER BY ends with its parenthesis; the
        // statement's list goes on (its `1` once became a value).
        let n = normalize(
            "select a from t order by row_number() over (order by b desc, c), 1 limit 3",
            &[],
            false,
        );
        assert_eq!(
            n.template,
            "select a from t order by row_number() over (order by b desc, c), 1 limit :v1"
        );
        let n = normalize(
            "select a from t where b in (select c from u order by 1) order by 1, a + 2",
            &[],
            false,
        );
        assert_eq!(
            n.template,
            "select a from t where b in (select c from u order by 1) order by 1, a + :v1"
        );
    }

    #[test]
    fn parameters_are_binds() {
        let n = normalize(
            "insert into t values (?, ?, 3)",
            &[Value::Int(1), Value::Bytes(b"a'b".to_vec())],
            false,
        );
        assert_eq!(n.template, "insert into t values (:v1, :v2, :v3)");
        assert_eq!(n.binds[1].text(), "'a\\'b'");
        assert_eq!(
            substitute_binds(&n.template, &n.binds),
            "insert into t values (1, 'a\\'b', 3)"
        );
    }

    #[test]
    fn parameters_render_their_text_only_when_asked() {
        let cases = [
            (Value::Int(-7), "-7", false),
            (Value::Bytes(b"it's".to_vec()), "'it\\'s'", true),
            (Value::Bytes(vec![0xff, 0x01]), "X'ff01'", false),
            (Value::NULL, "NULL", false),
        ];
        for (v, text, quoted) in cases {
            let b = Bind::param(v.clone(), false);
            assert_eq!(b.text(), text, "{v:?}");
            assert_eq!(b.text(), crate::sql::literal(&v, false));
            assert_eq!(b.is_quoted_string(), quoted, "{v:?}");
        }
        // The session's NO_BACKSLASH_ESCAPES is kept for the rendering.
        let b = Bind::param(Value::Bytes(b"it's".to_vec()), true);
        assert_eq!(b.text(), "'it''s'");
        let w = Bind::written("'x'", Value::Bytes(b"x".to_vec()));
        assert!(w.is_quoted_string());
        assert!(!Bind::written("0x78", Value::Bytes(b"x".to_vec())).is_quoted_string());
    }

    #[test]
    fn a_shape_fills_each_execution_like_normalize() {
        let sql = "select * from t where a = ? and b = 'k' and c in (?, 4)";
        let shape = shape(sql, false);
        for params in [
            vec![Value::Int(1), Value::Bytes(b"x".to_vec())],
            vec![Value::UInt(9), Value::NULL],
            vec![Value::Int(2)],
        ] {
            let n = normalize(sql, &params, false);
            assert_eq!(shape.template, n.template);
            assert_eq!(shape.binds(&params, false), n.binds);
        }
        let b = shape.binds(&[Value::Int(7)], false);
        assert_eq!(b.len(), 4);
        assert_eq!(b[1].value, Value::Bytes(b"k".to_vec()));
        assert_eq!(b[2].value, Value::NULL, "a missing parameter is NULL");
    }
}
