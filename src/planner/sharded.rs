//! Planning for sharded keyspaces: which shards a statement goes to (by the
//! table's primary vindex), what each shard is sent, and what the gate does
//! with the results (sort, aggregate, limit). Pure: template + VSchema in,
//! plan out; bind values are only referenced, so the plan is cacheable.

use std::borrow::Cow;
use std::ops::ControlFlow;

use super::dialect::MariaDb;
use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, OrderByKind, SelectItem, SetExpr, Statement, TableFactor, UnaryOperator,
};
use sqlparser::parser::Parser;

use super::PlanError;
use crate::collation::Collation;
use crate::sql::normalize::Template;
use crate::topo::{Keyspace, Snapshot};
use crate::vschema::vindex::Func;
use crate::vschema::Declared;

/// A value the plan needs at execution: a bind variable or a constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `:vN` (0-based index into the binds).
    Bind(usize),
    /// A constant the planner found in the text.
    Lit(mysql_common::value::Value),
}

/// Which shards a statement reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// One value of a unique vindex: one shard.
    Equal { func: Func, value: Operand },
    /// Several values: only the shards holding them; `:vIN` in the pushed
    /// query stands for each shard's own values.
    In { func: Func, values: Vec<Operand> },
    /// `col BETWEEN low AND high` on a sequential vindex: the shards whose
    /// key ranges meet the ids from `low`'s to `high`'s (Vitess's Between).
    /// Each gets the statement unchanged.
    Between {
        func: Func,
        low: Operand,
        high: Operand,
    },
    /// `col = v` or `col IN (...)` on a lookup vindex (named in the
    /// keyspace's VSchema): the shards the lookup table's rows for the
    /// values name, read when the statement runs. Each gets the statement
    /// unchanged.
    Lookup {
        vindex: String,
        values: Vec<Operand>,
        /// The vindex maps a value to one keyspace id at most.
        unique: bool,
    },
    /// Every shard.
    Scatter,
    /// Any one shard (reference tables, metadata).
    Any,
}

/// How the gate combines an internal column across shards and rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggKind {
    /// A grouping key or plain value: keep the first.
    Key,
    /// COUNT: add up.
    Count,
    /// SUM: add up (NULL when every part is NULL).
    Sum,
    /// MIN, its strings compared as `weight` says (None: a number).
    Min { weight: Option<Weight> },
    /// MAX, likewise.
    Max { weight: Option<Weight> },
    /// The weight string of another column: travels with it.
    Weight,
    /// BIT_AND: the bits every part has.
    BitAnd,
    /// BIT_OR: the bits any part has.
    BitOr,
    /// BIT_XOR: the bits an odd number of parts have.
    BitXor,
    /// GROUP_CONCAT without ORDER BY: the parts joined by the separator
    /// (its bytes and length; at most eight).
    Concat([u8; 8], u8),
    /// The argument of COUNT(DISTINCT ...), pushed down as a grouping key,
    /// its strings compared as `weight` says (None: a number).
    DistinctArg { weight: Option<Weight> },
}

/// An expression the gate evaluates over an internal row.
#[derive(Debug, Clone, PartialEq)]
pub enum GateExpr {
    /// Internal column i, as the shard sent it.
    Col(usize),
    /// AVG from internal SUM and COUNT columns.
    Avg { sum: usize, count: usize },
    /// COUNT(DISTINCT x) of the group, from the DistinctArg column.
    CountDistinct(usize),
    /// SUM(DISTINCT x) of the group, likewise.
    SumDistinct(usize),
    /// AVG(DISTINCT x) of the group, likewise.
    AvgDistinct(usize),
    /// A bind value.
    Bind(usize),
    /// A constant.
    Lit(mysql_common::value::Value),
    /// A binary operator.
    Binary(Box<GateExpr>, BinaryOperator, Box<GateExpr>),
    /// A unary operator.
    Unary(UnaryOperator, Box<GateExpr>),
    /// IS NULL / IS NOT NULL.
    IsNull(Box<GateExpr>, bool),
    /// The same value, compared with strings in this collation where it is
    /// an operand of a comparison (the collation MariaDB derives for it,
    /// `planner::derive`); without one the gate's own order stands in.
    Collate(Box<GateExpr>, Collation),
}

/// Internal column indexes at or above this count from the first hidden
/// column (their absolute position depends on how wide `*` turned out).
pub const HIDDEN: usize = 1 << 40;

/// How the gate orders a key's strings as MariaDB would. None: the key is
/// a number, or the gate falls back to its own order of the text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weight {
    /// Internal column with the shards' `weight_string()` of the key.
    Column(usize),
    /// The key's collation (declared in the VSchema or learned from the
    /// tablets, see [`crate::topo::schema`]): the gate compares the
    /// strings itself and the shards send no weight strings.
    Collation(Collation),
}

impl Weight {
    /// The internal column of the weight strings, if the shards send them.
    pub fn column(self) -> Option<usize> {
        match self {
            Weight::Column(c) => Some(c),
            Weight::Collation(_) => None,
        }
    }
}

/// A sort key at the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// What to sort by.
    pub expr: GateExpr,
    /// How its strings compare.
    pub weight: Option<Weight>,
    /// Descending.
    pub desc: bool,
}

/// Work done at the gate on the rows of every shard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gate {
    /// Per internal column: how rows of one group combine. Empty: no aggregation.
    pub aggregate: Vec<AggKind>,
    /// Grouping keys (internal columns, with how their strings compare).
    pub group_keys: Vec<(usize, Option<Weight>)>,
    /// True for an aggregate without GROUP BY: always one row.
    pub scalar: bool,
    /// Output columns (None: the internal columns minus `hidden`).
    pub output: Option<Vec<(GateExpr, String)>>,
    /// Trailing internal columns not shown (non-aggregated case).
    pub hidden: usize,
    /// HAVING, over internal rows after aggregation.
    pub having: Option<GateExpr>,
    /// DISTINCT over the output.
    pub distinct: bool,
    /// ORDER BY over internal rows.
    pub order: Vec<SortKey>,
    /// LIMIT and OFFSET.
    pub limit: Option<Operand>,
    /// OFFSET.
    pub offset: Option<Operand>,
}

/// A SELECT on a sharded table.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectPlan {
    /// Keyspace.
    pub keyspace: String,
    /// Which shards.
    pub routing: Routing,
    /// The statement as the client sent it (for one-shard routes).
    pub original: String,
    /// What each shard gets when several are involved.
    pub pushdown: Template,
    /// Gate work when several shards answer (None: concatenate).
    pub gate: Option<Gate>,
    /// The pushed query carries `LIMIT :v{binds+1}` = limit + offset.
    pub pushdown_limit: bool,
    /// Values that subqueries route by, under an `Equal` route's function:
    /// each must name the route's own shard, or the statement is refused.
    pub same_shard: Vec<Operand>,
}

/// One row of a sharded INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRow {
    /// The row's values as SQL text with `:vN` binds.
    pub values: Vec<String>,
    /// The primary vindex value, or None when it comes from the sequence.
    pub vindex_value: Option<Operand>,
    /// The row needs a sequence value for the auto-increment column.
    pub needs_seq: bool,
    /// Per owned lookup vindex, the row's values of its columns.
    pub lookup_values: Vec<Vec<Operand>>,
}

/// A lookup vindex the written table owns (its VSchema `owner`): the
/// lookup table's rows follow the table's, as vtgate keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedLookup {
    /// The vindex's name in the keyspace's VSchema.
    pub vindex: String,
    /// The owner table's columns of the vindex, in `from` order.
    pub columns: Vec<String>,
}

/// An INSERT into a sharded table.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertPlan {
    /// Keyspace.
    pub keyspace: String,
    /// The table.
    pub table: String,
    /// The lookup vindexes the table owns; each row's values of their
    /// columns are in [`InsertRow::lookup_values`].
    pub lookups: Vec<OwnedLookup>,
    /// INSERT IGNORE or ON DUPLICATE KEY UPDATE: lookup rows already
    /// there are left alone, and the rows whose unique lookup values other
    /// rows hold are not inserted (vtgate's ignore mode).
    pub upsert: bool,
    /// `INSERT [IGNORE] INTO t (cols) VALUES ` up to the rows.
    pub prefix: String,
    /// ` ON DUPLICATE KEY UPDATE ...` and ` RETURNING ...`, or empty.
    pub suffix: String,
    /// MariaDB's `RETURNING`: the shards answer with the inserted rows,
    /// which the client gets in the order of its VALUES.
    pub returning: bool,
    /// The rows.
    pub rows: Vec<InsertRow>,
    /// Primary vindex function.
    pub func: Func,
    /// Index of the auto-increment column in each row, when filled from a sequence.
    pub seq_col: Option<usize>,
    /// (keyspace, table) of the sequence.
    pub sequence: Option<(String, String)>,
}

/// UPDATE or DELETE on a sharded table.
#[derive(Debug, Clone, PartialEq)]
pub struct DmlPlan {
    /// Keyspace.
    pub keyspace: String,
    /// Which shards.
    pub routing: Routing,
    /// The statement as sent (`:vIN` stands for each shard's IN list when pruned).
    pub query: String,
    /// The statement as the client sent it (for one-shard routes).
    pub original: String,
    /// The lookup rows it changes, one entry per written table that owns
    /// lookup vindexes (a multi-table statement may write several).
    pub lookups: Vec<DmlLookups>,
}

/// How an UPDATE or DELETE keeps its table's lookup vindexes: the rows it
/// changes are read (locked) first, their lookup rows removed, and an
/// UPDATE's new values' rows added, before the statement runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DmlLookups {
    /// The table written.
    pub table: String,
    /// The primary vindex's function, which places each row.
    pub func: Func,
    /// `SELECT` of the rows the statement changes, with its binds, locked:
    /// the primary vindex column, then each lookup's columns in order.
    pub select: String,
    /// The lookups that change. For an UPDATE, the new values of their
    /// columns; a DELETE has none.
    pub changes: Vec<(OwnedLookup, Option<Vec<NewValue>>)>,
}

/// A lookup column's value after an UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub enum NewValue {
    /// The UPDATE leaves it.
    Keep,
    /// Set to a value.
    Set(Operand),
    /// Set to an expression over the row, which the SELECT of the rows
    /// computes: that row's column at this index.
    Read(usize),
}

pub(super) fn unsupported(msg: impl Into<String>) -> PlanError {
    PlanError::Unsupported(msg.into())
}

/// Operators a statement may hold before it is refused as too complex:
/// long operator chains (a set operation's parts among them) parse into
/// deep trees, and walking those (render, clone, drop) recurses once per
/// level. The gate's own tables of constants list their rows as one
/// VALUES, which counts none.
pub const MAX_OPERATORS: usize = 400;

/// How many queries one plan may plan inside itself, one within another
/// (a pulled-out subquery, a join's side, a rewritten grouping): past it
/// the statement is refused. Every nesting the planner makes is bounded
/// by the statement's own; this bound keeps a rewrite that would come
/// back to itself an error rather than a stack overflow, which ends the
/// process.
const MAX_NESTED_PLANS: usize = 48;

thread_local! {
    /// The queries being planned on this thread, one within another.
    static NESTED_PLANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One query being planned ([`MAX_NESTED_PLANS`]).
struct Nested;

impl Nested {
    fn enter() -> Result<Nested, PlanError> {
        NESTED_PLANS.with(|n| {
            if n.get() >= MAX_NESTED_PLANS {
                return Err(unsupported(format!(
                    "statement too complex for a sharded keyspace: queries planned within one another past {MAX_NESTED_PLANS}"
                )));
            }
            n.set(n.get() + 1);
            Ok(Nested)
        })
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        NESTED_PLANS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Parses a template; a syntax error is the client's.
pub fn parse(template: &str) -> Result<Statement, PlanError> {
    let tokens = crate::sql::lexer::tokenize(template);
    let operators = tokens
        .iter()
        .filter(|t| match t.kind {
            crate::sql::lexer::TokenKind::Punct(c) => b"=<>!+-*/%&|^~".contains(&c),
            crate::sql::lexer::TokenKind::Word => {
                ["and", "or", "xor", "not", "union", "intersect", "except"]
                    .iter()
                    .any(|w| t.is_word(template, w))
            }
            _ => false,
        })
        .count();
    if operators > MAX_OPERATORS {
        return Err(unsupported(format!(
            "statement too complex for a sharded keyspace: {operators} operators (at most {MAX_OPERATORS})"
        )));
    }
    // The parser's forms of MariaDB's LOCK IN SHARE MODE and the infix MOD.
    let readable = match crate::sql::share_lock(template, &tokens, false) {
        Some(text) => {
            let toks = crate::sql::lexer::tokenize(&text);
            Some(super::forms::mod_operator(&text, &toks).unwrap_or(text))
        }
        None => super::forms::mod_operator(template, &tokens),
    };
    let retokenized;
    let (template, tokens) = match &readable {
        Some(text) => {
            retokenized = crate::sql::lexer::tokenize(text);
            (text.as_str(), &retokenized)
        }
        None => (template, &tokens),
    };
    let mut stmts = match Parser::parse_sql(&MariaDb::default(), template) {
        Ok(stmts) => stmts,
        // MySQL's `UPDATE a, b SET ...`, which the parser does not take,
        // is the cross join `UPDATE a JOIN b SET ...`.
        Err(e) => match comma_update(template, tokens) {
            Some(joined) => Parser::parse_sql(&MariaDb::default(), &joined)
                .map_err(|_| PlanError::Syntax(e.to_string()))?,
            // INTO OUTFILE: each shard's tablet would write its own file
            // on its own host (vtgate's refusal too).
            None if tokens.windows(2).any(|w| {
                w[0].is_word(template, "into")
                    && (w[1].is_word(template, "outfile") || w[1].is_word(template, "dumpfile"))
            }) =>
            {
                return Err(unsupported(
                    "INTO OUTFILE or DUMPFILE on a sharded keyspace (each shard's tablet would write its own file)",
                ))
            }
            // LOAD DATA without LOCAL reads a file on the server's host.
            None if tokens.len() > 2
                && tokens[0].is_word(template, "load")
                && tokens[1].is_word(template, "data") =>
            {
                return Err(unsupported(
                    "LOAD DATA INFILE on a sharded keyspace (it reads a file on each tablet's host; LOAD DATA LOCAL INFILE sends it through the gate)",
                ))
            }
            None => return Err(PlanError::Syntax(e.to_string())),
        },
    };
    if stmts.len() != 1 {
        return Err(PlanError::Syntax("expected one statement".into()));
    }
    Ok(stmts.remove(0))
}

/// Whether `value` is column `col` itself or `VALUES(col)` (an upsert's
/// new row's value of it).
fn sets_itself(value: &Expr, col: &str) -> bool {
    let named = |e: &Expr| match e {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case(col),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|i| i.value.eq_ignore_ascii_case(col)),
        _ => false,
    };
    match value {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("values") => match &f.args {
            ast::FunctionArguments::List(l) => matches!(
                l.args.as_slice(),
                [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] if named(e)
            ),
            _ => false,
        },
        other => named(other),
    }
}

/// The name MariaDB gives an unaliased select item `e`: a column's own
/// name, else the expression as written (its placeholders marked, see
/// [`crate::sql::normalize::template_name`]).
pub(super) fn item_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => crate::sql::normalize::template_name(&other.to_string()),
    }
}

