//! The real [`VCursor`]: resolves a shard to a tablet through the gateway,
//! takes a connection (the session's pinned one, a lean one, or one from
//! the driver's pool), streams the tablet's results into the sink, and
//! wraps errors with their target (`commerce.0.primary`).

pub mod deadlock;
pub mod interrupt;
pub mod twopc;
pub mod verdicts;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use mysql_common::constants::StatusFlags;
use mysql_common::packets::Column;
use mysql_common::value::Value;

use crate::backend::lean::{Discard, Rename, RunError};
use crate::backend::mux::{self, Read};
use crate::backend::Shareable;
use crate::engine::row::{Cell, OwnedRow, ShardRows, TextRow};
use crate::engine::{
    Implicit, QueryDone, RowSink, ScatterConsumer, ShardResult, ShardStreams, VCursor,
};
use crate::error::Error;
use crate::gateway::buffer::{Hold, Next};
use crate::server::ServerCtx;
use crate::sql::TabletType;
use crate::topo::{Snapshot, Tablet};
use verdicts::Verdict;

/// A driver connection held by a session beyond one statement.
pub struct ShardConn {
    /// The tablet it is connected to.
    pub alias: String,
    /// The connection.
    pub conn: Conn,
    /// A transaction is open on it.
    pub in_txn: bool,
}

/// Commits on tablets, for `/debug/vars`.
#[derive(Default)]
pub struct TxnStats {
    /// Transaction parts committed on lean connections.
    pub committed: std::sync::atomic::AtomicU64,
    /// Of those, parts of transactions that only read, whose COMMIT the
    /// client did not wait for.
    pub committed_unanswered: std::sync::atomic::AtomicU64,
}

/// The backend side of a session: which connections it holds and why.
///
/// Statements run on lean connections (see [`crate::backend::lean`]),
/// brought to the session's settings (connections carrying the same
/// settings are shared between sessions, so settings reserve nothing). A
/// session in a transaction keeps the lean connection of each tablet it
/// touched until the transaction ends; one that left state on a tablet
/// (temporary tables, locks) keeps it until it ends, and the connection is
/// reset then. Driver connections serve when a lean one cannot be had. A
/// tablet never has more than one connection holding the session's state:
/// pinned driver and pinned lean connections are looked up before a new
/// one is taken.
#[derive(Default)]
pub struct ShardConns {
    /// Pinned driver connections, at most one per tablet.
    pub conns: Vec<ShardConn>,
    /// Pinned lean connections (a transaction, or state a reserving
    /// statement left), at most one per tablet.
    pub pinned_lean: Vec<LeanHeld>,
    /// The session is inside a transaction: new connections begin one.
    pub in_txn: bool,
    /// The session's `SET transaction_mode` (None: `--transaction_mode`).
    pub transaction_mode: Option<TransactionMode>,
    /// Tablets the open transaction has reached, kept under
    /// `--transaction_mode=SINGLE` only.
    txn_tablets: Vec<String>,
    /// The open transaction ran a statement other than a plain read (see
    /// [`crate::sql::writes_nowhere`]): its COMMIT is waited for. One
    /// that only read commits without a round trip for the client (see
    /// [`crate::backend::lean::LeanConn::commit_unanswered`]).
    txn_wrote: bool,
    /// The open transaction's id under `--transaction_mode=twopc` (its
    /// parts are XA transactions named by it, see [`twopc`]); taken when
    /// its first part begins.
    dtid: Option<String>,
    /// The open transaction's `START TRANSACTION READ ONLY` (or other
    /// characteristics), what begins its part on each tablet instead of
    /// `BEGIN`.
    pub begin_as: Option<String>,
    /// SET statements to replay on every connection the session uses
    /// (changed only with `settings_key`, by [`Self::add_setting`]).
    settings: Vec<String>,
    /// `settings` joined: the tag of the lean connections that carry them.
    settings_key: std::sync::Arc<str>,
    /// The session left state on a connection (temporary tables, locks):
    /// keep every connection until the session ends. Settings do not
    /// reserve: they follow the session to any connection it takes.
    pub reserved: bool,
    /// LAST_INSERT_ID() as the client should see it.
    pub last_insert_id: u64,
    /// The open transaction's savepoints, oldest first: (name, the
    /// statement that set it). A tablet that joins the transaction later
    /// gets them after its BEGIN, so a ROLLBACK TO finds them on every
    /// tablet, as vtgate replays them.
    pub savepoints: Vec<(String, String)>,
    /// ROW_COUNT() as the client should see it: the last statement's
    /// affected rows, -1 after a result set or an error (the tablet
    /// connection that ran it may be another's by now, and a statement
    /// over several shards has no one tablet's count).
    pub row_count: i64,
    /// The last tablet status said NO_BACKSLASH_ESCAPES is on.
    pub no_backslash_escapes: bool,
    /// Clean pooled connections kept between statements, at most one per
    /// tablet and [`STICKY_PER_SESSION`] in all (session affinity, within
    /// the server's budget), so a busy client does not go through the pool
    /// for every statement, even when its statements go to several shards.
    pub sticky: Vec<Sticky>,
    /// The session's last statement was a shared read, and when its reply
    /// carried warnings, its tablet and the read (see
    /// [`mux::Delivered::warned`]): the warnings, or their absence, are
    /// on the shared connection, not on the one a SHOW WARNINGS goes to.
    shared_last: Option<Option<(String, Read)>>,
    /// Clean lean connections the session keeps between statements, at
    /// most one per tablet and [`STICKY_PER_SESSION`] in all, within the
    /// server's budget shared with sticky ones (beyond it a statement takes
    /// one from the pool and gives it back).
    pub lean: Vec<LeanHeld>,
    /// A SET that [`ShardConns::set_is_noop`] found to change something,
    /// and the connection it ran on, which carries it now:
    /// [`ShardConns::apply_setting`] takes that connection rather than
    /// running the SET again on another (a client that sets its
    /// character set at every connect would otherwise cost a tablet
    /// connection per connect).
    applied: Option<(String, LeanHeld)>,
    /// The open transaction's registration with the deadlock detector
    /// (from its first statement on a tablet to its end).
    watch: Option<deadlock::Guard>,
    /// How others stop the session's statements (KILL, the query
    /// timeout): each connection a statement runs on is recorded there
    /// while it does, and a stopped statement links no more (None: a
    /// session nobody can stop, as in tests).
    pub control: Option<std::sync::Arc<interrupt::Control>>,
    /// The current statement has a query timeout.
    pub timed: bool,
    /// The current statement may not read every shard of a keyspace
    /// (`--no_scatter`, no `ALLOW_SCATTER` directive).
    pub no_scatter: bool,
    /// The current statement may hold any number of rows at the gate
    /// (an `IGNORE_MAX_MEMORY_ROWS` directive).
    pub unbounded_rows: bool,
    /// The current statement's writes commit on each shard alone (a
    /// `MULTI_SHARD_AUTOCOMMIT` directive).
    pub shard_autocommit: bool,
    /// The current statement can be stopped (KILL is allowed, or it has
    /// a timeout): the connections it runs on are recorded in `control`.
    pub stoppable: bool,
}

/// How far a transaction may reach, as vtgate's `--transaction_mode` (or a
/// session's `SET transaction_mode`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransactionMode {
    /// One shard per transaction: reaching a second fails the statement
    /// and rolls the transaction back (for applications that must not
    /// commit across shards without atomicity).
    Single,
    /// Any number of shards, each committing its part on its own (vtgate's
    /// default).
    #[default]
    Multi,
    /// Atomic commit across shards: every shard's part commits or none
    /// does (XA transactions and a recorded decision, see [`twopc`]).
    Twopc,
}

impl TransactionMode {
    /// vtgate's name, as `@@transaction_mode` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionMode::Single => "SINGLE",
            TransactionMode::Multi => "MULTI",
            TransactionMode::Twopc => "TWOPC",
        }
    }
}

/// A lean connection a session holds, and its unit of the sticky budget
/// (needed to keep it between statements, not to run one or to hold a
/// transaction).
pub struct LeanHeld {
    handle: crate::backend::LeanHandle,
    /// A transaction is open on it.
    in_txn: bool,
    permit: Option<StickyPermit>,
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

/// A unit of the server's sticky budget for a lean connection, with a
/// place among its tablet's connections kept while idle (see
/// [`crate::backend::budget`]); None when either is spent.
fn keep_permit(ctx: &ServerCtx, handle: &mut crate::backend::LeanHandle) -> Option<StickyPermit> {
    let permit = StickyPermit::take(&ctx.sticky_budget)?;
    handle.keep().then_some(permit)
}

/// How many tablets a session keeps a sticky connection to.
pub const STICKY_PER_SESSION: usize = 4;

/// How long a session's lean connection may sit unused before it is
/// checked for a server-side close before use.
const LIVENESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a sticky connection may sit unused before the pool gets it back
/// (it may have been closed by the server meanwhile).
const STICKY_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// A statement that reads a table and cannot warn: MariaDB clears a
/// connection's warnings when a statement reads a table.
const CLEAR_DIAGNOSTICS: &str = "select 1 from information_schema.collations limit 0";

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

/// The connection one statement runs on.
// Lives for one statement; boxing the lean side would allocate per statement.
#[allow(clippy::large_enum_variant)]
enum Link {
    /// A driver connection (sessions with settings or reserved state).
    Driver(ShardConn),
    /// A lean connection.
    Lean(LeanHeld),
}

impl Link {
    /// The MySQL thread id of the connection on its tablet.
    fn thread(&self) -> u32 {
        match self {
            Link::Driver(sc) => sc.conn.id(),
            Link::Lean(held) => held.handle.conn.thread_id(),
        }
    }

