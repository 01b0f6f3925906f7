//! Expressions over aggregates that the gate cannot compute itself
//! (`round(avg(price), 2)`, `greatest(sum(a), sum(b))`, `concat(k, ': ',
//! count(*))`): the gate computes only arithmetic. Such a statement is
//! rewritten so that a tablet computes them: its grouping becomes a derived
//! table of the group keys and the plain aggregates, which the gate
//! combines from the shards as for any grouping across shards (and hands
//! back as a table of constants); the statement's expressions, HAVING,
//! ORDER BY and LIMIT then run over that table on one tablet, with
//! MariaDB's own functions.
//!
//! `select k, round(avg(p), 2) from t group by k having max(p) > 3`
//! becomes `SELECT sg_g1 AS k, round(sg_a1, 2) AS `round(avg(p), 2)` FROM
//! (SELECT k AS sg_g1, avg(p) AS sg_a1, max(p) AS sg_a2 FROM t GROUP BY k)
//! AS sg_t WHERE sg_a2 > 3`.
//!
//! A subquery over the grouping that no shard answers alone (`select a.g,
//! (select count(*) from b where b.k = a.g) from a group by a.g`, or the
//! same with DISTINCT) is rewritten the same way: it reads the grouped
//! columns it is correlated to from the derived table, once per group, as
//! MariaDB runs it once per group. One correlated to a column that is not
//! grouped is not rewritten (MariaDB would read any row of the group).

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, visit_expressions_mut, Expr, GroupByExpr, Ident, OrderByKind, SelectItem, SetExpr,
    TableFactor,
};

use super::join::{has_subquery, walk, DepthWalk};

/// `q` rewritten as above, or `None` when it is not a grouping this
/// rewrites (neither an aggregate nor a subquery over the grouping, a
/// window beside DISTINCT, DISTINCT beside an aggregate, a column neither
/// grouped nor aggregated, a subquery correlated to such a column). A
/// window over the grouping stays, over the derived table's rows.
pub(super) fn rewrite(q: &ast::Query) -> Option<String> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some() || !q.locks.is_empty() || sel.into.is_some() {
        return None;
    }
    let GroupByExpr::Expressions(grouped, mods) = &sel.group_by else {
        return None;
    };
    let distinct = match &sel.distinct {
        None => false,
        Some(ast::Distinct::Distinct) if grouped.is_empty() => true,
        Some(_) => return None,
    };
    if !mods.is_empty() {
        return None;
    }
    // The statement's expressions over the grouping: its select list,
    // HAVING and ORDER BY.
    let mut items: Vec<(Expr, Option<Ident>)> = Vec::new();
    for p in &sel.projection {
        match p {
            SelectItem::UnnamedExpr(e) => items.push((e.clone(), None)),
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((expr.clone(), Some(alias.clone())))
            }
            _ => return None,
        }
    }
    let mut having = sel.having.clone();
    let mut order: Vec<ast::OrderByExpr> = match q.order_by.as_ref().map(|o| &o.kind) {
        None => Vec::new(),
        Some(OrderByKind::Expressions(o)) => o.clone(),
        Some(OrderByKind::All(_)) => return None,
    };
    // DISTINCT groups by the select list's items that hold no subquery:
    // a subquery correlated to them answers one value per such row.
    let groups: Vec<Expr> = match distinct {
        true => items
            .iter()
            .filter(|(e, _)| !has_subquery(e))
            .map(|(e, _)| e.clone())
            .collect(),
        false => grouped.clone(),
    };
    // The aggregates, each once, become the derived table's columns,
    // named with the table's name beside a subquery (whose columns the
    // planner places by their tables).
    let subqueried = items.iter().any(|(e, _)| has_subquery(e))
        || having.as_ref().is_some_and(has_subquery)
        || order.iter().any(|o| has_subquery(&o.expr));
    let mut aggs = Aggregates {
        qualified: subqueried,
        distinct,
        ..Aggregates::default()
    };
    visit_each(&mut items, &mut having, &mut order, &mut aggs);
    let over_grouping = match distinct {
        true => aggs.found.is_empty() && aggs.subqueries > 0,
        false => !aggs.found.is_empty() || (aggs.subqueries > 0 && !groups.is_empty()),
    };
    if !over_grouping || aggs.bad {
        return None;
    }
    // What is left of a column must be a grouped expression, in a
    // subquery too where it names the statement's tables.
    let aliases: Vec<Ident> = items.iter().filter_map(|(_, a)| a.clone()).collect();
    let mut keys = Keys {
        groups: &groups,
        aliases: &aliases,
        outer: super::join::names_in(&sel.from)
            .iter()
            .map(|n| as_outer(n))
            .collect(),
        qualified: aggs.qualified,
        bad: false,
    };
    visit_each(&mut items, &mut having, &mut order, &mut keys);
    if keys.bad {
        return None;
    }
    // Something must be left to compute over the grouping: a statement of
    // bare aggregates and keys (its aggregate being what the gate cannot
    // combine) would only be rewritten as itself.
    let bare = is_derived_column;
    let computed = items.iter().any(|(e, _)| !bare(e))
        || having.as_ref().is_some_and(|h| !bare(h))
        || order.iter().any(|o| !bare(&o.expr));
    if !computed {
        return None;
    }
    let mut inner: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{g} AS sg_g{}", i + 1))
        .collect();
    inner.extend(
        aggs.found
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{a} AS sg_a{}", i + 1)),
    );
    let from: Vec<String> = sel.from.iter().map(|f| f.to_string()).collect();
    let mut derived = format!("SELECT {} FROM {}", inner.join(", "), from.join(", "));
    if let Some(w) = &sel.selection {
        derived.push_str(&format!(" WHERE {w}"));
    }
    if !groups.is_empty() {
        let g: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        derived.push_str(&format!(" GROUP BY {}", g.join(", ")));
    }
    let shown: Vec<String> = sel
        .projection
        .iter()
        .zip(&items)
        .map(|(p, (e, alias))| {
            let name = item_label(p, alias.as_ref());
            format!("{e} AS {}", crate::sql::quote_ident(&name))
        })
        .collect();
    let mut sql = format!("SELECT {} FROM ({derived}) AS sg_t", shown.join(", "));
    // HAVING filters the grouping's rows: a WHERE over the derived table,
    // the select list's aliases in it replaced by what they name.
    if let Some(mut h) = having {
        let _ = visit_expressions_mut(&mut h, |e| {
            if let Expr::Identifier(i) = e {
                let named = items.iter().find(|(_, a)| {
                    a.as_ref()
                        .is_some_and(|a| a.value.eq_ignore_ascii_case(&i.value))
                });
                if let Some((expr, _)) = named {
                    *e = Expr::Nested(Box::new(expr.clone()));
                }
            }
            ControlFlow::<()>::Continue(())
        });
        sql.push_str(&format!(" WHERE {h}"));
    }
    if !order.is_empty() {
        let o: Vec<String> = order.iter().map(|o| o.to_string()).collect();
        sql.push_str(&format!(" ORDER BY {}", o.join(", ")));
    }
    if let Some(l) = &q.limit_clause {
        sql.push_str(&format!("{l}"));
    }
    Some(sql)
}

