//! Common table expressions on sharded keyspaces. A non-recursive WITH
//! names queries; each reference in a FROM clause is the same as that
//! query written there as a derived table, which the planner routes as
//! any other. So the WITH is inlined, and the statement planned without
//! it; a column list becomes the query's aliases. (A recursive WITH is
//! refused.)

use sqlparser::ast::{self, SetExpr, TableFactor};

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
