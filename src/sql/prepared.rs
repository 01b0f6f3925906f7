//! MariaDB's prepared statements in SQL (`PREPARE name FROM ...`,
//! `EXECUTE name [USING ...]`, `EXECUTE IMMEDIATE ...`, `DEALLOCATE
//! PREPARE name`), which vtgate keeps in its session. Why the gate reads
//! them: a tablet connection that prepared a statement is not the one the
//! next EXECUTE gets, and on a sharded keyspace no tablet could run the
//! EXECUTE alone. This module only reads the text; the session keeps the
//! statements and runs them.

use super::lexer::{Token, TokenKind};
use super::{string_literal, unquote, SqlError, Statement};

/// Where a PREPARE or EXECUTE IMMEDIATE takes its statement's text from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A string literal, its value.
    Text(String),
    /// Any other expression (`@var`, `CONCAT(...)`), as written: the
    /// session evaluates it.
    Expr(String),
}

/// What an EXECUTE runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// A statement PREPARE kept, by its name (lower case: names are not
    /// case-sensitive).
    Named(String),
    /// MariaDB's `EXECUTE IMMEDIATE`: the text itself.
    Immediate(Source),
}

/// Whether `toks` starts one of this module's statements (as opposed to
/// a table or column that happens to be called `prepare`).
pub(super) fn starts(sql: &str, toks: &[Token]) -> bool {
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    (w(0, "prepare") && w(2, "from"))
        || w(0, "execute")
        || ((w(0, "deallocate") || w(0, "drop")) && w(1, "prepare"))
}

/// Reads a statement [`starts`] accepted.
pub(super) fn read(sql: &str, toks: &[Token]) -> Result<Statement, SqlError> {
    // A trailing `;` is the client's terminator, not the statement's.
    let toks = match toks.split_last() {
        Some((last, rest)) if last.kind == TokenKind::Semicolon => rest,
        _ => toks,
    };
    let bad = || SqlError::BadPrepared(sql.trim().to_string());
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    if w(0, "prepare") {
        let name = name(sql, toks.get(1)).ok_or_else(bad)?;
        let source = source(sql, &toks[3..]).ok_or_else(bad)?;
        return Ok(Statement::Prepare { name, source });
    }
    if w(0, "execute") {
        let (what, from) = if w(1, "immediate") {
            let end = toks.iter().position(|t| t.is_word(sql, "using"));
            let end = end.unwrap_or(toks.len());
            let source = source(sql, &toks[2..end]).ok_or_else(bad)?;
            (Executed::Immediate(source), end)
        } else {
            (Executed::Named(name(sql, toks.get(1)).ok_or_else(bad)?), 2)
        };
        let args = match toks.get(from) {
            None => Vec::new(),
            Some(t) if t.is_word(sql, "using") => {
                arguments(sql, &toks[from + 1..]).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        return Ok(Statement::Execute { what, args });
    }
    match (name(sql, toks.get(2)), toks.len()) {
        (Some(name), 3) => Ok(Statement::Deallocate(name)),
        _ => Err(bad()),
    }
}

/// For each `?` of a statement's text, whether it stands for a LIMIT's or
/// OFFSET's count (`LIMIT ?`, `LIMIT ?, ?`, `OFFSET ?`), where MariaDB
/// takes a string's number (`EXECUTE p USING '2'`) but not, written in the
/// text, a quoted string.
pub fn count_slots(sql: &str) -> Vec<bool> {
    let toks = super::lexer::tokenize(sql);
    let mut slots = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.kind != TokenKind::Placeholder {
            continue;
        }
        let before = |k: usize| i.checked_sub(k).map(|j| &toks[j]);
        let after_word = |k: usize, w: &str| before(k).is_some_and(|p| p.is_word(sql, w));
        let second =
            before(1).is_some_and(|p| p.kind == TokenKind::Punct(b',')) && after_word(3, "limit");
        slots.push(after_word(1, "limit") || after_word(1, "offset") || second);
    }
    slots
}

/// A value written for a count (see [`count_slots`]): a quoted string of
/// digits as its number; anything else as it is.
pub fn as_count(literal: &str) -> &str {
    let inner = literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .or_else(|| literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')));
    match inner {
        Some(n) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => n,
        _ => literal,
    }
}

/// A statement's name: one word or quoted identifier, in lower case.
fn name(sql: &str, t: Option<&Token>) -> Option<String> {
    t.filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::Ident))
        .map(|t| unquote(t.text(sql)).to_lowercase())
}

