//! Statement text handling: splitting, classifying, the session-level
//! rewrites a proxy owes its clients, and bind-value substitution.
//!
//! Unsharded keyspaces receive statements verbatim, so this stage works on
//! tokens, not a full AST: a point select is classified in well under a
//! microsecond. The sharded planner parses further where it needs to.

pub mod lexer;
pub mod load;
pub mod normalize;
pub mod prepared;
pub mod raw;

use lexer::{tokenize, Token, TokenKind};
use mysql_common::value::Value;

/// Errors from reading statement text.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement needs more bind values than the client sent (or fewer).
    #[error("Incorrect arguments to mysqld_stmt_execute: statement has {expected} placeholders, got {got} values")]
    ParamCount { expected: usize, got: usize },
    /// A target string (`ks:shard@type`) is malformed.
    #[error("invalid target '{0}'")]
    BadTarget(String),
    /// A SET statement we cannot make sense of.
    #[error("invalid value for autocommit: '{0}'")]
    BadAutocommit(String),
    /// `SET transaction_mode` to something vtgate does not know.
    #[error("Variable 'transaction_mode' can't be set to the value of '{0}'")]
    BadTransactionMode(String),
    /// A KILL shardgate does not take: only `KILL [CONNECTION | QUERY] id`.
    #[error("You have an error in your SQL syntax: shardgate takes KILL [CONNECTION | QUERY] <connection id>, not '{0}'")]
    BadKill(String),
    /// `SET query_timeout` to something other than milliseconds.
    #[error("Variable 'query_timeout' can't be set to the value of '{0}'")]
    BadQueryTimeout(String),
    /// A number variable set to what is no number (MariaDB's 1232).
    #[error("Incorrect argument type to variable '{0}'")]
    WrongVariableType(&'static str),
    /// A value vtgate's session variable does not take (see
    /// [`VITESS_VARS`]).
    #[error("Variable '{name}' can't be set to the value of '{value}'")]
    BadVitessValue {
        /// The variable.
        name: &'static str,
        /// The value as written.
        value: String,
    },
    /// A SHOW the gate answers, filtered by WHERE: only LIKE is taken.
    #[error("{0} takes LIKE 'pattern' in shardgate, not WHERE")]
    ShowWhere(String),
    /// An `ALTER VSCHEMA` statement outside its grammar.
    #[error("You have an error in your SQL syntax; check the ALTER VSCHEMA syntax {0}")]
    VschemaSyntax(String),
    /// A PREPARE, EXECUTE or DEALLOCATE PREPARE the gate cannot read.
    #[error("You have an error in your SQL syntax near '{0}'")]
    BadPrepared(String),
    /// `SET transaction_mode` inside a transaction.
    #[error("Transaction characteristics can't be changed while a transaction is in progress")]
    TransactionModeInTransaction,
    /// `START TRANSACTION` with something other than its characteristics.
    #[error("You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '{0}'")]
    BadBegin(String),
    /// A `LOAD DATA` the gate does not read (see [`load`]).
    #[error("unsupported: LOAD DATA: {0}")]
    LoadData(String),
}

/// What a VEXPLAIN asks of its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VExplainKind {
    /// PLAN (and ALL): the plan, as JSON, without running it.
    Plan,
    /// QUERIES: run it and list the queries each shard got.
    Queries,
    /// KEYS: the columns it filters, joins, groups and selects on.
    Keys,
}

/// What kind of statement a client sent, as far as routing and session state care.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT.
    Commit,
    /// ROLLBACK (not ROLLBACK TO SAVEPOINT, a [`Statement::Savepoint`]).
    Rollback,
    /// SAVEPOINT, ROLLBACK TO or RELEASE SAVEPOINT: the session's, for
    /// every tablet of its transaction.
    Savepoint(Savepoint),
    /// USE target.
    Use(String),
    /// SET ...; see [`SetStmt`].
    Set(SetStmt),
    /// SHOW DATABASES / SHOW SCHEMAS [LIKE 'pattern'].
    ShowDatabases(Option<String>),
    /// SHOW KEYSPACES (Vitess) [LIKE 'pattern'].
    ShowKeyspaces(Option<String>),
    /// SHOW VITESS_SHARDS [LIKE 'pattern'] (matched against `ks/shard`).
    ShowVitessShards(Option<String>),
    /// SHOW VITESS_TABLETS [LIKE 'pattern'] (matched against the
    /// Hostname column, as vtgate matches it).
    ShowVitessTablets(Option<String>),
    /// SHOW VITESS_REPLICATION_STATUS [LIKE 'pattern'] (matched against
    /// `ks/shard`): each replica's replication, read from its server.
    ShowReplicationStatus(Option<String>),
    /// SHOW VSCHEMA TABLES.
    ShowVschemaTables,
    /// SHOW VSCHEMA KEYSPACES: each keyspace, sharded or not.
    ShowVschemaKeyspaces,
    /// vtgate's `SHOW VITESS_METADATA VARIABLES [LIKE 'key']`: the
    /// metadata `SET @@vitess_metadata.key = 'value'` stored in the
    /// topology.
    ShowMetadata(Option<String>),
    /// SHOW VSCHEMA VINDEXES [ON|FROM [ks.]table]: every keyspace's
    /// vindexes, or one table's column vindexes (its qualifier, if any).
    ShowVschemaVindexes(Option<(Option<String>, String)>),
    /// SHOW VITESS_TARGET: the session's target.
    ShowVitessTarget,
    /// `SHOW CREATE DATABASE [IF NOT EXISTS] ks`: a keyspace's database as
    /// its tablets define it, under the keyspace's name.
    ShowCreateDatabase {
        /// The database named.
        name: String,
        /// IF NOT EXISTS (in the statement it shows).
        if_not_exists: bool,
    },
    /// vtgate's `SHOW TRANSACTION STATUS FOR 'id'` (`dtid`) and `SHOW
    /// UNRESOLVED TRANSACTIONS [FOR ks]` (`keyspace`): twopc transactions
    /// the decision store holds (see [`crate::executor::twopc`]).
    ShowTransactions {
        /// One transaction's id.
        dtid: Option<String>,
        /// Those with a part in this keyspace.
        keyspace: Option<String>,
    },
    /// `KILL [CONNECTION | QUERY] id`: answered by the gate for its own
    /// connection ids, never passed to a tablet (see
    /// [`crate::executor::interrupt`]).
    Kill {
        /// KILL CONNECTION (the default) rather than KILL QUERY.
        connection: bool,
        /// The connection id.
        id: u64,
    },
    /// vtgate's `SELECT NEXT [n] VALUE[S] FROM [ks.]seq`: `count` ids
    /// taken from a sequence table, the first returned (`nextval`).
    NextValues {
        /// How many ids are taken.
        count: u64,
        /// The sequence's keyspace, if the statement names it.
        keyspace: Option<String>,
        /// The sequence table.
        table: String,
    },
    /// vtgate's `ALTER VSCHEMA ...`: a change to a keyspace's VSchema,
    /// written to the topology store by the gate (see
    /// [`crate::vschema::ddl`]).
    AlterVschema(crate::vschema::ddl::Alter),
    /// VEXPLAIN [PLAN | QUERIES | ALL | KEYS] statement.
    VExplain {
        /// What is asked of it.
        kind: VExplainKind,
        /// The statement explained.
        inner: String,
    },
    /// `CREATE`, `DROP` or `ALTER DATABASE` (or `SCHEMA`): a database is
    /// a keyspace, which the topology makes, not a tablet (see
    /// [`DatabaseDdl`]).
    Database(DatabaseDdl),
    /// `PREPARE name FROM ...`: kept by the session under its name (see
    /// [`prepared`]).
    Prepare {
        /// The name, in lower case.
        name: String,
        /// The statement's text, or what gives it.
        source: prepared::Source,
    },
    /// `EXECUTE name [USING ...]` or `EXECUTE IMMEDIATE ... [USING ...]`.
    Execute {
        /// The statement run.
        what: prepared::Executed,
        /// USING's expressions, as written, one per `?`.
        args: Vec<String>,
    },
    /// `DEALLOCATE PREPARE name` or `DROP PREPARE name` (lower case).
    Deallocate(String),
    /// Anything that goes to a tablet.
    Query(QueryKind),
}

/// What a database statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseVerb {
    /// CREATE DATABASE.
    Create,
    /// DROP DATABASE.
    Drop,
    /// ALTER DATABASE.
    Alter,
}

/// A database statement, as far as the gate answers it: vtgate's answers
/// are OK for `CREATE DATABASE IF NOT EXISTS` of a keyspace and `DROP
/// DATABASE IF EXISTS` of none (what a dump made with `--databases` or
/// `--add-drop-database` runs), MySQL's errors for the unguarded forms,
/// and a refusal for what would need the topology changed. Sent to a
/// tablet, it would make or drop a database no gate serves.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseDdl {
    /// CREATE, DROP or ALTER.
    pub verb: DatabaseVerb,
    /// The database named (ALTER may name none: the session's).
    pub name: Option<String>,
    /// `IF NOT EXISTS` (CREATE) or `IF EXISTS` (DROP).
    pub guarded: bool,
}

/// `toks` as a database statement, when its second word is DATABASE or
/// SCHEMA.
fn database_ddl(sql: &str, toks: &[Token], verb: DatabaseVerb) -> Statement {
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    let guarded = w(2, "if") && (w(3, "exists") || (w(3, "not") && w(4, "exists")));
    let at = match (guarded, w(3, "not")) {
        (false, _) => 2,
        (true, false) => 4,
        (true, true) => 5,
    };
    // ALTER DATABASE's options may follow it directly.
    let option = [
        "character",
        "charset",
        "default",
        "collate",
        "comment",
        "upgrade",
    ]
    .iter()
    .any(|o| w(at, o));
    let name = toks
        .get(at)
        .filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::Ident) && !option)
        .map(|t| unquote(t.text(sql)).to_string());
    Statement::Database(DatabaseDdl {
        verb,
        name,
        guarded,
    })
}

/// The broad class of a statement sent to tablets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// SELECT (and parenthesized selects, WITH ... SELECT).
    Select,
    /// INSERT / REPLACE.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// SHOW ... (other than the ones shardgate answers).
    Show,
    /// CREATE / ALTER / DROP / TRUNCATE / RENAME: MySQL commits the open
    /// transaction before it runs.
    Ddl,
    /// A statement that leaves state on the backend connection (temporary
    /// tables, locks): the session must keep that connection. A temporary
    /// table's CREATE or DROP commits nothing.
    Reserving,
    /// Table maintenance: ANALYZE, OPTIMIZE, REPAIR, CHECK, CHECKSUM
    /// TABLE. Each server keeps its own part of a sharded table, so on a
    /// sharded keyspace it runs on every shard, each shard's rows in turn.
    Maintenance,
    /// Everything else.
    Other,
}

/// A SET statement split into what shardgate keeps itself and what it
/// replays on the session's backend connections.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SetStmt {
    /// `autocommit` assignment, handled by the session.
    pub autocommit: Option<bool>,
    /// vtgate's session variable `transaction_mode` (the value as written,
    /// unquoted), handled by the session.
    pub transaction_mode: Option<String>,
    /// vtgate's session variable `query_timeout` (milliseconds; 0: none),
    /// handled by the session.
    pub query_timeout: Option<u64>,
    /// The remaining assignments as one `SET ...` statement, if any.
    pub rest: Option<String>,
    /// `SET GLOBAL ...`: passed through once, not replayed.
    pub global: bool,
    /// The session system variables `rest` assigns, when it assigns
    /// nothing else (no user variables, no `SET TRANSACTION`): if it leaves
    /// them as a clean connection has them (a driver's `SET NAMES utf8mb4`
    /// at connect), the session need not carry it, as vtgate checks a SET
    /// against the tablet before reserving a connection for it.
    pub sys_vars: Option<Vec<String>>,
    /// Every value `rest` assigns is a literal (a string, a number, a bare
    /// word such as `utf8mb4` or `DEFAULT`): what it does depends on the
    /// tablet and the settings before it, never on user variables or
    /// other session state, so a verdict on it (see
    /// `executor::verdicts`) holds for the next session that sends it.
    pub constant: bool,
    /// vtgate's own session variables assigned ([`VITESS_VARS`]), each
    /// with its value as the session keeps it.
    pub vitess: Vec<(&'static str, String)>,
    /// vtgate's `@@vitess_metadata.key` assignments: (key, value), an
    /// empty value deleting the key.
    pub metadata: Vec<(String, String)>,
    /// When `rest` assigns user variables only and a value reads a
    /// subquery (`SET @n = (SELECT COUNT(*) FROM t)`): the values as
    /// written and the variables, for the session to run as `SELECT
    /// values INTO variables` through the planner. Replayed on a tablet,
    /// the subquery would read that shard's rows alone.
    pub queried: Option<(Vec<String>, Vec<String>)>,
}

/// vtgate's own session variables besides `autocommit`,
/// `transaction_mode` and `query_timeout`: the session keeps them and
/// `SELECT @@name` answers them; none reaches a tablet (MariaDB knows
/// none of them but `sql_select_limit`, which vtgate keeps too: on a
/// tablet it would cut the gate's own queries, each shard's part of a
/// merge and a nested loop's inner rows, where only the client's result
/// may be cut). Name, default, and whether the value is a number.
pub const VITESS_VARS: [(&str, &str, bool); 9] = [
    ("ddl_strategy", "direct", false),
    ("enable_system_settings", "1", true),
    ("migration_context", "", false),
    ("read_after_write_gtid", "", false),
    ("read_after_write_timeout", "30", true),
    ("session_track_gtids", "off", false),
    ("skip_query_plan_cache", "0", true),
    ("sql_select_limit", SELECT_LIMIT_DEFAULT, true),
    ("workload", "OLTP", false),
];

/// `sql_select_limit`'s default, MariaDB's: no limit.
const SELECT_LIMIT_DEFAULT: &str = "18446744073709551615";

/// The rows a client's SELECT may return under the session's
/// `sql_select_limit` (`vitess`: the session's [`VITESS_VARS`]), None
/// when the statement is not capped: no limit set, or `sql` is no
/// SELECT, or its outermost query has a LIMIT of its own (which wins,
/// however large), as MariaDB applies the variable. A SELECT ... INTO
/// sends no rows, so a cap changes nothing there.
pub fn select_cap(sql: &str, vitess: &[(&'static str, String)]) -> Option<u64> {
    let (_, value) = vitess.iter().find(|(n, _)| *n == "sql_select_limit")?;
    let cap: u64 = value.parse().ok().filter(|&n| n != u64::MAX)?;
    let toks = tokenize(sql);
    let mut body: &[Token] = &toks;
    while let [.., Token {
        kind: TokenKind::Semicolon,
        ..
    }] = body
    {
        body = &body[..body.len() - 1];
    }
    // `(SELECT ... LIMIT 5)`: the parentheses hold the whole statement,
    // so their LIMIT is its own.
    while let [open, inner @ .., close] = body {
        let whole = open.kind == TokenKind::Punct(b'(')
            && close.kind == TokenKind::Punct(b')')
            && lexer::closing_paren(body, 0) == Some(body.len() - 1);
        if !whole {
            break;
        }
        body = inner;
    }
    let first = body.first()?;
    let query = first.is_word(sql, "select")
        || first.is_word(sql, "with")
        || first.kind == TokenKind::Punct(b'(');
    let mut depth = 0i32;
    let limited = body.iter().any(|t| {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth -= 1,
            _ => {}
        }
        depth == 0 && t.is_word(sql, "limit")
    });
    (query && !limited).then_some(cap)
}

/// A value for vtgate's session variable `name` as the session keeps it,
/// or why it is refused. `workload` takes OLTP, OLAP or DBA (rows stream
/// to the client in every one of them); `ddl_strategy` only `direct`
/// (shardgate runs DDL directly: an online strategy it cannot honour is
/// refused, not ignored), `session_track_gtids` only `off`, and
/// `read_after_write_gtid` only empty (vtgate would make a replica read
/// wait for that GTID; shardgate cannot, so it says so).
fn vitess_value(name: &'static str, raw: &str) -> Result<String, SqlError> {
    let bad = || SqlError::BadVitessValue {
        name,
        value: raw.to_string(),
    };
    let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" => Some("1"),
        "0" | "off" | "false" => Some("0"),
        _ => None,
    };
    Ok(match name {
        "workload" => match raw.to_ascii_uppercase().as_str() {
            w @ ("OLTP" | "OLAP" | "DBA") => w.to_string(),
            _ => return Err(bad()),
        },
        "ddl_strategy" if raw.is_empty() || raw.eq_ignore_ascii_case("direct") => {
            "direct".to_string()
        }
        "session_track_gtids" if raw.eq_ignore_ascii_case("off") => "off".to_string(),
        "read_after_write_gtid" if raw.is_empty() => String::new(),
        "ddl_strategy" | "session_track_gtids" | "read_after_write_gtid" => return Err(bad()),
        "enable_system_settings" | "skip_query_plan_cache" => {
            flag(raw).ok_or_else(bad)?.to_string()
        }
        // MariaDB's rules: DEFAULT is no limit, a negative count is 0.
        "sql_select_limit" => match raw.trim() {
            d if d.eq_ignore_ascii_case("default") => SELECT_LIMIT_DEFAULT.to_string(),
            n => match n.parse::<i128>() {
                Ok(v) => u64::try_from(v.max(0)).unwrap_or(u64::MAX).to_string(),
                Err(_) => return Err(SqlError::WrongVariableType(name)),
            },
        },
        "read_after_write_timeout" => match raw.parse::<f64>() {
            Ok(v) if v >= 0.0 => raw.to_string(),
            _ => return Err(bad()),
        },
        _ => raw.to_string(),
    })
}

