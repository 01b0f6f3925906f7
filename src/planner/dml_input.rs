//! UPDATE and DELETE whose rows no one route finds (vtgate's
//! DMLWithInput): a multi-table write joining tables on different shards,
//! or a LIMIT over several shards. The rows are found first, by a SELECT of
//! the written table's primary key over the statement's own FROM, WHERE,
//! ORDER BY and LIMIT (`FOR UPDATE`, so that in a transaction they stay as
//! found); then the write names them by that key:
//!
//! `delete u from dt u join jl on jl.qty = u.k where jl.note = 'x'`
//! becomes `DELETE FROM dt WHERE (id) IN (SELECT u.id FROM dt u JOIN jl ON
//! jl.qty = u.k WHERE jl.note = 'x' FOR UPDATE)`, which the subquery
//! pullout ([`super::pullout::plan_write`]) runs as a nested loop first
//! and then as a write to the shards that hold those ids.
//!
//! The primary key comes from the schema tracker, as vtgate's does; a
//! table it has not learned is refused. One table is written; an UPDATE's
//! values may read only that table's columns (and subqueries that read
//! nothing of the statement).

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, FromTable, Statement, TableFactor, Visit, Visitor};

use super::sharded::unsupported;
use super::PlanError;
use crate::sql::quote_ident;
use crate::topo::Keyspace;

/// The statement rewritten to find its rows first, or `None` for one this
/// does not rewrite (the caller keeps its refusal).
pub(super) fn rewrite(stmt: &Statement, ks: &Keyspace) -> Result<Option<String>, PlanError> {
    match stmt {
        Statement::Delete(d) => delete(d, ks),
        Statement::Update(u) => update(u, ks),
        _ => Ok(None),
    }
}

fn delete(d: &ast::Delete, ks: &Keyspace) -> Result<Option<String>, PlanError> {
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
    if d.using.is_some() || d.returning.is_some() || from.is_empty() {
        return Ok(None);
    }
    // The table written: the one named before FROM, else the only one.
    let target = match d.tables.as_slice() {
        [] => None,
        [one] => one
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.clone()),
        _ => {
            return Err(unsupported(
                "multi-table DELETE of more than one table across shards",
            ))
        }
    };
    let Some(written) = find(ks, from, target.as_deref()) else {
        return Ok(None);
    };
    let key = primary_key(ks, &written.table)?;
    let input = input(
        &written,
        &key,
        from,
        d.selection.as_ref(),
        &d.order_by,
        d.limit.as_ref(),
    );
    Ok(Some(format!(
        "DELETE FROM {} WHERE ({}) IN ({input})",
        quote_ident(&written.table),
        columns(&key)
    )))
}

fn update(u: &ast::Update, ks: &Keyspace) -> Result<Option<String>, PlanError> {
    if u.from.is_some() || u.returning.is_some() {
        return Ok(None);
    }
    let from = std::slice::from_ref(&u.table);
    let multi = !u.table.joins.is_empty();
    // The table written: the one every SET column names.
    let mut target: Option<String> = None;
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            return Ok(None);
        };
        let parts: Vec<&str> =
            n.0.iter()
                .filter_map(|p| p.as_ident())
                .map(|i| i.value.as_str())
                .collect();
        let qual = match parts.as_slice() {
            [_] if multi => return Err(unsupported(
                "multi-table UPDATE across shards: each column set must be qualified by its table",
            )),
            [_] => None,
            [q, _] => Some(q.to_string()),
            _ => return Ok(None),
        };
        if let Some(q) = qual {
            if target.as_ref().is_some_and(|t| *t != q) {
                return Err(unsupported(
                    "multi-table UPDATE of more than one table across shards",
                ));
            }
            target = Some(q);
        }
    }
    let Some(written) = find(ks, from, target.as_deref()) else {
        return Ok(None);
    };
    // Values are computed by the write, where only its table is.
    if multi {
        for a in &u.assignments {
            if let Some(other) = reads_other(&a.value, &written.name) {
                return Err(unsupported(format!(
                    "multi-table UPDATE across shards with a value read from '{other}'"
                )));
            }
        }
    }
    let key = primary_key(ks, &written.table)?;
    let input = input(
        &written,
        &key,
        from,
        u.selection.as_ref(),
        &u.order_by,
        u.limit.as_ref(),
    );
    let sets: Vec<String> = u.assignments.iter().map(|a| a.to_string()).collect();
    let alias = match written.name == written.table {
        true => String::new(),
        false => format!(" AS {}", quote_ident(&written.name)),
    };
    Ok(Some(format!(
        "UPDATE {}{alias} SET {} WHERE ({}) IN ({input})",
        quote_ident(&written.table),
        sets.join(", "),
        columns(&key)
    )))
}

/// The written table: its name in the keyspace, and the name the
/// statement knows it by.
struct Written {
    table: String,
    name: String,
}

/// The FROM item named `target` (its alias or name), or the only one;
/// `None` also for a reference table (each shard's copy is written by the
/// shard's own rows, which this does not change).
fn find(ks: &Keyspace, from: &[ast::TableWithJoins], target: Option<&str>) -> Option<Written> {
    let items: Vec<Written> = from
        .iter()
        .flat_map(|twj| std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)))
        .filter_map(|f| match f {
            TableFactor::Table { name, alias, .. } => {
                let table = name.0.last()?.as_ident()?.value.clone();
                let shown = alias.as_ref().map_or(&table, |a| &a.name.value).clone();
                Some(Written { table, name: shown })
            }
            _ => None,
        })
        .collect();
    let found = match target {
        Some(t) => items.into_iter().find(|w| w.name == t),
        None if from.len() == 1 && from[0].joins.is_empty() => items.into_iter().next(),
        None => None,
    }?;
    let t = ks.vschema.tables.get(&found.table);
    (t.is_none_or(|t| t.kind != "reference")).then_some(found)
}

