//! Unqualified column names given their table, for statements the gate
//! splits by table: a join across routes, and a subquery run apart from
//! the statement it is in. The planner must know whose each column is; a
//! client writes `select name, qty from dt join jl on k = qty`, or
//! `... where exists (select 1 from jl where qty = k)`, and leaves that to
//! the server. Here each such name is qualified from what the gate knows
//! of the tables' columns: the VSchema's declared and vindex columns, and
//! every column the schema tracker learned from the tablets (a tracked
//! table's list is complete).
//!
//! As vtgate's binder decides: the one table known to have the column
//! takes it; with none known, the one table whose list may be incomplete
//! does; two tables known to have it is MariaDB's 1052 (ambiguous), and
//! no table at all, every list complete, its 1054 (unknown column). A
//! name the gate cannot place is left as written, and the join planner
//! refuses it. ORDER BY and HAVING name the select list's aliases first,
//! GROUP BY a table's column first, as MySQL resolves them. In a subquery
//! a name is its own tables' unless they are all known not to have it;
//! then it is the statement's.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, GroupByExpr, Ident, OrderByKind, SelectItem, SetExpr, TableFactor, VisitMut,
    VisitorMut,
};

use super::PlanError;
use crate::topo::{Keyspace, Snapshot};

/// A table of the FROM clause as names resolve against it.
struct Known {
    /// The name the statement knows it by (its alias, else its name).
    name: Ident,
    /// Its columns the gate knows of, lower case.
    columns: Vec<String>,
    /// Whether those are all its columns.
    complete: bool,
}

/// Where an unqualified name resolves.
enum Owner {
    /// The one table known to have it.
    Certain(usize),
    /// No table known to have it, and one whose columns are not all known.
    Only(usize),
    /// Several tables known to have it.
    Ambiguous,
    /// No table has it.
    Unknown,
    /// Several tables may have it.
    Undecided,
}

