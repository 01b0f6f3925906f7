//! The real [`VCursor`]: resolves a shard to a tablet through the gateway,
//! takes a connection (the session's pinned one, or one from the pool),
//! streams the tablet's results into the sink, and wraps errors with their
//! target (`commerce.0.primary`).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use mysql_common::constants::StatusFlags;
use mysql_common::packets::Column;

use crate::backend::lean::RunError;
use crate::engine::{
    QueryDone, RowSink, RowStream, ScatterConsumer, ShardResult, ShardStreams, VCursor,
};
use crate::error::Error;
use crate::server::ServerCtx;
use crate::sql::TabletType;
use crate::topo::{Snapshot, Tablet};

/// A backend connection held by a session beyond one statement.
pub struct ShardConn {
    /// The tablet it is connected to.
    pub alias: String,
    /// The connection.
    pub conn: Conn,
    /// A transaction is open on it.
    pub in_txn: bool,
}

/// The backend side of a session: which connections it holds and why.
#[derive(Default)]
pub struct ShardConns {
    /// Pinned connections, at most one per tablet.
    pub conns: Vec<ShardConn>,
    /// The session is inside a transaction: new connections begin one.
    pub in_txn: bool,
    /// SET statements to replay on every connection the session pins.
    pub settings: Vec<String>,
    /// The session left state on a connection (temporary tables, locks,
    /// settings): keep every connection until the session ends.
    pub reserved: bool,
    /// LAST_INSERT_ID() as the client should see it.
    pub last_insert_id: u64,
    /// The last tablet status said NO_BACKSLASH_ESCAPES is on.
    pub no_backslash_escapes: bool,
    /// Clean pooled connections kept between statements, at most one per
    /// tablet and [`STICKY_PER_SESSION`] in all (session affinity, within
    /// the server's budget), so a busy client does not go through the pool
    /// for every statement, even when its statements go to several shards.
    pub sticky: Vec<Sticky>,
    /// Lean connections (see [`crate::backend::lean`]) the session keeps
    /// for statements that go whole to one tablet, at most one
    /// per tablet and [`STICKY_PER_SESSION`] in all, within the same budget
    /// as sticky ones.
    pub lean: Vec<LeanHeld>,
}

/// A lean connection a session holds, and its unit of the budget.
pub struct LeanHeld {
    handle: crate::backend::LeanHandle,
    _permit: StickyPermit,
}

/// A pooled connection a session keeps while it is busy.
pub struct Sticky {
    alias: String,
    conn: Conn,
    since: std::time::Instant,
    _permit: StickyPermit,
}

/// One unit of the server's sticky-connection budget, returned on drop.
pub struct StickyPermit(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl StickyPermit {
    /// Takes a unit of `budget` if one is left.
    pub fn take(budget: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Option<Self> {
        use std::sync::atomic::Ordering;
        budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| StickyPermit(budget.clone()))
    }
}

impl Drop for StickyPermit {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// How many tablets a session keeps a sticky connection to.
pub const STICKY_PER_SESSION: usize = 4;

/// How long a session's lean connection may sit unused before it is
/// checked for a server-side close before use.
const LIVENESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a sticky connection may sit unused before the pool gets it back
/// (it may have been closed by the server meanwhile).
const STICKY_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// A shard's target as errors name it (`commerce.0.primary`); formatted
/// only when an error needs it.
#[derive(Clone, Copy)]
struct Label<'s>(&'s str, &'s str, TabletType);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2.as_str())
    }
}

fn backend<T: std::fmt::Display + ?Sized>(target: &T) -> impl Fn(mysql_async::Error) -> Error + '_ {
    move |source| Error::Backend {
        target: target.to_string(),
        source,
    }
}

impl ShardConns {
    fn pinned(&self, alias: &str) -> Option<usize> {
        self.conns.iter().position(|c| c.alias == alias)
    }

