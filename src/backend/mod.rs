//! Connection pools to tablets: idle [`lean`] connections per tablet (what
//! sessions run their statements on), each tagged with the session settings
//! it carries, and one mysql_async pool per tablet as the fallback, created
//! and retired as tablets come and go in the snapshot.
//!
//! Pools do not reset connections on return (a round trip per checkout);
//! instead the session never returns a connection that carries state other
//! than its settings tag: it rolls back or resets it first (see
//! `executor::ShardConns`).

pub mod budget;
pub mod defaults;
pub mod lean;
pub mod mux;

use crate::fasthash::FastMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::topo::{Snapshot, Tablet};

/// Prepared statements each backend connection keeps (MariaDB allows
/// 16,382 per server by default; pools hold at most a few hundred
/// connections).
const STMT_CACHE: usize = 32;

/// How shardgate logs in to tablets.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// MySQL user on every tablet.
    pub user: String,
    /// Its password (empty for none).
    pub password: String,
    /// Idle connections kept per tablet.
    pub pool_min: usize,
    /// Upper bound of connections per tablet.
    pub pool_max: usize,
    /// Switch loopback tablets to their Unix socket (see the
    /// `--tablet-local-socket` flag).
    pub local_socket: bool,
    /// Lean connections at all (`--lean-connections`).
    pub lean: bool,
    /// Tablet connections client sessions may keep between statements,
    /// server-wide (`--sticky-connections`).
    pub sticky: usize,
    /// Shared pipelined connections per tablet for reads that carry no
    /// session state (`--shared-read-connections`; 0: none, every
    /// statement on a connection of its own).
    pub shared: usize,
    /// Lean connections per tablet at most (`--tablet-connections`).
    pub tablet_cap: usize,
    /// How long a statement waits for one at the cap
    /// (`--tablet-connection-wait-ms`).
    pub wait: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            user: "vt_app".into(),
            password: String::new(),
            pool_min: 4,
            pool_max: 200,
            local_socket: true,
            lean: true,
            sticky: 128,
            shared: 4,
            tablet_cap: 100,
            wait: Duration::from_secs(5),
        }
    }
}

/// Address and database a pool was built for; a change means a new pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    db: String,
}

impl PoolKey {
    /// Whether it is `t`'s address and database (compared in place: the
    /// hot paths build no key to look one up).
    fn is_for(&self, t: &Tablet) -> bool {
        self.port == t.port && self.host == t.hostname && self.db == t.db_name
    }
}

/// The set of tablet pools, keyed by tablet alias.
pub struct Pools {
    cfg: BackendConfig,
    map: RwLock<FastMap<String, (PoolKey, Pool)>>,
    /// Lean connections no session holds, and each tablet's budget, by
    /// tablet alias.
    lean_idle: Mutex<FastMap<String, Idle>>,
    /// The Unix socket each loopback tablet reported (None: TCP only).
    sockets: Mutex<FastMap<PoolKey, Option<String>>>,
    /// Tablets a lean connection failed to reach lately; the driver's
    /// pooled connections serve them until [`LEAN_RETRY`] has passed.
    lean_failed: Mutex<FastMap<String, Instant>>,
    /// The shared connections' queues, by tablet alias, one set per event
    /// loop (shared with the watchdog, see [`watch_stalls`]).
    muxes: std::sync::Arc<Mutex<FastMap<String, Vec<Queues>>>>,
    /// Whether the watchdog runs.
    watching: std::sync::atomic::AtomicBool,
    /// What the shared connections did.
    pub mux_stats: std::sync::Arc<mux::MuxStats>,
    /// Statements that waited for a tablet connection at the budget's
    /// cap, and those of them that waited in vain (`/debug/vars`).
    pub budget_waits: std::sync::atomic::AtomicU64,
    /// See `budget_waits`.
    pub budget_timeouts: std::sync::atomic::AtomicU64,
    /// Reads of session defaults, answered lately, by the sessions'
    /// settings.
    pub defaults: defaults::Defaults,
}

/// A tablet's shared connections' queues on one event loop, and the
/// loop's reads running alone on their sessions' own connections (see
/// [`Pools::solo`]). Each loop has its own: a queue's task runs on the
/// loop that started it, and a session on another loop would cross
/// threads twice per read (its read woken onto the queue's loop, the
/// reply back onto its own).
struct Queues {
    key: PoolKey,
    home: std::thread::ThreadId,
    /// The settings its connections carry (joined; empty for none): only
    /// sessions with the same settings share them.
    settings: std::sync::Arc<str>,
    list: Vec<mux::Mux>,
    solo: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When a read last found another in flight to the tablet.
    company: Option<Instant>,
}

