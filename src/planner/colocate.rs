//! Which tables of a FROM clause share one route. A join whose sharded
//! tables are equated on their primary vindex columns, under the same
//! vindex function, finds every pair of joined rows on one shard: the
//! shard of their common vindex value. So the whole join runs on each
//! shard as it is and the shards' answers add up to the join's, as vtgate
//! merges such routes. Reference tables are on every shard and join
//! anything. Any other join would need rows from two shards at once, and
//! is refused.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, BinaryOperator, Expr, JoinConstraint, JoinOperator, TableFactor, Visit, Visitor,
};

use super::sharded::{
    conjuncts, has_aggregate, is_column, route_where, table_info, unsupported, Operand, Routing,
    TableInfo,
};
use super::{derive, PlanError};
use crate::topo::Keyspace;
use crate::vschema::vindex::Func;

/// The tables of a FROM clause, and the route they share.
pub(super) struct Joined {
    /// Each table as the VSchema describes it, in FROM order.
    pub tables: Vec<TableInfo>,
    /// The shards the statement reaches.
    pub routing: Routing,
    /// The `IN` conjunct of the WHERE clause that names the shards, to be
    /// pruned to each shard's own values.
    pub in_expr: Option<Expr>,
    /// Values, under an `Equal` route's function, that must name the
    /// route's own shard (see [`subqueries`]).
    pub same_shard: Vec<Operand>,
}

/// What a FROM clause's walk gathers.
#[derive(Default)]
struct Walk {
    tables: Vec<TableInfo>,
    same: Sets,
    /// Per table: the route of a derived table's own query.
    derived: Vec<Option<DerivedRoute>>,
    /// An outer join was seen: a derived table's own WHERE then does not
    /// bound the statement's rows.
    outer_join: bool,
    /// An outer join keeps rows of reference tables only (every shard
    /// holds them) against sharded rows: on each shard a kept row would
    /// find its match or not, and come back once per shard.
    kept_everywhere: bool,
}

/// The route of a derived table's query.
pub(super) struct DerivedRoute {
    routing: Routing,
    /// Its rows are some of its tables' rows, each on its own shard (no
    /// grouping, aggregate, DISTINCT, LIMIT or window): it joins like a
    /// table. Otherwise its answer is whole only where its route names one
    /// shard.
    row_preserving: bool,
    same_shard: Vec<Operand>,
}

/// Resolves the tables of `from` and the route they share; `selection` is
/// the WHERE clause, whose conjuncts both equate tables and name shards.
pub(super) fn route(
    ks: &Keyspace,
    from: &[ast::TableWithJoins],
    selection: Option<&Expr>,
) -> Result<Joined, PlanError> {
    let mut w = Walk::default();
    for twj in from {
        add_joined(ks, twj, &mut w)?;
    }
    let Walk {
        tables,
        mut same,
        derived,
        outer_join,
        kept_everywhere,
    } = w;
    // Another keyspace's tables join only as a nested loop, and a
    // statement of them alone is that keyspace's (the session sends it
    // there).
    if let Some(t) = tables.iter().find(|t| t.keyspace.is_some()) {
        if tables.iter().all(|t| t.keyspace.is_some()) {
            let other = t.keyspace.as_deref().unwrap_or_default();
            return Err(unsupported(format!(
                "table {other}.{}: statements across keyspaces ({other} and {})",
                t.visible_name(),
                ks.name
            )));
        }
        return Err(unsupported("cross-shard joins"));
    }
    if let Some(sel) = selection {
        equate(sel, &tables, &mut same);
    }
    // A derived table answering whole on one shard joins the rest there.
    let whole = |i: usize| derived[i].as_ref().is_some_and(|d| !d.row_preserving);
    let sharded: Vec<usize> = (0..tables.len())
        .filter(|&i| tables[i].kind != "reference" && !whole(i))
        .collect();
    if let Some(&first) = sharded.first() {
        if sharded.iter().any(|&i| same.root(i) != same.root(first)) {
            return Err(unsupported("cross-shard joins"));
        }
    }
    // Every sharded table is on the joined rows' shard, so any of them
    // names it; take the narrowest. A derived table's own route bounds the
    // rows only when no outer join keeps rows it lacks.
    let mut routes: Vec<(Routing, Option<Expr>)> = sharded
        .iter()
        .map(|&i| route_where(selection, &tables[i]))
        .collect();
    if !outer_join {
        routes.extend(
            sharded
                .iter()
                .filter_map(|&i| derived[i].as_ref())
                .map(|d| (d.routing.clone(), None)),
        );
    }
    let (mut routing, in_expr) = routes
        .into_iter()
        .max_by_key(|(r, _)| narrowness(r))
        .unwrap_or((Routing::Any, None));
    // Rows every shard keeps are kept once only where one shard answers
    // (its WHERE names the sharded rows' shard); else the join is the
    // gate's.
    if kept_everywhere && !matches!(routing, Routing::Equal { .. }) {
        return Err(unsupported("cross-shard joins"));
    }
    let mut same_shard = Vec::new();
    for d in derived.iter().flatten() {
        if d.row_preserving {
            same_shard.extend(d.same_shard.iter().cloned());
            continue;
        }
        let Routing::Equal { func, value } = &d.routing else {
            return Err(unsupported("derived tables across shards"));
        };
        match &routing {
            Routing::Any | Routing::Scatter if sharded.is_empty() => routing = d.routing.clone(),
            Routing::Equal { func: f, .. } if f == func => same_shard.push(value.clone()),
            _ => return Err(unsupported("derived tables across shards")),
        }
        same_shard.extend(d.same_shard.iter().cloned());
    }
    if !same_shard.is_empty() && !matches!(routing, Routing::Equal { .. }) {
        return Err(unsupported("derived tables across shards"));
    }
    Ok(Joined {
        tables,
        routing,
        in_expr,
        same_shard,
    })
}

