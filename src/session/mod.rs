//! One client's state and the statement loop over it: target, autocommit,
//! transactions, settings, prepared statements. Session statements (BEGIN,
//! COMMIT, SET, USE) are answered here; everything else is planned and run.

mod prepared;
mod schema_names;
mod vtgate;

use crate::fasthash::FastMap;

use mysql_common::constants::{ColumnType, StatusFlags};
use mysql_common::packets::Column;

use crate::engine::{self, QueryDone, RowSink};
use crate::error::Error;
use crate::executor::interrupt::{Killed, Timer, Why};
use crate::executor::verdicts::Verdict;
use crate::executor::{pick, Executor, ShardConns};
use crate::planner::{self, Plan};
use crate::server::ServerCtx;
use crate::sql::{self, QueryKind, SessionValues, SqlError, Statement, TabletType, Target};

/// A statement prepared by the client.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement text with `?` placeholders.
    pub sql: String,
    /// Parameter metadata sent at prepare time.
    pub params: Vec<Column>,
    /// Result column metadata sent at prepare time.
    pub columns: Vec<Column>,
    /// Parameter types bound by the last COM_STMT_EXECUTE (type, unsigned).
    pub bound_types: Vec<(ColumnType, bool)>,
    /// Data sent with COM_STMT_SEND_LONG_DATA, by parameter index.
    pub long_data: FastMap<u16, Vec<u8>>,
    /// The statement, classified at prepare time, when its executions can
    /// be planned from the parameters directly (a plain SELECT, INSERT,
    /// UPDATE or DELETE: no shard qualifier, nothing shardgate rewrites);
    /// None sends each execution through the text path.
    pub direct: Option<Statement>,
    /// A direct SELECT that leaves nothing on its connection
    /// ([`sql::shareable_read`]): executions of a session holding no state
    /// may run on a tablet's shared pipelined connections.
    pub shareable: bool,
    /// A direct SELECT that writes nowhere ([`sql::writes_nowhere`]): a
    /// transaction of such reads commits without a round trip.
    pub writes_nowhere: bool,
    /// Its `/*vt+ ... */` directives, read once.
    pub directives: sql::Directives,
    /// The plan of the last execution and what it was made for; the next
    /// execution reuses it while the VSchema, the target and the escaping
    /// mode stay the same (no tokenizing, no plan-cache lookup).
    planned: Option<PreparedPlan>,
}

/// A prepared statement's plan and the conditions it holds under.
#[derive(Debug, Clone)]
struct PreparedPlan {
    version: u64,
    target: Target,
    no_backslash_escapes: bool,
    /// Where a sharded plan's binds come from; None for plans without binds.
    shape: Option<sql::normalize::Shape>,
    plan: std::sync::Arc<Plan>,
}

/// A statement's query timeout while it runs: its milliseconds (for the
/// error) and the armed timer.
struct Timed {
    ms: u64,
    _timer: Timer,
}

/// A client session.
pub struct Session {
    /// Where statements go.
    pub target: Target,
    /// Autocommit on (the default) or off.
    pub autocommit: bool,
    /// The backend side: pinned connections, transaction, settings.
    pub shards: ShardConns,
    /// Prepared statements by id, boxed: one is taken out of the map while
    /// it runs, and a box moves as one pointer.
    pub prepared: FastMap<u32, Box<Prepared>>,
    next_stmt_id: u32,
    /// SQL's prepared statements (`PREPARE name FROM ...`), by name.
    sql_prepared: FastMap<String, prepared::SqlPrepared>,
    /// A query of the system schemas is running, its answer gathered to
    /// have its schema names put back (it is not gathered again).
    renaming_schemas: bool,
    /// What `FOUND_ROWS()` says after a `SELECT SQL_CALC_FOUND_ROWS` over
    /// shards (taken by the next statement; None: the tablet's own).
    found_rows: Option<u64>,
    /// vtgate's `SET query_timeout` (milliseconds, 0: none), over
    /// `--query-timeout`; None: the flag's.
    query_timeout: Option<u64>,
    /// The user the client logged in as: who `ALTER VSCHEMA` checks.
    pub user: String,
    /// Where plain reads go when the target names no tablet type and
    /// `--default_tablet_type` is not the primary (None: the target's).
    pub(crate) read_type: Option<TabletType>,
    /// vtgate's session variables it set (`SET workload = 'olap'`, see
    /// [`sql::VITESS_VARS`]).
    vitess_vars: Vec<(&'static str, String)>,
    /// The session's `sql_mode` holds ANSI_QUOTES: its `"..."` are names,
    /// which the gate reads as strings unless written as `` `...` ``.
    ansi_quotes: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            target: Target::default(),
            autocommit: true,
            shards: ShardConns::default(),
            prepared: FastMap::default(),
            next_stmt_id: 1,
            sql_prepared: FastMap::default(),
            renaming_schemas: false,
            found_rows: None,
            query_timeout: None,
            user: String::new(),
            read_type: None,
            vitess_vars: Vec::new(),
            ansi_quotes: false,
        }
    }
}

impl Session {
    /// Status flags for OK and EOF packets.
    pub fn status(&self) -> StatusFlags {
        let mut s = StatusFlags::empty();
        if self.autocommit {
            s |= StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        }
        if self.shards.in_txn {
            s |= StatusFlags::SERVER_STATUS_IN_TRANS;
        }
        if self.shards.no_backslash_escapes {
            s |= StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES;
        }
        s
    }

    /// Sets the target from `USE`, COM_INIT_DB or the handshake's database;
    /// an unknown keyspace is ER_BAD_DB_ERROR, as MySQL answers.
    pub fn use_target(&mut self, ctx: &ServerCtx, text: &str) -> Result<(), Error> {
        let t = Target::parse(text)?;
        if let Some(ks) = &t.keyspace {
            let snap = ctx.snapshot.load();
            let keyspace = snap
                .keyspaces
                .get(ks)
                .ok_or_else(|| planner::PlanError::UnknownKeyspace(text.to_string()))?;
            if let Some(sh) = &t.shard {
                if !keyspace.shards.iter().any(|s| &s.name == sh) {
                    return Err(planner::PlanError::UnknownShard {
                        keyspace: ks.clone(),
                        shard: sh.clone(),
                    }
                    .into());
                }
            }
        }
        self.target = t;
        self.read_type = Self::default_read_type(ctx, text);
        Ok(())
    }

    /// The tablet type a session's plain reads go to when its target,
    /// written `text`, names none: `--default_tablet_type` unless that is
    /// the primary.
    /// What a new (or reset) session takes from the server's flags beyond
    /// its target: `--mysql_default_workload`, as `@@workload` answers it.
    pub fn take_server_defaults(&mut self, ctx: &ServerCtx) {
        if let Some(workload) = &ctx.default_workload {
            self.vitess_vars.retain(|(n, _)| *n != "workload");
            self.vitess_vars.push(("workload", workload.clone()));
        }
    }

