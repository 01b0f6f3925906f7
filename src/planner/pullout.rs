//! Subqueries that read no column of their statement's tables (vtgate's
//! UncorrelatedSubquery): one that cannot run inside its statement's
//! route runs first, on its own route, and its answer goes into the
//! statement as values. `x [NOT] IN (subquery)` becomes `x [NOT] IN (the
//! values)` (an empty answer: false, or true for NOT IN), `[NOT] EXISTS
//! (subquery)` true or false, and a scalar `(subquery)` compared with
//! something its one value (NULL when empty; more than one row is MySQL's
//! error 1242). The statement is then planned with those values, so an
//! `IN` on a vindex column reaches only the shards holding them.
//!
//! Conditions of the WHERE clause (under AND, OR and NOT) and scalar
//! subqueries of the select list are pulled out; what is left must plan
//! on its own.

use sqlparser::ast::{self, visit_expressions_mut, BinaryOperator, Expr, SetExpr, TableFactor};

use super::sharded::plan as plan_sharded;
use super::{Plan, PlanError};
use crate::topo::{Keyspace, Snapshot};

/// A statement whose uncorrelated subqueries run first.
#[derive(Debug, Clone, PartialEq)]
pub struct PulloutPlan {
    /// The keyspace the statement runs in.
    pub keyspace: String,
    /// The subqueries, in marker order.
    pub subqueries: Vec<Subquery>,
    /// The statement's template with `:vSQ<i>` (1-based) where subquery
    /// `i`'s condition or value goes; planned once those are known.
    pub outer: String,
    /// Statements run after `outer`, with the same answers (a
    /// multi-table DELETE's other tables, each found by its own
    /// subquery before any is written); their rows changed add up.
    pub then: Vec<String>,
    /// A write: the subqueries and the statements run in one
    /// transaction (one the session has, else one of their own), so that
    /// what was read stays as read until the write is done.
    pub atomic: bool,
}

/// One subquery pulled out of its statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Subquery {
    /// What its answer becomes.
    pub kind: PulloutKind,
    /// For `IN`: the expression tested, as SQL.
    pub tested: Option<String>,
    /// Its own plan.
    pub plan: Plan,
    /// Its text (for plans that run their statement as written).
    pub sql: String,
    /// A recursive WITH's step ([`PulloutKind::Recursive`]): its text,
    /// with the marker of the first subquery where the last round's rows
    /// go, planned at each round.
    pub step: Option<String>,
    /// The columns an [`PulloutKind::Assign`] sets, as written.
    pub targets: Vec<String>,
    /// A [`PulloutKind::Table`]'s string columns' collations, where the
    /// plan knows them: its table of constants names them.
    pub collations: Vec<Option<crate::collation::Collation>>,
}

/// What a pulled-out subquery's answer becomes in its statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PulloutKind {
    /// `tested IN (values)`, false when empty.
    In,
    /// `tested NOT IN (values)`, true when empty.
    NotIn,
    /// True when it returned a row.
    Exists,
    /// True when it returned none.
    NotExists,
    /// Its one value (NULL when empty).
    Value,
    /// A derived table: its rows, as a query of constants the statement
    /// reads in its place (`(SELECT 1 AS a UNION ALL VALUES (2), (3)) AS t`).
    Table,
    /// An INSERT's SELECT: its rows, this many columns wide, as the
    /// INSERT's VALUES.
    Rows(usize),
    /// A recursive WITH's seed: its rows, and the step's over each
    /// round's new rows until a round finds none, as a table of constants
    /// (`distinct`: a UNION, which keeps and feeds on only rows not found
    /// before).
    Recursive {
        /// UNION rather than UNION ALL.
        distinct: bool,
    },
    /// A multi-table UPDATE's rows: each row's key (this many columns,
    /// first; `tested` is the key as a row) and its new values, as the
    /// UPDATE's assignments (each target set, row by row, by a CASE on
    /// the key) and its WHERE (the keys read).
    Assign {
        /// The key's width.
        keys: usize,
    },
}

/// The marker of subquery `i` (0-based) in the outer template.
pub fn marker(i: usize) -> String {
    format!(":vSQ{}", i + 1)
}