/// The name a rewritten statement gives a select item: the one the
/// client's statement gives it.
fn item_label(p: &SelectItem, alias: Option<&Ident>) -> String {
    match (alias, p) {
        (Some(a), _) => a.value.clone(),
        (None, SelectItem::UnnamedExpr(written)) => super::sharded::item_name(written),
        (None, p) => crate::sql::normalize::template_name(&p.to_string()),
    }
}

/// Correlated subqueries that no route answers with their statement,
/// outside its FROM clause and select list's own value joins: compared in
/// the WHERE clause (`where a.amt > (select avg(a2.amt) from qa a2 where
/// a2.g = a.g)`), inside an expression or an aggregate, in HAVING or
/// ORDER BY. Each becomes a column of a derived table computed per row
/// first (a value join), beside every column the statement reads; the
/// WHERE clause's conditions without such a subquery filter that table's
/// rows, and the statement (its other conditions, grouping, DISTINCT,
/// ORDER BY, LIMIT) runs over them on one tablet. A correlated `IN`,
/// `ANY` or `ALL` is such a value too ([`quantified_value`]). Row locks
/// (`FOR UPDATE`, as an UPDATE or DELETE that finds its rows first reads
/// them) are the derived table's: it reads the statement's rows (MySQL
/// locks no subquery's rows unless the subquery says so). `None` for
/// another shape: no such subquery, a `*`, a comparison with a correlated
/// subquery that is no value per row, a value over a grouping outside an
/// aggregate, a GROUP BY or HAVING name that is an alias of another
/// expression and a column the statement reads (MySQL reads the table's
/// column there first), WITH, WINDOW, INTO.
pub(super) fn values_apart(q: &ast::Query) -> Option<String> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some() || sel.into.is_some() || !sel.named_window.is_empty() {
        return None;
    }
    let names: Vec<(String, bool)> = super::join::names_in(&sel.from)
        .into_iter()
        .map(|n| (n, false))
        .collect();
    let mut out = q.clone();
    let SetExpr::Select(o) = out.body.as_mut() else {
        return None;
    };
    // The WHERE clause's conditions: those without a correlated subquery
    // filter the derived table's rows.
    let mut conds = Vec::new();
    if let Some(w) = o.selection.take() {
        conjuncts(w, &mut conds);
    }
    // An inner join's ON condition is a WHERE condition: one with such a
    // subquery runs over the derived table too (only where no outer join
    // could keep rows it drops).
    let mut from = sel.from.clone();
    let is_inner = |op: &ast::JoinOperator| {
        matches!(
            op,
            ast::JoinOperator::Join(_)
                | ast::JoinOperator::Inner(_)
                | ast::JoinOperator::CrossJoin(_)
                | ast::JoinOperator::StraightJoin(_)
        )
    };
    if from
        .iter()
        .all(|t| t.joins.iter().all(|j| is_inner(&j.join_operator)))
    {
        for j in from.iter_mut().flat_map(|t| t.joins.iter_mut()) {
            let (ast::JoinOperator::Join(c)
            | ast::JoinOperator::Inner(c)
            | ast::JoinOperator::CrossJoin(c)
            | ast::JoinOperator::StraightJoin(c)) = &mut j.join_operator
            else {
                continue;
            };
            let ast::JoinConstraint::On(on) = c else {
                continue;
            };
            if !correlated_in(on, &names) {
                continue;
            }
            let mut parts = Vec::new();
            conjuncts(on.clone(), &mut parts);
            let (moved, stay): (Vec<Expr>, Vec<Expr>) =
                parts.into_iter().partition(|p| correlated_in(p, &names));
            conds.extend(moved);
            *on = match stay.into_iter().reduce(and) {
                Some(e) => e,
                None => super::sharded::condition("1")?,
            };
        }
    }
    let (mut later, kept): (Vec<Expr>, Vec<Expr>) =
        conds.into_iter().partition(|c| correlated_in(c, &names));
    // Each alias, and whether it names a column of its own name.
    let aliases: Vec<(Ident, bool)> = sel
        .projection
        .iter()
        .filter_map(|p| match p {
            SelectItem::ExprWithAlias { alias, expr } => {
                let same = match expr {
                    Expr::Identifier(i) => i.value.eq_ignore_ascii_case(&alias.value),
                    Expr::CompoundIdentifier(parts) => parts
                        .last()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case(&alias.value)),
                    _ => false,
                };
                Some((alias.clone(), same))
            }
            _ => None,
        })
        .collect();
    // Over a grouping, a value outside an aggregate would be any row's
    // of its group (MariaDB's pick is its own): not rewritten.
    let grouped = !matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        || sel.projection.iter().any(aggregates_in)
        || sel.having.as_ref().is_some_and(aggregates_in);
    let mut apart = Apart {
        names: &names,
        aliases: &aliases,
        aliases_visible: false,
        columns_first: false,
        grouped,
        aggregates: 0,
        columns: Vec::new(),
        values: Vec::new(),
        bad: false,
    };
    // The select list keeps the names the client's statement gives it
    // (a `*` is not rewritten).
    for (item, written) in o.projection.iter_mut().zip(&sel.projection) {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            return None;
        };
        let mut e = e.clone();
        let _ = walk(&mut e, &mut apart);
        let alias = match written {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias),
            _ => None,
        };
        *item = SelectItem::ExprWithAlias {
            expr: e,
            alias: Ident::with_quote('`', item_label(written, alias)),
        };
    }
    // The WHERE clause and GROUP BY run before the grouping.
    let grouped = std::mem::replace(&mut apart.grouped, false);
    for c in later.iter_mut() {
        let _ = walk(c, &mut apart);
    }
    (apart.aliases_visible, apart.columns_first) = (true, true);
    if let GroupByExpr::Expressions(g, _) = &mut o.group_by {
        for e in g.iter_mut() {
            let _ = walk(e, &mut apart);
        }
    }
    apart.grouped = grouped;
    if let Some(h) = o.having.as_mut() {
        let _ = walk(h, &mut apart);
    }
    apart.columns_first = false;
    if let Some(ob) = out.order_by.as_mut() {
        if let OrderByKind::Expressions(exprs) = &mut ob.kind {
            for e in exprs.iter_mut() {
                let _ = walk(&mut e.expr, &mut apart);
            }
        }
    }
    if apart.bad || apart.values.is_empty() {
        return None;
    }
    let mut inner: Vec<String> = apart
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} AS sg_c{}", i + 1))
        .collect();
    inner.extend(
        apart
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v} AS sg_v{}", i + 1)),
    );
    let from: Vec<String> = from.iter().map(|f| f.to_string()).collect();
    let mut derived = format!("SELECT {} FROM {}", inner.join(", "), from.join(", "));
    if !kept.is_empty() {
        let w: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
        derived.push_str(&format!(" WHERE {}", w.join(" AND ")));
    }
    for lock in std::mem::take(&mut out.locks) {
        derived.push_str(&format!(" {lock}"));
    }
    let ast::Statement::Query(skeleton) =
        super::sharded::parse(&format!("SELECT 1 FROM ({derived}) AS sg_t")).ok()?
    else {
        return None;
    };
    let SetExpr::Select(skeleton) = *skeleton.body else {
        return None;
    };
    let SetExpr::Select(o) = out.body.as_mut() else {
        return None;
    };
    o.from = skeleton.from;
    o.selection = later.into_iter().reduce(and);
    Some(out.to_string())
}

