//! Stopping a session's statement from outside it: `KILL QUERY` and
//! `KILL CONNECTION` from another client (what the `mysql` client sends
//! on Ctrl-C, what Connector/J's `Statement.cancel()` sends), and the
//! query timeout (`--query-timeout`, `SET query_timeout`, the
//! `/*vt+ QUERY_TIMEOUT_MS=n */` directive), as vtgate has them.
//!
//! A client's connection id is shardgate's, not a tablet's: a `KILL 12`
//! passed down would end whatever tablet thread has that number, another
//! client's transaction or a replication thread. So the gate answers
//! KILL itself. Every client session has a [`Control`], registered by
//! its connection id in [`Sessions`], which records the tablet
//! connections (tablet alias, MySQL thread id) its current statement
//! runs on, from the moment the executor links one until it gives it
//! back. Stopping a statement marks it stopped (the executor links no
//! new connection for it: a nested loop or a scatter ends at its next
//! tablet query) and kills its queries on those tablets, each by its
//! query id (`KILL QUERY ID`, read from the tablet's process list while
//! the connection is still the session's, so that a query that ended
//! meanwhile, and the next one on a connection given back, are left
//! alone). The tablet answers the killed query with ER_QUERY_INTERRUPTED,
//! the statement ends with it, the client's connection and transaction go
//! on, as after a `KILL QUERY` on MySQL. Killing a connection also shuts
//! its client socket down: its session ends as if the client had left,
//! rolling its transaction back.
//!
//! What it costs a statement that is never stopped: one atomic add when
//! it starts, and for each tablet connection it links a lock and a push,
//! then a lock and a removal (no allocation: the tablet is recorded by a
//! hash of its alias). A timed statement also arms a timer task, dropped
//! when the statement ends in time.
//!
//! Reads that share a pipelined tablet connection with other sessions'
//! (see [`crate::backend::mux`]) are not killed: the connection runs
//! other sessions' reads too. A session under a query timeout does not
//! share its reads, so a timed read is always on a connection of its own.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::fasthash::FastMap;
use crate::server::ServerCtx;

/// Why a statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `KILL QUERY` or `KILL CONNECTION` from a client.
    Killed,
    /// Its query timeout passed.
    TimedOut,
}

/// How often a stop looks again for queries of the statement still
/// running (one linked after the first look, or one whose kill the
/// tablet had not yet seen), and how many times at most.
const RELOOK: Duration = Duration::from_millis(50);
const LOOKS: usize = 40;

/// How long a stop waits for a connection to a tablet it kills on.
const REACH: Duration = Duration::from_secs(2);

/// One client session, as those who may stop its statements see it.
pub struct Control {
    /// Its connection id (the handshake's, what `KILL` names).
    pub id: u32,
    /// Its client socket, shut down by `KILL CONNECTION` (None where
    /// there is no socket, as in tests).
    fd: Option<RawFd>,
    /// The server, for a timer that fires after the statement's caller
    /// has moved on.
    ctx: Weak<ServerCtx>,
    /// Statements started so far: the current one's number.
    statement: AtomicU64,
    /// The number of the statement last stopped, times 4, plus its
    /// [`Why`] (1 killed, 2 timed out): a statement is stopped when this
    /// names it, so a new statement starts unstopped without a store.
    stopped: AtomicU64,
    /// The tablet connections the current statement runs on.
    running: Mutex<Running>,
}

/// The tablet connections a statement runs on: (the tablet alias's
/// [`alias_key`], thread id, a number no other link shares), and the next
/// such number. Keys rather than names: recording one costs no
/// allocation and no reference count.
#[derive(Default)]
struct Running {
    links: Vec<(u64, u32, u64)>,
    next: u64,
}

/// What identifies a tablet alias in a [`Control`]'s record (a stop
/// looks the alias up among the topology's tablets by it).
pub fn alias_key(alias: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<crate::fasthash::FastHasher>::default().hash_one(alias)
}

impl Control {
    /// A control not registered anywhere, for tests of its bookkeeping.
    #[cfg(test)]
    fn detached(id: u32) -> Arc<Self> {
        Self::new(id, None, Weak::new())
    }

