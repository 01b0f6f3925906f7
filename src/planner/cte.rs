//! Common table expressions on sharded keyspaces. A non-recursive WITH
//! names queries; each reference in a FROM clause is the same as that
//! query written there as a derived table, which the planner routes as
//! any other. So the WITH is inlined, and the statement planned without
//! it; a column list becomes the query's aliases.
//!
//! A recursive WITH cannot be inlined: its rows are computed at the gate
//! ([`recursion`] splits it for [`super::pullout::plan_recursive`]).

use std::ops::ControlFlow;

use sqlparser::ast::{self, SetExpr, TableFactor, VisitMut, VisitorMut};

/// `q` with its WITH's queries written where its FROM clauses name them;
/// None when the WITH cannot be inlined.
pub(super) fn inline(q: &ast::Query) -> Option<ast::Query> {
    let with = q.with.as_ref()?;
    if with.recursive {
        return None;
    }
    // Each CTE may name the ones before it.
    let mut ctes: Vec<(ast::TableAlias, ast::Query)> = Vec::new();
    for cte in &with.cte_tables {
        if cte.query.with.is_some() {
            return None;
        }
        let mut body = (*cte.query).clone();
        let mut alias = cte.alias.clone();
        // A column list names the query's columns: its select list says
        // the same with aliases (MariaDB takes no column list on a
        // derived table).
        if !alias.columns.is_empty() {
            let names: Vec<ast::Ident> = alias.columns.drain(..).map(|c| c.name).collect();
            rename_columns(&mut body.body, &names)?;
        }
        inline_body(&mut body.body, &ctes);
        ctes.push((alias, body));
    }
    let mut out = q.clone();
    out.with = None;
    inline_body(&mut out.body, &ctes);
    Some(out)
}

/// Gives the columns of query body `e` the names `names` (the first
/// SELECT's, which name a set operation's columns); None when its select
/// list is not as long, or has a `*`.
fn rename_columns(e: &mut SetExpr, names: &[ast::Ident]) -> Option<()> {
    match e {
        SetExpr::Select(s) => {
            if s.projection.len() != names.len() {
                return None;
            }
            for (item, name) in s.projection.iter_mut().zip(names) {
                let expr =
                    match std::mem::replace(item, ast::SelectItem::Wildcard(Default::default())) {
                        ast::SelectItem::UnnamedExpr(e)
                        | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
                        _ => return None,
                    };
                *item = ast::SelectItem::ExprWithAlias {
                    expr,
                    alias: name.clone(),
                };
            }
            Some(())
        }
        SetExpr::SetOperation { left, .. } => rename_columns(left, names),
        SetExpr::Query(q) => rename_columns(&mut q.body, names),
        _ => None,
    }
}

/// A recursive WITH of one query, `WITH RECURSIVE c AS (seed UNION [ALL]
/// step) outer`, in the parts the gate runs: the seed, then the step over
/// the rows the last round found, until a round finds none, then the
/// outer statement over all of them.
pub(super) struct Recursion {
    /// The seed (it does not read `c`); its columns name and type the
    /// rows (as MariaDB types them from the non-recursive part).
    pub seed: ast::Query,
    /// The step, reading `c` once in its FROM clause, where `marker`
    /// stands for the last round's rows.
    pub step: ast::Query,
    /// `UNION` rather than `UNION ALL`: a row found before is not kept,
    /// nor fed to the next round.
    pub distinct: bool,
    /// The statement without its WITH, `marker` where it reads `c`.
    pub outer: ast::Query,
    /// `outer` with a row of constants for `c`, for planning it.
    pub probe: ast::Query,
}