/// `q` with every unqualified column name of its top-level SELECT that
/// can be placed qualified by its table, or `None` when nothing changes
/// (no such name, or a FROM clause this does not follow). A name no table
/// may have, or two have, is the client's error, as MariaDB reports it.
pub(super) fn qualify(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<Option<ast::Query>, PlanError> {
    Ok(rewrite(q, ks, snap)?.map(|(q, _)| q))
}

/// [`qualify`], when it places a name in a subquery (one that then reads
/// the statement's tables): `None` when no subquery changes, so that a
/// statement that runs whole keeps its text.
pub(super) fn qualify_subqueries(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<Option<ast::Query>, PlanError> {
    Ok(rewrite(q, ks, snap)?.and_then(|(q, inner)| inner.then_some(q)))
}

/// [`qualify_subqueries`] for an UPDATE or DELETE: the names its
/// subqueries leave to the server (`delete from xa where k < (select
/// max(k) from xb where qty = g)`, `g` being xa's) placed, so that the
/// planner sees the subquery read the written rows (it ran it first, on
/// its own, and a tablet knew no `g`: 1054). Read as the SELECT of the
/// write's values over its tables and condition. None when no subquery's
/// name changes, or for a write this does not follow (USING, no WHERE).
pub(super) fn qualify_write(
    stmt: &ast::Statement,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<Option<ast::Statement>, PlanError> {
    let (from, values, selection): (String, Vec<&Expr>, _) = match stmt {
        ast::Statement::Delete(d) if d.using.is_none() => {
            let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) =
                &d.from;
            (join_list(from), Vec::new(), d.selection.as_ref())
        }
        ast::Statement::Update(u) if u.from.is_none() => (
            u.table.to_string(),
            u.assignments.iter().map(|a| &a.value).collect(),
            u.selection.as_ref(),
        ),
        _ => return Ok(None),
    };
    let Some(selection) = selection else {
        return Ok(None);
    };
    let items: Vec<String> = values.iter().map(|e| e.to_string()).collect();
    let items = if items.is_empty() {
        "1".to_string()
    } else {
        items.join(", ")
    };
    let read = format!("SELECT {items} FROM {from} WHERE {selection}");
    let Ok(ast::Statement::Query(q)) = super::sharded::parse(&read) else {
        return Ok(None);
    };
    let Some(placed) = qualify_subqueries(&q, ks, snap)? else {
        return Ok(None);
    };
    let SetExpr::Select(s) = *placed.body else {
        return Ok(None);
    };
    let mut out = stmt.clone();
    match &mut out {
        ast::Statement::Delete(d) => d.selection = s.selection,
        ast::Statement::Update(u) => {
            for (a, item) in u.assignments.iter_mut().zip(s.projection) {
                a.value = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => return Ok(None),
                };
            }
            u.selection = s.selection;
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}

/// A FROM clause's tables as written, comma-separated.
fn join_list(from: &[ast::TableWithJoins]) -> String {
    from.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`qualify`]'s work, and whether a subquery's name was placed.
fn rewrite(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<Option<(ast::Query, bool)>, PlanError> {
    let top = scope(q, ks, snap);
    if top.open {
        return Ok(None);
    }
    let mut out = q.clone();
    let SetExpr::Select(s) = out.body.as_mut() else {
        return Ok(None);
    };
    let mut v = Qualify {
        tables: &top.tables,
        aliases: &top.aliases,
        named: Vec::new(),
        clause: Clause::Fields,
        inner: Vec::new(),
        ks,
        snap,
        changed: false,
        changed_inner: false,
        bad: None,
    };
    for item in &mut s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let written = e.clone();
                let before = v.changed;
                v.changed = false;
                v.walk(e)?;
                // A computed column is named as the client wrote it.
                if v.changed && !matches!(written, Expr::Identifier(_)) {
                    let alias = Ident::with_quote(
                        '`',
                        crate::sql::normalize::template_name(&written.to_string()),
                    );
                    let expr = std::mem::replace(e, Expr::Value(ast::Value::Null.into()));
                    *item = SelectItem::ExprWithAlias { expr, alias };
                }
                v.changed |= before;
            }
            SelectItem::ExprWithAlias { expr, .. } => v.walk(expr)?,
            _ => {}
        }
    }
    // ORDER BY may name a selected column by its name alone.
    v.named = s
        .projection
        .iter()
        .filter_map(|p| match p {
            SelectItem::UnnamedExpr(e @ Expr::CompoundIdentifier(parts)) => {
                Some((parts.last()?.value.to_lowercase(), e.clone()))
            }
            _ => None,
        })
        .collect();
    // The FROM clause's join conditions (a derived table's query is a
    // scope of its own, as a subquery's).
    v.clause = Clause::On;
    let _ = s.from.visit(&mut v);
    if let Some(e) = v.bad.take() {
        return Err(e);
    }
    v.clause = Clause::Where;
    if let Some(e) = &mut s.selection {
        v.walk(e)?;
    }
    v.clause = Clause::Group;
    if let GroupByExpr::Expressions(exprs, _) = &mut s.group_by {
        for e in exprs {
            v.walk(e)?;
        }
    }
    v.clause = Clause::Having;
    if let Some(e) = &mut s.having {
        v.walk(e)?;
    }
    v.clause = Clause::Order;
    if let Some(ob) = &mut out.order_by {
        if let OrderByKind::Expressions(items) = &mut ob.kind {
            for o in items {
                v.walk(&mut o.expr)?;
            }
        }
    }
    let inner = v.changed_inner;
    Ok(v.changed.then_some((out, inner)))
}

/// The names a query's SELECT gives: its FROM clause's tables, and its
/// select list's aliases.
struct Scope {
    tables: Vec<Known>,
    aliases: Vec<String>,
    /// Some name may be its own without the gate knowing (a FROM item
    /// this does not follow, a UNION).
    open: bool,
}

/// [`Scope`] of query `q`.
fn scope(q: &ast::Query, ks: &Keyspace, snap: &Snapshot) -> Scope {
    let mut out = Scope {
        tables: Vec::new(),
        aliases: Vec::new(),
        open: false,
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        out.open = true;
        return out;
    };
    for f in super::join::factors(&sel.from) {
        match known(f, ks, snap) {
            Some(k) => out.tables.push(k),
            None => out.open = true,
        }
    }
    out.aliases = sel
        .projection
        .iter()
        .filter_map(|p| match p {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            _ => None,
        })
        .collect();
    out
}

impl Scope {
    /// Whether a name used in this scope may be its own.
    fn may_have(&self, lower: &str) -> bool {
        self.open
            || self.aliases.iter().any(|a| a == lower)
            || self
                .tables
                .iter()
                .any(|k| !k.complete || k.columns.iter().any(|c| c == lower))
    }
}

/// What the gate knows of a FROM item's columns; `None` for an item this
/// does not follow (a nested join, a table function).
fn known(f: &TableFactor, ks: &Keyspace, snap: &Snapshot) -> Option<Known> {
    match f {
        TableFactor::Table { name, alias, .. } => {
            let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
            let (keyspace, table) = match parts.as_slice() {
                [t] => (ks, *t),
                [q, t] if q.value == ks.name => (ks, *t),
                [q, t] => (snap.keyspaces.get(&q.value)?, *t),
                _ => return None,
            };
            let mut columns = Vec::new();
            let mut complete = false;
            if let Some(t) = keyspace.vschema.tables.get(&table.value) {
                let declared = t.columns.iter().filter_map(|c| c.get("name")?.as_str());
                let vindexed = t
                    .column_vindexes
                    .iter()
                    .flat_map(|cv| cv.cols().iter().map(String::as_str));
                let sequenced = t.auto_increment.iter().map(|a| a.column.as_str());
                columns.extend(
                    declared
                        .chain(vindexed)
                        .chain(sequenced)
                        .map(str::to_lowercase),
                );
                complete = t.column_list_authoritative;
            }
            if let Some(learned) = keyspace.learned.get(&table.value) {
                columns.extend(learned.columns.iter().map(|(c, _)| c.to_lowercase()));
                complete = true;
            }
            Some(Known {
                name: alias.as_ref().map_or(table, |a| &a.name).clone(),
                columns,
                complete,
            })
        }
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } => {
            let mut columns: Vec<String> = alias
                .columns
                .iter()
                .map(|c| c.name.value.to_lowercase())
                .collect();
            let mut complete = true;
            if columns.is_empty() {
                let SetExpr::Select(s) = first_select(subquery) else {
                    return None;
                };
                for p in &s.projection {
                    match p {
                        SelectItem::ExprWithAlias { alias, .. } => {
                            columns.push(alias.value.to_lowercase())
                        }
                        SelectItem::UnnamedExpr(Expr::Identifier(i)) => {
                            columns.push(i.value.to_lowercase())
                        }
                        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                            columns.extend(parts.last().map(|i| i.value.to_lowercase()))
                        }
                        SelectItem::UnnamedExpr(e) => columns.push(e.to_string().to_lowercase()),
                        _ => complete = false,
                    }
                }
            }
            Some(Known {
                name: alias.name.clone(),
                columns,
                complete,
            })
        }
        _ => None,
    }
}

