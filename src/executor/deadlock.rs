//! Deadlocks across shards, found and broken at the gate.
//!
//! A transaction that spans shards takes row locks on several tablets.
//! Two such transactions can wait for each other through different
//! tablets (A holds a row on `-80` and waits on `80-`, B the other way
//! round): each tablet sees only one wait, never the cycle, so neither
//! detects a deadlock and both clients stall until
//! `innodb_lock_wait_timeout` (50 s by default), holding their locks and
//! the rows of everyone queued behind them. vtgate has the same blind
//! spot. A single MySQL server would answer one of them at once with
//! ER_LOCK_DEADLOCK; the gate does the same for the cycles it can see.
//!
//! Every open transaction registers a [`Watch`]: when it began, the tablet
//! connections (MySQL thread ids) holding its parts, and since when its
//! current statement runs. The [`run`] task looks every [`CHECK_EVERY`]:
//! when two or more transactions that span shards have had a statement
//! running for longer than [`WAITED`], it asks their tablets who waits
//! for whom (`information_schema.INNODB_LOCK_WAITS`, which needs the
//! PROCESS privilege; no more often than [`REREAD_AFTER`], or InnoDB
//! answers from a stale copy), maps the thread ids back to transactions
//! and looks for a cycle. The lightest transaction of a cycle is the
//! victim, as InnoDB chooses within one server (`trx_weight`: rows
//! changed and locked, summed over the tablets where the cycle's waits
//! show it), the youngest of equals: its waiting statement is killed by
//! query id (`KILL QUERY ID`, so a statement that ended meanwhile is left
//! alone), the session rolls the whole transaction back on every shard
//! and the client gets ER_LOCK_DEADLOCK (1213, SQLSTATE 40001), as MySQL
//! answers a deadlock: sysbench and most frameworks retry the
//! transaction on it. The others go on.
//!
//! The same task ends transactions that stay open for longer than
//! `--queryserver-config-transaction-timeout` (vttablet's transaction
//! killer, 30 s by default): it kills their tablet connections, which
//! rolls their parts back and frees their locks whether a statement runs
//! or the client went quiet, and the session rolls the rest back and
//! fails the client's next statement (ROLLBACK excepted).
//!
//! What it costs a transaction: one registration (a lock) when it begins,
//! one clock read and a store per statement, and one lookup when a new
//! tablet joins it. Tablets are asked only while statements wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::server::ServerCtx;
use crate::topo::Tablet;

/// How often waiting transactions are looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// A statement running for longer than this may be waiting for a lock
/// held across shards (a tablet's own lock waits end or are found by
/// InnoDB long before). A cycle is seen this long after its last wait
/// began, at the soonest: 50 ms rather than 100 took sysbench
/// read/write's p99 on 2 shards at 32 threads from 156–253 ms to 83–177
/// (six alternating pairs), and costs no more questions at the tablets,
/// which [`REREAD_AFTER`] spaces.
pub const WAITED: Duration = Duration::from_millis(50);

/// The least time between two looks at the tablets' lock waits.
/// InnoDB serves `INNODB_TRX` and `INNODB_LOCK_WAITS` from a copy that it
/// refreshes only when nobody has read it for 100 ms (so that the tables
/// of one join agree): a reader that comes back sooner keeps being shown
/// the same old copy, and under steady waits (sysbench read/write at 32
/// threads) the detector saw, and killed, waits that had long ended
/// while the real cycle sat out `innodb_lock_wait_timeout`. Another
/// client reading those tables more often than every 100 ms freezes the
/// copy for the detector too.
pub const REREAD_AFTER: Duration = Duration::from_millis(150);

/// Who waits for whom on one tablet: (waiting thread id, blocking thread
/// id, the waiting statement's query id, the waiter's and the blocker's
/// `trx_weight` there). The process list is read live: a waiter that is
/// idle by now is left out.
const LOCK_WAITS: &str = "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, p.QUERY_ID, \
     r.trx_weight, b.trx_weight \
     FROM information_schema.INNODB_LOCK_WAITS w \
     JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id \
     JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id \
     JOIN information_schema.PROCESSLIST p ON p.ID = r.trx_mysql_thread_id \
     WHERE p.COMMAND <> 'Sleep'";