/// The variables `SET NAMES` and `SET CHARACTER SET` change.
const CHARSET_VARS: [&str; 4] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// A savepoint statement, by the savepoint's name (lower case: MySQL
/// compares them so).
#[derive(Debug, Clone, PartialEq)]
pub enum Savepoint {
    /// SAVEPOINT name.
    Set(String),
    /// `ROLLBACK [WORK] TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// RELEASE SAVEPOINT name.
    Release(String),
}

/// The savepoint a savepoint statement names: its last token, the one
/// before being SAVEPOINT or TO.
fn savepoint_name(sql: &str, toks: &[Token]) -> Option<String> {
    let [.., before, name] = toks else {
        return None;
    };
    let shaped = match toks[0].text(sql).to_ascii_lowercase().as_str() {
        "savepoint" => toks.len() == 2,
        "release" => toks.len() == 3 && before.is_word(sql, "savepoint"),
        "rollback" => {
            before.is_word(sql, "to") || before.is_word(sql, "savepoint") && toks.len() >= 4
        }
        _ => false,
    };
    (shaped && matches!(name.kind, TokenKind::Word | TokenKind::Ident))
        .then(|| unquote(name.text(sql)).to_ascii_lowercase())
}

/// Classifies one statement (already split from a multi-statement).
pub fn classify(sql: &str) -> Result<Statement, SqlError> {
    let toks = tokenize(sql);
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    let Some(first) = toks.first() else {
        return Ok(Statement::Query(QueryKind::Other));
    };
    if first.kind == TokenKind::Punct(b'(') {
        return Ok(Statement::Query(QueryKind::Select));
    }
    if first.kind != TokenKind::Word {
        return Ok(Statement::Query(QueryKind::Other));
    }
    let kw = first.text(sql).to_ascii_lowercase();
    let stmt = match kw.as_str() {
        "select" if w(1, "next") => next_values(sql, &toks)?,
        "select" | "with" | "values" | "table" | "do" => {
            if toks.iter().any(|t| t.is_word(sql, "get_lock")) {
                Statement::Query(QueryKind::Reserving)
            } else if kw == "do" {
                Statement::Query(QueryKind::Other)
            } else {
                Statement::Query(QueryKind::Select)
            }
        }
        "analyze" | "optimize" | "repair" | "check" | "checksum" => {
            // `ANALYZE SELECT ...` is MariaDB's EXPLAIN ANALYZE, not upkeep.
            let at = usize::from(w(1, "no_write_to_binlog") || w(1, "local")) + 1;
            if w(at, "table") || w(at, "tables") {
                Statement::Query(QueryKind::Maintenance)
            } else {
                Statement::Query(QueryKind::Other)
            }
        }
        "insert" | "replace" => Statement::Query(QueryKind::Insert),
        "vexplain" => {
            let (kind, from) = if w(1, "queries") {
                (VExplainKind::Queries, 2)
            } else if w(1, "keys") {
                (VExplainKind::Keys, 2)
            } else if w(1, "plan") || w(1, "all") {
                (VExplainKind::Plan, 2)
            } else {
                (VExplainKind::Plan, 1)
            };
            let start = toks.get(from).map(|t| t.start).unwrap_or(sql.len());
            Statement::VExplain {
                kind,
                inner: sql[start..].trim().to_string(),
            }
        }
        "alter" if w(1, "vschema") => Statement::AlterVschema(
            crate::vschema::ddl::parse(sql).map_err(SqlError::VschemaSyntax)?,
        ),
        "update" => Statement::Query(QueryKind::Update),
        "prepare" | "execute" | "deallocate" | "drop" if prepared::starts(sql, &toks) => {
            prepared::read(sql, &toks)?
        }
        "delete" => Statement::Query(QueryKind::Delete),
        "begin" if toks.len() == 1 || (toks.len() == 2 && w(1, "work")) => Statement::Begin,
        "start" if w(1, "transaction") => Statement::Begin,
        "commit" if !toks.iter().any(|t| t.is_word(sql, "release")) => Statement::Commit,
        "rollback" if !toks.iter().any(|t| t.is_word(sql, "to")) => Statement::Rollback,
        "savepoint" | "rollback" | "release" => match savepoint_name(sql, &toks) {
            Some(name) if kw == "savepoint" => Statement::Savepoint(Savepoint::Set(name)),
            Some(name) if kw == "rollback" => Statement::Savepoint(Savepoint::RollbackTo(name)),
            Some(name) => Statement::Savepoint(Savepoint::Release(name)),
            None => Statement::Query(QueryKind::Other),
        },
        "use" => {
            let target = toks
                .get(1)
                .map(|t| unquote(t.text(sql)))
                .unwrap_or_default();
            let target = match toks.get(2) {
                // `use ks@replica` and `use ks:-80` arrive as several tokens.
                Some(t) if t.kind != TokenKind::Semicolon => {
                    let end = toks.last().map(|t| t.end).unwrap_or(sql.len());
                    unquote(sql[toks[1].start..end].trim()).to_string()
                }
                _ => target.to_string(),
            };
            Statement::Use(target)
        }
        "set" => Statement::Set(parse_set(sql, &toks[1..])?),
        "show" => {
            // What follows a SHOW the gate answers: `LIKE 'pattern'` or
            // nothing; anything else goes to a tablet, whose parser says
            // what is wrong with it.
            let words = toks
                .iter()
                .rposition(|t| t.kind != TokenKind::Semicolon)
                .map_or(0, |i| i + 1);
            let like = |at: usize| match toks[..words].get(at) {
                None => Ok(Some(None)),
                Some(t) if t.is_word(sql, "like") => Ok(toks
                    .get(at + 1)
                    .filter(|p| p.kind == TokenKind::Str && words == at + 2)
                    .map(|p| Some(string_literal(p.text(sql))))),
                Some(t) if t.is_word(sql, "where") => Err(SqlError::ShowWhere(
                    sql[toks[0].start..toks[at - 1].end].to_ascii_uppercase(),
                )),
                Some(_) => Ok(None),
            };
            let gate = |at: usize, make: fn(Option<String>) -> Statement| {
                Ok::<_, SqlError>(match like(at)? {
                    Some(pattern) => make(pattern),
                    None => Statement::Query(QueryKind::Show),
                })
            };
            if w(1, "databases") || w(1, "schemas") {
                gate(2, Statement::ShowDatabases)?
            } else if w(1, "keyspaces") {
                gate(2, Statement::ShowKeyspaces)?
            } else if w(1, "vitess_shards") {
                gate(2, Statement::ShowVitessShards)?
            } else if w(1, "vitess_tablets") {
                gate(2, Statement::ShowVitessTablets)?
            } else if w(1, "vitess_replication_status") {
                gate(2, Statement::ShowReplicationStatus)?
            } else if w(1, "vschema") && w(2, "keyspaces") {
                Statement::ShowVschemaKeyspaces
            } else if w(1, "vschema") && w(2, "tables") {
                Statement::ShowVschemaTables
            } else if w(1, "vschema") && w(2, "vindexes") {
                let on = toks
                    .get(3)
                    .is_some_and(|t| t.is_word(sql, "on") || t.is_word(sql, "from"));
                let name = |i: usize| {
                    toks.get(i)
                        .filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::Ident))
                        .map(|t| unquote(t.text(sql)).to_string())
                };
                let dotted = toks
                    .get(5)
                    .is_some_and(|d| d.kind == TokenKind::Punct(b'.'));
                match (on, name(4), dotted.then(|| name(6)).flatten()) {
                    (false, ..) => Statement::ShowVschemaVindexes(None),
                    (true, Some(q), Some(t)) => Statement::ShowVschemaVindexes(Some((Some(q), t))),
                    (true, Some(t), None) if !dotted => {
                        Statement::ShowVschemaVindexes(Some((None, t)))
                    }
                    // Not a table: the tablet's parser says what is wrong.
                    _ => Statement::Query(QueryKind::Show),
                }
            } else if w(1, "vitess_target") {
                Statement::ShowVitessTarget
            } else if w(1, "create") && (w(2, "database") || w(2, "schema")) {
                let if_not_exists = w(3, "if") && w(4, "not") && w(5, "exists");
                let at = if if_not_exists { 6 } else { 3 };
                match toks.get(at) {
                    Some(t) if matches!(t.kind, TokenKind::Word | TokenKind::Ident) => {
                        Statement::ShowCreateDatabase {
                            name: unquote(t.text(sql)).to_string(),
                            if_not_exists,
                        }
                    }
                    _ => Statement::Query(QueryKind::Show),
                }
            } else if w(1, "vitess_metadata") && w(2, "variables") {
                gate(3, Statement::ShowMetadata)?
            } else if w(1, "transaction") && w(2, "status") && w(3, "for") && toks.len() > 4 {
                let id = toks[4].text(sql).trim_matches(['\'', '"', '`']);
                Statement::ShowTransactions {
                    dtid: Some(id.to_string()),
                    keyspace: None,
                }
            } else if w(1, "unresolved") && w(2, "transactions") {
                let keyspace = w(3, "for")
                    .then(|| toks.get(4).map(|t| unquote(t.text(sql)).to_string()))
                    .flatten();
                Statement::ShowTransactions {
                    dtid: None,
                    keyspace,
                }
            } else {
                Statement::Query(QueryKind::Show)
            }
        }
        "create" | "drop" if w(1, "temporary") => Statement::Query(QueryKind::Reserving),
        "create" | "drop" | "alter" if w(1, "database") || w(1, "schema") => {
            let verb = match kw.as_str() {
                "create" => DatabaseVerb::Create,
                "drop" => DatabaseVerb::Drop,
                _ => DatabaseVerb::Alter,
            };
            database_ddl(sql, &toks, verb)
        }
        "lock" | "unlock" => Statement::Query(QueryKind::Reserving),
        "create" | "alter" | "drop" | "truncate" | "rename" => Statement::Query(QueryKind::Ddl),
        "describe" | "desc" | "explain" => Statement::Query(QueryKind::Show),
        "kill" => kill(sql, &toks)?,
        _ => Statement::Query(QueryKind::Other),
    };
    Ok(stmt)
}

/// `SELECT NEXT VALUE FROM [ks.]seq` or `SELECT NEXT n VALUES FROM
/// [ks.]seq` (vtgate's sequence statement); any other SELECT NEXT is
/// a plain SELECT (a column named `next`).
fn next_values(sql: &str, toks: &[Token]) -> Result<Statement, SqlError> {
    let toks: Vec<&Token> = toks
        .iter()
        .filter(|t| t.kind != TokenKind::Semicolon)
        .collect();
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| t.is_word(sql, w));
    let (count, from) = if word(2, "value") {
        (Some(1), 3)
    } else {
        let n = toks
            .get(2)
            .filter(|t| t.kind == TokenKind::Number)
            .and_then(|t| t.text(sql).parse::<u64>().ok());
        (n.filter(|_| word(3, "values")), 4)
    };
    let name = |i: usize| {
        toks.get(i)
            .filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::Ident))
            .map(|t| unquote(t.text(sql)).to_string())
    };
    let dotted = toks
        .get(from + 2)
        .is_some_and(|t| t.kind == TokenKind::Punct(b'.'));
    let (keyspace, table, end) = match (name(from + 1), dotted) {
        (Some(ks), true) => (Some(ks), name(from + 3), from + 4),
        (t, false) => (None, t, from + 2),
        (None, true) => (None, None, 0),
    };
    match (count, table) {
        (Some(count), Some(table)) if word(from, "from") && toks.len() == end && count > 0 => {
            Ok(Statement::NextValues {
                count,
                keyspace,
                table,
            })
        }
        _ => Ok(Statement::Query(QueryKind::Select)),
    }
}

/// Whether MySQL commits the open transaction before running `sql`,
/// besides a DDL ([`QueryKind::Ddl`]): table maintenance (ANALYZE,
/// OPTIMIZE, REPAIR, CHECK), FLUSH, GRANT and REVOKE, LOCK TABLES.
pub fn commits_implicitly(sql: &str) -> bool {
    let toks = tokenize(sql);
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    [
        "analyze", "optimize", "repair", "check", "flush", "grant", "revoke",
    ]
    .iter()
    .any(|k| w(0, k))
        || (w(0, "lock") && (w(1, "tables") || w(1, "table")))
}