/// How long a tablet's reads must have found none other in flight before
/// one runs alone on its session's connection: a lone client's. A read
/// that merely finds a busy tablet idle for a moment still queues, or
/// its connection would split the batches of the clients around it (and
/// wake one more tablet thread).
const LONE_AFTER: Duration = Duration::from_millis(5);

/// Queues per tablet and event loop for sessions with settings (one per
/// distinct settings), beside the one for sessions without: drivers set
/// the same few things at every connect, and a client with settings of
/// its own reads on its own connection past these.
const SETTINGS_QUEUES: usize = 4;

impl Queues {
    /// This loop's queues to `t` for sessions with `settings` in `map`,
    /// made empty if there were none (or they were for an older address
    /// of the alias). None when `SETTINGS_QUEUES` others with settings
    /// are in use (an idle one gives way). The alias is looked up by
    /// reference on the hot path (the entry API would clone it on every
    /// read).
    fn of<'a>(
        map: &'a mut FastMap<String, Vec<Queues>>,
        t: &Tablet,
        settings: &str,
    ) -> Option<&'a mut Queues> {
        let here = this_loop();
        if !map.contains_key(&t.alias) {
            map.insert(t.alias.clone(), Vec::new());
        }
        let loops = map.get_mut(&t.alias)?;
        if loops.iter().any(|q| !q.key.is_for(t)) {
            loops.clear();
        }
        let i = match loops
            .iter()
            .position(|q| q.home == here && *q.settings == *settings)
        {
            Some(i) => i,
            None => {
                let mine = |q: &Queues| q.home == here && !q.settings.is_empty();
                if !settings.is_empty()
                    && loops.iter().filter(|q| mine(q)).count() >= SETTINGS_QUEUES
                {
                    // The queues are kept only while they serve: an idle
                    // one closes its connections for the newcomer.
                    let idle = loops.iter().position(|q| mine(q) && q.is_idle())?;
                    loops.swap_remove(idle);
                }
                loops.push(Queues {
                    key: Pools::key(t),
                    home: here,
                    settings: settings.into(),
                    list: Vec::new(),
                    solo: Default::default(),
                    company: None,
                });
                loops.len() - 1
            }
        };
        loops.get_mut(i)
    }

    /// Nothing queued on its connections, no read running alone.
    fn is_idle(&self) -> bool {
        self.solo.load(std::sync::atomic::Ordering::Relaxed) == 0
            && self.list.iter().all(|m| m.load() == 0)
    }
}

/// Where [`Pools::route_shareable`] sends a read that may share a
/// tablet connection.
pub enum Shareable {
    /// Alone on its session's own connection, counted while it runs.
    Solo(Solo),
    /// Queued on a shared connection: its outcome comes here.
    Queued(tokio::sync::oneshot::Receiver<mux::Outcome>),
    /// Not queued yet: [`Pools::open_shared`] opens a connection for it,
    /// or gives it back to run on the session's own.
    Open(mux::Read),
    /// Every shared connection is held up by slow statements: the read
    /// runs on its session's own connection rather than wait.
    Own,
    /// Shared connections are off (`--shared-read-connections 0`).
    Off,
}