/// The open transactions of the whole gate.
pub struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Watch>>>,
    /// Cycles broken, for `/debug/vars`.
    pub broken: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            epoch: Instant::now(),
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            broken: AtomicU64::new(0),
        }
    }
}

/// One open transaction, as the detector sees it.
pub struct Watch {
    /// When it began (µs since the registry's epoch): of a cycle's
    /// equally heavy transactions the youngest gives way.
    began: u64,
    /// When its current statement started (µs since the epoch, plus one),
    /// 0 between statements.
    running: AtomicU64,
    /// (tablet alias, thread id) of the connections holding its parts.
    parts: Mutex<Vec<(String, u32)>>,
    /// Chosen to give way: its statement's failure is a deadlock.
    victim: AtomicBool,
    /// Open for longer than the transaction timeout: its connections were
    /// killed, and the session rolls it back.
    expired: AtomicBool,
}

/// A transaction's registration, removed when it ends (dropped).
pub struct Guard {
    registry: Arc<Registry>,
    id: u64,
    watch: Arc<Watch>,
}

impl Registry {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The transactions open for longer than `limit` at `now` and not yet
    /// found so, marked expired: the tablet connections of each.
    fn expire(&self, now: Instant, limit: Duration) -> Vec<Vec<(String, u32)>> {
        let oldest = self.micros(now).saturating_sub(limit.as_micros() as u64);
        lock(&self.open)
            .values()
            .filter(|w| w.began < oldest && !w.expired.swap(true, Ordering::Relaxed))
            .map(|w| lock(&w.parts).clone())
            .collect()
    }

    /// Registers a transaction that begins now.
    pub fn watch(self: &Arc<Self>) -> Guard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            began: self.micros(Instant::now()),
            running: AtomicU64::new(0),
            parts: Mutex::new(Vec::new()),
            victim: AtomicBool::new(false),
            expired: AtomicBool::new(false),
        });
        lock(&self.open).insert(id, watch.clone());
        Guard {
            registry: self.clone(),
            id,
            watch,
        }
    }

    /// The transactions whose statement has run for longer than `waited`
    /// at `now`.
    fn waiting(&self, now: Instant, waited: Duration) -> Vec<Arc<Watch>> {
        let before = self.micros(now).saturating_sub(waited.as_micros() as u64);
        lock(&self.open)
            .values()
            .filter(|w| {
                let r = w.running.load(Ordering::Relaxed);
                r != 0 && r - 1 <= before
            })
            .cloned()
            .collect()
    }
}

impl Guard {
    /// A statement of the transaction starts.
    pub fn running(&self) {
        let at = self.registry.micros(Instant::now()) + 1;
        self.watch.running.store(at, Ordering::Relaxed);
    }

    /// The transaction's statement is done with its connection.
    pub fn idle(&self) {
        self.watch.running.store(0, Ordering::Relaxed);
    }

    /// A tablet connection (`thread` there) holds a part of the transaction.
    pub fn joined(&self, alias: &str, thread: u32) {
        let mut parts = lock(&self.watch.parts);
        if !parts.iter().any(|(a, t)| a == alias && *t == thread) {
            parts.push((alias.to_string(), thread));
        }
    }

    /// Whether the transaction was chosen to give way (asked once per
    /// failed statement; the answer is consumed).
    pub fn take_victim(&self) -> bool {
        self.watch.victim.swap(false, Ordering::Relaxed)
    }

