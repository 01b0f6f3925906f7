//! Joins of tables that live on different shards: a nested loop, as
//! vtgate's Join primitive. The tables split into two sides: the left is
//! the group of the first sharded table (the colocation rules keep it on
//! one route), the right the rest, itself a nested loop when its tables
//! are on several routes (a left-deep tree); a right side of another
//! keyspace's tables is planned in that keyspace. The left side's query runs
//! first; for each of its rows the right side's query runs with the left
//! columns it names bound as values (join variables), and each right row
//! it returns makes one output row. A LEFT JOIN whose right operand is the
//! right side emits a left row without matches once, its right columns
//! NULL.
//!
//! What runs on each side is an ordinary sharded SELECT, planned as any
//! other: one shard when its WHERE (or a join variable) names one, else a
//! scatter. ORDER BY on left columns goes down to the left side, whose
//! order the loop keeps; LIMIT and OFFSET apply to the joined rows.
//! Groupings, aggregates, DISTINCT and other orders are the gate's, over
//! all the joined rows, as for a scatter's (each row its own part).
//! Each column must name its table: unqualified names are given theirs
//! first where the gate knows the tables' columns (the `qualify` module).
//! Subqueries that read both sides are refused.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, visit_expressions_mut, Expr, JoinConstraint, JoinOperator, OrderByKind, SelectItem,
    SetExpr, TableFactor, Visit, Visitor,
};

use super::colocate::{equate, Sets};
use super::sharded::{
    conjuncts, has_aggregate, horizon, limit_parts, parse, plan_select, select_ref, table_info,
    unsupported, weight_string, windowed, Gate, GateExpr, Operand, SelectPlan, SortKey, TableInfo,
    Weight, HIDDEN,
};
use super::PlanError;
use crate::topo::{Keyspace, Snapshot};

/// A nested-loop join of two routes.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinPlan {
    /// The left side: this keyspace's query, or another keyspace's (a
    /// LEFT JOIN keeping that keyspace's rows). Its columns are the
    /// output's left items, then the left columns the right side binds.
    pub lhs: Box<super::Plan>,
    /// The left side's statement, for one that is another (unsharded)
    /// keyspace's [`super::Plan::Route`], which runs text.
    pub lhs_sql: String,
    /// The right side, run once per left row: one route, or, for tables
    /// on three or more routes, a nested loop itself.
    pub rhs: Box<super::Plan>,
    /// The right side's statement with its binds, for a right side that is
    /// another (unsharded) keyspace's [`super::Plan::Route`], which runs
    /// text.
    pub rhs_sql: String,
    /// For each join variable, the left column whose value it takes.
    /// Variable `i` is bind `first_var + i` of the right side's binds,
    /// after the statement's own.
    pub vars: Vec<usize>,
    /// How many binds the statement has: the first join variable's index.
    pub first_var: usize,
    /// Where each output column comes from.
    pub output: Vec<JoinColumn>,
    /// LEFT JOIN: a left row without right rows comes out once.
    pub outer: bool,
    /// A semi-join (a correlated `EXISTS`, vtgate's SemiJoin): each left
    /// row comes out once, alone, when the right side has rows (`true`)
    /// or has none (`false`, `NOT EXISTS`).
    pub semi: Option<bool>,
    /// The right side is a scalar subquery's value: more than one row is
    /// an error (MySQL's 1242), none a NULL.
    pub single: bool,
    /// The right side is an `EXISTS` as a value (`Some(true)`: `NOT
    /// EXISTS`): its column is 1 when the right side found a row, else 0
    /// (the other way round for `NOT EXISTS`).
    pub exists: Option<bool>,
    /// Right columns that must be NULL in an output row (a LEFT JOIN's
    /// `WHERE right.col IS NULL`, which keeps the left rows without a
    /// match), checked after the join.
    pub right_nulls: Vec<usize>,
    /// What a LEFT JOIN's lone left row has for the right side's columns
    /// when one of them is an expression that is not NULL over NULL
    /// columns (`COALESCE(b.x, 0)`, `CASE WHEN b.x > 1 ...`): the right
    /// side's select list over no row, run once on one shard (see
    /// `lone_query`). None: every right column is NULL there.
    pub lone: Option<Box<(super::Plan, String)>>,
    /// LIMIT over the joined rows.
    pub limit: Option<Operand>,
    /// OFFSET over the joined rows.
    pub offset: Option<Operand>,
    /// The gate's work over all the joined rows (their columns being the
    /// horizon's items): grouping, aggregates, DISTINCT, an order the left
    /// side cannot give, and then the limit.
    pub gate: Option<Gate>,
}

/// Where output columns come from: the right side (else the left), and
/// which of its columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinColumn {
    /// One column.
    One(bool, usize),
    /// The side's columns from this one on (its tables' `*`, which its
    /// query selects last).
    Rest(bool, usize),
}

fn refuse(why: impl std::fmt::Display) -> PlanError {
    unsupported(format!("cross-shard joins {why}"))
}

/// A table of the FROM clause, with its side.
struct Side {
    info: TableInfo,
    text: String,
    right: bool,
}