/// The SELECT that names a query's columns (a UNION's first part).
pub(super) fn first_select(q: &ast::Query) -> &SetExpr {
    let mut body = q.body.as_ref();
    loop {
        match body {
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            other => return other,
        }
    }
}

/// The clause a name is in: how MySQL looks it up and names it in errors.
#[derive(Clone, Copy)]
enum Clause {
    Fields,
    On,
    Where,
    Group,
    Having,
    Order,
}

impl Clause {
    /// The clause's name in MariaDB's error messages (10.11; MySQL
    /// says `field list`, `where clause`, ...).
    fn text(self) -> &'static str {
        match self {
            Clause::Fields => "SELECT",
            Clause::On => "ON",
            Clause::Where => "WHERE",
            Clause::Group => "GROUP BY",
            Clause::Having => "HAVING",
            Clause::Order => "ORDER BY",
        }
    }
}

/// The walk that qualifies names outside subqueries.
struct Qualify<'a> {
    tables: &'a [Known],
    aliases: &'a [String],
    /// The select list's columns named by their column name: what an
    /// ORDER BY name refers to before the tables' columns.
    named: Vec<(String, Expr)>,
    clause: Clause,
    /// The subqueries the walk is in, innermost last.
    inner: Vec<Scope>,
    ks: &'a Keyspace,
    snap: &'a Snapshot,
    changed: bool,
    /// A subquery's name was placed.
    changed_inner: bool,
    bad: Option<PlanError>,
}