/// `KILL [CONNECTION | QUERY] id`; MariaDB's other forms (HARD, SOFT,
/// `QUERY ID`, `USER`) name tablet threads or users shardgate does not
/// have.
fn kill(sql: &str, toks: &[Token]) -> Result<Statement, SqlError> {
    let bad = || SqlError::BadKill(sql.trim().to_string());
    let (connection, at) = match toks.get(1) {
        Some(t) if t.is_word(sql, "query") => (false, 2),
        Some(t) if t.is_word(sql, "connection") => (true, 2),
        _ => (true, 1),
    };
    let id = match &toks[at..] {
        [n]
        | [n, Token {
            kind: TokenKind::Semicolon,
            ..
        }] if n.kind == TokenKind::Number => n.text(sql).parse::<u64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    Ok(Statement::Kill { connection, id })
}

/// The byte offset in `sql` of a parser location (`line` and `column`
/// from 1, the column counted in characters), if `sql` has it.
pub fn offset_of(sql: &str, line: u64, column: u64) -> Option<usize> {
    let mut at = 0;
    for (n, text) in sql.split_inclusive('\n').enumerate() {
        if n as u64 + 1 == line {
            let (i, _) = text.char_indices().nth(column.checked_sub(1)? as usize)?;
            return Some(at + i);
        }
        at += text.len();
    }
    None
}

/// The items of a statement's outermost select list, each as written
/// (the text between its commas, alias included), for naming the columns
/// computed from them as MariaDB names them: by the client's own text,
/// not a rendering of it. None when the statement does not start with a
/// SELECT (or a WITH before one) or its list cannot be found.
pub fn select_items(sql: &str) -> Option<Vec<&str>> {
    const MODIFIERS: [&str; 10] = [
        "all",
        "distinct",
        "distinctrow",
        "high_priority",
        "straight_join",
        "sql_small_result",
        "sql_big_result",
        "sql_buffer_result",
        "sql_no_cache",
        "sql_calc_found_rows",
    ];
    const ENDS: [&str; 11] = [
        "from", "into", "where", "group", "having", "window", "order", "limit", "for", "lock",
        "union",
    ];
    let toks = tokenize(sql);
    let mut depth = 0usize;
    let mut start = None;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is_word(sql, "select") => {
                start = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let mut at = start?;
    while toks
        .get(at)
        .is_some_and(|t| MODIFIERS.iter().any(|m| t.is_word(sql, m)))
    {
        at += 1;
    }
    let mut items = Vec::new();
    let mut first = at;
    let mut end = toks.len();
    for (i, t) in toks.iter().enumerate().skip(at) {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth = depth.checked_sub(1)?,
            TokenKind::Punct(b',') if depth == 0 => {
                items.push(&sql[toks.get(first)?.start..toks[i.checked_sub(1)?].end]);
                first = i + 1;
            }
            TokenKind::Semicolon if depth == 0 => {
                end = i;
                break;
            }
            // `within group (order by ...)` is an item's; GROUP and ORDER
            // end the list only before BY.
            _ if depth == 0
                && ENDS.iter().any(|w| t.is_word(sql, w))
                && (!(t.is_word(sql, "group") || t.is_word(sql, "order"))
                    || toks.get(i + 1).is_some_and(|n| n.is_word(sql, "by"))) =>
            {
                end = i;
                break;
            }
            _ => {}
        }
    }
    if first >= end {
        return None;
    }
    items.push(&sql[toks[first].start..toks[end - 1].end]);
    Some(items)
}

/// What begins a transaction's part on each tablet: `None` for plain
/// `BEGIN` (or `START TRANSACTION`), or `START TRANSACTION` with the
/// characteristics the client gave (`READ ONLY`, `READ WRITE`, `WITH
/// CONSISTENT SNAPSHOT`), which the tablets must honour: a read-only
/// transaction's writes fail there (1792) as they would on one server.
pub fn begin_characteristics(sql: &str) -> Result<Option<String>, SqlError> {
    let toks = tokenize(sql);
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    let end = match toks.last() {
        Some(t) if t.kind == TokenKind::Semicolon => toks.len() - 1,
        _ => toks.len(),
    };
    if !(w(0, "start") && w(1, "transaction")) || end == 2 {
        return Ok(None);
    }
    let mut kept = Vec::new();
    let mut at = 2;
    while at < end {
        let piece = if w(at, "read") && w(at + 1, "only") {
            "READ ONLY"
        } else if w(at, "read") && w(at + 1, "write") {
            "READ WRITE"
        } else if w(at, "with") && w(at + 1, "consistent") && w(at + 2, "snapshot") {
            "WITH CONSISTENT SNAPSHOT"
        } else {
            return Err(SqlError::BadBegin(sql[toks[at].start..].to_string()));
        };
        kept.push(piece);
        at += if piece.starts_with("WITH") { 3 } else { 2 };
        if at < end && toks[at].kind != TokenKind::Punct(b',') || at + 1 == end {
            return Err(SqlError::BadBegin(sql[toks[at].start..].to_string()));
        }
        at += 1;
    }
    Ok(Some(format!("START TRANSACTION {}", kept.join(", "))))
}

/// A SHOW that names its database with `FROM db` (`SHOW [FULL] TABLES
/// FROM db`, `SHOW TABLE STATUS FROM db`, `SHOW TRIGGERS FROM db`, `SHOW
/// {COLUMNS | INDEX | KEYS ...} FROM t FROM db`): the database named, and
/// the statement without its `FROM db`. A keyspace's tablet answers for
/// its own database, under the keyspace's name, as vtgate shows them
/// (ORMs ask `SHOW INDEXES FROM t FROM db WHERE ...` of their database).
pub fn show_from_database(sql: &str) -> Option<(String, String)> {
    let toks = tokenize(sql);
    let w = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    let from = |i: usize| w(i, "from") || w(i, "in");
    if !w(0, "show") {
        return None;
    }
    let mut at = 1;
    while w(at, "full") || w(at, "extended") {
        at += 1;
    }
    let from_at = if w(at, "tables") || w(at, "triggers") || w(at, "events") {
        at + 1
    } else if w(at, "table") && w(at + 1, "status") {
        at + 2
    } else if ["columns", "fields", "index", "indexes", "keys"]
        .iter()
        .any(|kw| w(at, kw))
        && from(at + 1)
    {
        at + 3
    } else {
        return None;
    };
    if !from(from_at) {
        return None;
    }
    let name = toks.get(from_at + 1)?;
    if !matches!(name.kind, TokenKind::Word | TokenKind::Ident) {
        return None;
    }
    let stripped = format!("{}{}", &sql[..toks[from_at].start], &sql[name.end..]);
    Some((unquote(name.text(sql)).to_string(), stripped))
}

/// `SHOW TABLES ... WHERE Tables_in_ks = ...` with the tablet's column
/// name, `Tables_in_{db}`, for each `Tables_in_{keyspace}` it names
/// (ORMs ask whether a table exists this way); `None` when it names none.
/// The answer's column is renamed back to the keyspace's on the way up.
pub fn tables_in_renamed(sql: &str, keyspace: &str, db: &str) -> Option<String> {
    let column = format!("Tables_in_{keyspace}");
    let mut out = String::new();
    let mut copied = 0;
    for t in tokenize(sql) {
        let named = matches!(t.kind, TokenKind::Word | TokenKind::Ident)
            && unquote(t.text(sql)).eq_ignore_ascii_case(&column);
        if named {
            out.push_str(&sql[copied..t.start]);
            out.push_str(&quote_ident(&format!("Tables_in_{db}")));
            copied = t.end;
        }
    }
    (copied > 0).then(|| out + &sql[copied..])
}

/// What a statement's `/*vt+ ... */` comment asks of the gate, as vtgate
/// reads its comment directives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `QUERY_TIMEOUT_MS=n`: this statement's timeout, over the session's
    /// and `--query-timeout`.
    pub query_timeout_ms: Option<u64>,
    /// `ALLOW_SCATTER`: it may read every shard under `--no_scatter`.
    pub allow_scatter: bool,
    /// `IGNORE_MAX_MEMORY_ROWS`: it may hold more rows at the gate than
    /// `--max_memory_rows`.
    pub ignore_max_memory_rows: bool,
    /// `MULTI_SHARD_AUTOCOMMIT`: outside a transaction, its writes on
    /// several shards commit on each shard alone (no transaction around
    /// them: cheaper, and one shard's failure leaves the others' writes).
    pub multi_shard_autocommit: bool,
    /// `IGNORE_MAX_PAYLOAD_SIZE`: it may be longer than `--max_payload_size`.
    pub ignore_max_payload_size: bool,
}

/// The statement's directives; one substring search when it has none.
pub fn directives(sql: &str) -> Directives {
    let mut d = Directives::default();
    let Some(at) = memchr::memmem::find(sql.as_bytes(), b"/*vt+") else {
        return d;
    };
    let body = &sql[at + 5..];
    let Some(end) = body.find("*/") else {
        return d;
    };
    for word in body[..end].split_ascii_whitespace() {
        let (name, value) = word.split_once('=').unwrap_or((word, ""));
        if name.eq_ignore_ascii_case("query_timeout_ms") {
            d.query_timeout_ms = value.trim_matches(['\'', '"']).parse().ok();
        } else if name.eq_ignore_ascii_case("allow_scatter") {
            d.allow_scatter = true;
        } else if name.eq_ignore_ascii_case("ignore_max_memory_rows") {
            d.ignore_max_memory_rows = true;
        } else if name.eq_ignore_ascii_case("multi_shard_autocommit") {
            d.multi_shard_autocommit = true;
        } else if name.eq_ignore_ascii_case("ignore_max_payload_size") {
            d.ignore_max_payload_size = true;
        }
    }
    d
}

/// `sql` without vtgate's vindex hints (`t USE VINDEX (v)`, `IGNORE
/// VINDEX (v, w)`, `FORCE VINDEX (v)`), which neither the parser nor
/// MariaDB knows; None when it has none (one substring search in each
/// case, the common one). The hints only steer vtgate's choice among a
/// table's vindexes; the planner picks the best one anyway, and the rows
/// are the same.
pub fn strip_vindex_hints(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    if memchr::memmem::find(b, b"vindex").is_none() && memchr::memmem::find(b, b"VINDEX").is_none()
    {
        return None;
    }
    let toks = lexer::tokenize(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 2 < toks.len() {
        let hint = ["use", "ignore", "force"]
            .iter()
            .any(|w| toks[i].is_word(sql, w))
            && toks[i + 1].is_word(sql, "vindex")
            && toks[i + 2].kind == lexer::TokenKind::Punct(b'(');
        let close = toks[i + 2..]
            .iter()
            .position(|t| t.kind == lexer::TokenKind::Punct(b')'))
            .map(|p| i + 2 + p);
        match close.filter(|_| hint) {
            Some(c) => {
                out.push_str(sql[copied..toks[i].start].trim_end());
                copied = toks[c].end;
                i = c + 1;
            }
            None => i += 1,
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// A string literal's value: its quotes off and MySQL's escapes
/// (`\\'`, `''`, `\\n`, ...) undone. An unterminated literal (the lexer
/// ends it at the end of the text) loses its last character.
pub fn string_literal(text: &str) -> String {
    let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(other) => out.push(other),
                None => {}
            },
            '\'' | '"' if chars.peek() == Some(&c) => {
                chars.next();
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// SQL's `text LIKE pattern`: `%` any run, `_` one character, `\\`
/// escapes; ASCII letters match either case, as MySQL's default collation.
/// Why here: the SHOW statements the gate answers itself filter by it.
pub fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Where to resume after the last `%`: (pattern index, text index).
    let (mut pi, mut ti, mut star) = (0, 0, None::<(usize, usize)>);
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('%') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('_') => Some(1),
            Some('\\') if pi + 1 < p.len() => p[pi + 1].eq_ignore_ascii_case(&t[ti]).then_some(2),
            Some(c) => c.eq_ignore_ascii_case(&t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('`')
        .and_then(|s| s.strip_suffix('`'))
        .unwrap_or(s)
}

fn parse_set(sql: &str, toks: &[Token]) -> Result<SetStmt, SqlError> {
    let mut out = SetStmt::default();
    let mut kept: Vec<&str> = Vec::new();
    let mut sys_vars: Option<Vec<String>> = Some(Vec::new());
    let mut constant = true;
    let (mut queried, mut reads) = (Some((Vec::new(), Vec::new())), false);
    for part in lexer::top_level_parts(toks) {
        let Some(first) = part.first() else { continue };
        let mut name_idx = 0;
        if first.is_word(sql, "global")
            || first
                .text(sql)
                .to_ascii_lowercase()
                .starts_with("@@global.")
        {
            out.global = true;
        }
        if first.is_word(sql, "session")
            || first.is_word(sql, "local")
            || first.is_word(sql, "global")
        {
            name_idx = 1;
        }
        let name = part
            .get(name_idx)
            .map(|t| t.text(sql).to_ascii_lowercase())
            .unwrap_or_default();
        let bare = name
            .trim_start_matches("@@")
            .trim_start_matches("session.")
            .trim_start_matches("local.");
        let value_token = || {
            part.iter()
                .skip(name_idx + 1)
                .find(|t| !matches!(t.kind, TokenKind::Punct(b'=') | TokenKind::Punct(b':')))
        };
        let value = || {
            value_token()
                .map(|t| t.text(sql).trim_matches(['\'', '"']).to_ascii_lowercase())
                .unwrap_or_default()
        };
        // The value as written: a string's without quotes or escapes.
        let raw_value = || {
            value_token()
                .map(|t| match t.kind {
                    TokenKind::Str => string_literal(t.text(sql)),
                    _ => unquote(t.text(sql)).to_string(),
                })
                .unwrap_or_default()
        };
        if bare == "transaction_mode" && !out.global {
            out.transaction_mode = Some(value());
        } else if bare == "query_timeout" && !out.global {
            let val = value();
            out.query_timeout = Some(val.parse().map_err(|_| SqlError::BadQueryTimeout(val))?);
        } else if let Some(key) = bare.strip_prefix("vitess_metadata.") {
            let value = raw_value();
            let key_text = &sql[part[name_idx].start..part[name_idx].end];
            let key = key_text.get(key_text.len() - key.len()..).unwrap_or(key);
            if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(SqlError::BadVitessValue {
                    name: "vitess_metadata",
                    value: key.to_string(),
                });
            }
            out.metadata.push((key.to_string(), value));
        } else if let Some(&(known, ..)) = VITESS_VARS
            .iter()
            .find(|(n, ..)| *n == bare)
            .filter(|_| !out.global)
        {
            // A count may come with its sign (`-1`): all of the value.
            let raw = match known {
                "sql_select_limit" => part
                    .iter()
                    .skip(name_idx + 1)
                    .skip_while(|t| matches!(t.kind, TokenKind::Punct(b'=' | b':')))
                    .map(|t| match t.kind {
                        TokenKind::Str => string_literal(t.text(sql)),
                        _ => t.text(sql).to_string(),
                    })
                    .collect::<String>(),
                _ => raw_value(),
            };
            out.vitess.push((known, vitess_value(known, &raw)?));
        } else if bare == "autocommit" && !out.global {
            let val = value();
            // `on` may come backquoted, and DEFAULT is MySQL's default, on.
            out.autocommit = Some(match val.trim_matches('`') {
                "1" | "on" | "true" | "default" => true,
                "0" | "off" | "false" => false,
                _ => return Err(SqlError::BadAutocommit(val)),
            });
        } else if let (Some(a), Some(b)) = (part.first(), part.last()) {
            kept.push(&sql[a.start..b.end]);
            let value = part[name_idx + 1..]
                .iter()
                .position(|t| !matches!(t.kind, TokenKind::Punct(b'=' | b':')))
                .map(|at| &part[name_idx + 1 + at..]);
            match (value, &mut queried) {
                (Some(v), Some((values, vars)))
                    if name.starts_with('@') && !name.starts_with("@@") =>
                {
                    reads = reads || v.iter().any(|t| t.is_word(sql, "select"));
                    let end = v
                        .iter()
                        .rfind(|t| t.kind != TokenKind::Semicolon)
                        .map_or(b.end, |t| t.end);
                    values.push(sql[v[0].start..end].to_string());
                    vars.push(sql[a.start..a.end].to_string());
                }
                _ => queried = None,
            }
            constant = constant && literal_values(sql, &part[name_idx + 1..]);
            let assigns = part
                .get(name_idx + 1)
                .is_some_and(|t| matches!(t.kind, TokenKind::Punct(b'=' | b':')));
            let plain = !name.starts_with('@') || name.starts_with("@@");
            let named =
                !bare.is_empty() && bare.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            match (&mut sys_vars, bare) {
                (Some(vars), "names" | "charset") => {
                    vars.extend(CHARSET_VARS.iter().map(|v| v.to_string()))
                }
                (Some(vars), "character")
                    if part
                        .get(name_idx + 1)
                        .is_some_and(|t| t.is_word(sql, "set")) =>
                {
                    vars.extend(CHARSET_VARS.iter().map(|v| v.to_string()))
                }
                (Some(vars), _) if assigns && plain && named => vars.push(bare.to_string()),
                _ => sys_vars = None,
            }
        }
    }
    if !kept.is_empty() {
        out.rest = Some(format!("SET {}", kept.join(", ")));
        out.sys_vars = sys_vars;
        out.constant = constant;
        out.queried = queried.filter(|_| reads);
    }
    Ok(out)
}

/// Whether an assignment's tokens after the variable's name hold only
/// literals: `=`, strings, numbers, signs, and bare words other than the
/// functions MySQL lets a statement call without parentheses.
fn literal_values(sql: &str, toks: &[Token]) -> bool {
    const NILADIC: [&str; 10] = [
        "current_date",
        "current_time",
        "current_timestamp",
        "current_user",
        "current_role",
        "localtime",
        "localtimestamp",
        "utc_date",
        "utc_time",
        "utc_timestamp",
    ];
    !toks.is_empty()
        && toks.iter().all(|t| match t.kind {
            TokenKind::Str | TokenKind::Number => true,
            TokenKind::Punct(b'=' | b':' | b'-' | b'+' | b'.') => true,
            TokenKind::Word => !NILADIC.iter().any(|f| t.is_word(sql, f)),
            _ => false,
        })
}

/// Which tablets a session's statements go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TabletType {
    /// The shard's primary (reads and writes).
    #[default]
    Primary,
    /// A replica (serving reads, may be promoted).
    Replica,
    /// A read-only replica for analytics.
    Rdonly,
}

impl TabletType {
    /// Parses Vitess's names (`master` is the old name of `primary`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "primary" | "master" => Some(Self::Primary),
            "replica" => Some(Self::Replica),
            "rdonly" | "batch" => Some(Self::Rdonly),
            _ => None,
        }
    }

    /// Lower-case name as Vitess prints it in targets.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Rdonly => "rdonly",
        }
    }
}