    /// Whether the transaction outlived the transaction timeout (its
    /// tablet connections were killed).
    pub fn expired(&self) -> bool {
        self.watch.expired.load(Ordering::Relaxed)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.registry.open).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A wait between two transactions (indexes into the waiting ones) on a
/// tablet, and the waiting statement's query id there.
#[derive(Debug, Clone, PartialEq)]
struct Edge {
    from: usize,
    to: usize,
    alias: String,
    /// The waiting connection's thread id there.
    thread: u32,
    query_id: u64,
}

/// The transactions to stop so that no cycle of waits is left, given
/// how heavy each is (`weight[i]`, InnoDB's `trx_weight` summed over
/// tablets), when each began (`began[i]`) and who waits for whom: in each
/// cycle the lightest gives way (the least work lost, as InnoDB chooses),
/// the youngest of equals; its waits are dropped, and the rest is looked
/// at again.
fn victims(weight: &[u64], began: &[u64], waits: &[(usize, usize)]) -> Vec<usize> {
    let mut waits: Vec<(usize, usize)> = waits.to_vec();
    let mut out = Vec::new();
    while let Some(cycle) = find_cycle(began.len(), &waits) {
        let Some(&v) = cycle.iter().min_by_key(|&&i| {
            (
                weight.get(i).copied().unwrap_or(0),
                std::cmp::Reverse((began[i], i)),
            )
        }) else {
            break;
        };
        out.push(v);
        waits.retain(|&(a, b)| a != v && b != v);
    }
    out
}

/// A cycle in the graph of `n` nodes with edges `waits`, as its nodes.
/// Linear in nodes and edges: a hot row queues every waiter behind every
/// earlier one, so edges grow with the square of the waiters.
fn find_cycle(n: usize, waits: &[(usize, usize)]) -> Option<Vec<usize>> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in waits {
        next[a].push(b);
    }
    // 0: unseen, 1: on the current path, 2: done.
    let mut state = vec![0u8; n];
    fn visit(
        v: usize,
        next: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[v] = 1;
        path.push(v);
        for &w in &next[v] {
            if state[w] == 1 {
                let start = path.iter().position(|&p| p == w).unwrap_or(0);
                return Some(path[start..].to_vec());
            }
            if state[w] == 0 {
                if let Some(c) = visit(w, next, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[v] = 2;
        None
    }
    let mut path: Vec<usize> = Vec::new();
    (0..n).find_map(|v| {
        if state[v] == 0 {
            visit(v, &next, &mut state, &mut path)
        } else {
            None
        }
    })
}

/// Whether the waiting transactions could form a cycle that no tablet
/// sees. Such a cycle passes from one shard's connection to another's
/// through a transaction waiting on one and holding locks on the other,
/// and back through a second such: without two waiting transactions that
/// span shards, every cycle runs through single InnoDB transactions of
/// one mysqld, where InnoDB finds it (and a hot row on one shard, or any
/// contention on an unsharded keyspace, costs the tablets no questions).
/// Shards that share a mysqld still count as two: each shard's connection
/// is its own InnoDB transaction, so InnoDB sees no cycle that passes
/// through the gate.
fn could_cross(waiting: &[Arc<Watch>]) -> bool {
    waiting
        .iter()
        .filter(|w| {
            let parts = lock(&w.parts);
            parts.iter().any(|(a, _)| a != &parts[0].0)
        })
        .nth(1)
        .is_some()
}

/// Where a tablet's lock waits live: its mysqld's address.
fn address(t: &Tablet) -> String {
    format!("{}:{}", t.hostname, t.port)
}

/// Looks for deadlocks across shards every [`CHECK_EVERY`], while the
/// server lives, asking the tablets no sooner than [`REREAD_AFTER`] after
/// the last time.
pub async fn run(ctx: Weak<ServerCtx>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut detector = Detector::default();
    let mut asked: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        let now = Instant::now();
        if let Some(limit) = ctx.transaction_timeout {
            for parts in ctx.deadlocks.expire(now, limit) {
                end_expired(&ctx, parts).await;
            }
        }
        if asked.is_some_and(|at| now.duration_since(at) < REREAD_AFTER) {
            continue;
        }
        let waiting = ctx.deadlocks.waiting(now, WAITED);
        if could_cross(&waiting) {
            detector.check(&ctx, &waiting).await;
            asked = Some(Instant::now());
        }
    }
}

/// Runs a `KILL` on `tablet`, over a connection of the driver's pool (one
/// of the session's own could be the one to kill).
async fn kill_on(ctx: &ServerCtx, tablet: &Tablet, kill: &str) -> Result<(), mysql_async::Error> {
    let mut conn = ctx.pools.get(tablet).get_conn().await?;
    conn.query_drop(kill).await
}

/// Kills the tablet connections of a transaction that outlived the
/// transaction timeout (`KILL CONNECTION`: MariaDB rolls its part back
/// and frees its locks at once, whether a statement runs or the client
/// went quiet), as vttablet's transaction killer does.
async fn end_expired(ctx: &ServerCtx, parts: Vec<(String, u32)>) {
    let snap = ctx.snapshot.load();
    for (alias, thread) in parts {
        let Some(tablet) = snap.tablets.get(&alias) else {
            continue;
        };
        let kill = format!("KILL CONNECTION {thread}");
        match kill_on(ctx, tablet, &kill).await {
            Ok(()) => {
                tracing::info!(tablet = %alias, thread, "transaction timeout: connection killed")
            }
            Err(e) => {
                tracing::warn!(tablet = %alias, thread, error = %e, "transaction timeout: kill failed")
            }
        }
    }
}

/// A victim's statement still waiting this long after its `KILL QUERY`
/// (seen waiting again in a later, fresh look: see [`REREAD_AFTER`]) has
/// its connection killed instead: a second query kill does nothing to a
/// thread already marked, a connection kill ends its transaction. A
/// safety net; not seen to fire since the looks are spaced.
const ESCALATE_AFTER: Duration = Duration::from_millis(300);

/// What the detector remembers between looks.
#[derive(Default)]
struct Detector {
    /// Tablets that refused the question (named in the log once).
    refused: std::collections::HashSet<String>,
    /// Statements killed lately: (tablet, query id) → when.
    killed: HashMap<(String, u64), Instant>,
}

impl Detector {
    /// The kill that breaks `edge`'s wait at `now`: the statement's the
    /// first time, none while that kill may still take effect, the
    /// connection's once it has had [`ESCALATE_AFTER`].
    fn kill_for(&self, edge: &Edge, now: Instant) -> Option<String> {
        match self.killed.get(&(edge.alias.clone(), edge.query_id)) {
            None => Some(format!("KILL QUERY ID {}", edge.query_id)),
            Some(at) if now.duration_since(*at) >= ESCALATE_AFTER => {
                Some(format!("KILL CONNECTION {}", edge.thread))
            }
            Some(_) => None,
        }
    }

    /// Asks the waiting transactions' tablets who waits for whom and
    /// breaks the cycles found.
    async fn check(&mut self, ctx: &ServerCtx, waiting: &[Arc<Watch>]) {
        // Keyed by the tablet's address, not its alias: shards that share
        // a mysqld (tablets with their own db names) share its lock waits.
        let snap = ctx.snapshot.load();
        let mut owners: HashMap<(String, u32), usize> = HashMap::new();
        let mut tablets: Vec<&Tablet> = Vec::new();
        for (i, w) in waiting.iter().enumerate() {
            for (alias, thread) in lock(&w.parts).iter() {
                let Some(t) = snap.tablets.get(alias.as_str()) else {
                    continue;
                };
                owners.insert((address(t), *thread), i);
                if !tablets.iter().any(|s| address(s) == address(t)) {
                    tablets.push(t);
                }
            }
        }
        let asked =
            futures_util::future::join_all(tablets.iter().map(|t| lock_waits(ctx, t))).await;
        let mut edges = Vec::new();
        // Each transaction's weight on each tablet where a wait shows it.
        let mut weights: HashMap<(String, u32), u64> = HashMap::new();
        for (t, rows) in tablets.iter().zip(asked) {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    if self.refused.insert(t.alias.clone()) {
                        tracing::warn!(tablet = %t.alias, error = %e, "cannot read lock waits: deadlocks across shards there wait for innodb_lock_wait_timeout");
                    }
                    continue;
                }
            };
            for (waiter, blocker, query_id, waiter_weight, blocker_weight) in rows {
                let key = |th| (address(t), th);
                if let (Some(&from), Some(&to)) =
                    (owners.get(&key(waiter)), owners.get(&key(blocker)))
                {
                    weights.insert(key(waiter), waiter_weight);
                    weights.insert(key(blocker), blocker_weight);
                    if from != to {
                        edges.push(Edge {
                            from,
                            to,
                            alias: t.alias.clone(),
                            thread: waiter,
                            query_id,
                        });
                    }
                }
            }
        }
        let now = Instant::now();
        self.killed
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(120));
        let began: Vec<u64> = waiting.iter().map(|w| w.began).collect();
        let mut weight = vec![0u64; waiting.len()];
        for (key, w) in &weights {
            if let Some(&i) = owners.get(key) {
                weight[i] += w;
            }
        }
        let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.from, e.to)).collect();
        for v in victims(&weight, &began, &pairs) {
            let Some(edge) = edges.iter().find(|e| e.from == v) else {
                continue;
            };
            let Some(tablet) = snap.tablets.get(&edge.alias) else {
                continue;
            };
            let key = (edge.alias.clone(), edge.query_id);
            let first = !self.killed.contains_key(&key);
            let Some(kill) = self.kill_for(edge, now) else {
                continue;
            };
            self.killed.entry(key).or_insert(now);
            waiting[v].victim.store(true, Ordering::Relaxed);
            match kill_on(ctx, tablet, &kill).await {
                Ok(()) => {
                    if first {
                        ctx.deadlocks.broken.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(tablet = %edge.alias, %kill, "deadlock across shards: the lightest transaction of the cycle gives way");
                }
                // The statement ended meanwhile: nothing to break.
                Err(e) => {
                    waiting[v].victim.store(false, Ordering::Relaxed);
                    tracing::debug!(tablet = %edge.alias, error = %e, "deadlock victim's statement was gone");
                }
            }
        }
    }
}