/// Plans `q`, whose tables the colocation rules found on more than one
/// route, as a nested loop.
pub(super) fn plan(
    template: &str,
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<JoinPlan, PlanError> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(refuse("in a UNION"));
    };
    if q.with.is_some() {
        return Err(refuse("with WITH"));
    }
    // USING as the ON it means, before names are placed (its column is
    // no one table's).
    if let Some(on) = using_as_on(q) {
        return plan(template, &on, ks, snap);
    }
    if let Some(left) = right_as_left(q) {
        return plan(template, &left, ks, snap);
    }
    // Names the client left to the server to place are placed first.
    if let Some(qualified) = super::qualify::qualify(q, ks, snap)? {
        return plan(template, &qualified, ks, snap);
    }
    let (grouped, aggregated) = grouped_or_aggregated(sel);
    if let (Some(h), false, false) = (&sel.having, grouped, aggregated) {
        if has_aggregate(h) {
            return Err(refuse("with an aggregate only in HAVING"));
        }
        // With nothing grouped, HAVING keeps rows as WHERE would, its
        // names the select list's aliases first: planned as that.
        return plan(template, &having_as_where(q, sel, h), ks, snap);
    }
    if sel.into.is_some() || q.fetch.is_some() || q.for_clause.is_some() {
        return Err(refuse("with INTO, FETCH or FOR"));
    }
    // A window reads the joined rows, not one side's (where a window over
    // one side's columns would otherwise go): over the joined rows,
    // gathered first.
    if windowed(q, sel) {
        return Err(unsupported("window functions across shards over a join"));
    }
    // Row locks are taken on both sides, as one server would take them.
    let locks: String = q.locks.iter().map(|l| format!(" {l}")).collect();

    // The tables, inner-join conditions, and a LEFT JOIN's right table.
    let mut tables: Vec<(TableInfo, String)> = Vec::new();
    let mut inner_on: Vec<Expr> = Vec::new();
    let mut left: Option<(usize, Vec<Expr>)> = None;
    // A LEFT JOIN before other joins: the last table is peeled off.
    let mut peel = false;
    for (n, twj) in sel.from.iter().enumerate() {
        push_factor(ks, &twj.relation, &mut tables, &mut inner_on)?;
        for (k, j) in twj.joins.iter().enumerate() {
            let last = n + 1 == sel.from.len() && k + 1 == twj.joins.len();
            match &j.join_operator {
                JoinOperator::Left(JoinConstraint::On(e))
                | JoinOperator::LeftOuter(JoinConstraint::On(e))
                    if last =>
                {
                    push_table(ks, &j.relation, &mut tables)?;
                    left = Some((
                        tables.len() - 1,
                        conjuncts(e).into_iter().cloned().collect(),
                    ));
                }
                JoinOperator::Left(JoinConstraint::On(_))
                | JoinOperator::LeftOuter(JoinConstraint::On(_)) => {
                    push_factor(ks, &j.relation, &mut tables, &mut Vec::new())?;
                    peel = true;
                }
                op => {
                    push_factor(ks, &j.relation, &mut tables, &mut inner_on)?;
                    inner_on.extend(
                        inner_condition(op)?
                            .into_iter()
                            .flat_map(conjuncts)
                            .cloned(),
                    );
                }
            }
        }
    }
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.visible_name()).collect();
    if let Some(i) = (1..names.len()).find(|&i| names[..i].contains(&names[i])) {
        return Err(PlanError::NotUniqueTable(names[i].to_string()));
    }

    // Two groups of colocated sharded tables: the first table's, and the
    // rest. Reference tables go left.
    let infos: Vec<TableInfo> = tables.iter().map(|(t, _)| t.clone()).collect();
    let mut same = Sets::default();
    for e in sel.selection.iter().chain(inner_on.iter()) {
        equate(e, &infos, &mut same);
    }
    if let Some((_, on)) = &left {
        for e in on {
            equate(e, &infos, &mut same);
        }
    }
    // The left side is this keyspace's first sharded table's group; other
    // keyspaces' tables, and tables on further routes, join on the right
    // (a nested loop of their own when they are on several).
    let home = |i: &usize| infos[*i].keyspace.is_none();
    let Some(first) = (0..infos.len())
        .filter(home)
        .find(|&i| infos[i].kind != "reference")
        .or_else(|| (0..infos.len()).find(|i| home(i) && !ks.sharded))
    else {
        return Err(refuse("without sharded tables"));
    };
    let left_root = same.root(first);
    // A LEFT JOIN of this keyspace's table to another keyspace's tables
    // keeps theirs: they are the left side.
    let flipped = left.as_ref().is_some_and(|(i, _)| {
        infos[*i].keyspace.is_none()
            && (0..infos.len()).all(|j| j == *i || infos[j].keyspace.is_some())
    });
    let sides: Vec<Side> = tables
        .into_iter()
        .enumerate()
        .map(|(i, (info, text))| Side {
            right: match flipped {
                true => info.keyspace.is_none(),
                false => info.kind != "reference" && same.root(i) != left_root,
            },
            info,
            text,
        })
        .collect();
    let mut sides = sides;
    if let Some((i, _)) = &left {
        if !sides[*i].right || sides.iter().filter(|s| s.right).count() != 1 {
            peel = true;
        }
    }
    // Peeled: the last table is the right side, and the statement without
    // it (its FROM clause as written, whatever it joins) the left, planned
    // as a statement of its own, as vtgate's operators nest.
    let prefix = match peel {
        false => None,
        true => {
            let (prefix, last) = peel_last(&sel.from)
                .ok_or_else(|| refuse("other than inner joins and LEFT JOIN ... ON"))?;
            inner_on.clear();
            left = None;
            match &last {
                JoinOperator::Left(JoinConstraint::On(e))
                | JoinOperator::LeftOuter(JoinConstraint::On(e)) => {
                    left = Some((sides.len() - 1, conjuncts(e).into_iter().cloned().collect()));
                }
                op => inner_on.extend(
                    inner_condition(op)?
                        .into_iter()
                        .flat_map(conjuncts)
                        .cloned(),
                ),
            }
            let n = sides.len();
            for (i, side) in sides.iter_mut().enumerate() {
                side.right = i + 1 == n;
            }
            Some(prefix)
        }
    };
    let side_names: Vec<(String, bool)> = sides
        .iter()
        .map(|s| (s.info.visible_name().to_string(), s.right))
        .collect();
    let first_var = bind_count(template);
    let mut vars = Vars {
        names: &side_names,
        first_var,
        columns: Vec::new(),
    };

    // ORDER BY left columns goes to the left side, whose order the loop
    // keeps; anything else is the gate's, over the joined rows.
    let mut order = Vec::new();
    let mut gate_needed = grouped || aggregated || sel.distinct.is_some();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(items) = &ob.kind else {
            return Err(refuse("with ORDER BY ALL"));
        };
        for o in items {
            let (e, key) = order_key(o, &sel.projection)?;
            if reach(&e, &side_names)?.1 {
                gate_needed = true;
            }
            order.push(key);
        }
    }
    let (mut limit, mut offset) = limit_parts(q)?;
    let (projection, gate) = if gate_needed {
        order.clear();
        (limit, offset) = (None, None);
        let infos: Vec<TableInfo> = sides.iter().map(|s| s.info.clone()).collect();
        let h = horizon(sel, q, &infos, true)?;
        let parsed = match parse(&format!("SELECT {}", h.items.join(", ")))? {
            ast::Statement::Query(q) => match *q.body {
                SetExpr::Select(s) => s.projection,
                _ => return Err(refuse("(its columns did not parse)")),
            },
            _ => return Err(refuse("(its columns did not parse)")),
        };
        (parsed, h.gate)
    } else {
        (sel.projection.clone(), None)
    };

    // The select list. A side's `*` goes last in its query, after its
    // named columns (and, on the left, the columns the right binds).
    let (mut lhs_items, mut rhs_items, mut output) = (Vec::new(), Vec::new(), Vec::new());
    let mut stars: [Option<String>; 2] = [None, None];
    let mut star = |right: bool, text: String, output: &mut Vec<JoinColumn>| {
        let slot = &mut stars[usize::from(right)];
        if slot.is_some() {
            return Err(refuse("with more than one '*' per route"));
        }
        *slot = Some(text);
        output.push(JoinColumn::Rest(right, usize::MAX));
        Ok(())
    };
    let right_names: Vec<&str> = side_names
        .iter()
        .filter(|(_, right)| *right)
        .map(|(n, _)| n.as_str())
        .collect();
    // A right column a LEFT JOIN's lone row cannot leave NULL.
    let mut lone_needed = false;
    for item in &projection {
        let (e, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            SelectItem::Wildcard(_) => {
                // Every table, in FROM order: the left's, then the right's.
                let first_right = sides.iter().position(|s| s.right).unwrap_or(sides.len());
                if sides[first_right..].iter().any(|s| !s.right) {
                    return Err(refuse(
                        "with '*' over tables of the first route after the second's",
                    ));
                }
                for right in [false, true] {
                    let all: Vec<String> = sides
                        .iter()
                        .filter(|s| s.right == right)
                        .map(|s| format!("{}.*", s.info.visible_name()))
                        .collect();
                    star(right, all.join(", "), &mut output)?;
                }
                continue;
            }
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) => {
                let q = n.0.last().map(|p| p.to_string()).unwrap_or_default();
                let q = q.trim_matches('`');
                let Some((_, right)) = side_names.iter().find(|(name, _)| name == q) else {
                    return Err(PlanError::UnknownTable(q.to_string()));
                };
                star(*right, item.to_string(), &mut output)?;
                continue;
            }
            _ => return Err(refuse("with this select item")),
        };
        match reach(e, &side_names)? {
            (_, false) => {
                output.push(JoinColumn::One(false, lhs_items.len()));
                lhs_items.push(item.to_string());
            }
            (false, true) => {
                lone_needed |= left.is_some() && !null_when(e, &right_names);
                output.push(JoinColumn::One(true, rhs_items.len()));
                rhs_items.push(item.to_string());
            }
            (true, true) if left.is_some() => {
                return Err(refuse("with an expression over both sides of a LEFT JOIN"))
            }
            (true, true) => {
                // Computed on the right, the left columns bound; named as
                // the client wrote it.
                let name = alias
                    .map(|a| a.value.clone())
                    .unwrap_or_else(|| super::sharded::item_name(e));
                output.push(JoinColumn::One(true, rhs_items.len()));
                rhs_items.push(format!("{} AS {}", vars.bind(e)?, quote_ident(&name)));
            }
        }
    }

    // Conditions: each goes to the side it reads; one reading both goes
    // right, the left columns bound.
    let (mut lhs_where, mut rhs_where) = (Vec::new(), Vec::new());
    let where_conjuncts: Vec<Expr> = sel
        .selection
        .as_ref()
        .map(|s| conjuncts(s).into_iter().cloned().collect())
        .unwrap_or_default();
    let from_where = where_conjuncts.iter().map(|c| (c, true));
    let (mut right_nulls, mut inner_after) = (Vec::new(), false);
    for (c, in_where) in from_where.chain(inner_on.iter().map(|c| (c, false))) {
        match reach(c, &side_names)? {
            (_, false) => lhs_where.push(conjunct(c, c.to_string())),
            // A condition no row without a match passes (NULL right
            // columns make it NULL): the LEFT JOIN keeps only matched
            // rows, an inner join, the condition one of the right side's.
            (false, true) if left.is_some() && in_where && null_rejecting(c, &right_names) => {
                rhs_where.push(conjunct(c, c.to_string()));
                inner_after = true;
            }
            (true, true) if left.is_some() && in_where && null_rejecting(c, &right_names) => {
                rhs_where.push(conjunct(c, vars.bind(c)?));
                inner_after = true;
            }
            // Over a LEFT JOIN's right table: `IS NOT NULL` keeps only
            // matched rows (an inner join); `IS NULL` is checked on the
            // joined rows, lone left rows passing.
            (false, true) if left.is_some() && in_where => match c {
                Expr::IsNotNull(_) => {
                    rhs_where.push(c.to_string());
                    inner_after = true;
                }
                Expr::IsNull(inner) => {
                    right_nulls.push(rhs_items.len());
                    rhs_items.push(inner.to_string());
                }
                _ => {
                    return Err(refuse(
                        "with a WHERE condition on the LEFT JOIN's right table",
                    ))
                }
            },
            (_, true) if left.is_some() && in_where => {
                return Err(refuse(
                    "with a WHERE condition on the LEFT JOIN's right table",
                ))
            }
            (false, true) => rhs_where.push(conjunct(c, c.to_string())),
            (true, true) => rhs_where.push(conjunct(c, vars.bind(c)?)),
        }
    }
    // A LEFT JOIN's ON conditions, whatever they read, decide which right
    // rows match.
    if let Some((_, on)) = &left {
        for c in on {
            reach(c, &side_names)?;
            rhs_where.push(conjunct(c, vars.bind(c)?));
        }
    }

    let var_columns: Vec<usize> = (0..vars.columns.len())
        .map(|i| lhs_items.len() + i)
        .collect();
    lhs_items.extend(vars.columns.iter().cloned());
    // Each side's `*` starts after its named columns.
    let starts = [lhs_items.len(), rhs_items.len()];
    for o in &mut output {
        if let JoinColumn::Rest(right, start) = o {
            *start = starts[usize::from(*right)];
        }
    }
    let [lhs_star, rhs_star] = stars;
    lhs_items.extend(lhs_star);
    rhs_items.extend(rhs_star);
    let side_sql = |right: bool, items: &[String], conds: &[String], order: &[String]| {
        let from: Vec<&str> = match (right, &prefix) {
            (false, Some(prefix)) => vec![prefix.as_str()],
            _ => sides
                .iter()
                .filter(|s| s.right == right)
                .map(|s| s.text.as_str())
                .collect(),
        };
        format!(
            "SELECT {} FROM {}{}{}{}",
            if items.is_empty() {
                "1".to_string()
            } else {
                items.join(", ")
            },
            from.join(", "),
            if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            },
            if order.is_empty() {
                String::new()
            } else {
                format!(" ORDER BY {}", order.join(", "))
            },
            locks
        )
    };
    let lhs_sql = side_sql(false, &lhs_items, &lhs_where, &order);
    let rhs_sql = side_sql(true, &rhs_items, &rhs_where, &[]);
    // A side of one other keyspace's tables is planned there.
    let other = |right: bool| {
        let mut elsewhere = sides
            .iter()
            .filter(|s| s.right == right)
            .map(|s| &s.info.keyspace);
        match elsewhere.next() {
            Some(Some(k)) if elsewhere.all(|o| o.as_ref() == Some(k)) => Some(k.clone()),
            _ => None,
        }
    };
    let outer = left.is_some() && !inner_after;
    let lone = match outer && lone_needed {
        true => {
            let from: Vec<&str> = sides
                .iter()
                .filter(|s| s.right)
                .map(|s| s.text.as_str())
                .collect();
            let there = match other(true) {
                Some(k) => Some(k),
                None if sides.iter().any(|s| s.right && s.info.keyspace.is_some()) => {
                    return Err(refuse(
                        "with a computed column of a LEFT JOIN's right side across keyspaces",
                    ))
                }
                None => None,
            };
            Some(Box::new(lone_query(&rhs_items, &from, there, ks, snap)?))
        }
        false => None,
    };
    let (rhs, rhs_sql) = match other(true) {
        Some(k) => plan_elsewhere(&rhs_sql, &k, snap)?,
        None => (plan_right(&rhs_sql, ks, snap)?, rhs_sql),
    };
    let (lhs, lhs_sql) = match other(false) {
        Some(k) => plan_elsewhere(&lhs_sql, &k, snap)?,
        None if prefix.is_some() => plan_there(lhs_sql, ks, snap)?,
        None => (
            super::Plan::Select(Box::new(plan_side(&lhs_sql, ks)?)),
            lhs_sql,
        ),
    };
    Ok(JoinPlan {
        lhs: Box::new(lhs),
        lhs_sql,
        rhs: Box::new(rhs),
        rhs_sql,
        vars: var_columns,
        first_var,
        output,
        outer,
        semi: None,
        single: false,
        exists: None,
        right_nulls,
        lone,
        limit,
        offset,
        gate,
    })
}