/// How few shards a route reaches, higher being fewer.
fn narrowness(r: &Routing) -> u8 {
    match r {
        Routing::Equal { .. } | Routing::Any => 4,
        Routing::In { .. } => 3,
        Routing::Lookup { .. } => 2,
        Routing::Between { .. } => 1,
        Routing::Scatter => 0,
    }
}

/// Tables joined on equal vindex values, as disjoint sets.
#[derive(Default)]
pub(super) struct Sets {
    parent: Vec<usize>,
}

impl Sets {
    /// The set `i` is in, named by one of its members.
    pub(super) fn root(&mut self, i: usize) -> usize {
        while self.parent.len() <= i {
            self.parent.push(self.parent.len());
        }
        let mut r = i;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        self.parent[i] = r;
        r
    }

    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra] = rb;
    }
}

/// Adds the tables of a table and the tables joined to it, equating those
/// the joins' constraints make equal.
fn add_joined(ks: &Keyspace, twj: &ast::TableWithJoins, w: &mut Walk) -> Result<(), PlanError> {
    let start = w.tables.len();
    add_relation(ks, &twj.relation, w)?;
    for join in &twj.joins {
        let left_end = w.tables.len();
        add_relation(ks, &join.relation, w)?;
        let constraint = constraint(&join.join_operator)?;
        let reference = |t: &TableInfo| t.kind == "reference";
        let (left, right) = (&w.tables[start..left_end], &w.tables[left_end..]);
        let (kept, optional) = match join.join_operator {
            JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => (left, right),
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => (right, left),
            _ => (&[][..], &[][..]),
        };
        w.kept_everywhere |=
            !kept.is_empty() && kept.iter().all(reference) && !optional.iter().all(reference);
        let nulled = match join.join_operator {
            JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => left_end..w.tables.len(),
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => start..left_end,
            JoinOperator::FullOuter(_) => start..w.tables.len(),
            _ => 0..0,
        };
        for t in &mut w.tables[nulled] {
            t.nullable = true;
        }
        w.outer_join |= !matches!(
            join.join_operator,
            JoinOperator::Join(_)
                | JoinOperator::Inner(_)
                | JoinOperator::CrossJoin(_)
                | JoinOperator::StraightJoin(_)
        );
        equate_constraint(
            constraint,
            &w.tables,
            start..left_end,
            left_end..w.tables.len(),
            &mut w.same,
        );
    }
    Ok(())
}

/// Adds the tables of one FROM item (a table, a parenthesized join, or a
/// derived table, which joins as one table).
fn add_relation(ks: &Keyspace, f: &TableFactor, w: &mut Walk) -> Result<(), PlanError> {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => {
            w.tables.push(table_info(
                ks,
                name,
                alias.as_ref().map(|a| a.name.value.clone()),
            )?);
            w.derived.push(None);
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => add_joined(ks, table_with_joins, w),
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            ..
        } => {
            let (table, route) = derived(ks, subquery, alias)?;
            w.tables.push(table);
            w.derived.push(route);
            Ok(())
        }
        TableFactor::Derived { .. } => Err(unsupported("derived tables across shards")),
        other => Err(unsupported(format!("FROM item {other} across shards"))),
    }
}

