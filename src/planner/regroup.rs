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

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, visit_expressions_mut, Expr, GroupByExpr, Ident, OrderByKind, SelectItem, SetExpr,
    VisitMut, VisitorMut,
};

/// `q` rewritten as above, or `None` when it is not a grouping this
/// rewrites (no aggregate, a window, DISTINCT, a column neither grouped
/// nor aggregated, a subquery).
pub(super) fn rewrite(q: &ast::Query) -> Option<String> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some() || sel.distinct.is_some() || !q.locks.is_empty() || sel.into.is_some() {
        return None;
    }
    let GroupByExpr::Expressions(groups, mods) = &sel.group_by else {
        return None;
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
    // The aggregates, each once, become the derived table's columns.
    let mut aggs = Aggregates::default();
    visit_each(&mut items, &mut having, &mut order, &mut aggs);
    if aggs.found.is_empty() || aggs.bad {
        return None;
    }
    // What is left of a column must be a grouped expression.
    let aliases: Vec<Ident> = items.iter().filter_map(|(_, a)| a.clone()).collect();
    let mut keys = Keys {
        groups,
        aliases: &aliases,
        bad: false,
    };
    visit_each(&mut items, &mut having, &mut order, &mut keys);
    if keys.bad {
        return None;
    }
    // Something must be left to compute over the grouping: a statement of
    // bare aggregates and keys (its aggregate being what the gate cannot
    // combine) would only be rewritten as itself.
    let bare = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value.starts_with("sg_"));
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
            // A column keeps the name the client's statement gives it.
            let name = match (alias, p) {
                (Some(a), _) => a.value.clone(),
                (None, SelectItem::UnnamedExpr(written)) => super::sharded::item_name(written),
                (None, p) => crate::sql::normalize::template_name(&p.to_string()),
            };
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

/// Replaces each aggregate call with its derived column (`sg_aN`).
#[derive(Default)]
struct Aggregates {
    found: Vec<String>,
    /// A subquery or window: not rewritten.
    bad: bool,
}

impl VisitorMut for Aggregates {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
        self.bad = true;
        ControlFlow::Break(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        if f.over.is_some() {
            self.bad = true;
            return ControlFlow::Break(());
        }
        let name = f.name.to_string().to_ascii_lowercase();
        if !super::sharded::AGGREGATES.contains(&name.as_str()) {
            return ControlFlow::Continue(());
        }
        let text = e.to_string();
        let n = match self.found.iter().position(|a| *a == text) {
            Some(i) => i + 1,
            None => {
                self.found.push(text);
                self.found.len()
            }
        };
        *e = Expr::Identifier(Ident::new(format!("sg_a{n}")));
        ControlFlow::Continue(())
    }
}

/// Replaces each grouped expression with its derived column (`sg_gN`);
/// a column that is neither grouped nor a select alias is `bad`.
struct Keys<'a> {
    groups: &'a [Expr],
    aliases: &'a [Ident],
    bad: bool,
}

impl VisitorMut for Keys<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let same = |g: &Expr| match (g, &*e) {
            (Expr::CompoundIdentifier(a), Expr::Identifier(b))
            | (Expr::Identifier(b), Expr::CompoundIdentifier(a)) => a
                .last()
                .is_some_and(|l| l.value.eq_ignore_ascii_case(&b.value)),
            (g, e) => g.to_string().eq_ignore_ascii_case(&e.to_string()),
        };
        if let Some(i) = self.groups.iter().position(same) {
            *e = Expr::Identifier(Ident::new(format!("sg_g{}", i + 1)));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let name = match e {
            Expr::Identifier(i) => i,
            Expr::CompoundIdentifier(_) => {
                self.bad = true;
                return ControlFlow::Break(());
            }
            _ => return ControlFlow::Continue(()),
        };
        let ours = name.value.starts_with("sg_g") || name.value.starts_with("sg_a");
        let alias = self
            .aliases
            .iter()
            .any(|a| a.value.eq_ignore_ascii_case(&name.value));
        if !ours && !alias && !name.value.starts_with('@') {
            self.bad = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Walks `v` over the statement's expressions over its grouping: the
/// select list, HAVING and ORDER BY.
fn visit_each<V: VisitorMut>(
    items: &mut [(Expr, Option<Ident>)],
    having: &mut Option<Expr>,
    order: &mut [ast::OrderByExpr],
    v: &mut V,
) {
    for (e, _) in items {
        let _ = e.visit(v);
    }
    if let Some(h) = having {
        let _ = h.visit(v);
    }
    for o in order {
        let _ = o.expr.visit(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> Option<String> {
        let ast::Statement::Query(q) = super::super::sharded::parse(sql).unwrap() else {
            panic!("{sql}")
        };
        rewrite(&q)
    }

    #[test]
    fn expressions_over_aggregates_run_over_the_grouping() {
        assert_eq!(
            run("select k, round(avg(p), 2) from t where x = 1 group by k having max(p) > 3 order by 2 desc limit 5").unwrap(),
            "SELECT sg_g1 AS `k`, round(sg_a1, 2) AS `round(avg(p), 2)` FROM (SELECT k AS sg_g1, avg(p) AS sg_a1, \
             max(p) AS sg_a2 FROM t WHERE x = 1 GROUP BY k) AS sg_t WHERE sg_a2 > 3 ORDER BY 2 DESC LIMIT 5"
        );
        assert_eq!(
            run("select greatest(sum(t.a), sum(t.b)) g, concat(t.k, ':', count(*)) from t group by t.k order by g").unwrap(),
            "SELECT greatest(sg_a1, sg_a2) AS `g`, concat(sg_g1, ':', sg_a3) AS `concat(t.k, ':', count(*))` FROM \
             (SELECT t.k AS sg_g1, sum(t.a) AS sg_a1, sum(t.b) AS sg_a2, count(*) AS sg_a3 FROM t GROUP BY t.k) AS sg_t ORDER BY g"
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
        ] {
            assert_eq!(run(sql), None, "{sql}");
        }
    }
}