/// Subquery `sub`'s ORDER BY and HAVING with its one item's alias (which
/// the value join renames to the statement's name for the value) written
/// as the item's expression: `(SELECT a + b AS s ... ORDER BY s DESC)`
/// sorts as before once `s` is gone.
fn unalias_value(sub: &mut ast::Query) {
    let SetExpr::Select(inner) = sub.body.as_mut() else {
        return;
    };
    let [SelectItem::ExprWithAlias { expr, alias }] = inner.projection.as_slice() else {
        return;
    };
    let (expr, alias) = (Expr::Nested(Box::new(expr.clone())), alias.value.clone());
    let mut named = |x: &mut Expr| {
        if matches!(x, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&alias)) {
            *x = expr.clone();
        }
        ControlFlow::<()>::Continue(())
    };
    if let Some(h) = inner.having.as_mut() {
        let _ = ast::visit_expressions_mut(h, &mut named);
    }
    if let Some(ob) = sub.order_by.as_mut() {
        let _ = ast::visit_expressions_mut(ob, &mut named);
    }
}

/// Plans a SELECT whose WHERE holds a correlated `[NOT] EXISTS` that no
/// route answers with the statement, as vtgate's SemiJoin: the statement
/// without it is the left side, its columns the subquery reads (qualified
/// by the statement's tables) bound as join variables; the subquery, with
/// `LIMIT 1`, is the right side, run once per left row; a left row comes
/// out when the right side answers with a row (with none, for `NOT
/// EXISTS`). The statement's ORDER BY goes to the left side, its LIMIT
/// applies to the rows that come out; grouping, aggregates and DISTINCT
/// are the gate's over those rows, as over a join's. ORDER BY ALL is
/// refused (`refused`).
pub(super) fn plan_semi(
    template: &str,
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<JoinPlan, PlanError> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(refused);
    };
    let (grouped, aggregated) = grouped_or_aggregated(sel);
    let order_all = q
        .order_by
        .as_ref()
        .is_some_and(|ob| matches!(ob.kind, OrderByKind::All(_)));
    // Grouping, aggregates and DISTINCT are the gate's, over the rows
    // that come out.
    let gate_needed = grouped || aggregated || sel.distinct.is_some();
    if q.with.is_some()
        || order_all
        || (sel.having.is_some() && !gate_needed)
        || sel.into.is_some()
        || q.fetch.is_some()
    {
        return Err(refused);
    }
    // Row locks are the statement's rows' (MySQL locks a subquery's rows
    // only when it says so itself): the left side takes them.
    let locks: String = q.locks.iter().map(|l| format!(" {l}")).collect();
    // The statement's tables, by the names it knows them by.
    let mut names: Vec<(String, bool)> = Vec::new();
    let mut infos: Vec<TableInfo> = Vec::new();
    for f in factors(&sel.from) {
        let mut tables = Vec::new();
        push_table(ks, f, &mut tables).map_err(|_| refuse("with EXISTS over this FROM clause"))?;
        for (info, _) in tables {
            names.push((info.visible_name().to_string(), false));
            infos.push(info);
        }
    }
    // The one correlated [NOT] EXISTS; the rest stays with the statement.
    let conds: Vec<Expr> = sel
        .selection
        .as_ref()
        .map(|s| conjuncts(s).into_iter().cloned().collect())
        .unwrap_or_default();
    let mut exists: Option<(ast::Query, bool)> = None;
    let mut rest: Vec<String> = Vec::new();
    for c in conds {
        match c {
            Expr::Exists { subquery, negated }
                if exists.is_none() && reads_outer(&subquery, &names)? =>
            {
                exists = Some((*subquery, !negated));
            }
            // `a IN (SELECT b ... WHERE c)` keeps the rows of
            // `EXISTS (SELECT b ... WHERE c AND b = a)`; `a NOT IN (...)`
            // those of `NOT EXISTS (... WHERE c AND (b = a OR b IS NULL OR
            // a IS NULL))`, which is what NOT IN says where NULLs are.
            Expr::In {
                ref expr,
                target: ast::InTarget::Subquery(ref q),
                negated,
                ..
            } if exists.is_none() && reads_outer(q, &names)? => {
                // Moved into the subquery, a bare column would be its
                // tables' first.
                let lone = match names.as_slice() {
                    [(t, _)] => Some(t.as_str()),
                    _ => None,
                };
                let Some(expr) = qualify_bare(expr, lone) else {
                    return Err(refuse(format!(
                        "need each column qualified by its table: '{expr}'"
                    )));
                };
                match in_as_exists(&expr, q, negated) {
                    Some(sub) => exists = Some((sub, !negated)),
                    None => rest.push(conjunct(&c, c.to_string())),
                }
            }
            other => rest.push(conjunct(&other, other.to_string())),
        }
    }
    // Else one correlated scalar subquery in the select list (with no
    // gate over it): its value per left row, NULL when it finds none; or
    // an `EXISTS` there, 1 or 0 per left row.
    let mut exists_value = None;
    let value = match exists {
        Some(_) => None,
        None if gate_needed => None,
        None => sel.projection.iter().enumerate().find_map(|(i, p)| {
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = p else {
                return None;
            };
            let (sub, negated) = match e {
                Expr::Subquery(sub) => (sub, None),
                Expr::Exists { subquery, negated } => (subquery, Some(*negated)),
                _ => return None,
            };
            if !reads_outer(sub, &names).unwrap_or(false) {
                return None;
            }
            exists_value = negated;
            Some((i, (**sub).clone()))
        }),
    };
    // A window over the rows the filter keeps: those rows first
    // (gathered, the window computed over them on one tablet), not the
    // left side's before the filter.
    if exists.is_some() && windowed(q, sel) {
        return Err(unsupported(
            "window functions across shards over the rows an EXISTS keeps",
        ));
    }
    let (mut sub, keep_matched) = match (exists, &value) {
        (Some(e), _) => e,
        (None, Some((_, sub))) => (sub.clone(), true),
        (None, None) => return Err(refused),
    };
    // ORDER BY the value (by its position, alias or text): the gate sorts
    // the joined rows, the left side's keys and the value each with its
    // weight string beside it (the right side sends the value's, unless it
    // is a count, sum or average: a number).
    let order_items = match q.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(items)) => items.as_slice(),
        _ => &[],
    };
    let value_item = value.as_ref().and_then(|(i, _)| match &sel.projection[*i] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    });
    let value_sorted = value_item.is_some_and(|v| {
        order_items
            .iter()
            .any(|o| order_key(o, &sel.projection).is_ok_and(|(e, _)| *e == *v))
    });
    let first_var = bind_count(template);
    let mut vars = Vars {
        names: &names,
        first_var,
        columns: Vec::new(),
    };
    // The subquery reads the statement's columns as join variables.
    let _ = ast::visit_expressions_mut(&mut sub, |x| {
        if let Expr::CompoundIdentifier(parts) = x {
            let q = parts[parts.len().saturating_sub(2)].value.trim_matches('`');
            if names.iter().any(|(n, _)| n == q) {
                *x = vars.var(x.to_string());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    // Its own tables must not share the statement's names (which one a
    // column names would be MariaDB's call).
    if let SetExpr::Select(inner) = sub.body.as_ref() {
        if let Some(own) = from_names(inner)
            .into_iter()
            .find(|own| names.iter().any(|(n, _)| n == own))
        {
            return Err(refuse(format!(
                "with EXISTS over a table named as the statement's ({own})"
            )));
        }
    }
    // EXISTS needs one row; a value, to know there is no second.
    if sub.limit_clause.is_none() {
        let limit = if value.is_some() && exists_value.is_none() {
            2
        } else {
            1
        };
        let Ok(ast::Statement::Query(one)) = super::sharded::parse(&format!("{sub} LIMIT {limit}"))
        else {
            return Err(refuse("(the subquery did not parse)"));
        };
        sub = *one;
    }
    // A value's column is named as the statement names it.
    let mut value_weighed = false;
    if let Some((i, _)) = &value {
        let name = match &sel.projection[*i] {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            other => crate::sql::normalize::template_name(&other.to_string()),
        };
        unalias_value(&mut sub);
        let SetExpr::Select(inner) = sub.body.as_mut() else {
            return Err(refuse(
                "with a subquery in the select list that is no SELECT",
            ));
        };
        match inner.projection.as_mut_slice() {
            // An EXISTS as a value reads whether a row is found, whatever
            // its columns.
            _ if exists_value.is_some() => {
                let Some(one) = super::sharded::condition("1") else {
                    return Err(refuse("(a constant did not parse)"));
                };
                inner.projection = vec![SelectItem::ExprWithAlias {
                    expr: one,
                    alias: ast::Ident::with_quote('`', name),
                }];
            }
            [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => {
                value_weighed = value_sorted && !numeric_aggregate(e);
                let value = e.clone();
                inner.projection = vec![SelectItem::ExprWithAlias {
                    expr: value.clone(),
                    alias: ast::Ident::with_quote('`', name),
                }];
                if value_weighed {
                    let weight = super::sharded::condition(&weight_string(&value.to_string()));
                    let Some(w) = weight else {
                        return Err(refuse("(the value's weight did not parse)"));
                    };
                    inner.projection.push(SelectItem::UnnamedExpr(w));
                }
            }
            _ => return Err(PlanError::OperandColumns),
        }
    }
    let rhs_text = sub.to_string();
    let (rhs, rhs_sql) = plan_there(rhs_text, ks, snap)?;
    // The statement without the EXISTS, the variables' columns first; with
    // a gate, the columns its work needs, per row.
    let nvars = vars.columns.len();
    let mut items = vars.columns.clone();
    let mut output = Vec::new();
    let (gate, order, (limit, offset)) = if gate_needed {
        let h = horizon(sel, q, &infos, true)?;
        items.extend(h.items);
        output.push(JoinColumn::Rest(false, nvars));
        (h.gate, String::new(), (None, None))
    } else {
        // Named columns first, then a `*` (its columns run to the end).
        let mut star: Option<String> = None;
        for (i, p) in sel.projection.iter().enumerate() {
            if value.as_ref().is_some_and(|(v, _)| *v == i) {
                output.push(JoinColumn::One(true, 0));
                continue;
            }
            let all = match p {
                SelectItem::Wildcard(_) => names
                    .iter()
                    .map(|(n, _)| format!("{}.*", quote_ident(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                SelectItem::QualifiedWildcard(..) => p.to_string(),
                other => {
                    output.push(JoinColumn::One(false, items.len()));
                    items.push(other.to_string());
                    continue;
                }
            };
            if star.replace(all).is_some() {
                return Err(refuse("with more than one '*'"));
            }
            output.push(JoinColumn::Rest(false, usize::MAX));
        }
        // Sorted at the gate: each key and its weight string as hidden
        // columns after the shown ones (the left side's before its `*`).
        let mut sort = Vec::new();
        let mut hidden = Vec::new();
        for o in order_items.iter().filter(|_| value_sorted) {
            let (e, _) = order_key(o, &sel.projection)?;
            let at = HIDDEN + hidden.len();
            let weighed = if value_item.is_some_and(|v| *e == *v) {
                hidden.push(JoinColumn::One(true, 0));
                if value_weighed {
                    hidden.push(JoinColumn::One(true, 1));
                }
                value_weighed
            } else if has_subquery(&*e) {
                // A column holding another subquery (the left side's own
                // value join) is read again from the output, compared by
                // its value: its text sent again would be a second one.
                let shown = sel.projection.iter().position(|p| match p {
                    SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                        *x == *e
                    }
                    _ => false,
                });
                match (shown, star.is_some()) {
                    (Some(i), false) => hidden.push(output[i]),
                    _ => return Err(refuse("ordered by a subquery that is no column")),
                }
                false
            } else {
                for text in [e.to_string(), weight_string(&e.to_string())] {
                    hidden.push(JoinColumn::One(false, items.len()));
                    items.push(text);
                }
                true
            };
            sort.push(SortKey {
                expr: GateExpr::Col(at),
                weight: weighed.then_some(Weight::Column(at + 1)),
                desc: matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
            });
        }
        let start = items.len();
        for o in &mut output {
            if let JoinColumn::Rest(_, from) = o {
                *from = start;
            }
        }
        items.extend(star);
        if value_sorted {
            let (limit, offset) = limit_parts(q)?;
            let gate = Gate {
                hidden: hidden.len(),
                order: sort,
                limit,
                offset,
                ..Gate::default()
            };
            output.extend(hidden);
            (Some(gate), String::new(), (None, None))
        } else {
            // The left side's columns start with the variables: its ORDER
            // BY names what the statement's positions and aliases stand
            // for.
            let mut keys = Vec::new();
            for o in order_items {
                keys.push(order_key(o, &sel.projection)?.1);
            }
            let order = match keys.is_empty() {
                true => String::new(),
                false => format!(" ORDER BY {}", keys.join(", ")),
            };
            (None, order, limit_parts(q)?)
        }
    };
    let from: Vec<String> = sel.from.iter().map(|f| f.to_string()).collect();
    let lhs_sql = format!(
        "SELECT {} FROM {}{}{order}{locks}",
        items.join(", "),
        from.join(", "),
        if rest.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", rest.join(" AND "))
        },
    );
    let (lhs, lhs_sql) = plan_there(lhs_sql, ks, snap)?;
    Ok(JoinPlan {
        lhs: Box::new(lhs),
        lhs_sql,
        rhs: Box::new(rhs),
        rhs_sql,
        vars: (0..nvars).collect(),
        first_var,
        output,
        outer: value.is_some(),
        semi: value.is_none().then_some(keep_matched),
        single: value.is_some(),
        exists: exists_value,
        right_nulls: Vec::new(),
        lone: None,
        limit,
        offset,
        gate,
    })
}

/// A statement that runs on its own (a semi-join's side, a subquery run
/// first), planned where its tables are: another keyspace's (with the
/// text it runs there), else this one's, as a whole statement.
pub(super) fn plan_there(
    text: String,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<(super::Plan, String), PlanError> {
    match super::pullout::elsewhere(&text, ks) {
        Some(other) => plan_elsewhere(&text, other, snap),
        None => Ok((super::sharded::plan(&text, ks, snap)?, text)),
    }
}

/// The right side's select list over no row of its tables, which MariaDB
/// evaluates as a LEFT JOIN's unmatched row has it (its columns NULL, a
/// `COALESCE` or `CASE` over them not): `SELECT items FROM (SELECT 1)
/// AS sg_lone LEFT JOIN (tables) ON 1 = 0`. It reads no rows, so one shard
/// of the tables' keyspace (`there`, else this one) answers it.
fn lone_query(
    items: &[String],
    from: &[&str],
    there: Option<String>,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<(super::Plan, String), PlanError> {
    let sql = format!(
        "SELECT {} FROM (SELECT 1) AS sg_lone LEFT JOIN ({}) ON 1 = 0",
        items.join(", "),
        from.join(", ")
    );
    let (ks, sql) = match &there {
        Some(k) => unqualified(&sql, k, snap)?,
        None => (ks, sql),
    };
    Ok((first_shard(ks)?, sql))
}

/// The right side: one route, else (its tables on several) a nested loop.
fn plan_right(sql: &str, ks: &Keyspace, snap: &Snapshot) -> Result<super::Plan, PlanError> {
    let ast::Statement::Query(q) = parse(sql)? else {
        return Err(refuse("(a side did not parse as a query)"));
    };
    match plan_select(sql, &q, ks) {
        Ok(p) => Ok(super::Plan::Select(Box::new(p))),
        Err(PlanError::Unsupported(m)) if m == "cross-shard joins" => {
            Ok(super::Plan::Join(Box::new(plan(sql, &q, ks, snap)?)))
        }
        Err(e) => Err(e),
    }
}

/// A right side whose tables are all keyspace `other`'s: its statement
/// without their qualifier, planned there (one shard of an unsharded
/// keyspace, or that keyspace's sharded plan); and the text it runs.
pub(super) fn plan_elsewhere(
    sql: &str,
    other: &str,
    snap: &Snapshot,
) -> Result<(super::Plan, String), PlanError> {
    let (ks, stripped) = unqualified(sql, other, snap)?;
    if ks.sharded {
        return Ok((super::sharded::plan(&stripped, ks, snap)?, stripped));
    }
    // The text runs as it is: a shared row lock in MariaDB's words.
    let tokens = crate::sql::lexer::tokenize(&stripped);
    let text = crate::sql::share_lock(&stripped, &tokens, true).unwrap_or(stripped);
    Ok((first_shard(ks)?, text))
}

/// Keyspace `name`, and `sql` without the qualifier naming it.
fn unqualified<'s>(
    sql: &str,
    name: &str,
    snap: &'s Snapshot,
) -> Result<(&'s Keyspace, String), PlanError> {
    let ks = snap
        .keyspaces
        .get(name)
        .ok_or_else(|| PlanError::UnknownKeyspace(name.to_string()))?;
    let stripped = crate::sql::keyspace_qualifier(sql, |n| n == name)
        .map(|(_, s)| s)
        .unwrap_or_else(|| sql.to_string());
    Ok((ks, stripped))
}

/// A statement's route to the first shard of `ks`, which answers it whole
/// (an unsharded keyspace's one shard, or any shard of a statement that
/// reads no rows).
fn first_shard(ks: &Keyspace) -> Result<super::Plan, PlanError> {
    let shard = ks
        .shards
        .first()
        .ok_or_else(|| unsupported(format!("keyspace {} has no shards", ks.name)))?;
    Ok(super::Plan::Route(super::Route {
        keyspace: ks.name.clone(),
        shard: shard.name.clone(),
        tablet_type: crate::sql::TabletType::Primary,
        rename_db_columns: false,
    }))
}

fn plan_side(sql: &str, ks: &Keyspace) -> Result<SelectPlan, PlanError> {
    match parse(sql)? {
        ast::Statement::Query(q) => plan_select(sql, &q, ks),
        _ => Err(refuse("(a side did not parse as a query)")),
    }
}

/// The name a FROM item's table goes by in its statement: its alias,
/// else its own name; None for anything but a table.
pub(super) fn table_shown(f: &TableFactor) -> Option<String> {
    match f {
        TableFactor::Table { name, alias, .. } => Some(match alias {
            Some(a) => a.name.value.clone(),
            None => name.0.last()?.as_ident()?.value.clone(),
        }),
        _ => None,
    }
}

/// `a RIGHT JOIN b ON c` as the `b LEFT JOIN a ON c` it is, the one
/// outer join the nested loop runs. Only for a FROM clause of that one
/// join, and a select list without a bare `*` (whose columns would come
/// in the other order).
fn right_as_left(q: &ast::Query) -> Option<ast::Query> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [twj] = s.from.as_slice() else {
        return None;
    };
    let [j] = twj.joins.as_slice() else {
        return None;
    };
    let (JoinOperator::Right(c) | JoinOperator::RightOuter(c)) = &j.join_operator else {
        return None;
    };
    if !matches!(c, JoinConstraint::On(_))
        || s.projection
            .iter()
            .any(|p| matches!(p, SelectItem::Wildcard(_)))
    {
        return None;
    }
    let mut q = q.clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    let twj = &mut sel.from[0];
    let right = std::mem::replace(&mut twj.relation, twj.joins[0].relation.clone());
    twj.joins[0].relation = right;
    twj.joins[0].join_operator = JoinOperator::LeftOuter(c.clone());
    Some(q)
}

/// `a JOIN b USING (c)` as `a JOIN b ON a.c = b.c`, and the statement's
/// unqualified `c` as `a.c` (MySQL's one column `c` of an inner or LEFT
/// join is the left table's). None for any other shape: a `*` (which
/// shows `c` once), a subquery (whose own `c` would be another), an
/// alias named `c`, or a USING after the first join of its FROM item.
fn using_as_on(q: &ast::Query) -> Option<ast::Query> {
    match q.body.as_ref() {
        SetExpr::Select(s) if !has_subquery(&**s) && !has_subquery(&q.order_by) => {}
        _ => return None,
    }
    let mut q = q.clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    let mut using: Vec<(String, String)> = Vec::new();
    for twj in &mut sel.from {
        for (k, j) in twj.joins.iter_mut().enumerate() {
            let (JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)) = &mut j.join_operator
            else {
                continue;
            };
            let JoinConstraint::Using(cols) = c else {
                continue;
            };
            let (left, right) = match k {
                0 => (table_shown(&twj.relation)?, table_shown(&j.relation)?),
                _ => return None,
            };
            let mut on = Vec::new();
            for col in cols.iter() {
                let name = col.0.last()?.as_ident()?.value.clone();
                on.push(format!(
                    "{}.{q} = {}.{q}",
                    quote_ident(&left),
                    quote_ident(&right),
                    q = quote_ident(&name)
                ));
                using.push((name, left.clone()));
            }
            *c = JoinConstraint::On(super::sharded::condition(&on.join(" AND "))?);
        }
    }
    let aliased = sel.projection.iter().any(|p| match p {
        SelectItem::ExprWithAlias { alias, .. } => using
            .iter()
            .any(|(c, _)| c.eq_ignore_ascii_case(&alias.value)),
        SelectItem::UnnamedExpr(_) => false,
        _ => true,
    });
    if using.is_empty() || aliased {
        return None;
    }
    let _ = ast::visit_expressions_mut(&mut q, |e| {
        if let Expr::Identifier(i) = e {
            if let Some((_, t)) = using.iter().find(|(c, _)| c.eq_ignore_ascii_case(&i.value)) {
                *e = Expr::CompoundIdentifier(vec![ast::Ident::new(t), i.clone()]);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(q)
}

/// The FROM clause without its last table, as SQL, and how that table
/// joins (a comma is a cross join); None when the last is no table.
fn peel_last(from: &[ast::TableWithJoins]) -> Option<(String, JoinOperator)> {
    let mut from = from.to_vec();
    let last = from.last_mut()?;
    let (relation, op) = match last.joins.pop() {
        Some(j) => (j.relation, j.join_operator),
        None => {
            let last = from.pop()?;
            (last.relation, JoinOperator::CrossJoin(JoinConstraint::None))
        }
    };
    if from.is_empty() || matches!(relation, TableFactor::NestedJoin { .. }) {
        return None;
    }
    let text: Vec<String> = from.iter().map(ToString::to_string).collect();
    Some((text.join(", "), op))
}

/// An inner join's condition (None for a cross join); other joins are
/// refused.
fn inner_condition(op: &JoinOperator) -> Result<Option<&Expr>, PlanError> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => match c {
            JoinConstraint::On(e) => Ok(Some(e)),
            JoinConstraint::None => Ok(None),
            _ => Err(refuse("with USING or NATURAL")),
        },
        _ => Err(refuse("other than inner joins and LEFT JOIN ... ON")),
    }
}

/// A table of the FROM clause, or a parenthesized join of inner joins
/// (`a JOIN (b JOIN c ON ...)`), whose tables and conditions join as if
/// written without the parentheses, as they do for inner joins.
fn push_factor(
    ks: &Keyspace,
    f: &TableFactor,
    tables: &mut Vec<(TableInfo, String)>,
    inner_on: &mut Vec<Expr>,
) -> Result<(), PlanError> {
    let TableFactor::NestedJoin {
        table_with_joins,
        alias: None,
    } = f
    else {
        return push_table(ks, f, tables);
    };
    push_factor(ks, &table_with_joins.relation, tables, inner_on)?;
    for j in &table_with_joins.joins {
        let on = inner_condition(&j.join_operator)?;
        push_factor(ks, &j.relation, tables, inner_on)?;
        inner_on.extend(on.into_iter().flat_map(conjuncts).cloned());
    }
    Ok(())
}

fn push_table(
    ks: &Keyspace,
    f: &TableFactor,
    tables: &mut Vec<(TableInfo, String)>,
) -> Result<(), PlanError> {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => {
            let info = table_info(ks, name, alias.as_ref().map(|a| a.name.value.clone()))?;
            tables.push((info, f.to_string()));
            Ok(())
        }
        // A derived table one route answers joins as a table (shown by its
        // alias); others run first (the caller's fallback on this refusal).
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            ..
        } => {
            let (info, _) = super::colocate::derived(ks, subquery, alias)
                .map_err(|_| refuse("over derived tables or nested joins"))?;
            tables.push((info, f.to_string()));
            Ok(())
        }
        _ => Err(refuse("over derived tables or nested joins")),
    }
}

/// Which sides an expression reads: (left, right). Every column must be
/// qualified by a table of the FROM clause. Inside a subquery, the names
/// its own FROM clauses give are its own; what it reads of the join's
/// tables, by their qualified names, counts.
fn reach(e: &Expr, names: &[(String, bool)]) -> Result<(bool, bool), PlanError> {
    let mut r = Reach {
        names,
        inner: Vec::new(),
        sides: (false, false),
        bad: None,
    };
    let _ = e.visit(&mut r);
    match r.bad {
        Some(e) => Err(e),
        None => Ok(r.sides),
    }
}

/// Whether query `q` reads a column of the tables `names` (by a qualified
/// name its own FROM clauses do not shadow): whether it is correlated.
pub(super) fn reads_outer(q: &ast::Query, names: &[(String, bool)]) -> Result<bool, PlanError> {
    let mut r = Reach {
        names,
        inner: Vec::new(),
        sides: (false, false),
        bad: None,
    };
    let _ = q.visit(&mut r);
    match r.bad {
        Some(e) => Err(e),
        None => Ok(r.sides.0 || r.sides.1),
    }
}

/// `x` with its bare columns named by `lone`, the statement's one table,
/// for writing `x` inside a subquery (where a bare name is the
/// subquery's own tables' column first); `None` when `x` has a bare
/// column and there is no one table to name it by. Variables stay, and so
/// do a subquery's own bare names.
pub(super) fn qualify_bare(x: &Expr, lone: Option<&str>) -> Option<Expr> {
    struct Bare<'a> {
        lone: Option<&'a str>,
        left: bool,
    }
    impl DepthWalk for Bare<'_> {
        fn pre(&mut self, c: &mut Expr, depth: usize) -> ControlFlow<()> {
            if let (Expr::Identifier(i), 0) = (&*c, depth) {
                match self.lone {
                    _ if i.value.starts_with('@') => {}
                    Some(t) => *c = Expr::CompoundIdentifier(vec![ast::Ident::new(t), i.clone()]),
                    None => self.left = true,
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut x = x.clone();
    let mut bare = Bare { lone, left: false };
    let _ = walk(&mut x, &mut bare);
    (!bare.left).then_some(x)
}

/// A walk over a statement's expressions that knows how deep in
/// subqueries each is (0: the statement's own; a subquery's bare names are
/// its own), which [`walk`] runs. Each step may break the walk.
pub(super) trait DepthWalk {
    /// Entering a subquery found at `depth`.
    fn query(&mut self, _depth: usize) {}
    /// A FROM item of a subquery (`depth` > 0).
    fn table_factor(&mut self, _t: &mut TableFactor, _depth: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Before a node's children; a node replaced here has its
    /// replacement's children walked.
    fn pre(&mut self, _e: &mut Expr, _depth: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// After them.
    fn post(&mut self, _e: &mut Expr, _depth: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Runs `w` over `v`'s expressions, from the root down, until `w` breaks.
pub(super) fn walk<T, W>(v: &mut T, w: &mut W) -> ControlFlow<()>
where
    T: ast::VisitMut + ?Sized,
    W: DepthWalk,
{
    struct Depth<'a, W> {
        w: &'a mut W,
        depth: usize,
    }
    impl<W: DepthWalk> ast::VisitorMut for Depth<'_, W> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
            self.w.query(self.depth);
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
            self.w.table_factor(t, self.depth)
        }
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            self.w.pre(e, self.depth)
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            self.w.post(e, self.depth)
        }
    }
    v.visit(&mut Depth { w, depth: 0 })
}

/// `tested IN (q)` as the subquery of an EXISTS: `q` with `AND item =
/// tested` in its WHERE (for NOT IN, `AND (item = tested OR item IS NULL
/// OR tested IS NULL)`, for a NOT EXISTS). None when `q` is no plain
/// SELECT of one item (grouped, aggregated, DISTINCT, limited, a set
/// operation).
fn in_as_exists(tested: &Expr, q: &ast::Query, negated: bool) -> Option<ast::Query> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let (grouped, aggregated) = grouped_or_aggregated(s);
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        s.projection.as_slice()
    else {
        return None;
    };
    if grouped
        || aggregated
        || s.having.is_some()
        || s.distinct.is_some()
        || q.limit_clause.is_some()
        || q.with.is_some()
    {
        return None;
    }
    let mut out = q.clone();
    let SetExpr::Select(o) = out.body.as_mut() else {
        return None;
    };
    let item = Expr::Nested(Box::new(item.clone()));
    let tested = Expr::Nested(Box::new(tested.clone()));
    let mut matched = Expr::BinaryOp {
        left: Box::new(item.clone()),
        op: ast::BinaryOperator::Eq,
        right: Box::new(tested.clone()),
    };
    if negated {
        let or = |a: Expr, b: Expr| Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::Or,
            right: Box::new(b),
        };
        matched = Expr::Nested(Box::new(or(
            or(matched, Expr::IsNull(Box::new(item))),
            Expr::IsNull(Box::new(tested)),
        )));
    }
    o.selection = Some(match o.selection.take() {
        Some(w) => Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(w))),
            op: ast::BinaryOperator::And,
            right: Box::new(matched),
        },
        None => matched,
    });
    Some(out)
}

/// An ORDER BY item as a side's query orders by it: the expression a
/// position or alias stands for, and that as SQL with its direction.
fn order_key<'a>(
    o: &'a ast::OrderByExpr,
    projection: &'a [SelectItem],
) -> Result<(std::borrow::Cow<'a, Expr>, String), PlanError> {
    // A join's `*` is not read: a position after one is refused.
    let e = select_ref(&o.expr, projection, &[], "order clause")?;
    let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
    let key = format!("{e}{}", if desc { " DESC" } else { " ASC" });
    Ok((e, key))
}