/// A derived table as a table of the outer query: a reference table when
/// it reads only reference tables; else a sharded table exposing its
/// tables' vindex column, if it selects it and keeps its rows apart by
/// shard; with its own route.
pub(super) fn derived(
    ks: &Keyspace,
    q: &ast::Query,
    alias: &ast::TableAlias,
) -> Result<(TableInfo, Option<DerivedRoute>), PlanError> {
    let refuse = || unsupported("derived tables across shards");
    let name = alias.name.value.clone();
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        // A UNION: as its parts route it.
        let u = union(ks, q).map_err(|_| refuse())?;
        let route = |row_preserving| DerivedRoute {
            routing: u.routing.clone(),
            row_preserving,
            same_shard: u.same_shard.clone(),
        };
        let table = |reference| {
            TableInfo::derived(name.clone(), reference, None)
                .with_declared(derive::known_columns(u.columns.clone(), alias))
        };
        return match &u.routing {
            Routing::Any => Ok((table(true), None)),
            Routing::Scatter => Ok((table(false), Some(route(true)))),
            Routing::Equal { .. } => Ok((table(false), Some(route(false)))),
            _ => Err(refuse()),
        };
    };
    if q.with.is_some() {
        return Err(refuse());
    }
    // Constants (a derived table run first comes back as such): the
    // same on every shard.
    if s.from.is_empty() && direct_subqueries(q).is_empty() {
        return Ok((TableInfo::derived(name, true, None), None));
    }
    if s.from.is_empty() {
        return Err(refuse());
    }
    let mut inner = route(ks, &s.from, s.selection.as_ref())?;
    let mut pins = subqueries(ks, q, &inner.tables, &mut inner.routing)?;
    pins.append(&mut inner.same_shard);
    let declared = derive::known_columns(derive::items(s, &inner.tables), alias);
    if inner.routing == Routing::Any {
        return Ok((
            TableInfo::derived(name, true, None).with_declared(declared),
            None,
        ));
    }
    let row_preserving =
        pins.is_empty() && (keeps_rows(s, Some(q)) || groups_apart(s, q, &inner.tables));
    if !row_preserving && !matches!(inner.routing, Routing::Equal { .. }) {
        return Err(refuse());
    }
    let vindex = row_preserving
        .then(|| exposed_vindex(s, &inner.tables, alias))
        .flatten();
    Ok((
        TableInfo::derived(name, false, vindex).with_declared(declared),
        Some(DerivedRoute {
            routing: inner.routing,
            row_preserving,
            same_shard: pins,
        }),
    ))
}

/// Whether a query's rows are some of its tables' rows, each where its
/// tables' row is: no grouping, aggregate, DISTINCT, HAVING, window or
/// LIMIT (of `q`, the query the select is the body of).
fn keeps_rows(s: &ast::Select, q: Option<&ast::Query>) -> bool {
    let grouped = matches!(&s.group_by, ast::GroupByExpr::Expressions(g, _) if !g.is_empty())
        || matches!(s.group_by, ast::GroupByExpr::All(_));
    !grouped
        && s.distinct.is_none()
        && s.having.is_none()
        && q.is_none_or(|q| q.limit_clause.is_none() && q.fetch.is_none())
        && !s.projection.iter().any(|p| {
            let text = p.to_string().to_ascii_uppercase();
            text.contains(" OVER")
                || matches!(p, ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } if has_aggregate(e))
        })
}

/// Whether a grouped query's groups each live on one shard: it groups by
/// the vindex column of one of its sharded tables (all of which share the
/// route), so no group spans shards, and nothing but the grouping
/// (no LIMIT, DISTINCT or window) looks across groups. vtgate merges such
/// derived tables the same way.
fn groups_apart(s: &ast::Select, q: &ast::Query, tables: &[TableInfo]) -> bool {
    let ast::GroupByExpr::Expressions(keys, mods) = &s.group_by else {
        return false;
    };
    mods.is_empty()
        && s.distinct.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && !s
            .projection
            .iter()
            .any(|p| p.to_string().to_ascii_uppercase().contains(" OVER"))
        && keys.iter().any(|k| {
            tables
                .iter()
                .any(|t| t.kind != "reference" && t.places_rows_by(k).is_some())
        })
}

