//! Command-line flags. Serving flags keep vtgate's names in dash-case and
//! accept the old underscore spellings as aliases.

use std::path::PathBuf;

pub mod vtgate;

use clap::{Args, Parser, Subcommand};

use crate::topo::store::TopoImpl;

/// shardgate: a MySQL sharding proxy that speaks Vitess's VSchema.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving flags when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands. (Parsed once at startup: the size of the serve flags
/// costs nothing worth boxing them for.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MySQL clients (the default).
    Serve(ServeArgs),
    /// Topology administration (Vitess's vtctldclient commands).
    Ctl(CtlArgs),
    /// A local sharded cluster: etcd, MariaDB tablets and shardgate.
    Local(LocalArgs),
    /// VSchema tools.
    Vschema(VschemaArgs),
}

/// Where the topology lives; shared by `serve` and `ctl`.
#[derive(Debug, Clone, Args)]
pub struct TopoArgs {
    /// Topology store: etcd2 or file (a directory laid out like the etcd keys).
    #[arg(
        long = "topo-implementation",
        alias = "topo_implementation",
        value_enum,
        default_value = "etcd2"
    )]
    pub topo_implementation: TopoImpl,
    /// etcd endpoints (host:port, comma separated) or, for `file`, the directory.
    #[arg(
        long = "topo-global-server-address",
        alias = "topo_global_server_address",
        default_value = "127.0.0.1:2379"
    )]
    pub topo_global_server_address: String,
    /// Key prefix of the topology.
    #[arg(
        long = "topo-global-root",
        alias = "topo_global_root",
        default_value = "/vitess"
    )]
    pub topo_global_root: String,
}