/// A read running alone on its session's own connection, counted while
/// it runs so that others queue for a shared connection meanwhile.
pub struct Solo(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Solo {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Idle lean connections kept per tablet and event loop (each loop takes
/// its own, so one loop's must not crowd out another's).
const LEAN_IDLE: usize = 32;

/// How long a lean connection may sit idle in the pools before it is
/// dropped rather than reused (a server's `wait_timeout` may close it).
const LEAN_IDLE_TTL: Duration = Duration::from_secs(60);

/// How long a tablet whose lean connection failed is left to the driver.
const LEAN_RETRY: Duration = Duration::from_secs(10);

/// A tablet's idle lean connections (newest last) and its budget.
struct Idle {
    list: Vec<LeanHandle>,
    budget: std::sync::Arc<budget::Budget<LeanHandle>>,
}

/// A statement found every connection to a tablet in use for as long as
/// it may wait (`--tablet-connection-wait-ms`).
#[derive(Debug, thiserror::Error)]
#[error("all {cap} connections to the tablet stayed in use for {waited:?} (--tablet-connections)")]
pub struct Busy {
    /// The tablet's budget.
    pub cap: usize,
    /// How long the statement waited.
    pub waited: Duration,
}

/// A lean connection with the tablet it was opened for.
pub struct LeanHandle {
    alias: String,
    key: PoolKey,
    used: Instant,
    /// Its share of the tablet's budget: closing it makes room.
    slot: budget::Slot<LeanHandle>,
    /// Its place among the connections kept while idle (a session's
    /// sticky one, a shared read connection), while it has one.
    kept: Option<budget::Kept<LeanHandle>>,
    /// The event loop (thread) whose reactor its socket is registered
    /// with: a session on another loop would have every reply woken
    /// across threads (a reactor's event, then the other loop unparked).
    home: std::thread::ThreadId,
    /// The session settings applied on it (its sessions' SET statements,
    /// joined; empty for none): sessions with the same settings share
    /// connections, as vtgate's settings pool lets them.
    pub settings: std::sync::Arc<str>,
    /// The connection, boxed: handles move between pools, sessions and
    /// the futures that use them, and a box moves as one pointer.
    pub conn: Box<lean::LeanConn>,
}

impl LeanHandle {
    /// The alias of the tablet it is connected to.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Takes a place among the connections kept while idle, unless it
    /// has one; false when the tablet's kept half of the budget is full
    /// (the connection then goes back to the pools after its statement).
    pub fn keep(&mut self) -> bool {
        if self.kept.is_none() {
            self.kept = self.slot.budget().keep();
        }
        self.kept.is_some()
    }

    /// Marks it used at `now` (callers read the clock once per statement).
    pub fn touch(&mut self, now: Instant) {
        self.used = now;
    }

    /// Unused for longer than `d` at `now` (the server may have closed it
    /// since).
    pub fn idle_for(&self, d: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.used) >= d
    }

    /// Brings the connection to a session's `settings` (joined: `key`):
    /// nothing when it carries them; the missing ones when it carries
    /// their first ones (a setting just added); else a reset and all of
    /// them. False when one failed (the connection is then unusable for
    /// the session).
    pub async fn conform(&mut self, settings: &[String], key: &std::sync::Arc<str>) -> bool {
        if *self.settings == **key {
            return true;
        }
        let (mut ok, from) = match carried(settings, key, &self.settings) {
            Some(k) => (true, k),
            None => (self.conn.reset().await.is_ok(), 0),
        };
        for set in &settings[from..] {
            ok = ok && self.conn.run(set).await.is_ok();
        }
        if ok {
            self.settings = key.clone();
        } else {
            tracing::debug!(tablet = %self.alias, "session settings failed on a lean connection");
        }
        ok
    }
}

/// What joins a session's settings into the key its connections are
/// tagged with ([`settings_key`]; [`carried`] reads keys back by it).
const SETTINGS_JOINT: &str = ";\n";

/// The tag of connections that carry `settings`: sessions with equal keys
/// share connections (see [`LeanHandle::settings`]).
pub fn settings_key(settings: &[String]) -> std::sync::Arc<str> {
    settings.join(SETTINGS_JOINT).into()
}

/// How many of `settings` (joined: `key`) a connection tagged `tag`
/// already carries, when its tag is their first ones joined.
fn carried(settings: &[String], key: &str, tag: &str) -> Option<usize> {
    if tag.is_empty() {
        return Some(0);
    }
    let mut len = 0;
    for (k, s) in settings.iter().enumerate() {
        len += s.len() + if k > 0 { SETTINGS_JOINT.len() } else { 0 };
        if len >= tag.len() {
            let same = len == tag.len() && key.as_bytes().get(..len) == Some(tag.as_bytes());
            return same.then_some(k + 1);
        }
    }
    None
}

/// The watchdog's pace once no shared connection has awaited a reply for
/// [`IDLE_AFTER`] ticks: a statement that starts after a quiet spell is
/// found slow this late at worst, and an idle proxy wakes seldom.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Quiet ticks (of [`mux::STALLED`]) before the watchdog slows to
/// [`IDLE_TICK`].
const IDLE_AFTER: u32 = 100;

/// Every [`mux::STALLED`], has each shared connection whose reply is late
/// send back the reads waiting behind it (see
/// [`mux::Mux::send_back_if_slow`]); one task for all, so the connections
/// pay nothing for it per reply. Ends with the pools.
async fn watch_stalls(muxes: std::sync::Weak<Mutex<FastMap<String, Vec<Queues>>>>) {
    let mut quiet = 0;
    loop {
        let tick = if quiet > IDLE_AFTER {
            IDLE_TICK
        } else {
            mux::STALLED
        };
        tokio::time::sleep(tick).await;
        let Some(muxes) = muxes.upgrade() else {
            return;
        };
        let mut busy = false;
        for m in lock(&muxes).values().flatten().flat_map(|q| &q.list) {
            busy |= m.is_busy();
            m.send_back_if_slow();
        }
        quiet = if busy { 0 } else { quiet + 1 };
    }
}

thread_local! {
    /// The thread's id, read once: `std::thread::current()` clones and
    /// drops an `Arc` on every call, and the id is asked for on every
    /// shared read and lean connection taken.
    static THIS_LOOP: std::thread::ThreadId = std::thread::current().id();
}

/// The event loop (thread) running the caller, which owns the tablet
/// connections it opened.
fn this_loop() -> std::thread::ThreadId {
    THIS_LOOP.with(|id| *id)
}

/// Locks one of the pools' maps; a panic elsewhere while it was held
/// leaves it usable (every update is a single insert or removal).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Pools {
    /// An empty set; pools are made on first use or by [`Pools::reconcile`].
    pub fn new(cfg: BackendConfig) -> Self {
        Pools {
            cfg,
            map: RwLock::new(FastMap::default()),
            lean_idle: Mutex::new(FastMap::default()),
            sockets: Mutex::new(FastMap::default()),
            lean_failed: Mutex::new(FastMap::default()),
            muxes: std::sync::Arc::default(),
            watching: Default::default(),
            mux_stats: std::sync::Arc::default(),
            budget_waits: Default::default(),
            budget_timeouts: Default::default(),
            defaults: Default::default(),
        }
    }

    fn key(t: &Tablet) -> PoolKey {
        PoolKey {
            host: t.hostname.clone(),
            port: t.port,
            db: t.db_name.clone(),
        }
    }

    fn make(&self, k: &PoolKey) -> Pool {
        let constraints = PoolConstraints::new(
            self.cfg.pool_min,
            self.cfg.pool_max.max(self.cfg.pool_min.max(1)),
        )
        .unwrap_or_default();
        let pool_opts = PoolOpts::new()
            .with_constraints(constraints)
            .with_reset_connection(false)
            .with_inactive_connection_ttl(Duration::from_secs(300));
        let opts = OptsBuilder::default()
            .ip_or_hostname(k.host.clone())
            .tcp_port(k.port)
            .user(Some(self.cfg.user.clone()))
            .pass((!self.cfg.password.is_empty()).then(|| self.cfg.password.clone()))
            .db_name(Some(k.db.clone()))
            // mysql_async asks a loopback server for @@socket and reconnects
            // through it when it can.
            .prefer_socket(self.cfg.local_socket)
            .tcp_nodelay(true)
            // Client prepared statements that go whole to one tablet run
            // prepared there too, once per connection.
            .stmt_cache_size(STMT_CACHE)
            .pool_opts(pool_opts);
        Pool::new(opts)
    }

    /// The pool for a tablet, creating it if the tablet is new.
    pub fn get(&self, t: &Tablet) -> Pool {
        let key = Self::key(t);
        if let Some((k, p)) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&t.alias)
        {
            if *k == key {
                return p.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&t.alias) {
            Some((k, p)) if *k == key => p.clone(),
            _ => {
                let pool = self.make(&key);
                if let Some((_, old)) = map.insert(t.alias.clone(), (key, pool.clone())) {
                    retire(old);
                }
                pool
            }
        }
    }

    /// A lean connection to `t`: an idle one (one with these `settings`
    /// if there is one; the caller brings another to them), or a new one
    /// while the tablet's budget has room. At the cap, another loop's
    /// idle connection, else (with `wait`) the first one given back or
    /// room for a new one, for up to `--tablet-connection-wait-ms`: Err
    /// when none came (at once without `wait`). None when the tablet
    /// could not be reached that way lately (the caller then uses the
    /// driver's pool).
    pub async fn lean(
        &self,
        t: &Tablet,
        settings: &str,
        wait: bool,
    ) -> Result<Option<LeanHandle>, Busy> {
        if !self.cfg.lean {
            return Ok(None);
        }
        let here = this_loop();
        let retry = {
            let mut failed = lock(&self.lean_failed);
            match failed.get(&t.alias) {
                Some(at) if at.elapsed() < LEAN_RETRY => false,
                Some(_) => {
                    failed.remove(&t.alias);
                    true
                }
                None => true,
            }
        };
        let busy = || Busy {
            cap: self.cfg.tablet_cap,
            waited: if wait { self.cfg.wait } else { Duration::ZERO },
        };
        let reserved = {
            let mut idle = lock(&self.lean_idle);
            let entry = self.idle_entry(&mut idle, t);
            if let Some(h) = take_idle(entry, t, settings, Some(here)) {
                return Ok(Some(h));
            }
            if !retry {
                // Another loop's idle connection still beats the driver's.
                return Ok(take_idle(entry, t, settings, None));
            }
            match entry.budget.reserve(false) {
                Some(budget::Reserve::Slot(slot)) => Ok(slot),
                _ => {
                    if let Some(h) = take_idle(entry, t, settings, None) {
                        return Ok(Some(h));
                    }
                    // The dead and stale ones take_idle closed may have
                    // made room.
                    match entry.budget.reserve(wait) {
                        Some(budget::Reserve::Wait(rx)) => Err(rx),
                        Some(budget::Reserve::Slot(slot)) => Ok(slot),
                        None => return Err(busy()),
                    }
                }
            }
        };
        let slot = match reserved {
            Ok(slot) => slot,
            Err(rx) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.budget_waits.fetch_add(1, Relaxed);
                match tokio::time::timeout(self.cfg.wait, rx).await {
                    Ok(Ok(budget::Grant::Conn(h))) => return Ok(Some(h)),
                    Ok(Ok(budget::Grant::Slot(slot))) => slot,
                    _ => {
                        self.budget_timeouts.fetch_add(1, Relaxed);
                        return Err(busy());
                    }
                }
            }
        };
        let key = Self::key(t);
        // Boxed: opening a connection is rare, and its future inlined would
        // size every client connection's task (see `frontend::command_loop`).
        match Box::pin(self.open_lean(&key)).await {
            Ok(conn) => Ok(Some(LeanHandle {
                alias: t.alias.clone(),
                key,
                used: Instant::now(),
                slot,
                kept: None,
                home: here,
                settings: std::sync::Arc::default(),
                conn: Box::new(conn),
            })),
            Err(e) => {
                drop(slot);
                // Another loop's idle connection still beats the driver's.
                let mut idle = lock(&self.lean_idle);
                if let Some(h) = take_idle(self.idle_entry(&mut idle, t), t, settings, None) {
                    return Ok(Some(h));
                }
                drop(idle);
                tracing::debug!(tablet = %t.alias, error = %e, "lean connection failed; using the pool");
                lock(&self.lean_failed).insert(t.alias.clone(), Instant::now());
                Ok(None)
            }
        }
    }

    /// `t`'s idle connections and budget in `idle`, made if new.
    fn idle_entry<'a>(&self, idle: &'a mut FastMap<String, Idle>, t: &Tablet) -> &'a mut Idle {
        idle_of(idle, &t.alias, || budget::Budget::new(self.cfg.tablet_cap))
    }

    async fn open_lean(&self, key: &PoolKey) -> Result<lean::LeanConn, mysql_async::Error> {
        let (user, pass, db) = (&self.cfg.user, &self.cfg.password, &key.db);
        let tcp = lean::Endpoint::Tcp(&key.host, key.port);
        if !(self.cfg.local_socket && is_loopback(&key.host)) {
            return lean::LeanConn::connect(tcp, user, pass, db).await;
        }
        let known = lock(&self.sockets).get(key).cloned();
        let socket = match known {
            Some(s) => s,
            None => {
                let mut c = lean::LeanConn::connect(tcp, user, pass, db).await?;
                let s = c.socket_path().await.ok().flatten();
                lock(&self.sockets).insert(key.clone(), s.clone());
                if s.is_none() {
                    return Ok(c);
                }
                c.quit().await;
                s
            }
        };
        match socket {
            Some(path) => {
                match lean::LeanConn::connect(lean::Endpoint::Unix(&path), user, pass, db).await {
                    Ok(c) => Ok(c),
                    // The socket may have moved (a restarted tablet): ask again next time.
                    Err(e) => {
                        lock(&self.sockets).remove(key);
                        Err(e)
                    }
                }
            }
            None => lean::LeanConn::connect(tcp, user, pass, db).await,
        }
    }

    /// Lean connections open to all tablets (`/debug/vars`).
    pub fn lean_open(&self) -> usize {
        lock(&self.lean_idle)
            .values()
            .map(|idle| idle.budget.open())
            .sum()
    }

    /// Takes back a lean connection a session no longer needs (holding no
    /// session's state but the settings it is tagged with): to a
    /// statement waiting for one at the tablet's cap first.
    pub fn put_lean(&self, mut h: LeanHandle) {
        if !h.conn.is_idle() {
            return;
        }
        h.kept = None;
        h.touch(Instant::now());
        let mut idle = lock(&self.lean_idle);
        let budget = h.slot.budget().clone();
        let Err(h) = budget.hand_over(h) else {
            return;
        };
        let entry = idle_of(&mut idle, &h.alias, || budget);
        let here = entry.list.iter().filter(|x| x.home == h.home).count();
        // One of an older budget (a tablet that moved) is closed.
        if here < LEAN_IDLE && std::sync::Arc::ptr_eq(&entry.budget, h.slot.budget()) {
            entry.list.push(h);
        }
    }

    /// Opens a shared connection to `t` for a read [`Pools::route_shareable`]
    /// found no room for, and queues the read on it. Err gives the read
    /// back when the tablet cannot be reached that way: the caller runs the
    /// statement on a connection of its own.
    pub async fn open_shared(
        &self,
        t: &Tablet,
        settings: &[String],
        key: &std::sync::Arc<str>,
        read: mux::Read,
    ) -> Result<tokio::sync::oneshot::Receiver<mux::Outcome>, mux::Read> {
        // At the cap the read runs on its session's connection, which
        // waits for room there.
        let Ok(Some(mut handle)) = self.lean(t, key, false).await else {
            return Err(read);
        };
        // Shared connections are kept while idle: they take a kept place.
        if !handle.keep() {
            self.put_lean(handle);
            return Err(read);
        }
        // The idle connection may carry another session's settings.
        if !handle.conform(settings, key).await {
            return Err(read);
        }
        let m = mux::Mux::start(handle, self.mux_stats.clone());
        // A single queue keeps its reads in order whatever waits.
        if self.cfg.shared > 1
            && !self
                .watching
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(watch_stalls(std::sync::Arc::downgrade(&self.muxes)));
        }
        let rx = m.submit(read);
        let mut muxes = lock(&self.muxes);
        if let Some(q) = Queues::of(&mut muxes, t, key).filter(|q| q.list.len() < self.cfg.shared) {
            q.list.push(m);
        }
        rx
    }

    /// Decides where a shareable read goes, under one look at the
    /// tablet's queues for sessions with `settings` (joined; this runs
    /// for every such read). Alone on its session's own connection when
    /// nothing else has been in flight to the tablet lately
    /// (`LONE_AFTER`), on either path: a lone client has no batch to
    /// join, and handing its read to a queue's task and back costs more
    /// than it saves; while the [`Solo`] lives, other reads queue as
    /// usual, so a busy tablet keeps batching. Otherwise on the first shared
    /// connection not held up, so executions gather on as few connections
    /// as they can; on a new one while there are fewer than configured
    /// ([`Pools::open_shared`]); with all held up, on the least loaded of
    /// those merely full. With every one of several queues slow, the read
    /// runs on its session's own connection rather than wait; a single
    /// queue (`--shared-read-connections 1`) keeps its order. `read` is
    /// built only when the read is queued. A read that is not to run
    /// `alone` queues even on an idle tablet (its reply is wanted
    /// recorded, see [`defaults`]).
    pub fn route_shareable(
        &self,
        t: &Tablet,
        settings: &str,
        alone: bool,
        read: impl FnOnce() -> mux::Read,
    ) -> Shareable {
        use std::sync::atomic::Ordering;
        if self.cfg.shared == 0 {
            return Shareable::Off;
        }
        let mut muxes = lock(&self.muxes);
        let Some(q) = Queues::of(&mut muxes, t, settings) else {
            return Shareable::Off;
        };
        q.list.retain(mux::Mux::is_open);
        let busy = q.solo.load(Ordering::Relaxed) > 0 || q.list.iter().any(|m| m.load() > 0);
        let now = Instant::now();
        if busy {
            q.company = Some(now);
        }
        let lone = q
            .company
            .is_none_or(|at| now.saturating_duration_since(at) >= LONE_AFTER);
        if !busy && lone && alone {
            q.solo.fetch_add(1, Ordering::Relaxed);
            self.mux_stats.solo.fetch_add(1, Ordering::Relaxed);
            return Shareable::Solo(Solo(q.solo.clone()));
        }
        let list = &q.list;
        let pick = match list.iter().find(|m| !m.is_stalled()) {
            Some(m) => Some(m),
            None if list.len() < self.cfg.shared => None,
            None => match list
                .iter()
                .filter(|m| !m.is_slow())
                .min_by_key(|m| m.load())
            {
                Some(m) => Some(m),
                None if self.cfg.shared > 1 => return Shareable::Own,
                None => list.iter().min_by_key(|m| m.load()),
            },
        };
        let read = read();
        match pick {
            Some(m) => match m.submit(read) {
                Ok(rx) => Shareable::Queued(rx),
                Err(read) => Shareable::Open(read),
            },
            None => Shareable::Open(read),
        }
    }

    /// Makes the pool set match the snapshot: new tablets get pools, moved
    /// ones get new pools, removed ones are drained and closed.
    pub fn reconcile(&self, snap: &Snapshot) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|alias, (k, pool)| {
            let keep = snap.tablets.get(alias).is_some_and(|t| k.is_for(t));
            if !keep {
                retire(pool.clone());
            }
            keep
        });
        lock(&self.lean_idle).retain(|alias, idle| {
            snap.tablets
                .get(alias)
                .is_some_and(|t| idle.list.iter().all(|h| h.key.is_for(t)))
        });
        lock(&self.muxes).retain(|alias, loops| {
            snap.tablets
                .get(alias)
                .is_some_and(|t| loops.iter().all(|q| q.key.is_for(t)))
        });
        for t in snap.tablets.values() {
            if !map.contains_key(&t.alias) {
                let key = Self::key(t);
                let pool = self.make(&key);
                map.insert(t.alias.clone(), (key, pool));
            }
        }
        // A tablet that moved answers anew.
        self.defaults.forget();
    }

    /// Closes every pool (at shutdown).
    pub async fn close_all(&self) {
        let pools: Vec<Pool> = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, (_, p))| p)
            .collect();
        for p in pools {
            let _ = p.disconnect().await;
        }
    }
}