/// [`keeps_rows`] of a query whose body is one SELECT (false otherwise).
pub(super) fn keeps_rows_query(q: &ast::Query) -> bool {
    match q.body.as_ref() {
        ast::SetExpr::Select(s) => keeps_rows(s, Some(q)),
        _ => false,
    }
}

/// The route a UNION's parts share.
pub(super) struct UnionRoute {
    /// Where the whole statement goes.
    pub routing: Routing,
    /// Values that must name the route's one shard (see [`subqueries`]).
    pub same_shard: Vec<Operand>,
    /// Its columns, with what is known of their types
    /// ([`derive::union_items`]).
    pub columns: Vec<(String, derive::Part)>,
}

/// Where a UNION goes whole:
/// - where every part names one shard (or reads reference tables only),
///   if they name the same, checked from the values;
/// - to every shard, for a UNION ALL without ORDER BY or LIMIT whose parts
///   each read sharded tables and keep their rows apart by shard: each
///   shard returns its own rows of every part, and the shards' answers
///   together are the union's. (A part over reference tables only would
///   come back from every shard.)
///
/// Anything else would need one shard's rows compared with another's.
pub(super) fn union(ks: &Keyspace, q: &ast::Query) -> Result<UnionRoute, PlanError> {
    let refuse = |why: &str| unsupported(format!("UNION across shards{why}"));
    let mut parts = Vec::new();
    let mut all = true;
    flatten_union(&q.body, &mut parts, &mut all)
        .map_err(|_| refuse(" with a part of its own WITH or set operation"))?;
    let mut routes = Vec::new();
    let mut apart = true;
    let mut columns: Option<Vec<_>> = None;
    for (s, sub) in parts {
        let mut j = route(ks, &s.from, s.selection.as_ref())?;
        let items = derive::items(s, &j.tables);
        columns = Some(match columns {
            None => items,
            Some(first) => derive::union_items(first, &items),
        });
        let mut pins = match sub {
            Some(sub) => subqueries(ks, sub, &j.tables, &mut j.routing)?,
            None => merge_all(ks, select_subqueries(s), &j.tables, &mut j.routing)?,
        };
        pins.append(&mut j.same_shard);
        apart &= pins.is_empty() && j.routing != Routing::Any && keeps_rows(s, sub);
        routes.push((j.routing, pins));
    }
    // One shard: the first part that names one; the others' values must
    // name it too.
    let columns = columns.unwrap_or_default();
    let one = routes
        .iter()
        .find(|(r, _)| matches!(r, Routing::Equal { .. }))
        .map(|(r, _)| r.clone());
    let pinnable = routes
        .iter()
        .all(|(r, _)| matches!(r, Routing::Equal { .. } | Routing::In { .. } | Routing::Any));
    if let (Some(routing @ Routing::Equal { func: f, .. }), true) = (one, pinnable) {
        let mut same_shard = Vec::new();
        for (r, pins) in routes {
            match r {
                Routing::Any => {}
                // The route's own value names its shard trivially.
                Routing::Equal { func, value } if func == f => same_shard.push(value),
                Routing::In { func, values } if func == f => same_shard.extend(values),
                _ => return Err(refuse(" whose parts route by different vindexes")),
            }
            same_shard.extend(pins);
        }
        return Ok(UnionRoute {
            routing,
            same_shard,
            columns,
        });
    }
    if routes.iter().all(|(r, _)| *r == Routing::Any) {
        return Ok(UnionRoute {
            routing: Routing::Any,
            same_shard: Vec::new(),
            columns,
        });
    }
    if all && apart && q.order_by.is_none() && q.limit_clause.is_none() {
        return Ok(UnionRoute {
            routing: Routing::Scatter,
            same_shard: Vec::new(),
            columns,
        });
    }
    Err(refuse(""))
}