    pub fn default_read_type(ctx: &ServerCtx, text: &str) -> Option<TabletType> {
        (ctx.default_tablet_type != TabletType::Primary && !text.contains('@'))
            .then_some(ctx.default_tablet_type)
    }

    /// Whether `sql` goes to [`Self::read_type`] rather than the target's
    /// tablet type: a read that locks nothing, reads no session state and
    /// writes nowhere ([`sql::shareable_read`]), outside a transaction and
    /// on no connection the session keeps state on; everything else goes
    /// to the primary, as the session's writes must.
    fn reads_elsewhere(&self, sql: &str) -> Option<TabletType> {
        self.read_type?;
        self.reads_elsewhere_when(sql::shareable_read(sql))
    }

    /// [`Self::reads_elsewhere`] for a statement already judged a
    /// shareable read or not (a prepared statement's, judged once).
    fn reads_elsewhere_when(&self, shareable: bool) -> Option<TabletType> {
        self.read_type.filter(|_| {
            shareable && self.autocommit && !self.shards.in_txn && !self.shards.reserved
        })
    }

    /// Runs one statement (already split from a multi-statement).
    pub async fn execute<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        sql: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        if self.shards.transaction_expired() {
            let timeout = Box::pin(self.end_expired(ctx)).await;
            // The client's ROLLBACK gets what it asked for.
            if matches!(sql::classify(sql), Ok(Statement::Rollback)) {
                return sink.ok(QueryDone::default());
            }
            return Err(timeout);
        }
        let (directives, unhinted) = admitted(ctx, sql)?;
        let sql = unhinted.as_deref().unwrap_or(sql);
        if !self.vitess_vars.is_empty() {
            sink.limit_rows(sql::select_cap(sql, &self.vitess_vars));
        }
        let timed = self.begin(ctx, directives);
        // Swapped back only when swapped: a USE may have changed it.
        let res = match self.reads_elsewhere(sql) {
            None => self.execute_statement(ctx, sql, sink).await,
            Some(tt) => {
                let primary = std::mem::replace(&mut self.target.tablet_type, tt);
                let res = self.execute_statement(ctx, sql, sink).await;
                self.target.tablet_type = primary;
                res
            }
        };
        let res = self.end(timed, res);
        self.after(ctx, res).await
    }

    /// A statement starts: what its directives allow it is noted, it gets
    /// its number, and its query timeout (the statement's directive, else
    /// the session's, else `--query-timeout`) is armed. Nothing is
    /// recorded for a statement nobody can stop (no
    /// `--allow-kill-statement`, no timeout): that costs it nothing.
    fn begin(&mut self, ctx: &ServerCtx, directives: sql::Directives) -> Option<Timed> {
        self.shards.no_scatter = ctx.no_scatter && !directives.allow_scatter;
        self.shards.unbounded_rows = directives.ignore_max_memory_rows;
        self.shards.shard_autocommit = directives.multi_shard_autocommit;
        let ms = directives
            .query_timeout_ms
            .or(self.query_timeout)
            .or_else(|| ctx.sessions.query_timeout.map(|t| t.as_millis() as u64))
            .filter(|&ms| ms > 0);
        let control = self.shards.control.as_ref()?;
        self.shards.stoppable = ctx.sessions.allow_kill || ms.is_some();
        if !self.shards.stoppable {
            return None;
        }
        let n = control.begin();
        let ms = ms?;
        self.shards.timed = true;
        let after = std::time::Duration::from_millis(ms);
        Some(Timed {
            ms,
            _timer: control.arm(n, after),
        })
    }

    /// A statement ended: its timeout is disarmed, and a failure of a
    /// statement that was stopped (its tablet query killed, or no more
    /// linked) is reported as the stop, as MySQL reports a killed query.
    fn end(&mut self, timed: Option<Timed>, res: Result<(), Error>) -> Result<(), Error> {
        self.shards.timed = false;
        let Err(e) = res else { return res };
        let stopped = match &self.shards.control {
            Some(c) if self.shards.stoppable => c.stopped(),
            _ => None,
        };
        match (stopped, timed) {
            (Some(Why::TimedOut), Some(t)) => Err(Error::QueryTimeout(t.ms)),
            (Some(_), _) => Err(Error::Interrupted),
            (None, _) => Err(e),
        }
    }

    /// `KILL [CONNECTION | QUERY] id`, or COM_PROCESS_KILL: another
    /// session's (or this one's) statement stopped, and for a connection
    /// its client socket shut down; refused without
    /// `--allow-kill-statement`, as vtgate refuses it.
    pub async fn kill(&mut self, ctx: &ServerCtx, id: u64, connection: bool) -> Result<(), Error> {
        if !ctx.sessions.allow_kill {
            return Err(Error::KillDenied);
        }
        let found = match u32::try_from(id) {
            Ok(id) => ctx.sessions.kill(ctx, id, connection).await,
            Err(_) => Killed::NoSuchThread,
        };
        match found {
            Killed::Done => Ok(()),
            Killed::NoSuchThread => Err(Error::NoSuchThread(id)),
        }
    }

    /// A transaction the transaction timeout ended (its tablet connections
    /// were killed, its parts rolled back there; see
    /// [`ShardConns::transaction_expired`], one atomic load, asked before
    /// and after every statement): rolled back here too, and the error its
    /// client gets. Boxed where it is called: it is rare, and its future
    /// inlined would size every client connection's task.
    async fn end_expired(&mut self, ctx: &ServerCtx) -> Error {
        let _ = self.shards.finish_txn(ctx, false).await;
        Error::TransactionTimeout(ctx.transaction_timeout.unwrap_or_default())
    }

    /// A transaction that reached a second shard under
    /// `--transaction_mode=SINGLE` is rolled back with the statement's
    /// error, as vtgate does; one whose statement was killed to break a
    /// deadlock across shards is rolled back everywhere and the client
    /// gets ER_LOCK_DEADLOCK, as from MySQL.
    async fn after(&mut self, ctx: &ServerCtx, res: Result<(), Error>) -> Result<(), Error> {
        // Asked after every statement, so a kill that missed its
        // statement (which then ended well) marks nothing later.
        // The timeout ended the transaction while this statement ran: its
        // effects went with it.
        if self.shards.transaction_expired() {
            return Err(Box::pin(self.end_expired(ctx)).await);
        }
        let victim = self.shards.deadlock_victim();
        if res.is_err() && victim {
            let _ = self.shards.finish_txn(ctx, false).await;
            return Err(Error::Deadlock);
        }
        // A tablet's deadlock rolled its part back, as MySQL rolls back
        // the whole transaction: so do the other parts (a COMMIT would
        // otherwise commit them alone, and the client, as MySQL's, retries
        // the whole transaction).
        let deadlocked = matches!(&res, Err(e) if e.server_code() == Some(1213));
        if (deadlocked || matches!(res, Err(Error::MultiDbTransaction(_)))) && self.shards.in_txn {
            let _ = self.shards.finish_txn(ctx, false).await;
        }
        res
    }

    async fn execute_statement<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        sql: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        let quoted;
        let sql = match self
            .ansi_quotes
            .then(|| sql::ansi_names(sql, self.shards.no_backslash_escapes))
            .flatten()
        {
            Some(named) => {
                quoted = named;
                quoted.as_str()
            }
            None => sql,
        };
        // A pool's `SELECT 1` needs no tablet, as in vtgate.
        if let Some(literals) = sql::literal_select(sql) {
            return engine::literal_row(&literals, sink);
        }
        // `ks:shard`.table sends this statement to that shard, as in vtgate.
        if let Some((target, stripped)) = sql::shard_qualifier(sql) {
            let mut t = Target::parse(&target)?;
            t.tablet_type = self.target.tablet_type;
            return self.execute_as(ctx, t, &stripped, true, sink).await;
        }
        let stmt = sql::classify(sql)?;
        ddl_allowed(ctx, &stmt)?;
        // `SHOW TABLES FROM ks`, `SHOW COLUMNS FROM t FROM ks`: that
        // keyspace's tablet answers for its own database.
        if stmt == Statement::Query(QueryKind::Show) {
            if let Some((db, stripped)) = sql::show_from_database(sql) {
                if ctx.snapshot.load().keyspaces.contains_key(&db) {
                    let routed = self.qualified_target(db);
                    return self.execute_as(ctx, routed, &stripped, false, sink).await;
                }
            }
        }
        // Where its tables are: `ks.table` sends it to that keyspace,
        // qualifier removed; with no keyspace selected, the keyspace that
        // lists its tables; a join across keyspaces is planned in a
        // sharded one of them.
        let placed = self.placement(ctx, sql)?;
        if let Some(p) = placed.filter(|p| p.moves(self.target.keyspace.as_deref())) {
            let routed = self.qualified_target(p.keyspace);
            let sql = p.sql.as_deref().unwrap_or(sql);
            return self.execute_as(ctx, routed, sql, false, sink).await;
        }
        // A query of the system schemas may name a keyspace where the
        // tablet has its database (`table_schema = 'commerce'`), as vtgate
        // lets it: the tablet's own name goes down, to that keyspace, and
        // the answer names the keyspaces again (see `schema_names`).
        let named = match self.renaming_schemas {
            true => None,
            false => {
                let snap = ctx.snapshot.load();
                let ks = self.target.keyspace.as_deref();
                sql::system_schema_names(sql, ks, |n| database_of(&snap, n)).map(|named| {
                    let names = snap.keyspaces.keys();
                    let names = names.filter_map(|k| Some((database_of(&snap, k)?, k.clone())));
                    (named, names.collect::<Vec<_>>())
                })
            }
        };
        if let Some(((ks, rewritten), names)) = named {
            let routed = match ks {
                Some(ks) => self.qualified_target(ks),
                None => self.target.clone(),
            };
            let mut answer = crate::engine::Gather::new(ctx.max_memory_rows);
            self.renaming_schemas = true;
            let ran = Box::pin(self.execute_as(ctx, routed, &rewritten, false, &mut answer)).await;
            self.renaming_schemas = false;
            ran?;
            return schema_names::replay(answer, &names, sink);
        }
        match stmt {
            Statement::Begin => {
                let begin_as = sql::begin_characteristics(sql)?;
                if self.shards.in_txn {
                    self.shards.finish_txn(ctx, true).await?;
                }
                self.shards.in_txn = true;
                self.shards.begin_as = begin_as;
                sink.ok(QueryDone::default())
            }
            Statement::Savepoint(sp) => {
                Box::pin(self.savepoint(sp, sql)).await?;
                sink.ok(QueryDone::default())
            }
            Statement::Commit | Statement::Rollback => {
                self.shards
                    .finish_txn(ctx, stmt == Statement::Commit)
                    .await?;
                sink.ok(QueryDone::default())
            }
            Statement::Use(t) => {
                self.use_target(ctx, &t)?;
                sink.ok(QueryDone::default())
            }
            Statement::Set(set) => {
                if let Some(mode) = &set.transaction_mode {
                    self.set_transaction_mode(mode)?;
                }
                if let Some(ms) = set.query_timeout {
                    self.query_timeout = Some(ms);
                }
                if !set.metadata.is_empty() {
                    Box::pin(vtgate::set_metadata(ctx, &self.user, &set.metadata)).await?;
                }
                for (name, value) in set.vitess {
                    self.vitess_vars.retain(|(n, _)| *n != name);
                    self.vitess_vars.push((name, value));
                }
                if let Some((values, vars)) = &set.queried {
                    // Planned as a SELECT (over every shard it reads),
                    // its one row's values become the variables'.
                    let select = format!("SELECT {} INTO {}", values.join(", "), vars.join(", "));
                    let mut discard = crate::backend::lean::Discard;
                    Box::pin(self.execute_statement(ctx, &select, &mut discard)).await?;
                } else if let Some(rest) = &set.rest {
                    if set.global {
                        // What a clean connection holds may change with it.
                        ctx.set_verdicts.forget_all();
                        let res = self
                            .run_planned(ctx, &Statement::Query(QueryKind::Other), rest, sink)
                            .await;
                        // So may what a new connection's session says.
                        ctx.pools.defaults.forget();
                        res?;
                    } else {
                        self.set_session(ctx, rest, set.sys_vars.as_deref(), set.constant)
                            .await?;
                        if sql::contains_ci(rest, "sql_mode") {
                            Box::pin(self.learn_sql_mode(ctx)).await;
                        }
                    }
                }
                if let Some(on) = set.autocommit {
                    if on && !self.autocommit && self.shards.in_txn {
                        self.shards.finish_txn(ctx, true).await?;
                    }
                    self.autocommit = on;
                }
                if set.global && set.rest.is_some() {
                    return Ok(());
                }
                sink.ok(QueryDone::default())
            }
            Statement::ShowTransactions { dtid, keyspace } => {
                let keyspace = keyspace.or_else(|| self.target.keyspace.clone());
                let rows = Box::pin(crate::executor::twopc::transactions(
                    &ctx.twopc,
                    dtid.as_deref(),
                    keyspace.as_deref(),
                ))
                .await?;
                engine::text_result(&["id", "state", "record_time", "participants"], rows, sink)
            }
            Statement::Kill { connection, id } => {
                Box::pin(self.kill(ctx, id, connection)).await?;
                sink.ok(QueryDone::default())
            }
            Statement::VExplain {
                kind: sql::VExplainKind::Keys,
                inner,
            } => self.vexplain_keys(ctx, &inner, sink),
            Statement::VExplain { kind, inner } => {
                let queries = kind == sql::VExplainKind::Queries;
                Box::pin(self.vexplain(ctx, queries, &inner, sink)).await
            }
            Statement::ShowReplicationStatus(like) => {
                Box::pin(vtgate::replication_status(ctx, like.as_deref(), sink)).await
            }
            Statement::ShowMetadata(like) => {
                Box::pin(vtgate::show_metadata(ctx, like.as_deref(), sink)).await
            }
            Statement::NextValues {
                count,
                keyspace,
                table,
            } => {
                let own = self.target.keyspace.as_deref();
                let at = (keyspace.as_deref(), own, table.as_str());
                Box::pin(vtgate::next_values(ctx, &mut self.shards, at, count, sink)).await
            }
            Statement::ShowCreateDatabase {
                name,
                if_not_exists,
            } => Box::pin(self.show_create_database(ctx, &name, if_not_exists, sql, sink)).await,
            Statement::Database(ddl) => {
                vtgate::database_ddl(ctx, self.target.keyspace.as_deref(), &ddl)?;
                sink.ok(QueryDone::default())
            }
            Statement::AlterVschema(change) => {
                let ks = self.target.keyspace.as_deref();
                Box::pin(vtgate::alter_vschema(ctx, &self.user, ks, &change)).await?;
                sink.ok(QueryDone::default())
            }
            Statement::Prepare { name, source } => {
                Box::pin(self.sql_prepare(ctx, name, source, sink)).await
            }
            Statement::Execute { what, args } => {
                Box::pin(self.sql_execute(ctx, what, args, sink)).await
            }
            Statement::Deallocate(name) => self.sql_deallocate(name, sink),
            other => {
                let sql = match sql::rewrite_session_values(
                    sql,
                    &SessionValues {
                        database: self.target.keyspace.as_deref(),
                        last_insert_id: self.shards.last_insert_id,
                        row_count: self.shards.row_count,
                        found_rows: self.found_rows.take(),
                        transaction_mode: self
                            .shards
                            .transaction_mode
                            .unwrap_or(ctx.transaction_mode)
                            .as_str(),
                        query_timeout: self.query_timeout.unwrap_or_else(|| {
                            ctx.sessions
                                .query_timeout
                                .map_or(0, |t| t.as_millis() as u64)
                        }),
                        vitess: &self.vitess_vars,
                    },
                ) {
                    Some(s) => std::borrow::Cow::Owned(s),
                    None => std::borrow::Cow::Borrowed(sql),
                };
                self.run_planned(ctx, &other, &sql, sink).await
            }
        }
    }

    /// A savepoint statement, as vtgate keeps them: set, rolled back to
    /// or released on every tablet the transaction has reached, and set on
    /// each that joins it later. Outside a transaction a SAVEPOINT is
    /// forgotten at once and the others name nothing, as in MySQL.
    async fn savepoint(&mut self, sp: sql::Savepoint, sql: &str) -> Result<(), Error> {
        self.imply_transaction();
        let known =
            |name: &str, list: &[(String, String)]| list.iter().position(|(n, _)| n == name);
        let (name, keeps_it) = match sp {
            sql::Savepoint::Set(name) => {
                if !self.shards.in_txn {
                    return Ok(());
                }
                self.shards.on_transaction(sql).await?;
                if let Some(i) = known(&name, &self.shards.savepoints) {
                    self.shards.savepoints.remove(i);
                }
                self.shards.savepoints.push((name, sql.to_string()));
                return Ok(());
            }
            sql::Savepoint::RollbackTo(name) => (name, true),
            sql::Savepoint::Release(name) => (name, false),
        };
        let Some(i) = known(&name, &self.shards.savepoints) else {
            return Err(Error::NoSavepoint(name));
        };
        self.shards.on_transaction(sql).await?;
        // Those set after it go; ROLLBACK TO keeps the savepoint itself.
        self.shards.savepoints.truncate(i + usize::from(keeps_it));
        Ok(())
    }

    /// What the session's `sql_mode` now says of the gate's reading of its
    /// statements (ANSI_QUOTES), asked of a tablet that carries its
    /// settings: the mode may have been set from an expression
    /// (`CONCAT(@@sql_mode, ',ANSI_QUOTES')`). One round trip per SET
    /// of `sql_mode`; a tablet that cannot tell leaves the reading as it
    /// was.
    async fn learn_sql_mode(&mut self, ctx: &ServerCtx) {
        let asked = self
            .evaluate(ctx, &["@@session.sql_mode".to_string()])
            .await;
        self.ansi_quotes = match asked {
            Ok((_, row)) => row.first().is_some_and(|v| match v {
                mysql_common::value::Value::Bytes(b) => {
                    String::from_utf8_lossy(&b[..]).contains("ANSI_QUOTES")
                }
                _ => false,
            }),
            Err(_) => self.ansi_quotes,
        };
    }

    /// vtgate's `SET transaction_mode`: how far this session's
    /// transactions may reach, instead of `--transaction_mode`. Refused
    /// inside a transaction (the tablets it reached are only kept under
    /// SINGLE, and its parts begin as XA transactions under TWOPC).
    fn set_transaction_mode(&mut self, value: &str) -> Result<(), Error> {
        use crate::executor::TransactionMode;
        let mode = match value {
            "single" => TransactionMode::Single,
            "multi" => TransactionMode::Multi,
            "twopc" => TransactionMode::Twopc,
            // vtgate's name for "as the server says".
            "unspecified" | "default" => {
                self.shards.transaction_mode = None;
                return Ok(());
            }
            _ => return Err(SqlError::BadTransactionMode(value.to_string()).into()),
        };
        if self.shards.in_txn && self.shards.transaction_mode != Some(mode) {
            return Err(SqlError::TransactionModeInTransaction.into());
        }
        self.shards.transaction_mode = Some(mode);
        Ok(())
    }

    /// Applies a session SET (not autocommit): it becomes one of the
    /// session's settings, which every connection the session uses carries,
    /// unless it changes nothing on a clean connection (checked on a tablet
    /// the session reaches, while the session holds no settings yet), as
    /// vtgate checks before reserving a connection. A SET of literals
    /// ([`sql::SetStmt::constant`]) that the tablet judged lately after the
    /// same settings is answered by that verdict: no round trip.
    async fn set_session(
        &mut self,
        ctx: &ServerCtx,
        set: &str,
        sys_vars: Option<&[String]>,
        constant: bool,
    ) -> Result<(), Error> {
        let snap = ctx.snapshot.load();
        let plan = planner::plan(
            &Statement::Query(QueryKind::Other),
            None,
            &self.target,
            &snap,
        )
        .ok();
        let tablet = match &plan {
            Some(Plan::Route(r)) => Some(pick(ctx, &snap, &r.keyspace, &r.shard, r.tablet_type)?),
            _ => None,
        };
        // A sharded keyspace's settings go to every shard alike: any one
        // of them can tell.
        let checked = match (&tablet, &self.target.keyspace) {
            (None, Some(ks)) => snap
                .keyspaces
                .get(ks)
                .and_then(|k| k.shards.first())
                .and_then(|sh| pick(ctx, &snap, ks, &sh.name, self.target.tablet_type).ok()),
            _ => tablet.clone(),
        };
        // Verdicts hold for sessions that carry nothing but settings.
        let plain = !self.shards.reserved && !self.shards.in_txn;
        let clean = plain && self.shards.settings().is_empty();
        let judged = match (&checked, constant) {
            (Some((t, _)), true) => ctx
                .set_verdicts
                .get(&t.alias, self.shards.settings_key(), set),
            _ => None,
        };
        match judged {
            Some(Verdict::Noop) if clean => return Ok(()),
            Some(Verdict::Applies) if self.shards.can_defer_setting() => {
                return self.shards.defer_setting(ctx, set).await;
            }
            _ => {}
        }
        let record = |prior: &str, verdict| {
            if let (Some((t, _)), true) = (&checked, constant) {
                ctx.set_verdicts.record(&t.alias, prior, set, verdict);
            }
        };
        // Only a clean session's SET of system variables is checked (a
        // judged one needs no check); the check's verdict is the one
        // recorded for it, a SET that merely ran may have changed nothing.
        let checkable = clean && sys_vars.is_some();
        let unjudged = checkable && judged.is_none();
        if let (Some(vars), Some((t, label)), true) = (sys_vars, &checked, unjudged) {
            let verdict = self.shards.check_set(ctx, t, label, set, vars).await?;
            if let Some(v) = verdict {
                record("", v);
            }
            if verdict == Some(Verdict::Noop) {
                return Ok(());
            }
        }
        let prior = self.shards.settings_key().to_string();
        let ran = tablet.is_some();
        self.shards.apply_setting(ctx, tablet, set).await?;
        if ran && plain && !checkable && judged.is_none() {
            record(&prior, Verdict::Applies);
        }
        Ok(())
    }

    /// Plans a statement for the current target; sharded plans come from
    /// the plan cache and carry their bind values. `?` placeholders are
    /// for statements being prepared (`prepare`); in a text statement they
    /// are MariaDB's syntax error (planned, each would read as NULL).
    fn plan_for(
        &self,
        ctx: &ServerCtx,
        snap: &crate::topo::Snapshot,
        stmt: &Statement,
        sql: &str,
        prepare: bool,
    ) -> Result<(std::sync::Arc<Plan>, Vec<sql::normalize::Bind>), Error> {
        let (plan, shape) = self.plan_shape(ctx, snap, stmt, sql)?;
        if !prepare && shape.as_ref().is_some_and(|s| s.params() > 0) {
            return Err(planner::PlanError::Syntax(
                "a ? placeholder outside a prepared statement".into(),
            )
            .into());
        }
        let binds = shape
            .map(|s| {
                s.into_normalized(&[], self.shards.no_backslash_escapes)
                    .binds
            })
            .unwrap_or_default();
        Ok((plan, binds))
    }

    /// The plan of `sql` for the current target and, when it is planned
    /// from a normalized template (see [`Self::normalizes`]), its shape:
    /// the plan-cache key and where its binds come from.
    fn plan_shape(
        &self,
        ctx: &ServerCtx,
        snap: &crate::topo::Snapshot,
        stmt: &Statement,
        sql: &str,
    ) -> Result<(std::sync::Arc<Plan>, Option<sql::normalize::Shape>), Error> {
        if !self.normalizes(snap, stmt, sql) {
            let plan = planner::plan(stmt, None, &self.target, snap)?;
            return Ok((std::sync::Arc::new(plan), None));
        }
        let shape = sql::normalize::shape(sql, self.shards.no_backslash_escapes);
        let target = self.target.to_string();
        let template = shape.template.as_str();
        let plan = ctx.plans.get_or_plan(snap.version, &target, template, || {
            planner::plan(stmt, Some(template), &self.target, snap)
        })?;
        Ok((plan, Some(shape)))
    }

    /// Whether `stmt` is planned from a normalized template (a query on a
    /// sharded keyspace, or on an unsharded one naming another keyspace's
    /// tables; shard not given), so its plan is shared and cached.
    fn normalizes(&self, snap: &crate::topo::Snapshot, stmt: &Statement, sql: &str) -> bool {
        self.target.shard.is_none()
            && matches!(stmt, Statement::Query(k) if !matches!(k, QueryKind::Ddl | QueryKind::Show))
            && self
                .target
                .keyspace
                .as_ref()
                .and_then(|k| snap.keyspaces.get(k))
                .is_some_and(|k| k.sharded || planner::names_another_keyspace(sql, k, snap))
    }

    /// The plan and binds of one execution of a prepared statement: the
    /// statement's own plan while it still holds, else planned (and kept).
    fn plan_prepared(
        &self,
        ctx: &ServerCtx,
        snap: &crate::topo::Snapshot,
        stmt: &Statement,
        p: &mut Prepared,
        params: &[mysql_common::value::Value],
    ) -> Result<(std::sync::Arc<Plan>, Vec<sql::normalize::Bind>), Error> {
        let nbe = self.shards.no_backslash_escapes;
        let fresh = p.planned.as_ref().is_some_and(|c| {
            c.version == snap.version && c.no_backslash_escapes == nbe && c.target == self.target
        });
        if !fresh {
            let (plan, shape) = self.plan_shape(ctx, snap, stmt, &p.sql)?;
            p.planned = Some(PreparedPlan {
                version: snap.version,
                target: self.target.clone(),
                no_backslash_escapes: nbe,
                shape,
                plan,
            });
        }
        let c = p.planned.as_ref().expect("planned above");
        let binds = c
            .shape
            .as_ref()
            .map(|s| s.binds(params, nbe))
            .unwrap_or_default();
        Ok((c.plan.clone(), binds))
    }

    async fn run_planned<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        stmt: &Statement,
        sql: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        let snap = ctx.snapshot.load();
        let (plan, binds) = self.plan_for(ctx, &snap, stmt, sql, false)?;
        self.commit_before(ctx, stmt, sql).await?;
        // A LOCK TABLES the gate answers itself leaves nothing to keep.
        if !matches!(*plan, Plan::Ignored) {
            self.note_query(stmt);
        }
        let res = self.run_plan(ctx, &snap, &plan, sql, &binds, sink).await;
        // A DDL on a sharded keyspace (the tracker learns no other) may
        // have changed the tablets' columns: the next statement plans with
        // them (a few ms; a tablet that does not answer holds the DDL's
        // answer up for at most a second).
        if let (Statement::Query(QueryKind::Ddl), Some(schema)) = (stmt, &ctx.schema) {
            let sharded = match &*plan {
                Plan::AllShards { .. } => true,
                Plan::Route(r) => snap.keyspaces.get(&r.keyspace).is_some_and(|k| k.sharded),
                _ => false,
            };
            if sharded {
                Box::pin(schema.relearn(std::time::Duration::from_secs(1))).await;
            }
        }
        res
    }

    /// Runs a plan on this session's connections.
    async fn run_plan<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        snap: &crate::topo::Snapshot,
        plan: &Plan,
        sql: &str,
        binds: &[sql::normalize::Bind],
        sink: &mut S,
    ) -> Result<(), Error> {
        if let Plan::CalcFoundRows { limited, count } = plan {
            Box::pin(self.run_plan(ctx, snap, limited, sql, binds, sink)).await?;
            let counted = Box::pin(self.select_row(ctx, snap, count, sql, binds)).await?;
            let n = counted
                .and_then(|(_, row)| row.into_iter().next())
                .and_then(|v| match v {
                    mysql_common::value::Value::Bytes(b) => {
                        std::str::from_utf8(&b).ok()?.parse().ok()
                    }
                    mysql_common::value::Value::Int(i) => u64::try_from(i).ok(),
                    mysql_common::value::Value::UInt(u) => Some(u),
                    _ => None,
                });
            self.found_rows = n;
            return Ok(());
        }
        if let Plan::SelectInto { vars, inner } = plan {
            let row = Box::pin(self.select_row(ctx, snap, inner, sql, binds)).await?;
            let Some((columns, values)) = row else {
                // MySQL's "No data - zero rows fetched": a warning, and
                // the variables keep their values.
                return sink.ok(QueryDone {
                    warnings: 1,
                    ..QueryDone::default()
                });
            };
            if columns.len() != vars.len() {
                return Err(planner::PlanError::IntoColumnCount.into());
            }
            let nbe = self.shards.no_backslash_escapes;
            let assigned: Vec<String> = vars
                .iter()
                .zip(values.iter().zip(&columns))
                .map(|(var, (v, col))| format!("{var} = {}", engine::typed_literal(v, col, nbe)))
                .collect();
            let set = format!("SET {}", assigned.join(", "));
            let mut discard = crate::backend::lean::Discard;
            Box::pin(self.execute_statement(ctx, &set, &mut discard)).await?;
            // MariaDB's OK counts the row it read.
            return sink.ok(QueryDone {
                affected_rows: 1,
                ..QueryDone::default()
            });
        }
        let mut ex = Executor {
            ctx,
            snap,
            state: &mut self.shards,
        };
        engine::execute(
            plan,
            sql,
            binds,
            self.target.tablet_type,
            snap,
            &mut ex,
            sink,
        )
        .await
    }

    /// `SHOW CREATE DATABASE` of keyspace `name`: one shard's database as
    /// its tablet defines it, under the keyspace's name (MySQL's own
    /// schemas, and names that are none, go to a tablet as they are).
    async fn show_create_database<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        name: &str,
        if_not_exists: bool,
        sql: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        let snap = ctx.snapshot.load();
        if !snap.keyspaces.contains_key(name) {
            return self
                .run_planned(ctx, &Statement::Query(QueryKind::Show), sql, sink)
                .await;
        }
        let db = database_of(&snap, name).unwrap_or_else(|| format!("vt_{name}"));
        let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
        let asked = format!("SHOW CREATE DATABASE {guard}{}", sql::quote_ident(&db));
        let plan = Plan::AnyShard {
            keyspace: name.to_string(),
        };
        let mut got = engine::Gather::new(1);
        self.run_plan(ctx, &snap, &plan, &asked, &[], &mut got)
            .await?;
        let (from, to) = (sql::quote_ident(&db), sql::quote_ident(name));
        let rows = got.rows.into_iter().map(|row| {
            let shown = match row.get(1) {
                Some(mysql_common::value::Value::Bytes(b)) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                _ => String::new(),
            };
            vec![name.to_string(), shown.replacen(&from, &to, 1)]
        });
        engine::text_result(&["Database", "Create Database"], rows, sink)
    }

    /// The one row a `SELECT ... INTO` reads (None for none; more is
    /// MySQL's error), and its columns.
    async fn select_row(
        &mut self,
        ctx: &ServerCtx,
        snap: &crate::topo::Snapshot,
        plan: &Plan,
        sql: &str,
        binds: &[sql::normalize::Bind],
    ) -> Result<Option<(Vec<Column>, Vec<mysql_common::value::Value>)>, Error> {
        let mut got = engine::Gather::new(1);
        match self.run_plan(ctx, snap, plan, sql, binds, &mut got).await {
            Err(Error::TooManyRows(1)) => Err(planner::PlanError::TooManyRows.into()),
            Err(e) => Err(e),
            Ok(()) => Ok(got.rows.pop().map(|row| (got.columns, row))),
        }
    }

    /// A DDL (or another statement MySQL commits before, see
    /// [`sql::commits_implicitly`]) ends the open transaction first,
    /// committing every shard's part (in two phases under twopc), as
    /// MySQL's implicit commit and vtgate do; it then runs outside any
    /// transaction. Why: run inside, its tablet would commit its own part
    /// alone (MariaDB's implicit commit) and leave the others open for a
    /// later ROLLBACK to undo. A commit that fails stops the statement.
    async fn commit_before(
        &mut self,
        ctx: &ServerCtx,
        stmt: &Statement,
        sql: &str,
    ) -> Result<(), Error> {
        if !self.shards.in_txn {
            return Ok(());
        }
        let commits = match stmt {
            Statement::Query(QueryKind::Ddl) => true,
            Statement::Query(QueryKind::Other | QueryKind::Reserving | QueryKind::Maintenance) => {
                sql::commits_implicitly(sql)
            }
            _ => false,
        };
        if commits {
            self.shards.finish_txn(ctx, true).await?;
        }
        Ok(())
    }

    /// What running a query does to the session: a reserving statement
    /// keeps its connections; with autocommit off, a transaction begins.
    fn note_query(&mut self, stmt: &Statement) {
        if let Statement::Query(kind) = stmt {
            if *kind == QueryKind::Reserving {
                self.shards.reserved = true;
            }
            if *kind != QueryKind::Ddl && *kind != QueryKind::Show {
                self.imply_transaction();
            }
        }
    }

    /// With autocommit off, a statement begins a transaction.
    fn imply_transaction(&mut self) {
        if !self.autocommit && !self.shards.in_txn {
            self.shards.in_txn = true;
        }
    }

    /// Whether executions of `sql` can skip the text path (see
    /// [`Prepared::direct`]).
    fn direct_form(&self, stmt: Statement, sql: &str) -> Option<Statement> {
        let plain = matches!(
            stmt,
            Statement::Query(
                QueryKind::Select | QueryKind::Insert | QueryKind::Update | QueryKind::Delete
            )
        ) && sql::shard_qualifier(sql).is_none()
            && sql::table_refs(sql).iter().all(|r| r.qualifier.is_none())
            && sql::rewrite_session_values(
                sql,
                &SessionValues {
                    database: Some(""),
                    last_insert_id: 0,
                    row_count: 0,
                    found_rows: None,
                    transaction_mode: "",
                    query_timeout: 0,
                    vitess: &[],
                },
            )
            .is_none();
        plain.then_some(stmt)
    }

    /// Runs a client's prepared statement with its parameters. When the
    /// statement goes whole to one tablet it runs there as a prepared
    /// statement too (MariaDB skips parsing it again); a sharded plan is
    /// found from the statement and its parameters without building text;
    /// anything else runs, like vtgate, as text with the values filled in.
    pub async fn execute_prepared<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        id: u32,
        params: Vec<mysql_common::value::Value>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let Some(mut p) = self.prepared.remove(&id) else {
            return Err(Error::UnknownStmt(id.to_string(), "mysqld_stmt_execute"));
        };
        if self.shards.transaction_expired() {
            self.prepared.insert(id, p);
            return Err(Box::pin(self.end_expired(ctx)).await);
        }
        if !self.vitess_vars.is_empty() {
            sink.limit_rows(sql::select_cap(&p.sql, &self.vitess_vars));
        }
        let timed = self.begin(ctx, p.directives);
        let res = match self.reads_elsewhere_when(p.shareable) {
            None => self.run_prepared(ctx, &mut p, params, sink).await,
            Some(tt) => {
                let primary = std::mem::replace(&mut self.target.tablet_type, tt);
                let res = self.run_prepared(ctx, &mut p, params, sink).await;
                self.target.tablet_type = primary;
                res
            }
        };
        let res = self.end(timed, res);
        self.prepared.insert(id, p);
        self.after(ctx, res).await
    }

    async fn run_prepared<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        p: &mut Prepared,
        params: Vec<mysql_common::value::Value>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let snap = ctx.snapshot.load();
        // Routing rules may send its tables elsewhere: the text path
        // places it.
        let direct = self.target.keyspace.is_some() && snap.routing_rules.is_empty();
        let Some(stmt) = p.direct.clone().filter(|_| direct) else {
            drop(snap);
            let text = if params.is_empty() {
                p.sql.clone()
            } else {
                sql::substitute_params(&p.sql, &params, self.shards.no_backslash_escapes)?
            };
            // Boxed: the text path's future is large and this one rare.
            return Box::pin(self.execute(ctx, &text, sink)).await;
        };
        let (plan, binds) = self.plan_prepared(ctx, &snap, &stmt, p, &params)?;
        self.note_query(&stmt);
        let stmt_sql = p.sql.as_str();
        if let Some((ks, shard, tt)) =
            engine::whole_shard(&plan, &binds, self.target.tablet_type, &snap)?
        {
            let mut ex = Executor {
                ctx,
                snap: &snap,
                state: &mut self.shards,
            };
            return ex
                .execute_shard_prepared(
                    ks,
                    &shard,
                    tt,
                    stmt_sql,
                    p.shareable,
                    p.writes_nowhere,
                    params,
                    sink,
                )
                .await;
        }
        // Sharded plans carry their statement text with the binds; the rest
        // run the text with the values filled in.
        let text = match &*plan {
            Plan::Select(_) | Plan::Insert(_) | Plan::Dml(_) | Plan::Join(_) | Plan::Pullout(_) => {
                std::borrow::Cow::Borrowed(stmt_sql)
            }
            _ => std::borrow::Cow::Owned(sql::substitute_params(
                stmt_sql,
                &params,
                self.shards.no_backslash_escapes,
            )?),
        };
        self.run_plan(ctx, &snap, &plan, &text, &binds, sink).await
    }

    /// VEXPLAIN PLAN prints the plan; VEXPLAIN QUERIES runs the statement
    /// and lists every query sent to a shard.
    /// `VEXPLAIN KEYS`: the columns the statement uses, by table, with its
    /// names placed in the keyspace its tables are in (else the session's).
    fn vexplain_keys<S: RowSink>(
        &self,
        ctx: &ServerCtx,
        inner: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        let snap = ctx.snapshot.load();
        let placed = planner::place::place(inner, &self.target, &snap)?;
        let (ks, sql) = match &placed {
            Some(p) => (Some(p.keyspace.as_str()), p.sql.as_deref().unwrap_or(inner)),
            None => (self.target.keyspace.as_deref(), inner),
        };
        let ks = ks
            .and_then(|k| snap.keyspaces.get(k))
            .ok_or(planner::PlanError::NoDatabase)?;
        let keys = planner::keys::keys(sql, ks, &snap)?;
        sink.columns(&[engine::text_column("ColumnUsage")])?;
        sink.row(&[mysql_common::value::Value::Bytes(
            keys.to_json().into_bytes(),
        )])?;
        sink.end_rows(0)
    }

    async fn vexplain<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        queries: bool,
        inner: &str,
        sink: &mut S,
    ) -> Result<(), Error> {
        if let Some(literals) = sql::literal_select(inner) {
            return literal_vexplain(queries, &literals, sink);
        }
        let stmt = sql::classify(inner)?;
        if !matches!(stmt, Statement::Query(_)) {
            return Err(
                planner::PlanError::Unsupported("VEXPLAIN of a session statement".into()).into(),
            );
        }
        let snap = ctx.snapshot.load();
        let (plan, binds) = self.plan_for(ctx, &snap, &stmt, inner, false)?;
        if !queries {
            return json_result(&plan.describe(), sink);
        }
        let mut ex = crate::executor::Logging {
            inner: Executor {
                ctx,
                snap: &snap,
                state: &mut self.shards,
            },
            log: Vec::new(),
        };
        let mut discard = crate::engine::ColumnsOnly::default();
        engine::execute(
            &plan,
            inner,
            &binds,
            self.target.tablet_type,
            &snap,
            &mut ex,
            &mut discard,
        )
        .await?;
        sink.columns(&vexplain_queries_columns())?;
        for (i, (ks, shard, q)) in ex.log.iter().enumerate() {
            let row: Vec<mysql_common::value::Value> =
                [i.to_string(), ks.clone(), shard.clone(), q.clone()]
                    .into_iter()
                    .map(|s| mysql_common::value::Value::Bytes(s.into_bytes()))
                    .collect();
            sink.row(&row)?;
        }
        sink.end_rows(0)
    }

    /// Runs one statement with another target (optionally validated first),
    /// then restores the session's own.
    async fn execute_as<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        target: Target,
        sql: &str,
        validate: bool,
        sink: &mut S,
    ) -> Result<(), Error> {
        if validate {
            let saved = self.target.clone();
            self.use_target(ctx, &target.to_string())?;
            self.target = saved;
        }
        let saved = std::mem::replace(&mut self.target, target);
        let r = Box::pin(self.execute(ctx, sql, sink)).await;
        self.target = saved;
        r
    }

    /// Where a statement is planned when not as written under the
    /// session's target (see [`planner::place`]). A join across keyspaces
    /// is placed even where it is written, so PREPARE knows it.
    fn placement(
        &self,
        ctx: &ServerCtx,
        sql: &str,
    ) -> Result<Option<planner::place::Placement>, Error> {
        let snap = ctx.snapshot.load();
        let placed = planner::place::place(sql, &self.target, &snap)?;
        Ok(placed.filter(|p| p.moves(self.target.keyspace.as_deref()) || p.across))
    }

    /// The target a `ks.table` statement runs under: keyspace `ks`, keeping
    /// the session's shard when it already targets `ks`.
    fn qualified_target(&self, ks: String) -> Target {
        let shard = self
            .target
            .shard
            .clone()
            .filter(|_| self.target.keyspace.as_deref() == Some(ks.as_str()));
        Target {
            keyspace: Some(ks),
            shard,
            tablet_type: self.target.tablet_type,
        }
    }

    /// Prepares a statement: learns its metadata from the tablet it would
    /// run on (statements shardgate answers itself need no tablet).
    pub async fn prepare(&mut self, ctx: &ServerCtx, sql: &str) -> Result<(u32, &Prepared), Error> {
        let (directives, unhinted) = admitted(ctx, sql)?;
        let sql = unhinted.as_deref().unwrap_or(sql);
        let named = self
            .ansi_quotes
            .then(|| sql::ansi_names(sql, self.shards.no_backslash_escapes))
            .flatten();
        let sql = named.as_deref().unwrap_or(sql);
        let stmt = sql::classify(sql)?;
        prepared::not_nested(&stmt)?;
        ddl_allowed(ctx, &stmt)?;
        let (params, columns) = self.described(ctx, &stmt, sql).await?;
        let id = self.next_stmt_id;
        self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
        self.prepared.insert(
            id,
            Box::new(Prepared {
                sql: sql.to_string(),
                params,
                columns,
                bound_types: Vec::new(),
                long_data: FastMap::default(),
                shareable: matches!(stmt, Statement::Query(QueryKind::Select))
                    && sql::shareable_read(sql),
                writes_nowhere: matches!(stmt, Statement::Query(QueryKind::Select))
                    && sql::writes_nowhere(sql),
                direct: self.direct_form(stmt, sql),
                directives,
                planned: None,
            }),
        );
        Ok((id, &self.prepared[&id]))
    }

    /// Parameter and column metadata of `sql` where it runs: what a
    /// prepared statement tells its client, and its check (the tablet's
    /// parser and names, or the planner's).
    async fn described(
        &mut self,
        ctx: &ServerCtx,
        stmt: &Statement,
        sql: &str,
    ) -> Result<(Vec<Column>, Vec<Column>), Error> {
        match self.placement(ctx, sql)? {
            // No one tablet holds a join across keyspaces: its columns come
            // with each execution's result.
            Some(p) if p.across => Ok((placeholder_columns(sql::count_placeholders(sql)), vec![])),
            Some(p) => {
                let routed = self.qualified_target(p.keyspace);
                let saved = std::mem::replace(&mut self.target, routed);
                let r = self
                    .metadata(ctx, stmt, p.sql.as_deref().unwrap_or(sql))
                    .await;
                self.target = saved;
                r
            }
            None => self.metadata(ctx, stmt, sql).await,
        }
    }

    /// Parameter and column metadata of `sql` under the session's target.
    async fn metadata(
        &mut self,
        ctx: &ServerCtx,
        stmt: &Statement,
        sql: &str,
    ) -> Result<(Vec<Column>, Vec<Column>), Error> {
        Ok(match stmt {
            Statement::Query(_) => {
                let snap = ctx.snapshot.load();
                let (plan, _) = self.plan_for(ctx, &snap, stmt, sql, true)?;
                // Where the statement would run; sharded ones learn their
                // metadata from the keyspace's first shard.
                let on = match &*plan {
                    Plan::Route(r) => Some((r.keyspace.clone(), r.shard.clone(), r.tablet_type)),
                    Plan::Show(_) => None,
                    _ => {
                        let ks = self.target.keyspace.clone().unwrap_or_default();
                        let shard = snap
                            .keyspaces
                            .get(&ks)
                            .and_then(|k| k.shards.first())
                            .map(|s| s.name.clone())
                            .unwrap_or_default();
                        Some((ks, shard, self.target.tablet_type))
                    }
                };
                match on {
                    Some((ks, shard, tt)) => {
                        let mut ex = Executor {
                            ctx,
                            snap: &snap,
                            state: &mut self.shards,
                        };
                        ex.describe(&ks, &shard, tt, sql).await?
                    }
                    None => (placeholder_columns(sql::count_placeholders(sql)), vec![]),
                }
            }
            _ => (placeholder_columns(sql::count_placeholders(sql)), vec![]),
        })
    }

    /// Ends the session: rolls back and returns connections clean.
    pub async fn close(&mut self, ctx: &ServerCtx) {
        self.shards.release_all(ctx).await;
    }
}