/// Flags of `shardgate serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Topology flags.
    #[command(flatten)]
    pub topo: TopoArgs,
    /// MySQL protocol port.
    #[arg(
        long = "mysql-server-port",
        alias = "mysql_server_port",
        default_value_t = 15306
    )]
    pub mysql_server_port: u16,
    /// Address the MySQL listener binds.
    #[arg(
        long = "mysql-server-bind-address",
        alias = "mysql_server_bind_address",
        default_value = "127.0.0.1"
    )]
    pub mysql_server_bind_address: String,
    /// Also listen on this Unix socket.
    #[arg(long = "mysql-server-socket-path", alias = "mysql_server_socket_path")]
    pub mysql_server_socket_path: Option<PathBuf>,
    /// Web port (/debug/status, /debug/health, /debug/vars); 0 picks a free one.
    #[arg(long = "port", default_value_t = 15001)]
    pub port: u16,
    /// This shardgate's cell.
    #[arg(long = "cell", default_value = "zone1")]
    pub cell: String,
    /// Cells whose tablets are used (comma separated; default: all).
    #[arg(
        long = "cells-to-watch",
        alias = "cells_to_watch",
        value_delimiter = ','
    )]
    pub cells_to_watch: Vec<String>,
    /// Keyspaces this gate serves (comma separated; default: all): the
    /// others are unknown here, as in vtgate.
    #[arg(
        long = "keyspaces_to_watch",
        alias = "keyspaces-to-watch",
        value_delimiter = ','
    )]
    pub keyspaces_to_watch: Vec<String>,
    /// Tablet types this gate routes to (comma separated: PRIMARY, REPLICA,
    /// RDONLY; default: all): tablets of other types are not kept, so a
    /// read aimed at them finds no tablet, as in vtgate.
    #[arg(
        long = "allowed_tablet_types",
        alias = "allowed-tablet-types",
        value_delimiter = ','
    )]
    pub allowed_tablet_types: Vec<String>,
    /// Only tablets of these shards (comma separated `keyspace|shard`,
    /// the shard by name or as a key range holding it, as `customer|-80`);
    /// vtgate's flag, for gates that serve part of a keyspace.
    #[arg(
        long = "tablet_filters",
        alias = "tablet-filters",
        value_delimiter = ','
    )]
    pub tablet_filters: Vec<String>,
    /// Tablet types to wait for at startup (accepted for vtgate compatibility).
    #[arg(
        long = "tablet-types-to-wait",
        alias = "tablet_types_to_wait",
        value_delimiter = ','
    )]
    pub tablet_types_to_wait: Vec<String>,
    /// Where a session's reads go when its target names no tablet type
    /// (`USE ks`, not `USE ks@replica`): vtgate's flag. Writes, locking
    /// reads, reads of session state and everything in a transaction go
    /// to the primary whatever it says.
    #[arg(
        long = "default_tablet_type",
        alias = "default-tablet-type",
        default_value = "PRIMARY",
        value_parser = parse_tablet_type
    )]
    pub default_tablet_type: crate::sql::TabletType,
    /// Write this process's id to the file (removed at a clean stop),
    /// as vtgate's `--pid_file`.
    #[arg(long = "pid_file", alias = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Also write the log to `shardgate.log` in this directory, as
    /// vtgate's `--log_dir` writes its logs there.
    #[arg(long = "log_dir", alias = "log-dir")]
    pub log_dir: Option<PathBuf>,
    /// Append a line per client statement to this file, in vtgate's
    /// query log form (`--log_queries_to_file`).
    #[arg(long = "log_queries_to_file", alias = "log-queries-to-file")]
    pub log_queries_to_file: Option<PathBuf>,
    /// The query log's form: `text` (vtgate's tab-separated line) or
    /// `json` (one object per line, vtgate's keys).
    #[arg(
        long = "querylog-format",
        alias = "querylog_format",
        default_value = "text"
    )]
    pub querylog_format: String,
    /// Log only statements whose text holds this string (vtgate's flag).
    #[arg(long = "querylog-filter-tag", alias = "querylog_filter_tag")]
    pub querylog_filter_tag: Option<String>,
    /// Log only statements that returned or changed at least this many
    /// rows (0: all; vtgate's flag).
    #[arg(
        long = "querylog-row-threshold",
        alias = "querylog_row_threshold",
        default_value_t = 0
    )]
    pub querylog_row_threshold: u64,
    /// `all`, or `error` to log only statements that failed (vtgate's flag).
    #[arg(long = "querylog-mode", alias = "querylog_mode", default_value = "all")]
    pub querylog_mode: String,
    /// Client authentication: none (any user; keep the listener on
    /// loopback), static (a Vitess static auth file), or clientcert (the
    /// TLS client certificate's common name is the user; needs
    /// `--mysql_server_ssl_ca`).
    #[arg(
        long = "mysql-auth-server-impl",
        alias = "mysql_auth_server_impl",
        default_value = "none"
    )]
    pub mysql_auth_server_impl: String,
    /// Vitess static auth file (JSON) for `static`.
    #[arg(
        long = "mysql-auth-server-static-file",
        alias = "mysql_auth_server_static_file"
    )]
    pub mysql_auth_server_static_file: Option<PathBuf>,
    /// The static auth JSON itself, instead of a file (vtgate's flag).
    #[arg(
        long = "mysql_auth_server_static_string",
        alias = "mysql-auth-server-static-string",
        conflicts_with = "mysql_auth_server_static_file"
    )]
    pub mysql_auth_server_static_string: Option<String>,
    /// Read the static auth file again this often (a Go duration; 0:
    /// only on SIGHUP), so that users and passwords change without a
    /// restart; vtgate's flag.
    #[arg(
        long = "mysql_auth_static_reload_interval",
        alias = "mysql-auth-static-reload-interval",
        default_value = "0",
        value_parser = parse_duration
    )]
    pub mysql_auth_static_reload_interval: std::time::Duration,
    /// Client TLS: the server's certificate chain (PEM). With the key,
    /// TCP clients are offered TLS; SIGHUP reads the files again.
    #[arg(long = "mysql_server_ssl_cert", alias = "mysql-server-ssl-cert")]
    pub mysql_server_ssl_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long = "mysql_server_ssl_key", alias = "mysql-server-ssl-key")]
    pub mysql_server_ssl_key: Option<PathBuf>,
    /// CA certificates (PEM): when given, TLS clients must present a
    /// certificate that chains to one of them.
    #[arg(long = "mysql_server_ssl_ca", alias = "mysql-server-ssl-ca")]
    pub mysql_server_ssl_ca: Option<PathBuf>,
    /// Revoked client certificates (PEM CRLs), with `--mysql_server_ssl_ca`.
    #[arg(long = "mysql_server_ssl_crl", alias = "mysql-server-ssl-crl")]
    pub mysql_server_ssl_crl: Option<PathBuf>,
    /// Certificates (PEM) sent after the server's own, completing its chain.
    #[arg(
        long = "mysql_server_ssl_server_ca",
        alias = "mysql-server-ssl-server-ca"
    )]
    pub mysql_server_ssl_server_ca: Option<PathBuf>,
    /// The oldest TLS version taken: TLSv1.0 … TLSv1.3 (below TLSv1.2
    /// means TLSv1.2: older versions are not spoken).
    #[arg(
        long = "mysql_server_tls_min_version",
        alias = "mysql-server-tls-min-version"
    )]
    pub mysql_server_tls_min_version: Option<String>,
    /// Refuse TCP clients that do not use TLS (needs the certificate and key).
    #[arg(
        long = "mysql_server_require_secure_transport",
        alias = "mysql-server-require-secure-transport",
        default_value_t = false,
        num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set
    )]
    pub mysql_server_require_secure_transport: bool,
    /// Version string sent in the handshake.
    #[arg(
        long = "mysql-server-version",
        alias = "mysql_server_version",
        default_value = "5.5.5-10.11.0-MariaDB-shardgate"
    )]
    pub mysql_server_version: String,
    /// MySQL user shardgate logs in to tablets as.
    #[arg(long = "db-app-user", alias = "db_app_user", default_value = "vt_app")]
    pub db_app_user: String,
    /// Its password.
    #[arg(
        long = "db-app-password",
        alias = "db_app_password",
        default_value = ""
    )]
    pub db_app_password: String,
    /// Largest number of driver (mysql_async) connections per tablet (the
    /// fallback path); the lean connections statements run on come on top
    /// (`--tablet-connections`).
    #[arg(long = "pool-size", default_value_t = 200)]
    pub pool_size: usize,
    /// Threads serving clients (default: half the cores, but two on a
    /// machine of two or three cores and one on a single core), each an
    /// event loop of its own (tokio's current-thread scheduler) that
    /// accepted clients are dealt to in turn; a client stays on its loop.
    /// A proxy sharing its machine with the database and the load does
    /// best with few threads, and loops that share no task queue pay no
    /// cross-thread wakeups per I/O event (a work-stealing scheduler
    /// does). Yet one loop on two shared cores leaves a tenth of the
    /// machine idle: the kernel queues the clients that loop wakes on its
    /// own core. A second loop takes that share up (read only +2 to
    /// +11 %, point select 0 to −3 %, `benches/RESULTS.md`, session 27).
    /// With dozens of busy clients one loop is ahead again (it sleeps
    /// less, and two cost an eighth more context switches per query: read
    /// only at 32 threads +5 % with half the p99, session 28).
    /// Tablet connections stay with the loop that opened them (idle ones,
    /// and the shared read connections, per loop), so a session's replies
    /// are woken on its own loop.
    #[arg(long = "worker-threads")]
    pub worker_threads: Option<usize>,
    /// After a client command, an event loop keeps polling its sockets
    /// without blocking for this many microseconds (0: it blocks as soon
    /// as it has nothing to do), so a tablet's reply and the client's next
    /// command find it running instead of waking it onto an idle core.
    /// A loop that lately had to wait for a core does not poll: on a
    /// machine whose cores are all busy, polling would take CPU from the
    /// tablets or the clients (see [`crate::spin`]). Default 200, or 0
    /// when a cgroup CPU quota caps the process (polling would spend it).
    #[arg(long = "busy-poll-us")]
    pub busy_poll_us: Option<u64>,
    /// Reach tablets on this host through the Unix socket their MariaDB
    /// reports (`@@socket`) rather than TCP loopback, as vttablet talks to
    /// its mysqld: cheaper per query for both sides. Tablets elsewhere, or
    /// whose socket cannot be opened, stay on TCP.
    #[arg(long = "tablet-local-socket", alias = "tablet_local_socket", default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tablet_local_socket: bool,
    /// Run statements on shardgate's own lean tablet connections (the fast
    /// path); `false` sends everything through the mysql_async pools, the
    /// fallback used when a tablet cannot be reached that way (for A/B runs
    /// and for testing that path).
    #[arg(long = "lean-connections", alias = "lean_connections", default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub lean_connections: bool,
    /// Tablet connections client sessions may keep between statements,
    /// server-wide (session affinity: a busy client skips the pool; at
    /// most four per session). Beyond it a statement takes a connection
    /// from the pool and gives it back; a transaction keeps its own
    /// whatever this says.
    #[arg(long = "sticky-connections", default_value_t = 128)]
    pub sticky_connections: usize,
    /// Lean connections per tablet at most (what vttablet's pool sizes
    /// bound in Vitess), idle, kept and busy together: a statement beyond
    /// it waits for one another statement gives back. Connections kept
    /// while idle (sticky and shared ones) get half of it, so the rest
    /// turns over between statements. Below MariaDB's `max_connections`
    /// (151 by default) with room for other clients; several shardgates
    /// in front of one tablet share that.
    #[arg(long = "tablet-connections", default_value_t = 100)]
    pub tablet_connections: usize,
    /// How long a statement waits at `--tablet-connections` before it
    /// fails with error 1203 (ER_TOO_MANY_USER_CONNECTIONS, as vtgate
    /// reports a full pool); the connection stays usable.
    #[arg(long = "tablet-connection-wait-ms", default_value_t = 5000)]
    pub tablet_connection_wait_ms: u64,
    /// Shared connections per tablet and event loop for the reads of
    /// sessions that hold no state there (a prepared SELECT outside a
    /// transaction, with no settings, variables or locks): the statements of many sessions are
    /// written to one connection together and answered in order, which
    /// saves socket calls and wakeups on both sides. Another is opened
    /// while the busy ones are held up by a slow statement or have a full
    /// pipeline, up to this many (each is served by one MariaDB thread: a
    /// tablet with many cores may want more); with all of several held up
    /// by slow statements, a read runs on its session's own connection
    /// rather than wait; 0 gives every statement a connection of its own.
    #[arg(long = "shared-read-connections", default_value_t = 4)]
    pub shared_read_connections: usize,
    /// How far a transaction may reach, as vtgate's flag: `multi` (each
    /// shard commits its part on its own), `single` (a transaction reaching
    /// a second shard fails with "multi-db transaction attempted" and is
    /// rolled back), `twopc` (atomic: every shard's part commits or none
    /// does, see `executor::twopc`).
    #[arg(
        long = "transaction-mode",
        alias = "transaction_mode",
        value_enum,
        ignore_case = true,
        default_value = "multi"
    )]
    pub transaction_mode: crate::executor::TransactionMode,
    /// Under twopc, how old a transaction's record may grow without a
    /// decision before any shardgate's resolver rolls it back (its
    /// shardgate died while preparing); a Go duration, as vttablet's flag.
    #[arg(
        long = "twopc_abandon_age",
        alias = "twopc-abandon-age",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub twopc_abandon_age: std::time::Duration,
    /// Learn sharded tables' column types and collations from the tablets
    /// (vtgate's schema tracking, under vtgate's flag name), so that
    /// ORDER BY, GROUP BY and DISTINCT across shards compare strings at
    /// the gate instead of asking every shard for `weight_string()`.
    #[arg(
        long = "schema-change-signal",
        alias = "schema_change_signal",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub schema_change_signal: bool,
    /// Time between health checks of every tablet in the topology (a
    /// primary is pinged, a replica's `SHOW SLAVE STATUS` read): reads go
    /// to the replicas found fit, around one that is down or lagging; 0
    /// turns the checks off, and every tablet serves.
    #[arg(
        long = "health-check-interval-ms",
        alias = "health_check_interval_ms",
        default_value_t = 1000
    )]
    pub health_check_interval_ms: u64,
    /// A replica further behind its primary than this (a Go duration:
    /// `30s`, `1m30s`, `500ms`) takes reads only while no replica of its
    /// shard is within it; vtgate's flag and default.
    #[arg(
        long = "discovery-low-replication-lag",
        alias = "discovery_low_replication_lag",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub discovery_low_replication_lag: std::time::Duration,
    /// A replica further behind than this (a Go duration) takes no reads
    /// unless no other tablet of its target answers; vtgate's flag and
    /// default.
    #[arg(
        long = "discovery_high_replication_lag_minimum_serving",
        alias = "discovery-high-replication-lag-minimum-serving",
        default_value = "2h",
        value_parser = parse_duration
    )]
    pub discovery_high_replication_lag_minimum_serving: std::time::Duration,
    /// While fewer replicas of a shard are within the low lag, the least
    /// lagging of the others serve too, up to this many (vtgate's flag,
    /// whose default is 2; 1 keeps reads on fresh replicas while one is).
    #[arg(
        long = "min_number_serving_vttablets",
        alias = "min-number-serving-vttablets",
        default_value_t = 1
    )]
    pub min_number_serving_vttablets: usize,
    /// A transaction open for longer than this (a Go duration) has its
    /// tablet connections killed, which rolls it back and frees its locks;
    /// its client's next statement fails (error 1317) and the session goes
    /// on. vttablet's flag and default; `0` turns it off.
    #[arg(
        long = "queryserver-config-transaction-timeout",
        alias = "queryserver_config_transaction_timeout",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub queryserver_config_transaction_timeout: std::time::Duration,
    /// Let clients stop other connections' statements and connections
    /// with `KILL [QUERY | CONNECTION] id` (shardgate's connection ids, as
    /// `SHOW PROCESSLIST` on a MySQL server lists them; what the `mysql`
    /// client sends on Ctrl-C); without it KILL is refused (error 1095),
    /// as vtgate refuses it. Never passed to a tablet either way.
    #[arg(long = "allow-kill-statement", alias = "allow_kill_statement", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_kill_statement: bool,
    /// Who may change VSchemas with `ALTER VSCHEMA` statements: a
    /// comma-separated list of users, `%` for everyone; nobody when empty
    /// (vtgate's flag and default).
    #[arg(
        long = "vschema_ddl_authorized_users",
        alias = "vschema-ddl-authorized-users",
        default_value = ""
    )]
    pub vschema_ddl_authorized_users: String,
    /// Refuse reads that go to every shard of a keyspace unless the
    /// statement says `/*vt+ ALLOW_SCATTER */` (error 1235): vtgate's flag,
    /// for applications that must always route by a vindex.
    #[arg(long = "no_scatter", alias = "no-scatter", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub no_scatter: bool,
    /// Every statement's timeout in milliseconds (0: none): a statement
    /// still running after it is stopped (its tablet queries killed) and
    /// fails with error 1317. A session's `SET query_timeout = ms` and a
    /// statement's `/*vt+ QUERY_TIMEOUT_MS=ms */` override it; vtgate's
    /// flag.
    #[arg(long = "query-timeout", alias = "query_timeout", default_value_t = 0)]
    pub query_timeout: u64,
    /// Read HAProxy's PROXY protocol header (v1 or v2) before greeting a
    /// TCP client and take its address from it; a client that sends none
    /// within 2 s is served with its socket's address (vtgate's flag).
    #[arg(
        long = "proxy_protocol",
        alias = "proxy-protocol",
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub proxy_protocol: bool,
    /// After SIGTERM, keep serving the clients already connected for this
    /// long (a Go duration) with the listeners closed, pings failing and
    /// `/debug/health` answering 503, then stop: vtgate's lameduck period.
    #[arg(
        long = "lameduck-period",
        alias = "lameduck_period",
        default_value = "50ms",
        value_parser = parse_duration
    )]
    pub lameduck_period: std::time::Duration,
    /// Refuse statements longer than this many bytes (0: any), unless they
    /// say `/*vt+ IGNORE_MAX_PAYLOAD_SIZE */`; vtgate's flag and error
    /// (1153, "query payload size above threshold").
    #[arg(
        long = "max_payload_size",
        alias = "max-payload-size",
        default_value_t = 0
    )]
    pub max_payload_size: usize,
    /// Let clients run schema changes (CREATE, ALTER, DROP, TRUNCATE,
    /// RENAME); `false` refuses them with "direct DDL is disabled", as
    /// vtgate does for a keyspace whose schema changes go another way.
    #[arg(
        long = "enable_direct_ddl",
        alias = "enable-direct-ddl",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_direct_ddl: bool,
    /// Disconnect a client that sends nothing for this long, between
    /// commands or inside one (a Go duration; 0: never); vtgate's flag.
    #[arg(
        long = "mysql_server_read_timeout",
        alias = "mysql-server-read-timeout",
        default_value = "0",
        value_parser = parse_duration
    )]
    pub mysql_server_read_timeout: std::time::Duration,
    /// Disconnect a client that takes none of its results' bytes for this
    /// long (a Go duration; 0: never); vtgate's flag.
    #[arg(
        long = "mysql_server_write_timeout",
        alias = "mysql-server-write-timeout",
        default_value = "0",
        value_parser = parse_duration
    )]
    pub mysql_server_write_timeout: std::time::Duration,
    /// vtgate's statement timeout as a Go duration (`30s`; 0: none), used
    /// when `--query-timeout` is not given.
    #[arg(
        long = "mysql_server_query_timeout",
        alias = "mysql-server-query-timeout",
        default_value = "0",
        value_parser = parse_duration
    )]
    pub mysql_server_query_timeout: std::time::Duration,
    /// A new session's `@@workload`: OLTP, OLAP or DBA (vtgate's flag;
    /// rows always stream, so the choice shows only in `@@workload`).
    #[arg(
        long = "mysql_default_workload",
        alias = "mysql-default-workload",
        default_value = "OLTP"
    )]
    pub mysql_default_workload: String,
    /// How many rows a statement may hold in shardgate's memory at once
    /// (a nested-loop join's left rows, or the joined rows its gate
    /// sorts or groups); beyond it the statement fails (error 1041)
    /// rather than the process. vtgate's flag and default.
    #[arg(
        long = "max_memory_rows",
        alias = "max-memory-rows",
        default_value_t = crate::engine::DEFAULT_MAX_MEMORY_ROWS
    )]
    pub max_memory_rows: usize,
    /// Hold a shard's primary-bound statements (outside transactions)
    /// while its primary changes (`ctl planned-reparent-shard`), and send
    /// them to the new one, rather than fail them; vtgate's flag.
    #[arg(long = "enable_buffer", alias = "enable-buffer", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_buffer: bool,
    /// How long one statement may be held (a Go duration).
    #[arg(
        long = "buffer_window",
        alias = "buffer-window",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub buffer_window: std::time::Duration,
    /// How many statements may be held at once, over all shards; more
    /// fail at once.
    #[arg(long = "buffer_size", alias = "buffer-size", default_value_t = 1000)]
    pub buffer_size: usize,
    /// How long one failover is buffered at most (a Go duration).
    #[arg(
        long = "buffer_max_failover_duration",
        alias = "buffer-max-failover-duration",
        default_value = "20s",
        value_parser = parse_duration
    )]
    pub buffer_max_failover_duration: std::time::Duration,
    /// A shard whose failover ended less than this ago is not buffered
    /// again (a Go duration).
    #[arg(
        long = "buffer_min_time_between_failovers",
        alias = "buffer-min-time-between-failovers",
        default_value = "1m",
        value_parser = parse_duration
    )]
    pub buffer_min_time_between_failovers: std::time::Duration,
    /// Buffer only these, comma-separated: `keyspace` or `keyspace/shard`
    /// (default: every shard).
    #[arg(
        long = "buffer_keyspace_shards",
        alias = "buffer-keyspace-shards",
        value_delimiter = ','
    )]
    pub buffer_keyspace_shards: Vec<String>,
}

