//! MySQL's ways of writing a statement that the parser does not read,
//! brought to forms it does before a sharded keyspace plans them: `INSERT
//! ... SET` (a row insert written as assignments), the modifiers of UPDATE
//! and DELETE (`LOW_PRIORITY`, `QUICK`, `IGNORE`), which the parser takes
//! for a table name or refuses, and the infix `MOD`. vtgate's own parser
//! reads all of them. And an INSERT whose vindex value is an expression,
//! which only a tablet can compute, as the INSERT ... SELECT of its rows.

use sqlparser::ast::{self, AssignmentTarget, Expr, ObjectName, SetExpr, Statement};

use super::sharded::{parse, unsupported};
use super::{Plan, PlanError};
use crate::sql::lexer::{tokenize, Token, TokenKind};

/// An UPDATE's or DELETE's modifiers, as written, and the statement's
/// text without them (None: it has none).
pub(super) fn dml_modifiers(template: &str) -> Option<(String, String)> {
    let toks = tokenize(template);
    let first = toks.first()?;
    let allowed: &[&str] = if first.is_word(template, "update") {
        &["low_priority", "ignore"]
    } else if first.is_word(template, "delete") {
        &["low_priority", "quick", "ignore"]
    } else {
        return None;
    };
    let taken: Vec<&Token> = toks[1..]
        .iter()
        .take_while(|t| allowed.iter().any(|w| t.is_word(template, w)))
        .collect();
    let (from, to) = (taken.first()?.start, taken.last()?.end);
    let bare = format!("{}{}", &template[..from], template[to..].trim_start());
    Some((template[from..to].to_string(), bare))
}

/// A plan of the statement without its modifiers (`bare`, see
/// [`dml_modifiers`]) given them back. Where the statement goes to its
/// shards as written (every one-table write and colocated one) each shard
/// runs it with them. Where the gate finds the rows first or runs
/// subqueries first, IGNORE is refused (each part would ignore its own
/// errors, not the statement's), and LOW_PRIORITY and QUICK, which change
/// nothing for InnoDB tables, are left out.
pub(super) fn with_modifiers(plan: Plan, modifiers: &str) -> Result<Plan, PlanError> {
    match plan {
        Plan::Dml(mut d) => {
            d.query = reinsert(&d.query, modifiers);
            d.original = reinsert(&d.original, modifiers);
            Ok(Plan::Dml(d))
        }
        _ if tokenize(modifiers)
            .iter()
            .any(|t| t.is_word(modifiers, "ignore")) =>
        {
            Err(unsupported(
                "UPDATE or DELETE IGNORE whose rows are found first or whose subqueries run first",
            ))
        }
        other => Ok(other),
    }
}

/// `sql` with `modifiers` after its first word (UPDATE or DELETE).
fn reinsert(sql: &str, modifiers: &str) -> String {
    match tokenize(sql).first() {
        Some(t) => format!("{} {modifiers}{}", &sql[..t.end], &sql[t.end..]),
        None => sql.to_string(),
    }
}

/// MySQL's `INSERT ... SET a = 1, b = 2` as the `INSERT ... (a, b)
/// VALUES (1, 2)` it is, so it is planned as any row insert (it was
/// refused as an INSERT ... SELECT).
pub(super) fn insert_set_as_values(stmt: &mut Statement) -> Result<(), PlanError> {
    let Statement::Insert(ins) = stmt else {
        return Ok(());
    };
    if ins.assignments.is_empty() || ins.source.is_some() {
        return Ok(());
    }
    let mut values = Vec::with_capacity(ins.assignments.len());
    for a in ins.assignments.drain(..) {
        let AssignmentTarget::ColumnName(name) = a.target else {
            return Err(PlanError::Syntax("INSERT ... SET of a tuple".into()));
        };
        // `SET t.col = ...` names the column `col`.
        let column = name
            .0
            .last()
            .cloned()
            .ok_or_else(|| PlanError::Syntax("INSERT ... SET".into()))?;
        ins.columns.push(ObjectName(vec![column]));
        values.push(a.value.to_string());
    }
    let Statement::Query(row) = parse(&format!("VALUES ({})", values.join(", ")))? else {
        return Err(PlanError::Syntax("INSERT ... SET".into()));
    };
    ins.source = Some(row);
    Ok(())
}