    fn new(id: u32, fd: Option<RawFd>, ctx: Weak<ServerCtx>) -> Arc<Self> {
        Arc::new(Control {
            id,
            fd,
            ctx,
            statement: AtomicU64::new(0),
            stopped: AtomicU64::new(0),
            running: Mutex::new(Running::default()),
        })
    }

    /// A statement starts: the number that names it.
    pub fn begin(&self) -> u64 {
        self.statement.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Why the current statement was stopped, if it was.
    pub fn stopped(&self) -> Option<Why> {
        let s = self.stopped.load(Ordering::Acquire);
        if s >> 2 != self.statement.load(Ordering::Acquire) {
            return None;
        }
        match s & 3 {
            1 => Some(Why::Killed),
            2 => Some(Why::TimedOut),
            _ => None,
        }
    }

    /// Marks statement `n` stopped, unless another one runs by now:
    /// whether it was marked.
    fn mark(&self, n: u64, why: Why) -> bool {
        let code = match why {
            Why::Killed => 1,
            Why::TimedOut => 2,
        };
        if self.statement.load(Ordering::Acquire) != n {
            return false;
        }
        self.stopped.store(n << 2 | code, Ordering::Release);
        true
    }

    /// The current statement runs on `thread` of the tablet whose alias
    /// has [`alias_key`] `alias` from now until [`Self::unlinked`], which
    /// every link must reach (a link left listed would have a later stop
    /// kill whatever runs on that connection by then).
    pub fn linked(&self, alias: u64, thread: u32) {
        let mut running = lock(&self.running);
        let n = running.next;
        running.next += 1;
        running.links.push((alias, thread, n));
    }

    /// The connection `thread` of tablet `alias` went back.
    pub fn unlinked(&self, alias: u64, thread: u32) {
        let mut running = lock(&self.running);
        if let Some(i) = running
            .links
            .iter()
            .position(|&(a, t, _)| t == thread && a == alias)
        {
            running.links.swap_remove(i);
        }
    }

    fn still_linked(&self, alias: u64, thread: u32, n: u64) -> bool {
        lock(&self.running)
            .links
            .iter()
            .any(|&(a, t, m)| t == thread && m == n && a == alias)
    }

    /// Arms the query timeout of statement `n`: when `after` passes and
    /// the statement still runs, it is stopped. The timer ends with the
    /// returned guard.
    pub fn arm(self: &Arc<Self>, n: u64, after: Duration) -> Timer {
        let me = self.clone();
        Timer(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(ctx) = me.ctx.upgrade() {
                stop(&ctx, &me, n, Why::TimedOut).await;
            }
        }))
    }
}

/// A statement's armed query timeout; dropping it disarms it.
pub struct Timer(tokio::task::JoinHandle<()>);

impl Drop for Timer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every client session by connection id, and what KILL may do.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<FastMap<u32, Arc<Control>>>,
    /// `--allow-kill-statement`: KILL is refused without it, as vtgate
    /// refuses it.
    pub allow_kill: bool,
    /// `--query-timeout`: every statement's timeout unless its session or
    /// the statement says otherwise (None: no timeout).
    pub query_timeout: Option<Duration>,
}

/// What a KILL found.
#[derive(Debug, PartialEq, Eq)]
pub enum Killed {
    /// The session was found and told.
    Done,
    /// No session has that connection id.
    NoSuchThread,
}

impl Sessions {
    /// How many client sessions are logged in.
    pub fn open(&self) -> usize {
        lock(&self.open).len()
    }

    /// Registers the session of connection `id`, whose client socket is
    /// `fd`.
    pub fn register(&self, ctx: &Arc<ServerCtx>, id: u32, fd: Option<RawFd>) -> Arc<Control> {
        let control = Control::new(id, fd, Arc::downgrade(ctx));
        lock(&self.open).insert(id, control.clone());
        control
    }

    /// Forgets the session of connection `id`: done before its socket
    /// closes, so that a KILL never shuts down a socket that reuses the
    /// number.
    pub fn deregister(&self, id: u32) {
        lock(&self.open).remove(&id);
    }