/// `l AND r`.
fn and(l: Expr, r: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(l),
        op: ast::BinaryOperator::And,
        right: Box::new(r),
    }
}

/// Whether `e` calls an aggregate (not a window, not inside a subquery).
fn aggregates_in<T: ast::Visit>(e: &T) -> bool {
    struct Find(usize);
    impl ast::Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Function(f) if self.0 == 0 && f.over.is_none() && is_aggregate(f) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Find(0)).is_break()
}

/// Whether `f` is an aggregate's call.
fn is_aggregate(f: &ast::Function) -> bool {
    let name = f.name.to_string().to_ascii_lowercase();
    super::sharded::is_aggregate(&name)
}

/// `e`'s conditions joined by AND, each on its own, owned and with the
/// parentheses of an OR kept (they are written back as SQL;
/// [`super::sharded::conjuncts`] borrows and drops every parenthesis, for
/// reading).
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        e => out.push(e),
    }
}

/// Whether subquery `q` reads the statement's tables (`names`); one
/// whose reading is not known counts as reading them.
fn correlated(q: &ast::Query, names: &[(String, bool)]) -> bool {
    super::join::reads_outer(q, names).unwrap_or(true)
}

/// Whether `e` holds a subquery that reads the statement's tables.
fn correlated_in(e: &Expr, names: &[(String, bool)]) -> bool {
    struct Find<'a>(&'a [(String, bool)]);
    impl ast::Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            match correlated(q, self.0) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(e, &mut Find(names)).is_break()
}