impl ServeArgs {
    /// What of the topology this gate serves (`--cells_to_watch`,
    /// `--keyspaces_to_watch`, `--allowed_tablet_types`, `--tablet_filters`).
    pub fn scope(&self) -> Result<crate::topo::Scope, String> {
        let tablet_types = self
            .allowed_tablet_types
            .iter()
            .map(|t| {
                crate::sql::TabletType::parse(t)
                    .ok_or_else(|| format!("--allowed_tablet_types: unknown tablet type {t}"))
            })
            .collect::<Result<_, _>>()?;
        let shards = self
            .tablet_filters
            .iter()
            .map(|f| match f.split_once('|') {
                Some((ks, shard)) => Ok((ks.to_string(), shard.to_string())),
                None => Err(format!("--tablet_filters: '{f}' is not keyspace|shard")),
            })
            .collect::<Result<_, _>>()?;
        Ok(crate::topo::Scope {
            cells: self.cells_to_watch.clone(),
            keyspaces: self.keyspaces_to_watch.clone(),
            tablet_types,
            shards,
        })
    }

    /// The query log's form and filters (`--querylog-*`).
    pub fn query_log_options(&self) -> Result<crate::querylog::Options, String> {
        Ok(crate::querylog::Options {
            json: match self.querylog_format.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return Err(format!(
                        "--querylog-format must be text or json, not {other}"
                    ))
                }
            },
            filter_tag: self.querylog_filter_tag.clone().filter(|t| !t.is_empty()),
            row_threshold: self.querylog_row_threshold,
            errors_only: match self.querylog_mode.as_str() {
                "all" => false,
                "error" => true,
                other => return Err(format!("--querylog-mode must be all or error, not {other}")),
            },
        })
    }

    /// A new session's `@@workload` when not vtgate's default, OLTP.
    pub fn default_workload(&self) -> Result<Option<String>, String> {
        match self.mysql_default_workload.to_ascii_uppercase().as_str() {
            "OLTP" | "UNSPECIFIED" => Ok(None),
            w @ ("OLAP" | "DBA") => Ok(Some(w.to_string())),
            _ => Err(format!(
                "--mysql_default_workload must be one of [OLTP, OLAP, DBA, UNSPECIFIED], not {}",
                self.mysql_default_workload
            )),
        }
    }
}

