//! What the gate knows of an expression's type when it orders, groups or
//! dedupes by it across shards: a column's declared type, and the
//! collation of a string expression built from such columns (MySQL's
//! collation derivation: a column's collation wins over literals and
//! numbers). A key the gate knows this way needs no `weight_string()`
//! from the shards, whose weights MariaDB gives with trailing spaces
//! counted (`weight_string('a ')` is not `weight_string('a')`) where its
//! comparisons ignore them (PAD SPACE): `'a'` and `'a '` are one group.

use sqlparser::ast::{self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem};

use super::sharded::TableInfo;
use crate::collation::Collation;
use crate::topo::Keyspace;
use crate::vschema::Declared;

/// String functions whose result takes the collation of their string
/// arguments; numbers and literals among the arguments yield to it.
const STRING_FUNCTIONS: &[&str] = &[
    "concat",
    "concat_ws",
    "lower",
    "upper",
    "lcase",
    "ucase",
    "ltrim",
    "rtrim",
    "left",
    "right",
    "substr",
    "substring",
    "mid",
    "replace",
    "lpad",
    "rpad",
    "reverse",
    "repeat",
];

/// How one argument takes part in its expression's collation (or one
/// part's column in its UNION's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Part {
    /// A column or expression of this type.
    Known(Declared),
    /// A literal, a parameter or NULL: it takes whatever collation the
    /// other arguments have.
    Coercible,
    /// Unknown type: the expression's collation is unknown.
    Unknown,
}

/// What is known of `e`'s type over `tables`: a declared column's type,
/// or the collation of a string expression over declared columns. None:
/// the shards must send weight strings.
pub(super) fn declared_of(tables: &[TableInfo], e: &Expr) -> Option<Declared> {
    match part(tables, e) {
        Part::Known(d) => Some(d),
        Part::Coercible | Part::Unknown => None,
    }
}

/// A SELECT's columns by name (as a derived table over it shows them),
/// each with what is known of its type over the SELECT's `tables`; `*`
/// shows nothing known.
pub(super) fn items(s: &ast::Select, tables: &[TableInfo]) -> Vec<(String, Part)> {
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => (super::sharded::column_name(e), part(tables, e)),
            SelectItem::ExprWithAlias { expr, alias } => (alias.value.clone(), part(tables, expr)),
            _ => (String::new(), Part::Unknown),
        })
        .collect()
}

/// A UNION's columns from its parts' [`items`]: the first part's names;
/// a type where the parts' columns have that one, or a collation where
/// the others are literals (a table of constants whose first row names
/// its collations, or `SELECT name ... UNION SELECT 'x'`). A number's
/// type does not survive a literal, which may be a string.
pub(super) fn union_items(
    first: Vec<(String, Part)>,
    other: &[(String, Part)],
) -> Vec<(String, Part)> {
    first
        .into_iter()
        .zip(other)
        .map(|((name, a), (_, b))| {
            let merged = match (a, *b) {
                (a, b) if a == b => a,
                (t @ Part::Known(Declared::Text(_)), Part::Coercible)
                | (Part::Coercible, t @ Part::Known(Declared::Text(_))) => t,
                _ => Part::Unknown,
            };
            (name, merged)
        })
        .collect()
}

/// The known columns of a derived table `alias` whose query shows
/// `items`, renamed by the alias's column list if it has one.
pub(super) fn known_columns(
    items: Vec<(String, Part)>,
    alias: &ast::TableAlias,
) -> Vec<(String, Declared)> {
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, (name, part))| {
            let Part::Known(d) = part else { return None };
            let name = match alias.columns.get(i) {
                Some(c) => c.name.value.clone(),
                None => name,
            };
            Some((name, d))
        })
        .collect()
}

/// The collations of a query's string columns, where known: a table of
/// constants made of its rows names them in its first row, so that the
/// statement reading it compares its strings as it would the query's
/// (at the gate and on the shards). None where unknown, or for a number.
pub(super) fn collations(ks: &Keyspace, q: &ast::Query) -> Vec<Option<Collation>> {
    fn of_body(ks: &Keyspace, body: &ast::SetExpr) -> Option<Vec<(String, Part)>> {
        match body {
            ast::SetExpr::Select(s) => {
                let mut tables = Vec::new();
                for t in &s.from {
                    for factor in
                        std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                    {
                        if let ast::TableFactor::Table { name, alias, .. } = factor {
                            let alias = alias.as_ref().map(|a| a.name.value.clone());
                            if let Ok(t) = super::sharded::table_info(ks, name, alias) {
                                tables.push(t);
                            }
                        }
                    }
                }
                Some(items(s, &tables))
            }
            ast::SetExpr::Query(q) => of_body(ks, &q.body),
            ast::SetExpr::SetOperation { left, right, .. } => {
                let (l, r) = (of_body(ks, left)?, of_body(ks, right)?);
                Some(union_items(l, &r))
            }
            _ => None,
        }
    }
    of_body(ks, &q.body)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, p)| match p {
            Part::Known(Declared::Text(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The collation a comparison `left op right` compares strings in, when
/// its operands derive one.
pub(super) fn compared_in(
    tables: &[TableInfo],
    left: &Expr,
    op: &ast::BinaryOperator,
    right: &Expr,
) -> Option<Collation> {
    use ast::BinaryOperator::*;
    if !matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq | Spaceship) {
        return None;
    }
    match string_of(tables, [left, right]) {
        Part::Known(Declared::Text(c)) => Some(c),
        _ => None,
    }
}

fn part(tables: &[TableInfo], e: &Expr) -> Part {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => tables
            .iter()
            .find_map(|t| t.declared(e))
            .map_or(Part::Unknown, Part::Known),
        Expr::Nested(inner) => part(tables, inner),
        Expr::Value(_) => Part::Coercible,
        // A literal converted (a table of constants' typed NULL string,
        // `CONVERT(NULL USING utf8mb4)`) yields to a column's collation as
        // the literal would.
        Expr::Convert { expr, .. } if matches!(**expr, Expr::Value(_)) => Part::Coercible,
        Expr::Collate { collation, .. } => Collation::from_name(&collation.to_string())
            .map_or(Part::Unknown, |c| Part::Known(Declared::Text(c))),
        Expr::Substring { expr, .. } => string_of(tables, [expr.as_ref()]),
        Expr::Trim {
            expr, trim_what, ..
        } => string_of(
            tables,
            std::iter::once(expr.as_ref()).chain(trim_what.as_deref()),
        ),
        Expr::Case {
            conditions,
            else_result,
            ..
        } => string_of(
            tables,
            conditions
                .iter()
                .map(|w| &w.result)
                .chain(else_result.as_deref()),
        ),
        Expr::Function(f) if f.over.is_none() => {
            let FunctionArguments::List(list) = &f.args else {
                return Part::Unknown;
            };
            let mut args = Vec::with_capacity(list.args.len());
            for a in &list.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                    _ => return Part::Unknown,
                }
            }
            let name = f.name.to_string().to_ascii_lowercase();
            match name.as_str() {
                // The arguments a value is chosen from (not IF's test).
                "if" if args.len() == 3 => string_of(tables, args[1..].iter().copied()),
                "ifnull" | "coalesce" => string_of(tables, args.iter().copied()),
                "nullif" | "min" | "max" | "any_value" if !args.is_empty() => {
                    string_of(tables, [args[0]])
                }
                n if STRING_FUNCTIONS.contains(&n) => string_of(tables, args.iter().copied()),
                _ => Part::Unknown,
            }
        }
        _ => Part::Unknown,
    }
}

