//! Wires the serving process together: topology watch, pools, the MySQL
//! listener and the web port, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::{BackendConfig, Pools};
use crate::frontend::{self, auth::Auth};
use crate::gateway::Gateway;
use crate::topo::store::{TopoImpl, TopoStore};
use crate::topo::watch::WatchStats;
use crate::topo::{self, SnapshotHandle};

/// State shared by every connection; passed as a handle, never global.
pub struct ServerCtx {
    /// The current topology; load once per statement.
    pub snapshot: SnapshotHandle,
    /// Tablet connection pools.
    pub pools: Pools,
    /// Tablet picking.
    pub gateway: Gateway,
    /// Who may connect (read again when its file changes).
    pub auth: crate::frontend::auth::Users,
    /// Version string in the handshake.
    pub server_version: String,
    /// Largest client packet accepted.
    pub max_packet: usize,
    /// Topology watch counters.
    pub watch_stats: Arc<WatchStats>,
    /// How many tablet connections sessions may keep between statements.
    pub sticky_budget: Arc<std::sync::atomic::AtomicUsize>,
    /// Plans of sharded statements.
    pub plans: crate::planner::cache::PlanCache,
    /// How far a transaction may reach (`--transaction_mode`).
    pub transaction_mode: crate::executor::TransactionMode,
    /// How long a transaction may stay open before its tablet connections
    /// are killed and it is rolled back (None: forever).
    pub transaction_timeout: Option<std::time::Duration>,
    /// `--max_memory_rows`.
    pub max_memory_rows: usize,
    /// Transaction parts committed, and how many of them only read and
    /// committed without a round trip for the client.
    pub txn_stats: crate::executor::TxnStats,
    /// What session SETs did on each tablet lately (connect-time SETs
    /// answered without a round trip).
    pub set_verdicts: crate::executor::verdicts::SetVerdicts,
    /// Open transactions, watched for deadlocks across shards.
    pub deadlocks: Arc<crate::executor::deadlock::Registry>,
    /// Polls the event loops made instead of blocking (`--busy-poll-us`).
    pub busy_polls: Arc<std::sync::atomic::AtomicU64>,
    /// The schema tracker's progress (None: `--schema-change-signal=false`):
    /// a DDL waits for its change to be learned.
    pub schema: Option<Arc<topo::schema::Progress>>,
    /// Trims of the allocator's free memory after large commands.
    pub heap: crate::heap::Trimmer,
    /// Each command's latency and errors by target, for `/metrics`.
    pub api: crate::stats::Api,
    /// When the server started (the status page's uptime and QPS).
    pub started: std::time::Instant,
    /// Sequence blocks reserved and not yet handed out: (keyspace, table) → (next, end).
    pub sequences: tokio::sync::Mutex<std::collections::HashMap<(String, String), (u64, u64)>>,
    /// Every client session by connection id: what KILL finds, and the
    /// query timeout's default.
    pub sessions: crate::executor::interrupt::Sessions,
    /// Atomic commits across shards: the decision store and the ids
    /// (`--transaction_mode=twopc`, or a session's).
    pub twopc: crate::executor::twopc::Coordinator,
    /// The topology store, for statements that change the topology
    /// (`ALTER VSCHEMA`); None where no store backs the snapshot.
    pub topo_store: Option<TopoStore>,
    /// The cells this gate keeps tablets of (`--cells_to_watch`): a
    /// topology change is checked as this gate would build it.
    pub cells: Vec<String>,
    /// Who may run `ALTER VSCHEMA` (`--vschema_ddl_authorized_users`).
    pub vschema_ddl_users: crate::vschema::ddl::Authorized,
    /// Reads of every shard are refused without `/*vt+ ALLOW_SCATTER */`
    /// (`--no_scatter`).
    pub no_scatter: bool,
    /// Where reads go when a session's target names no tablet type
    /// (`--default_tablet_type`).
    pub default_tablet_type: crate::sql::TabletType,
    /// Every client statement's line, when `--log_queries_to_file` keeps
    /// a query log.
    pub query_log: Option<crate::querylog::QueryLog>,
    /// The tablets' login, for statements that ask one tablet's server
    /// about itself (`SHOW VITESS_REPLICATION_STATUS`).
    pub login: topo::schema::Login,
    /// Read a PROXY protocol header before greeting a TCP client
    /// (`--proxy_protocol`): the client's address is the header's.
    pub proxy_protocol: bool,
    /// `--mysql_server_read_timeout`: a client silent this long between
    /// commands (or inside one) is disconnected (None: never).
    pub read_timeout: Option<std::time::Duration>,
    /// `--mysql_server_write_timeout`: a client that takes no bytes this
    /// long is disconnected (None: never).
    pub write_timeout: Option<std::time::Duration>,
    /// `--max_payload_size`: longer statements are refused (None: any).
    pub max_payload_size: Option<usize>,
    /// `--enable_direct_ddl`: false refuses schema changes at the gate.
    pub direct_ddl: bool,
    /// Set once the server stops taking clients (SIGTERM's lameduck
    /// period): pings fail and `/debug/health` says so, so that pools and
    /// balancers move away while the clients still here finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// `@@workload` of a new session (`--mysql_default_workload`; None:
    /// vtgate's default, OLTP).
    pub default_workload: Option<String>,
    /// Client TLS (`--mysql_server_ssl_cert` and the rest); None: no
    /// client is offered TLS.
    pub tls: Option<Arc<crate::frontend::tls::Tls>>,
    conn_ids: AtomicU32,
}