/// `text` parsed as one condition (None when it is none).
pub(super) fn condition(text: &str) -> Option<Expr> {
    match parse(&format!("SELECT 1 WHERE {text}")).ok()? {
        Statement::Query(q) => match *q.body {
            ast::SetExpr::Select(s) => s.selection,
            _ => None,
        },
        _ => None,
    }
}

/// `UPDATE a, b SET ...` as `UPDATE a JOIN b SET ...`: the commas between
/// UPDATE and its SET (outside parentheses) become JOINs; None for any
/// other statement.
fn comma_update(sql: &str, tokens: &[crate::sql::lexer::Token]) -> Option<String> {
    use crate::sql::lexer::TokenKind;
    if !tokens.first()?.is_word(sql, "update") {
        return None;
    }
    let (mut depth, mut commas) = (0usize, Vec::new());
    for (i, t) in tokens.iter().enumerate().skip(1) {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth = depth.saturating_sub(1),
            // A table must follow.
            TokenKind::Punct(b',') if depth == 0 => match tokens.get(i + 1).map(|n| n.kind) {
                Some(TokenKind::Word | TokenKind::Ident | TokenKind::Punct(b'(')) => {
                    commas.push(t.start)
                }
                _ => return None,
            },
            TokenKind::Word if depth == 0 && t.is_word(sql, "set") => break,
            _ => {}
        }
    }
    if commas.is_empty() {
        return None;
    }
    let mut joined = String::with_capacity(sql.len() + 5 * commas.len());
    let mut from = 0;
    for at in commas {
        joined.push_str(&sql[from..at]);
        joined.push_str(" JOIN ");
        from = at + 1;
    }
    joined.push_str(&sql[from..]);
    Some(joined)
}

/// The table a statement reads or writes, resolved in the VSchema.
#[derive(Clone)]
pub(super) struct TableInfo {
    name: String,
    alias: Option<String>,
    /// The VSchema table type (`reference`, `sequence`, or empty).
    pub(super) kind: String,
    /// The primary vindex: its column (lower case) and function.
    pub(super) vindex: Option<(String, Func)>,
    /// A pinned table's keyspace id: all its rows are on that one shard.
    pinned: Option<Vec<u8>>,
    /// Another keyspace, whose table this is (`commerce.product` in a
    /// statement on `customer`): its own route, never colocated here.
    pub(super) keyspace: Option<String>,
    /// Lookup vindexes the table can be routed by: their column (lower
    /// case), vindex name, and whether it is unique.
    lookups: Vec<(String, String, bool)>,
    auto_inc: Option<(String, String)>,
    /// Columns whose type (declared in the VSchema, else learned from the
    /// tablets) tells the gate how to order them.
    declared: Vec<(String, Declared)>,
    /// Every column in table order, as the schema tracker learned them
    /// (empty: not known): what a `*` stands for.
    columns: Vec<String>,
    /// An outer join may give it a row of NULLs (the right table of a
    /// LEFT JOIN): its vindex column's NULLs come from any shard, so
    /// grouping or partitioning by it does not keep a group on one.
    pub(super) nullable: bool,
}

impl TableInfo {
    /// A derived table as the outer query sees it: on every shard (over
    /// reference tables only), or sharded, its rows placed by `vindex`
    /// when it shows one.
    pub(super) fn derived(name: String, reference: bool, vindex: Option<(String, Func)>) -> Self {
        TableInfo {
            name,
            alias: None,
            kind: if reference {
                "reference".into()
            } else {
                String::new()
            },
            vindex,
            pinned: None,
            keyspace: None,
            lookups: Vec::new(),
            auto_inc: None,
            declared: Vec::new(),
            columns: Vec::new(),
            nullable: false,
        }
    }

    /// The same, known by `alias`.
    fn aliased(mut self, alias: Option<String>) -> Self {
        self.alias = alias;
        self
    }

    /// The name the statement knows the table by: its alias, if it has one.
    pub(super) fn visible_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    /// The vindex function, when `e` is the table's primary vindex column
    /// and so keeps its rows apart by shard (equal values on one shard);
    /// not for a table an outer join may NULL-extend, whose NULLs come
    /// from every shard.
    pub(super) fn places_rows_by(&self, e: &Expr) -> Option<Func> {
        match &self.vindex {
            Some((col, func)) if !self.nullable && is_column(e, col, self) => Some(*func),
            _ => None,
        }
    }

    /// The same, with these columns' types known (a derived table's, from
    /// the query that makes it).
    pub(super) fn with_declared(mut self, declared: Vec<(String, Declared)>) -> Self {
        self.declared = declared;
        self
    }

    /// Whether the schema tracker learned a column of this name (false
    /// when its columns are not known).
    fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// What is known of the type of a key that is one of the table's columns.
    pub(super) fn declared(&self, e: &Expr) -> Option<Declared> {
        self.declared
            .iter()
            .find(|(c, _)| is_column(e, c, self))
            .map(|(_, d)| *d)
    }
}

/// How the gate orders key `e` over a FROM clause's tables: declared
/// numbers need nothing, declared strings and string expressions over
/// them their collation (`planner::derive`); anything else the shards'
/// weight strings, added by `push_weight` (which returns the internal
/// column). A column two tables declare would be ambiguous to MariaDB, so
/// the first table declaring it is the one.
fn weigh(
    tables: &[TableInfo],
    e: &Expr,
    sql: &str,
    push_weight: impl FnOnce(String) -> usize,
) -> Option<Weight> {
    match super::derive::declared_of(tables, e) {
        Some(Declared::Number) => None,
        Some(Declared::Text(c)) => Some(Weight::Collation(c)),
        // Its number, as fixed-width digits (compared as bytes).
        Some(Declared::Indexed) => Some(Weight::Column(push_weight(format!(
            "lpad(({sql}) + 0, 20, '0')"
        )))),
        None => Some(Weight::Column(push_weight(weight_string(sql)))),
    }
}

/// The shards' weight string of key `sql`, for the gate to compare them
/// by: of the value without its trailing spaces, which MariaDB weighs
/// (`weight_string('a ')` is longer than `weight_string('a')`) where its
/// comparisons of text pad with spaces (PAD SPACE: `'a' = 'a '`, one
/// group). A binary result (NO PAD) is compared by its bytes instead
/// (the engine tells it by its column's character set).
pub(super) fn weight_string(sql: &str) -> String {
    format!("weight_string(rtrim({sql}))")
}

fn ident_name(n: &ast::ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

pub(super) fn table_info(
    ks: &Keyspace,
    name: &ast::ObjectName,
    alias: Option<String>,
) -> Result<TableInfo, PlanError> {
    let parts = ident_name(name);
    let (qual, table) = match parts.as_slice() {
        [t] => (None, t.clone()),
        [q, t] => (Some(q.clone()), t.clone()),
        _ => return Err(unsupported(format!("table name {name}"))),
    };
    // MySQL's one-row `dual` beside other tables (`from dual, t`): on
    // every shard alike, as a reference table's rows are.
    if qual.is_none() && table.eq_ignore_ascii_case("dual") {
        return Ok(TableInfo::derived(table, true, None).aliased(alias));
    }
    if let Some(q) = qual {
        if crate::sql::SYSTEM_SCHEMAS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&q))
        {
            return Err(unsupported(format!(
                "table {q}.{table}: statements across keyspaces ({q} and {})",
                ks.name
            )));
        }
        // Another keyspace's table: planned there, on a route of its own.
        if q != ks.name {
            return Ok(TableInfo {
                declared: Vec::new(),
                columns: Vec::new(),
                nullable: false,
                name: table,
                alias,
                kind: String::new(),
                vindex: None,
                pinned: None,
                keyspace: Some(q),
                lookups: Vec::new(),
                auto_inc: None,
            });
        }
    }
    if !ks.sharded {
        // One shard holds all of an unsharded keyspace's tables: each is
        // there as a reference table is on every shard, and its rows are
        // written there as a pinned table's.
        let mut t = TableInfo::derived(table, true, None).aliased(alias);
        t.pinned = Some(Vec::new());
        return Ok(t);
    }
    let t = ks
        .vschema
        .tables
        .get(&table)
        .ok_or_else(|| PlanError::TableNotFound {
            table: table.clone(),
            keyspace: ks.name.clone(),
        })?;
    let vindex = match t.column_vindexes.first() {
        Some(cv) => {
            let col = cv.cols().first().cloned().unwrap_or_default();
            let def = ks
                .vschema
                .vindexes
                .get(&cv.name)
                .ok_or_else(|| unsupported(format!("vindex {}", cv.name)))?;
            Func::from_type(&def.kind)
                .ok()
                .map(|f| (col.to_ascii_lowercase(), f))
        }
        None => None,
    };
    Ok(TableInfo {
        declared: declared_columns(ks, &table, t),
        nullable: false,
        columns: ks
            .learned
            .get(&table)
            .map(|l| l.columns.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default(),
        name: table,
        alias,
        kind: t.kind.clone(),
        vindex,
        pinned: t.pinned.as_deref().and_then(crate::vschema::unhex),
        keyspace: None,
        lookups: routable_lookups(ks, t),
        auto_inc: t
            .auto_increment
            .as_ref()
            .map(|a| (a.column.clone(), a.sequence.clone())),
    })
}

/// The columns of `table` whose type tells the gate how to order them: as
/// the VSchema declares them, else as the schema tracker learned them from
/// the tablets.
fn declared_columns(
    ks: &Keyspace,
    table: &str,
    t: &crate::vschema::Table,
) -> Vec<(String, Declared)> {
    let mut declared: Vec<(String, Declared)> = t
        .columns
        .iter()
        .filter_map(|c| c.get("name")?.as_str())
        .filter_map(|c| Some((c.to_string(), t.declared(c)?)))
        .collect();
    for (c, d) in ks.learned.get(table).into_iter().flat_map(|t| &t.columns) {
        let Some(d) = d else { continue };
        if !declared.iter().any(|(v, _)| v.eq_ignore_ascii_case(c)) {
            declared.push((c.clone(), *d));
        }
    }
    declared
}

/// True when `e` names column `col` of the table.
pub(super) fn is_column(e: &Expr, col: &str, t: &TableInfo) -> bool {
    match e {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case(col),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] => {
                c.value.eq_ignore_ascii_case(col)
                    && (q.value == t.name || t.alias.as_deref() == Some(q.value.as_str()))
            }
            _ => false,
        },
        Expr::Nested(inner) => is_column(inner, col, t),
        _ => false,
    }
}

/// A bind or a constant, if the expression is one.
fn operand(e: &Expr) -> Option<Operand> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p
                .strip_prefix(":v")
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .map(Operand::Bind),
            ast::Value::Number(n, _) => Some(Operand::Lit(crate::sql::normalize::number_value(n))),
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => Some(
                Operand::Lit(mysql_common::value::Value::Bytes(s.as_bytes().to_vec())),
            ),
            ast::Value::Null => Some(Operand::Lit(mysql_common::value::Value::NULL)),
            _ => None,
        },
        Expr::Nested(inner) => operand(inner),
        // MySQL's unary plus changes no value (`+6`, `+'6'`).
        Expr::UnaryOp {
            op: ast::UnaryOperator::Plus,
            expr,
        } => operand(expr),
        // The typed values the engine writes into rows it found first: a
        // NULL of a type, an integer said to be unsigned or signed.
        Expr::Cast {
            expr, data_type, ..
        } => match (operand(expr)?, data_type) {
            (null @ Operand::Lit(mysql_common::value::Value::NULL), _) => Some(null),
            (
                number,
                ast::DataType::Signed
                | ast::DataType::SignedInteger
                | ast::DataType::Unsigned
                | ast::DataType::UnsignedInteger,
            ) if matches!(expr.as_ref(), Expr::Value(v)
                if matches!(v.value, ast::Value::Number(..) | ast::Value::Placeholder(_))) =>
            {
                Some(number)
            }
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// Routing from a WHERE clause; also returns the IN expression that must
/// be pruned per shard.
pub(super) fn route_where(selection: Option<&Expr>, t: &TableInfo) -> (Routing, Option<Expr>) {
    if t.kind == "reference" {
        return (Routing::Any, None);
    }
    if let Some(k) = &t.pinned {
        let value = Operand::Lit(mysql_common::value::Value::Bytes(k.clone()));
        return (
            Routing::Equal {
                func: Func::Binary,
                value,
            },
            None,
        );
    }
    let Some(sel) = selection else {
        return (Routing::Scatter, None);
    };
    let primary = match &t.vindex {
        Some((col, func)) => route_primary(sel, t, col, *func),
        None => (Routing::Scatter, None),
    };
    if matches!(primary.0, Routing::Equal { .. }) || t.lookups.is_empty() {
        return primary;
    }
    // As vtgate ranks them: one value of a lookup before several of the
    // primary vindex, and any of them before a scatter.
    match (route_lookup(sel, t), primary) {
        (lookup @ Routing::Lookup { .. }, (Routing::Scatter, _)) => (lookup, None),
        (Routing::Lookup { values, .. }, primary) if values.len() != 1 => primary,
        (lookup @ Routing::Lookup { .. }, _) => (lookup, None),
        (_, primary) => primary,
    }
}

/// The lookup vindex route of a WHERE, where a conjunct names values of a
/// lookup column: an equality first, else an IN list.
fn route_lookup(sel: &Expr, t: &TableInfo) -> Routing {
    let mut best_in = None;
    for c in conjuncts(sel) {
        for (col, vindex, unique) in &t.lookups {
            let lookup = |values| Routing::Lookup {
                vindex: vindex.clone(),
                values,
                unique: *unique,
            };
            if let Some(value) = equal_value(c, col, t) {
                return lookup(vec![value]);
            }
            if best_in.is_none() {
                best_in = in_values(c, col, t).map(lookup);
            }
        }
    }
    best_in.unwrap_or(Routing::Scatter)
}

/// The value `c` equates column `col` of `t` with (`col = v`, `v = col`).
fn equal_value(c: &Expr, col: &str, t: &TableInfo) -> Option<Operand> {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = c
    else {
        return None;
    };
    if is_column(left, col, t) {
        operand(right)
    } else if is_column(right, col, t) {
        operand(left)
    } else {
        None
    }
}

/// The values of `col IN (v, ...)`, when every one is a value.
fn in_values(c: &Expr, col: &str, t: &TableInfo) -> Option<Vec<Operand>> {
    match c {
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated: false,
            ..
        } if is_column(expr, col, t) => list.iter().map(operand).collect(),
        _ => None,
    }
}

/// The lookup vindexes of a table's VSchema entry it can be routed by:
/// one `from` column, readable, not write-only.
fn routable_lookups(ks: &Keyspace, t: &crate::vschema::Table) -> Vec<(String, String, bool)> {
    t.column_vindexes
        .iter()
        .skip(1)
        .filter_map(|cv| {
            let def = ks.vschema.vindexes.get(&cv.name)?;
            let l = crate::vschema::lookup::Lookup::from_vindex(&cv.name, def)?.ok()?;
            let [col] = cv.cols() else { return None };
            (!l.write_only && l.from.len() == 1)
                .then(|| (col.to_ascii_lowercase(), cv.name.clone(), l.unique))
        })
        .collect()
}