/// Parses a duration as Vitess's flags take them (Go's syntax): numbers
/// with units `h`, `m`, `s`, `ms`, `us` or `ns`, e.g. `1m30s`; `0` alone.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration (like 30s, 1m30s or 500ms)");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// Flags and commands of `shardgate ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Topology flags.
    #[command(flatten)]
    pub topo: TopoArgs,
    /// MySQL admin user on tablets (init-shard-primary, apply-schema).
    #[arg(long = "dba-user", default_value = "vt_dba", global = true)]
    pub dba_user: String,
    /// How long a command that changes a shard's primary waits for the
    /// shard's lock while another command holds it.
    #[arg(
        long = "lock-timeout",
        alias = "lock_timeout",
        default_value = "45s",
        value_parser = parse_duration,
        global = true
    )]
    pub lock_timeout: std::time::Duration,
    /// Seconds an etcd lock outlives a holder that died (its lease's TTL,
    /// kept alive while the holder runs).
    #[arg(
        long = "topo_etcd_lease_ttl",
        alias = "topo-etcd-lease-ttl",
        default_value_t = 30,
        global = true
    )]
    pub topo_etcd_lease_ttl: u64,
    /// The command.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Topology commands, named after their vtctldclient counterparts.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Validate and store a keyspace's VSchema: a whole document, or one
    /// `ALTER VSCHEMA` statement's change (`--sql`, as vtctldclient's).
    ApplyVschema {
        /// The VSchema JSON file.
        #[arg(
            long = "vschema-file",
            alias = "vschema_file",
            required_unless_present = "sql",
            conflicts_with = "sql"
        )]
        vschema_file: Option<PathBuf>,
        /// An `ALTER VSCHEMA ...` statement to apply to the keyspace.
        #[arg(long)]
        sql: Option<String>,
        /// Keyspace.
        keyspace: String,
    },
    /// Print a keyspace's VSchema.
    GetVschema {
        /// Keyspace.
        keyspace: String,
    },
    /// Store the routing rules, replacing the old ones: `{"rules":
    /// [{"from_table": "t", "to_tables": ["ks.t"]}]}`.
    ApplyRoutingRules {
        /// The rules' JSON.
        #[arg(long, conflicts_with = "rules_file")]
        rules: Option<String>,
        /// A file holding it.
        #[arg(long = "rules-file", alias = "rules_file")]
        rules_file: Option<PathBuf>,
    },
    /// Print the routing rules.
    GetRoutingRules,
    /// Run DDL on the primary of every shard of a keyspace.
    ApplySchema {
        /// File of SQL statements.
        #[arg(long = "sql-file", alias = "sql_file")]
        sql_file: PathBuf,
        /// Keyspace.
        keyspace: String,
    },
    /// Register a tablet (and its keyspace and shard if new).
    AddTablet {
        /// `cell-uid`, e.g. zone1-100.
        #[arg(long)]
        alias: String,
        /// Keyspace.
        #[arg(long)]
        keyspace: String,
        /// Shard, e.g. 0 or -80.
        #[arg(long)]
        shard: String,
        /// primary, replica or rdonly.
        #[arg(long = "type", default_value = "replica")]
        tablet_type: String,
        /// mysqld host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// mysqld port.
        #[arg(long = "mysql-port")]
        mysql_port: u16,
        /// The keyspace is sharded (when it is created here).
        #[arg(long)]
        sharded: bool,
        /// The MySQL database holding the keyspace's data on this mysqld
        /// (default `vt_{keyspace}`), as vttablet's `--init_db_name_override`:
        /// lets several shards share one mysqld.
        #[arg(long = "db-name", alias = "init_db_name_override")]
        db_name: Option<String>,
    },
    /// List tablets: alias, keyspace, shard, type, address (vtctldclient's
    /// GetTablets).
    GetTablets {
        /// Only this keyspace's.
        #[arg(long)]
        keyspace: Option<String>,
        /// Only this shard's (with --keyspace).
        #[arg(long)]
        shard: Option<String>,
    },
    /// Show a shard's record and who holds its lock, as JSON
    /// (vtctldclient's GetShard).
    GetShard {
        /// KEYSPACE/SHARD.
        keyspace_shard: String,
    },
    /// Remove a tablet from the topology (vtctldclient's DeleteTablets).
    DeleteTablet {
        /// `cell-uid`.
        alias: String,
        /// Delete it even if it is its shard's primary (the shard then
        /// takes no writes until a primary is named).
        #[arg(long = "allow-primary", alias = "allow_primary")]
        allow_primary: bool,
    },
    /// Make a tablet the shard's writable primary and point the others at it.
    InitShardPrimary {
        /// KEYSPACE/SHARD.
        keyspace_shard: String,
        /// The new primary's alias.
        alias: String,
    },
    /// Move a shard's primary to one of its replicas without losing a
    /// committed write (vtctldclient's PlannedReparentShard): shardgates
    /// with `--enable_buffer` hold the shard's writes meanwhile.
    PlannedReparentShard {
        /// KEYSPACE/SHARD.
        keyspace_shard: String,
        /// The replica to promote (default: the most caught-up one).
        #[arg(long = "new-primary", alias = "new_primary")]
        new_primary: Option<String>,
        /// A tablet that must not be the primary afterwards (default: the
        /// current primary, when no new one is named).
        #[arg(long = "avoid-primary", alias = "avoid_primary")]
        avoid_primary: Option<String>,
        #[command(flatten)]
        wait: WaitReplicas,
        /// How long transactions under way on the old primary may take to
        /// finish before it is made read-only (shardgates with
        /// `--enable_buffer` hold new work meanwhile).
        #[arg(
            long = "transaction-grace-period",
            alias = "transaction_grace_period",
            default_value = "3s",
            value_parser = parse_duration
        )]
        transaction_grace_period: std::time::Duration,
    },
    /// Set a keyspace's durability policy (vtctldclient's
    /// SetKeyspaceDurabilityPolicy): `semi_sync` makes each primary's
    /// commit wait until a replica has the write, `none` does not.
    SetKeyspaceDurabilityPolicy {
        /// The keyspace.
        keyspace: String,
        /// `none` or `semi_sync`.
        #[arg(long = "durability-policy", alias = "durability_policy")]
        durability_policy: String,
    },
    /// Point a tablet at its shard's primary and wait for it to catch up
    /// (vtctldclient's ReparentTablet): the old primary once it is back
    /// after an emergency reparent.
    ReparentTablet {
        /// The tablet's alias.
        alias: String,
        #[command(flatten)]
        wait: WaitReplicas,
    },
    /// Move a shard's primary away from a dead or unreachable one
    /// (vtctldclient's EmergencyReparentShard): the replicas apply what
    /// they received, the most advanced one becomes the primary, the
    /// others replicate from it.
    EmergencyReparentShard {
        /// KEYSPACE/SHARD.
        keyspace_shard: String,
        /// The replica to promote (default: the most advanced one); one
        /// behind another first catches up with it.
        #[arg(long = "new-primary", alias = "new_primary")]
        new_primary: Option<String>,
        /// Tablets to leave out (comma-separated aliases): not waited
        /// for, not repointed.
        #[arg(
            long = "ignore-replicas",
            alias = "ignore_replicas",
            value_delimiter = ','
        )]
        ignore_replicas: Vec<String>,
        #[command(flatten)]
        wait: WaitReplicas,
    },
}