impl ServerCtx {
    /// Builds a context around a snapshot handle.
    pub fn new(
        snapshot: SnapshotHandle,
        backend: BackendConfig,
        auth: Auth,
        server_version: String,
    ) -> Self {
        let sticky = backend.sticky;
        ServerCtx {
            snapshot,
            pools: Pools::new(backend),
            gateway: Gateway::default(),
            auth: crate::frontend::auth::Users::new(auth, None),
            server_version,
            max_packet: 64 << 20,
            watch_stats: Arc::new(WatchStats::default()),
            sticky_budget: Arc::new(std::sync::atomic::AtomicUsize::new(sticky)),
            transaction_mode: crate::executor::TransactionMode::default(),
            transaction_timeout: None,
            max_memory_rows: crate::engine::DEFAULT_MAX_MEMORY_ROWS,
            txn_stats: crate::executor::TxnStats::default(),
            set_verdicts: Default::default(),
            deadlocks: Arc::default(),
            busy_polls: Arc::default(),
            plans: crate::planner::cache::PlanCache::new(5000),
            sequences: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            heap: Default::default(),
            api: Default::default(),
            started: std::time::Instant::now(),
            schema: None,
            sessions: Default::default(),
            twopc: Default::default(),
            topo_store: None,
            cells: Vec::new(),
            vschema_ddl_users: Default::default(),
            no_scatter: false,
            default_tablet_type: crate::sql::TabletType::Primary,
            query_log: None,
            login: topo::schema::Login {
                user: String::new(),
                password: String::new(),
            },
            tls: None,
            default_workload: None,
            proxy_protocol: false,
            read_timeout: None,
            write_timeout: None,
            max_payload_size: None,
            direct_ddl: true,
            draining: Default::default(),
            conn_ids: AtomicU32::new(1),
        }
    }