/// `q` split as a [`Recursion`], each reading of the recursive query
/// replaced by `table(alias)` (the marker table, or the probe's row of
/// constants, under the name it is read by); None when it is not one
/// recursive query of that shape (several queries, a step reading `c`
/// twice or in a subquery, ORDER BY or LIMIT in the query).
pub(super) fn recursion(
    q: &ast::Query,
    marker: &dyn Fn(&ast::TableAlias) -> Option<TableFactor>,
    probe: &dyn Fn(&ast::TableAlias) -> Option<TableFactor>,
) -> Option<Recursion> {
    let with = q.with.as_ref()?;
    let [cte] = with.cte_tables.as_slice() else {
        return None;
    };
    if !with.recursive || cte.query.with.is_some() || cte.query.order_by.is_some() {
        return None;
    }
    if cte.query.limit_clause.is_some() {
        return None;
    }
    let SetExpr::SetOperation {
        op: ast::SetOperator::Union,
        set_quantifier,
        left,
        right,
    } = cte.query.body.as_ref()
    else {
        return None;
    };
    let name = &cte.alias.name.value;
    let part = |e: &SetExpr| match e {
        SetExpr::Query(q) => Some((**q).clone()),
        SetExpr::Select(_) => Some(ast::Query {
            body: Box::new(e.clone()),
            ..(*cte.query).clone()
        }),
        _ => None,
    };
    let mut seed = part(left)?;
    let mut step = part(right)?;
    if !cte.alias.columns.is_empty() {
        let names: Vec<ast::Ident> = cte.alias.columns.iter().map(|c| c.name.clone()).collect();
        rename_columns(&mut seed.body, &names)?;
    }
    if replace_reads(&mut seed, name, marker)? != 0 {
        return None;
    }
    // The step reads the last round's rows once, in its own FROM clause.
    let SetExpr::Select(s) = step.body.as_ref() else {
        return None;
    };
    let direct = s
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter(|f| reads(f, name))
        .count();
    if direct != 1 || replace_reads(&mut step, name, marker)? != 1 {
        return None;
    }
    let mut outer = q.clone();
    outer.with = None;
    let mut probed = outer.clone();
    replace_reads(&mut outer, name, marker)?;
    replace_reads(&mut probed, name, probe)?;
    Some(Recursion {
        seed,
        step,
        distinct: !matches!(set_quantifier, ast::SetQuantifier::All),
        outer,
        probe: probed,
    })
}

/// Whether FROM item `f` reads table `name` (unqualified, as a WITH's
/// query is named).
fn reads(f: &TableFactor, name: &str) -> bool {
    matches!(f, TableFactor::Table { name: n, args: None, .. }
        if n.0.len() == 1
            && n.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(name)))
}

/// Replaces every FROM item of `q` (subqueries included) that reads
/// `name` with `with(alias)`; how many it replaced, None when `with`
/// gives none.
fn replace_reads(
    q: &mut ast::Query,
    name: &str,
    with: &dyn Fn(&ast::TableAlias) -> Option<TableFactor>,
) -> Option<usize> {
    struct Replace<'a> {
        name: &'a str,
        with: &'a dyn Fn(&ast::TableAlias) -> Option<TableFactor>,
        count: usize,
    }
    impl VisitorMut for Replace<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            if !reads(f, self.name) {
                return ControlFlow::Continue(());
            }
            let TableFactor::Table { name, alias, .. } = f else {
                return ControlFlow::Continue(());
            };
            let alias = alias.clone().unwrap_or_else(|| ast::TableAlias {
                explicit: true,
                name: name.0[0]
                    .as_ident()
                    .cloned()
                    .unwrap_or_else(|| ast::Ident::new(self.name)),
                columns: Vec::new(),
                at: None,
            });
            match (self.with)(&alias) {
                Some(t) => *f = t,
                None => return ControlFlow::Break(()),
            }
            self.count += 1;
            ControlFlow::Continue(())
        }
    }
    let mut r = Replace {
        name,
        with,
        count: 0,
    };
    match q.visit(&mut r) {
        ControlFlow::Break(()) => None,
        ControlFlow::Continue(()) => Some(r.count),
    }
}

fn inline_body(e: &mut SetExpr, ctes: &[(ast::TableAlias, ast::Query)]) {
    match e {
        SetExpr::Select(s) => {
            for twj in &mut s.from {
                inline_joined(twj, ctes);
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            inline_body(left, ctes);
            inline_body(right, ctes);
        }
        SetExpr::Query(q) if q.with.is_none() => inline_body(&mut q.body, ctes),
        _ => {}
    }
}

fn inline_joined(twj: &mut ast::TableWithJoins, ctes: &[(ast::TableAlias, ast::Query)]) {
    inline_factor(&mut twj.relation, ctes);
    for j in &mut twj.joins {
        inline_factor(&mut j.relation, ctes);
    }
}

fn inline_factor(f: &mut TableFactor, ctes: &[(ast::TableAlias, ast::Query)]) {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() && name.0.len() == 1 => {
            let n = name.0[0].to_string();
            let n = n.trim_matches('`');
            let Some((cte_alias, query)) = ctes
                .iter()
                .rev()
                .find(|(c, _)| c.name.value.eq_ignore_ascii_case(n))
            else {
                return;
            };
            let alias = alias.clone().unwrap_or_else(|| cte_alias.clone());
            *f = TableFactor::Derived {
                lateral: false,
                subquery: Box::new(query.clone()),
                alias: Some(alias),
                sample: None,
            };
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => inline_joined(table_with_joins, ctes),
        _ => {}
    }
}