/// `outer` with each marker replaced by its subquery's text, in one pass
/// (a value that reads like a marker stays as it is).
pub fn fill(outer: &str, texts: &[String]) -> String {
    let mut out = String::with_capacity(outer.len());
    let mut rest = outer;
    while let Some(at) = rest.find(":vSQ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| texts.get(n.checked_sub(1)?))
        {
            Some(t) => out.push_str(t),
            None => out.push_str(&rest[at..at + 4 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Plans `q`, whose subqueries did not all merge into its route, with its
/// uncorrelated ones pulled out. Fails (with `refused`) when none can be,
/// and with the outer statement's own refusal when what is left cannot
/// plan either.
pub fn plan(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(refused);
    };
    let names = table_names(&sel.from);
    let mut outer = q.clone();
    let mut pulled: Vec<(PulloutKind, Option<String>, ast::Query)> = Vec::new();
    if let SetExpr::Select(s) = outer.body.as_mut() {
        if let Some(w) = s.selection.as_mut() {
            pull(w, &names, &mut pulled);
        }
        if let Some(h) = s.having.as_mut() {
            pull(h, &names, &mut pulled);
        }
        // A scalar subquery in the select list is one value too; the
        // column keeps the name of what was written.
        for (item, written) in s.projection.iter_mut().zip(&sel.projection) {
            let before = pulled.len();
            pull_values(item, &names, &mut pulled);
            if let (ast::SelectItem::UnnamedExpr(e), true) = (&*item, pulled.len() > before) {
                *item = ast::SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: ast::Ident::with_quote(
                        '`',
                        crate::sql::normalize::template_name(&written.to_string()),
                    ),
                };
            }
        }
    }
    // So are ORDER BY's, each the same as a value (the statement sorts by
    // what it becomes).
    if let Some(ast::OrderBy {
        kind: ast::OrderByKind::Expressions(exprs),
        ..
    }) = outer.order_by.as_mut()
    {
        for o in exprs.iter_mut() {
            pull_values(&mut o.expr, &names, &mut pulled);
            // A key that is a marker alone is a number when it runs (a
            // number written here is a position, and stays one).
            if matches!(&o.expr, Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_))) {
                super::sharded::no_position(&mut o.expr);
            }
        }
    }
    if pulled.is_empty() {
        return Err(refused);
    }
    let outer = outer.to_string();
    let probe = probe(&outer, &pulled);
    finish(pulled, outer, &probe, ks, snap)
}

/// What is left of a statement (`outer`), which must plan, with any
/// values in place of the markers of what was `pulled` (a table's, one
/// row).
fn probe(outer: &str, pulled: &[(PulloutKind, Option<String>, ast::Query)]) -> String {
    let values: Vec<String> = pulled
        .iter()
        .map(|(kind, ..)| match kind {
            PulloutKind::Table => "(SELECT 1 AS sg_c)".to_string(),
            _ => "1".to_string(),
        })
        .collect();
    fill(outer, &values)
}

/// Plans what is left of the statement (`probe`, which must plan) and each
/// pulled-out query.
fn finish(
    pulled: Vec<(PulloutKind, Option<String>, ast::Query)>,
    outer: String,
    probe: &str,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<PulloutPlan, PlanError> {
    // What is left may read only another keyspace's tables (a derived
    // table of this keyspace's, run first, joined with them): it runs
    // there, the answers being the same anywhere.
    let (keyspace, outer) = match elsewhere(&outer, ks) {
        Some(other) => {
            super::join::plan_elsewhere(probe, other, snap)?;
            let stripped = crate::sql::keyspace_qualifier(&outer, |n| n == other)
                .map(|(_, s)| s)
                .unwrap_or_else(|| outer.clone());
            (other.to_string(), stripped)
        }
        None => {
            plan_sharded(probe, ks, snap)?;
            (ks.name.clone(), outer)
        }
    };
    let subqueries = pulled
        .into_iter()
        .map(|(kind, tested, sub)| {
            // One over another keyspace's tables runs there.
            let (plan, sql) = super::join::plan_there(sub.to_string(), ks, snap)?;
            let collations = match kind {
                PulloutKind::Table => super::derive::collations(ks, &sub),
                _ => Vec::new(),
            };
            Ok(Subquery {
                kind,
                tested,
                plan,
                sql,
                step: None,
                targets: Vec::new(),
                collations,
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    Ok(PulloutPlan {
        keyspace,
        subqueries,
        outer,
        then: Vec::new(),
        atomic: false,
    })
}

/// The keyspace other than `ks` that qualifies every table `sql` reads,
/// if one does.
pub(super) fn elsewhere<'a>(sql: &'a str, ks: &Keyspace) -> Option<&'a str> {
    let refs = crate::sql::table_refs(sql);
    let mut tables = refs.iter().filter(|r| !r.column);
    let other = tables.next()?.qualifier.filter(|q| *q != ks.name)?;
    tables.all(|r| r.qualifier == Some(other)).then_some(other)
}

/// Plans `q`, whose FROM clause holds derived tables that group, limit or
/// dedupe across shards, with those derived tables run first: each one's
/// answer comes back into the statement as a table of constants, which
/// every shard holds alike (a reference table), so the statement then
/// routes by its other tables. Fails with `refused` when there is none
/// such, and with the statement's own refusal when what is left cannot
/// plan either. Bounded by `--max_memory_rows` as the gate's other work.
pub fn plan_derived(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let mut outer = q.clone();
    let mut pulled: Vec<(PulloutKind, Option<String>, ast::Query)> = Vec::new();
    let mut probe = q.clone();
    if let (SetExpr::Select(s), SetExpr::Select(p)) = (outer.body.as_mut(), probe.body.as_mut()) {
        for (twj, pwj) in s.from.iter_mut().zip(p.from.iter_mut()) {
            let factors = std::iter::once(&mut twj.relation)
                .chain(twj.joins.iter_mut().map(|j| &mut j.relation));
            let probes = std::iter::once(&mut pwj.relation)
                .chain(pwj.joins.iter_mut().map(|j| &mut j.relation));
            for (f, pf) in factors.zip(probes) {
                let TableFactor::Derived {
                    lateral: false,
                    subquery,
                    alias: Some(alias),
                    ..
                } = f
                else {
                    continue;
                };
                // One that keeps its rows apart by shard joins as a table,
                // unless its own tables are on several routes.
                if super::colocate::keeps_rows_query(subquery) && !cross_shard(subquery, ks) {
                    continue;
                }
                let alias = alias.clone();
                pulled.push((PulloutKind::Table, None, (**subquery).clone()));
                // The marker stands where the table's query was; the
                // probe plans with one row of constants in its place.
                let Some(table) = table_named(&marker(pulled.len() - 1), &alias) else {
                    return Err(refused);
                };
                *f = table;
                let Some(one) = one_row(&alias) else {
                    return Err(refused);
                };
                *pf = one;
            }
        }
    }
    if pulled.is_empty() {
        return Err(refused);
    }
    finish(pulled, outer.to_string(), &probe.to_string(), ks, snap)
}

/// Plans a query over one sharded table (or derived table) whose
/// aggregates or window functions the gate cannot compute from the
/// shards' answers (STD, VARIANCE, GROUP_CONCAT with ORDER BY, WITH
/// ROLLUP, a window over rows of several shards): the rows its WHERE
/// keeps are gathered first (every column), as a table of constants under
/// the table's name (or alias), and the statement runs over them on one
/// tablet, with MariaDB's own functions.
/// Bounded by `--max_memory_rows`. Fails with `refused` for another shape
/// (joins, WITH, locks, INTO).
pub fn plan_gathered(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(refused);
    };
    if q.with.is_some() || !q.locks.is_empty() || sel.into.is_some() {
        return Err(refused);
    }
    let (shown, twj) = match sel.from.as_slice() {
        [twj] if twj.joins.is_empty() => match &twj.relation {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => (
                alias.clone().or_else(|| {
                    let last = name.0.last()?.as_ident()?.clone();
                    Some(ast::TableAlias {
                        explicit: true,
                        name: last,
                        columns: Vec::new(),
                        at: None,
                    })
                }),
                twj,
            ),
            // A derived table's rows, as its alias names them (a grouping
            // rewritten to run first, with a window over its groups).
            TableFactor::Derived {
                lateral: false,
                alias: Some(alias),
                ..
            } => (Some(alias.clone()), twj),
            _ => return Err(refused),
        },
        _ => return gathered_join(q, ks, snap, refused, false),
    };
    let Some(shown) = shown else {
        return Err(refused);
    };
    let filter = match &sel.selection {
        Some(w) => format!(" WHERE {w}"),
        None => String::new(),
    };
    let Ok(ast::Statement::Query(rows)) =
        super::sharded::parse(&format!("SELECT * FROM {}{filter}", twj.relation))
    else {
        return Err(refused);
    };
    let mut outer = q.clone();
    if let SetExpr::Select(s) = outer.body.as_mut() {
        s.selection = None;
    }
    over_gathered(outer, &shown, *rows, ks, snap, refused)
}

/// `outer` reading the rows of `rows`, gathered first, as the table
/// `shown` (its FROM clause replaced by them).
fn over_gathered(
    mut outer: ast::Query,
    shown: &ast::TableAlias,
    rows: ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let mut probe = outer.clone();
    for (query, factor) in [
        (&mut outer, table_named(&marker(0), shown)),
        (&mut probe, one_row(shown)),
    ] {
        let (SetExpr::Select(s), Some(relation)) = (query.body.as_mut(), factor) else {
            return Err(refused);
        };
        s.from = vec![ast::TableWithJoins {
            relation,
            joins: Vec::new(),
        }];
    }
    finish(
        vec![(PulloutKind::Table, None, rows)],
        outer.to_string(),
        &probe.to_string(),
        ks,
        snap,
    )
}

/// `(SELECT 1 AS c1) AS alias`: what a probe plans with in place of a
/// table of constants, run first.
fn one_row(alias: &ast::TableAlias) -> Option<TableFactor> {
    let Ok(ast::Statement::Query(one)) = super::sharded::parse("SELECT 1 AS c1") else {
        return None;
    };
    Some(TableFactor::Derived {
        lateral: false,
        subquery: one,
        alias: Some(alias.clone()),
        sample: None,
    })
}

/// [`plan_gathered`] over a join: the joined rows' columns the statement
/// names (each `t.c` as `sg_cN`) are gathered first, the join planned as
/// any (a nested loop, or whole where colocated), with the statement's
/// WHERE; the statement then runs over them on one tablet, each column
/// read as its `sg_t.sg_cN`, each select item keeping its name; each
/// outermost subquery is such a column too ([`subqueries_as_columns`]).
/// Refused with a `*`, or a name the statement's tables do not place.
/// With `after`, the WHERE's conditions on a LEFT JOIN's right table are
/// checked over the joined rows, on that tablet (a nested loop checks
/// only what no unmatched row passes).
pub(super) fn gathered_join(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
    after: bool,
) -> Result<PulloutPlan, PlanError> {
    // Every column named with its table first.
    let qualified = super::qualify::qualify(q, ks, snap)?;
    let q = qualified.as_ref().unwrap_or(q);
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(refused);
    };
    let mut outer = q.clone();
    let SetExpr::Select(out) = outer.body.as_mut() else {
        return Err(refused);
    };
    let aliases: Vec<String> = sel
        .projection
        .iter()
        .filter_map(|p| match p {
            ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            _ => None,
        })
        .collect();
    // Each item keeps the name its client gave or MySQL would give it.
    for item in &mut out.projection {
        let ast::SelectItem::UnnamedExpr(e) = item else {
            if matches!(item, ast::SelectItem::ExprWithAlias { .. }) {
                continue;
            }
            return Err(refused);
        };
        *item = ast::SelectItem::ExprWithAlias {
            alias: ast::Ident::with_quote('`', super::sharded::item_name(e)),
            expr: e.clone(),
        };
    }
    // The WHERE's conditions on a LEFT JOIN's right tables, with `after`.
    let right: Vec<String> = sel
        .from
        .iter()
        .flat_map(|twj| &twj.joins)
        .filter(|j| {
            matches!(
                j.join_operator,
                ast::JoinOperator::Left(_) | ast::JoinOperator::LeftOuter(_)
            )
        })
        .filter_map(|j| super::join::table_shown(&j.relation))
        .collect();
    let (mut inside, mut later) = (Vec::new(), Vec::new());
    for c in sel.selection.iter().flat_map(super::sharded::conjuncts) {
        let mut reads_right = false;
        let _ = ast::visit_expressions(c, |e| {
            if let Expr::CompoundIdentifier(parts) = e {
                reads_right |= parts.len() == 2 && right.contains(&parts[0].value);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        match after && reads_right {
            true => later.push(format!("({c})")),
            false => inside.push(format!("({c})")),
        }
    }
    out.selection = match later.is_empty() {
        true => None,
        false => match super::sharded::condition(&later.join(" AND ")) {
            Some(w) => Some(w),
            None => return Err(refused),
        },
    };
    out.from.clear();
    // The columns, each once, renamed; a subquery over the joined row
    // (`(select count(*) ... where b3.a_id = a.id)`, an `EXISTS` the WHERE
    // checks after the join) is one too, its value computed with the
    // joined rows, where the join's planner places it.
    let mut columns: Vec<String> = subqueries_as_columns(&mut outer);
    let mut bad = match outer.body.as_ref() {
        SetExpr::Select(s) => super::join::has_subquery(&**s),
        _ => true,
    } || super::join::has_subquery(&outer.order_by);
    let _ = ast::visit_expressions_mut(&mut outer, |e| {
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() == 2 && parts[0].value != "sg_t" => {
                let text = e.to_string();
                let n = match columns.iter().position(|c| *c == text) {
                    Some(n) => n,
                    None => {
                        columns.push(text);
                        columns.len() - 1
                    }
                };
                *e = Expr::CompoundIdentifier(vec![
                    ast::Ident::new("sg_t"),
                    ast::Ident::new(format!("sg_c{}", n + 1)),
                ]);
            }
            Expr::Identifier(i)
                if !i.value.starts_with('@') && !aliases.contains(&i.value.to_lowercase()) =>
            {
                bad = true
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if bad || columns.is_empty() {
        return Err(refused);
    }
    let from: Vec<String> = sel.from.iter().map(ToString::to_string).collect();
    let filter = match inside.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", inside.join(" AND ")),
    };
    let items: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} AS sg_c{}", i + 1))
        .collect();
    let Ok(ast::Statement::Query(rows)) = super::sharded::parse(&format!(
        "SELECT {} FROM {}{filter}",
        items.join(", "),
        from.join(", ")
    )) else {
        return Err(refused);
    };
    let shown = ast::TableAlias {
        explicit: true,
        name: ast::Ident::new("sg_t"),
        columns: Vec::new(),
        at: None,
    };
    over_gathered(outer, &shown, *rows, ks, snap, refused)
}

/// Replaces the outermost subqueries of `q`'s expressions (a scalar
/// subquery, `EXISTS`, `x IN (SELECT ...)`) by the gathered rows' columns
/// `sg_t.sg_cN`, N counting from 1, and gives their texts in order.
fn subqueries_as_columns(q: &mut ast::Query) -> Vec<String> {
    struct Outermost {
        depth: usize,
        texts: Vec<String>,
    }
    // `x op ANY (SELECT ...)` whole: its subquery is no value.
    fn is_subquery(e: &Expr) -> bool {
        match e {
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                matches!(right.as_ref(), Expr::Subquery(_))
            }
            _ => matches!(
                e,
                Expr::Subquery(_)
                    | Expr::Exists { .. }
                    | Expr::In {
                        target: ast::InTarget::Subquery(_),
                        ..
                    }
            ),
        }
    }
    impl ast::VisitorMut for Outermost {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            self.depth += usize::from(is_subquery(e));
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if is_subquery(e) {
                self.depth -= 1;
                if self.depth == 0 {
                    self.texts.push(e.to_string());
                    *e = Expr::CompoundIdentifier(vec![
                        ast::Ident::new("sg_t"),
                        ast::Ident::new(format!("sg_c{}", self.texts.len())),
                    ]);
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut o = Outermost {
        depth: 0,
        texts: Vec::new(),
    };
    let _ = ast::VisitMut::visit(q, &mut o);
    o.texts
}

/// Plans a recursive WITH (vtgate's RecurseCTE): its seed runs first, on
/// its own plan; then its step, over the rows the last round found as a
/// table of constants (under the WITH's name), planned anew each round,
/// until a round finds no new rows; then the statement reads all the rows
/// as a table of constants. Fails with `refused` for a WITH of another
/// shape (one query, `seed UNION [ALL] step`). The rows are bounded by
/// `--max_memory_rows`, and the rounds by MariaDB's
/// `max_recursive_iterations` default.
pub fn plan_recursive(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let marked = |alias: &ast::TableAlias| table_named(&marker(0), alias);
    let Some(r) = super::cte::recursion(q, &marked, &one_row) else {
        return Err(refused);
    };
    let kind = PulloutKind::Recursive {
        distinct: r.distinct,
    };
    let mut plan = finish(
        vec![(kind, None, r.seed)],
        r.outer.to_string(),
        &r.probe.to_string(),
        ks,
        snap,
    )?;
    plan.subqueries[0].step = Some(r.step.to_string());
    Ok(plan)
}

/// Plans a multi-table UPDATE whose values read other tables than the one
/// it writes (vtgate's DMLWithInput): the join runs first, reading each
/// written row's key and new values; then one UPDATE sets each row's own
/// values (see [`super::dml_input::Assign`]).
pub(super) fn plan_assign(
    a: super::dml_input::Assign,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<PulloutPlan, PlanError> {
    let ast::Statement::Query(input) = super::sharded::parse(&a.input)? else {
        return Err(PlanError::Syntax("the UPDATE's rows did not parse".into()));
    };
    let kind = PulloutKind::Assign { keys: a.key_width };
    let mut plan = finish(
        vec![(kind, Some(a.key), *input)],
        a.outer,
        &a.probe,
        ks,
        snap,
    )?;
    plan.subqueries[0].targets = a.targets;
    plan.atomic = true;
    Ok(plan)
}

/// Plans a UNION (or INTERSECT, EXCEPT) that no one route answers (its
/// parts on different shards with their own ORDER BY and LIMIT, or in
/// different keyspaces, or showing `*`) as vtgate's Concatenate: each part
/// runs first, on its own plan, and its answer becomes a table of
/// constants; the UNION of those (its DISTINCT, ORDER BY and LIMIT) then
/// runs on one tablet, which compares the values as MariaDB does. Fails
/// with `refused` when `q` is no set operation. Bounded by
/// `--max_memory_rows` as the gate's other work.
pub fn plan_union(
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    if !matches!(q.body.as_ref(), SetExpr::SetOperation { .. }) || q.with.is_some() {
        return Err(refused);
    }
    let mut outer = q.clone();
    let mut probe = q.clone();
    let mut pulled: Vec<(PulloutKind, Option<String>, ast::Query)> = Vec::new();
    if !mark_parts(&mut outer.body, &mut probe.body, &mut pulled) {
        return Err(refused);
    }
    finish(pulled, outer.to_string(), &probe.to_string(), ks, snap)
}

/// Replaces each part of a UNION with `SELECT * FROM <marker>` (in
/// `probe`, with a row of constants), collecting the parts. False when a
/// part is no query of its own (VALUES, TABLE).
fn mark_parts(
    body: &mut SetExpr,
    probe: &mut SetExpr,
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) -> bool {
    let part = match (&mut *body, &mut *probe) {
        (
            SetExpr::SetOperation { left, right, .. },
            SetExpr::SetOperation {
                left: pl,
                right: pr,
                ..
            },
        ) => return mark_parts(left, pl, pulled) && mark_parts(right, pr, pulled),
        (SetExpr::Query(q), _) => (**q).clone(),
        // Parts already run first (a plan of this plan's outer statement)
        // are not pulled again.
        (SetExpr::Select(s), _) if s.from.iter().any(|t| {
            matches!(&t.relation, TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. }
                if a.name.value.starts_with("dt_u"))
        }) => return false,
        (SetExpr::Select(_), _) => match super::sharded::parse(&body.to_string()) {
            Ok(ast::Statement::Query(q)) => *q,
            _ => return false,
        },
        _ => return false,
    };
    let alias = format!("dt_u{}", pulled.len());
    let (Ok(ast::Statement::Query(marked)), Ok(ast::Statement::Query(one))) = (
        super::sharded::parse(&format!("SELECT * FROM marker AS {alias}")),
        super::sharded::parse(&format!("SELECT * FROM (SELECT 1 AS c1) AS {alias}")),
    ) else {
        return false;
    };
    let (SetExpr::Select(mut marked), SetExpr::Select(one)) = (*marked.body, *one.body) else {
        return false;
    };
    // The marker (no name the parser takes) stands where the table is.
    let Some(TableFactor::Table { name, .. }) = marked.from.first_mut().map(|t| &mut t.relation)
    else {
        return false;
    };
    *name = ast::ObjectName::from(vec![ast::Ident::new(marker(pulled.len()))]);
    pulled.push((PulloutKind::Table, None, part));
    *body = SetExpr::Select(marked);
    *probe = SetExpr::Select(one);
    true
}

/// Whether a derived table in `q`'s FROM clause holds subqueries that no
/// one shard answers: such a table runs first as a whole
/// ([`plan_derived`]) where the statement's own subqueries are none of
/// that kind.
pub(super) fn derived_subqueries(q: &ast::Query, ks: &Keyspace) -> bool {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    super::join::factors(&s.from).any(|f| match f {
        TableFactor::Derived { subquery, .. } => matches!(
            super::sharded::plan_select(&subquery.to_string(), subquery, ks),
            Err(PlanError::Unsupported(m)) if m.contains("subqueries that do not go to one shard")
        ),
        _ => false,
    })
}

/// True when `q`'s own tables are on more than one route (a nested loop),
/// or a derived table of its own is (it runs first as a whole).
fn cross_shard(q: &ast::Query, ks: &Keyspace) -> bool {
    let text = q.to_string();
    matches!(
        super::sharded::plan_select(&text, q, ks),
        Err(PlanError::Unsupported(m))
            if m == "cross-shard joins"
                || m.contains("derived tables across shards")
                || m.contains("subqueries that do not go to one shard")
    )
}

/// Plans `INSERT INTO t (cols) SELECT ...` into a sharded table: the
/// SELECT runs first, on its own route, and its rows become the INSERT's
/// VALUES, each sent to the shard of its vindex value as any INSERT's
/// (sequences fill auto-increment columns as for VALUES). None when the
/// INSERT has no SELECT; the INSERT's own refusal when it would not plan
/// with VALUES either.
pub fn plan_insert_select(
    stmt: &ast::Statement,
    ins: &ast::Insert,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Option<Result<PulloutPlan, PlanError>> {
    let source = ins.source.as_deref()?;
    if matches!(source.body.as_ref(), SetExpr::Values(_)) {
        return None;
    }
    // Without a column list, every column the VSchema or the schema
    // tracker knows.
    let width = match ins.columns.len() {
        0 => {
            let ast::TableObject::TableName(name) = &ins.table else {
                return None;
            };
            let table = name.0.last()?.as_ident()?.value.as_str();
            super::sharded::all_columns(ks, table)?.len()
        }
        n => n,
    };
    let full = stmt.to_string();
    let select = source.to_string();
    if !full.contains(&select) {
        return None;
    }
    let outer = full.replacen(&select, &format!("VALUES {}", marker(0)), 1);
    let probe = fill(&outer, &[format!("({})", vec!["1"; width].join(", "))]);
    Some(
        finish(
            vec![(PulloutKind::Rows(width), None, source.clone())],
            outer,
            &probe,
            ks,
            snap,
        )
        .map(|p| PulloutPlan { atomic: true, ..p }),
    )
}

/// Plans an UPDATE or DELETE whose uncorrelated subqueries (in its
/// WHERE clause's top-level AND, or an UPDATE's SET values) read another
/// keyspace's tables, or read across shards: they run first, each where
/// its tables are, and the write runs where its table is with their
/// answers in (an `IN` on a vindex column then reaches only the shards
/// holding its values). A subquery may read the table written: its
/// answer is the table's before the write, as MariaDB answers it. Fails
/// with `refused` when nothing can be pulled out.
pub fn plan_write(
    stmt: &ast::Statement,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<PulloutPlan, PlanError> {
    let mut outer = stmt.clone();
    let mut pulled: Vec<(PulloutKind, Option<String>, ast::Query)> = Vec::new();
    match &mut outer {
        ast::Statement::Update(u) => {
            let names = table_names(std::slice::from_ref(&u.table));
            if let Some(w) = u.selection.as_mut() {
                pull(w, &names, &mut pulled);
            }
            for a in &mut u.assignments {
                pull_value(&mut a.value, &names, &mut pulled);
            }
        }
        ast::Statement::Delete(d) => {
            let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) =
                &d.from;
            let names = table_names(from);
            if let Some(w) = d.selection.as_mut() {
                pull(w, &names, &mut pulled);
            }
        }
        _ => return Err(refused),
    }
    if pulled.is_empty() {
        return Err(refused);
    }
    let outer = outer.to_string();
    let probe = probe(&outer, &pulled);
    let plan = finish(pulled, outer, &probe, ks, snap)?;
    Ok(PulloutPlan {
        atomic: true,
        ..plan
    })
}

/// The names the tables of FROM items `tables` are known by (aliases
/// where given), for telling their statement's correlated subqueries
/// apart.
fn table_names(tables: &[ast::TableWithJoins]) -> Vec<(String, bool)> {
    super::join::names_in(tables)
        .into_iter()
        .map(|n| (n, false))
        .collect()
}

/// A FROM item naming table `name` (a marker, printed as it is) as `alias`.
fn table_named(name: &str, alias: &ast::TableAlias) -> Option<TableFactor> {
    let ast::Statement::Query(q) = super::sharded::parse("SELECT 1 FROM marker").ok()? else {
        return None;
    };
    let SetExpr::Select(s) = *q.body else {
        return None;
    };
    let mut f = s.from.into_iter().next()?.relation;
    if let TableFactor::Table {
        name: n, alias: a, ..
    } = &mut f
    {
        *n = ast::ObjectName::from(vec![ast::Ident::new(name)]);
        *a = Some(alias.clone());
    }
    Some(f)
}

/// The uncorrelated subqueries of a value (a select-list item, an ORDER
/// BY key), collected: an ANY's first (a walk from the leaves would take
/// its subquery for a value), then scalar ones and EXISTS.
fn pull_values<T: ast::VisitMut>(
    v: &mut T,
    names: &[(String, bool)],
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) {
    let mut quantified = Quantified { names, pulled };
    let _ = v.visit(&mut quantified);
    let _ = visit_expressions_mut(v, |e| {
        pull_value(e, names, pulled);
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// [`pull_quantified`] over every expression, from the root down.
struct Quantified<'a> {
    names: &'a [(String, bool)],
    pulled: &'a mut Vec<(PulloutKind, Option<String>, ast::Query)>,
}

impl ast::VisitorMut for Quantified<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
        pull_quantified(e, self.names, self.pulled);
        std::ops::ControlFlow::Continue(())
    }
}

/// `x op ANY (subquery)`, `x op ALL (...)`, `x [NOT] IN (...)` (`e`), its subquery
/// uncorrelated: its rows become a table of constants the comparison reads
/// where the statement runs (with none, ANY is false and ALL true, NULLs
/// as MariaDB weighs them), collected. A subquery over constants only
/// (this pullout's own, as its probe plans it) stays: pulling it again
/// would never end.
fn pull_quantified(
    e: &mut Expr,
    names: &[(String, bool)],
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) {
    let (left, q) = match e {
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => match right.as_mut() {
            Expr::Subquery(q) => (left, q),
            _ => return,
        },
        // `x [NOT] IN (subquery)` as a value (in a WHERE clause it is a
        // condition of its own, [`pull`]'s): the same as `= ANY`.
        Expr::In {
            expr,
            target: ast::InTarget::Subquery(q),
            ..
        } => (expr, q),
        _ => return,
    };
    let uncorrelated = super::join::reads_outer(q, names).is_ok_and(|reads| !reads);
    if super::join::has_subquery(left.as_ref()) || !uncorrelated || !reads_a_table(q) {
        return;
    }
    if let Some(read) = constants_read(pulled.len()) {
        pulled.push((PulloutKind::Table, None, (**q).clone()));
        **q = read;
    }
}

/// Replaces `e`, when it is an uncorrelated scalar subquery, with the
/// marker of its one value, collecting it. A subquery over constants only
/// (an ANY's, pulled out already) stays: any route reads it.
fn pull_value(
    e: &mut Expr,
    names: &[(String, bool)],
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) {
    let (kind, sub) = match e {
        Expr::Subquery(sub) => (PulloutKind::Value, sub),
        // `EXISTS (...)` as a value: 1 or 0.
        Expr::Exists {
            subquery,
            negated: false,
        } => (PulloutKind::Exists, subquery),
        Expr::Exists {
            subquery,
            negated: true,
        } => (PulloutKind::NotExists, subquery),
        _ => return,
    };
    if super::join::reads_outer(sub, names).is_ok_and(|reads| !reads) && reads_a_table(sub) {
        let m = Expr::value(ast::Value::Placeholder(marker(pulled.len())));
        pulled.push((kind, None, (**sub).clone()));
        *e = m;
    }
}

/// Whether `q` reads a table (not only constants or a marker).
fn reads_a_table(q: &ast::Query) -> bool {
    struct Table;
    impl ast::Visitor for Table {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ast::ObjectName) -> std::ops::ControlFlow<()> {
            match name.to_string().starts_with(':') {
                true => std::ops::ControlFlow::Continue(()),
                false => std::ops::ControlFlow::Break(()),
            }
        }
    }
    ast::Visit::visit(q, &mut Table).is_break()
}

/// `SELECT * FROM` the table of constants of subquery `i`'s marker.
fn constants_read(i: usize) -> Option<ast::Query> {
    let sql = "SELECT * FROM marker AS sg_any";
    let ast::Statement::Query(mut q) = super::sharded::parse(sql).ok()? else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    if let TableFactor::Table { name, .. } = &mut s.from.first_mut()?.relation {
        *name = ast::ObjectName::from(vec![ast::Ident::new(marker(i))]);
    }
    Some(*q)
}

/// Replaces the uncorrelated subquery conditions of `e` (under AND, OR
/// and NOT) with markers, collecting them.
fn pull(
    e: &mut Expr,
    names: &[(String, bool)],
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) {
    let uncorrelated =
        |q: &ast::Query| super::join::reads_outer(q, names).is_ok_and(|reads| !reads);
    let mark = |pulled: &Vec<_>| Expr::value(ast::Value::Placeholder(marker(pulled.len())));
    match e {
        // What replaces a condition is a condition equal to it (NULLs
        // included), so it may stand under OR and NOT too.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            pull(left, names, pulled);
            pull(right, names, pulled);
        }
        Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr: inner,
        }
        | Expr::Nested(inner) => pull(inner, names, pulled),
        Expr::In {
            expr,
            target: ast::InTarget::Subquery(q),
            negated,
            ..
        } if uncorrelated(q) && !super::join::has_subquery(expr) => {
            let kind = if *negated {
                PulloutKind::NotIn
            } else {
                PulloutKind::In
            };
            let m = mark(pulled);
            pulled.push((kind, Some(expr.to_string()), (**q).clone()));
            *e = m;
        }
        Expr::Exists { subquery, negated } if uncorrelated(subquery) => {
            let kind = if *negated {
                PulloutKind::NotExists
            } else {
                PulloutKind::Exists
            };
            let m = mark(pulled);
            pulled.push((kind, None, (**subquery).clone()));
            *e = m;
        }
        Expr::AnyOp { .. } | Expr::AllOp { .. } => pull_quantified(e, names, pulled),
        Expr::BinaryOp {
            left,
            op:
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::Spaceship,
            right,
        } => {
            for side in [left, right] {
                pull_value(side, names, pulled);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_fill_in_one_pass() {
        let texts = vec!["(a) IN ('x:vSQ2')".to_string(), "0".to_string()];
        assert_eq!(
            fill("select 1 from t where :vSQ1 and :vSQ2 and b = :v1", &texts),
            "select 1 from t where (a) IN ('x:vSQ2') and 0 and b = :v1"
        );
        // Ten and more are their own markers, not the first's with a digit.
        let many: Vec<String> = (1..=11).map(|i| format!("<{i}>")).collect();
        assert_eq!(fill(":vSQ1 :vSQ10 :vSQ11", &many), "<1> <10> <11>");
        assert_eq!(fill(":vSQ12 :vSQ", &many), ":vSQ12 :vSQ");
    }
}
