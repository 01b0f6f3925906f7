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
//! Only conditions of the WHERE clause's top-level AND are pulled out;
//! what is left must plan on its own.

use sqlparser::ast::{self, BinaryOperator, Expr, SetExpr, TableFactor};

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
}

/// The marker of subquery `i` (0-based) in the outer template.
pub fn marker(i: usize) -> String {
    format!(":vSQ{}", i + 1)
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
    let names: Vec<(String, bool)> = sel
        .from
        .iter()
        .flat_map(|twj| std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)))
        .filter_map(|f| match f {
            TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.clone(),
                None => name.0.last().map(|p| p.to_string()).unwrap_or_default(),
            }),
            TableFactor::Derived { alias: Some(a), .. } => Some(a.name.value.clone()),
            _ => None,
        })
        .map(|n| (n, false))
        .collect();
    let mut outer = q.clone();
    let mut pulled: Vec<(PulloutKind, Option<String>, ast::Query)> = Vec::new();
    if let SetExpr::Select(s) = outer.body.as_mut() {
        if let Some(w) = s.selection.as_mut() {
            pull(w, &names, &mut pulled);
        }
    }
    if pulled.is_empty() {
        return Err(refused);
    }
    let outer = outer.to_string();
    // What is left must plan with any values in place of the markers.
    let mut probe = outer.clone();
    for i in (0..pulled.len()).rev() {
        probe = probe.replace(&marker(i), "1");
    }
    plan_sharded(&probe, ks, snap)?;
    let subqueries = pulled
        .into_iter()
        .map(|(kind, tested, sub)| {
            let sql = sub.to_string();
            Ok(Subquery {
                kind,
                tested,
                plan: plan_sharded(&sql, ks, snap)?,
                sql,
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    Ok(PulloutPlan {
        keyspace: ks.name.clone(),
        subqueries,
        outer,
    })
}

/// Replaces the uncorrelated subquery conditions of `e`'s top-level AND
/// with markers, collecting them.
fn pull(
    e: &mut Expr,
    names: &[(String, bool)],
    pulled: &mut Vec<(PulloutKind, Option<String>, ast::Query)>,
) {
    let uncorrelated =
        |q: &ast::Query| super::join::reads_outer(q, names).is_ok_and(|reads| !reads);
    let mark = |pulled: &Vec<_>| Expr::value(ast::Value::Placeholder(marker(pulled.len())));
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            pull(left, names, pulled);
            pull(right, names, pulled);
        }
        Expr::Nested(inner) => pull(inner, names, pulled),
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
                if let Expr::Subquery(q) = side.as_mut() {
                    if uncorrelated(q) {
                        let m = mark(pulled);
                        pulled.push((PulloutKind::Value, None, (**q).clone()));
                        **side = m;
                    }
                }
            }
        }
        _ => {}
    }
}