/// The database keyspace `ks`'s tablets keep its tables in.
fn database_of(snap: &crate::topo::Snapshot, ks: &str) -> Option<String> {
    snap.keyspaces.get(ks)?;
    snap.tablets
        .values()
        .find(|t| t.keyspace == ks)
        .map(|t| t.db_name.clone())
}

fn placeholder_columns(n: usize) -> Vec<Column> {
    (0..n)
        .map(|_| {
            Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
                .with_name(b"?")
                .with_character_set(63)
        })
        .collect()
}

/// VEXPLAIN QUERIES's columns.
fn vexplain_queries_columns() -> Vec<Column> {
    ["#", "keyspace", "shard", "query"]
        .iter()
        .map(|n| engine::text_column(n))
        .collect()
}

/// VEXPLAIN of `SELECT 1`: vtgate's plan for it (a projection over a
/// single row, no route), and no query to any tablet.
fn literal_vexplain<S: RowSink>(
    queries: bool,
    literals: &[&str],
    sink: &mut S,
) -> Result<(), Error> {
    if queries {
        sink.columns(&vexplain_queries_columns())?;
        return sink.end_rows(0);
    }
    let plan = serde_json::json!({
        "operator": "Projection",
        "expressions": literals.iter().map(|l| format!("{l} as {l}")).collect::<Vec<_>>(),
        "inputs": [{"operator": "SingleRow"}],
    });
    json_result(&plan, sink)
}

