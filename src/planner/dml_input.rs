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
//! table it has not learned is refused. A statement writing several
//! tables becomes one write per table, every table's rows found before
//! the first is written, all in one transaction; an UPDATE's values that
//! read the join's other tables are read with the keys (one table
//! written), or refused (several).

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, FromTable, Statement, TableFactor, Visit, Visitor};

use super::sharded::unsupported;
use super::PlanError;
use crate::sql::quote_ident;
use crate::topo::Keyspace;

/// A write that finds its rows first.
pub(super) enum Rewritten {
    /// The write naming its rows by a subquery of their keys, to plan as
    /// any statement.
    Sql(String),
    /// A multi-table UPDATE whose values read another table: the values
    /// are read with the keys, and the write sets each row's own.
    Assign(Assign),
    /// A multi-table write of several tables: one write per table, each
    /// naming its rows by a subquery of their keys; every subquery runs
    /// before the first write (a DELETE's join would not find the rows
    /// of a table already written).
    Each(Vec<String>),
}

/// A multi-table UPDATE whose values read other tables than the one it
/// writes: `input` reads each row's key and its new values (as the join
/// computes them), then `outer` (`UPDATE t SET` and the pullout marker)
/// sets `targets` to them, row by row (`CASE WHEN key = ... THEN ...`),
/// where `key` is among the keys read.
pub(super) struct Assign {
    pub input: String,
    pub outer: String,
    /// `outer` with constants, for planning it.
    pub probe: String,
    /// The key's columns as a row, qualified by the written table's name.
    pub key: String,
    /// How many columns the key has (the input's first).
    pub key_width: usize,
    /// The columns set, as written, in the input's order after the key.
    pub targets: Vec<String>,
}

/// The statement rewritten to find its rows first, or `None` for one this
/// does not rewrite (the caller keeps its refusal).
pub(super) fn rewrite(stmt: &Statement, ks: &Keyspace) -> Result<Option<Rewritten>, PlanError> {
    match stmt {
        Statement::Delete(d) => delete(d, ks),
        Statement::Update(u) => update(u, ks),
        _ => Ok(None),
    }
}

fn delete(d: &ast::Delete, ks: &Keyspace) -> Result<Option<Rewritten>, PlanError> {
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
    if d.using.is_some() || d.returning.is_some() || from.is_empty() {
        return Ok(None);
    }
    // The tables written: those named before FROM, else the only one.
    let targets: Vec<Option<String>> = match d.tables.as_slice() {
        [] => vec![None],
        named => named
            .iter()
            .map(|n| {
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.clone())
            })
            .collect(),
    };
    let mut writes = Vec::new();
    for target in targets {
        let Some(written) = find(ks, from, target.as_deref()) else {
            return Ok(None);
        };
        let key = primary_key(ks, &written.table)?;
        let input = input(
            &written,
            &key,
            &[],
            from,
            d.selection.as_ref(),
            &d.order_by,
            d.limit.as_ref(),
        );
        writes.push(format!(
            "DELETE FROM {} WHERE ({}) IN ({input})",
            quote_ident(&written.table),
            columns(&key)
        ));
    }
    Ok(Some(match writes.len() {
        1 => Rewritten::Sql(writes.remove(0)),
        _ => Rewritten::Each(writes),
    }))
}