    /// The alias of its tablet.
    fn alias(&self) -> &str {
        match self {
            Link::Driver(sc) => &sc.alias,
            Link::Lean(held) => held.handle.alias(),
        }
    }
}

impl ShardConns {
    /// Notes a statement about to run: one that may write (by
    /// `writes_nowhere`, asked only inside a transaction that has only
    /// read so far) makes the transaction's COMMIT wait.
    fn note_statement(&mut self, writes_nowhere: impl FnOnce() -> bool) {
        if self.in_txn && !self.txn_wrote && !writes_nowhere() {
            self.txn_wrote = true;
        }
    }

    /// The session's reads may share connections with other sessions'
    /// that carry the same settings: it holds no state on any tablet but
    /// its settings (no transaction, reserved or pinned connections), and
    /// its statement is not timed (a timed read must be on a connection
    /// its timeout can kill a query on, see [`interrupt`]).
    fn may_share(&self) -> bool {
        !self.in_txn
            && !self.reserved
            && !self.timed
            && self.conns.is_empty()
            && self.pinned_lean.is_empty()
    }

    fn pinned(&self, alias: &str) -> Option<usize> {
        self.conns.iter().position(|c| c.alias == alias)
    }

    fn pinned_lean(&self, alias: &str) -> Option<usize> {
        self.pinned_lean
            .iter()
            .position(|l| l.handle.alias() == alias)
    }

    /// The connection statement `sql` on `tablet` runs on (see
    /// [`Self::link_any`]). Under `--transaction_mode=SINGLE` a transaction
    /// that already began on another tablet is refused before anything is
    /// sent, and a tablet counts as reached once its BEGIN went through.
    async fn link(
        &mut self,
        ctx: &ServerCtx,
        tablet: &Tablet,
        label: &(dyn std::fmt::Display + Sync),
        sql: &str,
    ) -> Result<(Link, bool, bool), Error> {
        let joins = self.in_txn
            && self.transaction_mode.unwrap_or(ctx.transaction_mode) == TransactionMode::Single
            && !self.txn_tablets.contains(&tablet.alias);
        if joins && !self.txn_tablets.is_empty() {
            return Err(Error::MultiDbTransaction(format!(
                "the transaction is on {} and this statement needs {} (--transaction_mode=SINGLE)",
                self.txn_tablets.join(", "),
                tablet.alias
            )));
        }
        if self.stoppable && self.control.as_ref().is_some_and(|c| c.stopped().is_some()) {
            return Err(Error::Interrupted);
        }
        if self.in_txn {
            self.watch
                .get_or_insert_with(|| ctx.deadlocks.watch())
                .running();
        }
        let linked = self.link_any(ctx, tablet, label, sql).await?;
        if joins {
            self.txn_tablets.push(tablet.alias.clone());
        }
        if let (true, Some(w)) = (self.in_txn, &self.watch) {
            w.joined(&tablet.alias, linked.0.thread());
        }
        if let (true, Some(c)) = (self.stoppable, &self.control) {
            c.linked(interrupt::alias_key(linked.0.alias()), linked.0.thread());
        }
        Ok(linked)
    }

    /// A link dropped without going back (a connection found dead before
    /// its statement was sent, replaced by another): no longer the
    /// statement's.
    fn forget(&self, link: &Link) {
        if let (true, Some(c)) = (self.stoppable, &self.control) {
            c.unlinked(interrupt::alias_key(link.alias()), link.thread());
        }
    }

    /// The connection statement `sql` on `tablet` runs on, whether it goes
    /// back to the session afterwards, and whether it is new to the session
    /// (so a failure before `sql` was written leaves nothing behind): the
    /// one holding the session's state there, else a lean one (beginning
    /// the session's transaction on it; in the same write as `sql` when
    /// that is a read), else a driver one.
    async fn link_any(
        &mut self,
        ctx: &ServerCtx,
        tablet: &Tablet,
        label: &(dyn std::fmt::Display + Sync),
        sql: &str,
    ) -> Result<(Link, bool, bool), Error> {
        // A connection pinned for the session's state joins a transaction
        // begun since.
        if let Some(i) = self.pinned(&tablet.alias) {
            let mut sc = self.conns.remove(i);
            if self.in_txn && !sc.in_txn {
                let begin = self.begin_sql(ctx, &tablet.alias);
                let begun = Box::pin(begin_driver(&mut sc.conn, &begin, &self.savepoints)).await;
                if let Err(e) = begun {
                    let e = backend(label)(e);
                    if !e.breaks_backend_conn() {
                        self.conns.push(sc);
                    }
                    return Err(e);
                }
                sc.in_txn = true;
            }
            return Ok((Link::Driver(sc), true, false));
        }
        if let Some(i) = self.pinned_lean(&tablet.alias) {
            let mut held = self.pinned_lean.remove(i);
            held.handle.touch(std::time::Instant::now());
            if self.in_txn && !held.in_txn {
                let begin = self.begin_sql(ctx, &tablet.alias);
                if let Err(e) = begin_lean(&mut held, &begin, &self.savepoints).await {
                    if held.handle.conn.is_idle() {
                        self.pinned_lean.push(held);
                    }
                    return Err(run_error(e, label));
                }
                held.in_txn = true;
            }
            return Ok((Link::Lean(held), true, false));
        }
        // A connection that died since its last use fails BEGIN before it
        // is written; another one is tried once.
        for attempt in 0..2 {
            let Some(mut held) = self.take_lean(ctx, tablet, label).await? else {
                break;
            };
            if !self.in_txn {
                return Ok((Link::Lean(held), self.reserved, true));
            }
            let begin = self.begin_sql(ctx, &tablet.alias);
            // A read may ride in the same write as the BEGIN (or XA
            // START) before it.
            if self.savepoints.is_empty() && crate::sql::starts_with_select(sql) {
                if begin == "BEGIN" {
                    held.handle.conn.begin_with_next();
                } else {
                    held.handle.conn.begin_with_next_as(&begin);
                }
                held.in_txn = true;
                return Ok((Link::Lean(held), true, true));
            }
            match begin_lean(&mut held, &begin, &self.savepoints).await {
                Ok(()) => {
                    held.in_txn = true;
                    return Ok((Link::Lean(held), true, true));
                }
                Err(RunError::Unsent(_)) if attempt == 0 => continue,
                Err(e) => return Err(run_error(e, label)),
            }
        }
        // The driver's pool: rare, and boxed for its future's size.
        let (sc, pinned) = Box::pin(self.checkout(ctx, tablet, label)).await?;
        Ok((Link::Driver(sc), pinned, true))
    }

    /// Gives a connection back after a statement: pinned ones to the
    /// session, clean ones to its sticky slots, broken ones (and lean ones
    /// with a reply left unread) to nobody: dropping them closes them.
    fn give_back(&mut self, ctx: &ServerCtx, link: Link, pinned: bool, broken: bool) {
        if let Some(w) = &self.watch {
            w.idle();
        }
        self.forget(&link);
        if broken {
            return;
        }
        match link {
            Link::Driver(sc) => {
                self.no_backslash_escapes = no_backslash(&sc.conn);
                if pinned {
                    self.conns.push(sc);
                } else {
                    self.keep(ctx, sc.alias, sc.conn);
                }
            }
            Link::Lean(held) => {
                let conn = &held.handle.conn;
                if !conn.is_idle() {
                    return;
                }
                self.no_backslash_escapes = conn.no_backslash_escapes();
                if pinned {
                    self.pinned_lean.push(held);
                } else {
                    self.keep_lean(ctx, held);
                }
            }
        }
    }