    /// A fresh connection id for the handshake.
    pub fn next_connection_id(&self) -> u32 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// What `serve` needs, resolved from flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// MySQL listener address.
    pub mysql_addr: SocketAddr,
    /// Also serve on this Unix socket.
    pub socket_path: Option<std::path::PathBuf>,
    /// Web listener address (None: no web port).
    pub web_addr: Option<SocketAddr>,
    /// Topology store kind.
    pub topo_impl: TopoImpl,
    /// Store address (etcd endpoints or a directory).
    pub topo_address: String,
    /// Topo root.
    pub topo_root: String,
    /// What of the topology this gate serves: cells, keyspaces, tablet
    /// types (everything when empty).
    pub scope: topo::Scope,
    /// Backend login and pool sizes.
    pub backend: BackendConfig,
    /// Client authentication.
    pub auth: Auth,
    /// The static auth file `auth` was read from, read again on SIGHUP
    /// and every `auth_reload_interval` (None: the users never change).
    pub auth_file: Option<std::path::PathBuf>,
    /// `--mysql_auth_static_reload_interval` (None: only on SIGHUP).
    pub auth_reload_interval: Option<std::time::Duration>,
    /// Handshake version string.
    pub server_version: String,
    /// How far a transaction may reach.
    pub transaction_mode: crate::executor::TransactionMode,
    /// `--twopc_abandon_age`: an undecided twopc transaction older than
    /// this is rolled back by resolvers.
    pub twopc_abandon_age: std::time::Duration,
    /// `--queryserver-config-transaction-timeout` (None: off).
    pub transaction_timeout: Option<std::time::Duration>,
    /// `--max_memory_rows`.
    pub max_memory_rows: usize,
    /// `--allow-kill-statement`.
    pub allow_kill: bool,
    /// `--vschema_ddl_authorized_users`.
    pub vschema_ddl_users: crate::vschema::ddl::Authorized,
    /// `--no_scatter`.
    pub no_scatter: bool,
    /// `--default_tablet_type`.
    pub default_tablet_type: crate::sql::TabletType,
    /// `--log_queries_to_file`.
    pub query_log: Option<std::path::PathBuf>,
    /// `--querylog-format`, `--querylog-filter-tag`,
    /// `--querylog-row-threshold`, `--querylog-mode`.
    pub query_log_options: crate::querylog::Options,
    /// `--proxy_protocol`.
    pub proxy_protocol: bool,
    /// `--min_number_serving_vttablets`.
    pub min_serving: usize,
    /// `--max_payload_size` (None: off).
    pub max_payload_size: Option<usize>,
    /// `--enable_direct_ddl`.
    pub direct_ddl: bool,
    /// `--mysql_server_read_timeout` (None: off).
    pub read_timeout: Option<std::time::Duration>,
    /// `--mysql_server_write_timeout` (None: off).
    pub write_timeout: Option<std::time::Duration>,
    /// `--mysql_default_workload` when not OLTP.
    pub default_workload: Option<String>,
    /// Client TLS, loaded from its files (None: plain connections only).
    pub tls: Option<Arc<crate::frontend::tls::Tls>>,
    /// `--query-timeout` (None: statements have no timeout).
    pub query_timeout: Option<std::time::Duration>,
    /// Learn column types from the tablets ([`topo::schema`]).
    pub schema_tracking: bool,
    /// Health checks of the tablets (None: off, every tablet serves).
    pub health: Option<crate::gateway::health::Config>,
    /// Failover buffering (`--enable_buffer` and its bounds).
    pub buffer: crate::gateway::buffer::Config,
    /// Further event loops (current-thread runtimes on their own threads)
    /// that accepted clients are dealt to in turn, beside the one `start`
    /// runs on. Why: one loop serializes every client's protocol work, and
    /// with the tablets on the same cores the machine then waits on it; a
    /// work-stealing scheduler instead pays cross-thread wakeups on every
    /// I/O event. A client stays on its loop for life.
    pub loops: Vec<tokio::runtime::Handle>,
    /// Polls the event loops made instead of blocking (see [`crate::spin`]),
    /// counted by their park hooks, which exist before the server does.
    pub busy_polls: Arc<std::sync::atomic::AtomicU64>,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The topology could not be loaded.
    #[error(transparent)]
    Topo(#[from] topo::TopoError),
    /// A file the server writes could not be opened.
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running server: its bound addresses and the way to stop it.
pub struct Running {
    /// Where the MySQL listener is bound (useful with port 0).
    pub mysql_addr: SocketAddr,
    /// Where the web listener is bound.
    pub web_addr: Option<SocketAddr>,
    /// Shared state, for inspection.
    pub ctx: Arc<ServerCtx>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops taking clients (the listeners close) while those connected
    /// go on being served: the start of vtgate's lameduck period.
    pub fn stop_accepting(&self) {
        self.ctx
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
    }

    /// Stops accepting, lets the accept loop end, closes pools.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.ctx.pools.close_all().await;
    }
}

/// Loads the topology, binds the listeners and serves in the background.
pub async fn start(opts: ServeOptions) -> Result<Running, ServeError> {
    let store = TopoStore::connect(opts.topo_impl, &opts.topo_address, &opts.topo_root).await?;
    let (handle, records, problems) = topo::watch::initial(&store, &opts.scope).await?;
    let login = topo::schema::Login {
        user: opts.backend.user.clone(),
        password: opts.backend.password.clone(),
    };
    // The users come with their file, set below.
    let mut ctx = ServerCtx::new(
        handle.clone(),
        opts.backend,
        Auth::None,
        opts.server_version,
    );
    ctx.transaction_mode = opts.transaction_mode;
    ctx.twopc = crate::executor::twopc::Coordinator::new(
        store.beside(crate::executor::twopc::STORE_SUFFIX),
        opts.twopc_abandon_age,
    );
    ctx.transaction_timeout = opts.transaction_timeout;
    ctx.topo_store = Some(store.clone());
    ctx.cells = opts.scope.cells.clone();
    ctx.vschema_ddl_users = opts.vschema_ddl_users;
    ctx.login = login.clone();
    ctx.no_scatter = opts.no_scatter;
    ctx.default_tablet_type = opts.default_tablet_type;
    ctx.tls = opts.tls;
    ctx.default_workload = opts.default_workload;
    ctx.proxy_protocol = opts.proxy_protocol;
    ctx.gateway.min_serving = opts.min_serving;
    ctx.read_timeout = opts.read_timeout;
    ctx.max_payload_size = opts.max_payload_size;
    ctx.direct_ddl = opts.direct_ddl;
    ctx.write_timeout = opts.write_timeout;
    ctx.auth = crate::frontend::auth::Users::new(opts.auth, opts.auth_file);
    if let Some(path) = &opts.query_log {
        let log = crate::querylog::QueryLog::open(path, opts.query_log_options.clone()).map_err(
            |source| ServeError::File {
                path: path.clone(),
                source,
            },
        )?;
        ctx.query_log = Some(log);
    }
    ctx.max_memory_rows = opts.max_memory_rows;
    ctx.sessions.allow_kill = opts.allow_kill;
    ctx.sessions.query_timeout = opts.query_timeout;
    ctx.busy_polls = opts.busy_polls;
    ctx.gateway.buffer = crate::gateway::buffer::Buffer::new(opts.buffer);
    if opts.schema_tracking {
        ctx.schema = Some(Arc::default());
    }
    topo::watch::note_problems(&ctx.watch_stats, &problems);
    let ctx = Arc::new(ctx);
    ctx.pools.reconcile(&handle.load());
    if let Some(every) = opts.auth_reload_interval.filter(|_| ctx.auth.from_file()) {
        tokio::spawn(reload_users(Arc::downgrade(&ctx), every));
    }
    tokio::spawn(crate::executor::deadlock::run(Arc::downgrade(&ctx)));
    tokio::spawn(crate::executor::twopc::run(Arc::downgrade(&ctx)));
    if let Some(cfg) = opts.health {
        tokio::spawn(crate::gateway::health::run(
            handle.clone(),
            ctx.gateway.health.clone(),
            cfg,
        ));
    }
    let learned = ctx.schema.clone().map(|progress| {
        let (tx, rx) = watch::channel(Default::default());
        tokio::spawn(topo::schema::run(
            handle.clone(),
            login,
            tx,
            progress.clone(),
        ));
        (rx, progress)
    });
    {
        let ctx2 = ctx.clone();
        tokio::spawn(topo::watch::run(
            store,
            opts.scope.clone(),
            handle,
            records,
            learned,
            ctx.watch_stats.clone(),
            move |snap| {
                ctx2.pools.reconcile(snap);
                ctx2.plans.clear();
                ctx2.gateway.buffer.snapshot_changed();
            },
        ));
    }
    let listener = TcpListener::bind(opts.mysql_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.mysql_addr,
            source,
        })?;
    let mysql_addr = listener.local_addr().unwrap_or(opts.mysql_addr);
    let web_addr = match opts.web_addr {
        Some(addr) => Some(
            crate::web::start(addr, ctx.clone())
                .await
                .map_err(|source| ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let (tx, rx) = watch::channel(false);
    let loops: Arc<[tokio::runtime::Handle]> = opts.loops.into();
    if let Some(path) = &opts.socket_path {
        let _ = std::fs::remove_file(path);
        let unix = tokio::net::UnixListener::bind(path).map_err(|source| ServeError::Bind {
            addr: opts.mysql_addr,
            source,
        })?;
        let ctx3 = ctx.clone();
        tokio::spawn(accept_loop(unix, rx.clone(), loops.clone(), move |s| {
            frontend::handle_unix(s, ctx3.clone())
        }));
    }
    let ctx2 = ctx.clone();
    let task = tokio::spawn(accept_loop(listener, rx, loops, move |(s, peer)| {
        frontend::handle(s, peer, ctx2.clone())
    }));
    tracing::info!(%mysql_addr, ?web_addr, "shardgate serving");
    Ok(Running {
        mysql_addr,
        web_addr,
        ctx,
        shutdown: tx,
        task,
    })
}

/// Reads the static auth file again every `every` while the server runs
/// (`--mysql_auth_static_reload_interval`).
async fn reload_users(ctx: std::sync::Weak<ServerCtx>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        ctx.auth.reload_logged();
    }
}

/// A listener the accept loop can take connections from (TCP or Unix).
trait Listener: Send + 'static {
    type Stream: Send + 'static;
    /// A connection taken off this runtime's reactor, to move to another.
    type Detached: Send + 'static;
    fn next_conn(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
    fn detach(s: Self::Stream) -> std::io::Result<Self::Detached>;
    /// Registers a detached connection with the current runtime's reactor.
    fn attach(d: Self::Detached) -> std::io::Result<Self::Stream>;
}

impl Listener for TcpListener {
    /// The peer's address comes with the connection (no getpeername call).
    type Stream = (tokio::net::TcpStream, std::net::SocketAddr);
    type Detached = (std::net::TcpStream, std::net::SocketAddr);
    async fn next_conn(&self) -> std::io::Result<Self::Stream> {
        self.accept().await
    }
    fn detach((s, peer): Self::Stream) -> std::io::Result<Self::Detached> {
        Ok((s.into_std()?, peer))
    }
    fn attach((s, peer): Self::Detached) -> std::io::Result<Self::Stream> {
        Ok((tokio::net::TcpStream::from_std(s)?, peer))
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Detached = std::os::unix::net::UnixStream;
    async fn next_conn(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
    fn detach(s: Self::Stream) -> std::io::Result<Self::Detached> {
        s.into_std()
    }
    fn attach(d: Self::Detached) -> std::io::Result<Self::Stream> {
        tokio::net::UnixStream::from_std(d)
    }
}

/// Serves each accepted connection in its own task until shutdown, dealing
/// connections in turn to this loop and the `loops` beside it; a failed
/// accept (out of file descriptors, say) backs off briefly instead of spinning.
async fn accept_loop<L: Listener, Fut>(
    listener: L,
    mut stop: watch::Receiver<bool>,
    loops: Arc<[tokio::runtime::Handle]>,
    serve: impl Fn(L::Stream) -> Fut + Send + Sync + 'static,
) where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let mut turn = 0usize;
    loop {
        tokio::select! {
            accepted = listener.next_conn() => match accepted {
                Ok(stream) => {
                    turn = (turn + 1) % (loops.len() + 1);
                    if turn == 0 {
                        tokio::spawn(serve(stream));
                        continue;
                    }
                    let detached = match L::detach(stream) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot move a connection to its event loop");
                            continue;
                        }
                    };
                    let serve = serve.clone();
                    loops[turn - 1].spawn(async move {
                        match L::attach(detached) {
                            Ok(stream) => serve(stream).await,
                            Err(e) => tracing::warn!(error = %e, "cannot move a connection to its event loop"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}