/// The table's primary key, as the schema tracker learned it.
fn primary_key(ks: &Keyspace, table: &str) -> Result<Vec<String>, PlanError> {
    let key = ks
        .learned
        .get(table)
        .map(|t| t.primary_key.clone())
        .unwrap_or_default();
    if key.is_empty() {
        return Err(unsupported(format!(
            "this UPDATE or DELETE finds its rows of table {table} first, by the table's primary key, \
             and schema tracking has learned none for it"
        )));
    }
    Ok(key)
}

/// The SELECT that finds the rows: the written table's key, over the
/// statement's FROM, WHERE, ORDER BY and LIMIT.
fn input(
    written: &Written,
    key: &[String],
    from: &[ast::TableWithJoins],
    selection: Option<&Expr>,
    order_by: &[ast::OrderByExpr],
    limit: Option<&Expr>,
) -> String {
    let keys: Vec<String> = key
        .iter()
        .map(|c| format!("{}.{}", quote_ident(&written.name), quote_ident(c)))
        .collect();
    let from: Vec<String> = from.iter().map(|f| f.to_string()).collect();
    let mut sql = format!("SELECT {} FROM {}", keys.join(", "), from.join(", "));
    if let Some(w) = selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    if !order_by.is_empty() {
        let keys: Vec<String> = order_by.iter().map(|k| k.to_string()).collect();
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    sql.push_str(" FOR UPDATE");
    sql
}

fn columns(key: &[String]) -> String {
    key.iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table other than `name` that `value` reads a column of, outside its
/// subqueries (an unqualified name may be anyone's).
fn reads_other(value: &Expr, name: &str) -> Option<String> {
    struct Other<'a> {
        name: &'a str,
        depth: usize,
        found: Option<String>,
    }
    impl Visitor for Other<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.depth > 0 {
                return ControlFlow::Continue(());
            }
            let found = match e {
                Expr::Identifier(i) if !i.value.starts_with('@') => i.value.clone(),
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let q = &parts[parts.len() - 2].value;
                    if q == self.name {
                        return ControlFlow::Continue(());
                    }
                    q.clone()
                }
                _ => return ControlFlow::Continue(()),
            };
            self.found = Some(found);
            ControlFlow::Break(())
        }
    }
    let mut v = Other {
        name,
        depth: 0,
        found: None,
    };
    let _ = value.visit(&mut v);
    v.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyspace() -> Keyspace {
        let vschema = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"a": {"column_vindexes": [{"column": "id", "name": "hash"}]},
                       "b": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#;
        let key = |k: &[&str]| crate::topo::schema::TableSchema {
            columns: Vec::new(),
            primary_key: k.iter().map(|c| c.to_string()).collect(),
        };
        let learned = [
            ("a".to_string(), key(&["id"])),
            ("b".to_string(), key(&["id", "n"])),
        ];
        let s = crate::topo::Snapshot::sharded_for_tests(vschema, learned.into());
        s.keyspaces["ks"].clone()
    }

    fn run(sql: &str) -> Result<Option<String>, String> {
        let stmt = super::super::sharded::parse(sql).unwrap();
        rewrite(&stmt, &keyspace()).map_err(|e| e.to_string())
    }

    #[test]
    fn writes_find_their_rows_by_primary_key_first() {
        assert_eq!(
            run("delete x from a x join b on b.n = x.k where b.m = 1").unwrap().unwrap(),
            "DELETE FROM `a` WHERE (`id`) IN (SELECT `x`.`id` FROM a x JOIN b ON b.n = x.k WHERE b.m = 1 FOR UPDATE)"
        );
        assert_eq!(
            run("delete from b where k > 3 order by k limit 2").unwrap().unwrap(),
            "DELETE FROM `b` WHERE (`id`, `n`) IN (SELECT `b`.`id`, `b`.`n` FROM b WHERE k > 3 ORDER BY k LIMIT 2 FOR UPDATE)"
        );
        assert_eq!(
            run("update a x join b on b.n = x.k set x.v = x.v + 1 where b.m = 1").unwrap().unwrap(),
            "UPDATE `a` AS `x` SET x.v = x.v + 1 WHERE (`id`) IN (SELECT `x`.`id` FROM a x JOIN b ON b.n = x.k WHERE b.m = 1 FOR UPDATE)"
        );
        assert_eq!(
            run("update a set v = 1 where k = 2 limit 3").unwrap().unwrap(),
            "UPDATE `a` SET v = 1 WHERE (`id`) IN (SELECT `a`.`id` FROM a WHERE k = 2 LIMIT 3 FOR UPDATE)"
        );
    }

    #[test]
    fn what_cannot_be_written_this_way_is_refused() {
        for (sql, why) in [
            (
                "delete a, b from a join b on a.k = b.n",
                "more than one table",
            ),
            ("update a join b on a.k = b.n set v = 1", "qualified"),
            (
                "update a join b on a.k = b.n set a.v = b.w",
                "read from 'b'",
            ),
            (
                "update a join b on a.k = b.n set a.v = 1, b.w = 2",
                "more than one table",
            ),
            // A table the tracker has not learned has no key to name rows by.
            ("delete from zz limit 1", "primary key"),
        ] {
            let err = run(sql).unwrap_err();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }
}