/// A UNION that no one route answers whole, as a query over a derived
/// table its shards can answer: `SELECT [DISTINCT] c1 AS name1, ... FROM
/// (first part with its columns named c1.. UNION ALL the others) AS
/// dt_union`, then the UNION's ORDER BY and LIMIT. Each shard returns its
/// own rows of every part; the gate dedupes (a UNION's DISTINCT, by
/// collation), sorts and limits them as for any scatter. None when the
/// parts mix UNION and UNION ALL, or show `*` (their names unknown).
pub(super) fn union_as_derived(q: &ast::Query) -> Option<String> {
    if q.with.is_some() || !q.locks.is_empty() {
        return None;
    }
    let mut inner = (*q.body).clone();
    let mut quantifiers = Vec::new();
    all_unions(&mut inner, &mut quantifiers);
    let distinct = match quantifiers.first()? {
        ast::SetQuantifier::All => false,
        ast::SetQuantifier::Distinct | ast::SetQuantifier::None => true,
        _ => return None,
    };
    if quantifiers
        .iter()
        .any(|q| matches!(q, ast::SetQuantifier::All) == distinct)
    {
        return None;
    }
    let first = first_select(&mut inner)?;
    let mut names = Vec::new();
    for (i, item) in first.projection.iter_mut().enumerate() {
        let (expr, name) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e.clone(), super::sharded::item_name(e)),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), alias.value.clone()),
            _ => return None,
        };
        *item = ast::SelectItem::ExprWithAlias {
            expr,
            alias: ast::Ident::new(format!("c{}", i + 1)),
        };
        names.push(name);
    }
    let columns: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("c{} AS `{}`", i + 1, n.replace('`', "``")))
        .collect();
    let order = q
        .order_by
        .as_ref()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let limit = q
        .limit_clause
        .as_ref()
        .map(|l| format!("{l}"))
        .unwrap_or_default();
    Some(format!(
        "SELECT {}{} FROM ({inner}) AS dt_union{order}{limit}",
        if distinct { "DISTINCT " } else { "" },
        columns.join(", ")
    ))
}

/// Makes every UNION of a chain a UNION ALL, noting what each was.
fn all_unions(e: &mut ast::SetExpr, quantifiers: &mut Vec<ast::SetQuantifier>) {
    if let ast::SetExpr::SetOperation {
        op: ast::SetOperator::Union,
        set_quantifier,
        left,
        right,
    } = e
    {
        quantifiers.push(*set_quantifier);
        *set_quantifier = ast::SetQuantifier::All;
        all_unions(left, quantifiers);
        all_unions(right, quantifiers);
    }
}

/// The first SELECT of a chain of UNIONs.
fn first_select(e: &mut ast::SetExpr) -> Option<&mut ast::Select> {
    match e {
        ast::SetExpr::Select(s) => Some(s),
        ast::SetExpr::SetOperation { left, .. } => first_select(left),
        ast::SetExpr::Query(q) if q.order_by.is_none() && q.limit_clause.is_none() => {
            first_select(&mut q.body)
        }
        _ => None,
    }
}

/// The SELECTs of a chain of UNIONs, each with the parenthesized query it
/// is the body of, if any; `all` stays true while every UNION is ALL.
fn flatten_union<'a>(
    e: &'a ast::SetExpr,
    parts: &mut Vec<(&'a ast::Select, Option<&'a ast::Query>)>,
    all: &mut bool,
) -> Result<(), ()> {
    match e {
        ast::SetExpr::Select(s) => parts.push((s, None)),
        // A table of constants' rows after its first (which names and
        // types the columns): they read no table.
        ast::SetExpr::Values(_) if !parts.is_empty() => {}
        ast::SetExpr::Query(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) if q.with.is_none() => parts.push((s, Some(q))),
            _ => return Err(()),
        },
        // INTERSECT and EXCEPT go whole to one shard only (never `all`).
        ast::SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            *all &=
                *op == ast::SetOperator::Union && matches!(set_quantifier, ast::SetQuantifier::All);
            flatten_union(left, parts, all)?;
            flatten_union(right, parts, all)?;
        }
        _ => return Err(()),
    }
    Ok(())
}

/// The name under which a derived table's select list shows the vindex
/// column of one of its sharded tables, with that vindex's function.
fn exposed_vindex(
    s: &ast::Select,
    tables: &[TableInfo],
    alias: &ast::TableAlias,
) -> Option<(String, Func)> {
    // A column an outer join may leave NULL is NULL on every shard: the
    // derived table's rows are not apart by it.
    let sharded = || {
        tables
            .iter()
            .filter(|t| t.kind != "reference" && !t.nullable)
    };
    for (pos, item) in s.projection.iter().enumerate() {
        let (e, named) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            ast::SelectItem::Wildcard(_) if alias.columns.is_empty() => {
                // `*` over one table shows its columns by their names.
                let mut one = sharded();
                return match (one.next(), one.next(), tables.len()) {
                    (Some(t), None, 1) => t.vindex.clone(),
                    _ => None,
                };
            }
            _ => return None,
        };
        for t in sharded() {
            let Some((col, func)) = &t.vindex else {
                continue;
            };
            if is_column(e, col, t) {
                let name = match alias.columns.get(pos) {
                    Some(c) => c.name.value.to_ascii_lowercase(),
                    None if !alias.columns.is_empty() => return None,
                    None => named.unwrap_or_else(|| col.clone()).to_ascii_lowercase(),
                };
                return Some((name, *func));
            }
        }
    }
    None
}