/// The primary vindex route of a WHERE: `col = v`, `col IN (...)` (with
/// the IN to prune per shard), or BETWEEN on a sequential function.
fn route_primary(sel: &Expr, t: &TableInfo, col: &str, func: Func) -> (Routing, Option<Expr>) {
    let mut best_in = None;
    let mut between = None;
    for c in conjuncts(sel) {
        if let Some(value) = equal_value(c, col, t) {
            return (Routing::Equal { func, value }, None);
        }
        if best_in.is_none() {
            best_in = in_values(c, col, t).map(|values| (Routing::In { func, values }, c.clone()));
        }
        if let Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } = c
        {
            if between.is_none() && func.is_sequential() && is_column(expr, col, t) {
                if let (Some(low), Some(high)) = (operand(low), operand(high)) {
                    between = Some(Routing::Between { func, low, high });
                }
            }
        }
    }
    // Listed values name their shards exactly; a range only bounds them.
    match (best_in, between) {
        (Some((r, e)), _) => (r, Some(e)),
        (None, Some(r)) => (r, None),
        (None, None) => (Routing::Scatter, None),
    }
}

/// Renders WHERE with the routing IN list replaced by the per-shard marker.
fn render_where(selection: &Expr, in_expr: Option<&Expr>) -> String {
    match in_expr {
        None => selection.to_string(),
        Some(target) => {
            let mut sel = selection.clone();
            replace_in(&mut sel, target);
            sel.to_string()
        }
    }
}

fn replace_in(e: &mut Expr, target: &Expr) -> bool {
    if e == target {
        if let Expr::In {
            target: ast::InTarget::List(list),
            ..
        } = e
        {
            *list = vec![Expr::value(ast::Value::Placeholder(":vIN".into()))];
        }
        return true;
    }
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => replace_in(left, target) || replace_in(right, target),
        Expr::Nested(inner) => replace_in(inner, target),
        _ => false,
    }
}

/// Whether `e` names a table of another keyspace (placement qualified
/// those) or of a system schema.
fn reads_elsewhere(e: &Expr, ks: &Keyspace) -> bool {
    let text = e.to_string();
    crate::sql::table_refs(&text)
        .iter()
        .any(|r| !r.column && r.qualifier.is_some_and(|q| q != ks.name))
}

fn contains_subquery(e: &Expr) -> bool {
    let s = e.to_string().to_ascii_uppercase();
    s.contains("SELECT ")
}

/// Plans a statement on a sharded keyspace.
pub fn plan(template: &str, ks: &Keyspace, snap: &Snapshot) -> Result<super::Plan, PlanError> {
    if crate::sql::contains_ci(template, "sql_calc_found_rows") {
        if let Some((limited, count)) = found_rows_queries(template)? {
            return Ok(super::Plan::CalcFoundRows {
                limited: Box::new(plan(&limited, ks, snap)?),
                count: Box::new(plan(&count, ks, snap)?),
            });
        }
    }
    // INTO variables: the session assigns them from the SELECT's row.
    if let Some((select, vars)) = crate::sql::into_variables(template) {
        let inner = plan_statement(&select, ks, snap, true)?;
        return Ok(super::Plan::SelectInto {
            vars,
            inner: Box::new(inner),
        });
    }
    plan_statement(template, ks, snap, true)
}

/// A `SELECT SQL_CALC_FOUND_ROWS` as the SELECT without the modifier and
/// the query that counts its rows without ORDER BY and LIMIT: its own
/// FROM and WHERE under `COUNT(*)` when it neither groups, aggregates nor
/// dedupes, else `COUNT(*)` over it as a derived table. None for any
/// other statement.
fn found_rows_queries(template: &str) -> Result<Option<(String, String)>, PlanError> {
    let Statement::Query(q) = parse(template)? else {
        return Ok(None);
    };
    let mut q = *q;
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return Ok(None);
    };
    match sel.select_modifiers.as_mut() {
        Some(m) if m.sql_calc_found_rows => m.sql_calc_found_rows = false,
        _ => return Ok(None),
    }
    let limited = q.to_string();
    let mut all = q.clone();
    all.order_by = None;
    all.limit_clause = None;
    let SetExpr::Select(sel) = all.body.as_mut() else {
        return Ok(None);
    };
    let grouped = !matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    let plain = !grouped
        && sel.having.is_none()
        && sel.distinct.is_none()
        && !sel.projection.iter().any(|p| match p {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        });
    let count = match count_star().filter(|_| plain) {
        Some(star) => {
            sel.projection = vec![star];
            all.to_string()
        }
        None => format!("SELECT COUNT(*) FROM ({all}) AS found_rows"),
    };
    Ok(Some((limited, count)))
}

/// `COUNT(*)` as a select item, as the parser writes it.
fn count_star() -> Option<SelectItem> {
    let Ok(Statement::Query(q)) = parse("SELECT COUNT(*)") else {
        return None;
    };
    match *q.body {
        SetExpr::Select(s) => s.projection.into_iter().next(),
        _ => None,
    }
}

/// MariaDB's refusal of a multi-table DELETE (`DELETE a FROM t a ...`)
/// whose WHERE clause's subqueries read a table it deletes from; the
/// target is named as the statement names it.
fn target_read(d: &ast::Delete) -> Result<(), PlanError> {
    let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) = &d.from;
    let Some(selection) = d.selection.as_ref().filter(|_| !d.tables.is_empty()) else {
        return Ok(());
    };
    // The base tables the WHERE clause's subqueries read.
    let mut read = Vec::new();
    let _ = ast::visit_relations(selection, |r| {
        read.extend(r.0.last().map(|p| p.to_string()));
        std::ops::ControlFlow::<()>::Continue(())
    });
    for target in &d.tables {
        let name = target.0.last().map(|p| p.to_string()).unwrap_or_default();
        let base = super::join::factors(from).find_map(|f| match f {
            TableFactor::Table { name: table, .. }
                if super::join::known_as(f).as_deref() == Some(name.as_str()) =>
            {
                table.0.last().map(|p| p.to_string())
            }
            _ => None,
        });
        if base.is_some_and(|b| read.contains(&b)) {
            return Err(PlanError::TargetRead(name));
        }
    }
    Ok(())
}

/// [`plan`]; `find_first`: a write no other plan answers may be rewritten
/// to find its rows first (not again once it is such a rewrite).
fn plan_statement(
    template: &str,
    ks: &Keyspace,
    snap: &Snapshot,
    find_first: bool,
) -> Result<super::Plan, PlanError> {
    if let Some((modifiers, bare)) = super::forms::dml_modifiers(template) {
        let planned = plan_statement(&bare, ks, snap, find_first)?;
        return super::forms::with_modifiers(planned, &modifiers);
    }
    let mut stmt = parse(template)?;
    assigns_over_rows(&stmt)?;
    super::forms::insert_set_as_values(&mut stmt)?;
    super::forms::group_order(&mut stmt);
    name_as_written(template, &mut stmt)?;
    if let Statement::Delete(d) = &stmt {
        target_read(d)?;
    }
    let write = matches!(stmt, Statement::Update(_) | Statement::Delete(_));
    // A subquery's bare names of the written table, placed (once: placed,
    // they change no more).
    if write && crate::sql::contains_ci(template, "select") {
        if let Some(placed) = super::qualify::qualify_write(&stmt, ks, snap)? {
            return plan_statement(&placed.to_string(), ks, snap, find_first);
        }
    }
    let planned = match plan_parsed(template, &stmt, ks, snap) {
        // An UPDATE or DELETE whose subqueries read another keyspace, or
        // read across shards: they run first (vtgate's
        // UncorrelatedSubquery over a DML), and the write runs where its
        // table is with their answers in.
        Err(e @ PlanError::Unsupported(_))
            if write
                && (e.to_string().contains("statements across keyspaces")
                    || e.to_string()
                        .contains("subqueries in a sharded UPDATE or DELETE")) =>
        {
            super::pullout::plan_write(&stmt, ks, snap, e)
                .map(|p| super::Plan::Pullout(Box::new(p)))
        }
        planned => planned,
    };
    match planned {
        // Rows no one route finds (a multi-table write across shards, a
        // LIMIT over several, a correlated subquery over other shards'
        // rows): found first, then written by primary key.
        Err(e @ PlanError::Unsupported(_))
            if write
                && find_first
                && [
                    "multi-table",
                    "LIMIT on more than one shard",
                    "subqueries",
                    "correlated",
                ]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            match super::dml_input::rewrite(&stmt, ks)? {
                Some(super::dml_input::Rewritten::Sql(sql)) => {
                    plan_statement(&sql, ks, snap, false)
                }
                Some(super::dml_input::Rewritten::Assign(a)) => {
                    super::pullout::plan_assign(a, ks, snap)
                        .map(|p| super::Plan::Pullout(Box::new(p)))
                }
                Some(super::dml_input::Rewritten::Each(writes)) => each_write(&writes, ks, snap, e),
                None => Err(e),
            }
        }
        planned => planned,
    }
}

/// Names a SELECT's computed columns as MariaDB names them, by the text
/// the client wrote (`count(distinct x)`, `case when ... end`): an alias
/// of that text (its placeholders filled when the statement is sent, see
/// [`crate::sql::normalize::template_name`]). Without it, the shards would
/// name them by the planner's rendering of the statement
/// (`count(DISTINCT x)`), and a client reading columns by name would not
/// find them. Columns and literals are named alike either way.
fn name_as_written(template: &str, stmt: &mut Statement) -> Result<(), PlanError> {
    let Statement::Query(q) = stmt else {
        return Ok(());
    };
    let selects = template
        .as_bytes()
        .windows(6)
        .filter(|w| w.eq_ignore_ascii_case(b"select"))
        .count();
    if selects > 1 {
        name_within_as_written(template, q)?;
    }
    let SetExpr::Select(sel) = q.body.as_mut() else {
        // A UNION's columns are its first part's.
        return Within(template).name(q, Listed::FirstPart);
    };
    let unnamed = |p: &SelectItem| matches!(p, SelectItem::UnnamedExpr(e) if computed(e));
    if !sel.projection.iter().any(unnamed) {
        return Ok(());
    }
    let Some(written) = crate::sql::select_items(template) else {
        return Ok(());
    };
    if written.len() == sel.projection.len() {
        alias_as_written(&mut sel.projection, &written, Listed::Outermost);
    }
    Ok(())
}

/// Whether a select item computes its value (is no column or literal):
/// MariaDB names such a column by its text.
fn computed(e: &Expr) -> bool {
    !matches!(
        e,
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_)
    )
}

/// Whose select list a statement's text names.
#[derive(Clone, Copy, PartialEq)]
enum Listed {
    /// The statement's own: its columns.
    Outermost,
    /// A derived table's: the columns the statement reads.
    Derived,
    /// A WITH table's: as a derived table's, but a name longer than
    /// MariaDB gives such a column is `Name_exp_N`.
    With,
    /// The first part of the statement's UNION (or other set operation):
    /// the statement's columns.
    FirstPart,
}

/// Aliases each unnamed computed item of `projection` by its text as
/// written (`written`, one an item), where that differs from the
/// planner's rendering or holds a value. Within the statement, only an
/// item whose written text parses to the same expression (the text was
/// found by position, and may not be that item's); in a WITH table's
/// list by the name MariaDB gives its column
/// ([`crate::sql::normalize::with_name`]).
fn alias_as_written(projection: &mut [SelectItem], written: &[&str], listed: Listed) {
    let check = listed != Listed::Outermost;
    for (position, (item, text)) in projection.iter_mut().zip(written).enumerate() {
        if let SelectItem::UnnamedExpr(e) = item {
            // (Named also when it holds a value: a client's parameter is
            // named by its `?`, which the shards would not see.)
            let long =
                listed == Listed::With && text.chars().count() > crate::sql::normalize::NAME_LENGTH;
            let named = computed(e) && (e.to_string() != *text || text.contains(":v") || long);
            let same = || condition(text).is_some_and(|x| x.to_string() == e.to_string());
            if named && (!check || same()) {
                let name = match listed {
                    Listed::With => crate::sql::normalize::with_name(text, position + 1),
                    _ => crate::sql::normalize::template_name(text),
                };
                let alias = ast::Ident::with_quote('`', name);
                let expr = std::mem::replace(e, Expr::Value(ast::Value::Null.into()));
                *item = SelectItem::ExprWithAlias { expr, alias };
            }
        }
    }
}

/// Names select lists found in the template text it holds.
struct Within<'a>(&'a str);

impl Within<'_> {
    /// Names `q`'s columns (its first part's list) as written, each list
    /// found in the template where the parser says its SELECT begins; two
    /// columns of one name in a derived or WITH table are MariaDB's 1060.
    fn name(&self, q: &mut ast::Query, listed: Listed) -> Result<(), PlanError> {
        let mut body = q.body.as_mut();
        let sel = loop {
            match body {
                SetExpr::Select(s) => break s,
                SetExpr::SetOperation { left, .. } => body = left.as_mut(),
                SetExpr::Query(inner) => body = inner.body.as_mut(),
                _ => return Ok(()),
            }
        };
        let start = ast::Spanned::span(sel.as_ref()).start;
        let written = crate::sql::offset_of(self.0, start.line, start.column)
            .and_then(|at| crate::sql::select_items(&self.0[at..]));
        if let Some(written) = written.filter(|w| w.len() == sel.projection.len()) {
            alias_as_written(&mut sel.projection, &written, listed);
        }
        if listed == Listed::FirstPart {
            return Ok(());
        }
        // The columns' names, as far as they are known (not past a `*`).
        let mut names: Vec<String> = Vec::new();
        for p in &sel.projection {
            let name = match p {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(Expr::Value(_)) => continue,
                SelectItem::UnnamedExpr(e) => column_name(e),
                _ => break,
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                let shown = crate::sql::normalize::column_name(&name, &[]);
                return Err(PlanError::DuplicateColumn(shown));
            }
            names.push(name);
        }
        Ok(())
    }
}