/// One tablet's lock waits (see [`LOCK_WAITS`]).
async fn lock_waits(
    ctx: &ServerCtx,
    t: &Tablet,
) -> Result<Vec<(u32, u32, u64, u64, u64)>, mysql_async::Error> {
    let mut conn = ctx.pools.get(t).get_conn().await?;
    conn.query(LOCK_WAITS).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of equally heavy transactions waiting for each other the younger
    /// gives way; a chain without a cycle stops nobody; two cycles
    /// sharing nobody lose one member each, and a cycle of three loses
    /// its youngest.
    #[test]
    fn the_youngest_of_equals_gives_way() {
        let even = [1u64; 4];
        assert_eq!(victims(&even, &[10, 20], &[(0, 1), (1, 0)]), vec![1]);
        assert_eq!(victims(&even, &[30, 20], &[(0, 1), (1, 0)]), vec![0]);
        assert!(victims(&even, &[1, 2, 3], &[(0, 1), (1, 2)]).is_empty());
        let mut v = victims(&even, &[1, 2, 3, 4], &[(0, 1), (1, 0), (2, 3), (3, 2)]);
        v.sort();
        assert_eq!(v, vec![1, 3]);
        assert_eq!(
            victims(&even, &[5, 9, 7], &[(0, 1), (1, 2), (2, 0)]),
            vec![1]
        );
        // A waiter outside the cycle (3 waits for 0) is not chosen.
        assert_eq!(
            victims(&even, &[5, 9, 7, 99], &[(3, 0), (0, 1), (1, 2), (2, 0)]),
            vec![1]
        );
    }

    /// The lightest member of a cycle gives way, however old: the least
    /// work is lost, as InnoDB chooses on one server.
    #[test]
    fn the_lightest_of_a_cycle_gives_way() {
        assert_eq!(victims(&[2, 5], &[10, 20], &[(0, 1), (1, 0)]), vec![0]);
        assert_eq!(victims(&[5, 2], &[10, 20], &[(0, 1), (1, 0)]), vec![1]);
        assert_eq!(
            victims(&[4, 3, 9], &[5, 9, 7], &[(0, 1), (1, 2), (2, 0)]),
            vec![1]
        );
        // A light waiter outside the cycle is not chosen.
        assert_eq!(
            victims(
                &[4, 3, 9, 1],
                &[5, 9, 7, 1],
                &[(3, 0), (0, 1), (1, 2), (2, 0)]
            ),
            vec![1]
        );
    }

    /// A victim's statement is killed first; one still waiting after
    /// [`ESCALATE_AFTER`] loses its connection.
    #[test]
    fn a_kill_that_did_not_take_becomes_a_connection_kill() {
        let mut d = Detector::default();
        let edge = Edge {
            from: 0,
            to: 1,
            alias: "zone1-300".into(),
            thread: 42,
            query_id: 7,
        };
        let t0 = Instant::now();
        assert_eq!(d.kill_for(&edge, t0).as_deref(), Some("KILL QUERY ID 7"));
        d.killed.insert(("zone1-300".into(), 7), t0);
        assert_eq!(d.kill_for(&edge, t0 + Duration::from_millis(50)), None);
        assert_eq!(
            d.kill_for(&edge, t0 + ESCALATE_AFTER).as_deref(),
            Some("KILL CONNECTION 42")
        );
        // Another statement of the same connection is a new wait.
        let next = Edge {
            query_id: 8,
            ..edge
        };
        assert_eq!(
            d.kill_for(&next, t0 + ESCALATE_AFTER).as_deref(),
            Some("KILL QUERY ID 8")
        );
    }

    /// Only statements that have run for longer than the wait are
    /// counted, and a dropped registration leaves the registry.
    #[test]
    fn waiting_means_a_statement_running_long() {
        let reg = Arc::new(Registry::default());
        let a = reg.watch();
        let b = reg.watch();
        a.running();
        let later = Instant::now() + Duration::from_millis(500);
        assert_eq!(reg.waiting(later, WAITED).len(), 1);
        b.running();
        assert_eq!(reg.waiting(later, WAITED).len(), 2);
        assert!(reg
            .waiting(Instant::now(), Duration::from_secs(10))
            .is_empty());
        b.idle();
        assert_eq!(reg.waiting(later, WAITED).len(), 1);
        drop(a);
        assert!(reg.waiting(later, WAITED).is_empty());
        b.joined("zone1-300", 7);
        b.joined("zone1-300", 7);
        assert_eq!(lock(&b.watch.parts).len(), 1);
        assert!(!b.take_victim());
    }

    /// Tablets are asked only when two waiting transactions span
    /// shards: waits within one shard are InnoDB's to break. Shards on
    /// one mysqld span too (each has its own connection, so its own
    /// InnoDB transaction).
    #[test]
    fn only_transactions_across_shards_make_a_question() {
        let reg = Arc::new(Registry::default());
        let g: Vec<Guard> = (0..3).map(|_| reg.watch()).collect();
        let all = |g: &[Guard]| g.iter().map(|g| g.watch.clone()).collect::<Vec<_>>();
        for (i, w) in g.iter().enumerate() {
            w.joined("zone1-300", 10 + i as u32);
        }
        assert!(!could_cross(&all(&g)));
        assert!(!could_cross(&[]));
        g[0].joined("zone1-400", 20);
        assert!(!could_cross(&all(&g)));
        g[2].joined("zone1-400", 22);
        assert!(could_cross(&all(&g)));
        assert!(!could_cross(&all(&g[..2])));
        // zone1-301 is another shard on zone1-300's mysqld: its
        // connection is a second InnoDB transaction all the same.
        g[1].joined("zone1-301", 21);
        assert!(could_cross(&all(&g[..2])));
    }

    /// A cycle is found among many edges, and a chain is no cycle.
    #[test]
    fn cycles_are_found_in_long_queues() {
        // Every one of 200 waiters waits for all before it: no cycle.
        let mut waits = Vec::new();
        for a in 1..200 {
            for b in 0..a {
                waits.push((a, b));
            }
        }
        assert_eq!(find_cycle(200, &waits), None);
        waits.push((0, 199));
        let c = find_cycle(200, &waits).expect("cycle");
        assert!(c.contains(&0) && c.contains(&199), "{c:?}");
    }
}