/// A session's target: `ks`, `ks@replica`, `ks:-80`, `ks[-80]@rdonly`, or none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The keyspace, if one is selected.
    pub keyspace: Option<String>,
    /// An explicit shard, which bypasses the planner.
    pub shard: Option<String>,
    /// The tablet type reads go to.
    pub tablet_type: TabletType,
}

impl Target {
    /// Parses a target string as vtgate accepts it in `USE` and the connection's database.
    pub fn parse(s: &str) -> Result<Self, SqlError> {
        let s = s.trim();
        let (rest, tablet_type) = match s.rsplit_once('@') {
            Some((r, t)) => (
                r,
                TabletType::parse(t).ok_or_else(|| SqlError::BadTarget(s.to_string()))?,
            ),
            None => (s, TabletType::Primary),
        };
        let (ks, shard) = if let Some((k, sh)) = rest.split_once(':') {
            (k, Some(sh.to_string()))
        } else if let Some((k, sh)) = rest.split_once('[') {
            let sh = sh
                .strip_suffix(']')
                .ok_or_else(|| SqlError::BadTarget(s.to_string()))?;
            (k, Some(sh.to_string()))
        } else {
            (rest, None)
        };
        Ok(Target {
            keyspace: (!ks.is_empty()).then(|| ks.to_string()),
            shard,
            tablet_type,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.keyspace.as_deref().unwrap_or(""))?;
        if let Some(sh) = &self.shard {
            write!(f, ":{sh}")?;
        }
        if self.tablet_type != TabletType::Primary {
            write!(f, "@{}", self.tablet_type.as_str())?;
        }
        Ok(())
    }
}

/// Values the session knows better than any one backend connection.
pub struct SessionValues<'a> {
    /// What `DATABASE()` returns: the keyspace name, never `vt_...`.
    pub database: Option<&'a str>,
    /// What `LAST_INSERT_ID()` returns for this client.
    pub last_insert_id: u64,
    /// What `ROW_COUNT()` returns for this client.
    pub row_count: i64,
    /// What `FOUND_ROWS()` returns, when the gate counted it (after a
    /// `SELECT SQL_CALC_FOUND_ROWS` over shards); None: the tablet's.
    pub found_rows: Option<u64>,
    /// What `@@transaction_mode` returns: the session's (vtgate's names).
    pub transaction_mode: &'static str,
    /// What `@@query_timeout` returns: the session's, in milliseconds.
    pub query_timeout: u64,
    /// vtgate's session variables the session has set ([`VITESS_VARS`]
    /// gives the others' defaults).
    pub vitess: &'a [(&'static str, String)],
}

/// Whether `hay` holds `needle` (ASCII), in any case: the statement
/// path's cheap test before tokenizing, so it looks for the needle's first
/// letter a word at a time.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), h).any(|i| {
        h.get(i + 1..i + 1 + rest.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    })
}

/// Rewrites the session functions a pooled backend connection cannot answer
/// for this client (`DATABASE()`, `SCHEMA()`, `LAST_INSERT_ID()`, `ROW_COUNT()`, `@@socket`,
/// vtgate's `@@transaction_mode`) into literals, keeping the column name the client expects. Returns None
/// when nothing needed rewriting (the common case, checked without tokenizing).
pub fn rewrite_session_values(sql: &str, vals: &SessionValues<'_>) -> Option<String> {
    let lower_has = |needle: &str| contains_ci(sql, needle);
    if !(lower_has("database")
        || lower_has("schema")
        || lower_has("last_insert_id")
        || lower_has("row_count")
        || (vals.found_rows.is_some() && lower_has("found_rows"))
        || (sql.contains("@@")
            && (lower_has("@@socket")
                || lower_has("transaction_mode")
                || lower_has("query_timeout")
                || VITESS_VARS.iter().any(|(n, ..)| lower_has(n)))))
    {
        return None;
    }
    let toks = tokenize(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let is_call = |name: &str| {
            t.is_word(sql, name)
                && toks.get(i + 1).map(|t| t.kind) == Some(TokenKind::Punct(b'('))
                && toks.get(i + 2).map(|t| t.kind) == Some(TokenKind::Punct(b')'))
        };
        let (literal, last) = if is_call("database") || is_call("schema") {
            let lit = match vals.database {
                Some(db) => quote_str(db),
                None => "NULL".to_string(),
            };
            (lit, i + 2)
        } else if is_call("last_insert_id") {
            (vals.last_insert_id.to_string(), i + 2)
        } else if is_call("row_count") {
            (vals.row_count.to_string(), i + 2)
        } else if let Some(n) = vals.found_rows.filter(|_| is_call("found_rows")) {
            (n.to_string(), i + 2)
        } else if t.kind == TokenKind::Variable && t.text(sql).eq_ignore_ascii_case("@@socket") {
            ("NULL".to_string(), i)
        } else if t.kind == TokenKind::Variable
            && (t.text(sql).eq_ignore_ascii_case("@@transaction_mode")
                || t.text(sql)
                    .eq_ignore_ascii_case("@@session.transaction_mode"))
        {
            (quote_str(vals.transaction_mode), i)
        } else if t.kind == TokenKind::Variable
            && (t.text(sql).eq_ignore_ascii_case("@@query_timeout")
                || t.text(sql).eq_ignore_ascii_case("@@session.query_timeout"))
        {
            (vals.query_timeout.to_string(), i)
        } else if let Some((name, default, number)) = (t.kind == TokenKind::Variable)
            .then(|| vitess_var(t.text(sql)))
            .flatten()
        {
            let set = vals.vitess.iter().find(|(n, _)| *n == name);
            let value = set.map_or(default, |(_, v)| v.as_str());
            match number {
                true => (value.to_string(), i),
                false => (quote_str(value), i),
            }
        } else {
            i += 1;
            continue;
        };
        out.push_str(&sql[copied..t.start]);
        out.push_str(&literal);
        let orig = &sql[t.start..toks[last].end];
        if needs_alias(sql, &toks, i, last) {
            out.push_str(" AS `");
            out.push_str(&orig.replace('`', "``"));
            out.push('`');
        }
        copied = toks[last].end;
        changed = true;
        i = last + 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// The [`VITESS_VARS`] entry a `@@name` (or `@@session.name`) reads.
fn vitess_var(text: &str) -> Option<(&'static str, &'static str, bool)> {
    let lower = text.to_ascii_lowercase();
    let bare = lower.strip_prefix("@@")?;
    let bare = bare.strip_prefix("session.").unwrap_or(bare);
    VITESS_VARS.iter().find(|(n, ..)| *n == bare).copied()
}

/// True when the expression spanning tokens first..=last stands alone in a
/// select list, so replacing it must keep its original column name.
fn needs_alias(sql: &str, toks: &[Token], first: usize, last: usize) -> bool {
    // A select list's item: at the top, or first inside a subquery's
    // parenthesis, never inside a VALUES row or a call's arguments.
    let mut open: Vec<usize> = Vec::new();
    for (i, t) in toks[..first].iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b'(') => open.push(i),
            TokenKind::Punct(b')') => {
                open.pop();
            }
            _ => {}
        }
    }
    let listed = open
        .last()
        .is_none_or(|&p| toks.get(p + 1).is_some_and(|t| t.is_word(sql, "select")));
    let prev_ok = listed
        && first > 0
        && (toks[first - 1].is_word(sql, "select")
            || toks[first - 1].is_word(sql, "distinct")
            || toks[first - 1].kind == TokenKind::Punct(b','));
    let next_ok = match toks.get(last + 1) {
        None => true,
        Some(t) => {
            matches!(t.kind, TokenKind::Punct(b',') | TokenKind::Semicolon)
                || [
                    "from", "limit", "where", "order", "group", "having", "into", "union", "for",
                ]
                .iter()
                .any(|k| t.is_word(sql, k))
        }
    };
    prev_ok && next_ok
}

/// Whether `sql` starts with the word SELECT (after leading whitespace; a
/// comment first says no): a test without tokenizing, for the hot path.
pub fn starts_with_select(sql: &str) -> bool {
    let s = sql.trim_start().as_bytes();
    s.len() > 6 && s[..6].eq_ignore_ascii_case(b"select") && !lexer::is_word_byte(s[6])
}

/// The statement's first word, lower-cased (comments before it skipped),
/// for the few statements routed by their first word alone.
pub fn first_word(sql: &str) -> Option<String> {
    tokenize(sql)
        .first()
        .filter(|t| t.kind == TokenKind::Word)
        .map(|t| t.text(sql).to_ascii_lowercase())
}

/// Whether a word makes its SELECT read or leave state on its connection
/// (the last statement's counters, the connection's id, locks,
/// sequences), or hold its connection for long on purpose.
fn connection_bound(w: &[u8]) -> bool {
    // By length first: most words of a statement are not checked at all.
    let words: &[&[u8]] = match w.len() {
        3 => &[b"for"],
        4 => &[b"into", b"lock"],
        5 => &[b"sleep"],
        6 => &[b"setval"],
        7 => &[b"nextval", b"lastval"],
        8 => &[b"get_lock"],
        9 => &[b"row_count", b"benchmark"],
        10 => &[b"found_rows"],
        12 => &[b"release_lock"],
        13 => &[b"connection_id"],
        14 => &[b"last_insert_id"],
        17 => &[b"release_all_locks"],
        _ => return false,
    };
    words.iter().any(|k| w.eq_ignore_ascii_case(k))
}

/// Whether a word may come right before `(` in a SELECT that writes
/// nowhere: a keyword, or a built-in function. Anything else there may be
/// a stored function, which can write. `w` is lowercase.
#[rustfmt::skip]
fn not_stored(w: &[u8]) -> bool {
    matches!(
        w,
        b"select" | b"from" | b"where" | b"and" | b"or" | b"not" | b"in" | b"exists" | b"on" |
        b"using" | b"join" | b"as" | b"when" | b"then" | b"else" | b"case" | b"values" |
        b"any" | b"all" | b"some" | b"by" | b"over" | b"distinct" | b"union" | b"xor" |
        b"div" | b"mod" | b"like" | b"between" | b"is" | b"having" | b"row" | b"interval" |
        b"count" | b"sum" | b"min" | b"max" | b"avg" | b"group_concat" | b"bit_and" |
        b"bit_or" | b"bit_xor" | b"std" | b"stddev" | b"stddev_pop" | b"stddev_samp" |
        b"var_pop" | b"var_samp" | b"variance" | b"abs" | b"ceil" | b"ceiling" | b"floor" |
        b"round" | b"truncate" | b"sign" | b"sqrt" | b"pow" | b"power" | b"exp" | b"ln" |
        b"log" | b"log2" | b"log10" | b"greatest" | b"least" | b"coalesce" | b"ifnull" |
        b"nullif" | b"if" | b"isnull" | b"concat" | b"concat_ws" | b"substr" | b"substring" |
        b"substring_index" | b"left" | b"right" | b"length" | b"char_length" |
        b"character_length" | b"octet_length" | b"lower" | b"upper" | b"lcase" | b"ucase" |
        b"trim" | b"ltrim" | b"rtrim" | b"replace" | b"repeat" | b"reverse" | b"lpad" |
        b"rpad" | b"locate" | b"instr" | b"position" | b"cast" | b"convert" | b"date" |
        b"time" | b"timestamp" | b"year" | b"month" | b"day" | b"dayofmonth" | b"dayofweek" |
        b"dayofyear" | b"hour" | b"minute" | b"second" | b"week" | b"weekday" | b"quarter" |
        b"now" | b"curdate" | b"curtime" | b"current_date" | b"current_time" |
        b"current_timestamp" | b"utc_timestamp" | b"unix_timestamp" | b"from_unixtime" |
        b"date_format" | b"str_to_date" | b"date_add" | b"date_sub" | b"adddate" | b"subdate" |
        b"datediff" | b"timediff" | b"timestampdiff" | b"timestampadd" | b"last_day" | b"hex" |
        b"unhex" | b"md5" | b"sha1" | b"sha2" | b"crc32" | b"json_extract" | b"json_unquote" |
        b"json_value" | b"json_contains" | b"json_length" | b"weight_string" | b"char" |
        b"ascii" | b"field" | b"find_in_set" | b"format" | b"strcmp"
    )
}

/// The byte classes the scans below need, one table lookup per byte.
const WORD: u8 = 1;
const SPACE: u8 = 2;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if lexer::is_word_byte(c) {
            t[i] = WORD;
        } else if c.is_ascii_whitespace() {
            t[i] = SPACE;
        }
        i += 1;
    }
    t
};

/// One pass over a SELECT's bytes: false when a variable (`@`), a second
/// statement (`;`) or a [`connection_bound`] word appears anywhere
/// (strings and comments too: `/*!` runs what it holds; a false alarm
/// only costs the fast path), or, with `calls`, a `(` follows a word that
/// is not [`not_stored`], a qualified name or a quoted one, or a comment
/// appears.
fn scan_select(sql: &str, calls: bool) -> bool {
    if !starts_with_select(sql) {
        return false;
    }
    let b = sql.as_bytes();
    // The word just before (only spaces since), and the byte before it.
    let mut last_word: Option<(usize, usize)> = None;
    let mut before_gap = 0u8;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match CLASS[usize::from(c)] {
            WORD => {
                let start = i;
                while i < b.len() && CLASS[usize::from(b[i])] == WORD {
                    i += 1;
                }
                if connection_bound(&b[start..i]) {
                    return false;
                }
                last_word = Some((start, i));
                continue;
            }
            SPACE => {}
            _ => {
                if c == b'@' || c == b';' {
                    return false;
                }
                if calls {
                    // A comment may hide a stored function's name from
                    // its `(`.
                    let next = b.get(i + 1).copied();
                    let comment = c == b'#'
                        || (c == b'-' && next == Some(b'-'))
                        || (c == b'/' && next == Some(b'*'));
                    if comment || (c == b'(' && !call_allowed(b, last_word, before_gap)) {
                        return false;
                    }
                }
                last_word = None;
                before_gap = c;
            }
        }
        i += 1;
    }
    true
}

/// Whether the `(` after `last_word` (or, with none, after the byte
/// `before`) opens a grouping or a built-in function's arguments.
fn call_allowed(b: &[u8], last_word: Option<(usize, usize)>, before: u8) -> bool {
    let Some((start, end)) = last_word else {
        // Grouping, a subquery, a tuple; a quoted name is a stored function.
        return before != b'`';
    };
    let qualified = start > 0 && matches!(b[start - 1], b'.' | b'`');
    let w = &b[start..end];
    let mut lower = [0u8; 24];
    if qualified || w.len() > lower.len() {
        return false;
    }
    for (d, s) in lower.iter_mut().zip(w) {
        *d = s.to_ascii_lowercase();
    }
    not_stored(&lower[..w.len()])
}

/// Whether a SELECT may run on a connection other sessions share (see
/// `backend::mux`): it assigns and reads no variables, takes no locks,
/// writes nowhere (`INTO`) and asks nothing about the connection's past.
/// Words are looked for everywhere, in strings and comments too (`/*!`
/// runs what it holds): a false alarm only keeps a read on the session's
/// own connection. A byte scan, cheap enough for every statement.
pub fn shareable_read(sql: &str) -> bool {
    scan_select(sql, false)
}

/// Session variables a connection takes from the server's globals when it
/// opens and that no statement changes as a side effect: what connectors
/// ask at connect (mysql_async's `@@max_allowed_packet,@@wait_timeout`,
/// Connector/J's long list). Sorted, for the binary search.
const DEFAULTS: [&str; 33] = [
    "auto_increment_increment",
    "auto_increment_offset",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "character_set_server",
    "collation_connection",
    "collation_server",
    "default_storage_engine",
    "div_precision_increment",
    "group_concat_max_len",
    "init_connect",
    "innodb_lock_wait_timeout",
    "interactive_timeout",
    "license",
    "lock_wait_timeout",
    "lower_case_table_names",
    "max_allowed_packet",
    "max_statement_time",
    "net_buffer_length",
    "net_read_timeout",
    "net_write_timeout",
    "performance_schema",
    "query_cache_size",
    "query_cache_type",
    "sql_mode",
    "system_time_zone",
    "time_zone",
    "transaction_isolation",
    "tx_isolation",
    "version",
    "version_comment",
    "wait_timeout",
];