/// Each derived table's and WITH table's list, named.
impl ast::VisitorMut for Within<'_> {
    type Break = PlanError;
    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<PlanError> {
        for cte in q.with.iter_mut().flat_map(|w| w.cte_tables.iter_mut()) {
            if cte.alias.columns.is_empty() {
                if let Err(e) = self.name(&mut cte.query, Listed::With) {
                    return ControlFlow::Break(e);
                }
            }
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<PlanError> {
        if let TableFactor::Derived {
            subquery, alias, ..
        } = f
        {
            if alias.as_ref().is_none_or(|a| a.columns.is_empty()) {
                if let Err(e) = self.name(subquery, Listed::Derived) {
                    return ControlFlow::Break(e);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// [`name_as_written`] for the columns of derived tables and WITH's
/// tables, which a statement reads by those names (and `SELECT *` shows).
fn name_within_as_written(template: &str, q: &mut ast::Query) -> Result<(), PlanError> {
    match ast::VisitMut::visit(q, &mut Within(template)) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// One plan for several writes that each find their rows first: every
/// write's subquery runs, then the writes one after another (fails with
/// `refused` when a write plans otherwise).
fn each_write(
    writes: &[String],
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<super::Plan, PlanError> {
    let mut combined: Option<super::pullout::PulloutPlan> = None;
    for sql in writes {
        let mut p = match plan_statement(sql, ks, snap, false)? {
            super::Plan::Pullout(p) if p.subqueries.len() == 1 && p.then.is_empty() => *p,
            _ => return Err(refused),
        };
        let sub = p.subqueries.remove(0);
        match combined.as_mut() {
            None => {
                p.subqueries = vec![sub];
                combined = Some(p);
            }
            Some(c) => {
                // Its marker becomes the next one.
                let marker = super::pullout::marker(c.subqueries.len());
                c.then.push(super::pullout::fill(&p.outer, &[marker]));
                c.subqueries.push(sub);
            }
        }
    }
    combined
        .map(|p| super::Plan::Pullout(Box::new(p)))
        .ok_or(refused)
}

fn plan_parsed(
    template: &str,
    stmt: &Statement,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<super::Plan, PlanError> {
    match stmt {
        Statement::Query(q) => {
            // A WITH's queries are derived tables where its FROM clauses
            // name them: inlined once, here, for every plan below.
            let inlined = match &q.with {
                None => None,
                // A recursive one runs at the gate, round by round.
                Some(w) if w.recursive => {
                    let refused = unsupported("WITH RECURSIVE of this shape across shards");
                    let p = super::pullout::plan_recursive(q, ks, snap, refused)?;
                    return Ok(super::Plan::Pullout(Box::new(p)));
                }
                Some(_) => {
                    Some(super::cte::inline(q).ok_or_else(|| unsupported("WITH across shards"))?)
                }
            };
            let (q, template) = match &inlined {
                Some(i) => (i, i.to_string()),
                None => (q.as_ref(), template.to_string()),
            };
            plan_query(&template, q, ks, snap)
        }
        Statement::Insert(ins) => match super::pullout::plan_insert_select(stmt, ins, ks, snap) {
            // Its SELECT runs first; its rows become VALUES.
            Some(p) => Ok(super::Plan::Pullout(Box::new(p?))),
            None => match plan_insert(ins, ks, snap) {
                // A VALUES row's subquery reads a table: on the row's
                // shard it would read that shard's rows alone
                // (`values (7, (select max(sku) from corder))` took one
                // shard's max); its rows are selected first, as below.
                Ok(_) if values_read_tables(ins) => {
                    let refused = unsupported("a subquery reading tables in INSERT VALUES");
                    insert_values_selected(ins, ks, snap, refused)
                }
                Ok(p) => Ok(super::Plan::Insert(Box::new(p))),
                // A vindex value written as an expression: its rows are
                // selected first.
                Err(e) if e.to_string().starts_with("unsupported: vindex column") => {
                    insert_values_selected(ins, ks, snap, e)
                }
                Err(e) => Err(e),
            },
        },
        Statement::Update(u) => {
            if u.from.is_some() {
                return Err(unsupported("UPDATE ... FROM"));
            }
            let multi = !u.table.joins.is_empty();
            let joined =
                super::colocate::route(ks, std::slice::from_ref(&u.table), u.selection.as_ref())
                    .map_err(|e| multi_table(e, "UPDATE"))?;
            for a in &u.assignments {
                if matches!(a.target, ast::AssignmentTarget::Tuple(_)) {
                    return Err(unsupported("tuple assignments across shards"));
                }
                // A value read from another keyspace, or from other shards'
                // rows than the row's own: read first (each shard would
                // answer it from its own rows).
                if contains_subquery(&a.value)
                    && (reads_elsewhere(&a.value, ks)
                        || ks.shards.len() > 1
                            && !super::colocate::stays_on_row_shard(
                                ks,
                                &a.value,
                                &joined.tables,
                                &joined.routing,
                            ))
                {
                    return Err(unsupported("subqueries in a sharded UPDATE or DELETE"));
                }
                let Some((qual, col)) = assigned_column(a) else {
                    continue;
                };
                let (qual, col) = (qual.as_deref(), &col);
                let mut named = joined
                    .tables
                    .iter()
                    .filter(|t| qual.is_none_or(|q| q == t.visible_name()));
                // Each shard would change its own copy of a reference table
                // by its own rows.
                if multi && (qual.is_none() || named.clone().any(|t| t.kind == "reference")) {
                    return Err(unsupported(
                        "multi-table UPDATE across shards: each column set must be qualified by a sharded table",
                    ));
                }
                if let Some(t) = named.find(|t| {
                    t.vindex
                        .as_ref()
                        .is_some_and(|(v, _)| v.eq_ignore_ascii_case(col))
                }) {
                    return Err(unsupported(format!(
                        "you can't update primary vindex column '{col}' of table {}",
                        t.name
                    )));
                }
            }
            let lookups = dml_lookups(
                ks,
                &joined.tables,
                multi,
                std::slice::from_ref(&u.table),
                Written {
                    selection: u.selection.as_ref(),
                    order_by: &u.order_by,
                    limit: u.limit.as_ref(),
                    assignments: Some(&u.assignments),
                },
            )?;
            plan_dml(
                template,
                stmt,
                u.selection.as_ref(),
                u.limit.is_some(),
                joined,
                ks,
            )
            .map(|p| with_lookups(p, lookups))
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
            };
            if d.using.is_some() {
                return Err(unsupported("multi-table DELETE ... USING across shards"));
            }
            let multi = from.len() > 1 || from.iter().any(|f| !f.joins.is_empty());
            if multi && d.tables.is_empty() {
                return Err(unsupported("multi-table DELETE across shards"));
            }
            let joined = super::colocate::route(ks, from, d.selection.as_ref())
                .map_err(|e| multi_table(e, "DELETE"))?;
            for target in &d.tables {
                let name = ident_name(target);
                let name = name.last().map(String::as_str).unwrap_or_default();
                if joined
                    .tables
                    .iter()
                    .any(|t| t.visible_name() == name && t.kind == "reference")
                {
                    return Err(unsupported(
                        "multi-table DELETE across shards from a reference table",
                    ));
                }
            }
            let written: Vec<TableInfo> = joined
                .tables
                .iter()
                .filter(|t| {
                    d.tables.is_empty()
                        || d.tables.iter().any(|n| {
                            ident_name(n).last().map(String::as_str) == Some(t.visible_name())
                        })
                })
                .cloned()
                .collect();
            let lookups = dml_lookups(
                ks,
                &written,
                multi,
                from,
                Written {
                    selection: d.selection.as_ref(),
                    order_by: &d.order_by,
                    limit: d.limit.as_ref(),
                    assignments: None,
                },
            )?;
            plan_dml(
                template,
                stmt,
                d.selection.as_ref(),
                d.limit.is_some(),
                joined,
                ks,
            )
            .map(|p| with_lookups(p, lookups))
        }
        other => Err(unsupported(format!(
            "this statement on sharded keyspace '{}': {}",
            ks.name,
            other.to_string().chars().take(60).collect::<String>()
        ))),
    }
}

/// Plans a query (its WITH inlined): one route, else a nested loop, else
/// with what no route answers run first; expressions over aggregates that
/// the gate cannot compute, and subqueries over a grouping that no shard
/// answers alone, run over the grouping as a derived table
/// ([`super::regroup`]).
fn plan_query(
    template: &str,
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<super::Plan, PlanError> {
    let _nested = Nested::enter()?;
    let planned = match plan_routes(template, q, ks, snap) {
        // Expressions over aggregates the gate cannot compute, or a
        // subquery over a grouping (or DISTINCT) that no shard answers
        // alone: over the grouping, run first as a derived table; else
        // over the rows, their correlated values computed first. The
        // rewritten statements hold no such subquery outside their FROM
        // clause, so this is tried once; where neither plans, the first
        // refusal stands.
        Err(e @ PlanError::Unsupported(_))
            if e.to_string().contains("over a cross-shard aggregate")
                || e.to_string()
                    .contains("subqueries that do not go to one shard")
                || e.to_string().contains("with a subquery over both sides") =>
        {
            // Rewritten, the statement's expressions move over a derived
            // table: the names the client left to the server are placed
            // first (a subquery's bare `qty` is the statement's there).
            let qualified = super::qualify::qualify(q, ks, snap)?;
            let q = qualified.as_ref().unwrap_or(q);
            let reparsed = |sql: Option<String>| {
                let sql = sql?;
                match parse(&sql) {
                    Ok(Statement::Query(r)) => Some((sql, r)),
                    _ => None,
                }
            };
            let regrouped = || {
                let (sql, r) = reparsed(super::regroup::rewrite(q))?;
                plan_query(&sql, &r, ks, snap).ok()
            };
            // Over the rows, run first as a derived table with the
            // correlated values computed per row (a DISTINCT whose
            // subqueries read columns it does not list, subqueries
            // compared or computed over).
            let apart = || {
                let (_, r) = reparsed(super::regroup::values_apart(q))?;
                let p = super::pullout::plan_derived(&r, ks, snap, unsupported("")).ok()?;
                Some(super::Plan::Pullout(Box::new(p)))
            };
            // Statistical aggregates (STD, VARIANCE, ...) the gate cannot
            // combine at all: the whole statement over the gathered rows,
            // on one tablet, as MariaDB computes it. Over a grouping run
            // first, expressions would read their values as that grouping's
            // text, cut to its display decimals (`round(std(x), 8)` got 4).
            let gathered = || {
                if !reads_statistics(q) {
                    return None;
                }
                let p = super::pullout::plan_gathered(q, ks, snap, unsupported("")).ok()?;
                Some(super::Plan::Pullout(Box::new(p)))
            };
            gathered().or_else(regrouped).or_else(apart).ok_or(e)
        }
        planned => planned,
    };
    match planned {
        // What the gate cannot combine from the shards' answers: the
        // table's rows first, the statement over them on one tablet.
        Err(e @ PlanError::Unsupported(_)) if uncombinable(&e) => {
            super::pullout::plan_gathered(q, ks, snap, e).map(|p| super::Plan::Pullout(Box::new(p)))
        }
        // A query that reads no table (`VALUES (1, 2), (3, 4)`, a UNION of
        // them, a derived table of them): any shard's server answers it
        // whole, as it answers `SELECT 1`.
        Err(PlanError::Unsupported(_)) if !names_a_table(q) => Ok(super::Plan::AnyShard {
            keyspace: ks.name.clone(),
        }),
        planned => planned,
    }
}

/// Whether `q` calls one of the statistical aggregates, which the gate
/// computes from no shard's partial answers (only over gathered rows).
fn reads_statistics(q: &ast::Query) -> bool {
    ast::visit_expressions(q, |e| match e {
        Expr::Function(f)
            if STATISTICS
                .iter()
                .any(|s| f.name.to_string().eq_ignore_ascii_case(s)) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether a refusal is of aggregates or windows the gate cannot compute
/// from the shards' partial answers (a statement over their rows can).
fn uncombinable(e: &PlanError) -> bool {
    let m = e.to_string();
    [
        "() across shards",
        "(DISTINCT ...) across shards",
        "of more than one argument across shards",
        "window functions across shards",
        "GROUP BY modifiers across shards",
        "over a cross-shard aggregate",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// Whether `x` names a table anywhere (its subqueries included).
fn names_a_table<T: ast::Visit>(x: &T) -> bool {
    ast::visit_relations(x, |_| ControlFlow::Break(())).is_break()
}

/// Whether an INSERT's VALUES rows hold a subquery that reads a table.
fn values_read_tables(ins: &ast::Insert) -> bool {
    match ins.source.as_deref() {
        Some(q) if matches!(q.body.as_ref(), SetExpr::Values(_)) => names_a_table(q),
        _ => false,
    }
}

/// An INSERT's VALUES rows run as the SELECT of them first, their rows
/// then routed ([`super::forms::values_as_select`]); `refused` when that
/// does not plan.
fn insert_values_selected(
    ins: &ast::Insert,
    ks: &Keyspace,
    snap: &Snapshot,
    refused: PlanError,
) -> Result<super::Plan, PlanError> {
    let Some(selected) = super::forms::values_as_select(ins)? else {
        return Err(refused);
    };
    let stmt = Statement::Insert(selected);
    let Statement::Insert(selected) = &stmt else {
        return Err(refused);
    };
    let planned = super::forms::selecting_values(|| {
        super::pullout::plan_insert_select(&stmt, selected, ks, snap)
    });
    match planned {
        Some(p) => Ok(super::Plan::Pullout(Box::new(p?))),
        None => Err(refused),
    }
}

/// Refuses a statement over a table that assigns a user variable as it
/// reads (`SELECT @r := price FROM t`), vtgate's refusal too: each shard's
/// tablet would compute and keep its own `@r` (the next row's `@r + 1`
/// read another shard's, or NULL), where the session's variables are the
/// ones its SETs gave every tablet. Without a table (`SELECT @v := 3`) the
/// one tablet that answers keeps it, as before.
fn assigns_over_rows(stmt: &Statement) -> Result<(), PlanError> {
    let assigns = ast::visit_expressions(stmt, |e| match e {
        Expr::BinaryOp {
            op: ast::BinaryOperator::Assignment,
            ..
        } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if assigns.is_continue() {
        return Ok(());
    }
    let reads = ast::visit_relations(stmt, |name| {
        match name.to_string().eq_ignore_ascii_case("dual") {
            true => ControlFlow::Continue(()),
            false => ControlFlow::Break(()),
        }
    });
    match reads.is_break() {
        true => Err(unsupported("Assignment expression")),
        false => Ok(()),
    }
}

/// A statement that is one parenthesized query, `(SELECT ...) [ORDER BY
/// ...] [LIMIT ...]`, written without its parentheses, as the text it
/// means (its names as the client wrote them): the inner query itself when
/// nothing follows it; the inner query with what follows it when the
/// inner has no ORDER BY or LIMIT of its own; else the inner query as a
/// derived table, ordered and limited outside. None for any other
/// statement (the planner refused them all as a UNION of one part).
fn unparenthesized(template: &str, q: &ast::Query) -> Option<String> {
    let SetExpr::Query(inner) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some() {
        return None;
    }
    let toks = crate::sql::lexer::tokenize(template);
    let close = crate::sql::lexer::closing_paren(&toks, 0)?;
    let body = &template[toks[0].end..toks[close].start];
    let rest = template[toks[close].end..].trim();
    let rest = rest.trim_end_matches(';').trim_end();
    Some(if rest.is_empty() {
        body.trim().to_string()
    } else if inner.order_by.is_none() && inner.limit_clause.is_none() && inner.locks.is_empty() {
        format!("{} {rest}", body.trim())
    } else {
        // Its columns by name where each has one (an ORDER BY position
        // then counts them), else `*`.
        let listed = derived_columns(inner).map(|names| {
            let quoted: Vec<String> = names
                .iter()
                .map(|n| format!("`{}`", n.replace('`', "``")))
                .collect();
            quoted.join(", ")
        });
        let columns = listed.unwrap_or_else(|| "*".to_string());
        format!("select {columns} from ({body}) as `parenthesized` {rest}")
    })
}

/// The names of a query's columns as a derived table has them, when each
/// column is a named column or aliased, and no two alike.
fn derived_columns(q: &ast::Query) -> Option<Vec<String>> {
    let SetExpr::Select(sel) = super::qualify::first_select(q) else {
        return None;
    };
    let names: Vec<String> = sel
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|i| i.value.clone())
            }
            // An alias the client wrote (not one naming a computed column
            // as written, which the text does not hold).
            SelectItem::ExprWithAlias { alias, .. } if !alias.value.starts_with('\u{1}') => {
                Some(alias.value.clone())
            }
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut seen: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    seen.sort();
    seen.dedup();
    (seen.len() == names.len()).then_some(names)
}

/// [`plan_query`]'s routes.
fn plan_routes(
    template: &str,
    q: &ast::Query,
    ks: &Keyspace,
    snap: &Snapshot,
) -> Result<super::Plan, PlanError> {
    if let Some(sql) = unparenthesized(template, q) {
        let mut stmt = parse(&sql)?;
        name_as_written(&sql, &mut stmt)?;
        let Statement::Query(q) = stmt else {
            return Err(unsupported("a parenthesized query"));
        };
        return plan_query(&sql, &q, ks, snap);
    }
    match plan_select(template, q, ks) {
        Ok(p) => Ok(super::Plan::Select(Box::new(p))),
        // A UNION no route answers (its parts' tables on different
        // routes included): its parts first, each on its own plan.
        Err(e @ PlanError::Unsupported(_))
            if matches!(q.body.as_ref(), ast::SetExpr::SetOperation { .. }) =>
        {
            super::pullout::plan_union(q, ks, snap, e).map(|p| super::Plan::Pullout(Box::new(p)))
        }
        // Tables on different routes: a nested loop, where it can be.
        Err(PlanError::Unsupported(m)) if m == "cross-shard joins" => {
            match super::join::plan(template, q, ks, snap) {
                Ok(j) => Ok(super::Plan::Join(Box::new(j))),
                // Derived tables no route answers whole: first, as tables
                // of constants, and the rest joined as usual.
                Err(e @ PlanError::Unsupported(_))
                    if e.to_string().contains("over derived tables")
                        || e.to_string().contains("without sharded tables") =>
                {
                    Ok(super::Plan::Pullout(Box::new(
                        super::pullout::plan_derived(q, ks, snap, e)?,
                    )))
                }
                // A subquery of a side over other shards' rows: first, its
                // answer a value, when it reads nothing of the join; else
                // a semi-join over the join.
                Err(e @ PlanError::Unsupported(_))
                    if e.to_string()
                        .contains("subqueries that do not go to one shard")
                        || e.to_string().contains("with a subquery over both sides") =>
                {
                    // A subquery's names of the join's columns, left
                    // unqualified, are placed first (as below): it may
                    // then read the join.
                    if let Some(qualified) = super::qualify::qualify_subqueries(q, ks, snap)? {
                        return plan_query(&qualified.to_string(), &qualified, ks, snap);
                    }
                    match super::pullout::plan(q, ks, snap, e) {
                        Ok(p) => Ok(super::Plan::Pullout(Box::new(p))),
                        Err(e @ PlanError::Unsupported(_)) => Ok(super::Plan::Join(Box::new(
                            super::join::plan_semi(template, q, ks, snap, e)?,
                        ))),
                        Err(e) => Err(e),
                    }
                }
                // What a nested loop cannot check of a LEFT JOIN (an
                // expression over both sides; a WHERE condition unmatched
                // rows may pass): the joined rows first, checked and
                // computed over on one tablet.
                Err(e @ PlanError::Unsupported(_))
                    if e.to_string().contains("WHERE condition on the LEFT JOIN")
                        || e.to_string()
                            .contains("expression over both sides of a LEFT JOIN") =>
                {
                    super::pullout::gathered_join(q, ks, snap, e, true)
                        .map(|p| super::Plan::Pullout(Box::new(p)))
                }
                Err(e) => Err(e),
            }
        }
        // Derived tables no route answers whole: first.
        Err(e @ PlanError::Unsupported(_))
            if e.to_string().contains("derived tables across shards") =>
        {
            Ok(super::Plan::Pullout(Box::new(
                super::pullout::plan_derived(q, ks, snap, e)?,
            )))
        }
        // Subqueries that read nothing of the statement, or read another
        // keyspace's tables: first.
        Err(e @ PlanError::Unsupported(_))
            if e.to_string()
                .contains("subqueries that do not go to one shard")
                || e.to_string().contains("statements across keyspaces") =>
        {
            // A subquery's names of the statement's columns, left
            // unqualified, are placed first: it may then be correlated.
            if let Some(qualified) = super::qualify::qualify_subqueries(q, ks, snap)? {
                return plan_query(&qualified.to_string(), &qualified, ks, snap);
            }
            match super::pullout::plan(q, ks, snap, e) {
                Ok(p) => Ok(super::Plan::Pullout(Box::new(p))),
                // A correlated EXISTS: a semi-join.
                Err(e @ PlanError::Unsupported(_)) => {
                    match super::join::plan_semi(template, q, ks, snap, e) {
                        Ok(j) => Ok(super::Plan::Join(Box::new(j))),
                        // Subqueries inside derived tables: those first.
                        Err(e @ PlanError::Unsupported(_))
                            if super::pullout::derived_subqueries(q, ks) =>
                        {
                            Ok(super::Plan::Pullout(Box::new(
                                super::pullout::plan_derived(q, ks, snap, e)?,
                            )))
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// What an UPDATE or DELETE writes, as its lookup vindexes need it.
struct Written<'a> {
    selection: Option<&'a Expr>,
    order_by: &'a [ast::OrderByExpr],
    limit: Option<&'a Expr>,
    /// An UPDATE's SET; None for a DELETE.
    assignments: Option<&'a [ast::Assignment]>,
}

fn with_lookups(plan: super::Plan, lookups: Vec<DmlLookups>) -> super::Plan {
    match plan {
        super::Plan::Dml(mut p) => {
            p.lookups = lookups;
            super::Plan::Dml(p)
        }
        other => other,
    }
}

/// The column an assignment sets, with its table qualifier if it has one
/// (None for a tuple or an empty name).
fn assigned_column(a: &ast::Assignment) -> Option<(Option<String>, String)> {
    let ast::AssignmentTarget::ColumnName(n) = &a.target else {
        return None;
    };
    let mut parts = ident_name(n);
    let col = parts.pop()?;
    Some((parts.pop(), col))
}

/// The lookup vindexes table `table` owns (the vindex's `owner`), which
/// its writes keep in step.
fn owned_lookups(ks: &Keyspace, table: &str) -> Result<Vec<OwnedLookup>, PlanError> {
    let Some(t) = ks.vschema.tables.get(table) else {
        return Ok(Vec::new());
    };
    t.column_vindexes
        .iter()
        .skip(1)
        .filter_map(|cv| {
            let def = ks.vschema.vindexes.get(&cv.name)?;
            if def.owner.as_deref() != Some(table) {
                return None;
            }
            let lookup = crate::vschema::lookup::Lookup::from_vindex(&cv.name, def)?;
            Some(lookup.map_err(|e| unsupported(format!("writes to {table}: {e}")))
                .and_then(|l| {
                    let columns = cv.cols().to_vec();
                    if columns.len() != l.from.len() {
                        return Err(unsupported(format!(
                            "writes to {table}: lookup vindex {} has {} columns and {} 'from' columns",
                            cv.name,
                            columns.len(),
                            l.from.len()
                        )));
                    }
                    Ok(OwnedLookup {
                        vindex: cv.name.clone(),
                        columns,
                    })
                }))
        })
        .collect()
}

/// How an UPDATE or DELETE of `tables` keeps the lookup vindexes they
/// own: one entry per table whose lookups change. A multi-table
/// statement (its join colocated, or it would not get here) reads each
/// written table's rows over its whole FROM clause, once each.
fn dml_lookups(
    ks: &Keyspace,
    tables: &[TableInfo],
    multi: bool,
    from: &[ast::TableWithJoins],
    w: Written<'_>,
) -> Result<Vec<DmlLookups>, PlanError> {
    let assigned = |t: &TableInfo, col: &str| -> Option<&Expr> {
        w.assignments?.iter().find_map(|a| {
            let (qual, c) = assigned_column(a)?;
            (c.eq_ignore_ascii_case(col) && qual.is_none_or(|q| q == t.visible_name()))
                .then_some(&a.value)
        })
    };
    let mut found = Vec::new();
    for t in tables {
        // Expressions the SELECT of the rows computes, in order.
        let mut computed: Vec<String> = Vec::new();
        let mut changes: Vec<(OwnedLookup, Option<Vec<NewValue>>)> = Vec::new();
        for o in owned_lookups(ks, &t.name)? {
            if w.assignments.is_none() {
                changes.push((o, None));
                continue;
            }
            let new: Vec<Option<&Expr>> = o.columns.iter().map(|c| assigned(t, c)).collect();
            if new.iter().all(Option::is_none) {
                continue;
            }
            let mut values = Vec::with_capacity(new.len());
            for (e, c) in new.iter().zip(&o.columns) {
                values.push(match e {
                    None => NewValue::Keep,
                    Some(e) => match operand(e) {
                        Some(v) => NewValue::Set(v),
                        None if row_expression(e, t, multi, w.assignments, c) => {
                            computed.push(e.to_string());
                            NewValue::Read(computed.len() - 1)
                        }
                        None => {
                            return Err(unsupported(format!(
                                "UPDATE of lookup vindex column '{c}' to an expression that reads \
                                 other tables or columns the UPDATE sets before it"
                            )))
                        }
                    },
                });
            }
            changes.push((o, Some(values)));
        }
        if changes.is_empty() {
            continue;
        }
        let Some((pcol, func)) = &t.vindex else {
            return Err(unsupported(format!(
                "writes to table {}: its lookup vindexes need a functional primary vindex",
                t.name
            )));
        };
        // Over a join, each column is the written table's, and a row
        // several rows join is read once.
        let column = |c: &str| match multi {
            true => format!(
                "{}.{}",
                crate::sql::quote_ident(t.visible_name()),
                crate::sql::quote_ident(c)
            ),
            false => crate::sql::quote_ident(c),
        };
        let mut cols = vec![column(pcol)];
        for (o, _) in &changes {
            cols.extend(o.columns.iter().map(|c| column(c)));
        }
        // The computed values come after the columns.
        let first = cols.len();
        cols.extend(computed);
        for (_, new) in &mut changes {
            for v in new.iter_mut().flatten() {
                if let NewValue::Read(i) = v {
                    *i += first;
                }
            }
        }
        let from: Vec<String> = from.iter().map(ToString::to_string).collect();
        let mut select = format!(
            "SELECT {}{} FROM {}",
            if multi { "DISTINCT " } else { "" },
            cols.join(", "),
            from.join(", ")
        );
        if let Some(sel) = w.selection {
            select.push_str(&format!(" WHERE {sel}"));
        }
        if !w.order_by.is_empty() {
            let keys: Vec<String> = w.order_by.iter().map(|k| k.to_string()).collect();
            select.push_str(&format!(" ORDER BY {}", keys.join(", ")));
        }
        if let Some(l) = w.limit {
            select.push_str(&format!(" LIMIT {l}"));
        }
        select.push_str(" FOR UPDATE");
        found.push(DmlLookups {
            table: t.name.clone(),
            func: *func,
            select,
            changes,
        });
    }
    Ok(found)
}

/// Whether the SELECT of an UPDATE's rows may compute `e`, the new value
/// of `t`'s column `col`, as the UPDATE would: no subquery, only `t`'s
/// columns (over a join), and none the UPDATE sets before `col` (MySQL
/// reads their new values there).
fn row_expression(
    e: &Expr,
    t: &TableInfo,
    multi: bool,
    assignments: Option<&[ast::Assignment]>,
    col: &str,
) -> bool {
    if super::join::has_subquery(e) {
        return false;
    }
    let before: Vec<String> = assignments
        .unwrap_or_default()
        .iter()
        .filter_map(assigned_column)
        .take_while(|(_, c)| !c.eq_ignore_ascii_case(col))
        .map(|(_, c)| c.to_lowercase())
        .collect();
    let mut ok = true;
    let _ = ast::visit_expressions(e, |x| {
        let (qual, name) = match x {
            Expr::Identifier(i) => (None, &i.value),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => (
                Some(&parts[parts.len() - 2].value),
                &parts[parts.len() - 1].value,
            ),
            _ => return std::ops::ControlFlow::<()>::Continue(()),
        };
        ok &= !name.starts_with('@')
            && !before.contains(&name.to_lowercase())
            && match (multi, qual) {
                (false, _) => true,
                (true, Some(q)) => q == t.visible_name(),
                (true, None) => false,
            };
        std::ops::ControlFlow::Continue(())
    });
    ok
}

/// Names a refused join in a DML statement as the multi-table statement
/// it is.
fn multi_table(e: PlanError, verb: &str) -> PlanError {
    match e {
        PlanError::Unsupported(m) if m == "cross-shard joins" => {
            unsupported(format!("multi-table {verb} across shards"))
        }
        other => other,
    }
}

fn plan_dml(
    template: &str,
    stmt: &Statement,
    selection: Option<&Expr>,
    has_limit: bool,
    joined: super::colocate::Joined,
    ks: &Keyspace,
) -> Result<super::Plan, PlanError> {
    if selection.is_some_and(contains_subquery) {
        return Err(unsupported("subqueries in a sharded UPDATE or DELETE"));
    }
    let super::colocate::Joined {
        routing,
        in_expr,
        same_shard,
        ..
    } = joined;
    if !same_shard.is_empty() {
        return Err(unsupported("derived tables in a sharded UPDATE or DELETE"));
    }
    let routing = if routing == Routing::Any {
        Routing::Scatter
    } else {
        routing
    };
    if has_limit && !matches!(routing, Routing::Equal { .. }) && ks.shards.len() > 1 {
        return Err(unsupported(
            "UPDATE or DELETE with LIMIT on more than one shard",
        ));
    }
    let query = match (&in_expr, selection) {
        (Some(e), Some(sel)) => {
            let rendered = stmt.to_string();
            let where_full = sel.to_string();
            let where_pruned = render_where(sel, Some(e));
            rendered.replacen(&where_full, &where_pruned, 1)
        }
        _ => template.to_string(),
    };
    Ok(super::Plan::Dml(Box::new(DmlPlan {
        keyspace: ks.name.clone(),
        routing,
        query,
        original: template.to_string(),
        lookups: Vec::new(),
    })))
}

fn plan_insert(ins: &ast::Insert, ks: &Keyspace, snap: &Snapshot) -> Result<InsertPlan, PlanError> {
    let name = match &ins.table {
        ast::TableObject::TableName(n) => n,
        _ => return Err(unsupported("INSERT into a table function")),
    };
    let t = table_info(ks, name, None)?;
    // A pinned table's rows all go to its keyspace id's shard.
    let (vcol, func) = match (&t.vindex, &t.pinned) {
        (Some(v), _) => v.clone(),
        (None, Some(_)) => (String::new(), Func::Binary),
        (None, None) => {
            return Err(unsupported(format!(
                "INSERT into table {} without a functional primary vindex",
                t.name
            )))
        }
    };
    let mut cols: Vec<String> = ins
        .columns
        .iter()
        .map(|c| c.to_string().trim_matches('`').to_string())
        .collect();
    let rows = match ins.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(v)) => v.rows.iter().map(|r| r.content.clone()).collect::<Vec<_>>(),
        _ => return Err(unsupported("INSERT ... SELECT into a sharded table")),
    };
    // `VALUES ()`: every column its default (the sequence's included).
    if cols.is_empty() && rows.iter().any(|r| !r.is_empty()) {
        cols = all_columns(ks, &t.name).ok_or_else(|| {
            unsupported(format!(
                "INSERT into sharded table {} needs a column list: the VSchema does not list \
                 its columns (column_list_authoritative) and schema tracking has not learned them",
                t.name
            ))
        })?;
    }
    let mut seq_col = None;
    let mut sequence = None;
    let mut add_seq_col = false;
    if let Some((ai_col, seq)) = &t.auto_inc {
        let pos = cols.iter().position(|c| c.eq_ignore_ascii_case(ai_col));
        seq_col = Some(match pos {
            Some(p) => p,
            None => {
                add_seq_col = true;
                cols.push(ai_col.clone());
                cols.len() - 1
            }
        });
        sequence = Some(find_sequence(seq, snap)?);
    }
    let vpos = match &t.pinned {
        Some(_) => usize::MAX,
        None => cols
            .iter()
            .position(|c| c.eq_ignore_ascii_case(&vcol))
            .ok_or_else(|| PlanError::MissingVindexColumn {
                table: t.name.clone(),
                column: vcol.clone(),
            })?,
    };
    let lookups = owned_lookups(ks, &t.name)?;
    if !lookups.is_empty() && ins.replace_into {
        return Err(unsupported(format!(
            "REPLACE into table {}, which owns lookup vindexes",
            t.name
        )));
    }
    let mut out_rows = Vec::with_capacity(rows.len());
    for (n, row) in rows.into_iter().enumerate() {
        if row.len() + usize::from(add_seq_col) != cols.len() {
            return Err(PlanError::ValueCount(n + 1));
        }
        let lookup_values = lookups
            .iter()
            .map(|o| {
                o.columns
                    .iter()
                    .map(
                        |c| match cols.iter().position(|have| have.eq_ignore_ascii_case(c)) {
                            // A column left out is NULL to the lookup.
                            None => Ok(Operand::Lit(mysql_common::value::Value::NULL)),
                            Some(p) => row.get(p).and_then(operand).ok_or_else(|| {
                                unsupported(format!(
                                    "lookup vindex column {c} must be a literal value"
                                ))
                            }),
                        },
                    )
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut values: Vec<String> = row.iter().map(|e| e.to_string()).collect();
        if add_seq_col {
            values.push("NULL".into());
        }
        // NULL or DEFAULT in the auto-increment column: the sequence's.
        let seq_here = seq_col.is_some_and(|p| {
            add_seq_col
                || matches!(
                    row.get(p).and_then(operand),
                    Some(Operand::Lit(mysql_common::value::Value::NULL))
                )
                || matches!(row.get(p), Some(Expr::Identifier(i))
                    if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
        });
        let needs_seq_runtime = seq_col.is_some() && !seq_here;
        let vindex_value = if let Some(k) = &t.pinned {
            Some(Operand::Lit(mysql_common::value::Value::Bytes(k.clone())))
        } else if seq_here && Some(vpos) == seq_col {
            None
        } else {
            Some(row.get(vpos).and_then(operand).ok_or_else(|| {
                unsupported(format!("vindex column {vcol} must be a literal value"))
            })?)
        };
        out_rows.push(InsertRow {
            values,
            vindex_value,
            needs_seq: seq_here,
            lookup_values,
        });
        let _ = needs_seq_runtime;
    }
    if let Some(ast::OnInsert::DuplicateKeyUpdate(assignments)) = &ins.on {
        for a in assignments {
            let target = a.target.to_string();
            let target = target.trim_matches('`');
            // `col = VALUES(col)` (an upsert that sets every column, as
            // ORMs write it) keeps the row on its shard: the duplicate is
            // found on the shard of the new row's value. (Not where lookup
            // rows hold the row's keyspace id, which it may change.)
            if target.eq_ignore_ascii_case(&vcol)
                && (!sets_itself(&a.value, &vcol) || !lookups.is_empty())
            {
                return Err(unsupported(format!(
                    "ON DUPLICATE KEY UPDATE of vindex column '{vcol}'"
                )));
            }
            let mut owned = lookups.iter().flat_map(|o| &o.columns);
            if let Some(c) = owned.find(|c| target.eq_ignore_ascii_case(c)) {
                return Err(unsupported(format!(
                    "ON DUPLICATE KEY UPDATE of lookup vindex column '{c}'"
                )));
            }
            // Each row's shard would read its own rows alone (`email =
            // (select max(sku) from corder)` took one shard's max).
            if names_a_table(&a.value) {
                return Err(unsupported(
                    "a subquery reading tables in ON DUPLICATE KEY UPDATE across shards",
                ));
            }
        }
    }
    let verb = if ins.replace_into {
        "REPLACE"
    } else {
        "INSERT"
    };
    let ignore = if ins.ignore { " IGNORE" } else { "" };
    let prefix = format!(
        "{verb}{ignore} INTO {name} ({}) VALUES ",
        cols.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut suffix = match &ins.on {
        Some(on @ ast::OnInsert::DuplicateKeyUpdate(_)) => format!(" {on}"),
        None => String::new(),
        Some(_) => return Err(unsupported("ON CONFLICT")),
    };
    if let Some(items) = &ins.returning {
        let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
        suffix.push_str(&format!(" RETURNING {}", items.join(", ")));
    }
    Ok(InsertPlan {
        keyspace: ks.name.clone(),
        table: t.name.clone(),
        upsert: ins.ignore || ins.on.is_some(),
        lookups,
        prefix,
        suffix,
        returning: ins.returning.is_some(),
        rows: out_rows,
        func,
        seq_col,
        sequence,
    })
}

/// Every column of `table`, in order, where known: from the VSchema when
/// it says its list is complete, else as the schema tracker learned them
/// (an INSERT without a column list names them all, as vtgate's does).
pub(super) fn all_columns(ks: &Keyspace, table: &str) -> Option<Vec<String>> {
    let declared = ks.vschema.tables.get(table)?;
    if declared.column_list_authoritative {
        return declared
            .columns
            .iter()
            .map(|c| c.get("name")?.as_str().map(str::to_string))
            .collect();
    }
    let learned = ks.learned.get(table)?;
    (!learned.columns.is_empty()).then(|| learned.columns.iter().map(|(c, _)| c.clone()).collect())
}

fn find_sequence(seq: &str, snap: &Snapshot) -> Result<(String, String), PlanError> {
    let (ks_hint, table) = match seq.split_once('.') {
        Some((k, t)) => (Some(k), t),
        None => (None, seq),
    };
    for ks in snap.keyspaces.values() {
        if ks_hint.is_some_and(|k| k != ks.name) || ks.sharded {
            continue;
        }
        if ks
            .vschema
            .tables
            .get(table)
            .is_some_and(|t| t.kind == "sequence")
        {
            return Ok((ks.name.clone(), table.to_string()));
        }
    }
    Err(unsupported(format!(
        "sequence table {seq} not found in any unsharded keyspace"
    )))
}

/// MySQL's aggregate functions: a query naming one folds its rows into
/// groups (one group without GROUP BY), whichever of them the gate can
/// combine across shards.
const COMBINED: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "group_concat",
    "json_arrayagg",
    "json_objectagg",
];

/// The statistical aggregates: no shard's partial answer combines into
/// them, so the gate computes them over gathered rows only.
const STATISTICS: &[&str] = &[
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
];

/// Whether `name` (lower case) is one of MySQL's aggregate functions.
pub(super) fn is_aggregate(name: &str) -> bool {
    COMBINED.contains(&name) || STATISTICS.contains(&name)
}

struct AggCall {
    name: String,
    distinct: bool,
    arg: Option<Expr>,
    /// The call as written (what a shard computes its part with).
    text: String,
    /// GROUP_CONCAT's SEPARATOR (None: the default ',').
    separator: Option<String>,
    /// GROUP_CONCAT orders its values (ORDER BY inside the call).
    ordered: bool,
}

fn agg_call(e: &Expr) -> Option<AggCall> {
    let Expr::Function(f) = e else { return None };
    // `SUM(x) OVER (...)` is a window function: it groups nothing.
    if f.over.is_some() {
        return None;
    }
    let name = f.name.to_string().to_ascii_lowercase();
    if !is_aggregate(&name) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let distinct = matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    );
    let arg = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => None,
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e.clone()),
        // Several arguments (GROUP_CONCAT(a, b)): refused by name below.
        _ if !["count", "sum", "min", "max", "avg"].contains(&name.as_str()) => None,
        _ => return None,
    };
    let mut separator = None;
    let mut ordered = false;
    for c in &list.clauses {
        match c {
            // A separator given as a parameter is not known at the gate:
            // refused as an expression.
            ast::FunctionArgumentClause::Separator(v)
                if matches!(v.value, ast::Value::Placeholder(_)) =>
            {
                return None
            }
            ast::FunctionArgumentClause::Separator(v) => {
                separator = Some(match &v.value {
                    ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                        s.clone()
                    }
                    other => other.to_string(),
                })
            }
            ast::FunctionArgumentClause::OrderBy(_) => ordered = true,
            _ => {}
        }
    }
    Some(AggCall {
        name,
        distinct,
        arg,
        text: e.to_string(),
        separator,
        ordered,
    })
}

/// Whether `e` calls a window function (anywhere in it): a window sees
/// the rows the whole statement keeps, so it is computed after every
/// filter and join the gate applies.
pub(super) fn has_window<T: ast::Visit>(e: &T) -> bool {
    ast::visit_expressions(e, |x| match x {
        Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether the statement's own select list or ORDER BY calls a window
/// function (not a subquery's or derived table's, which see their own
/// rows).
pub(super) fn windowed(q: &ast::Query, sel: &ast::Select) -> bool {
    has_window(&sel.projection) || has_window(&q.order_by)
}

pub(super) fn has_aggregate(e: &Expr) -> bool {
    if agg_call(e).is_some() {
        return true;
    }
    let mut finder = AggregateFinder { depth: 0 };
    ast::Visit::visit(e, &mut finder).is_break()
}

/// Finds an aggregate call anywhere in an expression (inside CASE,
/// BETWEEN, IN lists, casts and calls alike) but not inside a subquery,
/// whose aggregates are its own (`weight_string((select count(*) ...))` is
/// a value per row); a window function groups nothing, though its
/// arguments may (`sum(count(*)) over ()`).
struct AggregateFinder {
    /// Subqueries entered.
    depth: usize,
}

impl ast::Visitor for AggregateFinder {
    type Break = ();

    fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) if self.depth == 0 && f.over.is_none() => {
                let name = f.name.to_string();
                match is_aggregate(&name.to_ascii_lowercase()) {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Builds internal columns for a grouped query.
struct Internal<'t> {
    items: Vec<String>,
    kinds: Vec<AggKind>,
    tables: &'t [TableInfo],
    /// Each row is its own part: an aggregate's column is its argument
    /// (COUNT's, whether it is there), not a shard's partial aggregate.
    row_level: bool,
}

impl Internal<'_> {
    fn push(&mut self, sql: String, kind: AggKind) -> usize {
        self.items.push(sql);
        self.kinds.push(kind);
        self.items.len() - 1
    }

    /// The column already computing `sql` for an aggregate of `kind`'s sort.
    fn find(&self, sql: &str, kind: AggKind) -> Option<usize> {
        let sort = std::mem::discriminant(&kind);
        (0..self.items.len())
            .find(|&i| self.items[i] == sql && std::mem::discriminant(&self.kinds[i]) == sort)
    }

    /// The column for `kind`'s part of an aggregate over `argsql`: the
    /// shard's partial aggregate `name(argsql)`, or, per row, the argument.
    fn part(&mut self, name: &str, argsql: &str, kind: AggKind) -> usize {
        let s = match (self.row_level, kind) {
            (false, _) => format!("{name}({argsql})"),
            (true, AggKind::Count) if argsql == "*" => "1".to_string(),
            (true, AggKind::Count) => format!("({argsql}) IS NOT NULL"),
            (true, _) => argsql.to_string(),
        };
        self.find(&s, kind).unwrap_or_else(|| self.push(s, kind))
    }

    /// An aggregate call as gate expression, adding its pushed-down parts.
    fn aggregate(
        &mut self,
        call: &AggCall,
        count_distinct: &mut Option<usize>,
    ) -> Result<GateExpr, PlanError> {
        let arg = call.arg.as_ref().map(|a| a.to_string());
        let argsql = arg.clone().unwrap_or_else(|| "*".into());
        Ok(match (call.name.as_str(), call.distinct) {
            ("count" | "sum" | "avg", true) => {
                let (Some(expr), Some(a)) = (call.arg.as_ref(), arg) else {
                    return Err(PlanError::Syntax("COUNT(DISTINCT *)".into()));
                };
                // Each over the same distinct values of one argument.
                let of = |i: usize| match call.name.as_str() {
                    "count" => GateExpr::CountDistinct(i),
                    "sum" => GateExpr::SumDistinct(i),
                    _ => GateExpr::AvgDistinct(i),
                };
                if let Some(i) = *count_distinct {
                    if self.items[i] != a {
                        return Err(unsupported(
                            "aggregates over the DISTINCT values of more than one argument across shards",
                        ));
                    }
                    return Ok(of(i));
                }
                let i = self.push(a.clone(), AggKind::Key);
                let tables = self.tables;
                let weight = weigh(tables, expr, &a, |w| self.push(w, AggKind::Weight));
                self.kinds[i] = AggKind::DistinctArg { weight };
                *count_distinct = Some(i);
                of(i)
            }
            // The least and greatest of the distinct values are those of all.
            ("min" | "max", true) => {
                let plain = AggCall {
                    name: call.name.clone(),
                    distinct: false,
                    arg: call.arg.clone(),
                    text: call.text.clone(),
                    separator: None,
                    ordered: false,
                };
                return self.aggregate(&plain, count_distinct);
            }
            (_, true) => {
                return Err(unsupported(format!(
                    "{}(DISTINCT ...) across shards",
                    call.name.to_uppercase()
                )))
            }
            ("count", false) => GateExpr::Col(self.part("count", &argsql, AggKind::Count)),
            ("sum", false) => GateExpr::Col(self.part("sum", &argsql, AggKind::Sum)),
            ("avg", false) => GateExpr::Avg {
                sum: self.part("sum", &argsql, AggKind::Sum),
                count: self.part("count", &argsql, AggKind::Count),
            },
            ("bit_and" | "bit_or" | "bit_xor", false) if !self.row_level => {
                let kind = match call.name.as_str() {
                    "bit_and" => AggKind::BitAnd,
                    "bit_or" => AggKind::BitOr,
                    _ => AggKind::BitXor,
                };
                GateExpr::Col(self.part(&call.name, &argsql, kind))
            }
            // Each shard's concatenation (over a join, each joined row's
            // value as a string), joined: the order of the values is
            // unspecified, as MySQL's is.
            ("group_concat", false) if !call.ordered => {
                let sep = call.separator.clone().unwrap_or_else(|| ",".into());
                let bytes = sep.as_bytes();
                if bytes.len() > 8 {
                    return Err(unsupported(
                        "GROUP_CONCAT() across shards with a SEPARATOR longer than 8 bytes",
                    ));
                }
                let mut inline = [0u8; 8];
                inline[..bytes.len()].copy_from_slice(bytes);
                let kind = AggKind::Concat(inline, bytes.len() as u8);
                let part = match self.row_level {
                    true => format!("CONCAT({argsql})"),
                    false => call.text.clone(),
                };
                if let Some(i) = self.find(&part, kind) {
                    return Ok(GateExpr::Col(i));
                }
                GateExpr::Col(self.push(part, kind))
            }
            (m, false) if m != "min" && m != "max" => {
                return Err(unsupported(format!(
                    "{}() across shards",
                    call.name.to_uppercase()
                )))
            }
            (m, false) => {
                let s = if self.row_level {
                    argsql.clone()
                } else {
                    format!("{m}({argsql})")
                };
                let kind = if m == "min" {
                    AggKind::Min { weight: None }
                } else {
                    AggKind::Max { weight: None }
                };
                if let Some(i) = self.find(&s, kind) {
                    return Ok(GateExpr::Col(i));
                }
                let i = self.push(s.clone(), AggKind::Key);
                // MIN and MAX compare as their argument's column would.
                let tables = self.tables;
                let mut push = |w| self.push(w, AggKind::Weight);
                // MIN and MAX of an ENUM or SET compare its text, as
                // MariaDB's do (and give text: no number to weigh).
                let indexed =
                    |a: &Expr| super::derive::declared_of(tables, a) == Some(Declared::Indexed);
                let weight = match &call.arg {
                    Some(a) if !indexed(a) => weigh(tables, a, &s, push),
                    _ => Some(Weight::Column(push(weight_string(&s)))),
                };
                self.kinds[i] = if m == "min" {
                    AggKind::Min { weight }
                } else {
                    AggKind::Max { weight }
                };
                GateExpr::Col(i)
            }
        })
    }
}

/// The binary operators the gate computes over a grouped result.
const GATE_OPERATORS: &[BinaryOperator] = &[
    BinaryOperator::Plus,
    BinaryOperator::Minus,
    BinaryOperator::Multiply,
    BinaryOperator::Divide,
    BinaryOperator::Modulo,
    BinaryOperator::MyIntegerDivide,
    BinaryOperator::And,
    BinaryOperator::Or,
    BinaryOperator::Xor,
    BinaryOperator::Eq,
    BinaryOperator::NotEq,
    BinaryOperator::Lt,
    BinaryOperator::LtEq,
    BinaryOperator::Gt,
    BinaryOperator::GtEq,
    BinaryOperator::Spaceship,
];

/// What `e` stands for when it is a bare name of one of the select
/// list's aliases.
fn aliased<'a>(e: &Expr, aliases: &'a [(String, GateExpr)]) -> Option<&'a GateExpr> {
    let Expr::Identifier(id) = e else {
        return None;
    };
    aliases
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(&id.value))
        .map(|(_, g)| g)
}

/// Translates an expression over a grouped result into a gate expression.
fn gate_expr(
    e: &Expr,
    internal: &mut Internal,
    groups: &[(String, usize)],
    aliases: &[(String, GateExpr)],
    count_distinct: &mut Option<usize>,
) -> Result<GateExpr, PlanError> {
    if let Some(call) = agg_call(e) {
        return internal.aggregate(&call, count_distinct);
    }
    let text = e.to_string();
    if let Some((_, i)) = groups.iter().find(|(g, _)| *g == text) {
        return Ok(GateExpr::Col(*i));
    }
    if let Some(g) = aliased(e, aliases) {
        return Ok(g.clone());
    }
    if let Some(op) = operand(e) {
        return Ok(match op {
            Operand::Bind(i) => GateExpr::Bind(i),
            Operand::Lit(v) => GateExpr::Lit(v),
        });
    }
    // An operator the gate does not compute (bit operators, string ones)
    // falls to the refusal below, not answered as NULL.
    Ok(match e {
        Expr::BinaryOp { left, op, right } if GATE_OPERATORS.contains(op) => {
            let mut l = gate_expr(left, internal, groups, aliases, count_distinct)?;
            let r = gate_expr(right, internal, groups, aliases, count_distinct)?;
            if let Some(c) = super::derive::compared_in(internal.tables, left, op, right) {
                l = GateExpr::Collate(Box::new(l), c);
            }
            GateExpr::Binary(Box::new(l), op.clone(), Box::new(r))
        }
        Expr::UnaryOp { op, expr }
            if matches!(
                op,
                UnaryOperator::Minus | UnaryOperator::Plus | UnaryOperator::Not
            ) =>
        {
            GateExpr::Unary(
                *op,
                Box::new(gate_expr(expr, internal, groups, aliases, count_distinct)?),
            )
        }
        Expr::Nested(inner) => gate_expr(inner, internal, groups, aliases, count_distinct)?,
        Expr::IsNull(inner) => GateExpr::IsNull(
            Box::new(gate_expr(inner, internal, groups, aliases, count_distinct)?),
            true,
        ),
        Expr::IsNotNull(inner) => GateExpr::IsNull(
            Box::new(gate_expr(inner, internal, groups, aliases, count_distinct)?),
            false,
        ),
        // A plain column that is not grouped: any value of the group, as MySQL allows.
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            GateExpr::Col(internal.push(text, AggKind::Key))
        }
        _ => {
            return Err(unsupported(format!(
                "expression '{text}' over a cross-shard aggregate"
            )))
        }
    })
}

/// The clause [`select_ref`] resolves a GROUP BY item for, as MariaDB's
/// errors name it.
pub(super) const GROUP_CLAUSE: &str = "group statement";

/// Resolves an ORDER BY / GROUP BY item that names a select-list position
/// (`ORDER BY 2`) or alias to the select-list expression; other items stand
/// for themselves. A position counts the columns a `*` stands for, as
/// MySQL counts them: a `*` over one table (or `t.*`) whose columns the
/// schema tracker learned is read as those columns, one it cannot read
/// (not learned, several tables) makes the positions after it unknown, and
/// naming one of them is refused rather than guessed.
pub(super) fn select_ref<'a>(
    e: &'a Expr,
    projection: &'a [SelectItem],
    tables: &[TableInfo],
    clause: &'static str,
) -> Result<Cow<'a, Expr>, PlanError> {
    let found = referred(e, projection, tables, clause)?;
    // A selected number (or a value bound later) written back as a key.
    if let Expr::Value(_) = &*found {
        let mut kept = found.into_owned();
        no_position(&mut kept);
        return Ok(Cow::Owned(kept));
    }
    Ok(found)
}

/// An ORDER BY or GROUP BY key that is a number, or a value bound later
/// (which may be one), as a value: written alone it names a select-list
/// position (`select 20, k ... order by 1` sent as `ORDER BY 20`:
/// MariaDB's 1054); COALESCE keeps it a value, of its own type.
pub(super) fn no_position(key: &mut Expr) {
    if let Expr::Value(v) = key {
        if matches!(v.value, ast::Value::Number(..) | ast::Value::Placeholder(_)) {
            if let Some(kept) = condition(&format!("COALESCE({key})")) {
                *key = kept;
            }
        }
    }
}

/// [`select_ref`]'s lookup.
fn referred<'a>(
    e: &'a Expr,
    projection: &'a [SelectItem],
    tables: &[TableInfo],
    clause: &'static str,
) -> Result<Cow<'a, Expr>, PlanError> {
    match e {
        Expr::Value(v) if matches!(v.value, ast::Value::Number(..)) => {
            let text = v.value.to_string();
            let k: usize = text.parse().unwrap_or(0);
            let unknown = || unsupported(format!("{clause}: a position of '*' across shards"));
            let mut at = 0;
            for item in projection {
                let star = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        at += 1;
                        if at == k {
                            return Ok(Cow::Borrowed(e));
                        }
                        continue;
                    }
                    SelectItem::Wildcard(_) => match tables {
                        [t] if !t.columns.is_empty() => (t, None),
                        _ => return Err(unknown()),
                    },
                    SelectItem::QualifiedWildcard(kind, _) => {
                        let ast::SelectItemQualifiedWildcardKind::ObjectName(n) = kind else {
                            return Err(unknown());
                        };
                        let parts = ident_name(n);
                        let name = parts.last().map(String::as_str).unwrap_or_default();
                        match tables.iter().find(|t| t.visible_name() == name) {
                            Some(t) if !t.columns.is_empty() => (t, Some(name.to_string())),
                            _ => return Err(unknown()),
                        }
                    }
                    _ => return Err(unknown()),
                };
                let (t, qualifier) = star;
                if k > at && k <= at + t.columns.len() {
                    // Quoted: the shards are sent it by name.
                    let col = ast::Ident::with_quote('`', t.columns[k - at - 1].clone());
                    return Ok(Cow::Owned(match qualifier {
                        None => Expr::Identifier(col),
                        Some(q) => {
                            Expr::CompoundIdentifier(vec![ast::Ident::with_quote('`', q), col])
                        }
                    }));
                }
                at += t.columns.len();
            }
            Err(PlanError::UnknownColumn {
                column: text,
                clause,
            })
        }
        // GROUP BY reads a name that is both an alias and a FROM table's
        // column as the column (MariaDB's rule, with a warning); ORDER BY
        // and HAVING read it as the alias.
        Expr::Identifier(id)
            if clause == GROUP_CLAUSE && tables.iter().any(|t| t.has_column(&id.value)) =>
        {
            Ok(Cow::Borrowed(e))
        }
        Expr::Identifier(id) => Ok(Cow::Borrowed(
            projection
                .iter()
                .find_map(|p| match p {
                    SelectItem::ExprWithAlias { expr, alias }
                        if alias.value.eq_ignore_ascii_case(&id.value) =>
                    {
                        Some(expr)
                    }
                    _ => None,
                })
                .unwrap_or(e),
        )),
        other => Ok(Cow::Borrowed(other)),
    }
}

pub(super) fn limit_parts(q: &ast::Query) -> Result<(Option<Operand>, Option<Operand>), PlanError> {
    let bad = || unsupported("LIMIT must be a number");
    match &q.limit_clause {
        None => Ok((None, None)),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => {
            let l = limit
                .as_ref()
                .map(|e| operand(e).ok_or_else(bad))
                .transpose()?;
            let o = offset
                .as_ref()
                .map(|o| operand(&o.value).ok_or_else(bad))
                .transpose()?;
            Ok((l, o))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => Ok((
            Some(operand(limit).ok_or_else(bad)?),
            Some(operand(offset).ok_or_else(bad)?),
        )),
    }
}

pub(super) fn plan_select(
    template: &str,
    q: &ast::Query,
    ks: &Keyspace,
) -> Result<SelectPlan, PlanError> {
    // [`plan`] inlines a statement's WITH; one left here is a subquery's.
    if q.with.is_some() {
        return Err(unsupported("WITH across shards"));
    }
    let sel = match q.body.as_ref() {
        SetExpr::Select(sel) => sel,
        // A UNION goes whole, where its parts allow.
        _ => {
            let u = match super::colocate::union(ks, q) {
                Ok(u) => u,
                // Else as a query over the union as a derived table.
                Err(refused) => {
                    let Some(sql) = super::colocate::union_as_derived(q) else {
                        return Err(refused);
                    };
                    let Statement::Query(dq) = parse(&sql)? else {
                        return Err(refused);
                    };
                    return plan_select(&sql, &dq, ks).map_err(|_| refused);
                }
            };
            return Ok(SelectPlan {
                keyspace: ks.name.clone(),
                routing: u.routing,
                original: template.to_string(),
                pushdown: Template::new(template.to_string()),
                gate: None,
                pushdown_limit: false,
                same_shard: u.same_shard,
            });
        }
    };
    let no_table = sel.from.is_empty()
        || matches!(&sel.from[..], [f] if f.joins.is_empty()
            && matches!(&f.relation, TableFactor::Table { name, .. } if name.to_string().eq_ignore_ascii_case("dual")));
    if no_table
        && !sel
            .projection
            .iter()
            .any(|p| p.to_string().to_ascii_uppercase().contains("SELECT "))
    {
        // No table: any shard can answer.
        return Ok(SelectPlan {
            keyspace: ks.name.clone(),
            routing: Routing::Any,
            original: template.to_string(),
            pushdown: Template::new(template.to_string()),
            gate: None,
            pushdown_limit: false,
            same_shard: Vec::new(),
        });
    }
    let super::colocate::Joined {
        tables,
        routing,
        in_expr,
        same_shard: joined_pins,
    } = super::colocate::route(ks, &sel.from, sel.selection.as_ref())?;
    let mut routing = routing;
    // On one shard every subquery of the keyspace answers there; one
    // reading another keyspace's tables does not.
    let foreign = || {
        super::qualifies_other(template, &ks.name, |q| {
            !crate::sql::SYSTEM_SCHEMAS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(q))
        })
    };
    let same_shard = if ks.shards.len() > 1 || foreign() {
        // (Tables placed by their joins matter only to subqueries.)
        let scope = match super::join::has_subquery(q) {
            true => std::borrow::Cow::Owned(super::colocate::placed_by_joins(
                &tables,
                &sel.from,
                sel.selection.as_ref(),
            )),
            false => std::borrow::Cow::Borrowed(&tables[..]),
        };
        let mut pins = super::colocate::subqueries(ks, q, &scope, &mut routing)?;
        pins.extend(joined_pins);
        pins
    } else {
        Vec::new()
    };
    let plan_base = |pushdown: String, gate: Option<Gate>, pushdown_limit: bool| SelectPlan {
        keyspace: ks.name.clone(),
        routing: routing.clone(),
        original: template.to_string(),
        pushdown: Template::new(pushdown),
        gate,
        pushdown_limit,
        same_shard: same_shard.clone(),
    };
    // One shard: the whole statement goes down as it is.
    if matches!(routing, Routing::Equal { .. } | Routing::Any) || ks.shards.len() == 1 {
        return Ok(plan_base(template.to_string(), None, false));
    }
    // Row locks (FOR UPDATE, LOCK IN SHARE MODE) are taken on every shard.
    let locks: String = q.locks.iter().map(|l| format!(" {l}")).collect();
    let from_sql = sel
        .from
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let where_sql = sel
        .selection
        .as_ref()
        .map(|s| format!(" WHERE {}", render_where(s, in_expr.as_ref())))
        .unwrap_or_default();
    let h = horizon(sel, q, &tables, false)?;
    let pushdown = if h.grouped {
        // Each shard's groups come sorted by the grouping keys (as vtgate
        // asks), so the gate can merge them and combine each group as it
        // passes; MariaDB sorts to group anyway, so the order costs it
        // nothing.
        format!(
            "SELECT {} FROM {from_sql}{where_sql}{}{locks}",
            h.items.join(", "),
            if h.group_by.is_empty() {
                String::new()
            } else {
                format!(
                    " GROUP BY {} ORDER BY {} ASC",
                    h.group_by.join(", "),
                    h.group_by.join(" ASC, ")
                )
            }
        )
    } else {
        format!(
            "SELECT {}{} FROM {from_sql}{where_sql}{}{}{locks}",
            if h.distinct { "DISTINCT " } else { "" },
            h.items.join(", "),
            h.order_sql,
            if h.push_limit { " LIMIT :vLIMIT" } else { "" }
        )
    };
    Ok(plan_base(pushdown, h.gate, h.push_limit))
}

/// What a SELECT's list, grouping, order and limit ask of the rows its
/// route returns: the columns to fetch and the gate's work on them.
pub(super) struct Horizon {
    /// The columns each shard (or each joined row) returns.
    pub items: Vec<String>,
    /// The gate's work; None: rows pass as they come.
    pub gate: Option<Gate>,
    /// The items are grouped: partial aggregates by `group_by`.
    grouped: bool,
    /// The grouping keys a shard groups by.
    group_by: Vec<String>,
    /// A shard's ORDER BY (ungrouped rows).
    order_sql: String,
    /// A shard's rows are DISTINCT (ungrouped rows of `*`).
    distinct: bool,
    /// A shard gets the LIMIT (plus OFFSET).
    push_limit: bool,
}

/// Whether a window function of the select list or ORDER BY would see
/// only one shard's rows of a window that spans shards: each window must
/// be partitioned by a table's vindex column, so that each partition
/// lives on one shard (never so over a nested loop's joined rows).
fn windows_across_shards(
    sel: &ast::Select,
    order_by: &Option<ast::OrderBy>,
    tables: &[TableInfo],
    row_level: bool,
) -> bool {
    let apart = |partition: &[Expr]| {
        !row_level
            && partition
                .iter()
                .any(|e| tables.iter().any(|t| t.places_rows_by(e).is_some()))
    };
    let mut spans = |e: &Expr| match e {
        Expr::Function(f) => match &f.over {
            Some(ast::WindowType::WindowSpec(spec)) if apart(&spec.partition_by) => {
                ControlFlow::Continue(())
            }
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    ast::visit_expressions(&sel.projection, &mut spans).is_break()
        || ast::visit_expressions(order_by, &mut spans).is_break()
}

/// Whether grouping by `group` keeps each group on one shard: a key is a
/// sharded table's primary vindex column whose equal values (as SQL
/// compares them) have one keyspace id: a number, or a string under a
/// vindex of its loose collation key.
fn whole_groups(group: &[Expr], tables: &[TableInfo]) -> bool {
    group.iter().any(|g| {
        tables.iter().any(|t| {
            t.kind.is_empty()
                && t.places_rows_by(g).is_some_and(|func| {
                    t.declared(g) == Some(Declared::Number)
                        || matches!(func, Func::UnicodeLooseMd5 | Func::UnicodeLooseXxhash)
                })
        })
    })
}

/// The name MySQL gives an unaliased select item: a column's own name
/// (`t.col` is `col`), else the expression's text.
pub(super) fn column_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// Plans the horizon of `sel` over `tables`. `row_level`: the items are
/// computed per row, not per shard (a nested-loop join's rows): an
/// aggregate's part is the row's own value (1 for COUNT(*)), and the gate
/// combines every row.
pub(super) fn horizon(
    sel: &ast::Select,
    q: &ast::Query,
    tables: &[TableInfo],
    row_level: bool,
) -> Result<Horizon, PlanError> {
    // DISTINCT over a window's values: the shards' rows deduplicated
    // after their windows (which a shard's GROUP BY cannot hold).
    if windows_across_shards(sel, &q.order_by, tables, row_level)
        || (sel.distinct.is_some() && has_window(&sel.projection))
    {
        return Err(unsupported(
            "window functions across shards (unless partitioned by a vindex column)",
        ));
    }
    // HAVING over ungrouped rows (MySQL's filter on the select list's
    // aliases) filters each row alike wherever it is: each shard applies
    // it to its own rows.
    let row_having = match &sel.having {
        Some(h)
            if matches!(sel.group_by, GroupByExpr::Expressions(ref g, _) if g.is_empty())
                && !has_aggregate(h)
                && !sel.projection.iter().any(|p| matches!(p, SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } if has_aggregate(e))) =>
        {
            if row_level {
                return Err(unsupported("HAVING without aggregates across shards"));
            }
            format!(" HAVING {h}")
        }
        _ => String::new(),
    };
    let group_exprs: Vec<Expr> = match &sel.group_by {
        GroupByExpr::Expressions(g, mods) if mods.is_empty() => g.clone(),
        GroupByExpr::Expressions(..) => {
            return Err(unsupported("GROUP BY modifiers across shards"))
        }
        GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
    };
    let order_exprs: Vec<ast::OrderByExpr> = match q.order_by.as_ref().map(|o| &o.kind) {
        None => vec![],
        Some(OrderByKind::Expressions(v)) => v.clone(),
        Some(OrderByKind::All(_)) => return Err(unsupported("ORDER BY ALL")),
    };
    let (limit, offset) = limit_parts(q)?;
    let distinct = match &sel.distinct {
        None => false,
        Some(ast::Distinct::Distinct) => true,
        Some(_) => return Err(unsupported("DISTINCT ON")),
    };
    let mut aggregated = !group_exprs.is_empty()
        || sel.having.as_ref().is_some_and(has_aggregate)
        || sel.projection.iter().any(|p| match p {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        });
    // SELECT DISTINCT a, b is GROUP BY a, b: grouping compares strings by
    // collation (weight strings), as MariaDB's DISTINCT does.
    let mut group_exprs = group_exprs;
    let mut distinct = distinct;
    let wildcard = sel.projection.iter().any(|p| {
        matches!(
            p,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let grouped_as_written = aggregated && !group_exprs.is_empty();
    if distinct && !aggregated && !wildcard {
        group_exprs = sel
            .projection
            .iter()
            .filter_map(|p| match p {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    Some(e.clone())
                }
                _ => None,
            })
            .collect();
        aggregated = true;
        distinct = false;
    }
    // Grouped by a sharded table's primary vindex column: each group
    // lives on one shard, whose groups are whole (vtgate pushes such a
    // grouping down). The shards group, aggregate and filter (HAVING)
    // themselves; their rows pass through the gate, which orders, dedupes
    // and limits them as any rows.
    let mut row_having = row_having;
    if grouped_as_written && !row_level && whole_groups(&group_exprs, tables) {
        let keys: Vec<String> = group_exprs.iter().map(|g| g.to_string()).collect();
        let having = sel
            .having
            .as_ref()
            .map(|h| format!(" HAVING {h}"))
            .unwrap_or_default();
        row_having = format!(" GROUP BY {}{having}", keys.join(", "));
        aggregated = false;
    }

    if !aggregated {
        // Rows pass through; the gate sorts, dedupes and limits.
        if !distinct && order_exprs.is_empty() && limit.is_none() {
            return Ok(Horizon {
                items: sel.projection.iter().map(|p| p.to_string()).collect(),
                gate: None,
                grouped: false,
                group_by: Vec::new(),
                order_sql: row_having,
                distinct: false,
                push_limit: false,
            });
        }
        let mut items: Vec<String> = sel.projection.iter().map(|p| p.to_string()).collect();
        let visible_known = !sel.projection.iter().any(|p| {
            matches!(
                p,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        // A sort key that is a select item (with `*` absent, so its position
        // is known) is read from that column, as vtgate does; otherwise it
        // travels as a hidden column. Its weight string is always hidden.
        let mut hidden = Vec::new();
        let mut order = Vec::new();
        let mut order_keys = Vec::new();
        for ob in &order_exprs {
            let desc = matches!(ob.options.sort, Some(ast::OrderBySort::Desc));
            let key = select_ref(&ob.expr, &sel.projection, tables, "order clause")?;
            let key = &*key;
            let expr_sql = key.to_string();
            let shown = sel
                .projection
                .iter()
                .position(|p| match p {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        e.to_string() == expr_sql
                    }
                    _ => false,
                })
                .filter(|_| visible_known);
            let col = match shown {
                Some(i) => i,
                None => {
                    hidden.push(expr_sql.clone());
                    HIDDEN + hidden.len() - 1
                }
            };
            let weight = weigh(tables, key, &expr_sql, |w| {
                hidden.push(w);
                HIDDEN + hidden.len() - 1
            });
            order_keys.push(SortKey {
                expr: GateExpr::Col(col),
                weight,
                desc,
            });
            order.push((desc, expr_sql));
        }
        let n_hidden = hidden.len();
        items.extend(hidden);
        let pushdown_order = if order.is_empty() {
            String::new()
        } else {
            format!(
                " ORDER BY {}",
                order
                    .iter()
                    .map(|(d, e)| format!("{e}{}", if *d { " DESC" } else { " ASC" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let push_limit = limit.is_some() && !row_level;
        let gate = Gate {
            hidden: n_hidden,
            distinct,
            order: order_keys,
            limit,
            offset,
            ..Gate::default()
        };
        return Ok(Horizon {
            items,
            gate: Some(gate),
            grouped: false,
            group_by: Vec::new(),
            order_sql: format!("{row_having}{pushdown_order}"),
            distinct,
            push_limit,
        });
    }

    // Aggregation: push partial aggregates grouped by the keys; combine at
    // the gate (a DISTINCT then dedupes the combined rows).
    let mut internal = Internal {
        items: Vec::new(),
        kinds: Vec::new(),
        tables,
        row_level,
    };
    let mut groups: Vec<(String, usize)> = Vec::new();
    let mut group_keys = Vec::new();
    for g in &group_exprs {
        let g = select_ref(g, &sel.projection, tables, GROUP_CLAUSE)?.into_owned();
        if has_aggregate(&g) {
            return Err(PlanError::GroupFunction);
        }
        let s = g.to_string();
        let i = internal.push(s.clone(), AggKind::Key);
        let w = weigh(tables, &g, &s, |w| internal.push(w, AggKind::Weight));
        groups.push((s, i));
        group_keys.push((i, w));
    }
    let mut count_distinct = None;
    let mut output = Vec::new();
    let mut aliases: Vec<(String, GateExpr)> = Vec::new();
    for p in &sel.projection {
        let (e, name) = match p {
            SelectItem::UnnamedExpr(e) => (e, column_name(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            _ => return Err(unsupported("'*' with aggregates across shards")),
        };
        let g = gate_expr(e, &mut internal, &groups, &[], &mut count_distinct)?;
        if let SelectItem::ExprWithAlias { alias, .. } = p {
            aliases.push((alias.value.clone(), g.clone()));
        }
        output.push((g, name));
    }
    let having = sel
        .having
        .as_ref()
        .map(|h| gate_expr(h, &mut internal, &groups, &aliases, &mut count_distinct))
        .transpose()?;
    let mut order = Vec::new();
    for ob in &order_exprs {
        let desc = matches!(ob.options.sort, Some(ast::OrderBySort::Desc));
        let expr = match &ob.expr {
            Expr::Value(v) if matches!(v.value, ast::Value::Number(..)) => {
                let k: usize = v.value.to_string().parse().unwrap_or(0);
                output
                    .get(k.wrapping_sub(1))
                    .map(|(g, _)| g.clone())
                    .ok_or_else(|| PlanError::UnknownColumn {
                        column: k.to_string(),
                        clause: "order clause",
                    })?
            }
            // ORDER BY reads a name that is an alias as the alias, even
            // where a grouped column has that name.
            other => match aliased(other, &aliases) {
                Some(g) => g.clone(),
                None => gate_expr(other, &mut internal, &groups, &aliases, &mut count_distinct)?,
            },
        };
        let weight = match &expr {
            GateExpr::Col(i) => match internal.kinds[*i] {
                AggKind::Min { weight } | AggKind::Max { weight } => weight,
                AggKind::Key => group_keys
                    .iter()
                    .find(|(k, _)| k == i)
                    .and_then(|(_, w)| *w),
                _ => None,
            },
            _ => None,
        };
        order.push(SortKey { expr, weight, desc });
    }
    let mut group_by: Vec<String> = groups.iter().map(|(s, _)| s.clone()).collect();
    if let Some(i) = count_distinct {
        group_by.push(internal.items[i].clone());
    }
    let gate = Gate {
        aggregate: internal.kinds.clone(),
        group_keys,
        scalar: groups.is_empty(),
        output: Some(output),
        hidden: 0,
        having,
        distinct,
        order,
        limit,
        offset,
    };
    Ok(Horizon {
        items: internal.items,
        gate: Some(gate),
        grouped: true,
        group_by,
        order_sql: String::new(),
        distinct: false,
        push_limit: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries planned within one another are counted while they are
    /// planned, and refused past the bound.
    #[test]
    fn nested_plans_are_bounded() {
        let held: Vec<Nested> = (0..MAX_NESTED_PLANS)
            .map(|_| Nested::enter().unwrap())
            .collect();
        assert!(
            matches!(Nested::enter(), Err(PlanError::Unsupported(m)) if m.contains("too complex"))
        );
        drop(held);
        assert!(Nested::enter().is_ok());
        NESTED_PLANS.with(|n| assert_eq!(n.get(), 0));
    }

    /// A chain of set operations is a tree as deep as it is long: past
    /// the bound it is refused, as a long chain of ANDs is, rather than
    /// walked; a VALUES list of any length is flat and counts nothing.
    #[test]
    fn long_operator_chains_are_refused_and_values_are_not() {
        let chain = |n: usize, op: &str| {
            (1..=n)
                .map(|i| format!("SELECT {i}"))
                .collect::<Vec<_>>()
                .join(op)
        };
        let too_complex = |sql: &str| matches!(parse(sql), Err(PlanError::Unsupported(m)) if m.contains("too complex"));
        assert!(!too_complex(&chain(MAX_OPERATORS + 1, " UNION ALL ")));
        assert!(too_complex(&chain(MAX_OPERATORS + 2, " UNION ALL ")));
        assert!(too_complex(&chain(MAX_OPERATORS + 2, " EXCEPT ")));
        let ands = vec!["a = 1"; MAX_OPERATORS + 1].join(" AND ");
        assert!(too_complex(&format!("SELECT 1 FROM t WHERE {ands}")));
        let rows: Vec<String> = (2..=5_000).map(|i| format!("({i}, 'x')")).collect();
        let values = format!(
            "SELECT 1 AS a, 'y' AS b UNION ALL VALUES {}",
            rows.join(", ")
        );
        assert!(parse(&values).is_ok());
    }

    /// A multi-table DELETE is refused as MariaDB refuses it when its
    /// WHERE clause's subqueries read a table it deletes from, naming the
    /// target as written; its single-table form, a derived table and a
    /// subquery over the other tables are not.
    #[test]
    fn a_multi_table_delete_reading_its_target_is_refused() {
        let checked = |sql: &str| match parse(sql).unwrap() {
            Statement::Delete(d) => target_read(&d).map_err(|e| e.to_string()),
            _ => panic!("{sql}"),
        };
        assert_eq!(
            checked("delete a, b from qa a join qb b on b.a_id = a.id where a.k in (select k from qb where qty = 9)"),
            Err("Table 'b' is specified twice, both as a target for 'DELETE' and as a separate source for data".into())
        );
        assert!(checked(
            "delete a from qa a where exists (select 1 from x where x.id in (select id from qa))"
        )
        .is_err());
        for sql in [
            "delete from qa where amt > (select avg(amt) from qa)",
            "delete a from qa a join (select id from qa where g = 7) t on t.id = a.id",
            "delete a from qa a join qb b on b.a_id = a.id where a.k in (select k from qb)",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn found_rows_are_counted_without_order_and_limit() {
        let (limited, count) = found_rows_queries(
            "select sql_calc_found_rows id, name from t where k > :v1 order by id limit :v2",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            limited,
            "SELECT id, name FROM t WHERE k > :v1 ORDER BY id LIMIT :v2"
        );
        assert_eq!(count, "SELECT COUNT(*) FROM t WHERE k > :v1");
        let (_, count) =
            found_rows_queries("select sql_calc_found_rows k, count(*) from t group by k limit 3")
                .unwrap()
                .unwrap();
        assert_eq!(
            count,
            "SELECT COUNT(*) FROM (SELECT k, count(*) FROM t GROUP BY k) AS found_rows"
        );
        assert_eq!(
            found_rows_queries("select id from t limit 1").unwrap(),
            None
        );
    }

    #[test]
    fn comma_updates_parse_as_joins() {
        let Statement::Update(u) =
            parse("update a x, b set x.v = (select max(c) from c, d) where x.k = b.n").unwrap()
        else {
            panic!("not an UPDATE")
        };
        assert_eq!(u.table.to_string(), "a x JOIN b");
        assert_eq!(
            u.assignments[0].to_string(),
            "x.v = (SELECT max(c) FROM c, d)"
        );
        // Commas inside parentheses, and other statements, are left alone.
        let sql = "update a set v = 1 where k in (1, 2)";
        assert_eq!(comma_update(sql, &crate::sql::lexer::tokenize(sql)), None);
        let sql = "delete a, b from a join b";
        assert_eq!(comma_update(sql, &crate::sql::lexer::tokenize(sql)), None);
        assert!(matches!(
            parse("update a,, b set v = 1"),
            Err(PlanError::Syntax(_))
        ));
    }
}
