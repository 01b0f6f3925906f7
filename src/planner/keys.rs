//! `VEXPLAIN KEYS`: which columns a statement filters, joins, groups and
//! selects on, by table, as vtgate reports them. Users run it over their
//! workload to choose vindexes: a column most statements filter on by
//! equality is a sharding key's natural candidate.
//!
//! As vtgate reads a statement: every WHERE and every join condition is
//! split at its ANDs, and each comparison of a column (`=`, `<`, `IN`,
//! `LIKE`, `BETWEEN` as `>=` and `<=`, ...) is a filter use of that column,
//! or, when both sides are columns of different tables, a join use of
//! each and a join predicate; every GROUP BY column is a grouping column
//! and every column a select expression reads a select column; the same
//! holds inside subqueries. Columns are named by their table (not its
//! alias); an unqualified name is placed as the planner places it, and a
//! name that cannot be placed, or that belongs to a derived table, is
//! left out. Nothing runs.

use serde::Serialize;
use sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, JoinConstraint, JoinOperator, SelectItem, SetExpr,
    Statement, TableFactor, TableWithJoins, Visit,
};

use super::PlanError;
use crate::topo::{Keyspace, Snapshot};

/// vtgate's report, in its key order; empty lists are left out.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    statement_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    grouping_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    join_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    filter_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    select_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    join_predicates: Vec<String>,
}

impl Keys {
    /// The report as vtgate prints it: JSON indented by tabs.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // A struct of strings always serializes.
        let _ = self.serialize(&mut ser);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The report for `sql`, its unqualified names placed against keyspace
/// `ks` (the session's).
pub fn keys(sql: &str, ks: &Keyspace, snap: &Snapshot) -> Result<Keys, PlanError> {
    let stmt = super::sharded::parse(sql)?;
    let mut found = Found::default();
    let statement_type = match &stmt {
        Statement::Query(q) => {
            let placed = super::qualify::qualify(q, ks, snap)?;
            found.query(placed.as_ref().unwrap_or(q), &mut Vec::new());
            "SELECT"
        }
        Statement::Update(u) => {
            let mut scopes = vec![tables(std::slice::from_ref(&u.table))];
            found.from(std::slice::from_ref(&u.table), &mut scopes);
            if let Some(w) = &u.selection {
                found.predicate(w, &mut scopes);
            }
            "UPDATE"
        }
        Statement::Delete(d) => {
            let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) =
                &d.from;
            let mut scopes = vec![tables(from)];
            found.from(from, &mut scopes);
            if let Some(w) = &d.selection {
                found.predicate(w, &mut scopes);
            }
            "DELETE"
        }
        Statement::Insert(i) => {
            if let Some(q) = &i.source {
                found.query(q, &mut Vec::new());
            }
            "INSERT"
        }
        _ => {
            return Err(PlanError::Unsupported(
                "VEXPLAIN KEYS of this statement".into(),
            ))
        }
    };
    Ok(found.report(statement_type))
}

/// A FROM clause's tables by the name the statement uses (alias, else
/// name, lower case): the table's own name, or None for a derived table.
type Scope = Vec<(String, Option<String>)>;

