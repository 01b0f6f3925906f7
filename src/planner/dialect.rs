//! The parser's dialect for a sharded keyspace's statements: sqlparser's
//! MySQL dialect with the expression forms MariaDB takes and it does not,
//! `!x` (NOT, binding tighter than any operator), `a SOUNDS LIKE b`
//! (`SOUNDEX(a) = SOUNDEX(b)`, as MariaDB defines it), the compound units
//! of INTERVAL and EXTRACT (`INTERVAL '1:30' HOUR_MINUTE`), the
//! `INTERVAL(n, n1, n2, ...)` function, a CAST or CONVERT to a character
//! set (`CAST(x AS CHAR CHARACTER SET utf8mb4)`) and `CHAR(n USING cs)`.
//! Without them
//! such a statement was a syntax error on a sharded keyspace and ran on
//! an unsharded one. Every other question is the MySQL dialect's: the
//! wrapper says it is that dialect (the parser's checks of "is this MySQL"
//! hold) and forwards each method the MySQL dialect answers itself.

use sqlparser::ast::{
    CastKind, DataType, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Statement, UnaryOperator,
};
use sqlparser::dialect::{BindPlaceholderStyle, Dialect, MySqlDialect, Precedence};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// MariaDB's statements as the planner parses them (see the module).
#[derive(Debug, Default)]
pub struct MariaDb(MySqlDialect);

/// The bool questions the MySQL dialect answers itself, forwarded.
macro_rules! mysql_answers {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            self.0.$name()
        })*
    };
}

impl MariaDb {
    /// Whether the next two tokens are `SOUNDS LIKE`.
    fn sounds_like(parser: &Parser) -> bool {
        next_is(parser, 0, "sounds")
            && matches!(&parser.peek_nth_token_ref(1).token,
                Token::Word(w) if w.keyword == Keyword::LIKE)
    }
}

/// A call of function `name` with `args`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None::<DuplicateTreatment>,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// `SOUNDEX(e)`.
fn soundex(e: Expr) -> Expr {
    call("soundex", vec![e])
}

/// Whether the next token is the word `w` (not quoted).
fn next_is(parser: &Parser, n: usize, w: &str) -> bool {
    matches!(&parser.peek_nth_token_ref(n).token,
        Token::Word(t) if t.quote_style.is_none() && t.value.eq_ignore_ascii_case(w))
}

/// `INTERVAL(n, n1, ...)`, MariaDB's function (the index of the first
/// `n_i` above `n`), told from an INTERVAL of a parenthesized value
/// (`INTERVAL (1 + 1) DAY`) by its comma; None when the next tokens are
/// no such call.
fn interval_call(parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
    if !next_is(parser, 0, "interval") || parser.peek_nth_token_ref(1).token != Token::LParen {
        return None;
    }
    let mut depth = 0;
    let mut n = 1;
    let listed = loop {
        match &parser.peek_nth_token_ref(n).token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 1 => break false,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 1 => break true,
            Token::EOF => break false,
            _ => {}
        }
        n += 1;
    };
    if !listed {
        return None;
    }
    parser.advance_token();
    parser.advance_token();
    let args = parser
        .parse_comma_separated(Parser::parse_expr)
        .and_then(|args| parser.expect_token(&Token::RParen).map(|_| args));
    Some(args.map(|args| call("interval", args)))
}

/// `CAST(x AS type CHARACTER SET cs)` and `CONVERT(x, type CHARSET cs)`:
/// a conversion to a character set, kept as written (the type and its
/// character set one name the parser passes through). None, the parser
/// back where it was, for any other CAST or CONVERT.
fn cast_to_charset(parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
    let convert = next_is(parser, 0, "convert");
    if !(next_is(parser, 0, "cast") || convert)
        || parser.peek_nth_token_ref(1).token != Token::LParen
    {
        return None;
    }
    let parsed = parser.maybe_parse(|p| {
        p.advance_token();
        p.expect_token(&Token::LParen)?;
        let expr = p.parse_expr()?;
        match convert {
            true => p.expect_token(&Token::Comma).map(|_| ())?,
            false => p.expect_keyword_is(Keyword::AS)?,
        }
        let data_type = p.parse_data_type()?;
        let charset = if p.parse_keywords(&[Keyword::CHARACTER, Keyword::SET]) {
            "CHARACTER SET"
        } else if p.parse_keyword(Keyword::CHARSET) {
            "CHARSET"
        } else {
            return p.expected("CHARACTER SET", p.peek_token());
        };
        let cs = p.parse_identifier()?;
        p.expect_token(&Token::RParen)?;
        let named = Ident::new(format!("{data_type} {charset} {cs}"));
        Ok(Expr::Cast {
            // CONVERT(x, type) is the same CAST.
            kind: CastKind::Cast,
            expr: Box::new(expr),
            data_type: DataType::Custom(ObjectName::from(vec![named]), Vec::new()),
            format: None,
        })
    });
    parsed.transpose()
}