/// The constraint of a join MySQL has; others are refused.
pub(super) fn constraint(op: &JoinOperator) -> Result<&JoinConstraint, PlanError> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => Ok(c),
        other => Err(unsupported(format!("join {other:?}"))),
    }
}

/// Equates the tables a join's constraint makes equal. An `ON` equality
/// of vindex columns holds for every matched pair of rows whatever the
/// join's kind; a row an outer join keeps unmatched stays on its own
/// shard. `USING` and `NATURAL` equate same-named columns of the two sides.
fn equate_constraint(
    c: &JoinConstraint,
    tables: &[TableInfo],
    left: std::ops::Range<usize>,
    right: std::ops::Range<usize>,
    same: &mut Sets,
) {
    let named = |cols: Option<&[ast::ObjectName]>, same: &mut Sets| {
        for l in left.clone() {
            for r in right.clone() {
                let (Some((lc, lf)), Some((rc, rf))) = (&tables[l].vindex, &tables[r].vindex)
                else {
                    continue;
                };
                let listed = cols.is_none_or(|cols| {
                    cols.iter()
                        .any(|c| c.to_string().trim_matches('`').eq_ignore_ascii_case(lc))
                });
                if lf == rf && lc == rc && listed {
                    same.join(l, r);
                }
            }
        }
    };
    match c {
        JoinConstraint::On(e) => equate(e, tables, same),
        JoinConstraint::Using(cols) | JoinConstraint::UsingAlias(cols, _) => {
            named(Some(cols), same)
        }
        // The vindex column, present in both, is among the common columns.
        JoinConstraint::Natural => named(None, same),
        JoinConstraint::None => {}
    }
}

/// The two sides of each `=` among the conjuncts of `e`.
fn equalities(e: &Expr) -> Vec<(&Expr, &Expr)> {
    conjuncts(e)
        .into_iter()
        .filter_map(|c| match c {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => Some((left.as_ref(), right.as_ref())),
            _ => None,
        })
        .collect()
}

/// Equates the tables whose vindex columns a conjunct of `e` compares.
pub(super) fn equate(e: &Expr, tables: &[TableInfo], same: &mut Sets) {
    for (left, right) in equalities(e) {
        for (i, a) in tables.iter().enumerate() {
            for (j, b) in tables.iter().enumerate() {
                let (Some((ac, af)), Some((bc, bf))) = (&a.vindex, &b.vindex) else {
                    continue;
                };
                if i != j && af == bf && is_column(left, ac, a) && is_column(right, bc, b) {
                    same.join(i, j);
                }
            }
        }
    }
}

/// Checks that each subquery of `q` finds its rows on the shard of the
/// outer row it serves, so the statement may run whole on its route:
/// - a subquery over reference tables only (or none) finds them anywhere;
/// - one correlated to an outer table by an equality of vindex columns
///   (`inner.vcol = outer.vcol`, the outer side qualified) runs, for each
///   outer row, where that row's vindex value lives;
/// - one whose own WHERE names one shard (or a list of values) may join
///   an outer route that names one shard, if every value names that
///   shard. Which they name is known only from the values, so those values
///   are returned, for the executor to check (the outer route's function
///   maps them).
///
/// Any other subquery would need rows from other shards, and is refused
/// rather than answered from one shard's rows.
pub(super) fn subqueries(
    ks: &Keyspace,
    q: &ast::Query,
    outer: &[TableInfo],
    routing: &mut Routing,
) -> Result<Vec<Operand>, PlanError> {
    merge_all(ks, direct_subqueries(q), outer, routing)
}