    /// Takes a new connection for `tablet`, replaying settings and opening a
    /// transaction as the session requires; pins it when it must stay.
    async fn checkout(
        &mut self,
        ctx: &ServerCtx,
        tablet: &Tablet,
        label: &(dyn std::fmt::Display + Sync),
    ) -> Result<(ShardConn, bool), Error> {
        // Expired ones go back to the pool (the server may have closed them).
        self.sticky.retain(|s| s.since.elapsed() < STICKY_IDLE);
        let sticky = self
            .sticky
            .iter()
            .position(|s| s.alias == tablet.alias)
            .map(|i| self.sticky.swap_remove(i));
        let (alias, mut conn) = match sticky {
            Some(s) => (s.alias, s.conn),
            None => (
                tablet.alias.clone(),
                ctx.pools
                    .get(tablet)
                    .get_conn()
                    .await
                    .map_err(backend(label))?,
            ),
        };
        for s in &self.settings {
            conn.query_drop(s).await.map_err(backend(label))?;
        }
        if self.in_txn {
            conn.query_drop("BEGIN").await.map_err(backend(label))?;
        }
        let sc = ShardConn {
            alias,
            conn,
            in_txn: self.in_txn,
        };
        Ok((sc, self.in_txn || self.reserved))
    }

    /// Applies a new session setting: on every pinned connection, and on a
    /// new pinned connection to `tablet` if there is none, then remembers it
    /// for connections pinned later.
    pub async fn apply_setting(
        &mut self,
        ctx: &ServerCtx,
        tablet: Option<(&Tablet, String)>,
        set: &str,
    ) -> Result<(), Error> {
        for sc in &mut self.conns {
            sc.conn.query_drop(set).await.map_err(backend(&sc.alias))?;
        }
        if let Some((tablet, label)) = tablet {
            if self.pinned(&tablet.alias).is_none() {
                let (mut sc, _) = self.checkout(ctx, tablet, &label).await?;
                sc.conn.query_drop(set).await.map_err(backend(&label))?;
                self.no_backslash_escapes = no_backslash(&sc.conn);
                self.conns.push(sc);
            }
        }
        self.settings.push(set.to_string());
        self.reserved = true;
        Ok(())
    }