fn tables(from: &[TableWithJoins]) -> Scope {
    let mut scope = Vec::new();
    for f in super::join::factors(from) {
        match f {
            TableFactor::Table { name, alias, .. } => {
                let Some(table) = name.0.last().and_then(|p| p.as_ident()) else {
                    continue;
                };
                let known = alias.as_ref().map_or(&table.value, |a| &a.name.value);
                scope.push((known.to_lowercase(), Some(table.value.clone())));
            }
            TableFactor::Derived { alias: Some(a), .. } => {
                scope.push((a.name.value.to_lowercase(), None))
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => scope.extend(tables(std::slice::from_ref(table_with_joins))),
            _ => {}
        }
    }
    scope
}

/// The columns found so far: (table, column) and, for uses, the operator.
#[derive(Default)]
struct Found {
    grouping: Vec<(String, String)>,
    selected: Vec<(String, String)>,
    filters: Vec<((String, String), &'static str)>,
    joins: Vec<((String, String), &'static str)>,
    predicates: Vec<String>,
}

impl Found {
    fn query(&mut self, q: &ast::Query, scopes: &mut Vec<Scope>) {
        self.set_expr(&q.body, scopes);
    }

    fn set_expr(&mut self, body: &SetExpr, scopes: &mut Vec<Scope>) {
        match body {
            SetExpr::Select(s) => {
                scopes.push(tables(&s.from));
                self.from(&s.from, scopes);
                for item in &s.projection {
                    if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                        item
                    {
                        let cols = self.columns(e, scopes);
                        self.selected.extend(cols);
                    }
                }
                if let Some(w) = &s.selection {
                    self.predicate(w, scopes);
                }
                if let GroupByExpr::Expressions(exprs, _) = &s.group_by {
                    for e in exprs {
                        if let Some(c) = column(e, scopes) {
                            self.grouping.push(c);
                        }
                    }
                }
                scopes.pop();
            }
            SetExpr::Query(q) => self.query(q, scopes),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, scopes);
                self.set_expr(right, scopes);
            }
            _ => {}
        }
    }

    /// Join conditions, and derived tables' own statements.
    fn from(&mut self, from: &[TableWithJoins], scopes: &mut Vec<Scope>) {
        for twj in from {
            self.factor(&twj.relation, scopes);
            for j in &twj.joins {
                self.factor(&j.relation, scopes);
                if let Some(on) = on(&j.join_operator) {
                    self.predicate(on, scopes);
                }
            }
        }
    }

    fn factor(&mut self, f: &TableFactor, scopes: &mut Vec<Scope>) {
        match f {
            TableFactor::Derived { subquery, .. } => self.query(subquery, &mut Vec::new()),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(std::slice::from_ref(table_with_joins), scopes),
            _ => {}
        }
    }

    /// A WHERE or ON clause: its conjuncts' comparisons, and its subqueries.
    fn predicate(&mut self, e: &Expr, scopes: &mut Vec<Scope>) {
        for c in super::sharded::conjuncts(e) {
            self.comparison(c, scopes);
        }
        // Subqueries anywhere in it are read in their own scope.
        let _ = self.columns(e, scopes);
    }

    fn comparison(&mut self, e: &Expr, scopes: &[Scope]) {
        match e {
            Expr::BinaryOp { left, op, right } => {
                let Some(op) = operator(op) else { return };
                let (l, r) = (column_at(left, scopes), column_at(right, scopes));
                if let (Some((ls, lc)), Some((rs, rc))) = (&l, &r) {
                    if ls != rs {
                        self.joins.push((lc.clone(), op));
                        self.joins.push((rc.clone(), switched(op)));
                        self.predicates
                            .push(format!("{}.{} {op} {}.{}", lc.0, lc.1, rc.0, rc.1));
                        return;
                    }
                }
                if let Some((_, c)) = l {
                    self.filters.push((c, op));
                }
                if let Some((_, c)) = r {
                    // `IN` and `LIKE` do not turn around; the others do.
                    self.filters.push((c, switched(op)));
                }
            }
            Expr::In { expr, negated, .. } => {
                if let Some(c) = column(expr, scopes) {
                    self.filters
                        .push((c, if *negated { "not in" } else { "in" }));
                }
            }
            Expr::Like { expr, negated, .. } => {
                if let Some(c) = column(expr, scopes) {
                    self.filters
                        .push((c, if *negated { "not like" } else { "like" }));
                }
            }
            Expr::RLike { expr, negated, .. } => {
                if let Some(c) = column(expr, scopes) {
                    self.filters
                        .push((c, if *negated { "not regexp" } else { "regexp" }));
                }
            }
            Expr::Between {
                expr,
                negated: false,
                ..
            } => {
                if let Some(c) = column(expr, scopes) {
                    self.filters.push((c.clone(), ">="));
                    self.filters.push((c, "<="));
                }
            }
            Expr::Nested(inner) => self.comparison(inner, scopes),
            _ => {}
        }
    }

    /// The columns `e` reads outside its subqueries; each subquery is read
    /// as a statement of its own, in a scope inside this one.
    fn columns(&mut self, e: &Expr, scopes: &mut Vec<Scope>) -> Vec<(String, String)> {
        let mut cols = Vec::new();
        let mut walk = super::colocate::Collect::new(|e: &Expr| cols.extend(column(e, scopes)));
        let _ = e.visit(&mut walk);
        let subqueries = walk.found;
        for q in &subqueries {
            self.query(q, scopes);
        }
        cols
    }

    fn report(mut self, statement_type: &str) -> Keys {
        let name = |(t, c): &(String, String)| format!("{t}.{c}");
        let named = |cols: &mut Vec<(String, String)>| {
            let mut v: Vec<String> = cols.iter().map(name).collect();
            v.sort();
            v.dedup();
            v
        };
        let used = |uses: &mut Vec<((String, String), &'static str)>| {
            let mut v: Vec<String> = uses
                .iter()
                .map(|(c, op)| format!("{} {op}", name(c)))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut predicates = std::mem::take(&mut self.predicates);
        predicates.sort();
        predicates.dedup();
        Keys {
            statement_type: statement_type.to_string(),
            grouping_columns: named(&mut self.grouping),
            join_columns: used(&mut self.joins),
            filter_columns: used(&mut self.filters),
            select_columns: named(&mut self.selected),
            join_predicates: predicates,
        }
    }
}

/// The condition of a join that has one.
fn on(op: &JoinOperator) -> Option<&Expr> {
    match super::colocate::constraint(op) {
        Ok(JoinConstraint::On(e)) => Some(e),
        _ => None,
    }
}

/// vtgate's name of a comparison operator.
fn operator(op: &BinaryOperator) -> Option<&'static str> {
    Some(match op {
        BinaryOperator::Eq => "=",
        BinaryOperator::NotEq => "!=",
        BinaryOperator::Lt => "<",
        BinaryOperator::LtEq => "<=",
        BinaryOperator::Gt => ">",
        BinaryOperator::GtEq => ">=",
        BinaryOperator::Spaceship => "<=>",
        _ => return None,
    })
}

/// The operator seen from its right side.
fn switched(op: &'static str) -> &'static str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        other => other,
    }
}