/// `q` with its HAVING (`h`, of a SELECT that groups nothing) ANDed into
/// its WHERE clause, the select list's aliases it names replaced by what
/// they stand for.
fn having_as_where(q: &ast::Query, sel: &ast::Select, h: &Expr) -> ast::Query {
    let mut cond = h.clone();
    let _ = visit_expressions_mut(&mut cond, |e| {
        if let Expr::Identifier(name) = e {
            let aliased = sel.projection.iter().find_map(|p| match p {
                SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&name.value) =>
                {
                    Some(expr.clone())
                }
                _ => None,
            });
            if let Some(expr) = aliased {
                *e = Expr::Nested(Box::new(expr));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let mut q = q.clone();
    if let SetExpr::Select(s) = q.body.as_mut() {
        s.having = None;
        s.selection = Some(match s.selection.take() {
            Some(w) => Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(w))),
                op: ast::BinaryOperator::And,
                right: Box::new(Expr::Nested(Box::new(cond))),
            },
            None => cond,
        });
    }
    q
}

/// Whether `e` is a COUNT, SUM or AVG: a number, whose order needs no
/// weight string.
fn numeric_aggregate(e: &Expr) -> bool {
    matches!(e, Expr::Function(f)
        if ["count", "sum", "avg"].iter().any(|n| f.name.to_string().eq_ignore_ascii_case(n)))
}