/// VEXPLAIN PLAN's answer: one `JSON` column, one row.
fn json_result<S: RowSink>(plan: &serde_json::Value, sink: &mut S) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(plan).unwrap_or_default();
    sink.columns(&[engine::text_column("JSON")])?;
    sink.row(&[mysql_common::value::Value::Bytes(text.into_bytes())])?;
    sink.end_rows(0)
}

/// A client's statement as the session takes it in, text or prepared:
/// its directives, refused when longer than `--max_payload_size` (vtgate's
/// error) unless it says `/*vt+ IGNORE_MAX_PAYLOAD_SIZE */`, and its text
/// with its executable comments opened and without vtgate's vindex hints,
/// when it had any.
fn admitted(ctx: &ServerCtx, sql: &str) -> Result<(sql::Directives, Option<String>), Error> {
    let directives = sql::directives(sql);
    if let Some(max) = ctx.max_payload_size {
        if sql.len() > max && !directives.ignore_max_payload_size {
            return Err(Error::PayloadTooLarge);
        }
    }
    let opened = sql::lexer::open_executable_comments(sql, &ctx.server_version);
    let text = opened.as_deref().unwrap_or(sql);
    Ok((directives, sql::strip_vindex_hints(text).or(opened)))
}

/// `--enable_direct_ddl=false`: schema changes are refused at the gate.
fn ddl_allowed(ctx: &ServerCtx, stmt: &Statement) -> Result<(), Error> {
    if !ctx.direct_ddl && *stmt == Statement::Query(QueryKind::Ddl) {
        return Err(Error::DirectDdlDisabled);
    }
    Ok(())
}