    /// Ends the transaction on every shard it touched.
    pub async fn finish_txn(&mut self, commit: bool) -> Result<(), Error> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        let mut first_err = None;
        let mut broken = Vec::new();
        for (i, sc) in self.conns.iter_mut().enumerate() {
            if sc.in_txn {
                if let Err(e) = sc.conn.query_drop(sql).await {
                    let e = Error::Backend {
                        target: sc.alias.clone(),
                        source: e,
                    };
                    if e.breaks_backend_conn() {
                        broken.push(i);
                    }
                    first_err.get_or_insert(e);
                }
                sc.in_txn = false;
            }
        }
        for i in broken.into_iter().rev() {
            self.conns.remove(i);
        }
        self.in_txn = false;
        if !self.reserved {
            self.conns.clear();
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Keeps a clean connection for the next statement, if the budget allows.
    /// The least recently used one makes room when the session holds its
    /// share or the budget is spent.
    fn keep(&mut self, ctx: &ServerCtx, alias: String, conn: Conn) {
        let permit = match self.sticky.iter().position(|s| s.alias == alias) {
            Some(i) => Some(self.sticky.swap_remove(i)._permit),
            None if self.sticky.len() < STICKY_PER_SESSION => {
                StickyPermit::take(&ctx.sticky_budget).or_else(|| self.evict_oldest())
            }
            None => self.evict_oldest(),
        };
        if let Some(permit) = permit {
            self.sticky.push(Sticky {
                alias,
                conn,
                since: std::time::Instant::now(),
                _permit: permit,
            });
        }
    }

    fn evict_oldest(&mut self) -> Option<StickyPermit> {
        let i = (0..self.sticky.len()).min_by_key(|&i| self.sticky[i].since)?;
        Some(self.sticky.swap_remove(i)._permit)
    }

    /// A lean connection to `tablet` for a statement that may use one: the
    /// session's own, or one from the pools when the budget allows. None
    /// sends the statement the driver's way.
    async fn take_lean(&mut self, ctx: &ServerCtx, tablet: &Tablet) -> Option<LeanHeld> {
        self.lean.retain(|l| !l.handle.idle_for(STICKY_IDLE));
        if let Some(i) = self
            .lean
            .iter()
            .position(|l| l.handle.alias() == tablet.alias)
        {
            let mut held = self.lean.swap_remove(i);
            // A connection used within the last second is alive; an older
            // one is checked (one non-blocking read) and replaced if dead.
            if !held.handle.idle_for(LIVENESS_AFTER) || !held.handle.conn.is_closed() {
                return Some(held);
            }
        }
        let permit = StickyPermit::take(&ctx.sticky_budget)?;
        let handle = ctx.pools.lean(tablet).await?;
        Some(LeanHeld {
            handle,
            _permit: permit,
        })
    }

    /// Keeps a lean connection for the session's next statement; beyond
    /// [`STICKY_PER_SESSION`] the oldest goes back to the pools.
    fn keep_lean(&mut self, ctx: &ServerCtx, mut held: LeanHeld) {
        held.handle.touch();
        if self.lean.len() >= STICKY_PER_SESSION {
            let old = self.lean.remove(0);
            ctx.pools.put_lean(old.handle);
        }
        self.lean.push(held);
    }

    /// Returns every connection clean to its pool (session end).
    pub async fn release_all(&mut self, ctx: &ServerCtx) {
        for held in self.lean.drain(..) {
            ctx.pools.put_lean(held.handle);
        }
        self.sticky.clear();
        for mut sc in self.conns.drain(..) {
            let clean = (!sc.in_txn || sc.conn.query_drop("ROLLBACK").await.is_ok())
                && (!self.reserved || sc.conn.reset().await.is_ok());
            if !clean {
                let _ = sc.conn.disconnect().await;
            }
        }
        self.in_txn = false;
    }
}

/// A VCursor over one statement's snapshot and the session's connections.
pub struct Executor<'a> {
    /// Shared server state (pools, gateway).
    pub ctx: &'a ServerCtx,
    /// The snapshot this statement loaded.
    pub snap: &'a Snapshot,
    /// The session's backend side.
    pub state: &'a mut ShardConns,
}

fn no_backslash(conn: &Conn) -> bool {
    conn.last_ok_packet().is_some_and(|ok| {
        ok.status_flags()
            .contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES)
    })
}

impl<'a> Executor<'a> {
    /// Takes the session's connection to `tablet` out of the session if it is
    /// pinned, or checks one out; true when it must go back to the session.
    async fn take_conn(
        &mut self,
        tablet: &Tablet,
        label: &(dyn std::fmt::Display + Sync),
    ) -> Result<(ShardConn, bool), Error> {
        if let Some(i) = self.state.pinned(&tablet.alias) {
            return Ok((self.state.conns.remove(i), true));
        }
        self.state.checkout(self.ctx, tablet, label).await
    }

    /// Gives a connection back after a statement: pinned ones to the session,
    /// a clean pooled one to the sticky slot when `sticky`, broken ones to
    /// nobody (dropping them closes them).
    fn return_conn(&mut self, sc: ShardConn, pinned: bool, broken: bool, sticky: bool) {
        if broken {
            return;
        }
        self.state.no_backslash_escapes = no_backslash(&sc.conn);
        if pinned {
            self.state.conns.push(sc);
        } else if sticky {
            self.state.keep(self.ctx, sc.alias, sc.conn);
        }
    }

    /// Picks the tablet and its label for a shard.
    pub fn tablet(
        &self,
        ks: &str,
        shard: &str,
        tt: TabletType,
    ) -> Result<(&'a Tablet, String), Error> {
        let t = self.ctx.gateway.pick(self.snap, ks, shard, tt)?;
        Ok((t, Label(ks, shard, tt).to_string()))
    }