/// The text after FROM (or IMMEDIATE): one string literal's value, or an
/// expression to evaluate.
fn source(sql: &str, toks: &[Token]) -> Option<Source> {
    match toks {
        [] => None,
        [t] if t.kind == TokenKind::Str => Some(Source::Text(string_literal(t.text(sql)))),
        [first, .., last] | [first @ last] => {
            Some(Source::Expr(sql[first.start..last.end].to_string()))
        }
    }
}

/// USING's expressions, split at the commas outside parentheses (None
/// when one is empty).
fn arguments(sql: &str, toks: &[Token]) -> Option<Vec<String>> {
    super::lexer::top_level_parts(toks)
        .into_iter()
        .map(|part| match part {
            [first, .., last] | [first @ last] => Some(sql[first.start..last.end].to_string()),
            [] => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::classify;

    #[test]
    fn counts_take_a_string_of_digits_as_their_number() {
        assert_eq!(
            count_slots("select ? from t where a = ? limit ?, ?"),
            [false, false, true, true]
        );
        assert_eq!(count_slots("select a from t limit 5 offset ?"), [true]);
        assert_eq!(
            count_slots("select a from t where b in (?, ?)"),
            [false, false]
        );
        assert_eq!(as_count("'2'"), "2");
        assert_eq!(as_count("\"10\""), "10");
        for kept in ["'2x'", "''", "7", "@n", "'-1'"] {
            assert_eq!(as_count(kept), kept);
        }
    }

    #[test]
    fn reads_the_three_statements_as_mariadb_writes_them() {
        assert_eq!(
            classify("PREPARE Stmt1 FROM 'select * from t where id = ?';").unwrap(),
            Statement::Prepare {
                name: "stmt1".into(),
                source: Source::Text("select * from t where id = ?".into()),
            }
        );
        assert_eq!(
            classify("prepare `p` from concat('select ', @c)").unwrap(),
            Statement::Prepare {
                name: "p".into(),
                source: Source::Expr("concat('select ', @c)".into()),
            }
        );
        assert_eq!(
            classify("execute P using @a, 4, concat(@b, 'x')").unwrap(),
            Statement::Execute {
                what: Executed::Named("p".into()),
                args: vec!["@a".into(), "4".into(), "concat(@b, 'x')".into()],
            }
        );
        assert_eq!(
            classify("execute p").unwrap(),
            Statement::Execute {
                what: Executed::Named("p".into()),
                args: vec![],
            }
        );
        assert_eq!(
            classify("execute immediate 'select ?' using 1").unwrap(),
            Statement::Execute {
                what: Executed::Immediate(Source::Text("select ?".into())),
                args: vec!["1".into()],
            }
        );
        assert_eq!(
            classify("EXECUTE IMMEDIATE @q").unwrap(),
            Statement::Execute {
                what: Executed::Immediate(Source::Expr("@q".into())),
                args: vec![],
            }
        );
        assert_eq!(
            classify("deallocate prepare P").unwrap(),
            Statement::Deallocate("p".into())
        );
        assert_eq!(
            classify("drop prepare p;").unwrap(),
            Statement::Deallocate("p".into())
        );
    }

    #[test]
    fn malformed_forms_are_syntax_errors_and_tables_stay_tables() {
        for bad in [
            "prepare p from",
            "execute",
            "execute p using",
            "execute p using 1,",
            "execute p 1",
            "deallocate prepare",
            "drop prepare p q",
        ] {
            assert!(
                matches!(classify(bad), Err(SqlError::BadPrepared(_))),
                "{bad}"
            );
        }
        // A table named `prepare`, a DROP of one.
        assert!(matches!(
            classify("select * from prepare").unwrap(),
            Statement::Query(_)
        ));
        assert!(matches!(
            classify("drop table prepare").unwrap(),
            Statement::Query(_)
        ));
    }
}