fn update(u: &ast::Update, ks: &Keyspace) -> Result<Option<Rewritten>, PlanError> {
    if u.from.is_some() || u.returning.is_some() {
        return Ok(None);
    }
    let multi = !u.table.joins.is_empty();
    // The tables written: the ones the SET columns name, in order.
    let mut targets: Vec<(Option<String>, Vec<&ast::Assignment>)> = Vec::new();
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
        match targets.iter_mut().find(|(t, _)| *t == qual) {
            Some((_, sets)) => sets.push(a),
            None => targets.push((qual, vec![a])),
        }
    }
    if let [(target, sets)] = targets.as_slice() {
        return update_one(u, ks, target.as_deref(), sets);
    }
    // Several tables: each written by its own UPDATE, whose values may
    // read only its own row.
    let mut writes = Vec::new();
    for (target, sets) in &targets {
        let name = target.as_deref().unwrap_or_default();
        if sets.iter().any(|a| reads_other(&a.value, name)) {
            return Err(unsupported(
                "multi-table UPDATE of more than one table across shards with values read from another table",
            ));
        }
        match update_one(u, ks, target.as_deref(), sets)? {
            Some(Rewritten::Sql(sql)) => writes.push(sql),
            _ => return Ok(None),
        }
    }
    Ok(Some(Rewritten::Each(writes)))
}

/// An UPDATE of the table `target` names (else the only one) by `sets`.
fn update_one(
    u: &ast::Update,
    ks: &Keyspace,
    target: Option<&str>,
    sets: &[&ast::Assignment],
) -> Result<Option<Rewritten>, PlanError> {
    let from = std::slice::from_ref(&u.table);
    let multi = !u.table.joins.is_empty();
    let Some(written) = find(ks, from, target) else {
        return Ok(None);
    };
    let key = primary_key(ks, &written.table)?;
    let alias = match written.name == written.table {
        true => String::new(),
        false => format!(" AS {}", quote_ident(&written.name)),
    };
    let table = quote_ident(&written.table);
    // Values that read another table of the join, or hold a subquery
    // (which may read other shards' rows), are read with the keys, as the
    // statement's own join computes them; the write then sets each row's
    // own.
    if sets.iter().any(|a| {
        (multi && reads_other(&a.value, &written.name)) || super::join::has_subquery(&a.value)
    }) {
        let values: Vec<String> = sets.iter().map(|a| a.value.to_string()).collect();
        let targets: Vec<String> = sets.iter().map(|a| a.target.to_string()).collect();
        let input = input(
            &written,
            &key,
            &values,
            from,
            u.selection.as_ref(),
            &u.order_by,
            u.limit.as_ref(),
        );
        let qualified = written.columns(&key);
        return Ok(Some(Rewritten::Assign(Assign {
            input,
            outer: format!("UPDATE {table}{alias} SET {}", super::pullout::marker(0)),
            probe: format!("UPDATE {table}{alias} SET {0} = {0} WHERE 0", targets[0]),
            key: format!("({})", qualified.join(", ")),
            key_width: key.len(),
            targets,
        })));
    }
    let input = input(
        &written,
        &key,
        &[],
        from,
        u.selection.as_ref(),
        &u.order_by,
        u.limit.as_ref(),
    );
    let sets: Vec<String> = sets.iter().map(|a| a.to_string()).collect();
    Ok(Some(Rewritten::Sql(format!(
        "UPDATE {table}{alias} SET {} WHERE ({}) IN ({input})",
        sets.join(", "),
        columns(&key)
    ))))
}

/// The written table: its name in the keyspace, and the name the
/// statement knows it by.
struct Written {
    table: String,
    name: String,
}

impl Written {
    /// Columns `cols` of the written table, qualified by its name.
    fn columns(&self, cols: &[String]) -> Vec<String> {
        let name = quote_ident(&self.name);
        cols.iter()
            .map(|c| format!("{name}.{}", quote_ident(c)))
            .collect()
    }
}