/// How long a reparent's replicas may take to catch up (vtctldclient's
/// flag, shared by the commands that wait for them).
#[derive(Debug, Args)]
pub struct WaitReplicas {
    /// How long the tablets waited for may take to have what they must
    /// (Go duration syntax): the new primary in a planned reparent, each
    /// replica's relay log in an emergency one, a repointed tablet.
    #[arg(
        long = "wait-replicas-timeout",
        alias = "wait_replicas_timeout",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub wait_replicas_timeout: std::time::Duration,
}

/// `shardgate local up|down`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Where everything lives (logs, data, PID files).
    #[arg(
        long,
        env = "VTDATAROOT",
        default_value = "./vtdataroot",
        global = true
    )]
    pub dataroot: PathBuf,
    /// up or down.
    #[command(subcommand)]
    pub command: LocalCommand,
}

/// Local cluster commands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start (or resume) the local cluster and shardgate.
    Up,
    /// Stop everything `up` started.
    Down {
        /// Also delete the data root.
        #[arg(long)]
        purge: bool,
    },
}

/// `shardgate vschema check FILE...`.
#[derive(Debug, Args)]
pub struct VschemaArgs {
    /// The command.
    #[command(subcommand)]
    pub command: VschemaCommand,
}

/// VSchema commands.
#[derive(Debug, Subcommand)]
pub enum VschemaCommand {
    /// Validate VSchema files; exits non-zero on the first bad one.
    Check {
        /// Files (keyspace VSchema JSON).
        files: Vec<PathBuf>,
    },
}