    /// Prepares `sql` on the shard's tablet to learn its parameter and column
    /// metadata, then closes it there (execution runs as text).
    pub async fn describe(
        &mut self,
        ks: &str,
        shard: &str,
        tt: TabletType,
        sql: &str,
    ) -> Result<(Vec<Column>, Vec<Column>), Error> {
        let (tablet, label) = self.tablet(ks, shard, tt)?;
        let tablet = tablet.clone();
        let mut owned;
        let conn = match self.state.pinned(&tablet.alias) {
            Some(i) => &mut self.state.conns[i].conn,
            None => {
                owned = self
                    .ctx
                    .pools
                    .get(&tablet)
                    .get_conn()
                    .await
                    .map_err(backend(&label))?;
                &mut owned
            }
        };
        let stmt = conn.prep(sql).await.map_err(backend(&label))?;
        let out = (stmt.params().to_vec(), stmt.columns().to_vec());
        let _ = conn.close(stmt).await;
        Ok(out)
    }
}

/// A shard query with the connection it runs on: (target label, connection,
/// whether it goes back to the session, SQL).
type Job = (String, ShardConn, bool, String);

impl Executor<'_> {
    /// Takes a connection for each shard query (pinned or from the pool);
    /// stops at the first failure and says so.
    async fn take_all(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> (Vec<Job>, Option<Error>) {
        let mut jobs: Vec<Job> = Vec::with_capacity(queries.len());
        for (shard, sql) in queries {
            let (tablet, label) = match self.tablet(keyspace, &shard, tablet_type) {
                Ok((t, l)) => (t, l),
                Err(e) => return (jobs, Some(e)),
            };
            match self.take_conn(tablet, &label).await {
                Ok((sc, pinned)) => jobs.push((label, sc, pinned, sql)),
                Err(e) => return (jobs, Some(e)),
            }
        }
        (jobs, None)
    }

    /// Puts pinned connections back after a multi-shard statement; pooled
    /// ones go back to the pool when dropped.
    fn return_all(&mut self, jobs: Vec<Job>, broken: impl Fn(usize) -> bool) {
        for (i, (_, sc, keep, _)) in jobs.into_iter().enumerate() {
            if keep {
                self.return_conn(sc, true, broken(i), false);
            }
        }
    }
}