thread_local! {
    /// A VALUES-as-SELECT rewrite is being planned on this thread.
    static SELECTING_VALUES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Clears [`SELECTING_VALUES`] when the rewrite's planning ends.
struct SelectingValues;

impl Drop for SelectingValues {
    fn drop(&mut self) {
        SELECTING_VALUES.with(|s| s.set(false));
    }
}

/// Plans a VALUES-as-SELECT rewrite ([`values_as_select`]) unless one is
/// being planned already: its own rows' plan (values a tablet gave) must
/// not rewrite again, or planning would never end.
pub(super) fn selecting_values<T>(plan: impl FnOnce() -> Option<T>) -> Option<T> {
    if SELECTING_VALUES.with(|s| s.replace(true)) {
        return None;
    }
    let _done = SelectingValues;
    plan()
}

/// An INSERT whose VALUES give a vindex column an expression rather than
/// a value (`@id`, `2 + 4`, `last_insert_id() + 1`) as the `INSERT ...
/// SELECT` of its rows, which runs its SELECT first and routes the rows
/// it gets: the gate learns each row's value from a tablet, where the
/// session's variables are. None for rows naming DEFAULT (no SELECT takes
/// it) or a source that is no VALUES.
pub(super) fn values_as_select(ins: &ast::Insert) -> Result<Option<ast::Insert>, PlanError> {
    let Some(SetExpr::Values(values)) = ins.source.as_deref().map(|q| q.body.as_ref()) else {
        return Ok(None);
    };
    let default = |e: &Expr| matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
    if values.rows.iter().any(|r| r.content.iter().any(default)) {
        return Ok(None);
    }
    let selects: Vec<String> = values
        .rows
        .iter()
        .map(|r| {
            let items: Vec<String> = r.content.iter().map(|e| e.to_string()).collect();
            format!("SELECT {}", items.join(", "))
        })
        .collect();
    let Statement::Query(rows) = parse(&selects.join(" UNION ALL "))? else {
        return Ok(None);
    };
    let mut selected = ins.clone();
    selected.source = Some(rows);
    Ok(Some(selected))
}

/// MariaDB's GROUP BY sorts the groups by its expressions when the
/// statement has no ORDER BY (`ORDER BY NULL` turns that off): a client of
/// one MariaDB gets `group by customer_id` ascending, and the first groups
/// under a LIMIT. Across shards the groups came in shard order; written
/// out, the ORDER BY makes the gate merge them so. Not beside WITH ROLLUP
/// (where MariaDB refuses an ORDER BY: its groups come sorted anyway).
pub(super) fn group_order(stmt: &mut Statement) {
    let Statement::Query(q) = stmt else { return };
    if q.order_by.is_some() {
        return;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return;
    };
    let ast::GroupByExpr::Expressions(exprs, modifiers) = &sel.group_by else {
        return;
    };
    if exprs.is_empty() || !modifiers.is_empty() {
        return;
    }
    let by = exprs
        .iter()
        .map(|e| ast::OrderByExpr {
            expr: e.clone(),
            options: ast::OrderByOptions {
                sort: None,
                nulls_first: None,
            },
            with_fill: None,
        })
        .collect();
    q.order_by = Some(ast::OrderBy {
        kind: ast::OrderByKind::Expressions(by),
        interpolate: None,
    });
}

/// `a MOD b` (MySQL's infix modulo, which the parser reads as an alias)
/// as the `a % b` it is; None when the text has none. MOD is a reserved
/// word: written bare and not called as `MOD(a, b)`, it is the operator.
pub(super) fn mod_operator(template: &str, tokens: &[Token]) -> Option<String> {
    let infix = |i: usize| {
        tokens[i].is_word(template, "mod")
            && tokens
                .get(i + 1)
                .is_none_or(|t| t.kind != TokenKind::Punct(b'('))
    };
    let places: Vec<usize> = (0..tokens.len()).filter(|&i| infix(i)).collect();
    if places.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(template.len());
    let mut copied = 0;
    for i in places {
        out.push_str(&template[copied..tokens[i].start]);
        out.push('%');
        copied = tokens[i].end;
    }
    out.push_str(&template[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_come_off_for_the_parser_and_back_for_the_shards() {
        assert_eq!(
            dml_modifiers("update low_priority IGNORE t set a = 1"),
            Some(("low_priority IGNORE".into(), "update t set a = 1".into()))
        );
        assert_eq!(
            dml_modifiers("DELETE QUICK ignore FROM t"),
            Some(("QUICK ignore".into(), "DELETE FROM t".into()))
        );
        // QUICK is DELETE's only; a quoted `ignore` is a table.
        assert_eq!(dml_modifiers("update quick set a = 1"), None);
        assert_eq!(dml_modifiers("update `ignore` set a = 1"), None);
        assert_eq!(dml_modifiers("select 1"), None);
        assert_eq!(
            reinsert("UPDATE `t` SET a = 1 WHERE id IN ::vIN", "IGNORE"),
            "UPDATE IGNORE `t` SET a = 1 WHERE id IN ::vIN"
        );
    }

    #[test]
    fn infix_mod_is_the_modulo_operator() {
        let moded = |sql: &str| mod_operator(sql, &tokenize(sql));
        assert_eq!(
            moded("select a MOD 3, mod(a, 2) from t where b mod :v1 = 0").as_deref(),
            Some("select a % 3, mod(a, 2) from t where b % :v1 = 0")
        );
        assert_eq!(moded("select mod(a, 2), 'mod' from `mod`"), None);
    }

    #[test]
    fn insert_set_is_a_row_of_values() {
        let mut stmt = parse("insert ignore into t set a = :v1, t.b = concat(:v2, 'x')").unwrap();
        insert_set_as_values(&mut stmt).unwrap();
        assert_eq!(
            stmt.to_string(),
            "INSERT IGNORE INTO t (a, b) VALUES (:v1, concat(:v2, 'x'))"
        );
        // Any other insert is left as it is.
        let mut other = parse("insert into t (a) values (1)").unwrap();
        let before = other.clone();
        insert_set_as_values(&mut other).unwrap();
        assert_eq!(other, before);
    }
}