/// A correlated `x [NOT] IN (subquery)`, `x op ANY (subquery)` or `x op
/// ALL (subquery)` as one value per row, which [`values_apart`] can
/// compute: the subquery ranks each of its rows by what the comparison
/// says of it (2 for the row that decides, TRUE for ANY or FALSE for ALL;
/// 1 for NULL; 0 otherwise) and keeps the highest rank, so that `CASE`
/// over that rank answers as MariaDB's three-valued comparison does (an
/// empty subquery: no rank, FALSE for ANY and TRUE for ALL). `None` when
/// it is no such comparison, or one this cannot write: a compared value
/// with a subquery, an aggregate or a column not qualified by a table of
/// the statement (`names`) that the subquery does not shadow (a bare
/// column is the `lone` table's, when given), or a subquery that is no
/// plain SELECT of one item (grouped, aggregated, limited, a set
/// operation, WITH).
fn quantified_value(e: &Expr, names: &[(String, bool)], lone: Option<&str>) -> Option<Expr> {
    let (x, op, any, q) = match e {
        Expr::In {
            expr,
            target: ast::InTarget::Subquery(q),
            negated,
            ..
        } => (
            expr,
            if *negated { "<>" } else { "=" }.to_string(),
            !*negated,
            q,
        ),
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } => match right.as_ref() {
            Expr::Subquery(q) => (
                left,
                compare_op.to_string(),
                matches!(e, Expr::AnyOp { .. }),
                q,
            ),
            _ => return None,
        },
        _ => return None,
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        s.projection.as_slice()
    else {
        return None;
    };
    let plain = q.with.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.locks.is_empty()
        && s.into.is_none()
        && s.having.is_none()
        && s.named_window.is_empty()
        && matches!(&s.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
        && !aggregates_in(item)
        && !super::sharded::has_window(item);
    // A lone table's columns, where the statement may name them bare, are
    // named with its name (bare, inside the subquery, they could be its).
    let x = super::join::qualify_bare(x, lone)?;
    if !plain || !correlated(q, names) || !outer_only(&x, names, &super::join::from_names(s)) {
        return None;
    }
    let test = format!("({x}) {op} ({item})");
    let decides = match any {
        true => test.clone(),
        false => format!("NOT ({test})"),
    };
    let mut ranked = (**q).clone();
    ranked.order_by = None;
    let SetExpr::Select(r) = ranked.body.as_mut() else {
        return None;
    };
    r.projection = vec![SelectItem::ExprWithAlias {
        expr: super::sharded::condition(&format!(
            "CASE WHEN {decides} THEN 2 WHEN ({test}) IS NULL THEN 1 ELSE 0 END"
        ))?,
        alias: Ident::new("sg_rank"),
    }];
    let (then, otherwise) = if any { (1, 0) } else { (0, 1) };
    super::sharded::condition(&format!(
        "CASE ({ranked} ORDER BY sg_rank DESC LIMIT 1) WHEN 2 THEN {then} WHEN 1 THEN NULL ELSE {otherwise} END"
    ))
}

/// Whether every column `x` reads is qualified by one of the statement's
/// tables (`names`) that a subquery's FROM clause (`inner`) does not
/// shadow, and `x` holds no subquery and no aggregate: `x` means the same
/// written inside that subquery.
fn outer_only(x: &Expr, names: &[(String, bool)], inner: &[String]) -> bool {
    struct Check<'a>(&'a [(String, bool)], &'a [String]);
    impl ast::Visitor for Check<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let fine = match e {
                Expr::Identifier(i) => i.value.starts_with('@'),
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [t, _] => {
                        let t = t.value.trim_matches('`');
                        self.0.iter().any(|(n, _)| n == t) && !self.1.iter().any(|n| n == t)
                    }
                    _ => false,
                },
                Expr::Function(f) => f.over.is_none() && !is_aggregate(f),
                _ => true,
            };
            match fine {
                true => ControlFlow::Continue(()),
                false => ControlFlow::Break(()),
            }
        }
    }
    !ast::Visit::visit(x, &mut Check(names, inner)).is_break()
}

/// [`values_apart`]'s walk over what runs over the derived table: each
/// correlated scalar subquery or EXISTS becomes a value column
/// (`sg_t.sg_vN`), each column of the statement's tables a column
/// (`sg_t.sg_cN`); a select-list alias (where the statement may name
/// one) and a variable stay.
struct Apart<'a> {
    names: &'a [(String, bool)],
    /// The select list's aliases, each with whether it names a column of
    /// its own name.
    aliases: &'a [(Ident, bool)],
    /// Whether an identifier may name a select-list alias (GROUP BY,
    /// HAVING, ORDER BY).
    aliases_visible: bool,
    /// Whether a table's column of an alias's name would be read before
    /// the alias (GROUP BY, HAVING).
    columns_first: bool,
    /// Whether the walk is over a grouping's rows (a value must then be
    /// inside an aggregate).
    grouped: bool,
    /// How deep in aggregates' arguments the walk is.
    aggregates: usize,
    /// The columns' and values' texts, each once.
    columns: Vec<String>,
    values: Vec<String>,
    /// A correlated subquery that is no value per row.
    bad: bool,
}

/// The position of `text` in `list`, added when new, from 1.
fn position_of(list: &mut Vec<String>, text: String) -> usize {
    match list.iter().position(|t| *t == text) {
        Some(i) => i + 1,
        None => {
            list.push(text);
            list.len()
        }
    }
}