impl VCursor for Executor<'_> {
    async fn stream_multi<C: ScatterConsumer + Send>(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
        consumer: &mut C,
    ) -> Result<(), Error> {
        use futures_util::StreamExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (mut jobs, failed) = self.take_all(keyspace, tablet_type, queries).await;
        let broken: Vec<AtomicBool> = jobs.iter().map(|_| AtomicBool::new(false)).collect();
        let res = match failed {
            Some(e) => Err(e),
            None => {
                // Start every shard's query, then hand the row streams over.
                let started = futures_util::future::join_all(jobs.iter_mut().zip(&broken).map(
                    |((label, sc, _, sql), broken)| async move {
                        let label: &str = label;
                        let fail = move |source: mysql_async::Error| {
                            let e = backend(label)(source);
                            if e.breaks_backend_conn() {
                                broken.store(true, Ordering::Relaxed);
                            }
                            e
                        };
                        let result = sc.conn.query_iter(sql.as_str()).await.map_err(fail)?;
                        let stream = result.stream_and_drop::<Row>().await.map_err(fail)?;
                        Ok::<_, Error>(stream.map(|st| {
                            let cols = st.columns_ref().to_vec();
                            let rows: RowStream<'_> =
                                Box::pin(st.map(move |r| r.map(Row::unwrap).map_err(fail)));
                            (cols, rows)
                        }))
                    },
                ))
                .await;
                let mut streams = ShardStreams {
                    columns: Vec::new(),
                    streams: Vec::with_capacity(started.len()),
                };
                let mut first_err = None;
                for s in started {
                    match s {
                        Ok(Some((cols, rows))) => {
                            if streams.columns.is_empty() {
                                streams.columns = cols;
                            }
                            streams.streams.push(rows);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                match first_err {
                    Some(e) => Err(e),
                    None => consumer.consume(streams).await,
                }
            }
        };
        self.return_all(jobs, |i| broken[i].load(Ordering::Relaxed));
        res
    }

    async fn execute_multi(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> Result<Vec<ShardResult>, Error> {
        // Run all queries concurrently on their shards' connections.
        let (mut jobs, failed) = self.take_all(keyspace, tablet_type, queries).await;
        let results = if failed.is_none() {
            futures_util::future::join_all(jobs.iter_mut().map(|(label, sc, _, sql)| async move {
                collect(&mut sc.conn, sql).await.map_err(backend(label))
            }))
            .await
        } else {
            Vec::new()
        };
        let broken: Vec<bool> = results
            .iter()
            .map(|r| matches!(r, Err(e) if e.breaks_backend_conn()))
            .collect();
        self.return_all(jobs, |i| broken.get(i).copied().unwrap_or(false));
        let mut out = Vec::with_capacity(results.len());
        let mut first_err = failed;
        for r in results {
            match r {
                Ok(res) => out.push(res),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    async fn next_sequence(
        &mut self,
        keyspace: &str,
        table: &str,
        count: u64,
    ) -> Result<u64, Error> {
        let key = (keyspace.to_string(), table.to_string());
        let mut seqs = self.ctx.sequences.lock().await;
        if let Some((next, end)) = seqs.get_mut(&key) {
            if *next + count <= *end {
                let first = *next;
                *next += count;
                return Ok(first);
            }
        }
        // Reserve a new block on the sequence keyspace's primary, in one transaction.
        let shard = self
            .snap
            .keyspaces
            .get(keyspace)
            .and_then(|k| k.shards.first())
            .map(|s| s.name.clone())
            .ok_or_else(|| crate::planner::PlanError::UnknownKeyspace(keyspace.to_string()))?;
        let (tablet, label) = self.tablet(keyspace, &shard, TabletType::Primary)?;
        let tablet = tablet.clone();
        let mut conn = self
            .ctx
            .pools
            .get(&tablet)
            .get_conn()
            .await
            .map_err(backend(&label))?;
        let t = table.replace('`', "``");
        let reserve = async {
            conn.query_drop("BEGIN").await?;
            let row: Option<(u64, u64)> = conn
                .query_first(format!(
                    "SELECT next_id, cache FROM `{t}` WHERE id = 0 FOR UPDATE"
                ))
                .await?;
            Ok::<_, mysql_async::Error>(row)
        };
        let row = match reserve.await {
            Ok(r) => r,
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(backend(&label)(e));
            }
        };
        let Some((next_id, cache)) = row else {
            let _ = conn.query_drop("ROLLBACK").await;
            return Err(Error::Plan(crate::planner::PlanError::Unsupported(
                format!("sequence table {keyspace}.{table} has no row with id 0"),
            )));
        };
        let block = cache.max(count).max(1);
        let update = format!(
            "UPDATE `{t}` SET next_id = {} WHERE id = 0",
            next_id + block
        );
        if let Err(e) = async {
            conn.query_drop(update).await?;
            conn.query_drop("COMMIT").await
        }
        .await
        {
            let _ = conn.query_drop("ROLLBACK").await;
            return Err(backend(&label)(e));
        }
        seqs.insert(key, (next_id + count, next_id + block));
        Ok(next_id)
    }

    fn set_last_insert_id(&mut self, id: u64) {
        self.state.last_insert_id = id;
    }

    async fn execute_shard<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        sql: &str,
        rename_db_columns: bool,
        sink: &mut S,
    ) -> Result<(), Error> {
        self.on_shard(
            keyspace,
            shard,
            tablet_type,
            rename_db_columns,
            sql,
            None,
            sink,
        )
        .await
    }
}

impl Executor<'_> {
    /// Runs a client's prepared statement as a prepared statement on the
    /// shard's tablet (prepared once per backend connection, then cached):
    /// the tablet skips parsing and rows come back typed, for the client's
    /// binary protocol.
    pub async fn execute_shard_prepared<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        sql: &str,
        params: Vec<mysql_common::value::Value>,
        sink: &mut S,
    ) -> Result<(), Error> {
        self.on_shard(keyspace, shard, tablet_type, false, sql, Some(params), sink)
            .await
    }

    /// One statement on one shard's tablet, as text or (with `params`) as a
    /// prepared statement, streamed into the sink.
    #[allow(clippy::too_many_arguments)]
    async fn on_shard<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        rename_db_columns: bool,
        sql: &str,
        params: Option<Vec<mysql_common::value::Value>>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let tablet = self
            .ctx
            .gateway
            .pick(self.snap, keyspace, shard, tablet_type)?;
        let label = Label(keyspace, shard, tablet_type);
        // A session holding no state on that tablet, and a sink that writes
        // the client's protocol as the tablet answers it (binary for a
        // prepared statement, text for a query): a lean connection forwards
        // the tablet's packets as they are.
        let clean = !self.state.in_txn
            && !self.state.reserved
            && !rename_db_columns
            && self.state.pinned(&tablet.alias).is_none();
        if clean && sink.packets(params.is_some()).is_some() {
            // A connection that failed before the statement was written (it
            // died since its last use) is dropped and the statement sent
            // once more on another.
            for attempt in 0..2 {
                let Some(mut held) = self.state.take_lean(self.ctx, tablet).await else {
                    break;
                };
                let conn = &mut held.handle.conn;
                let res = match &params {
                    Some(params) => conn.execute(sql, params, sink).await,
                    None => conn.query(sql, sink).await,
                };
                if attempt == 0 && matches!(res, Err(RunError::Unsent(_))) {
                    continue;
                }
                // A sink that failed may leave the tablet's packets unread.
                let sink_failed = matches!(res, Err(RunError::Sink(_)));
                let res = res.map_err(|e| run_error(e, &label));
                self.state.no_backslash_escapes = conn
                    .status
                    .contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES);
                if !sink_failed && !matches!(&res, Err(e) if e.breaks_backend_conn()) {
                    self.state.keep_lean(self.ctx, held);
                }
                return self.finish(res);
            }
        }
        let rename = rename_db_columns.then(|| {
            (
                format!("Tables_in_{}", tablet.db_name),
                format!("Tables_in_{keyspace}"),
            )
        });
        let (mut sc, pinned) = self.take_conn(tablet, &label).await?;
        let res = match params {
            None => match sc.conn.query_iter(sql).await {
                Ok(result) => drain(result, rename.as_ref(), sink).await,
                Err(e) => Err(RunError::Backend(e)),
            },
            Some(params) => match sc
                .conn
                .exec_iter(sql, mysql_async::Params::Positional(params))
                .await
            {
                Ok(result) => drain(result, rename.as_ref(), sink).await,
                Err(e) => Err(RunError::Backend(e)),
            },
        }
        .map_err(|e| run_error(e, &label));
        let broken = matches!(&res, Err(e) if e.breaks_backend_conn());
        self.return_conn(sc, pinned, broken, true);
        self.finish(res)
    }

    /// Ends a statement run on one tablet: its last insert id (when it
    /// made one) becomes the session's.
    fn finish(&mut self, res: Result<u64, Error>) -> Result<(), Error> {
        let last_id = res?;
        if last_id > 0 {
            self.state.last_insert_id = last_id;
        }
        Ok(())
    }
}