/// A tablet type as vtgate's flags write it (any case).
fn parse_tablet_type(s: &str) -> Result<crate::sql::TabletType, String> {
    crate::sql::TabletType::parse(s).ok_or_else(|| format!("unknown tablet type '{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn serve_args(line: &str) -> ServeArgs {
        let args = std::iter::once("shardgate").chain(line.split_whitespace());
        match Cli::try_parse_from(args).unwrap().command {
            Some(Command::Serve(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serving_flags_read_into_their_settings() {
        let a = serve_args(
            "serve --keyspaces_to_watch a,b --allowed_tablet_types=replica,RDONLY \
             --tablet_filters customer|-80,commerce|0 --querylog-format json \
             --querylog-mode=error --mysql_default_workload olap --enable_buffer=true \
             --no_scatter=false --proxy_protocol",
        );
        let scope = a.scope().unwrap();
        assert_eq!(scope.keyspaces, ["a", "b"]);
        use crate::sql::TabletType;
        assert_eq!(
            scope.tablet_types,
            [TabletType::Replica, TabletType::Rdonly]
        );
        assert_eq!(
            scope.shards,
            [
                ("customer".to_string(), "-80".to_string()),
                ("commerce".to_string(), "0".to_string())
            ]
        );
        let log = a.query_log_options().unwrap();
        assert!(log.json && log.errors_only);
        assert_eq!(a.default_workload().unwrap().as_deref(), Some("OLAP"));
        assert!(a.enable_buffer && !a.no_scatter && a.proxy_protocol);
        let bad = serve_args(
            "serve --allowed_tablet_types spare --tablet_filters customer \
             --querylog-format xml --mysql_default_workload batch",
        );
        assert!(bad.scope().unwrap_err().contains("spare"));
        assert!(bad.query_log_options().unwrap_err().contains("xml"));
        assert!(bad.default_workload().unwrap_err().contains("batch"));
        let bad = serve_args("serve --tablet_filters customer");
        assert!(bad.scope().unwrap_err().contains("keyspace|shard"));
    }

    #[test]
    fn durations_parse_as_vitess_flags_take_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "30", "s", "3x", "1m30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