    /// `KILL QUERY id` (`connection` false) or `KILL [CONNECTION] id`:
    /// stops the session's current statement, and for a connection shuts
    /// its socket down so that its session ends.
    pub async fn kill(&self, ctx: &ServerCtx, id: u32, connection: bool) -> Killed {
        let control = {
            let open = lock(&self.open);
            let Some(control) = open.get(&id) else {
                return Killed::NoSuchThread;
            };
            if connection {
                if let Some(fd) = control.fd {
                    // Under the lock: the socket is still open (the
                    // session deregisters before it closes it).
                    // SAFETY: shutdown(2) on a descriptor this process
                    // owns and keeps open for as long as it is listed.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
            control.clone()
        };
        let n = control.statement.load(Ordering::Acquire);
        stop(ctx, &control, n, Why::Killed).await;
        Killed::Done
    }
}

/// Stops statement `n` of `control`'s session, if it still runs: marks
/// it, then kills its queries on the tablets, looking again while it
/// runs (a query linked after a look, or one the tablet had not started
/// yet when looked at).
async fn stop(ctx: &ServerCtx, control: &Control, n: u64, why: Why) {
    if !control.mark(n, why) {
        return;
    }
    let mut killed: Vec<(u64, u64)> = Vec::new();
    for look in 0..LOOKS {
        if control.statement.load(Ordering::Acquire) != n {
            return;
        }
        let running = lock(&control.running).links.clone();
        if running.is_empty() && look > 0 {
            return;
        }
        for (alias, thread, link) in running {
            let snap = ctx.snapshot.load();
            let mut named = snap
                .tablets
                .values()
                .filter(|t| alias_key(&t.alias) == alias);
            let (Some(tablet), None) = (named.next(), named.next()) else {
                continue;
            };
            // A tablet that does not answer holds no query to kill.
            let reached = tokio::time::timeout(REACH, ctx.pools.get(tablet).get_conn()).await;
            let Ok(Ok(mut conn)) = reached else {
                continue;
            };
            let ask = format!(
                "SELECT QUERY_ID FROM information_schema.PROCESSLIST \
                 WHERE ID = {thread} AND COMMAND <> 'Sleep'"
            );
            let Ok(Some(query)) = conn.query_first::<u64, _>(ask).await else {
                continue;
            };
            // Still the statement's: the query read is one of its own.
            if !control.still_linked(alias, thread, link) || killed.contains(&(alias, query)) {
                continue;
            }
            match conn.query_drop(format!("KILL QUERY ID {query}")).await {
                Ok(()) => {
                    tracing::info!(tablet = %tablet.alias, thread, query, ?why, session = control.id, "statement stopped: tablet query killed");
                    killed.push((alias, query));
                }
                Err(e) => {
                    tracing::debug!(tablet = %tablet.alias, error = %e, "kill of a stopped statement's query failed")
                }
            }
        }
        tokio::time::sleep(RELOOK).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop names its statement: the next statement starts unstopped,
    /// and a stop that comes after its statement ended marks nothing.
    #[test]
    fn a_stop_belongs_to_its_statement() {
        let c = Control::detached(7);
        let first = c.begin();
        assert_eq!(c.stopped(), None);
        assert!(c.mark(first, Why::TimedOut));
        assert_eq!(c.stopped(), Some(Why::TimedOut));
        let second = c.begin();
        assert_eq!(c.stopped(), None);
        assert!(!c.mark(first, Why::Killed));
        assert_eq!(c.stopped(), None);
        assert!(c.mark(second, Why::Killed));
        assert_eq!(c.stopped(), Some(Why::Killed));
    }

    /// Links are listed until given back, each under its own number, so
    /// a connection given back and linked again is another link.
    #[test]
    fn links_are_listed_until_given_back() {
        let c = Control::detached(1);
        let (a, b) = (alias_key("zone1-100"), alias_key("zone1-101"));
        assert_ne!(a, b);
        c.linked(a, 10);
        c.linked(a, 11);
        let first = lock(&c.running).links[0].2;
        assert!(c.still_linked(a, 10, first));
        c.unlinked(a, 10);
        assert!(!c.still_linked(a, 10, first));
        c.linked(a, 10);
        assert!(!c.still_linked(a, 10, first));
        assert_eq!(lock(&c.running).links.len(), 2);
        c.unlinked(b, 11);
        assert_eq!(lock(&c.running).links.len(), 2);
    }
}