/// A VCursor that records every shard query before passing it on
/// (VEXPLAIN QUERIES).
pub struct Logging<V> {
    /// The cursor doing the work.
    pub inner: V,
    /// (keyspace, shard, query) in the order sent.
    pub log: Vec<(String, String, String)>,
}

impl<V: VCursor + Send> VCursor for Logging<V> {
    async fn stream_multi<C: ScatterConsumer + Send>(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
        consumer: &mut C,
    ) -> Result<(), Error> {
        self.record(keyspace, &queries);
        self.inner
            .stream_multi(keyspace, tablet_type, queries, consumer)
            .await
    }

    async fn execute_multi(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> Result<Vec<ShardResult>, Error> {
        self.record(keyspace, &queries);
        self.inner
            .execute_multi(keyspace, tablet_type, queries)
            .await
    }

    async fn next_sequence(
        &mut self,
        keyspace: &str,
        table: &str,
        count: u64,
    ) -> Result<u64, Error> {
        self.inner.next_sequence(keyspace, table, count).await
    }

    fn set_last_insert_id(&mut self, id: u64) {
        self.inner.set_last_insert_id(id)
    }

    async fn execute_shard<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        sql: &str,
        rename_db_columns: bool,
        sink: &mut S,
    ) -> Result<(), Error> {
        self.log
            .push((keyspace.to_string(), shard.to_string(), sql.to_string()));
        self.inner
            .execute_shard(keyspace, shard, tablet_type, sql, rename_db_columns, sink)
            .await
    }
}

