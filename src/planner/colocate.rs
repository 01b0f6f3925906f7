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
    conjuncts, is_column, route_where, table_info, unsupported, Operand, Routing, TableInfo,
};
use super::PlanError;
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
}

/// Resolves the tables of `from` and the route they share; `selection` is
/// the WHERE clause, whose conjuncts both equate tables and name shards.
pub(super) fn route(
    ks: &Keyspace,
    from: &[ast::TableWithJoins],
    selection: Option<&Expr>,
) -> Result<Joined, PlanError> {
    let mut tables = Vec::new();
    let mut same = Sets::default();
    for twj in from {
        add_joined(ks, twj, &mut tables, &mut same)?;
    }
    if tables.is_empty() {
        return Err(unsupported(
            "statements without a table on a sharded keyspace",
        ));
    }
    if let Some(sel) = selection {
        equate(sel, &tables, &mut same);
    }
    let sharded: Vec<usize> = (0..tables.len())
        .filter(|&i| tables[i].kind != "reference")
        .collect();
    let Some(&first) = sharded.first() else {
        return Ok(Joined {
            tables,
            routing: Routing::Any,
            in_expr: None,
        });
    };
    if sharded.iter().any(|&i| same.root(i) != same.root(first)) {
        return Err(unsupported("cross-shard joins"));
    }
    // Every sharded table is on the joined rows' shard, so any of them
    // names it; take the narrowest.
    let (routing, in_expr) = sharded
        .iter()
        .map(|&i| route_where(selection, &tables[i]))
        .max_by_key(|(r, _)| narrowness(r))
        .unwrap_or((Routing::Scatter, None));
    Ok(Joined {
        tables,
        routing,
        in_expr,
    })
}

/// How few shards a route reaches, higher being fewer.
fn narrowness(r: &Routing) -> u8 {
    match r {
        Routing::Equal { .. } | Routing::Any => 3,
        Routing::In { .. } => 2,
        Routing::Between { .. } => 1,
        Routing::Scatter => 0,
    }
}

/// Tables joined on equal vindex values, as disjoint sets.
#[derive(Default)]
struct Sets {
    parent: Vec<usize>,
}

impl Sets {
    fn root(&mut self, i: usize) -> usize {
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
fn add_joined(
    ks: &Keyspace,
    twj: &ast::TableWithJoins,
    tables: &mut Vec<TableInfo>,
    same: &mut Sets,
) -> Result<(), PlanError> {
    let start = tables.len();
    add_relation(ks, &twj.relation, tables, same)?;
    for join in &twj.joins {
        let left_end = tables.len();
        add_relation(ks, &join.relation, tables, same)?;
        let constraint = constraint(&join.join_operator)?;
        equate_constraint(
            constraint,
            tables,
            start..left_end,
            left_end..tables.len(),
            same,
        );
    }
    Ok(())
}

/// Adds the tables of one FROM item (a table, or a parenthesized join).
fn add_relation(
    ks: &Keyspace,
    f: &TableFactor,
    tables: &mut Vec<TableInfo>,
    same: &mut Sets,
) -> Result<(), PlanError> {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => {
            tables.push(table_info(
                ks,
                name,
                alias.as_ref().map(|a| a.name.value.clone()),
            )?);
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => add_joined(ks, table_with_joins, tables, same),
        TableFactor::Derived { .. } => Err(unsupported("derived tables across shards")),
        other => Err(unsupported(format!("FROM item {other} across shards"))),
    }
}

/// The constraint of a join MySQL has; others are refused.
fn constraint(op: &JoinOperator) -> Result<&JoinConstraint, PlanError> {
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

/// Equates the tables whose vindex columns a conjunct of `e` compares.
fn equate(e: &Expr, tables: &[TableInfo], same: &mut Sets) {
    for c in conjuncts(e) {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        else {
            continue;
        };
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
    routing: &Routing,
) -> Result<Vec<Operand>, PlanError> {
    let pinned_func = match routing {
        Routing::Equal { func, .. } => Some(*func),
        _ => None,
    };
    let mut same_shard = Vec::new();
    for sub in &direct_subqueries(q) {
        merge(ks, sub, outer, pinned_func, &mut same_shard)?;
    }
    Ok(same_shard)
}

fn merge(
    ks: &Keyspace,
    q: &ast::Query,
    scope: &[TableInfo],
    pinned_func: Option<Func>,
    same_shard: &mut Vec<Operand>,
) -> Result<(), PlanError> {
    let refuse = || unsupported("subqueries that do not go to one shard");
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return Err(refuse());
    };
    if q.with.is_some() {
        return Err(refuse());
    }
    let inner = if s.from.is_empty() {
        Vec::new()
    } else {
        let j = route(ks, &s.from, s.selection.as_ref()).map_err(|_| refuse())?;
        let sharded = j.tables.iter().any(|t| t.kind != "reference");
        if sharded && !correlated(scope, &j.tables, s.selection.as_ref()) {
            match (&j.routing, pinned_func) {
                (Routing::Equal { func, value }, Some(f)) if *func == f => {
                    same_shard.push(value.clone())
                }
                (Routing::In { func, values }, Some(f)) if *func == f => {
                    same_shard.extend(values.iter().cloned())
                }
                _ => return Err(refuse()),
            }
        }
        j.tables
    };
    let scope: Vec<TableInfo> = scope.iter().chain(inner.iter()).cloned().collect();
    for sub in &direct_subqueries(q) {
        merge(ks, sub, &scope, pinned_func, same_shard)?;
    }
    Ok(())
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
    conjuncts(sel).into_iter().any(|c| {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        else {
            return false;
        };
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

/// The queries nested in `q` one level down (not `q` itself, and not the
/// queries nested in those), copied out of the visitor's reach.
fn direct_subqueries(q: &ast::Query) -> Vec<ast::Query> {
    struct Collect {
        depth: usize,
        found: Vec<ast::Query>,
    }
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            if self.depth == 1 {
                self.found.push(q.clone());
            }
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect {
        depth: 0,
        found: Vec::new(),
    };
    let _ = q.visit(&mut c);
    c.found
}