/// Whether a statement is `SELECT @@a[, @@b ...] [FROM DUAL]` over
/// `DEFAULTS` only (session scope, each with an optional alias): the
/// reads connectors send at every connect (after a comment, as
/// Connector/J sends its own). On a connection that carries
/// a session's settings (or none) its answer is the same on every
/// connection opened alike, so it may share one, and its answer may be
/// kept for a moment for sessions with those settings
/// (`backend::defaults`). Executable
/// comments refuse it; global scope too (`@@global.x` changes under a
/// connection, a session's `@@x` does not).
pub fn reads_defaults(sql: &str) -> bool {
    // Cheap refusal for everything else (this is asked of every text
    // read that may not share otherwise). Connector/J's query opens
    // with a comment.
    let mut body = sql.trim_start();
    while let Some(rest) = body.strip_prefix("/*") {
        let Some(end) = rest.find("*/") else {
            return false;
        };
        body = rest[end + 2..].trim_start();
    }
    if !starts_with_select(body) || !body[6..].trim_start().starts_with("@@") {
        return false;
    }
    if sql.contains("/*!") || sql.contains("/*M!") {
        return false;
    }
    let toks = tokenize(sql);
    let mut i = 1;
    loop {
        let Some(t) = toks.get(i).filter(|t| t.kind == TokenKind::Variable) else {
            return false;
        };
        let v = t.text(sql).to_ascii_lowercase();
        let Some(name) = v.strip_prefix("@@") else {
            return false;
        };
        let name = ["session.", "local."]
            .iter()
            .find_map(|scope| name.strip_prefix(scope))
            .unwrap_or(name);
        if DEFAULTS.binary_search(&name).is_err() {
            return false;
        }
        i += 1;
        // An alias: `AS name`, or a bare name that is not the FROM.
        let alias =
            |t: &Token| matches!(t.kind, TokenKind::Word | TokenKind::Ident | TokenKind::Str);
        match toks.get(i) {
            Some(t) if t.is_word(sql, "as") => {
                if !toks.get(i + 1).is_some_and(alias) {
                    return false;
                }
                i += 2;
            }
            Some(t) if alias(t) && !t.is_word(sql, "from") => i += 1,
            _ => {}
        }
        match toks.get(i) {
            Some(t) if t.kind == TokenKind::Punct(b',') => i += 1,
            _ => break,
        }
    }
    match &toks[i..] {
        [] => true,
        [t] => t.kind == TokenKind::Semicolon,
        [f, d, rest @ ..] => {
            f.is_word(sql, "from")
                && d.is_word(sql, "dual")
                && matches!(
                    rest,
                    [] | [Token {
                        kind: TokenKind::Semicolon,
                        ..
                    }]
                )
        }
    }
}

/// Whether a SELECT writes nowhere: [`shareable_read`], and every `(`
/// follows a keyword, a built-in function or no word at all (a stored
/// function, which may write, is any other name, or one qualified by a
/// database or quoted). A transaction of such reads commits without a
/// round trip. A false alarm (a name inside a string) only makes its
/// COMMIT wait.
pub fn writes_nowhere(sql: &str) -> bool {
    scan_select(sql, true)
}

/// Whether a statement asks for the last statement's diagnostics:
/// `SHOW WARNINGS`, `SHOW ERRORS`, their `COUNT(*)` forms, or
/// `@@warning_count` / `@@error_count`.
pub fn asks_diagnostics(sql: &str) -> bool {
    let toks = tokenize(sql);
    let word = |i: usize, kw: &str| toks.get(i).is_some_and(|t| t.is_word(sql, kw));
    let diag = |i: usize| word(i, "warnings") || word(i, "errors");
    (word(0, "show") && (diag(1) || (word(1, "count") && diag(5))))
        || toks.iter().any(|t| {
            t.kind == TokenKind::Variable && {
                let v = t.text(sql).to_ascii_lowercase();
                v.ends_with("warning_count") || v.ends_with("error_count")
            }
        })
}

/// The literals of `SELECT 1[, 2, ...] [FROM DUAL]`, the validation query
/// of connection pools, which vtgate answers itself (a projection over a
/// single row) without a round trip to a tablet. Only plain non-negative
/// integers of up to nine digits qualify (MariaDB types those as INT, the
/// digits as display width); anything else, comments included (`/*!`
/// runs code), goes to a tablet as before.
pub fn literal_select(sql: &str) -> Option<Vec<&str>> {
    if !starts_with_select(sql) {
        return None;
    }
    // Cheap refusal for everything else that starts with SELECT (before
    // the scan for comments).
    let after = sql.trim_start()[6..].trim_start();
    if !after.starts_with(|c: char| c.is_ascii_digit()) || sql.contains("/*") {
        return None;
    }
    let toks = tokenize(sql);
    let word =
        |t: &Token, w: &str| t.kind == TokenKind::Word && t.text(sql).eq_ignore_ascii_case(w);
    let mut lits = Vec::new();
    let mut i = 1;
    loop {
        let t = toks.get(i)?;
        let text = t.text(sql);
        let plain = t.kind == TokenKind::Number
            && (1..=9).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if !plain {
            return None;
        }
        lits.push(text);
        i += 1;
        match toks.get(i) {
            Some(t) if t.kind == TokenKind::Punct(b',') => i += 1,
            _ => break,
        }
    }
    let rest = &toks[i..];
    let rest = match rest {
        [f, d, tail @ ..] if word(f, "from") && word(d, "dual") => tail,
        other => other,
    };
    match rest {
        [] => Some(lits),
        [t] if t.kind == TokenKind::Semicolon => Some(lits),
        _ => None,
    }
}

/// Quotes a name (database, table, column) in backticks, so any name a
/// user gave can be written back into SQL.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Quotes a string as a SQL literal that means the same with or without
/// NO_BACKSLASH_ESCAPES.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A table qualified with a shard target (`` `customer:-80`.corder `` or
/// `` `customer[-80]`.corder ``): returns the target and the statement with
/// the qualifier removed, so it runs as-is on that shard.
pub fn shard_qualifier(sql: &str) -> Option<(String, String)> {
    if !sql.contains('`') {
        return None;
    }
    let toks = tokenize(sql);
    let mut target: Option<String> = None;
    let mut cut = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.kind != TokenKind::Ident {
            continue;
        }
        let name = unquote(t.text(sql));
        let is_target = (name.contains(':') || name.contains('['))
            && toks
                .get(i + 1)
                .is_some_and(|n| n.kind == TokenKind::Punct(b'.') && n.start == t.end);
        if !is_target {
            continue;
        }
        target.get_or_insert_with(|| name.to_string());
        cut.push((t.start, toks[i + 1].end, ""));
    }
    Some((target?, splice(sql, &cut)))
}

/// Words a table name follows.
const TABLE_WORDS: [&str; 7] = [
    "from", "join", "into", "update", "table", "truncate", "describe",
];

/// Words that end a FROM list (at its own parenthesis depth).
const FROM_ENDS: &[&str] = &[
    "where", "group", "order", "limit", "having", "union", "on", "using", "for", "lock", "window",
    "set", "values", "select",
];

/// A table a statement names where tables are named (after FROM, JOIN,
/// INTO, UPDATE, TABLE, or a comma of a FROM list), or the table part of a
/// three-part column name (`customer.corder.id`): what deciding a
/// statement's keyspace, and rewriting its qualifiers, needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef<'a> {
    /// The qualifier, unquoted (`customer` in `` `customer`.corder ``).
    pub qualifier: Option<&'a str>,
    /// The table's name, unquoted.
    pub name: &'a str,
    /// Where the reference starts: its qualifier, else its name.
    pub at: usize,
    /// Where the name starts (`at..name_at` is the qualifier and its dot).
    pub name_at: usize,
    /// Where the name ends.
    pub end: usize,
    /// Whether an alias follows the name (`t AS x`, `t x`).
    pub aliased: bool,
    /// A three-part column name's table, not a table the statement reads.
    pub column: bool,
}

/// The tables `sql` names (see [`TableRef`]), in order.
pub fn table_refs(sql: &str) -> Vec<TableRef<'_>> {
    let toks = tokenize(sql);
    let name_like = |k: TokenKind| matches!(k, TokenKind::Word | TokenKind::Ident);
    let joined = |a: &Token, b: &Token| a.end == b.start;
    let dot_after = |t: &Token, next: Option<&Token>| {
        next.is_some_and(|d| d.kind == TokenKind::Punct(b'.') && joined(t, d))
    };
    let mut out = Vec::new();
    let (mut depth, mut from_depth, mut in_from) = (0i32, 0i32, false);
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => {
                depth -= 1;
                in_from &= depth >= from_depth;
            }
            TokenKind::Word if t.is_word(sql, "from") => {
                in_from = true;
                from_depth = depth;
            }
            TokenKind::Word
                if depth == from_depth && FROM_ENDS.iter().any(|k| t.is_word(sql, k)) =>
            {
                in_from = false;
            }
            _ => {}
        }
        // Not the second or third part of a longer name.
        let first =
            i == 0 || !(toks[i - 1].kind == TokenKind::Punct(b'.') && joined(&toks[i - 1], t));
        if !name_like(t.kind) || !first {
            continue;
        }
        let table_place = i > 0 && {
            let p = &toks[i - 1];
            TABLE_WORDS.iter().any(|k| p.is_word(sql, k))
                || (in_from && depth == from_depth && p.kind == TokenKind::Punct(b','))
                // `DESC t`, not `ORDER BY x DESC`.
                || (i == 1 && p.is_word(sql, "desc"))
                // `CREATE TABLE IF NOT EXISTS t`, `DROP TABLE IF EXISTS t`.
                || (p.is_word(sql, "exists")
                    && i >= 2
                    && (toks[i - 2].is_word(sql, "if")
                        || (toks[i - 2].is_word(sql, "not")
                            && i >= 3
                            && toks[i - 3].is_word(sql, "if"))))
        };
        let dotted = dot_after(t, toks.get(i + 1))
            && toks
                .get(i + 2)
                .is_some_and(|n| name_like(n.kind) && joined(&toks[i + 1], n));
        if dotted {
            let next = &toks[i + 2];
            let three = dot_after(next, toks.get(i + 3));
            if three || table_place {
                out.push(TableRef {
                    qualifier: Some(unquote(t.text(sql))),
                    name: unquote(next.text(sql)),
                    at: t.start,
                    name_at: next.start,
                    end: next.end,
                    aliased: !three && alias_follows(sql, toks.get(i + 3)),
                    column: three,
                });
            }
        } else if table_place
            && !dot_after(t, toks.get(i + 1))
            && !NOT_TABLES.iter().any(|k| t.is_word(sql, k))
            // `ON DUPLICATE KEY UPDATE c = ...` names a column.
            && !toks.get(i + 1).is_some_and(|n| n.kind == TokenKind::Punct(b'='))
        {
            out.push(TableRef {
                qualifier: None,
                name: unquote(t.text(sql)),
                at: t.start,
                name_at: t.start,
                end: t.end,
                aliased: alias_follows(sql, toks.get(i + 1)),
                column: false,
            });
        }
    }
    out
}

/// Words in a table's place that name no table.
const NOT_TABLES: &[&str] = &[
    "table",
    "if",
    "dual",
    "lateral",
    "outfile",
    "dumpfile",
    "low_priority",
    "ignore",
    "json_table",
    "quick",
    "only",
    "select",
    "extended",
    "partitions",
    "format",
    "nowait",
    "skip",
    "of",
];

/// Words that may follow a table name without being its alias.
const AFTER_TABLE: &[&str] = &[
    "where",
    "group",
    "order",
    "limit",
    "having",
    "union",
    "on",
    "using",
    "for",
    "lock",
    "window",
    "set",
    "values",
    "select",
    "join",
    "inner",
    "left",
    "right",
    "cross",
    "natural",
    "straight_join",
    "partition",
    "use",
    "force",
    "ignore",
    "into",
    "except",
    "intersect",
    "value",
    "default",
];

/// Whether token `t`, right after a table's name, is its alias.
fn alias_follows(sql: &str, t: Option<&Token>) -> bool {
    t.is_some_and(|t| match t.kind {
        TokenKind::Ident => true,
        TokenKind::Word => !AFTER_TABLE.iter().any(|k| t.is_word(sql, k)),
        _ => false,
    })
}

/// The names WITH clauses define (`with a as (...), b (x) as (...)`), at
/// any depth: tables of no keyspace.
pub fn cte_names(sql: &str) -> Vec<&str> {
    if !contains_ci(sql, "with") {
        return Vec::new();
    }
    let toks = tokenize(sql);
    let punct = |i: usize, c: u8| toks.get(i).is_some_and(|t| t.kind == TokenKind::Punct(c));
    // The index after the parenthesis opening at `i` closes.
    let skip_group = |mut i: usize| {
        let mut depth = 0;
        while let Some(t) = toks.get(i) {
            match t.kind {
                TokenKind::Punct(b'(') => depth += 1,
                TokenKind::Punct(b')') => depth -= 1,
                _ => {}
            }
            i += 1;
            if depth == 0 {
                break;
            }
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !toks[i].is_word(sql, "with") {
            i += 1;
            continue;
        }
        i += 1;
        if toks.get(i).is_some_and(|t| t.is_word(sql, "recursive")) {
            i += 1;
        }
        while let Some(name) = toks
            .get(i)
            .filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::Ident))
        {
            out.push(unquote(name.text(sql)));
            i += 1;
            if punct(i, b'(') {
                i = skip_group(i);
            }
            if !toks.get(i).is_some_and(|t| t.is_word(sql, "as")) || !punct(i + 1, b'(') {
                break;
            }
            i = skip_group(i + 1);
            if !punct(i, b',') {
                break;
            }
            i += 1;
        }
    }
    out
}

/// Tables qualified with a keyspace name (`customer.corder`,
/// `` `customer`.corder ``, and three-part column names like
/// `customer.corder.id`): when every such qualifier names the same keyspace,
/// returns it and the statement without them, since a tablet knows its
/// database as `vt_<keyspace>` (vtgate routes and rewrites them the same
/// way). A two-part name counts only where a table is named: elsewhere
/// `t.c` is a table's column.
pub fn keyspace_qualifier(
    sql: &str,
    is_keyspace: impl Fn(&str) -> bool,
) -> Option<(String, String)> {
    if !sql.contains('.') {
        return None;
    }
    let mut keyspace: Option<&str> = None;
    let mut cut: Vec<(usize, usize, &str)> = Vec::new();
    for r in table_refs(sql) {
        let Some(q) = r.qualifier.filter(|q| is_keyspace(q)) else {
            continue;
        };
        match keyspace {
            Some(k) if k != q => return None,
            Some(_) => {}
            None => keyspace = Some(q),
        }
        cut.push((r.at, r.name_at, ""));
    }
    Some((keyspace?.to_string(), splice(sql, &cut)))
}

/// `sql` with each `(start, end, text)` span replaced by its text; the
/// spans are in order and do not overlap.
pub fn splice<T: AsRef<str>>(sql: &str, edits: &[(usize, usize, T)]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * edits.len());
    let mut copied = 0;
    for (start, end, text) in edits {
        out.push_str(&sql[copied..*start]);
        out.push_str(text.as_ref());
        copied = *end;
    }
    out.push_str(&sql[copied..]);
    out
}

/// A SELECT's `INTO @a, @b` (before FROM or at the end): the statement
/// without it, and the variables as written. None for any other
/// statement, an INTO in a subquery, or INTO OUTFILE/DUMPFILE.
pub fn into_variables(sql: &str) -> Option<(String, Vec<String>)> {
    let toks = tokenize(sql);
    let first = toks.first()?;
    if !(first.is_word(sql, "select") || first.is_word(sql, "with")) {
        return None;
    }
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            TokenKind::Punct(b'(') => depth += 1,
            TokenKind::Punct(b')') => depth -= 1,
            TokenKind::Word if depth == 0 && t.is_word(sql, "into") => {
                let user_var =
                    |t: &Token| t.kind == TokenKind::Variable && !t.text(sql).starts_with("@@");
                let mut vars = Vec::new();
                let mut j = i + 1;
                while let Some(v) = toks.get(j).filter(|v| user_var(v)) {
                    vars.push(v.text(sql).to_string());
                    j += 1;
                    if toks
                        .get(j)
                        .is_some_and(|c| c.kind == TokenKind::Punct(b','))
                    {
                        j += 1;
                    } else {
                        break;
                    }
                }
                if vars.is_empty() {
                    return None;
                }
                let end = toks[j - 1].end;
                return Some((splice(sql, &[(t.start, end, " ")]), vars));
            }
            _ => {}
        }
    }
    None
}