/// The idle connections and budget of the tablet `alias` in `idle`, made
/// with `budget` if new. The alias is looked up by reference (the entry
/// API would clone it on every statement that takes or puts one back).
fn idle_of<'a>(
    idle: &'a mut FastMap<String, Idle>,
    alias: &str,
    budget: impl FnOnce() -> std::sync::Arc<budget::Budget<LeanHandle>>,
) -> &'a mut Idle {
    if !idle.contains_key(alias) {
        let list = Vec::new();
        idle.insert(
            alias.to_string(),
            Idle {
                list,
                budget: budget(),
            },
        );
    }
    idle.get_mut(alias).expect("just made")
}

/// Takes an idle lean connection to `t` from `entry`, dropping the dead
/// and the stale: one registered on the loop `home` (None: any loop),
/// with these `settings` if there is one.
fn take_idle(
    entry: &mut Idle,
    t: &Tablet,
    settings: &str,
    home: Option<std::thread::ThreadId>,
) -> Option<LeanHandle> {
    let list = &mut entry.list;
    let now = Instant::now();
    list.retain(|h| h.key.is_for(t) && !h.idle_for(LEAN_IDLE_TTL, now));
    while let Some(i) = pick_idle(list, home, settings, |h| (h.home, &h.settings)) {
        let mut h = list.swap_remove(i);
        if !h.conn.is_closed() {
            return Some(h);
        }
    }
    None
}