    /// Takes a new driver connection for `tablet`, replaying settings and
    /// opening a transaction as the session requires; pins it when it must
    /// stay.
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
            conn.query_drop(crate::sql::raw::wire(s))
                .await
                .map_err(backend(label))?;
        }
        if self.in_txn {
            let begin = self.begin_sql(ctx, &tablet.alias);
            begin_driver(&mut conn, &begin, &self.savepoints)
                .await
                .map_err(backend(label))?;
        }
        let sc = ShardConn {
            alias,
            conn,
            in_txn: self.in_txn,
        };
        Ok((sc, self.in_txn || self.driver_keeps()))
    }

    /// The session's settings joined, as the pools tag connections that
    /// carry them.
    pub fn settings_key(&self) -> &str {
        &self.settings_key
    }

    /// The SET statements every connection the session uses carries.
    pub fn settings(&self) -> &[String] {
        &self.settings
    }

    /// Adds a setting and the tag of the connections that carry the
    /// settings with it: a connection is taken by that tag, so one that
    /// differed from the list would be taken as carrying what it lacks.
    pub fn add_setting(&mut self, set: String) {
        self.settings.push(set);
        self.settings_key = crate::backend::settings_key(&self.settings);
    }

    /// The session pins no tablet connection and holds no transaction: a
    /// new setting can wait for the connection its next statement takes.
    pub fn can_defer_setting(&self) -> bool {
        self.conns.is_empty()
            && self.pinned_lean.is_empty()
            && self.sticky.is_empty()
            && !self.reserved
            && !self.in_txn
    }

    /// Takes a setting the tablet is known to take (see
    /// [`Self::can_defer_setting`]) without running it now: the session's
    /// idle connections go back to the pools, and its next statement takes
    /// one that carries the new settings (kept by an earlier session with
    /// the same SETs, as drivers send at every connect) or brings one to
    /// them.
    pub async fn defer_setting(&mut self, ctx: &ServerCtx, set: &str) -> Result<(), Error> {
        for held in self.lean.drain(..) {
            ctx.pools.put_lean(held.handle);
        }
        self.apply_setting(ctx, None, set).await
    }

    /// Applies a new session setting: on every pinned connection, and on
    /// a connection to `tablet` (so its errors reach the client now), then
    /// remembers it for every connection the session uses later.
    pub async fn apply_setting(
        &mut self,
        ctx: &ServerCtx,
        tablet: Option<(&Tablet, String)>,
        set: &str,
    ) -> Result<(), Error> {
        self.run_on_held(set, false).await?;
        let mut tried = None;
        // The connection the no-op check left carrying this SET serves as
        // the one it runs on; one for another SET or tablet is closed.
        let mut applied = match self.applied.take() {
            Some((s, held))
                if s == set
                    && tablet
                        .as_ref()
                        .is_some_and(|(t, _)| t.alias == held.handle.alias()) =>
            {
                Some(held)
            }
            Some((_, held)) => {
                held.handle.conn.quit().await;
                None
            }
            None => None,
        };
        if let Some((tablet, label)) = tablet {
            if self.pinned(&tablet.alias).is_none() && self.pinned_lean(&tablet.alias).is_none() {
                match applied.take() {
                    Some(held) => tried = Some(held),
                    None => match self.take_lean(ctx, tablet, &label).await? {
                        Some(mut held) => {
                            let res = held.handle.conn.run(set).await;
                            let conn = &held.handle.conn;
                            self.no_backslash_escapes = conn.no_backslash_escapes();
                            match res {
                                Ok(()) => tried = Some(held),
                                Err(e) => {
                                    // A refused SET changed nothing.
                                    if conn.is_idle() {
                                        self.keep_lean(ctx, held);
                                    }
                                    return Err(run_error(e, &label));
                                }
                            }
                        }
                        None => {
                            let (mut sc, _) = self.checkout(ctx, tablet, &label).await?;
                            sc.conn
                                .query_drop(crate::sql::raw::wire(set))
                                .await
                                .map_err(backend(&label))?;
                            self.no_backslash_escapes = no_backslash(&sc.conn);
                            self.conns.push(sc);
                        }
                    },
                }
            }
        }
        if let Some(held) = applied {
            held.handle.conn.quit().await;
        }
        self.add_setting(set.to_string());
        for held in self.pinned_lean.iter_mut().chain(tried.as_mut()) {
            held.handle.settings = self.settings_key.clone();
        }
        if let Some(held) = tried {
            self.keep_lean(ctx, held);
        }
        Ok(())
    }

    /// What `set` does to the session variables `vars` of a clean
    /// connection to `tablet`: read them, apply it, read them again, the
    /// three in one write, on a connection that holds no session's state.
    /// [`Verdict::Noop`]: it leaves them as they were, so the session need
    /// not carry it and its connections stay untagged. [`Verdict::Applies`]:
    /// it changed them (or they cannot be read per session) and ran; the
    /// connection it ran on then serves the session's next
    /// [`Self::apply_setting`] of it. None when it cannot tell (no lean
    /// connection, or the link failed); the SET then becomes one of the
    /// session's settings, and that path reports its errors.
    pub async fn check_set(
        &mut self,
        ctx: &ServerCtx,
        tablet: &Tablet,
        label: &str,
        set: &str,
        vars: &[String],
    ) -> Result<Option<Verdict>, Error> {
        let Some(mut held) = self.take_lean(ctx, tablet, &label).await? else {
            return Ok(None);
        };
        let read = format!(
            "SELECT {}",
            vars.iter()
                .map(|v| format!("@@session.{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let conn = &mut held.handle.conn;
        conn.queue_query(&read);
        conn.queue_query(set);
        conn.queue_query(&read);
        if conn.flush().await.is_err() {
            held.handle.conn.quit().await;
            return Ok(None);
        }
        let before = session_reply(conn).await;
        if before.as_ref().is_err_and(|e| !refused(e)) {
            held.handle.conn.quit().await;
            return Ok(None);
        }
        if let Err(e) = conn.reply(false, &mut Discard).await {
            held.handle.conn.quit().await;
            return Err(run_error(e, &label));
        }
        let after = session_reply(conn).await;
        match (before, after) {
            (Ok(before), Ok(after)) if before == after => {
                self.keep_lean(ctx, held);
                Ok(Some(Verdict::Noop))
            }
            (_, Err(e)) if !refused(&e) => {
                held.handle.conn.quit().await;
                Ok(None)
            }
            _ => {
                self.no_backslash_escapes = conn.no_backslash_escapes();
                if let Some((_, old)) = self.applied.replace((set.to_string(), held)) {
                    old.handle.conn.quit().await;
                }
                Ok(Some(Verdict::Applies))
            }
        }
    }

    /// Runs a savepoint statement on every tablet the open transaction
    /// has reached; the first error ends it.
    pub async fn on_transaction(&mut self, sql: &str) -> Result<(), Error> {
        self.run_on_held(sql, true).await
    }

    /// Runs `sql` on every connection the session holds (with
    /// `in_txn_only`, those its transaction has reached); the first error
    /// ends it.
    async fn run_on_held(&mut self, sql: &str, in_txn_only: bool) -> Result<(), Error> {
        for sc in self.conns.iter_mut().filter(|c| c.in_txn || !in_txn_only) {
            sc.conn
                .query_drop(crate::sql::raw::wire(sql))
                .await
                .map_err(backend(&sc.alias))?;
        }
        for held in self
            .pinned_lean
            .iter_mut()
            .filter(|h| h.in_txn || !in_txn_only)
        {
            let label = held.handle.alias().to_string();
            held.handle
                .conn
                .run(sql)
                .await
                .map_err(|e| run_error(e, &label))?;
        }
        Ok(())
    }

    /// What begins the open transaction's part on `tablet`: `BEGIN`, or
    /// under `--transaction_mode=twopc` an `XA START` of the
    /// transaction's id (taken by its first part; SET transaction_mode is
    /// refused inside a transaction, so its parts all begin alike).
    fn begin_sql(&mut self, ctx: &ServerCtx, tablet: &str) -> std::borrow::Cow<'static, str> {
        if self.dtid.is_none()
            && self.transaction_mode.unwrap_or(ctx.transaction_mode) == TransactionMode::Twopc
        {
            self.dtid = Some(ctx.twopc.next_dtid());
        }
        match (&self.dtid, &self.begin_as) {
            (Some(dtid), _) => format!("XA START {}", twopc::xid(dtid, tablet)).into(),
            (None, Some(begin)) => begin.clone().into(),
            (None, None) => "BEGIN".into(),
        }
    }

    /// Ends the transaction on every shard it touched.
    pub async fn finish_txn(&mut self, ctx: &ServerCtx, commit: bool) -> Result<(), Error> {
        // Boxed: awaited from many places of the statement path, the
        // commit's state (twopc's above all) would otherwise sit in every
        // client connection's task, idle ones too (10 KB each before).
        Box::pin(self.finish_txn_now(ctx, commit)).await
    }

    async fn finish_txn_now(&mut self, ctx: &ServerCtx, commit: bool) -> Result<(), Error> {
        if let Some(dtid) = self.dtid.take() {
            return self.finish_xa(ctx, &dtid, commit).await;
        }
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
        let mut held_all = std::mem::take(&mut self.pinned_lean);
        // Every tablet's part ends at once, as vtgate commits its shard
        // sessions concurrently: one round trip per transaction, not one per
        // tablet. Each part commits on its own (no two-phase commit). A
        // transaction that only read commits without the round trip.
        let wrote = std::mem::take(&mut self.txn_wrote);
        let unanswered = commit && !wrote;
        let ends = held_all
            .iter_mut()
            .filter(|h| h.in_txn)
            .map(|h| async move {
                h.in_txn = false;
                let conn = &mut h.handle.conn;
                let res = if unanswered {
                    conn.commit_unanswered().await
                } else {
                    conn.run(sql).await
                };
                res.map_err(|e| run_error(e, &h.handle.alias().to_string()))
            });
        for r in futures_util::future::join_all(ends).await {
            match r {
                Ok(()) if commit => {
                    use std::sync::atomic::Ordering::Relaxed;
                    ctx.txn_stats.committed.fetch_add(1, Relaxed);
                    if unanswered {
                        ctx.txn_stats.committed_unanswered.fetch_add(1, Relaxed);
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.after_txn(ctx, held_all);
        first_err.map_or(Ok(()), Err)
    }

    /// Ends an XA transaction (see [`twopc`]) on every tablet it reached.
    async fn finish_xa(&mut self, ctx: &ServerCtx, dtid: &str, commit: bool) -> Result<(), Error> {
        let wrote = std::mem::take(&mut self.txn_wrote);
        let part = |link| XaPart {
            link,
            discard: false,
        };
        let mut parts: Vec<XaPart<'_>> = self
            .conns
            .iter_mut()
            .filter(|c| c.in_txn)
            .map(|c| part(XaLink::Driver(c)))
            .chain(
                self.pinned_lean
                    .iter_mut()
                    .filter(|h| h.in_txn)
                    .map(|h| part(XaLink::Lean(h))),
            )
            .collect();
        let snap = ctx.snapshot.load();
        let res = twopc::finish(&ctx.twopc, &snap, dtid, &mut parts, commit, wrote).await;
        let discard: Vec<String> = parts
            .iter()
            .filter(|p| p.discard)
            .map(|p| twopc::XaConn::alias(p).to_string())
            .collect();
        drop(parts);
        // Closed, not pooled: their server keeps the parts prepared there.
        let (gone, kept): (Vec<ShardConn>, Vec<ShardConn>) = std::mem::take(&mut self.conns)
            .into_iter()
            .partition(|c| discard.contains(&c.alias));
        self.conns = kept;
        for sc in gone {
            let _ = sc.conn.disconnect().await;
        }
        for c in &mut self.conns {
            c.in_txn = false;
        }
        let mut held_all = std::mem::take(&mut self.pinned_lean);
        held_all.retain(|h| !discard.iter().any(|a| a == h.handle.alias()));
        if res.is_ok() && commit {
            let n = held_all.iter().filter(|h| h.in_txn).count();
            ctx.txn_stats
                .committed
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for h in &mut held_all {
            h.in_txn = false;
        }
        self.after_txn(ctx, held_all);
        res
    }

    /// What every transaction's end leaves: the lean connections still
    /// usable kept (pinned when the session reserved them), the
    /// transaction's bookkeeping cleared.
    fn after_txn(&mut self, ctx: &ServerCtx, held_all: Vec<LeanHeld>) {
        let kept: Vec<LeanHeld> = held_all
            .into_iter()
            .filter(|h| h.handle.conn.is_idle())
            .collect();
        self.in_txn = false;
        self.begin_as = None;
        self.watch = None;
        self.txn_tablets.clear();
        self.savepoints.clear();
        if !self.driver_keeps() {
            self.conns.clear();
        }
        if self.reserved {
            self.pinned_lean = kept;
        } else {
            for held in kept {
                self.keep_lean(ctx, held);
            }
        }
    }

    /// Whether the open transaction was chosen to give way to a deadlock
    /// across shards (see [`deadlock`]): the statement that just failed
    /// was killed for it. Consumes the answer.
    pub fn deadlock_victim(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.take_victim())
    }

    /// Whether the open transaction outlived the transaction timeout (see
    /// [`deadlock::Guard::expired`]).
    pub fn transaction_expired(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.expired())
    }

    /// Whether a driver connection the session used holds its state
    /// (settings or reserved state): the driver's pool does not reset
    /// connections, so such a one stays with the session until it ends and
    /// is reset then.
    fn driver_keeps(&self) -> bool {
        self.reserved || !self.settings.is_empty()
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

    /// A lean connection to `tablet` with the session's settings: the
    /// session's own, or one from the pools (waiting for one at the
    /// tablet's cap; Err when none came in time). None (the tablet cannot
    /// be reached that way lately, or lean connections are off) sends the
    /// statement the driver's way.
    async fn take_lean(
        &mut self,
        ctx: &ServerCtx,
        tablet: &Tablet,
        label: &(dyn std::fmt::Display + Sync),
    ) -> Result<Option<LeanHeld>, Error> {
        // One clock read per statement: a connection counts as used when a
        // statement takes it.
        let now = std::time::Instant::now();
        self.lean.retain(|l| !l.handle.idle_for(STICKY_IDLE, now));
        let mine = self
            .lean
            .iter()
            .position(|l| l.handle.alias() == tablet.alias);
        if let Some(i) = mine {
            let mut held = self.lean.swap_remove(i);
            // A connection used within the last second is alive; an older
            // one is checked (one non-blocking read) and replaced if dead.
            if !held.handle.idle_for(LIVENESS_AFTER, now) || !held.handle.conn.is_closed() {
                held.handle.touch(now);
                return Ok(conform(&self.settings, &self.settings_key, held).await);
            }
        }
        let taken = ctx.pools.lean(tablet, &self.settings_key, true).await;
        let Some(mut handle) = taken.map_err(|source| Error::TabletBusy {
            target: label.to_string(),
            source,
        })?
        else {
            return Ok(None);
        };
        handle.touch(now);
        let permit = keep_permit(ctx, &mut handle);
        let held = LeanHeld {
            handle,
            in_txn: false,
            permit,
        };
        Ok(conform(&self.settings, &self.settings_key, held).await)
    }

    /// Keeps a clean lean connection for the session's next statement;
    /// beyond [`STICKY_PER_SESSION`] the oldest goes back to the pools.
    fn keep_lean(&mut self, ctx: &ServerCtx, mut held: LeanHeld) {
        if held.permit.is_none() {
            held.permit = keep_permit(ctx, &mut held.handle);
        }
        if held.permit.is_none() {
            // The budget is spent: the next statement takes one from the pool.
            ctx.pools.put_lean(held.handle);
            return;
        }
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
        for mut held in self.pinned_lean.drain(..) {
            // State the session left (and its transaction) goes with a reset.
            let clean = if self.reserved {
                let reset = held.handle.conn.reset().await.is_ok();
                held.handle.settings = std::sync::Arc::default();
                reset
            } else {
                // An XA part is dropped: its server rolls it back.
                !held.in_txn
                    || (self.dtid.is_none() && held.handle.conn.run("ROLLBACK").await.is_ok())
            };
            if clean {
                ctx.pools.put_lean(held.handle);
            }
        }
        self.sticky.clear();
        let keeps = self.driver_keeps();
        for mut sc in self.conns.drain(..) {
            let clean = (!sc.in_txn
                || (self.dtid.is_none() && sc.conn.query_drop("ROLLBACK").await.is_ok()))
                && (!keeps || sc.conn.reset().await.is_ok());
            if !clean {
                let _ = sc.conn.disconnect().await;
            }
        }
        self.in_txn = false;
        self.txn_wrote = false;
        self.dtid = None;
        self.begin_as = None;
        self.txn_tablets.clear();
    }
}

/// A connection holding a part of an XA transaction, lent to [`twopc`],
/// and whether it is to be closed afterwards.
struct XaPart<'a> {
    link: XaLink<'a>,
    discard: bool,
}

enum XaLink<'a> {
    Driver(&'a mut ShardConn),
    Lean(&'a mut LeanHeld),
}

impl twopc::XaConn for XaPart<'_> {
    fn alias(&self) -> &str {
        match &self.link {
            XaLink::Driver(c) => &c.alias,
            XaLink::Lean(h) => h.handle.alias(),
        }
    }

    async fn run(&mut self, sql: String) -> Result<(), Error> {
        let res = match &mut self.link {
            XaLink::Driver(c) => c.conn.query_drop(sql).await.map_err(backend(&c.alias)),
            XaLink::Lean(h) => {
                let label = h.handle.alias().to_string();
                h.handle
                    .conn
                    .run(&sql)
                    .await
                    .map_err(|e| run_error(e, &label))
            }
        };
        self.discard |= matches!(&res, Err(e) if e.breaks_backend_conn());
        res
    }

    async fn run_two(&mut self, first: String, second: String) -> Result<(), Error> {
        let XaLink::Lean(h) = &mut self.link else {
            self.run(first).await?;
            return self.run(second).await;
        };
        let label = h.handle.alias().to_string();
        h.handle.conn.begin_with_next_as(&first);
        let res = h
            .handle
            .conn
            .run(&second)
            .await
            .map_err(|e| run_error(e, &label));
        self.discard |=
            h.handle.conn.is_failed() || matches!(&res, Err(e) if e.breaks_backend_conn());
        res
    }

    fn discard(&mut self) {
        self.discard = true;
    }
}

/// The savepoint a statement that writes on several shards inside the
/// session's transaction takes back to when one of them fails
/// ([`VCursor::begin_implicit`]).
const STATEMENT_SAVEPOINT: &str = "sg_statement";

/// A VCursor over one statement's snapshot and the session's connections.
pub struct Executor<'a> {
    /// Shared server state (pools, gateway).
    pub ctx: &'a ServerCtx,
    /// The snapshot this statement loaded.
    pub snap: &'a Snapshot,
    /// The session's backend side.
    pub state: &'a mut ShardConns,
}

/// The tablet the gateway picks for a shard, and its label for errors.
pub fn pick<'a>(
    ctx: &ServerCtx,
    snap: &'a Snapshot,
    ks: &str,
    shard: &str,
    tt: TabletType,
) -> Result<(&'a Tablet, String), Error> {
    let t = ctx.gateway.pick(snap, ks, shard, tt)?;
    Ok((t, Label(ks, shard, tt).to_string()))
}

fn no_backslash(conn: &Conn) -> bool {
    conn.last_ok_packet().is_some_and(|ok| {
        ok.status_flags()
            .contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES)
    })
}

impl<'a> Executor<'a> {
    /// Picks the tablet and its label for a shard.
    pub fn tablet(
        &self,
        ks: &str,
        shard: &str,
        tt: TabletType,
    ) -> Result<(&'a Tablet, String), Error> {
        pick(self.ctx, self.snap, ks, shard, tt)
    }

    /// Prepares `sql` on the shard's tablet to learn its parameter and column
    /// metadata, then closes it there (on the connection holding the
    /// session's state there, if any: it may name a temporary table).
    pub async fn describe(
        &mut self,
        ks: &str,
        shard: &str,
        tt: TabletType,
        sql: &str,
    ) -> Result<(Vec<Column>, Vec<Column>), Error> {
        let (tablet, label) = self.tablet(ks, shard, tt)?;
        let tablet = tablet.clone();
        if let Some(i) = self.state.pinned_lean(&tablet.alias) {
            let conn = &mut self.state.pinned_lean[i].handle.conn;
            let out = conn.describe(sql).await.map_err(backend(&label));
            if !conn.is_idle() {
                self.state.pinned_lean.remove(i);
            }
            return out;
        }
        // On a connection with the session's settings (sql_mode changes
        // what parses).
        if self.state.pinned(&tablet.alias).is_none() {
            if let Some(mut held) = self.state.take_lean(self.ctx, &tablet, &label).await? {
                let out = held
                    .handle
                    .conn
                    .describe(sql)
                    .await
                    .map_err(backend(&label));
                self.state
                    .give_back(self.ctx, Link::Lean(held), false, false);
                return out;
            }
        }
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
        let stmt = conn
            .prep(crate::sql::raw::wire(sql))
            .await
            .map_err(backend(&label))?;
        let out = (stmt.params().to_vec(), stmt.columns().to_vec());
        let _ = conn.close(stmt).await;
        Ok(out)
    }
}

/// A shard query with the connection it runs on: (shard, connection,
/// whether it goes back to the session pinned, SQL).
type Job = (String, Link, bool, String);

impl Executor<'_> {
    /// Takes a connection for each shard query; stops at the first failure
    /// and says so.
    async fn take_all(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> (Vec<Job>, Option<Error>) {
        self.state.shared_last = None;
        // Every shard's query is the same statement.
        if let Some((_, sql)) = queries.first() {
            self.state
                .note_statement(|| crate::sql::writes_nowhere(sql));
        }
        let mut jobs: Vec<Job> = Vec::with_capacity(queries.len());
        for (shard, sql) in queries {
            let tablet = match self
                .ctx
                .gateway
                .pick(self.snap, keyspace, &shard, tablet_type)
            {
                Ok(t) => t,
                Err(e) => return (jobs, Some(e.into())),
            };
            // Named only should it fail: no label is formatted per query.
            let label = Label(keyspace, &shard, tablet_type);
            let mut taken = self.state.link(self.ctx, tablet, &label, &sql).await;
            // One shard's query cannot be sent again once the others have
            // started: a connection new to this statement that the server
            // closed since its last use (a restarted tablet) is replaced
            // before any query is sent, however recently it was used.
            let mut dead = false;
            if let Ok((Link::Lean(held), _, true)) = &mut taken {
                dead = held.handle.conn.is_closed();
            }
            if dead {
                if let Ok((link, ..)) = &taken {
                    self.state.forget(link);
                }
                taken = self.state.link(self.ctx, tablet, &label, &sql).await;
            }
            match taken {
                Ok((link, pinned, _)) => jobs.push((shard, link, pinned, sql)),
                Err(e) => return (jobs, Some(e)),
            }
        }
        (jobs, None)
    }

    /// Gives the connections of a multi-shard statement back.
    fn return_all(&mut self, jobs: Vec<Job>, broken: impl Fn(usize) -> bool) {
        for (i, (_, link, pinned, _)) in jobs.into_iter().enumerate() {
            self.state.give_back(self.ctx, link, pinned, broken(i));
        }
    }
}

/// The boxed future of [`Executor::held`].
type Held<'x> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'x>>;

/// After the primary `refused` a statement as read-only (a reparent
/// demoted it): the statement's place in the failover buffer, when the
/// session holds nothing on that primary (a transaction or reserved state
/// there is lost with it). None: the statement fails with the refusal.
fn hold<'c>(
    ctx: &'c ServerCtx,
    state: &ShardConns,
    keyspace: &str,
    shard: &str,
    refused: &str,
) -> Option<Hold<'c>> {
    if state.in_txn || state.reserved {
        return None;
    }
    ctx.gateway
        .buffer
        .hold(&ctx.snapshot, keyspace, shard, refused)
}