/// MariaDB writes a shared row lock `LOCK IN SHARE MODE`, which the
/// parser does not take; it takes MySQL 8's `FOR SHARE`, which MariaDB
/// does not. The planner reads the one and sends the other:
/// `to_mariadb` false gives the parser's form of `sql` (tokenized as
/// `toks`), true the tablet's. None when the text has no such lock.
pub fn share_lock(sql: &str, toks: &[Token], to_mariadb: bool) -> Option<String> {
    let (from, to): (&[&str], &str) = if to_mariadb {
        (&["for", "share"], "LOCK IN SHARE MODE")
    } else {
        (&["lock", "in", "share", "mode"], "FOR SHARE")
    };
    let edits: Vec<(usize, usize, &str)> = toks
        .windows(from.len())
        .filter(|w| w.iter().zip(from).all(|(t, kw)| t.is_word(sql, kw)))
        .map(|w| (w[0].start, w[from.len() - 1].end, to))
        .collect();
    (!edits.is_empty()).then(|| splice(sql, &edits))
}

/// MySQL's own schemas: no keyspace's tables, the same on every tablet.
pub const SYSTEM_SCHEMAS: [&str; 4] = ["information_schema", "mysql", "performance_schema", "sys"];

/// The columns of the system schemas' tables that hold a schema name,
/// which a query may name as the keyspace (vtgate's list).
pub(crate) const SCHEMA_COLUMNS: &[&str] = &[
    "table_schema",
    "constraint_schema",
    "schema_name",
    "routine_schema",
    "specific_schema",
    "event_schema",
    "referenced_table_schema",
    "index_schema",
    "trigger_schema",
    "event_object_schema",
    "unique_constraint_schema",
];

/// True when every table `sql` reads (after FROM or JOIN, at any depth)
/// is qualified by a system schema, and it reads one: any one tablet
/// answers it, whatever the keyspace.
pub fn reads_system_schemas_only(sql: &str) -> bool {
    let toks = tokenize(sql);
    let mut any = false;
    for (i, t) in toks.iter().enumerate() {
        if !(t.is_word(sql, "from") || t.is_word(sql, "join")) {
            continue;
        }
        let Some(n) = toks.get(i + 1) else {
            return false;
        };
        if n.kind == TokenKind::Punct(b'(') {
            // A derived table: its own FROM is checked where it is.
            continue;
        }
        let qualified = toks
            .get(i + 2)
            .is_some_and(|d| d.kind == TokenKind::Punct(b'.'))
            && SYSTEM_SCHEMAS
                .iter()
                .any(|s| unquote(n.text(sql)).eq_ignore_ascii_case(s));
        if !qualified {
            return false;
        }
        any = true;
    }
    any
}

/// vtgate lets a query of the system schemas name a keyspace where the
/// tablet has its database (`table_schema = 'commerce'`,
/// `schema_name IN ('commerce')`, `table_schema = database()`): each such
/// name, as `db_name` maps it (None: not a keyspace), is written as that
/// database's name. Returns the keyspace named last and the statement
/// rewritten; for a statement that names none but reads only the system
/// schemas and information_schema among them, no keyspace and the
/// statement as it is (its answer's schema names are the session's to
/// put back); None otherwise. `current` is the session's keyspace, which
/// `database()` and `schema()` name.
pub fn system_schema_names(
    sql: &str,
    current: Option<&str>,
    db_name: impl Fn(&str) -> Option<String>,
) -> Option<(Option<String>, String)> {
    let has = |needle: &str| contains_ci(sql, needle);
    if !has("schema") || !SYSTEM_SCHEMAS.iter().any(|s| has(s)) {
        return None;
    }
    let toks = tokenize(sql);
    let mut named: Option<String> = None;
    let mut cut: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let is_column = matches!(t.kind, TokenKind::Word | TokenKind::Ident)
            && SCHEMA_COLUMNS
                .iter()
                .any(|c| unquote(t.text(sql)).eq_ignore_ascii_case(c));
        i += 1;
        if !is_column {
            continue;
        }
        // `= x` or `IN (x, y)`.
        let values: &[Token] = match toks.get(i) {
            Some(op) if op.kind == TokenKind::Punct(b'=') => {
                let call_end = (i + 4).min(toks.len());
                let one = if is_schema_call(sql, &toks[i + 1..call_end]) {
                    call_end
                } else {
                    (i + 2).min(toks.len())
                };
                &toks[i + 1..one]
            }
            Some(op)
                if op.is_word(sql, "in")
                    && toks.get(i + 1).map(|t| t.kind) == Some(TokenKind::Punct(b'(')) =>
            {
                let end = toks[i + 2..]
                    .iter()
                    .position(|t| t.kind == TokenKind::Punct(b')'))
                    .map_or(toks.len(), |p| i + 2 + p);
                &toks[i + 2..end]
            }
            _ => continue,
        };
        let mut j = 0;
        while j < values.len() {
            let v = values[j];
            let (name, end, width) = if is_schema_call(sql, &values[j..]) {
                (current.map(str::to_string), values[j + 2].end, 3)
            } else if let Some(inner) = quoted(&v, sql) {
                (Some(inner.replace("''", "'")), v.end, 1)
            } else {
                j += 1;
                continue;
            };
            if let Some((ks, db)) = name.and_then(|n| Some((n.clone(), db_name(&n)?))) {
                cut.push((v.start, end, quote_str(&db)));
                named = Some(ks);
            }
            j += width;
        }
    }
    let Some(ks) = named else {
        let info = has("information_schema") && reads_system_schemas_only(sql);
        return info.then(|| (None, sql.to_string()));
    };
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    for (start, end, text) in cut {
        out.push_str(&sql[copied..start]);
        out.push_str(&text);
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Some((Some(ks), out))
}

/// The inside of a quoted string token (None for an unterminated one, or
/// `X'..'` and `_charset'..'` forms).
fn quoted<'s>(t: &Token, sql: &'s str) -> Option<&'s str> {
    let text = t.text(sql);
    let q = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    text.strip_prefix(q)?.strip_suffix(q)
}

/// `database()` or `schema()` at the start of `toks`.
fn is_schema_call(sql: &str, toks: &[Token]) -> bool {
    matches!(toks, [f, open, close, ..]
        if (f.is_word(sql, "database") || f.is_word(sql, "schema"))
            && open.kind == TokenKind::Punct(b'(')
            && close.kind == TokenKind::Punct(b')'))
}

/// Counts `?` placeholders outside strings and comments.
pub fn count_placeholders(sql: &str) -> usize {
    tokenize(sql)
        .iter()
        .filter(|t| t.kind == TokenKind::Placeholder)
        .count()
}

/// Replaces each `?` with a literal for the matching value, so a prepared
/// statement runs as text on the tablets (as vtgate does).
/// `no_backslash_escapes` is the backend connection's SQL mode.
pub fn substitute_params(
    sql: &str,
    params: &[Value],
    no_backslash_escapes: bool,
) -> Result<String, SqlError> {
    fill_placeholders(sql, params.len(), |i, out| {
        out.push_str(&literal(&params[i], no_backslash_escapes))
    })
}