/// The collation of a string made of `args`: the one collation of its
/// string columns (numbers and literals yield to it); unknown when an
/// argument's type is, when the columns disagree, or when none is a
/// string column (the result then has the connection's collation, which
/// the plan does not know).
fn string_of<'a>(tables: &[TableInfo], args: impl IntoIterator<Item = &'a Expr>) -> Part {
    let mut found = None;
    for a in args {
        match part(tables, a) {
            // An ENUM's or SET's collation is not tracked.
            Part::Unknown | Part::Known(Declared::Indexed) => return Part::Unknown,
            Part::Coercible | Part::Known(Declared::Number) => {}
            Part::Known(Declared::Text(c)) => match found {
                Some(f) if f != c => return Part::Unknown,
                _ => found = Some(c),
            },
        }
    }
    found.map_or(Part::Unknown, |c| Part::Known(Declared::Text(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;

    fn expr(sql: &str) -> Expr {
        Parser::new(&MySqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap()
    }

    fn table() -> TableInfo {
        TableInfo::derived("t".into(), false, None).with_declared(vec![
            ("name".into(), Declared::Text(Collation::Utf8GeneralCi)),
            ("code".into(), Declared::Text(Collation::Utf8Bin)),
            ("k".into(), Declared::Number),
        ])
    }

    #[test]
    fn a_string_expression_takes_its_columns_collation() {
        let tables = [table()];
        let general = Some(Declared::Text(Collation::Utf8GeneralCi));
        for e in [
            "t.name",
            "lower(name)",
            "if(name is null, k, name)",
            "ifnull(t.name, :v1)",
            "concat(name, '-', k)",
            "ifnull(name, convert(null using utf8mb4))",
            "case when k > 1 then name else :v2 end",
            "substring(name from 2)",
            "trim(name)",
            "coalesce(left(upper(name), 3), 'x')",
        ] {
            assert_eq!(declared_of(&tables, &expr(e)), general, "{e}");
        }
        assert_eq!(declared_of(&tables, &expr("k")), Some(Declared::Number));
        assert_eq!(
            declared_of(&tables, &expr("name collate utf8mb4_bin")),
            Some(Declared::Text(Collation::Utf8Bin))
        );
    }

    #[test]
    fn a_union_column_keeps_a_collation_its_literals_yield_to() {
        let general = Part::Known(Declared::Text(Collation::Utf8GeneralCi));
        let bin = Part::Known(Declared::Text(Collation::Utf8Bin));
        let number = Part::Known(Declared::Number);
        let merged =
            |a: Part, b: Part| union_items(vec![("c".into(), a)], &[("x".into(), b)])[0].clone();
        assert_eq!(merged(general, Part::Coercible), ("c".into(), general));
        assert_eq!(merged(Part::Coercible, general).1, general);
        assert_eq!(merged(general, general).1, general);
        assert_eq!(merged(number, number).1, number);
        assert_eq!(merged(Part::Coercible, Part::Coercible).1, Part::Coercible);
        // A literal may be a string; two collations clash.
        assert_eq!(merged(number, Part::Coercible).1, Part::Unknown);
        assert_eq!(merged(general, bin).1, Part::Unknown);
        assert_eq!(merged(general, Part::Unknown).1, Part::Unknown);
    }

    #[test]
    fn unknown_when_a_part_is_or_the_columns_disagree() {
        let tables = [table()];
        for e in [
            "concat(name, code)",
            "concat(name, other)",
            "lower('x')",
            "ifnull(k, 0)",
            "length(name)",
            "name collate utf8mb4_unicode_ci",
            "if(name > 'a', 1, 2)",
        ] {
            assert_eq!(declared_of(&tables, &expr(e)), None, "{e}");
        }
    }
}