/// Whether a SELECT groups, and whether its select list aggregates.
fn grouped_or_aggregated(sel: &ast::Select) -> (bool, bool) {
    let grouped = match &sel.group_by {
        ast::GroupByExpr::Expressions(g, m) => !g.is_empty() || !m.is_empty(),
        ast::GroupByExpr::All(_) => true,
    };
    let aggregated = sel.projection.iter().any(|p| match p {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
        _ => false,
    });
    (grouped, aggregated)
}

/// The names a SELECT's FROM clause gives its tables (aliases, else the
/// tables' own names) and derived tables.
pub(super) fn from_names(s: &ast::Select) -> Vec<String> {
    names_in(&s.from)
}

/// The FROM items of `from`, each table and derived table of its joins
/// in order.
pub(super) fn factors(from: &[ast::TableWithJoins]) -> impl Iterator<Item = &TableFactor> {
    from.iter()
        .flat_map(|twj| std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)))
}

/// The names the tables of FROM items `from` are known by (aliases where
/// given).
pub(super) fn names_in(from: &[ast::TableWithJoins]) -> Vec<String> {
    factors(from).filter_map(known_as).collect()
}

/// The name a FROM item is known by (its alias, else its table's name).
pub(super) fn known_as(f: &TableFactor) -> Option<String> {
    match f {
        TableFactor::Table { name, alias, .. } => Some(match alias {
            Some(a) => a.name.value.clone(),
            None => name.0.last().map(|p| p.to_string()).unwrap_or_default(),
        }),
        TableFactor::Derived { alias: Some(a), .. } => Some(a.name.value.clone()),
        _ => None,
    }
}