/// `CHAR(n, ... USING cs)`: the `CONVERT(CHAR(n, ...) USING cs)` it is.
/// None, the parser back where it was, for a CHAR call without USING.
fn char_using(parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
    if !next_is(parser, 0, "char") || parser.peek_nth_token_ref(1).token != Token::LParen {
        return None;
    }
    let parsed = parser.maybe_parse(|p| {
        p.advance_token();
        p.expect_token(&Token::LParen)?;
        let args = p.parse_comma_separated(Parser::parse_expr)?;
        p.expect_keyword_is(Keyword::USING)?;
        let cs = p.parse_identifier()?;
        p.expect_token(&Token::RParen)?;
        Ok(Expr::Convert {
            is_try: false,
            expr: Box::new(call("char", args)),
            data_type: None,
            charset: Some(ObjectName::from(vec![cs])),
            target_before_value: false,
            styles: Vec::new(),
        })
    });
    parsed.transpose()
}

impl Dialect for MariaDb {
    fn dialect(&self) -> std::any::TypeId {
        std::any::TypeId::of::<MySqlDialect>()
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let special = interval_call(parser)
            .or_else(|| cast_to_charset(parser))
            .or_else(|| char_using(parser));
        if let Some(e) = special {
            return Some(e);
        }
        // `!!a` comes as one token.
        let bangs = match parser.peek_token_ref().token {
            Token::ExclamationMark => 1,
            Token::DoubleExclamationMark => 2,
            _ => return None,
        };
        parser.advance_token();
        // MariaDB's `!` binds tighter than every binary operator: `!a = b`
        // is `(!a) = b`. Its operand is one term.
        let operand = parser.parse_subexpr(self.prec_value(Precedence::DoubleColon));
        Some(operand.map(|mut e| {
            for _ in 0..bangs {
                e = Expr::UnaryOp {
                    op: UnaryOperator::BangNot,
                    expr: Box::new(e),
                };
            }
            e
        }))
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        if !Self::sounds_like(parser) {
            return self.0.parse_infix(parser, expr, precedence);
        }
        parser.advance_token();
        parser.advance_token();
        let right = parser.parse_subexpr(self.prec_value(Precedence::Like));
        Some(right.map(|r| Expr::BinaryOp {
            left: Box::new(soundex(expr.clone())),
            op: sqlparser::ast::BinaryOperator::Eq,
            right: Box::new(soundex(r)),
        }))
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        if Self::sounds_like(parser) {
            return Some(Ok(self.prec_value(Precedence::Like)));
        }
        self.0.get_next_precedence(parser)
    }

    /// INTERVAL's and EXTRACT's compound units (`DAY_HOUR`, `YEAR_MONTH`,
    /// ...), which are no keywords: a unit the parser does not know is
    /// kept as written (MariaDB judges it).
    fn is_interval_qualifier(&self, kw: Keyword) -> bool {
        kw == Keyword::NoKeyword || self.0.is_interval_qualifier(kw)
    }

    fn allow_extract_custom(&self) -> bool {
        true
    }

    fn supports_string_literal_table_alias(&self, explicit: bool) -> bool {
        self.0.supports_string_literal_table_alias(explicit)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn ordered_bind_placeholder_style(&self) -> Option<BindPlaceholderStyle> {
        self.0.ordered_bind_placeholder_style()
    }

    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.0.parse_statement(parser)
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.0.is_table_factor_alias(explicit, kw, parser)
    }