/// Whether every subquery of `value` (an UPDATE's SET value) answers
/// from the shard that holds the row it sets: it reads its rows through
/// the written table's vindex column, or reads reference tables only
/// (then the UPDATE goes to the shards whole, as vtgate sends it).
pub(super) fn stays_on_row_shard(
    ks: &Keyspace,
    value: &Expr,
    outer: &[TableInfo],
    routing: &Routing,
) -> bool {
    let mut top = Collect::default();
    let _ = value.visit(&mut top);
    let mut r = routing.clone();
    matches!(merge_all(ks, top.found, outer, &mut r), Ok(pins) if pins.is_empty())
}

/// `tables` as a correlated subquery sees them: a table without a vindex
/// of its own (a reference table, a table of constants) whose column an
/// inner join or the WHERE clause equates to a sharded table's vindex
/// column is placed by that column on the statement's rows, as the
/// sharded table is. On each shard a joined row's `r.k` equals the local
/// `a.id`, so a subquery reading `b.a_id = r.k` (the same vindex) finds
/// its rows on that shard: it merges, as vtgate merges through the join's
/// equality. Not through a LEFT JOIN's ON (its NULL rows are on no shard)
/// nor from a table an outer join may NULL.
pub(super) fn placed_by_joins(
    tables: &[TableInfo],
    from: &[ast::TableWithJoins],
    selection: Option<&Expr>,
) -> Vec<TableInfo> {
    let mut conditions: Vec<&Expr> = selection.into_iter().collect();
    for j in from.iter().flat_map(|twj| &twj.joins) {
        if let ast::JoinOperator::Join(ast::JoinConstraint::On(e))
        | ast::JoinOperator::Inner(ast::JoinConstraint::On(e))
        | ast::JoinOperator::StraightJoin(ast::JoinConstraint::On(e)) = &j.join_operator
        {
            conditions.push(e);
        }
    }
    let column_of = |e: &Expr, t: &TableInfo| match e {
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if q.value == t.visible_name() => Some(c.value.to_ascii_lowercase()),
            _ => None,
        },
        _ => None,
    };
    let mut placed = tables.to_vec();
    for t in placed
        .iter_mut()
        .filter(|t| t.vindex.is_none() && !t.nullable)
    {
        let by = conditions
            .iter()
            .flat_map(|c| equalities(c))
            .find_map(|(l, r)| {
                tables.iter().find_map(|o| {
                    let (oc, of) = o.vindex.as_ref()?;
                    if o.kind == "reference" || o.nullable {
                        return None;
                    }
                    match (column_of(l, t), column_of(r, t)) {
                        (Some(c), _) if is_column(r, oc, o) => Some((c, *of)),
                        (_, Some(c)) if is_column(l, oc, o) => Some((c, *of)),
                        _ => None,
                    }
                })
            });
        if by.is_some() {
            t.vindex = by;
        }
    }
    placed
}

/// [`subqueries`] over a list of subqueries.
fn merge_all(
    ks: &Keyspace,
    subs: Vec<ast::Query>,
    outer: &[TableInfo],
    routing: &mut Routing,
) -> Result<Vec<Operand>, PlanError> {
    let mut same_shard = Vec::new();
    for sub in &subs {
        merge(ks, sub, outer, routing, &mut same_shard)?;
    }
    Ok(same_shard)
}

fn merge(
    ks: &Keyspace,
    q: &ast::Query,
    scope: &[TableInfo],
    routing: &mut Routing,
    same_shard: &mut Vec<Operand>,
) -> Result<(), PlanError> {
    let refuse = || unsupported("subqueries that do not go to one shard");
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return Err(refuse());
    };
    if q.with.is_some() {
        return Err(refuse());
    }
    let j = route(ks, &s.from, s.selection.as_ref()).map_err(|_| refuse())?;
    let sharded = j.routing != Routing::Any;
    if sharded && (!j.same_shard.is_empty() || !correlated(scope, &j.tables, s.selection.as_ref()))
    {
        if !pin(&j.routing, routing, same_shard) {
            return Err(refuse());
        }
        // Those name the subquery's shard, now the statement's.
        same_shard.extend(j.same_shard.iter().cloned());
    }
    let scope: Vec<TableInfo> = scope.iter().chain(j.tables.iter()).cloned().collect();
    for sub in &direct_subqueries(q) {
        merge(ks, sub, &scope, routing, same_shard)?;
    }
    Ok(())
}