/// The FROM item named `target` (its alias or name), or the only one;
/// `None` also for a reference table (each shard's copy is written by the
/// shard's own rows, which this does not change).
fn find(ks: &Keyspace, from: &[ast::TableWithJoins], target: Option<&str>) -> Option<Written> {
    let items: Vec<Written> = super::join::factors(from)
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

/// The SELECT that finds the rows: the written table's key (and `values`
/// after it), over the statement's FROM, WHERE, ORDER BY and LIMIT.
fn input(
    written: &Written,
    key: &[String],
    values: &[String],
    from: &[ast::TableWithJoins],
    selection: Option<&Expr>,
    order_by: &[ast::OrderByExpr],
    limit: Option<&Expr>,
) -> String {
    let mut keys = written.columns(key);
    keys.extend(values.iter().cloned());
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

/// Whether `value` may read another table than `name`: a column named
/// by another table (or unqualified: it may be anyone's), or a subquery
/// (which may read the join's other tables).
fn reads_other(value: &Expr, name: &str) -> bool {
    struct Other<'a> {
        name: &'a str,
        found: bool,
    }
    impl Visitor for Other<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.found = true;
            ControlFlow::Break(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            self.found = match e {
                Expr::Identifier(i) => !i.value.starts_with('@'),
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    parts[parts.len() - 2].value != self.name
                }
                _ => false,
            };
            match self.found {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        }
    }
    let mut v = Other { name, found: false };
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
        match rewrite(&stmt, &keyspace()).map_err(|e| e.to_string())? {
            Some(Rewritten::Sql(s)) => Ok(Some(s)),
            Some(Rewritten::Each(writes)) => Ok(Some(writes.join(" ; "))),
            Some(Rewritten::Assign(a)) => Ok(Some(format!(
                "{} | {} | {} | {} | {}",
                a.input,
                a.outer,
                a.key,
                a.key_width,
                a.targets.join(", ")
            ))),
            None => Ok(None),
        }
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
        // Values read from another table come with the keys.
        assert_eq!(
            run("update a x join b on b.n = x.k set x.v = b.w + x.v, x.u = 3 where b.m = 1")
                .unwrap()
                .unwrap(),
            "SELECT `x`.`id`, b.w + x.v, 3 FROM a x JOIN b ON b.n = x.k WHERE b.m = 1 FOR UPDATE \
             | UPDATE `a` AS `x` SET :vSQ1 | (`x`.`id`) | 1 | x.v, x.u"
        );
        assert_eq!(
            run("update a set v = 1 where k = 2 limit 3").unwrap().unwrap(),
            "UPDATE `a` SET v = 1 WHERE (`id`) IN (SELECT `a`.`id` FROM a WHERE k = 2 LIMIT 3 FOR UPDATE)"
        );
    }

    #[test]
    fn several_tables_are_written_one_after_another() {
        assert_eq!(
            run("delete x, b from a x join b on b.n = x.k where b.m = 1").unwrap().unwrap(),
            "DELETE FROM `a` WHERE (`id`) IN (SELECT `x`.`id` FROM a x JOIN b ON b.n = x.k WHERE b.m = 1 FOR UPDATE) ; \
             DELETE FROM `b` WHERE (`id`, `n`) IN (SELECT `b`.`id`, `b`.`n` FROM a x JOIN b ON b.n = x.k WHERE b.m = 1 FOR UPDATE)"
        );
        assert_eq!(
            run("update a join b on a.k = b.n set b.w = b.w + 1, a.v = 2, b.u = 3").unwrap().unwrap(),
            "UPDATE `b` SET b.w = b.w + 1, b.u = 3 WHERE (`id`, `n`) IN (SELECT `b`.`id`, `b`.`n` FROM a JOIN b ON a.k = b.n FOR UPDATE) ; \
             UPDATE `a` SET a.v = 2 WHERE (`id`) IN (SELECT `a`.`id` FROM a JOIN b ON a.k = b.n FOR UPDATE)"
        );
    }

    #[test]
    fn what_cannot_be_written_this_way_is_refused() {
        for (sql, why) in [
            ("update a join b on a.k = b.n set v = 1", "qualified"),
            (
                "update a join b on a.k = b.n set a.v = 1, b.w = a.v",
                "values read from another table",
            ),
            // A table the tracker has not learned has no key to name rows by.
            ("delete from zz limit 1", "primary key"),
        ] {
            let err = run(sql).unwrap_err();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }
}