fn column(e: &Expr, scopes: &[Scope]) -> Option<(String, String)> {
    column_at(e, scopes).map(|(_, c)| c)
}

/// A column reference's table (by its own name) and column, with the
/// place of the FROM item it names (scope, item), which tells a join from
/// a filter; None when it cannot be placed or names a derived table.
fn column_at(e: &Expr, scopes: &[Scope]) -> Option<((usize, usize), (String, String))> {
    let (qualifier, col) = match e {
        Expr::Identifier(c) => (None, c),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [t, c] | [_, t, c] => (Some(t.value.to_lowercase()), c),
            _ => return None,
        },
        Expr::Nested(inner) => return column_at(inner, scopes),
        _ => return None,
    };
    for (depth, scope) in scopes.iter().enumerate().rev() {
        let at = match &qualifier {
            Some(q) => scope.iter().position(|(known, _)| known == q),
            // Unqualified: the one table of its statement.
            None if scope.len() == 1 => Some(0),
            None => return None,
        };
        if let Some(i) = at {
            let table = scope[i].1.clone()?;
            return Some(((depth, i), (table, col.value.clone())));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let mut r = std::collections::BTreeMap::new();
        r.insert(
            "global/keyspaces/ks/Keyspace".to_string(),
            br#"{"sharded": true}"#.to_vec(),
        );
        r.insert(
            "global/keyspaces/ks/VSchema".to_string(),
            br#"{"sharded": true, "vindexes": {"h": {"type": "hash"}},
                "tables": {"user": {"column_vindexes": [{"column": "id", "name": "h"}],
                                    "columns": [{"name": "name"}, {"name": "col"}],
                                    "column_list_authoritative": true},
                           "music": {"column_vindexes": [{"column": "user_id", "name": "h"}],
                                     "columns": [{"name": "id"}, {"name": "col"}],
                                     "column_list_authoritative": true}}}"#
                .to_vec(),
        );
        r.insert(
            "global/keyspaces/ks/shards/-/Shard".to_string(),
            br#"{}"#.to_vec(),
        );
        Snapshot::build(&r, &Default::default(), 1).unwrap()
    }

    fn keys_of(sql: &str) -> Keys {
        let s = snap();
        keys(sql, &s.keyspaces["ks"], &s).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filters_joins_groups_and_selects_are_named_by_table() {
        let k = keys_of(
            "select u.name, count(*) from user u join music m on u.id = m.user_id \
             where u.id = 5 and m.col > 3 and 10 < u.col and u.name like 'a%' \
             and u.col between 1 and 2 or m.id = 9 group by u.name",
        );
        assert_eq!(k.statement_type, "SELECT");
        assert_eq!(k.select_columns, strings(&["user.name"]));
        assert_eq!(k.grouping_columns, strings(&["user.name"]));
        assert_eq!(k.join_columns, strings(&["music.user_id =", "user.id ="]));
        assert_eq!(k.join_predicates, strings(&["user.id = music.user_id"]));
        // The OR makes the WHERE one conjunct: none of its comparisons.
        assert!(k.filter_columns.is_empty(), "{:?}", k.filter_columns);
        let k = keys_of(
            "select name from user where id = 5 and 10 < col and name like 'a%' \
             and col between 1 and 2 and id in (1, 2) and id in (select user_id from music where col = 4)",
        );
        assert_eq!(
            k.filter_columns,
            strings(&[
                "music.col =",
                "user.col <=",
                "user.col >",
                "user.col >=",
                "user.id =",
                "user.id in",
                "user.name like"
            ])
        );
        assert_eq!(k.select_columns, strings(&["music.user_id", "user.name"]));
    }

    #[test]
    fn writes_report_their_filters() {
        let k = keys_of("update user set name = 'x' where id = 3");
        assert_eq!(k.statement_type, "UPDATE");
        assert_eq!(k.filter_columns, strings(&["user.id ="]));
        let k = keys_of("delete from music where user_id in (1, 2) and col != 3");
        assert_eq!(k.statement_type, "DELETE");
        assert_eq!(
            k.filter_columns,
            strings(&["music.col !=", "music.user_id in"])
        );
    }

    #[test]
    fn the_report_is_vtgates_json() {
        let k = keys_of("select id from user where name = 'a'");
        assert_eq!(
            k.to_json(),
            "{\n\t\"statementType\": \"SELECT\",\n\t\"filterColumns\": [\n\t\t\"user.name =\"\n\t],\n\t\"selectColumns\": [\n\t\t\"user.id\"\n\t]\n}"
        );
        // Derived tables' columns are left out; their own statement is read.
        let k =
            keys_of("select d.x from (select col as x from music where id = 1) d where d.x = 2");
        assert_eq!(k.filter_columns, strings(&["music.id ="]));
        assert_eq!(k.select_columns, strings(&["music.col"]));
    }
}