    mysql_answers!(
        supports_string_literal_backslash_escape,
        supports_string_literal_concatenation,
        ignores_wildcard_escapes,
        supports_numeric_prefix,
        supports_literal_prefix_in_qualified_name,
        supports_bitwise_shift_operators,
        supports_singular_value_keyword,
        supports_multiline_comment_hints,
        require_interval_qualifier,
        supports_limit_comma,
        supports_create_table_select,
        supports_insert_set,
        supports_user_host_grantee,
        supports_table_hints,
        requires_single_line_comment_whitespace,
        supports_hash_comment,
        supports_match_against,
        supports_select_modifiers,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_alter_column_position,
        supports_update_order_by,
        supports_data_type_signed_suffix,
        supports_data_type_zerofill_suffix,
        supports_cross_join_constraint,
        supports_double_ampersand_operator,
        supports_binary_kw_as_cast,
        supports_table_partitions,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str, dialect: &dyn Dialect) -> Result<Vec<Statement>, ParserError> {
        Parser::parse_sql(dialect, sql)
    }

    #[test]
    fn bang_and_sounds_like_read_as_mariadb_reads_them() {
        let one = |sql: &str| parsed(sql, &MariaDb::default()).unwrap()[0].to_string();
        assert_eq!(
            one("select !a = 1, !(a = 1), !!a from t where !deleted and b sounds like 'x'"),
            "SELECT !a = 1, !(a = 1), ! !a FROM t WHERE !deleted AND soundex(b) = soundex('x')"
        );
        // `!` binds tighter than `=`: its operand is `a` alone.
        let Statement::Query(q) = &parsed("select !a = 1", &MariaDb::default()).unwrap()[0] else {
            panic!()
        };
        let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() else {
            panic!()
        };
        assert!(matches!(
            &s.projection[0],
            sqlparser::ast::SelectItem::UnnamedExpr(Expr::BinaryOp { left, .. })
                if matches!(left.as_ref(), Expr::UnaryOp { op: UnaryOperator::BangNot, .. })
        ));
        // `!=` stays an operator; `sounds` stays a name elsewhere.
        assert_eq!(
            one("select a != 1, sounds from t"),
            "SELECT a <> 1, sounds FROM t"
        );
        assert_eq!(
            one("select date_add(d, interval '1:30' hour_minute), extract(year_month from d), interval(k, 1, 5), interval (1 + 1) day"),
            "SELECT date_add(d, INTERVAL '1:30' hour_minute), EXTRACT(year_month FROM d), interval(k, 1, 5), INTERVAL (1 + 1) DAY"
        );
        assert_eq!(
            one("select cast(a as char(2) charset latin1), convert(b, char character set utf8mb4), cast(c as signed)"),
            "SELECT CAST(a AS CHAR(2) CHARSET latin1), CAST(b AS CHAR CHARACTER SET utf8mb4), CAST(c AS SIGNED)"
        );
        assert_eq!(
            one("select char(65, 66 using utf8mb4), char(67)"),
            "SELECT CONVERT(char(65, 66) USING utf8mb4), char(67)"
        );
        // MySQL's own dialect refuses both.
        assert!(parsed("select !a", &MySqlDialect {}).is_err());
        assert!(parsed("select a sounds like b", &MySqlDialect {}).is_err());
    }

    /// Every statement of Vitess's planner tests parses alike with both
    /// dialects: the wrapper forwards what the MySQL dialect decides.
    #[test]
    fn vitess_statements_parse_as_with_the_mysql_dialect() {
        // The parser recurses deeply on their nested statements.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(parse_vitess_statements)
            .unwrap()
            .join()
            .unwrap();
    }

    fn parse_vitess_statements() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/compat/vitess_planner_cases.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut compared = 0;
        for line in text.lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(sql) = case["query"].as_str() else {
                continue;
            };
            let (ours, theirs) = (
                parsed(sql, &MariaDb::default()),
                parsed(sql, &MySqlDialect {}),
            );
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{sql}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{sql}: {a:?} / {b:?}"),
            }
            compared += 1;
        }
        assert!(compared > 1900, "{compared}");
    }
}