impl DepthWalk for Apart<'_> {
    fn pre(&mut self, e: &mut Expr, depth: usize) -> ControlFlow<()> {
        if depth > 0 {
            return ControlFlow::Continue(());
        }
        // Outside GROUP BY, HAVING and ORDER BY, where an alias could be
        // named, a bare name is a column of the FROM clause's.
        let lone = match self.names {
            [(t, _)] if !self.aliases_visible => Some(t.as_str()),
            _ => None,
        };
        if let Some(v) = quantified_value(e, self.names, lone) {
            // Its subquery, now a value, is the next node walked.
            *e = v;
        }
        match e {
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } if correlated(q, self.names) => {
                if self.grouped && self.aggregates == 0 {
                    self.bad = true;
                    return ControlFlow::Break(());
                }
                let n = position_of(&mut self.values, e.to_string());
                *e = derived_column(Ident::new(format!("sg_v{n}")), true);
            }
            Expr::Function(f) if f.over.is_none() && is_aggregate(f) => self.aggregates += 1,
            Expr::In {
                target: ast::InTarget::Subquery(q),
                ..
            } if correlated(q, self.names) => self.bad = true,
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. }
                if has_subquery(right.as_ref()) =>
            {
                let correlated = match right.as_ref() {
                    Expr::Subquery(q) => correlated(q, self.names),
                    _ => true,
                };
                self.bad |= correlated;
            }
            Expr::Identifier(i) if i.value.starts_with('@') => {}
            Expr::Identifier(i)
                if self.aliases_visible
                    && self
                        .aliases
                        .iter()
                        .any(|(a, _)| a.value.eq_ignore_ascii_case(&i.value)) =>
            {
                // An alias of another expression, where a table's column
                // of its name, which the statement reads, would come first.
                let plain = self
                    .aliases
                    .iter()
                    .filter(|(a, _)| a.value.eq_ignore_ascii_case(&i.value))
                    .all(|(_, same)| *same);
                let read = self.columns.iter().any(|c| {
                    let last = c.rsplit('.').next().unwrap_or(c);
                    last.trim_matches('`').eq_ignore_ascii_case(&i.value)
                });
                self.bad |= self.columns_first && !plain && read;
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let n = position_of(&mut self.columns, e.to_string());
                *e = derived_column(Ident::new(format!("sg_c{n}")), true);
            }
            _ => {}
        }
        if self.bad {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post(&mut self, e: &mut Expr, depth: usize) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            if depth == 0 && f.over.is_none() && is_aggregate(f) {
                self.aggregates -= 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Replaces each aggregate call with its derived column (`sg_aN`), and
/// counts the subqueries over the grouping (whose own aggregates are
/// theirs).
#[derive(Default)]
struct Aggregates {
    found: Vec<String>,
    subqueries: usize,
    /// Whether the derived table's columns are named with its name.
    qualified: bool,
    /// Whether the statement is a DISTINCT rewritten as a grouping: its
    /// windows see the rows before DISTINCT, not the groups.
    distinct: bool,
    /// A window beside DISTINCT: not rewritten.
    bad: bool,
}

impl DepthWalk for Aggregates {
    fn query(&mut self, depth: usize) {
        if depth == 0 {
            self.subqueries += 1;
        }
    }

    fn post(&mut self, e: &mut Expr, depth: usize) -> ControlFlow<()> {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        if depth > 0 {
            return ControlFlow::Continue(());
        }
        // A window over a grouping sees one row per group, as it does
        // over the derived table's rows: it stays, its aggregates (`sum(
        // count(*)) over ()`) and keys read from those rows.
        if f.over.is_some() && self.distinct {
            self.bad = true;
            return ControlFlow::Break(());
        }
        if f.over.is_some() || !is_aggregate(f) {
            return ControlFlow::Continue(());
        }
        let column = |n: usize| derived_column(Ident::new(format!("sg_a{n}")), self.qualified);
        // An AVG as its SUM over its COUNT, which the tablet divides as
        // MariaDB divides them for AVG: what is computed from it reads the
        // quotient's digits, not the average's text cut to its display
        // decimals (`round(avg(x), 8)` read 6 of them).
        if let Some(arg) = averaged(f) {
            let sum = position_of(&mut self.found, format!("sum({arg})"));
            let count = position_of(&mut self.found, format!("count({arg})"));
            *e = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(column(sum)),
                op: ast::BinaryOperator::Divide,
                right: Box::new(column(count)),
            }));
            return ControlFlow::Continue(());
        }
        let n = position_of(&mut self.found, e.to_string());
        *e = column(n);
        ControlFlow::Continue(())
    }
}

/// The argument of a plain `AVG(x)` (no DISTINCT, one argument).
fn averaged(f: &ast::Function) -> Option<&ast::FunctionArgExpr> {
    if !f.name.to_string().eq_ignore_ascii_case("avg") {
        return None;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [ast::FunctionArg::Unnamed(arg @ ast::FunctionArgExpr::Expr(_))]
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            Some(arg)
        }
        _ => None,
    }
}

/// Replaces each grouped expression with its derived column (`sg_gN`);
/// a column that is neither grouped nor a select alias is `bad`. Inside a
/// subquery only the columns qualified by the statement's tables (`outer`)
/// are the grouping's: they must be grouped columns, and the subquery may
/// not name a table of its own as one of those.
struct Keys<'a> {
    groups: &'a [Expr],
    aliases: &'a [Ident],
    /// The statement's tables' names and aliases, lowercased.
    outer: Vec<String>,
    /// Whether the derived table's columns are named with its name.
    qualified: bool,
    bad: bool,
}

impl Keys<'_> {
    /// Whether `e` is a column qualified by one of the statement's tables.
    fn outer_column(&self, e: &Expr) -> bool {
        let Expr::CompoundIdentifier(parts) = e else {
            return false;
        };
        parts.len() >= 2
            && self
                .outer
                .contains(&parts[parts.len() - 2].value.to_ascii_lowercase())
    }
}