/// Joins a subquery's route that names one shard (or some values) to the
/// statement's: the statement's one shard must be the same, or, when the
/// statement reads only reference tables, becomes the subquery's.
fn pin(inner: &Routing, outer: &mut Routing, same_shard: &mut Vec<Operand>) -> bool {
    match (inner, &*outer) {
        (Routing::Equal { func, value }, Routing::Equal { func: f, .. }) if func == f => {
            same_shard.push(value.clone());
            true
        }
        (Routing::In { func, values }, Routing::Equal { func: f, .. }) if func == f => {
            same_shard.extend(values.iter().cloned());
            true
        }
        (Routing::Equal { .. }, Routing::Any) => {
            *outer = inner.clone();
            true
        }
        _ => false,
    }
}

/// True when a conjunct of `selection` equates the vindex column of one of
/// `inner`'s sharded tables with that of a sharded table of `scope`, named
/// by its qualifier (an unqualified name would be the inner table's).
fn correlated(scope: &[TableInfo], inner: &[TableInfo], selection: Option<&Expr>) -> bool {
    let Some(sel) = selection else {
        return false;
    };
    let shadowed = |q: &str| inner.iter().any(|t| t.visible_name() == q);
    let outer_column = |e: &Expr, o: &TableInfo, col: &str| match e {
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] => {
                c.value.eq_ignore_ascii_case(col)
                    && q.value == o.visible_name()
                    && !shadowed(&q.value)
            }
            _ => false,
        },
        _ => false,
    };
    equalities(sel).into_iter().any(|(left, right)| {
        inner.iter().any(|i| {
            scope.iter().any(|o| {
                let (Some((ic, ifn)), Some((oc, ofn))) = (&i.vindex, &o.vindex) else {
                    return false;
                };
                ifn == ofn
                    && ((is_column(left, ic, i) && outer_column(right, o, oc))
                        || (is_column(right, ic, i) && outer_column(left, o, oc)))
            })
        })
    })
}

/// The subqueries of `q`'s expressions, one level down (not those nested
/// in them, and not derived tables, which are FROM items), copied out of
/// the visitor's reach.
fn direct_subqueries(q: &ast::Query) -> Vec<ast::Query> {
    let select = match q.body.as_ref() {
        ast::SetExpr::Select(s) => Some(s.as_ref()),
        _ => None,
    };
    subqueries_of(select, q.order_by.as_ref())
}

/// Collects the outermost subqueries of what it visits (not those
/// inside them), copied out of the visitor's reach, and shows `outside`
/// every expression that lies outside them.
pub(super) struct Collect<F: FnMut(&Expr) = fn(&Expr)> {
    depth: usize,
    /// The outermost subqueries.
    pub found: Vec<ast::Query>,
    outside: F,
}

impl Default for Collect {
    fn default() -> Self {
        Collect::new(|_| {})
    }
}

impl<F: FnMut(&Expr)> Collect<F> {
    /// A collector that shows `outside` the expressions outside subqueries.
    pub fn new(outside: F) -> Self {
        Collect {
            depth: 0,
            found: Vec::new(),
            outside,
        }
    }
}

impl<F: FnMut(&Expr)> Visitor for Collect<F> {
    type Break = ();
    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        if self.depth == 0 {
            self.found.push(q.clone());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth == 0 {
            (self.outside)(e);
        }
        ControlFlow::Continue(())
    }
}

/// The subqueries of a SELECT's expressions and of an ORDER BY.
fn subqueries_of(select: Option<&ast::Select>, order_by: Option<&ast::OrderBy>) -> Vec<ast::Query> {
    fn constraints(twj: &ast::TableWithJoins, c: &mut Collect) {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = &twj.relation
        {
            constraints(table_with_joins, c);
        }
        for j in &twj.joins {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = &j.relation
            {
                constraints(table_with_joins, c);
            }
            if let Ok(JoinConstraint::On(e)) = constraint(&j.join_operator) {
                let _ = e.visit(c);
            }
        }
    }
    let mut c = Collect::default();
    if let Some(s) = select {
        let _ = s.projection.visit(&mut c);
        let _ = s.selection.visit(&mut c);
        let _ = s.group_by.visit(&mut c);
        let _ = s.having.visit(&mut c);
        for twj in &s.from {
            constraints(twj, &mut c);
        }
    }
    if let Some(o) = order_by {
        let _ = o.visit(&mut c);
    }
    c.found
}

/// [`direct_subqueries`] of a SELECT that is not a query's whole body (a
/// UNION's part).
fn select_subqueries(s: &ast::Select) -> Vec<ast::Query> {
    subqueries_of(Some(s), None)
}