/// [`reach`]'s walk: the table names of the subqueries it is inside.
struct Reach<'a> {
    names: &'a [(String, bool)],
    inner: Vec<Vec<String>>,
    sides: (bool, bool),
    bad: Option<PlanError>,
}

impl Visitor for Reach<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        let own = match q.body.as_ref() {
            SetExpr::Select(s) => from_names(s),
            _ => Vec::new(),
        };
        self.inner.push(own);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.inner.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, x: &Expr) -> ControlFlow<()> {
        match x {
            // A subquery's unqualified names are its own tables' columns.
            Expr::Identifier(i) if self.inner.is_empty() => {
                self.bad = Some(refuse(format!(
                    "need each column qualified by its table: '{}'",
                    i.value
                )));
                return ControlFlow::Break(());
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let q = parts[parts.len() - 2].value.trim_matches('`');
                if self.inner.iter().any(|own| own.iter().any(|n| n == q)) {
                    return ControlFlow::Continue(());
                }
                match self.names.iter().find(|(n, _)| n == q) {
                    Some((_, true)) => self.sides.1 = true,
                    Some((_, false)) => self.sides.0 = true,
                    None if self.inner.is_empty() => {
                        self.bad = Some(PlanError::UnknownColumn {
                            column: x.to_string(),
                            clause: "field list",
                        });
                        return ControlFlow::Break(());
                    }
                    // A subquery's name of something else (a schema...).
                    None => {}
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `text`, condition `c` as SQL, ready to be joined to others with AND:
/// in parentheses when its operator binds looser than AND (a
/// parenthesized OR comes out of [`conjuncts`] bare).
fn conjunct(c: &Expr, text: String) -> String {
    use ast::BinaryOperator as B;
    match c {
        Expr::BinaryOp {
            op: B::Or | B::Xor | B::StringConcat,
            ..
        } => format!("({text})"),
        _ => text,
    }
}

/// Whether condition `e` is NULL or false whenever the columns of the
/// tables `right` are NULL (MySQL's null-rejecting conditions, which turn
/// an outer join into an inner one): a comparison, range, list, pattern or
/// `IS NOT NULL` of an expression that is NULL when they are, and AND,
/// OR and NOT of such. Anything else (IFNULL, COALESCE, `<=>`, IS NULL,
/// functions) is taken as passing NULLs.
fn null_rejecting(e: &Expr, right: &[&str]) -> bool {
    use ast::BinaryOperator as B;
    match e {
        Expr::Nested(inner) => null_rejecting(inner, right),
        Expr::BinaryOp { left, op, right: r } => match op {
            B::And => null_rejecting(left, right) || null_rejecting(r, right),
            B::Or => null_rejecting(left, right) && null_rejecting(r, right),
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                null_when(left, right) || null_when(r, right)
            }
            _ => false,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr,
        } => match expr.as_ref() {
            Expr::Nested(inner) => null_rejecting(
                &Expr::UnaryOp {
                    op: ast::UnaryOperator::Not,
                    expr: inner.clone(),
                },
                right,
            ),
            // NOT of a comparison is NULL when the comparison is.
            Expr::BinaryOp {
                left,
                op: B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq,
                right: r,
            } => null_when(left, right) || null_when(r, right),
            _ => false,
        },
        Expr::Between { expr, .. }
        | Expr::In { expr, .. }
        | Expr::Like { expr, .. }
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsFalse(expr) => null_when(expr, right),
        _ => false,
    }
}

/// Whether `e` is NULL whenever the columns of the tables `right` are: one
/// of those columns, or arithmetic over one.
fn null_when(e: &Expr, right: &[&str]) -> bool {
    use ast::BinaryOperator as B;
    match e {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let q = parts[parts.len() - 2].value.trim_matches('`');
            right.contains(&q)
        }
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => null_when(inner, right),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus | ast::UnaryOperator::Plus,
            expr,
        } => null_when(expr, right),
        Expr::BinaryOp {
            left,
            op: B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::MyIntegerDivide,
            right: r,
        } => null_when(left, right) || null_when(r, right),
        _ => false,
    }
}

/// Whether `e` (an expression, a SELECT, a clause) holds a subquery.
pub(super) fn has_subquery<T: Visit + ?Sized>(e: &T) -> bool {
    struct Any;
    impl Visitor for Any {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    e.visit(&mut Any).is_break()
}

/// The left columns the right side binds.
struct Vars<'a> {
    names: &'a [(String, bool)],
    first_var: usize,
    /// Each variable's left column, as SQL.
    columns: Vec<String>,
}

impl Vars<'_> {
    /// `e` as SQL for the right side: each left column a join variable.
    fn bind(&mut self, e: &Expr) -> Result<String, PlanError> {
        if has_subquery(e) {
            return Err(refuse("with a subquery over both sides"));
        }
        let mut e = e.clone();
        let _ = visit_expressions_mut(&mut e, |x| {
            if let Expr::CompoundIdentifier(parts) = x {
                let q = &parts[parts.len().saturating_sub(2)].value;
                if self.names.iter().any(|(n, right)| n == q && !right) {
                    *x = self.var(x.to_string());
                }
            }
            ControlFlow::<()>::Continue(())
        });
        Ok(e.to_string())
    }

    /// The join variable for left column `col` (as SQL), made on first use.
    fn var(&mut self, col: String) -> Expr {
        let i = match self.columns.iter().position(|c| *c == col) {
            Some(i) => i,
            None => {
                self.columns.push(col);
                self.columns.len() - 1
            }
        };
        Expr::value(ast::Value::Placeholder(format!(
            ":v{}",
            self.first_var + i + 1
        )))
    }
}