impl VCursor for Executor<'_> {
    async fn stream_multi<C: ScatterConsumer + Send>(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
        prepared: Option<&crate::engine::PreparedQuery>,
        consumer: &mut C,
    ) -> Result<(), Error> {
        use crate::backend::lean::Begun;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (mut jobs, failed) = self.take_all(keyspace, tablet_type, queries).await;
        let broken: Vec<AtomicBool> = jobs.iter().map(|_| AtomicBool::new(false)).collect();
        let res = match failed {
            Some(e) => Err(e),
            None => {
                // Start every shard's query, then hand the row streams over.
                let started = futures_util::future::join_all(jobs.iter_mut().zip(&broken).map(
                    |((shard, link, _, sql), broken)| async move {
                        let label = Label(keyspace, shard, tablet_type);
                        let fail = move |source: mysql_async::Error| {
                            let e = backend(&label)(source);
                            if e.breaks_backend_conn() {
                                broken.store(true, Ordering::Relaxed);
                            }
                            e
                        };
                        match link {
                            Link::Driver(sc) => {
                                let result = sc
                                    .conn
                                    .query_iter(crate::sql::raw::wire(sql))
                                    .await
                                    .map_err(fail)?;
                                let stream = result.stream_and_drop::<Row>().await.map_err(fail)?;
                                Ok::<_, Error>(stream.map(|st| {
                                    let cols = Started::Columns(st.columns_ref().to_vec());
                                    let rows: Box<dyn ShardRows + '_> = Box::new(DriverRows {
                                        rows: st,
                                        current: OwnedRow::default(),
                                        fail,
                                    });
                                    (cols, rows)
                                }))
                            }
                            Link::Lean(held) => {
                                let conn = &mut held.handle.conn;
                                let failed = |e| match e {
                                    RunError::Backend(e) | RunError::Unsent(e) => fail(e),
                                    RunError::Sink(e) => e,
                                };
                                let begun = match prepared {
                                    Some(pq) => conn
                                        .start_execute(&pq.sql, &pq.params)
                                        .await
                                        .map_err(failed)?,
                                    None => Begun::AsText,
                                };
                                let started = match begun {
                                    Begun::Rows(cols) => Started::Kept(cols),
                                    Begun::Done => return Ok(None),
                                    Begun::AsText => match conn.start(sql).await.map_err(failed)? {
                                        Some(defs) => {
                                            if let Some(pq) = prepared {
                                                conn.recheck_verdict(&pq.sql, &defs);
                                            }
                                            Started::Defs(defs, fail)
                                        }
                                        None => return Ok(None),
                                    },
                                };
                                let rows: Box<dyn ShardRows + '_> = Box::new(LeanRows {
                                    conn: Some(conn),
                                    width: started.width(),
                                    cells: Vec::new(),
                                    fail,
                                });
                                Ok(Some((started, rows)))
                            }
                        }
                    },
                ))
                .await;
                let mut streams = ShardStreams {
                    columns: Vec::new().into(),
                    streams: Vec::with_capacity(started.len()),
                };
                let mut first_err = None;
                for s in started {
                    match s {
                        Ok(Some((cols, rows))) => {
                            if streams.streams.is_empty() {
                                match cols.columns() {
                                    Ok(cols) => streams.columns = cols,
                                    Err(e) => {
                                        first_err.get_or_insert(e);
                                    }
                                }
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
        // Rows a consumer left unread are read (and dropped), so the
        // connections can take the next statement; after a failure (the
        // client may be gone mid-way through a large result) only those
        // holding the session's transaction are worth it.
        for (i, (_, link, pinned, _)) in jobs.iter_mut().enumerate() {
            if let Link::Lean(held) = link {
                if broken[i].load(Ordering::Relaxed) {
                    continue;
                }
                if res.is_err() && !*pinned && !held.handle.conn.is_idle() {
                    broken[i].store(true, Ordering::Relaxed);
                    continue;
                }
                if held.handle.conn.skip_rows().await.is_err() {
                    broken[i].store(true, Ordering::Relaxed);
                }
            }
        }
        self.return_all(jobs, |i| broken[i].load(Ordering::Relaxed));
        res
    }

    async fn execute_multi(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> Result<Vec<ShardResult>, Error> {
        // Queries to shards whose primary a reparent drains go through
        // the failover buffer (`held`), after the others: (place, shard,
        // query), and the places of the others.
        let total = queries.len();
        let draining = |sh: &str| {
            let sh = self.snap.shard(keyspace, sh);
            sh.is_some_and(|s| !s.primary_serving)
        };
        let split = self.snap.draining
            && tablet_type == TabletType::Primary
            && self.ctx.gateway.buffer.enabled()
            && queries.iter().any(|(sh, _)| draining(sh));
        let (queries, places, later) = if split {
            let (mut now, mut places, mut later) = (Vec::new(), Vec::new(), Vec::new());
            for (i, (sh, sql)) in queries.into_iter().enumerate() {
                if draining(&sh) {
                    later.push((i, sh, sql));
                } else {
                    places.push(i);
                    now.push((sh, sql));
                }
            }
            (now, Some(places), later)
        } else {
            (queries, None, Vec::new())
        };
        // Run all queries concurrently on their shards' connections.
        let (mut jobs, failed) = self.take_all(keyspace, tablet_type, queries).await;
        let results = if failed.is_none() {
            futures_util::future::join_all(jobs.iter_mut().map(
                |(shard, link, _, sql)| async move {
                    let label = Label(keyspace, shard, tablet_type);
                    match link {
                        Link::Driver(sc) => {
                            collect(&mut sc.conn, sql).await.map_err(backend(&label))
                        }
                        Link::Lean(held) => {
                            let mut c = Collect::default();
                            match held.handle.conn.query(sql, None, &mut c).await {
                                Ok(_) => Ok(c.out),
                                Err(e) => Err(run_error(e, &label)),
                            }
                        }
                    }
                },
            ))
            .await
        } else {
            Vec::new()
        };
        let broken: Vec<bool> = results
            .iter()
            .map(|r| matches!(r, Err(e) if e.breaks_backend_conn()))
            .collect();
        // Shards whose primary refused as read-only, to send again through
        // the failover buffer: (index, shard, query).
        let may_hold = tablet_type == TabletType::Primary && self.ctx.gateway.buffer.enabled();
        let refused: Vec<(usize, String, String)> = if may_hold {
            let refused =
                |r: &Result<ShardResult, Error>| matches!(r, Err(e) if e.refused_read_only());
            (results.iter().enumerate())
                .filter(|(_, r)| refused(r))
                .map(|(i, _)| (i, jobs[i].0.clone(), jobs[i].3.clone()))
                .collect()
        } else {
            Vec::new()
        };
        self.return_all(jobs, |i| broken.get(i).copied().unwrap_or(false));
        let (mut results, mut retry) = (results, refused);
        if let Some(places) = places.filter(|_| failed.is_none()) {
            // Back in the statement's order, with the held queries' places.
            let mut all: Vec<Result<ShardResult, Error>> =
                (0..total).map(|_| Ok(ShardResult::default())).collect();
            for (k, r) in results.into_iter().enumerate() {
                all[places[k]] = r;
            }
            for r in &mut retry {
                r.0 = places[r.0];
            }
            retry.extend(later);
            results = all;
        }
        for (i, shard, sql) in retry {
            // The refusal, or none for a query held before it was sent.
            let refusal = std::mem::replace(&mut results[i], Ok(ShardResult::default())).err();
            let mut c = Collect::default();
            let (ks, tt) = (keyspace, tablet_type);
            let held = self.held(
                ks,
                &shard,
                tt,
                false,
                Share::No,
                None,
                &sql,
                None,
                &mut c,
                refusal,
            );
            results[i] = held.await.map(|()| c.out);
        }
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
        let t = crate::sql::quote_ident(table);
        let reserve = async {
            conn.query_drop("BEGIN").await?;
            let row: Option<(u64, u64)> = conn
                .query_first(format!(
                    "SELECT next_id, cache FROM {t} WHERE id = 0 FOR UPDATE"
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
        let update = format!("UPDATE {t} SET next_id = {} WHERE id = 0", next_id + block);
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

    fn serving(&self, alias: &str) -> bool {
        self.ctx.gateway.health.fitness(alias).serves()
    }

    fn topology_problems(&self) -> Vec<String> {
        self.ctx.watch_stats.problems()
    }

    fn max_memory_rows(&self) -> usize {
        match self.state.unbounded_rows {
            true => usize::MAX,
            false => self.ctx.max_memory_rows,
        }
    }

    fn scatter_allowed(&self) -> bool {
        !self.state.no_scatter
    }

    fn no_backslash_escapes(&self) -> bool {
        self.state.no_backslash_escapes
    }

    fn multi_shard_transactions(&self) -> bool {
        !self.state.shard_autocommit
            && self
                .state
                .transaction_mode
                .unwrap_or(self.ctx.transaction_mode)
                != TransactionMode::Single
    }

    async fn begin_implicit(&mut self) -> Result<Implicit, Error> {
        if !self.state.in_txn {
            self.state.in_txn = true;
            return Ok(Implicit::Transaction);
        }
        let ours = |(name, _): &(String, String)| name == STATEMENT_SAVEPOINT;
        if self.state.savepoints.iter().any(ours) {
            return Ok(Implicit::Nothing);
        }
        // Set where the transaction has been; a tablet it reaches during
        // the statement sets it after its BEGIN, as a client's savepoint.
        let set = format!("SAVEPOINT {STATEMENT_SAVEPOINT}");
        self.state.on_transaction(&set).await?;
        self.state
            .savepoints
            .push((STATEMENT_SAVEPOINT.to_string(), set));
        Ok(Implicit::Savepoint)
    }

    async fn end_implicit(&mut self, opened: Implicit, commit: bool) -> Result<(), Error> {
        match opened {
            Implicit::Nothing => Ok(()),
            Implicit::Transaction => self.state.finish_txn(self.ctx, commit).await,
            Implicit::Savepoint => {
                self.state
                    .savepoints
                    .retain(|(n, _)| n != STATEMENT_SAVEPOINT);
                if commit {
                    return Ok(());
                }
                let back = format!("ROLLBACK TO SAVEPOINT {STATEMENT_SAVEPOINT}");
                if let Err(e) = self.state.on_transaction(&back).await {
                    let _ = self.state.finish_txn(self.ctx, false).await;
                    return Err(e);
                }
                Ok(())
            }
        }
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
        // SHOW WARNINGS after a shared read: the connection the question
        // goes to is brought to where the shared one was. A read that
        // warned runs again there (it changes nothing); otherwise a read
        // of a table that cannot warn clears what that connection held.
        if let Some(warned) = self.state.shared_last.take() {
            if crate::sql::asks_diagnostics(sql) {
                let tablet = self
                    .ctx
                    .gateway
                    .pick(self.snap, keyspace, shard, tablet_type)?;
                let (again, params) = match warned.filter(|(alias, _)| *alias == tablet.alias) {
                    Some((_, read)) => (read.sql, read.params),
                    None => (CLEAR_DIAGNOSTICS.into(), None),
                };
                let mut discard = Discard;
                let (ks, tt) = (keyspace, tablet_type);
                self.on_shard(
                    ks,
                    shard,
                    tt,
                    false,
                    Share::No,
                    None,
                    &again,
                    params,
                    &mut discard,
                    false,
                )
                .await?;
            }
        }
        // A read that leaves nothing on its connection may share one, and
        // so may a read of session defaults (the same on every connection
        // that carries the session's settings).
        let share = if rename_db_columns || !self.state.may_share() {
            Share::No
        } else if crate::sql::shareable_read(sql) {
            Share::Read
        } else if crate::sql::reads_defaults(sql) {
            Share::Defaults
        } else {
            Share::No
        };
        self.on_shard(
            keyspace,
            shard,
            tablet_type,
            rename_db_columns,
            share,
            None,
            sql,
            None,
            sink,
            true,
        )
        .await
    }
}

/// Whether a statement on one tablet may run on a shared connection (see
/// [`crate::backend::mux`]), found once by the caller that knows the
/// statement and the session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Share {
    /// On a connection of the session's own.
    No,
    /// A read that leaves nothing on its connection
    /// ([`crate::sql::shareable_read`]).
    Read,
    /// A read of session defaults ([`crate::sql::reads_defaults`]): it
    /// shares too, and its answer is kept a moment for sessions with the
    /// same settings (`backend::defaults`).
    Defaults,
}

impl Executor<'_> {
    /// Runs a client's prepared statement as a prepared statement on the
    /// shard's tablet (prepared once per backend connection, then cached):
    /// the tablet skips parsing and rows come back typed, for the client's
    /// binary protocol. A `shareable` one (a read that leaves nothing on
    /// its connection, see [`crate::sql::shareable_read`]) may go to a
    /// shared connection; `writes_nowhere` is the statement's
    /// [`crate::sql::writes_nowhere`], found when it was prepared.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_shard_prepared<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        sql: &str,
        shareable: bool,
        writes_nowhere: bool,
        params: Vec<Value>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let share = if shareable && self.state.may_share() {
            Share::Read
        } else {
            Share::No
        };
        self.on_shard(
            keyspace,
            shard,
            tablet_type,
            false,
            share,
            Some(writes_nowhere),
            sql,
            Some(params),
            sink,
            true,
        )
        .await
    }

    /// Runs a read on one of the tablet's shared pipelined connections
    /// (see [`crate::backend::mux`]): the statement's result, or the read
    /// back when it could not be sent there. The reply to `keep` (a read
    /// of session defaults) is kept when it can be.
    async fn on_shared<S: RowSink + Send>(
        &mut self,
        tablet: &Tablet,
        label: &Label<'_>,
        binary: bool,
        keep: Option<&str>,
        reply: tokio::sync::oneshot::Receiver<mux::Outcome>,
        sink: &mut S,
    ) -> Result<Result<u64, Error>, Read> {
        let outcome = mux::outcome(reply).await;
        if let Some((sql, rec)) = keep.zip(outcome.keepable()) {
            let now = std::time::Instant::now();
            let settings = self.state.settings_key();
            self.ctx
                .pools
                .defaults
                .put(&tablet.alias, settings, sql, now, rec);
        }
        let done = outcome.deliver(binary, sink).await?;
        self.state.shared_last = Some(done.warned.map(|read| (tablet.alias.clone(), read)));
        Ok(done.res.map_err(|e| run_error(e, label)))
    }

    /// Whether a statement would start new work on `primary` while it
    /// drains: a write outside a transaction, or a transaction's first
    /// statement there. A transaction under way there goes on, so that it
    /// can finish before the primary is made read-only.
    fn starts_work(&self, primary: &str, writes_nowhere: Option<bool>, sql: &str) -> bool {
        let st = &self.state;
        if st.reserved || st.pinned(primary).is_some() || st.pinned_lean(primary).is_some() {
            return false;
        }
        st.in_txn || !writes_nowhere.unwrap_or_else(|| crate::sql::writes_nowhere(sql))
    }

    /// The failover buffer's slow path of [`Self::on_shard`], for a
    /// statement the primary `refused` as read-only, or (None) one about
    /// to start work on a primary a reparent drains: held, then sent to
    /// the new primary, or to the same one again (see
    /// [`crate::gateway::buffer`]). Boxed and type-erased: it runs
    /// `on_shard` again, and keeps its state out of the common path's.
    #[allow(clippy::too_many_arguments)]
    fn held<'x, S: RowSink + Send>(
        &'x mut self,
        ks: &'x str,
        shard: &'x str,
        tt: TabletType,
        rename: bool,
        share: Share,
        writes_nowhere: Option<bool>,
        sql: &'x str,
        params: Option<Vec<Value>>,
        sink: &'x mut S,
        mut refusal: Option<Error>,
    ) -> Held<'x> {
        Box::pin(async move {
            let (ctx, snap) = (self.ctx, self.snap);
            let primary = crate::gateway::buffer::primary_of(snap, ks, shard).unwrap_or_default();
            let hold = match &refusal {
                Some(_) => hold(ctx, self.state, ks, shard, primary),
                None if self.starts_work(primary, writes_nowhere, sql) => {
                    ctx.gateway.buffer.hold(&ctx.snapshot, ks, shard, primary)
                }
                None => None,
            };
            let Some(mut hold) = hold else {
                return match refusal {
                    Some(e) => Err(e),
                    None => {
                        let run = self.on_shard(
                            ks,
                            shard,
                            tt,
                            rename,
                            share,
                            writes_nowhere,
                            sql,
                            params,
                            sink,
                            false,
                        );
                        run.await
                    }
                };
            };
            loop {
                // The new primary's snapshot, or the same primary again.
                let fresh = match hold.next(&ctx.snapshot).await {
                    Next::GiveUp => match refusal.take() {
                        Some(e) => return Err(e),
                        // Held in vain before being sent: sent as it
                        // would have been.
                        None => None,
                    },
                    Next::Moved(fresh) => Some(fresh),
                    Next::Recheck => None,
                };
                let mut ex = Executor {
                    ctx,
                    snap: fresh.as_deref().unwrap_or(snap),
                    state: &mut *self.state,
                };
                let again = ex
                    .on_shard(
                        ks,
                        shard,
                        tt,
                        rename,
                        Share::No,
                        writes_nowhere,
                        sql,
                        params.clone(),
                        sink,
                        false,
                    )
                    .await;
                match again {
                    Err(e) if fresh.is_none() && e.refused_read_only() => refusal = Some(e),
                    res => {
                        hold.released();
                        return res;
                    }
                }
            }
        })
    }

    /// One statement on one shard's tablet, as text or (with `params`) as a
    /// prepared statement, streamed into the sink; on a shared connection
    /// when the caller found it may `share` one. `writes_nowhere`
    /// is [`crate::sql::writes_nowhere`] when the caller knows it (a
    /// prepared statement's, found once), else it is found when needed.
    ///
    /// With `hold_ok`, the failover buffer may hold the statement (see
    /// [`Self::held`]): while a reparent drains the shard's primary, one
    /// that would start new work there; one the primary refused as
    /// read-only. Both paths are boxed, off the common one.
    #[allow(clippy::too_many_arguments)]
    async fn on_shard<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        rename_db_columns: bool,
        share: Share,
        writes_nowhere: Option<bool>,
        sql: &str,
        mut params: Option<Vec<Value>>,
        sink: &mut S,
        hold_ok: bool,
    ) -> Result<(), Error> {
        if hold_ok && self.snap.draining && tablet_type == TabletType::Primary {
            let here = self.snap.shard(keyspace, shard);
            if here.is_some_and(|s| !s.primary_serving) && self.ctx.gateway.buffer.enabled() {
                let (ks, tt, rename) = (keyspace, tablet_type, rename_db_columns);
                let held = self.held(
                    ks,
                    shard,
                    tt,
                    rename,
                    share,
                    writes_nowhere,
                    sql,
                    params,
                    sink,
                    None,
                );
                return held.await;
            }
        }
        let mut tablet = self
            .ctx
            .gateway
            .pick(self.snap, keyspace, shard, tablet_type)?;
        let label = Label(keyspace, shard, tablet_type);
        self.state.shared_last = None;
        // A lone read runs on the session's own connection, counted while
        // the guard lives (to the end of this call) so that reads arriving
        // meanwhile still share.
        let mut _solo = None;
        if share != Share::No {
            let binary = params.is_some();
            let settings = self.state.settings_key();
            // A read of session defaults: answered from what the tablet
            // said lately on a connection with the session's settings, or
            // queued even when alone so that its reply comes recorded, to
            // keep (`backend::defaults`).
            let keep = share == Share::Defaults && !binary;
            if keep {
                let now = std::time::Instant::now();
                let kept = self
                    .ctx
                    .pools
                    .defaults
                    .get(&tablet.alias, settings, sql, now);
                if let Some(rec) = kept {
                    self.state.shared_last = Some(None);
                    let res = mux::replay(&rec, false, sink).await;
                    return self.finish(res.map_err(|e| run_error(e, &label)));
                }
            }
            let route = self
                .ctx
                .pools
                .route_shareable(tablet, settings, !keep, || Read {
                    sql: sql.into(),
                    params: params.take(),
                });
            let reply = match route {
                Shareable::Solo(s) => {
                    _solo = Some(s);
                    None
                }
                Shareable::Off | Shareable::Own => None,
                Shareable::Queued(rx) => Some(rx),
                Shareable::Open(read) => match self
                    .ctx
                    .pools
                    .open_shared(tablet, &self.state.settings, &self.state.settings_key, read)
                    .await
                {
                    Ok(rx) => Some(rx),
                    Err(read) => {
                        params = read.params;
                        None
                    }
                },
            };
            // A read sent back unwritten runs on the session's own.
            if let Some(rx) = reply {
                let keep = keep.then_some(sql);
                match self.on_shared(tablet, &label, binary, keep, rx, sink).await {
                    Ok(res) => return self.finish(res),
                    Err(read) => params = read.params,
                }
            }
        }
        self.state
            .note_statement(|| writes_nowhere.unwrap_or_else(|| crate::sql::writes_nowhere(sql)));
        // A SHOW's WHERE may name the column as the client sees it.
        let tablet_names = rename_db_columns
            .then(|| crate::sql::tables_in_renamed(sql, keyspace, &tablet.db_name))
            .flatten();
        let sql = tablet_names.as_deref().unwrap_or(sql);
        let renamed = |t: &Tablet| {
            rename_db_columns.then(|| Rename {
                from: format!("Tables_in_{}", t.db_name),
                to: format!("Tables_in_{keyspace}"),
            })
        };
        let mut rename = renamed(tablet);
        let mut moved = false;
        // A connection that failed before the statement was written (it
        // died since its last use) is dropped and the statement sent once
        // more on another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let linked = self.state.link(self.ctx, tablet, &label, sql).await;
            let (mut link, pinned, fresh) = match linked {
                // A replica that could not be reached (nothing was sent):
                // the statement goes to another of its shard, once, rather
                // than fail until the health check finds it down.
                Err(e)
                    if e.breaks_backend_conn() && tablet_type != TabletType::Primary && !moved =>
                {
                    let gw = &self.ctx.gateway;
                    let other =
                        gw.pick_other(self.snap, keyspace, shard, tablet_type, &tablet.alias);
                    let Some(other) = other else {
                        return Err(e);
                    };
                    tracing::info!(from = %tablet.alias, to = %other.alias, error = %e, "tablet unreachable; statement sent to another");
                    (tablet, rename, moved, attempt) = (other, renamed(other), true, 0);
                    continue;
                }
                linked => linked?,
            };
            let res = match &mut link {
                Link::Lean(held) => {
                    let conn = &mut held.handle.conn;
                    match &params {
                        Some(params) => conn.execute(sql, params, sink).await,
                        None => conn.query(sql, rename.as_ref(), sink).await,
                    }
                }
                // The driver's futures are large and this path is rare:
                // boxed, they do not size every connection's task.
                Link::Driver(sc) => {
                    // Kept: a statement the buffer holds is sent again.
                    let params = params.clone();
                    let rename = rename.as_ref();
                    let sink = &mut *sink;
                    Box::pin(async move {
                        match params {
                            None => match sc.conn.query_iter(crate::sql::raw::wire(sql)).await {
                                Ok(result) => drain(result, rename, sink).await,
                                Err(e) => Err(RunError::Backend(e)),
                            },
                            Some(params) => match sc
                                .conn
                                .exec_iter(
                                    crate::sql::raw::wire(sql),
                                    mysql_async::Params::Positional(params),
                                )
                                .await
                            {
                                Ok(result) => drain(result, rename, sink).await,
                                Err(e) => Err(RunError::Backend(e)),
                            },
                        }
                    })
                    .await
                }
            };
            if attempt == 1 && fresh && matches!(res, Err(RunError::Unsent(_))) {
                self.state.forget(&link);
                continue;
            }
            let res = res.map_err(|e| run_error(e, &label));
            let broken = matches!(&res, Err(e) if e.breaks_backend_conn());
            self.state.give_back(self.ctx, link, pinned, broken);
            // A refusal wrote nothing to the sink: the statement can go
            // again, with its parameters.
            let refused = matches!(&res, Err(e) if e.refused_read_only());
            if hold_ok && tablet_type == TabletType::Primary && refused {
                let (ks, tt, rename) = (keyspace, tablet_type, rename_db_columns);
                let e = res.err();
                let held = self.held(
                    ks,
                    shard,
                    tt,
                    rename,
                    Share::No,
                    writes_nowhere,
                    sql,
                    params,
                    sink,
                    e,
                );
                return held.await;
            }
            return self.finish(res);
        }
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

/// Begins the session's transaction on a driver connection, its
/// savepoints set after.
async fn begin_driver(
    conn: &mut mysql_async::Conn,
    begin: &str,
    savepoints: &[(String, String)],
) -> Result<(), mysql_async::Error> {
    conn.query_drop(begin).await?;
    for (_, sp) in savepoints {
        conn.query_drop(sp.as_str()).await?;
    }
    Ok(())
}

/// Begins the session's transaction on a lean connection, its savepoints
/// set after.
async fn begin_lean(
    held: &mut LeanHeld,
    begin: &str,
    savepoints: &[(String, String)],
) -> Result<(), RunError> {
    held.handle.conn.run(begin).await?;
    for (_, sp) in savepoints {
        held.handle.conn.run(sp).await?;
    }
    Ok(())
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
        prepared: Option<&crate::engine::PreparedQuery>,
        consumer: &mut C,
    ) -> Result<(), Error> {
        self.record(keyspace, &queries);
        self.inner
            .stream_multi(keyspace, tablet_type, queries, prepared, consumer)
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

    fn max_memory_rows(&self) -> usize {
        self.inner.max_memory_rows()
    }

    fn scatter_allowed(&self) -> bool {
        self.inner.scatter_allowed()
    }

    fn no_backslash_escapes(&self) -> bool {
        self.inner.no_backslash_escapes()
    }

    fn multi_shard_transactions(&self) -> bool {
        self.inner.multi_shard_transactions()
    }

    async fn begin_implicit(&mut self) -> Result<Implicit, Error> {
        self.inner.begin_implicit().await
    }

    async fn end_implicit(&mut self, opened: Implicit, commit: bool) -> Result<(), Error> {
        self.inner.end_implicit(opened, commit).await
    }

    fn serving(&self, alias: &str) -> bool {
        self.inner.serving(alias)
    }

    fn topology_problems(&self) -> Vec<String> {
        self.inner.topology_problems()
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
    let mut result = conn.query_iter(crate::sql::raw::wire(sql)).await?;
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
    rename: Option<&Rename>,
    sink: &mut S,
) -> Result<u64, RunError> {
    let mut last_id = 0;
    loop {
        let cols = result.columns();
        match cols {
            Some(cols) if !cols.is_empty() => {
                match rename {
                    Some(r) => sink.columns(&r.apply(&cols)),
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

/// The columns of one shard's result in a scatter: the merge reads one
/// shard's (the others' are only counted), so a lean connection's are
/// decoded only when asked for.
enum Started<F> {
    /// Decoded by the driver.
    Columns(Vec<Column>),
    /// As the tablet encoded them, with the shard's error mapping.
    Defs(Vec<bytes::BytesMut>, F),
    /// A prepared statement's, decoded once and kept with it.
    Kept(std::sync::Arc<[Column]>),
}

impl<F: Fn(mysql_async::Error) -> Error> Started<F> {
    fn width(&self) -> usize {
        match self {
            Started::Columns(cols) => cols.len(),
            Started::Defs(defs, _) => defs.len(),
            Started::Kept(cols) => cols.len(),
        }
    }

    fn columns(self) -> Result<std::sync::Arc<[Column]>, Error> {
        match self {
            Started::Columns(cols) => Ok(cols.into()),
            Started::Defs(defs, fail) => crate::backend::lean::columns(&defs)
                .map(std::sync::Arc::from)
                .map_err(fail),
            Started::Kept(cols) => Ok(cols),
        }
    }
}

/// A lean connection's rows of the result [`LeanConn::start`] began, as
/// the engine reads a shard's rows (in place); ends after the first error.
///
/// [`LeanConn::start`]: crate::backend::lean::LeanConn::start
struct LeanRows<'c, F> {
    conn: Option<&'c mut crate::backend::lean::LeanConn>,
    width: usize,
    cells: Vec<Cell>,
    fail: F,
}

impl<F: Fn(mysql_async::Error) -> Error> LeanRows<'_, F> {
    /// The stream's answer once its connection moved on: a result that
    /// ended or failed gives the connection up (it reads nothing more).
    fn moved_on(&mut self, r: Result<bool, mysql_async::Error>) -> Result<bool, Error> {
        if !matches!(r, Ok(true)) {
            self.conn = None;
        }
        r.map_err(&self.fail)
    }
}

impl<F> ShardRows for LeanRows<'_, F>
where
    F: Fn(mysql_async::Error) -> Error + Send,
{
    fn poll_next_row(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<bool, Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return std::task::Poll::Ready(Ok(false));
        };
        let r = futures_util::ready!(conn.poll_next_row(cx, self.width, &mut self.cells));
        std::task::Poll::Ready(self.moved_on(r))
    }

    fn next_at_hand(&mut self) -> Option<Result<bool, Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Some(Ok(false));
        };
        let r = conn.next_buffered_row(self.width, &mut self.cells)?;
        Some(self.moved_on(r))
    }

    fn forward_run(
        &mut self,
        sink: &mut dyn crate::engine::PacketSink,
        binary: bool,
        width: usize,
    ) -> bool {
        match self.conn.as_mut() {
            Some(conn) if conn.binary_rows() == binary && self.width == width => {
                // The current row is given up with the run: no cell of it
                // is left to read.
                self.cells.clear();
                conn.forward_buffered_rows(|framed| sink.framed_rows(framed))
            }
            _ => false,
        }
    }

    fn row_width(&self) -> Option<usize> {
        // Lean rows are indexed to exactly this many cells or refused.
        Some(self.width)
    }

    fn row(&self) -> TextRow<'_> {
        match self.conn.as_deref() {
            Some(c) if c.binary_rows() => TextRow::new_binary(c.current_row(), &self.cells),
            Some(c) => TextRow::new(c.current_row(), &self.cells),
            None => TextRow::new(&[], &self.cells),
        }
    }
}

/// A driver connection's rows (the fallback path), each encoded as a
/// shard's text row.
struct DriverRows<S, F> {
    rows: S,
    current: OwnedRow,
    fail: F,
}

impl<S, F> ShardRows for DriverRows<S, F>
where
    S: futures_util::Stream<Item = Result<Row, mysql_async::Error>> + Send + Unpin,
    F: Fn(mysql_async::Error) -> Error + Send,
{
    fn poll_next_row(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<bool, Error>> {
        use futures_util::StreamExt;
        std::task::Poll::Ready(match futures_util::ready!(self.rows.poll_next_unpin(cx)) {
            Some(Ok(r)) => {
                self.current.set(&r.unwrap());
                Ok(true)
            }
            Some(Err(e)) => Err((self.fail)(e)),
            None => Ok(false),
        })
    }

    fn row(&self) -> TextRow<'_> {
        self.current.row()
    }
}

/// Brings a lean connection to a session's `settings` (tagged `key`; see
/// [`crate::backend::LeanHandle::conform`]). None (the connection closed,
/// the driver's path taken) if that fails.
async fn conform(
    settings: &[String],
    key: &std::sync::Arc<str>,
    mut held: LeanHeld,
) -> Option<LeanHeld> {
    if *held.handle.settings == **key {
        return Some(held);
    }
    // Boxed: rare, and inlined it would size every client's task.
    let ok = Box::pin(held.handle.conform(settings, key)).await;
    ok.then_some(held)
}

/// The tablet refused the statement (a server error): the connection
/// stays usable.
fn refused(e: &RunError) -> bool {
    matches!(e, RunError::Backend(mysql_async::Error::Server(_)))
}

/// The rows of the next queued query's reply on a lean connection.
async fn session_reply(
    conn: &mut crate::backend::lean::LeanConn,
) -> Result<Vec<Vec<Value>>, RunError> {
    let mut c = Collect::default();
    conn.reply(false, &mut c).await?;
    Ok(c.out.rows)
}

/// Buffers a statement's first result (rows or OK), for the engine's
/// merges.
#[derive(Default)]
struct Collect {
    out: ShardResult,
    /// Results seen so far.
    seen: usize,
}

impl RowSink for Collect {
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error> {
        if self.seen == 0 {
            self.out.columns = cols.to_vec();
        }
        Ok(())
    }
    fn row(&mut self, values: &[Value]) -> Result<(), Error> {
        if self.seen == 0 {
            self.out.rows.push(values.to_vec());
        }
        Ok(())
    }
    fn end_rows(&mut self, _: u16) -> Result<(), Error> {
        self.seen += 1;
        Ok(())
    }
    fn ok(&mut self, done: QueryDone) -> Result<(), Error> {
        if self.seen == 0 {
            self.out.done = done;
        }
        self.seen += 1;
        Ok(())
    }
}