/// `sql` with its `"..."` written as the names they are under MariaDB's
/// ANSI_QUOTES (`` `...` ``), so that the gate's reading (its lexer, the
/// normalizer, the planner) and every tablet's, whatever its mode, agree;
/// None when it has none.
pub fn ansi_names(sql: &str, no_backslash_escapes: bool) -> Option<String> {
    let toks = lexer::tokenize_mode(sql, no_backslash_escapes);
    let quoted: Vec<&Token> = toks
        .iter()
        .filter(|t| t.kind == TokenKind::Str && t.text(sql).starts_with('"'))
        .collect();
    if quoted.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 4);
    let mut copied = 0;
    for t in quoted {
        let text = t.text(sql);
        let inner = text[1..text.len().saturating_sub(1).max(1)]
            .replace("\"\"", "\"")
            .replace('`', "``");
        out.push_str(&sql[copied..t.start]);
        out.push('`');
        out.push_str(&inner);
        out.push('`');
        copied = t.end;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// Replaces the `n` placeholders `?` of `sql` (outside strings and
/// comments), the `i`th by what `write(i, out)` writes: a literal. Why:
/// both the protocol's prepared statements and SQL's `EXECUTE ... USING`
/// run as text with their values in place.
pub fn fill_placeholders(
    sql: &str,
    n: usize,
    mut write: impl FnMut(usize, &mut String),
) -> Result<String, SqlError> {
    let toks = tokenize(sql);
    let places: Vec<&Token> = toks
        .iter()
        .filter(|t| t.kind == TokenKind::Placeholder)
        .collect();
    if places.len() != n {
        return Err(SqlError::ParamCount {
            expected: places.len(),
            got: n,
        });
    }
    let mut out = String::with_capacity(sql.len() + n * 8);
    let mut copied = 0;
    for (i, t) in places.iter().enumerate() {
        out.push_str(&sql[copied..t.start]);
        write(i, &mut out);
        copied = t.end;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// Bytes as a hex literal (`X'0a1b'`): the same whatever the connection's
/// character set and SQL mode.
pub fn hex_literal(b: &[u8]) -> String {
    let mut s = String::with_capacity(3 + b.len() * 2);
    s.push_str("X'");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s.push('\'');
    s
}

/// A SQL literal for a bind value.
pub fn literal(v: &Value, no_backslash_escapes: bool) -> String {
    match v {
        // `{:e}` keeps the full precision and stays a DOUBLE literal for any magnitude.
        Value::Double(d) if d.is_finite() => format!("{d:e}"),
        Value::Float(f) if f.is_finite() => format!("{f:e}"),
        Value::Double(_) | Value::Float(_) => "NULL".to_string(),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if !no_backslash_escapes => escape_backslash(s),
            Ok(s) => quote_str(s),
            Err(_) => hex_literal(b),
        },
        // Integers are most binds (ids, ranges): written without the
        // formatting machinery.
        Value::Int(i) => decimal(i.unsigned_abs(), *i < 0),
        Value::UInt(u) => decimal(*u, false),
        other => other.as_sql(no_backslash_escapes),
    }
}

/// The decimal text of a number of magnitude `n`.
fn decimal(mut n: u64, negative: bool) -> String {
    let mut buf = [0u8; 21];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    // Only ASCII digits and a sign were written.
    String::from_utf8_lossy(&buf[at..]).into_owned()
}

fn escape_backslash(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_from_database_names_its_database() {
        let named = |sql: &str| show_from_database(sql);
        let pair = |db: &str, sql: &str| Some((db.to_string(), sql.to_string()));
        assert_eq!(
            named("show tables from `customer` like 'c%'"),
            pair("customer", "show tables  like 'c%'")
        );
        assert_eq!(
            named("SHOW FULL TABLES IN commerce"),
            pair("commerce", "SHOW FULL TABLES ")
        );
        assert_eq!(
            named("SHOW INDEXES FROM `t` FROM `customer` WHERE Key_name = ?"),
            pair("customer", "SHOW INDEXES FROM `t`  WHERE Key_name = ?")
        );
        assert_eq!(
            named("show full columns in t in c like 'a%'"),
            pair("c", "show full columns in t  like 'a%'")
        );
        assert_eq!(
            named("show table status from c where name = 't'"),
            pair("c", "show table status  where name = 't'")
        );
        assert_eq!(named("show tables"), None);
        assert_eq!(named("show columns from t"), None);
        assert_eq!(named("show create table t"), None);
        assert_eq!(named("show index from t where key_name = 'from'"), None);
        assert_eq!(
            tables_in_renamed(
                "SHOW TABLES WHERE `Tables_in_customer` = 'a' OR tables_in_CUSTOMER LIKE 'Tables_in_customer'",
                "customer",
                "vt_customer"
            )
            .as_deref(),
            Some(
                "SHOW TABLES WHERE `Tables_in_vt_customer` = 'a' OR `Tables_in_vt_customer` LIKE 'Tables_in_customer'"
            )
        );
        assert_eq!(tables_in_renamed("show tables like 'x'", "c", "vt_c"), None);
    }

    #[test]
    fn vtgates_twopc_statements_are_the_sessions() {
        let shown = |dtid: Option<&str>, ks: Option<&str>| Statement::ShowTransactions {
            dtid: dtid.map(str::to_string),
            keyspace: ks.map(str::to_string),
        };
        let c = |sql| classify(sql).unwrap();
        assert_eq!(
            c("show transaction status for 'sg-1a-7'"),
            shown(Some("sg-1a-7"), None)
        );
        assert_eq!(c("SHOW UNRESOLVED TRANSACTIONS"), shown(None, None));
        assert_eq!(
            c("show unresolved transactions for `customer`"),
            shown(None, Some("customer"))
        );
        // Not these: the tablet's.
        assert_eq!(
            c("show transaction isolation level"),
            Statement::Query(QueryKind::Show)
        );
    }

    #[test]
    fn diagnostics_questions_are_known() {
        for sql in [
            "show warnings",
            "SHOW ERRORS LIMIT 5",
            "show count(*) warnings",
            "select @@warning_count",
            "select @@session.error_count",
        ] {
            assert!(asks_diagnostics(sql), "{sql}");
        }
        for sql in [
            "show tables",
            "select warnings from t",
            "show count(*) tables",
        ] {
            assert!(!asks_diagnostics(sql), "{sql}");
        }
    }

    #[test]
    fn reads_calling_only_builtins_write_nowhere() {
        for sql in [
            "select c from sbtest1 where id = ?",
            "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?",
            "select distinct c from t where id in (select id from u) order by c",
            "select count(*), max(a) from t where (a = 1 or b = 2) and c in (1, 2)",
            "select concat(upper(a), '-', lower(b)) from t",
            "select 1",
        ] {
            assert!(writes_nowhere(sql), "{sql}");
        }
        for sql in [
            "select my_fn(1)",
            "select db.count(1)",
            "select `f`(1) from t",
            "select `db`.`f`(1)",
            "select a from t where id = add_row (?)",
            "select my_fn /* x */ (1)",
            "select my_fn -- x\n(1)",
            "select c from t for update",
            "insert into t values (1)",
        ] {
            assert!(!writes_nowhere(sql), "{sql}");
        }
    }

    #[test]
    fn shareable_reads_leave_nothing_on_their_connection() {
        for sql in [
            "select c from sbtest1 where id = ?",
            "SELECT id, v FROM t WHERE id BETWEEN ? AND ? ORDER BY id",
            "select count(*) from t where name = 'x' and y = ?",
            "select `format` from t",
        ] {
            assert!(shareable_read(sql), "{sql}");
        }
        for sql in [
            "select @x",
            "select @@session.sql_mode",
            "select c into @c from t where id = ?",
            "select c from t where id = ? for update",
            "select c from t lock in share mode",
            "select found_rows()",
            "select last_insert_id()",
            "select get_lock('a', 1)",
            "select sleep(?)",
            "select nextval(s)",
            "select 1; select 2",
            "insert into t values (?)",
            "with a as (select 1) select * from a",
            // Executable comments run; a word in a string is a false alarm.
            "select c from t /*!50000 for update */",
            "select c from t where name = 'into'",
        ] {
            assert!(!shareable_read(sql), "{sql}");
        }
    }

    #[test]
    fn reads_of_session_defaults_are_what_connectors_ask_at_connect() {
        for sql in [
            "SELECT @@max_allowed_packet,@@wait_timeout",
            "select @@session.auto_increment_increment AS auto_increment_increment, \
             @@character_set_client AS character_set_client, @@sql_mode sql_mode",
            "select @@LOCAL.time_zone from dual;",
            "select @@version_comment limit_ignored_alias",
            "/* mysql-connector-java-8.0.33 (Revision: 1) */SELECT  @@session.auto_increment_increment \
             AS auto_increment_increment, @@character_set_client AS character_set_client, \
             @@init_connect AS init_connect, @@license AS license, @@query_cache_type AS \
             query_cache_type, @@transaction_isolation AS transaction_isolation",
        ] {
            assert!(reads_defaults(sql), "{sql}");
        }
        for sql in [
            "select @@global.max_allowed_packet",
            "select @@last_insert_id",
            "select @@autocommit",
            "select @@warning_count",
            "select @x",
            "select @@max_allowed_packet, 1",
            "select @@max_allowed_packet from t",
            "select @@max_allowed_packet limit 1",
            "select @@max_allowed_packet; select 2",
            "select @@max_allowed_packet as",
            "select @@wait_timeout /*!, sleep(1) */",
            "/* c select @@wait_timeout",
            "/*!40101 select @@wait_timeout */",
            "/* c */ select @@wait_timeout /*! , sleep(1) */",
            "select",
            "set @@wait_timeout = 1",
        ] {
            assert!(!reads_defaults(sql), "{sql}");
        }
        assert!(DEFAULTS.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn directives_are_read_from_the_vt_comment() {
        assert_eq!(directives("select 1"), Directives::default());
        let d = directives("select /*vt+ QUERY_TIMEOUT_MS=50 allow_scatter */ * from t");
        assert_eq!(d.query_timeout_ms, Some(50));
        assert!(d.allow_scatter && !d.ignore_max_memory_rows);
        let d = directives("/*vt+ IGNORE_MAX_MEMORY_ROWS */ select 1");
        assert!(d.ignore_max_memory_rows && !d.allow_scatter);
        let d = directives("delete /*vt+ MULTI_SHARD_AUTOCOMMIT=1 */ from t");
        assert!(d.multi_shard_autocommit && !d.ignore_max_payload_size);
        let d = directives("insert /*vt+ IGNORE_MAX_PAYLOAD_SIZE=1 */ into t values (1)");
        assert!(d.ignore_max_payload_size);
        // An unterminated comment asks for nothing.
        assert_eq!(
            directives("select /*vt+ ALLOW_SCATTER"),
            Directives::default()
        );
    }

    #[test]
    fn vtgate_session_variables_stay_at_the_gate() {
        let Statement::Set(set) =
            classify("set workload = 'olap', @@session.ddl_strategy = direct, names utf8mb4")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            set.vitess,
            vec![
                ("workload", "OLAP".to_string()),
                ("ddl_strategy", "direct".to_string())
            ]
        );
        assert_eq!(set.rest.as_deref(), Some("SET names utf8mb4"));
        let Statement::Set(meta) = classify("set @@vitess_metadata.App_V = 'v1'").unwrap() else {
            panic!()
        };
        assert_eq!(meta.metadata, vec![("App_V".to_string(), "v1".to_string())]);
        assert!(meta.rest.is_none());
        assert_eq!(
            classify("show vitess_metadata variables like 'a%'").unwrap(),
            Statement::ShowMetadata(Some("a%".into()))
        );
        for bad in [
            "set workload = 'fast'",
            "set ddl_strategy = 'vitess --postpone-completion'",
            "set skip_query_plan_cache = 2",
            "set session_track_gtids = own_gtid",
            "set read_after_write_gtid = 'MariaDB/0-1-5'",
        ] {
            let e = classify(bad).unwrap_err();
            assert!(e.to_string().starts_with("Variable '"), "{bad}: {e}");
        }
        let set = [("workload", "OLAP".to_string())];
        let v = SessionValues {
            database: None,
            last_insert_id: 0,
            row_count: 0,
            found_rows: None,
            transaction_mode: "MULTI",
            query_timeout: 0,
            vitess: &set,
        };
        assert_eq!(
            rewrite_session_values("select @@workload, @@skip_query_plan_cache", &v).unwrap(),
            "select 'OLAP' AS `@@workload`, 0 AS `@@skip_query_plan_cache`"
        );
    }

    #[test]
    fn ansi_quotes_make_double_quotes_names() {
        assert_eq!(
            ansi_names(
                r#"select "a""b", 'x"y', `c` from "t" where "d" = 'e'"#,
                false
            )
            .as_deref(),
            Some(r#"select `a"b`, 'x"y', `c` from `t` where `d` = 'e'"#)
        );
        assert_eq!(ansi_names("select 'a', `b`", false), None);
    }

    #[test]
    fn sql_select_limit_caps_the_outermost_select_without_a_limit() {
        let limit = |sql: &str| match classify(sql) {
            Ok(Statement::Set(s)) => s.vitess,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            limit("set sql_select_limit = 2"),
            [("sql_select_limit", "2".into())]
        );
        assert_eq!(limit("set @@session.sql_select_limit := -1")[0].1, "0");
        assert_eq!(limit("SET SESSION sql_select_limit = '7'")[0].1, "7");
        assert_eq!(
            limit("set sql_select_limit = DEFAULT")[0].1,
            SELECT_LIMIT_DEFAULT
        );
        let e = classify("set sql_select_limit = 'abc'").unwrap_err();
        assert!(matches!(e, SqlError::WrongVariableType("sql_select_limit")));
        let set = [("sql_select_limit", "2".to_string())];
        for (sql, cap) in [
            ("select * from t", Some(2)),
            ("with c as (select 1 limit 9) select * from c", Some(2)),
            ("(select a from t limit 5) order by a", Some(2)),
            ("select a from t union (select b from u limit 1)", Some(2)),
            (
                "select * from t where a in (select a from u limit 3)",
                Some(2),
            ),
            ("select * from t limit 5", None),
            ("((select a from t limit 5));", None),
            ("select a from t union select b from u limit 1", None),
            ("update t set a = 1", None),
            ("show tables", None),
        ] {
            assert_eq!(select_cap(sql, &set), cap, "{sql}");
        }
        let unset = [("sql_select_limit", SELECT_LIMIT_DEFAULT.to_string())];
        assert_eq!(select_cap("select * from t", &unset), None);
        assert_eq!(select_cap("select * from t", &[]), None);
    }

    #[test]
    fn next_values_from_a_sequence() {
        let next = |count, ks: Option<&str>, table: &str| Statement::NextValues {
            count,
            keyspace: ks.map(String::from),
            table: table.into(),
        };
        assert_eq!(
            classify("select next value from seq").unwrap(),
            next(1, None, "seq")
        );
        assert_eq!(
            classify("SELECT NEXT 10 VALUES FROM main.`seq`;").unwrap(),
            next(10, Some("main"), "seq")
        );
        for plain in [
            "select next from t",
            "select next value from seq where 1",
            "select next 0 values from seq",
            "select next 2 value from seq",
        ] {
            assert_eq!(
                classify(plain).unwrap(),
                Statement::Query(QueryKind::Select),
                "{plain}"
            );
        }
    }

    #[test]
    fn like_matches_as_sql_does() {
        for (p, t, want) in [
            ("cust%", "customer", true),
            ("CUST%", "customer", true),
            ("%/80-", "customer/80-", true),
            ("%/80-", "customer/-80", false),
            ("c_mmerce", "commerce", true),
            ("c_mmerce", "cmmerce", false),
            ("%", "", true),
            ("a%b%c", "axxbyyc", true),
            ("a%b%c", "axxbyy", false),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("", "x", false),
        ] {
            assert_eq!(like(p, t), want, "{t} LIKE {p}");
        }
        assert_eq!(string_literal("'it''s \\'x\\''"), "it's 'x'");
    }

    #[test]
    fn gate_shows_take_like_and_refuse_where() {
        let c = |s: &str| classify(s).unwrap();
        assert_eq!(
            c("show keyspaces like 'cust%'"),
            Statement::ShowKeyspaces(Some("cust%".into()))
        );
        assert_eq!(c("SHOW DATABASES"), Statement::ShowDatabases(None));
        assert_eq!(
            c("show vitess_replication_status like 'ks/-80';"),
            Statement::ShowReplicationStatus(Some("ks/-80".into()))
        );
        assert_eq!(c("show vschema keyspaces"), Statement::ShowVschemaKeyspaces);
        // Not the gate's grammar: a tablet's parser says what is wrong.
        assert_eq!(
            c("show vitess_tablets like x"),
            Statement::Query(QueryKind::Show)
        );
        let e = classify("show vitess_shards where 1 = 1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "SHOW VITESS_SHARDS takes LIKE 'pattern' in shardgate, not WHERE"
        );
    }

    #[test]
    fn classifies_maintenance_do_and_database_statements() {
        let kind = |sql: &str| classify(sql).unwrap();
        for sql in [
            "analyze table t",
            "ANALYZE NO_WRITE_TO_BINLOG TABLE t, u",
            "optimize local table t",
            "repair table t quick",
            "check table t",
            "checksum tables t",
        ] {
            assert_eq!(kind(sql), Statement::Query(QueryKind::Maintenance), "{sql}");
            // Each commits the open transaction first, CHECKSUM aside.
            assert_eq!(
                commits_implicitly(sql),
                !sql.starts_with("checksum"),
                "{sql}"
            );
        }
        // MariaDB's ANALYZE of a statement reads.
        assert_eq!(kind("analyze select 1"), Statement::Query(QueryKind::Other));
        assert_eq!(kind("do 1 + 1"), Statement::Query(QueryKind::Other));
        assert_eq!(
            kind("do get_lock('a', 1)"),
            Statement::Query(QueryKind::Reserving)
        );
        let db = |verb, name: Option<&str>, guarded| {
            Statement::Database(DatabaseDdl {
                verb,
                name: name.map(str::to_string),
                guarded,
            })
        };
        assert_eq!(
            kind("CREATE DATABASE  IF NOT EXISTS `customer`  DEFAULT CHARACTER SET utf8mb4"),
            db(DatabaseVerb::Create, Some("customer"), true)
        );
        assert_eq!(
            kind("create schema ks"),
            db(DatabaseVerb::Create, Some("ks"), false)
        );
        assert_eq!(
            kind("drop database if exists ks"),
            db(DatabaseVerb::Drop, Some("ks"), true)
        );
        assert_eq!(
            kind("alter database character set utf8mb4"),
            db(DatabaseVerb::Alter, None, false)
        );
        assert_eq!(
            kind("alter schema ks collate utf8mb4_bin"),
            db(DatabaseVerb::Alter, Some("ks"), false)
        );
        assert_eq!(
            kind("create table t (id int)"),
            Statement::Query(QueryKind::Ddl)
        );
        assert_eq!(kind("drop table t"), Statement::Query(QueryKind::Ddl));
        assert_eq!(
            kind("show create database if not exists `customer`"),
            Statement::ShowCreateDatabase {
                name: "customer".into(),
                if_not_exists: true
            }
        );
        assert_eq!(
            kind("show create schema"),
            Statement::Query(QueryKind::Show)
        );
    }

    #[test]
    fn user_variables_set_from_a_query_are_selected_into() {
        let queried = |sql: &str| match classify(sql).unwrap() {
            Statement::Set(set) => set.queried,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            queried("set @a = (select count(*) from t), @b := 2;"),
            Some((
                vec!["(select count(*) from t)".to_string(), "2".to_string()],
                vec!["@a".to_string(), "@b".to_string()]
            ))
        );
        // No subquery, or a system variable beside it: replayed as before.
        assert_eq!(queried("set @a = 1, @b = @a + 1"), None);
        assert_eq!(queried("set @a = (select 1), sql_mode = ''"), None);
    }

    #[test]
    fn into_variables_are_taken_out_of_a_select() {
        let into = |sql: &str| into_variables(sql).map(|(s, v)| (s, v.join(",")));
        assert_eq!(
            into("select a, b into @x, @`y z` from t where c = 1"),
            Some((
                "select a, b   from t where c = 1".into(),
                "@x,@`y z`".into()
            ))
        );
        assert_eq!(
            into("select a from t where a in (select 1) into @v"),
            Some((
                "select a from t where a in (select 1)  ".into(),
                "@v".into()
            ))
        );
        for none in [
            "select a from t",
            "select a from (select b into @v from u) d",
            "select a into outfile '/tmp/f' from t",
            "select @@x into @@y",
            "insert into t select 1",
            "select 'into @v' from t",
        ] {
            assert_eq!(into(none), None, "{none}");
        }
    }

    #[test]
    fn share_locks_read_for_the_parser_and_written_for_mariadb() {
        let turn = |sql: &str, to_mariadb| share_lock(sql, &tokenize(sql), to_mariadb);
        assert_eq!(
            turn(
                "select a from t where b = 'lock in share mode' LOCK IN SHARE MODE skip locked",
                false
            )
            .as_deref(),
            Some("select a from t where b = 'lock in share mode' FOR SHARE skip locked")
        );
        assert_eq!(
            turn("SELECT a FROM t FOR SHARE NOWAIT", true).as_deref(),
            Some("SELECT a FROM t LOCK IN SHARE MODE NOWAIT")
        );
        assert_eq!(turn("select a from t for update", true), None);
        assert_eq!(turn("select 'for share' from t", true), None);
    }

    #[test]
    fn select_items_are_taken_as_written() {
        assert_eq!(
            select_items("select distinct count(distinct a,b), case when x > :v1 then 'a,b' end c, f(1, (2)) from t where y = 1"),
            Some(vec!["count(distinct a,b)", "case when x > :v1 then 'a,b' end c", "f(1, (2))"])
        );
        assert_eq!(
            select_items("with w as (select 1 from u) select a+1 ,b from w"),
            Some(vec!["a+1", "b"])
        );
        assert_eq!(select_items("select 1"), Some(vec!["1"]));
        let text = "select ñ,\n (select b from t)";
        assert_eq!(offset_of(text, 2, 3), Some(text.find("select b").unwrap()));
        assert_eq!(offset_of(text, 3, 1), None);
        assert_eq!(
            select_items("select percentile_cont(0.5) within group (order by a) over (), b from t group by b"),
            Some(vec!["percentile_cont(0.5) within group (order by a) over ()", "b"])
        );
        assert_eq!(select_items("update t set a = 1"), None);
        assert_eq!(select_items("select from t"), None);
    }

    #[test]
    fn a_transactions_characteristics_go_to_its_tablets() {
        let begun = |sql: &str| begin_characteristics(sql).map_err(|e| e.to_string());
        assert_eq!(begun("begin"), Ok(None));
        assert_eq!(begun("START TRANSACTION;"), Ok(None));
        assert_eq!(
            begun("start transaction read only"),
            Ok(Some("START TRANSACTION READ ONLY".into()))
        );
        assert_eq!(
            begun("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE;"),
            Ok(Some(
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE".into()
            ))
        );
        for bad in [
            "start transaction read",
            "start transaction read only,",
            "start transaction read only read write",
            "start transaction isolation level serializable",
        ] {
            assert!(begun(bad).is_err_and(|e| e.contains("SQL syntax")), "{bad}");
        }
    }

    #[test]
    fn classifies_transactions_and_use() {
        assert_eq!(classify("BEGIN").unwrap(), Statement::Begin);
        assert_eq!(
            classify("start transaction read only").unwrap(),
            Statement::Begin
        );
        assert_eq!(classify("commit").unwrap(), Statement::Commit);
        assert_eq!(
            classify("rollback to savepoint a").unwrap(),
            Statement::Savepoint(Savepoint::RollbackTo("a".into()))
        );
        assert_eq!(
            classify("use `commerce`").unwrap(),
            Statement::Use("commerce".into())
        );
        assert_eq!(
            classify("use commerce@replica").unwrap(),
            Statement::Use("commerce@replica".into())
        );
        assert_eq!(
            classify("use `customer:-80`").unwrap(),
            Statement::Use("customer:-80".into())
        );
    }

    #[test]
    fn vindex_hints_are_taken_out() {
        assert_eq!(strip_vindex_hints("select * from user where id = 1"), None);
        assert_eq!(
            strip_vindex_hints("select * from user use vindex (name_user_map) where name = 'x'")
                .as_deref(),
            Some("select * from user where name = 'x'")
        );
        assert_eq!(
            strip_vindex_hints(
                "select u.id from user u USE VINDEX (a, b) join music m IGNORE VINDEX(user_index) on u.id = m.id"
            )
            .as_deref(),
            Some("select u.id from user u join music m on u.id = m.id")
        );
        // A string or a column named vindex is no hint.
        assert_eq!(
            strip_vindex_hints("select 'use vindex (x)', vindex from t"),
            None
        );
    }

    #[test]
    fn set_splits_autocommit_from_the_rest() {
        let Statement::Set(s) = classify("SET autocommit=0, sql_mode='ANSI', @a = (1,2)").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.autocommit, Some(false));
        assert_eq!(s.rest.as_deref(), Some("SET sql_mode='ANSI', @a = (1,2)"));
        let Statement::Set(s) = classify("set @@session.autocommit = ON").unwrap() else {
            panic!()
        };
        assert_eq!(s.autocommit, Some(true));
        assert_eq!(s.rest, None);
        let Statement::Set(s) = classify("set global max_connections = 10").unwrap() else {
            panic!()
        };
        assert!(s.global);
        assert!(classify("set autocommit = maybe").is_err());
        for (sql, on) in [
            ("set @@autocommit = default", true),
            ("set autocommit = `off`", false),
            ("set autocommit = `on`", true),
        ] {
            let Statement::Set(s) = classify(sql).unwrap() else {
                panic!("{sql}")
            };
            assert_eq!(s.autocommit, Some(on), "{sql}");
        }
    }

    #[test]
    fn pool_validation_selects_are_recognized() {
        assert_eq!(literal_select("select 1"), Some(vec!["1"]));
        assert_eq!(literal_select("  SELECT 1 ;"), Some(vec!["1"]));
        assert_eq!(
            literal_select("select 1, 22,333 from DUAL"),
            Some(vec!["1", "22", "333"])
        );
        assert_eq!(literal_select("select 0"), Some(vec!["0"]));
        // Everything MariaDB types or names differently goes to a tablet.
        for sql in [
            "select 007",
            "select -1",
            "select 1234567890",
            "select 1.5",
            "select 1e3",
            "select 0x10",
            "select 1 as one",
            "select 1 from t",
            "select 1 from dual where 0",
            "select 1 /*!, 2 */",
            "select 1; select 2",
            "select 1,",
            "select c from t",
            "select",
            "selected 1",
        ] {
            assert_eq!(literal_select(sql), None, "{sql}");
        }
    }

    #[test]
    fn starts_with_select_needs_the_whole_word() {
        assert!(starts_with_select("  SELECT c FROM t"));
        assert!(starts_with_select("select\n1"));
        assert!(!starts_with_select("selected_rows()"));
        assert!(!starts_with_select("select$x"));
        assert!(!starts_with_select("/* x */ select 1"));
        assert!(!starts_with_select("insert into t select 1"));
    }

    #[test]
    fn set_names_the_system_variables_it_changes() {
        let vars = |sql: &str| match classify(sql).unwrap() {
            Statement::Set(s) => s.sys_vars,
            _ => panic!("{sql}"),
        };
        let charset: Vec<String> = CHARSET_VARS.iter().map(|v| v.to_string()).collect();
        assert_eq!(vars("SET NAMES utf8mb4"), Some(charset.clone()));
        assert_eq!(
            vars("set names 'utf8mb4' collate 'utf8mb4_general_ci'"),
            Some(charset.clone())
        );
        assert_eq!(vars("SET CHARACTER SET utf8mb4"), Some(charset));
        assert_eq!(
            vars("set @@session.sql_mode = 'ANSI', time_zone := '+00:00', session wait_timeout = 10, autocommit = 1"),
            Some(vec!["sql_mode".into(), "time_zone".into(), "wait_timeout".into()])
        );
        // User variables and SET TRANSACTION are state a clean connection lacks.
        assert_eq!(vars("set sql_mode = 'ANSI', @a = 1"), None);
        assert_eq!(vars("set transaction isolation level read committed"), None);
        assert_eq!(vars("set autocommit = 0"), None);
    }

    #[test]
    fn set_values_that_depend_on_nothing_are_constant() {
        let constant = |sql: &str| match classify(sql).unwrap() {
            Statement::Set(s) => s.constant,
            _ => panic!("{sql}"),
        };
        for sql in [
            "SET NAMES 'utf8mb4'",
            "set names utf8mb4 collate utf8mb4_unicode_ci",
            "SET CHARACTER SET utf8mb4",
            "SET collation_connection = 'utf8mb4_unicode_ci'",
            "set session wait_timeout = 10, @@session.sql_mode := 'ANSI'",
            "set time_zone = '+00:00', max_join_size = DEFAULT, x = -1.5",
        ] {
            assert!(constant(sql), "{sql}");
        }
        for sql in [
            "set time_zone = @tz",
            "set sql_mode = concat(@@sql_mode, ',ANSI')",
            "set sql_mode = @@global.sql_mode",
            "set timestamp = current_timestamp",
            "set max_join_size",
        ] {
            assert!(!constant(sql), "{sql}");
        }
    }

    #[test]
    fn table_names_for_global_routing() {
        let unqualified = |sql| -> Vec<&str> {
            table_refs(sql)
                .into_iter()
                .filter(|r| r.qualifier.is_none())
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(
            unqualified(
                "select * from customer c join `corder` o on 1 where x in (select 1 from ks.t)"
            ),
            ["customer", "corder"]
        );
        assert_eq!(unqualified("insert into t1 values (1)"), ["t1"]);
        assert!(unqualified("select 1").is_empty());
    }

    #[test]
    fn statements_that_commit_the_open_transaction() {
        for sql in [
            "analyze table t",
            "OPTIMIZE TABLE t",
            "repair table t",
            "flush tables",
            "grant select on *.* to u",
            "revoke select on *.* from u",
            "lock tables t read",
        ] {
            assert!(commits_implicitly(sql), "{sql}");
        }
        for sql in [
            "select 1",
            "create temporary table t (id int)",
            "unlock tables",
            "lock",
        ] {
            assert!(!commits_implicitly(sql), "{sql}");
        }
    }

    #[test]
    fn table_refs_find_where_tables_are_named() {
        let sql = "select c.x, customer.corder.id from `customer`.corder c, t2 join t3 as z on z.a = c.a where c.b in (select b from t4) on duplicate key update t5 = 1";
        let refs = table_refs(sql);
        let names: Vec<(Option<&str>, &str, bool, bool)> = refs
            .iter()
            .map(|r| (r.qualifier, r.name, r.aliased, r.column))
            .collect();
        assert_eq!(
            names,
            [
                (Some("customer"), "corder", false, true),
                (Some("customer"), "corder", true, false),
                (None, "t2", false, false),
                (None, "t3", true, false),
                (None, "t4", false, false),
            ]
        );
        let r = &refs[1];
        assert_eq!(&sql[r.at..r.name_at], "`customer`.");
        assert_eq!(&sql[r.name_at..r.end], "corder");
        // Keywords in a table's place name no table.
        assert!(table_refs("select 1 from dual").is_empty());
        assert!(table_refs("select a from t for update nowait")
            .iter()
            .all(|r| r.name == "t"));
        assert_eq!(table_refs("truncate table t")[0].name, "t");
        for ddl in [
            "create table if not exists commerce.t (id int)",
            "drop table if exists commerce.t",
        ] {
            let refs = table_refs(ddl);
            let names: Vec<(Option<&str>, &str)> =
                refs.iter().map(|r| (r.qualifier, r.name)).collect();
            assert_eq!(names, [(Some("commerce"), "t")], "{ddl}");
        }
    }

    #[test]
    fn with_clauses_name_their_queries() {
        assert_eq!(
            cte_names("with a as (select 1), `b` (x, y) as (select 2, 3) select * from a, b"),
            ["a", "b"]
        );
        assert_eq!(
            cte_names("select * from (with recursive r as (select 1) select * from r) t"),
            ["r"]
        );
        assert!(cte_names("select 'with x as (' from t").is_empty());
    }

    #[test]
    fn keyspace_qualified_tables() {
        let ks = |n: &str| n == "customer" || n == "commerce";
        assert_eq!(
            keyspace_qualifier("select count(*) from customer.customer", ks),
            Some(("customer".into(), "select count(*) from customer".into()))
        );
        assert_eq!(
            keyspace_qualifier(
                "select customer.customer.email, c.id from `customer`.customer, customer.corder c where customer.id = 1",
                ks
            ),
            Some((
                "customer".into(),
                "select customer.email, c.id from customer, corder c where customer.id = 1".into()
            ))
        );
        assert_eq!(
            keyspace_qualifier("insert into commerce.product (sku) values ('a.b')", ks),
            Some((
                "commerce".into(),
                "insert into product (sku) values ('a.b')".into()
            ))
        );
        // Columns of a table named like a keyspace stay; other schemas stay.
        assert_eq!(
            keyspace_qualifier("select customer.email from customer", ks),
            None
        );
        assert_eq!(
            keyspace_qualifier("select * from information_schema.tables", ks),
            None
        );
        assert_eq!(keyspace_qualifier("select 1.5", ks), None);
        // Two keyspaces: not one route.
        assert_eq!(
            keyspace_qualifier("select * from customer.customer join commerce.product", ks),
            None
        );
    }

    #[test]
    fn system_schema_queries_name_keyspaces_by_their_databases() {
        let db = |n: &str| {
            ["commerce", "customer"]
                .contains(&n)
                .then(|| format!("vt_{n}"))
        };
        assert_eq!(
            system_schema_names(
                "select table_name from information_schema.tables where table_schema = 'customer' and table_name = 'commerce'",
                None,
                db
            ),
            Some((
                Some("customer".into()),
                "select table_name from information_schema.tables where table_schema = 'vt_customer' and table_name = 'commerce'".into()
            ))
        );
        assert_eq!(
            system_schema_names(
                "SELECT * FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME IN ('x', \"commerce\")",
                None,
                db
            ),
            Some((
                Some("commerce".into()),
                "SELECT * FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME IN ('x', 'vt_commerce')".into()
            ))
        );
        assert_eq!(
            system_schema_names(
                "select * from information_schema.columns c where c.TABLE_SCHEMA = database()",
                Some("commerce"),
                db
            ),
            Some((
                Some("commerce".into()),
                "select * from information_schema.columns c where c.TABLE_SCHEMA = 'vt_commerce'"
                    .into()
            ))
        );
        // Not a keyspace: unchanged, its answer's names put back.
        for sql in [
            "select * from information_schema.tables where table_schema = 'mysql'",
            "select * from information_schema.tables where table_schema = database()",
            "select 1 from information_schema.tables where table_schema = '",
        ] {
            assert_eq!(
                system_schema_names(sql, None, db),
                Some((None, sql.into())),
                "{sql}"
            );
        }
        // No information_schema, or another table: nothing.
        for sql in [
            "select table_schema from t where table_schema = 'commerce'",
            "select * from information_schema.tables t join corder o on t.table_schema = 'x'",
            "select * from mysql.user where schema_name = 'x'",
        ] {
            assert_eq!(system_schema_names(sql, None, db), None, "{sql}");
        }
        assert!(reads_system_schemas_only(
            "select * from information_schema.tables t join `mysql`.user u on 1 where x in (select 1 from sys.version)"
        ));
        assert!(!reads_system_schemas_only(
            "select * from information_schema.tables t join corder o on 1"
        ));
        assert!(!reads_system_schemas_only("select 1"));
    }

    #[test]
    fn finds_words_in_any_case() {
        assert!(contains_ci(
            "select * from INFORMATION_SCHEMA.x",
            "information_schema"
        ));
        assert!(contains_ci("x row_Count()", "ROW_COUNT"));
        assert!(!contains_ci("select schem", "schema"));
        assert!(contains_ci("", ""));
        assert!(!contains_ci("", "a"));
    }

    #[test]
    fn savepoint_statements() {
        let sp = |sql| match classify(sql).unwrap() {
            Statement::Savepoint(s) => Some(s),
            _ => None,
        };
        assert_eq!(sp("SAVEPOINT `S1`"), Some(Savepoint::Set("s1".into())));
        assert_eq!(
            sp("rollback to s1"),
            Some(Savepoint::RollbackTo("s1".into()))
        );
        assert_eq!(
            sp("ROLLBACK WORK TO SAVEPOINT s1"),
            Some(Savepoint::RollbackTo("s1".into()))
        );
        assert_eq!(
            sp("release savepoint s1"),
            Some(Savepoint::Release("s1".into()))
        );
        assert_eq!(classify("rollback").unwrap(), Statement::Rollback);
        assert_eq!(sp("savepoint"), None);
    }

    #[test]
    fn shard_qualified_tables() {
        let (t, s) =
            shard_qualifier("select * from `customer:-80`.corder where x = '`a:b`.c'").unwrap();
        assert_eq!(t, "customer:-80");
        assert_eq!(s, "select * from corder where x = '`a:b`.c'");
        assert_eq!(shard_qualifier("select * from `customer`.corder"), None);
        assert_eq!(shard_qualifier("select 1"), None);
    }

    #[test]
    fn targets() {
        let t = Target::parse("customer:-80@replica").unwrap();
        assert_eq!(t.keyspace.as_deref(), Some("customer"));
        assert_eq!(t.shard.as_deref(), Some("-80"));
        assert_eq!(t.tablet_type, TabletType::Replica);
        assert_eq!(t.to_string(), "customer:-80@replica");
        let t = Target::parse("customer[80-]").unwrap();
        assert_eq!(t.shard.as_deref(), Some("80-"));
        assert!(Target::parse("x@nonsense").is_err());
        assert_eq!(Target::parse("").unwrap(), Target::default());
    }

    #[test]
    fn session_value_rewrites_keep_column_names() {
        let v = SessionValues {
            database: Some("commerce"),
            last_insert_id: 42,
            row_count: -1,
            found_rows: None,
            transaction_mode: "SINGLE",
            query_timeout: 0,
            vitess: &[],
        };
        assert_eq!(
            rewrite_session_values("select row_count()", &v).unwrap(),
            "select -1 AS `row_count()`"
        );
        assert_eq!(
            rewrite_session_values("select @@transaction_mode", &v).unwrap(),
            "select 'SINGLE' AS `@@transaction_mode`"
        );
        assert_eq!(
            rewrite_session_values("select @@session.transaction_mode as m", &v).unwrap(),
            "select 'SINGLE' as m"
        );
        assert_eq!(
            rewrite_session_values("select database()", &v).unwrap(),
            "select 'commerce' AS `database()`"
        );
        assert_eq!(
            rewrite_session_values("SELECT DATABASE(), USER() limit 1", &v).unwrap(),
            "SELECT 'commerce' AS `DATABASE()`, USER() limit 1"
        );
        assert_eq!(
            rewrite_session_values("select last_insert_id() as id", &v).unwrap(),
            "select 42 as id"
        );
        assert_eq!(
            rewrite_session_values("select @@socket", &v).unwrap(),
            "select NULL AS `@@socket`"
        );
        assert_eq!(rewrite_session_values("select * from t", &v), None);
        assert_eq!(rewrite_session_values("select 'database()'", &v), None);
        // A value in a VALUES row or a call's arguments takes no alias
        // (the row's child inserted after its parent); a subquery's list
        // keeps its names.
        assert_eq!(
            rewrite_session_values("insert into t values (7, last_insert_id(), 'x')", &v).unwrap(),
            "insert into t values (7, 42, 'x')"
        );
        assert_eq!(
            rewrite_session_values("select concat(1, database(), 2)", &v).unwrap(),
            "select concat(1, 'commerce', 2)"
        );
        assert_eq!(
            rewrite_session_values("select * from (select last_insert_id(), 1) d", &v).unwrap(),
            "select * from (select 42 AS `last_insert_id()`, 1) d"
        );
    }

    #[test]
    fn params_become_literals() {
        let sql = "insert into t values (?, ?, ?, ?, '?')";
        let out = substitute_params(
            sql,
            &[
                Value::Int(-5),
                Value::Bytes(b"it's".to_vec()),
                Value::Double(1e300),
                Value::NULL,
            ],
            false,
        )
        .unwrap();
        assert_eq!(out, "insert into t values (-5, 'it\\'s', 1e300, NULL, '?')");
        assert!(substitute_params(sql, &[], false).is_err());
        assert_eq!(literal(&Value::Bytes(vec![0xff, 0]), false), "X'ff00'");
        assert_eq!(literal(&Value::Bytes(b"a'b".to_vec()), true), "'a''b'");
        for i in [i64::MIN, -10, -1, 0, 7, 10, 1_000_000_007, i64::MAX] {
            assert_eq!(literal(&Value::Int(i), false), i.to_string());
        }
        for u in [0, 9, 10, u64::MAX] {
            assert_eq!(literal(&Value::UInt(u), false), u.to_string());
        }
    }
}