impl<V> Logging<V> {
    fn record(&mut self, keyspace: &str, queries: &[(String, String)]) {
        for (shard, q) in queries {
            self.log
                .push((keyspace.to_string(), shard.clone(), q.clone()));
        }
    }
}

/// Runs one query and buffers its first result (rows or OK).
async fn collect(conn: &mut Conn, sql: &str) -> Result<ShardResult, mysql_async::Error> {
    let mut result = conn.query_iter(sql).await?;
    let columns: Vec<Column> = result.columns().map(|c| c.to_vec()).unwrap_or_default();
    let mut out = ShardResult {
        columns,
        ..ShardResult::default()
    };
    if out.columns.is_empty() {
        out.done = QueryDone {
            affected_rows: result.affected_rows(),
            last_insert_id: result.last_insert_id().unwrap_or(0),
            warnings: result.warnings(),
            info: result.info().into_owned(),
        };
    }
    while let Some(row) = result.next().await? {
        out.rows.push(row.unwrap());
    }
    // Drain anything further (e.g. a CALL's trailing OK).
    result.drop_result().await?;
    Ok(out)
}

/// The client's error for a failed run on the tablet named `label`.
fn run_error(e: RunError, label: &(dyn std::fmt::Display + Sync)) -> Error {
    match e {
        RunError::Backend(source) | RunError::Unsent(source) => backend(label)(source),
        RunError::Sink(e) => e,
    }
}

/// Streams every result of a query (text or binary protocol) into the
/// sink; returns the last insert id.
async fn drain<P: mysql_async::prelude::Protocol, S: RowSink + Send>(
    mut result: mysql_async::QueryResult<'_, 'static, P>,
    rename: Option<&(String, String)>,
    sink: &mut S,
) -> Result<u64, RunError> {
    let mut last_id = 0;
    loop {
        let cols = result.columns();
        match cols {
            Some(cols) if !cols.is_empty() => {
                match rename {
                    Some((from, to)) => {
                        let renamed: Vec<Column> = cols
                            .iter()
                            .map(|c| {
                                let name = c.name_str();
                                match name.strip_prefix(from.as_str()) {
                                    Some(tail) => {
                                        c.clone().with_name(format!("{to}{tail}").as_bytes())
                                    }
                                    None => c.clone(),
                                }
                            })
                            .collect();
                        sink.columns(&renamed)
                    }
                    None => sink.columns(&cols),
                }
                .map_err(RunError::Sink)?;
                while let Some(row) = result.next().await.map_err(RunError::Backend)? {
                    sink.row(&row.unwrap()).map_err(RunError::Sink)?;
                    sink.flush().await.map_err(RunError::Sink)?;
                }
                sink.end_rows(result.warnings()).map_err(RunError::Sink)?;
            }
            _ => {
                let done = QueryDone {
                    affected_rows: result.affected_rows(),
                    last_insert_id: result.last_insert_id().unwrap_or(0),
                    warnings: result.warnings(),
                    info: result.info().into_owned(),
                };
                last_id = done.last_insert_id;
                result.next().await.map_err(RunError::Backend)?;
                sink.ok(done).map_err(RunError::Sink)?;
            }
        }
        if result.is_empty() {
            break;
        }
    }
    Ok(last_id)
}