/// Which of the idle connections `idle` (newest last) a statement takes:
/// only those of the loop `home` (None: any), the newest with `settings`
/// if one has them, else the newest (its holder brings it to them).
/// Connections stay with the loop that opened them because a tokio socket
/// answers to the reactor it was registered with.
fn pick_idle<T>(
    idle: &[T],
    home: Option<std::thread::ThreadId>,
    settings: &str,
    of: impl Fn(&T) -> (std::thread::ThreadId, &str),
) -> Option<usize> {
    let mine = |x: &T| home.is_none_or(|h| of(x).0 == h);
    idle.iter()
        .rposition(|x| mine(x) && of(x).1 == settings)
        .or_else(|| idle.iter().rposition(mine))
}

fn retire(pool: Pool) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = pool.disconnect().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{
        carried, pick_idle, settings_key, BackendConfig, Pools, Queues, Shareable, LONE_AFTER,
        SETTINGS_QUEUES,
    };
    use crate::fasthash::FastMap;
    use std::sync::atomic::Ordering;

    /// A statement takes its own loop's newest idle connection with its
    /// settings, else its loop's newest; another loop's only when any
    /// loop will do.
    #[test]
    fn idle_connections_stay_with_their_event_loop() {
        let here = std::thread::current().id();
        let there = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        let idle = [(here, "a"), (there, "b"), (here, ""), (there, "")];
        let pick = |home, settings| pick_idle(&idle, home, settings, |&(h, s)| (h, s));
        assert_eq!(pick(Some(here), "a"), Some(0));
        assert_eq!(pick(Some(here), ""), Some(2));
        assert_eq!(pick(Some(here), "b"), Some(2), "its own loop's, not b's");
        assert_eq!(pick(Some(there), "a"), Some(3));
        assert_eq!(pick(None, "b"), Some(1));
        assert_eq!(pick(None, "c"), Some(3));
        let theirs = [(there, "a")];
        assert_eq!(pick_idle(&theirs, Some(here), "a", |&(h, s)| (h, s)), None);
        assert_eq!(
            pick_idle(
                &[] as &[(std::thread::ThreadId, &str)],
                None,
                "",
                |&(h, s)| (h, s)
            ),
            None
        );
    }

    #[test]
    fn a_tag_carries_the_settings_it_begins_with() {
        let settings: Vec<String> = ["SET a = 1", "SET b = 'x;\ny'", "SET c = 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let key = settings_key(&settings);
        let first = |k: usize| settings_key(&settings[..k]);
        assert_eq!(carried(&settings, &key, ""), Some(0));
        assert_eq!(carried(&settings, &key, &first(1)), Some(1));
        assert_eq!(carried(&settings, &key, &first(2)), Some(2));
        assert_eq!(carried(&settings, &key, &key), Some(3));
        // Another session's settings, or a cut inside one, carry none.
        assert_eq!(carried(&settings, &key, "SET z = 9"), None);
        assert_eq!(carried(&settings, &key, "SET a = 1;\nSET b = 'x"), None);
        assert_eq!(carried(&settings, &key, "SET a = 2"), None);
        assert_eq!(
            carried(&settings, &key, &format!("{key};\nSET d = 4")),
            None
        );
    }

    /// Sessions with settings get queues of their own, at most
    /// [`SETTINGS_QUEUES`] per tablet and loop: a new set of settings takes
    /// the place of an idle one, and with all of them busy its reads go
    /// unshared; sessions without settings always have theirs.
    #[test]
    fn settings_queues_are_bounded_and_give_way_when_idle() {
        let t = tablet();
        let mut map: FastMap<String, Vec<Queues>> = FastMap::default();
        let names: Vec<String> = (0..=SETTINGS_QUEUES)
            .map(|i| format!("SET x = {i}"))
            .collect();
        for name in &names[..SETTINGS_QUEUES] {
            let q = Queues::of(&mut map, &t, name).expect("room for it");
            assert_eq!(&*q.settings, name.as_str());
            // Busy: a read running alone on it.
            q.solo.fetch_add(1, Ordering::Relaxed);
        }
        let newcomer = names[SETTINGS_QUEUES].as_str();
        assert!(Queues::of(&mut map, &t, newcomer).is_none());
        assert!(Queues::of(&mut map, &t, "").is_some());
        assert!(Queues::of(&mut map, &t, &names[0]).is_some());
        // One goes idle: the newcomer takes its place.
        let q = Queues::of(&mut map, &t, &names[1]).unwrap();
        q.solo.fetch_sub(1, Ordering::Relaxed);
        assert!(Queues::of(&mut map, &t, newcomer).is_some());
        let kept: Vec<&str> = map["zone1-100"].iter().map(|q| &*q.settings).collect();
        assert!(!kept.contains(&names[1].as_str()), "{kept:?}");
        assert_eq!(kept.len(), SETTINGS_QUEUES + 1, "{kept:?}");
    }

    fn tablet() -> crate::topo::Tablet {
        crate::topo::Tablet {
            alias: "zone1-100".into(),
            hostname: "127.0.0.1".into(),
            port: 17100,
            keyspace: "commerce".into(),
            shard: "0".into(),
            tablet_type: crate::sql::TabletType::Primary,
            db_name: "vt_commerce".into(),
        }
    }

    /// A read runs alone only once the tablet's reads have found none
    /// other in flight for [`LONE_AFTER`]: a lone client's do; one that
    /// finds a busy tablet idle for a moment queues.
    #[test]
    fn only_a_lone_clients_reads_run_alone() {
        let pools = Pools::new(BackendConfig::default());
        let t = tablet();
        let read = || super::mux::Read {
            sql: "select 1".into(),
            params: None,
        };
        let route = |pools: &Pools| pools.route_shareable(&t, "", true, read);
        let first = route(&pools);
        assert!(matches!(first, Shareable::Solo(_)));
        // Another read while the first runs: it finds company and queues
        // (no shared connection is open yet: it is to open one).
        assert!(matches!(route(&pools), Shareable::Open(_)));
        drop(first);
        // Nothing in flight now, but there was a moment ago.
        assert!(matches!(route(&pools), Shareable::Open(_)));
        std::thread::sleep(LONE_AFTER + std::time::Duration::from_millis(1));
        assert!(matches!(route(&pools), Shareable::Solo(_)));
    }
}