impl Qualify<'_> {
    /// Names identifier `e` as table `table`'s column.
    fn qualify(&mut self, e: &mut Expr, table: usize) {
        if let Expr::Identifier(i) = e {
            let mut name = self.tables[table].name.clone();
            name.quote_style = Some('`');
            *e = Expr::CompoundIdentifier(vec![name, i.clone()]);
            self.changed = true;
        }
    }

    fn walk(&mut self, e: &mut Expr) -> Result<(), PlanError> {
        let _ = e.visit(self);
        self.bad.take().map_or(Ok(()), Err)
    }

    fn owner(&self, column: &str) -> Owner {
        let lower = column.to_lowercase();
        let certain: Vec<usize> = (0..self.tables.len())
            .filter(|&i| self.tables[i].columns.contains(&lower))
            .collect();
        match certain.as_slice() {
            [i] => return Owner::Certain(*i),
            [] => {}
            _ => return Owner::Ambiguous,
        }
        let open: Vec<usize> = (0..self.tables.len())
            .filter(|&i| !self.tables[i].complete)
            .collect();
        match open.as_slice() {
            [i] => Owner::Only(*i),
            [] => Owner::Unknown,
            _ => Owner::Undecided,
        }
    }
}

impl VisitorMut for Qualify<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
        self.inner.push(scope(q, self.ks, self.snap));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
        self.inner.pop();
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let Expr::Identifier(i) = e else {
            return ControlFlow::Continue(());
        };
        // Variables are not columns.
        if i.value.starts_with('@') {
            return ControlFlow::Continue(());
        }
        // In a subquery, a name its own tables may have is theirs; one
        // they are known not to have is the statement's, if one of its
        // tables has it (else the server says what is wrong).
        if !self.inner.is_empty() {
            let lower = i.value.to_lowercase();
            if self.inner.iter().any(|s| s.may_have(&lower)) {
                return ControlFlow::Continue(());
            }
            if let Owner::Certain(t) | Owner::Only(t) = self.owner(&i.value) {
                self.qualify(e, t);
                self.changed_inner = true;
            }
            return ControlFlow::Continue(());
        }
        let alias = self.aliases.contains(&i.value.to_lowercase());
        let owner = self.owner(&i.value);
        let leave = match self.clause {
            Clause::Order | Clause::Having => alias,
            Clause::Group => alias && !matches!(owner, Owner::Certain(_)),
            _ => false,
        };
        if leave {
            return ControlFlow::Continue(());
        }
        if let Clause::Order = self.clause {
            let lower = i.value.to_lowercase();
            let mut same = self.named.iter().filter(|(n, _)| *n == lower);
            let first = same.next();
            // The same column selected twice is still one column.
            let other = same.find(|(_, x)| first.is_some_and(|(_, f)| f != x));
            match (first, other) {
                (Some((_, selected)), None) => {
                    *e = selected.clone();
                    self.changed = true;
                    return ControlFlow::Continue(());
                }
                (Some(_), Some(_)) => {
                    self.bad = Some(PlanError::AmbiguousColumn {
                        column: i.value.clone(),
                        clause: self.clause.text(),
                    });
                    return ControlFlow::Break(());
                }
                _ => {}
            }
        }
        let table = match owner {
            Owner::Certain(t) | Owner::Only(t) => t,
            Owner::Undecided => return ControlFlow::Continue(()),
            Owner::Ambiguous => {
                self.bad = Some(PlanError::AmbiguousColumn {
                    column: i.value.clone(),
                    clause: self.clause.text(),
                });
                return ControlFlow::Break(());
            }
            Owner::Unknown => {
                self.bad = Some(PlanError::UnknownColumn {
                    column: i.value.clone(),
                    clause: self.clause.text(),
                });
                return ControlFlow::Break(());
            }
        };
        self.qualify(e, table);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keyspace `ks`: `a` and `b` hashed on `id`, `c` with a declared
    /// column only; `a` and `b` tracked.
    fn snap() -> Snapshot {
        let vschema = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"a": {"column_vindexes": [{"column": "id", "name": "hash"}]},
                       "b": {"column_vindexes": [{"column": "id", "name": "hash"}]},
                       "c": {"column_vindexes": [{"column": "cid", "name": "hash"}],
                             "columns": [{"name": "z", "type": "INT64"}]}}}"#;
        let cols = |names: &[&str]| crate::topo::schema::TableSchema {
            columns: names.iter().map(|n| (n.to_string(), None)).collect(),
            primary_key: vec!["id".to_string()],
        };
        let learned = [
            ("a".to_string(), cols(&["id", "x", "Name"])),
            ("b".to_string(), cols(&["id", "y", "name"])),
        ];
        Snapshot::sharded_for_tests(vschema, learned.into())
    }

    fn run(sql: &str) -> Result<String, String> {
        let s = snap();
        let ast::Statement::Query(q) = super::super::sharded::parse(sql).unwrap() else {
            panic!("{sql}")
        };
        match qualify(&q, &s.keyspaces["ks"], &s) {
            Ok(Some(q)) => Ok(q.to_string()),
            Ok(None) => Ok(sql.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn names_go_to_the_table_that_has_them() {
        assert_eq!(
            run("select x, y + 1 from a join b on x = y where y > 2 order by x").unwrap(),
            "SELECT `a`.x, `b`.y + 1 AS `y + 1` FROM a JOIN b ON `a`.x = `b`.y WHERE `b`.y > 2 ORDER BY `a`.x"
        );
        // Aliases name tables; subqueries keep their own names.
        assert_eq!(
            run("select x from a t join b u on t.id = u.id where exists (select 1 from c where z = y)").unwrap(),
            "SELECT `t`.x FROM a t JOIN b u ON t.id = u.id WHERE EXISTS (SELECT 1 FROM c WHERE z = y)"
        );
        // A table with a declared column takes it; `c`'s other columns
        // are unknown, so a name no tracked table has is `c`'s.
        assert_eq!(
            run("select z, w, x from a join c on cid = x").unwrap(),
            "SELECT `c`.z, `c`.w, `a`.x FROM a JOIN c ON `c`.cid = `a`.x"
        );
    }

    /// A subquery's name its own tables are known not to have is the
    /// statement's; one they may have is left to the server.
    #[test]
    fn subqueries_name_the_statement_s_columns_past_their_own() {
        assert_eq!(
            run("select x from a where exists (select 1 from b where y = x and id = 3)").unwrap(),
            "SELECT `a`.x FROM a WHERE EXISTS (SELECT 1 FROM b WHERE y = `a`.x AND id = 3)"
        );
        assert_eq!(
            run("select a.x from a where exists (select 1 from c where z = x)").unwrap(),
            "select a.x from a where exists (select 1 from c where z = x)"
        );
        assert_eq!(
            run("select a.x from a where a.id in (select y n from b where nosuch = 1 order by n)")
                .unwrap(),
            "select a.x from a where a.id in (select y n from b where nosuch = 1 order by n)"
        );
    }

    #[test]
    fn order_by_and_having_name_the_select_list_first() {
        assert_eq!(
            run("select x as k, b.y from a join b order by k, y").unwrap(),
            "SELECT `a`.x AS k, b.y FROM a JOIN b ORDER BY k, b.y"
        );
        assert_eq!(
            run("select count(*) as n from a join b group by x having n > 1").unwrap(),
            "SELECT count(*) AS n FROM a JOIN b GROUP BY `a`.x HAVING n > 1"
        );
        // Variables are not columns.
        assert_eq!(
            run("select x from a join b where y = @v").unwrap(),
            "SELECT `a`.x FROM a JOIN b WHERE `b`.y = @v"
        );
    }

    #[test]
    fn names_two_tables_have_or_none_has_are_errors() {
        assert_eq!(
            run("select id from a join b on x = y").unwrap_err(),
            "Column 'id' in SELECT is ambiguous"
        );
        assert_eq!(
            run("select a.x from a join b where name = 'n'").unwrap_err(),
            "Column 'name' in WHERE is ambiguous"
        );
        assert_eq!(
            run("select nope from a join b").unwrap_err(),
            "Unknown column 'nope' in 'SELECT'"
        );
        assert_eq!(
            run("select a.x, b.x from a join b order by x").unwrap_err(),
            "Column 'x' in ORDER BY is ambiguous"
        );
        // Two tables whose columns are not all known: left as written.
        assert_eq!(
            run("select q from c join c as d").unwrap(),
            "select q from c join c as d"
        );
    }
}