/// How many `:vN` binds a template has (the largest N).
fn bind_count(template: &str) -> usize {
    let b = template.as_bytes();
    let mut max = 0;
    for i in 0..b.len() {
        if b[i] == b':' && b.get(i + 1) == Some(&b'v') {
            let digits: String = b[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|&c| c as char)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
        }
    }
    max
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(sql: &str) -> Expr {
        let ast::Statement::Query(q) =
            super::super::sharded::parse(&format!("SELECT 1 FROM a WHERE {sql}")).unwrap()
        else {
            panic!("{sql}")
        };
        let SetExpr::Select(s) = *q.body else {
            panic!("{sql}")
        };
        s.selection.unwrap()
    }

    /// Bare columns moving into a subquery are named by the statement's
    /// one table; a subquery's own bare names and variables stay; with no
    /// one table, a bare column is not guessed.
    #[test]
    fn bare_columns_are_named_by_the_lone_table() {
        let named = |sql: &str, lone| qualify_bare(&cond(sql), lone).map(|e| e.to_string());
        assert_eq!(
            named("k + @v > (SELECT max(k) FROM b)", Some("qa")).as_deref(),
            Some("qa.k + @v > (SELECT max(k) FROM b)")
        );
        assert_eq!(named("a.k", None).as_deref(), Some("a.k"));
        assert_eq!(named("a.k + k", None), None);
    }

    /// What turns a LEFT JOIN with WHERE conditions on its right table
    /// into an inner join, and what does not.
    #[test]
    fn null_rejecting_conditions() {
        for c in [
            "b.x = 5",
            "5 < b.x + a.y",
            "b.x BETWEEN 1 AND 3",
            "b.x IN (1, 2)",
            "b.x NOT IN (1, 2)",
            "b.s LIKE 'm%'",
            "b.x IS NOT NULL",
            "NOT (b.x = 3)",
            "a.y = 1 AND b.x = 2",
            "(b.x < 3 OR b.s = 'q')",
            "-b.x > 0",
        ] {
            assert!(null_rejecting(&cond(c), &["b"]), "{c}");
        }
        for c in [
            "coalesce(b.x, 4) = 5",
            "ifnull(b.x, 1) = 1",
            "b.x <=> 5",
            "b.x IS NULL",
            "a.y = 1",
            "b.x = 2 OR a.y = 1",
            "concat(b.s, 'x') = 'x'",
        ] {
            assert!(!null_rejecting(&cond(c), &["b"]), "{c}");
        }
    }
}