impl DepthWalk for Keys<'_> {
    fn table_factor(&mut self, t: &mut TableFactor, depth: usize) -> ControlFlow<()> {
        if depth > 0 && factor_name(t).is_some_and(|n| self.outer.contains(&n)) {
            self.bad = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre(&mut self, e: &mut Expr, depth: usize) -> ControlFlow<()> {
        if depth > 0 && !self.outer_column(e) {
            return ControlFlow::Continue(());
        }
        let same = |g: &Expr| match (g, &*e) {
            (Expr::CompoundIdentifier(a), Expr::Identifier(b))
            | (Expr::Identifier(b), Expr::CompoundIdentifier(a)) => a
                .last()
                .is_some_and(|l| l.value.eq_ignore_ascii_case(&b.value)),
            (g, e) => g.to_string().eq_ignore_ascii_case(&e.to_string()),
        };
        if let Some(i) = self.groups.iter().position(same) {
            let column = Ident::new(format!("sg_g{}", i + 1));
            *e = derived_column(column, self.qualified);
        }
        ControlFlow::Continue(())
    }

    fn post(&mut self, e: &mut Expr, depth: usize) -> ControlFlow<()> {
        if depth > 0 {
            if self.outer_column(e) {
                self.bad = true;
                return ControlFlow::Break(());
            }
            return ControlFlow::Continue(());
        }
        if is_derived_column(e) {
            return ControlFlow::Continue(());
        }
        let name = match e {
            Expr::Identifier(i) => i,
            Expr::CompoundIdentifier(_) => {
                self.bad = true;
                return ControlFlow::Break(());
            }
            _ => return ControlFlow::Continue(()),
        };
        let alias = self
            .aliases
            .iter()
            .any(|a| a.value.eq_ignore_ascii_case(&name.value));
        if !alias && !name.value.starts_with('@') {
            self.bad = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// A column of the derived table `sg_t`, with the table's name or not.
fn derived_column(column: Ident, qualified: bool) -> Expr {
    match qualified {
        true => Expr::CompoundIdentifier(vec![Ident::new("sg_t"), column]),
        false => Expr::Identifier(column),
    }
}

/// Whether `e` is one of the derived table's columns (as
/// [`derived_column`] names them).
fn is_derived_column(e: &Expr) -> bool {
    let ours = |i: &Ident| i.value.starts_with("sg_g") || i.value.starts_with("sg_a");
    match e {
        Expr::Identifier(i) => ours(i),
        Expr::CompoundIdentifier(parts) => {
            matches!(parts.as_slice(), [t, c] if t.value == "sg_t" && ours(c))
        }
        _ => false,
    }
}

/// The name a FROM item is known by, as [`Keys::outer`] holds names.
fn factor_name(t: &TableFactor) -> Option<String> {
    super::join::known_as(t).map(|n| as_outer(&n))
}

/// A table's name as [`Keys::outer`] holds it: unquoted, lowercased.
fn as_outer(name: &str) -> String {
    name.trim_matches('`').to_ascii_lowercase()
}

/// Walks `v` over the statement's expressions over its grouping: the
/// select list, HAVING and ORDER BY.
fn visit_each<W: DepthWalk>(
    items: &mut [(Expr, Option<Ident>)],
    having: &mut Option<Expr>,
    order: &mut [ast::OrderByExpr],
    w: &mut W,
) {
    for (e, _) in items {
        let _ = walk(e, w);
    }
    if let Some(h) = having {
        let _ = walk(h, w);
    }
    for o in order {
        let _ = walk(&mut o.expr, w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Box<ast::Query> {
        let ast::Statement::Query(q) = super::super::sharded::parse(sql).unwrap() else {
            panic!("{sql}")
        };
        q
    }

    fn run(sql: &str) -> Option<String> {
        rewrite(&parsed(sql))
    }

    #[test]
    fn expressions_over_aggregates_run_over_the_grouping() {
        assert_eq!(
            run("select k, round(avg(p), 2) from t where x = 1 group by k having max(p) > 3 order by 2 desc limit 5").unwrap(),
            "SELECT sg_g1 AS `k`, round((sg_a1 / sg_a2), 2) AS `round(avg(p), 2)` FROM (SELECT k AS sg_g1, sum(p) AS sg_a1, \
             count(p) AS sg_a2, max(p) AS sg_a3 FROM t WHERE x = 1 GROUP BY k) AS sg_t WHERE sg_a3 > 3 ORDER BY 2 DESC LIMIT 5"
        );
        assert_eq!(
            run("select greatest(sum(t.a), sum(t.b)) g, concat(t.k, ':', count(*)) from t group by t.k order by g").unwrap(),
            "SELECT greatest(sg_a1, sg_a2) AS `g`, concat(sg_g1, ':', sg_a3) AS `concat(t.k, ':', count(*))` FROM \
             (SELECT t.k AS sg_g1, sum(t.a) AS sg_a1, sum(t.b) AS sg_a2, count(*) AS sg_a3 FROM t GROUP BY t.k) AS sg_t ORDER BY g"
        );
    }

    /// A subquery over the grouping reads the grouped columns it is
    /// correlated to from the derived table, qualified by its name; with
    /// DISTINCT, the items without a subquery are the grouping.
    #[test]
    fn subqueries_over_the_grouping_read_its_columns() {
        assert_eq!(
            run("select a.g, count(*), (select count(*) from b where b.k = a.g) from a group by a.g order by 1").unwrap(),
            "SELECT sg_t.sg_g1 AS `g`, sg_t.sg_a1 AS `count(*)`, (SELECT count(*) FROM b WHERE b.k = sg_t.sg_g1) \
             AS `(SELECT count(*) FROM b WHERE b.k = a.g)` FROM (SELECT a.g AS sg_g1, count(*) AS sg_a1 FROM a \
             GROUP BY a.g) AS sg_t ORDER BY 1"
        );
        assert_eq!(
            run("select distinct a.g, (select max(b.t) from b where b.k = a.g and b.q > 2) x from a where a.id > 3").unwrap(),
            "SELECT sg_t.sg_g1 AS `g`, (SELECT max(b.t) FROM b WHERE b.k = sg_t.sg_g1 AND b.q > 2) AS `x` \
             FROM (SELECT a.g AS sg_g1 FROM a WHERE a.id > 3 GROUP BY a.g) AS sg_t"
        );
        assert_eq!(
            run("select g, sum(p) from a group by g having sum(p) > (select count(*) from b where b.k = a.g)").unwrap(),
            "SELECT sg_t.sg_g1 AS `g`, sg_t.sg_a1 AS `sum(p)` FROM (SELECT g AS sg_g1, sum(p) AS sg_a1 FROM a GROUP BY g) \
             AS sg_t WHERE sg_t.sg_a1 > (SELECT count(*) FROM b WHERE b.k = sg_t.sg_g1)"
        );
    }

    #[test]
    fn other_shapes_are_left_alone() {
        for sql in [
            "select k, v from t group by k",
            "select k from t",
            "select distinct round(avg(p)) from t",
            "select round(sum(p) over ()) from t",
            // Only bare aggregates: nothing to compute over them.
            "select k, std(p) from t group by k",
            // A subquery correlated to a column not grouped, or one whose
            // own table takes a name of the statement's.
            "select a.g, (select count(*) from b where b.k = a.k) from a group by a.g",
            "select distinct a.g, (select count(*) from b where b.k = a.k) from a",
            "select a.g, (select count(*) from b a where a.k = 1) from a group by a.g",
            // A subquery and no grouping, or DISTINCT beside an aggregate.
            "select a.g, (select count(*) from b where b.k = a.g) from a",
            "select distinct count(*), (select count(*) from b where b.k = 1) from a",
        ] {
            assert_eq!(run(sql), None, "{sql}");
        }
    }

    /// A DISTINCT whose subquery reads a column it does not list (which
    /// [`rewrite`] cannot group by its listed items) dedupes over its rows,
    /// the values computed per row first.
    #[test]
    fn a_distinct_over_unlisted_correlations_runs_over_its_rows() {
        assert_eq!(
            values("select distinct a.g, (select count(*) from b where b.k = a.k) c from a where a.id > 3 \
                   order by c desc, a.g, 1 limit 2, 5")
            .unwrap(),
            "SELECT DISTINCT sg_t.sg_c1 AS `g`, sg_t.sg_v1 AS `c` FROM (SELECT a.g AS sg_c1, (SELECT count(*) \
             FROM b WHERE b.k = a.k) AS sg_v1 FROM a WHERE a.id > 3) AS sg_t ORDER BY c DESC, sg_t.sg_c1, 1 LIMIT 2, 5"
        );
    }

    fn values(sql: &str) -> Option<String> {
        values_apart(&parsed(sql))
    }

    /// Correlated subqueries compared or computed over become values of a
    /// derived table beside the columns the statement reads; conditions
    /// without them filter its rows; select-list aliases stay where the
    /// statement may name them.
    #[test]
    fn correlated_values_are_computed_per_row_first() {
        assert_eq!(
            values("select a.g, count(*) from qa a where a.id > 3 and a.amt > (select avg(a2.amt) from qa a2 \
                    where a2.g = a.g) group by a.g order by 2 desc")
            .unwrap(),
            "SELECT sg_t.sg_c1 AS `g`, count(*) AS `count(*)` FROM (SELECT a.g AS sg_c1, a.amt AS sg_c2, \
             (SELECT avg(a2.amt) FROM qa a2 WHERE a2.g = a.g) AS sg_v1 FROM qa a WHERE a.id > 3) AS sg_t \
             WHERE sg_t.sg_c2 > sg_t.sg_v1 GROUP BY sg_t.sg_c1 ORDER BY 2 DESC"
        );
        assert_eq!(
            values("select a.id, (select count(*) from b where b.k = a.k) c from qa a having c > 2 \
                    order by case when exists (select 1 from b where b.k = a.g) then c end, @x limit 3")
            .unwrap(),
            "SELECT sg_t.sg_c1 AS `id`, sg_t.sg_v1 AS `c` FROM (SELECT a.id AS sg_c1, \
             (SELECT count(*) FROM b WHERE b.k = a.k) AS sg_v1, EXISTS (SELECT 1 FROM b WHERE b.k = a.g) AS sg_v2 \
             FROM qa a) AS sg_t HAVING c > 2 ORDER BY CASE WHEN sg_t.sg_v2 THEN c END, @x LIMIT 3"
        );
        assert_eq!(
            values("select a.g, sum((select count(*) from b where b.k = a.k)) from qa a group by a.g").unwrap(),
            "SELECT sg_t.sg_c1 AS `g`, sum(sg_t.sg_v1) AS `sum((SELECT count(*) FROM b WHERE b.k = a.k))` \
             FROM (SELECT a.g AS sg_c1, (SELECT count(*) FROM b WHERE b.k = a.k) AS sg_v1 FROM qa a) AS sg_t \
             GROUP BY sg_t.sg_c1"
        );
        for sql in [
            // Over a grouping, a value outside an aggregate (any row's).
            "select a.g, (select count(*) from b where b.k = a.k) from qa a group by a.g",
            "select count(*) from qa a having max(a.k) > (select count(*) from b where b.k = a.k)",
            // A GROUP BY name both an alias and a column read.
            "select a.k + 1 as k, sum((select count(*) from b where b.q = a.g)) from qa a where a.k > 0 group by k",
            // No correlated subquery; a `*`.
            "select a.id from qa a where a.k in (select b.k from b)",
            "select *, (select count(*) from b where b.k = a.k) from qa a",
        ] {
            assert_eq!(values(sql), None, "{sql}");
        }
    }

    /// A correlated IN, ANY or ALL becomes the highest rank its subquery's
    /// rows get (2 for the row that decides, 1 for NULL), read back by a
    /// CASE into MariaDB's three values; NOT IN is `<> ALL`.
    #[test]
    fn correlated_quantified_comparisons_are_ranked_per_row() {
        assert_eq!(
            values("select a.id, a.k not in (select b.k from b where b.q = a.g) from qa a").unwrap(),
            "SELECT sg_t.sg_c1 AS `id`, CASE sg_t.sg_v1 WHEN 2 THEN 0 WHEN 1 THEN NULL ELSE 1 END \
             AS `a.k NOT IN (SELECT b.k FROM b WHERE b.q = a.g)` FROM (SELECT a.id AS sg_c1, \
             (SELECT CASE WHEN NOT ((a.k) <> (b.k)) THEN 2 WHEN ((a.k) <> (b.k)) IS NULL THEN 1 ELSE 0 END \
             AS sg_rank FROM b WHERE b.q = a.g ORDER BY sg_rank DESC LIMIT 1) AS sg_v1 FROM qa a) AS sg_t"
        );
        assert_eq!(
            values("select a.id from qa a where a.id > 3 and a.k + 1 > any (select distinct b.k from b \
                    where b.q = a.g order by b.k)")
            .unwrap(),
            "SELECT sg_t.sg_c1 AS `id` FROM (SELECT a.id AS sg_c1, (SELECT DISTINCT CASE WHEN (a.k + 1) > (b.k) \
             THEN 2 WHEN ((a.k + 1) > (b.k)) IS NULL THEN 1 ELSE 0 END AS sg_rank FROM b WHERE b.q = a.g \
             ORDER BY sg_rank DESC LIMIT 1) AS sg_v1 FROM qa a WHERE a.id > 3) AS sg_t \
             WHERE CASE sg_t.sg_v1 WHEN 2 THEN 1 WHEN 1 THEN NULL ELSE 0 END"
        );
        // A lone table's bare column is named by it; the rows an UPDATE
        // or DELETE finds first are locked where the derived table reads
        // them.
        assert_eq!(
            values("select qa.id from qa where k > all (select b.k from b where b.q = qa.g) for update").unwrap(),
            "SELECT sg_t.sg_c1 AS `id` FROM (SELECT qa.id AS sg_c1, (SELECT CASE WHEN NOT ((qa.k) > (b.k)) \
             THEN 2 WHEN ((qa.k) > (b.k)) IS NULL THEN 1 ELSE 0 END AS sg_rank FROM b WHERE b.q = qa.g \
             ORDER BY sg_rank DESC LIMIT 1) AS sg_v1 FROM qa FOR UPDATE) AS sg_t \
             WHERE CASE sg_t.sg_v1 WHEN 2 THEN 0 WHEN 1 THEN NULL ELSE 1 END"
        );
        // An inner join's ON condition with one runs over the derived
        // table as the WHERE clause's do; beside an outer join it stays
        // (and the statement is not rewritten).
        assert_eq!(
            values("select a.id, c.id from qa a join qc c on c.a_id = a.id and c.k in (select b.k from b \
                    where b.q = a.g) where a.id > 1")
            .unwrap(),
            "SELECT sg_t.sg_c1 AS `id`, sg_t.sg_c2 AS `id` FROM (SELECT a.id AS sg_c1, c.id AS sg_c2, \
             (SELECT CASE WHEN (c.k) = (b.k) THEN 2 WHEN ((c.k) = (b.k)) IS NULL THEN 1 ELSE 0 END AS sg_rank \
             FROM b WHERE b.q = a.g ORDER BY sg_rank DESC LIMIT 1) AS sg_v1 FROM qa a JOIN qc c \
             ON c.a_id = a.id WHERE a.id > 1) AS sg_t WHERE CASE sg_t.sg_v1 WHEN 2 THEN 1 WHEN 1 THEN NULL ELSE 0 END"
        );
        assert_eq!(
            values(
                "select a.id from qa a join qc c on c.a_id = a.id and c.k in (select b.k from b \
                    where b.q = a.g) left join qd d on d.id = a.id"
            ),
            None
        );
        for sql in [
            // A compared column the subquery's table shadows, a compared
            // subquery or aggregate.
            "select a.id from qa a join qc c on c.id = a.id where c.k in (select b.k from b c where c.q = a.g)",
            "select a.id from qa a where (select 1) in (select b.k from b where b.q = a.g)",
            "select a.g from qa a group by a.g having max(a.k) > all (select b.k from b where b.q = a.g)",
            // A subquery grouped, aggregated, limited or a set operation.
            "select a.id from qa a where a.k in (select b.k from b where b.q = a.g group by b.k)",
            "select a.id from qa a where a.k > all (select max(b.k) from b where b.q = a.g)",
            "select a.id from qa a where a.k > all (select b.k from b where b.q = a.g limit 2)",
            "select a.id from qa a where a.k in (select b.k from b where b.q = a.g union select 1)",
            // A row compared; a bare column beside two tables.
            "select a.id from qa a where (a.k, a.g) in (select b.k, b.q from b where b.q = a.g)",
            "select a.id from qa a join qc c on c.id = a.id where k in (select b.k from b where b.q = a.g)",
        ] {
            assert_eq!(values(sql), None, "{sql}");
        }
    }
}
