//! shardgate: a MySQL wire-protocol sharding proxy that speaks Vitess's VSchema.
//!
//! # Layout, in the order a statement flows
//!
//! - [`frontend`]: server side of the MySQL protocol (handshake, auth, commands,
//!   result encoding; CLIENT_DEPRECATE_EOF and MariaDB's cached column
//!   definitions). Hands statement text to the session; never routes.
//!   Before the handshake, [`frontend::proxy`] reads a balancer's PROXY
//!   header and [`frontend::tls`] turns a client's connection into a TLS
//!   session (and, for `clientcert`, names its user). The frontend's
//!   `infile` stage answers LOAD DATA LOCAL INFILE: it asks the client for
//!   the file and runs it through the session as batches of INSERTs.
//! - [`session`]: one client's state: target, autocommit, transaction and
//!   its savepoints, settings, prepared statements (run prepared on the
//!   tablet when they go whole to one; SQL's `PREPARE` kept as text),
//!   what LAST_INSERT_ID() and ROW_COUNT() say; its backend connections
//!   are [`executor::ShardConns`].
//! - [`sql`]: a small MySQL lexer: splitting multi-statements, classifying
//!   statements, placeholders and the few rewrites a proxy must do
//!   (executable comments opened as MariaDB runs them, MariaDB's LOCK IN
//!   SHARE MODE); [`sql::raw`] carries a statement's bytes that are not
//!   UTF-8 from the client to the tablet unchanged; [`sql::load`] reads
//!   LOAD DATA's options and splits its file into records;
//!   [`sql::prepared`] reads SQL's PREPARE, EXECUTE and DEALLOCATE.
//! - [`planner`]: pure (statement, snapshot, target) → [`planner::Plan`];
//!   a sharded keyspace's statements are parsed with MySQL's dialect plus
//!   MariaDB's expression forms (`!x`, SOUNDS LIKE, compound INTERVAL
//!   units, CAST to a character set), and the forms it still lacks
//!   (INSERT ... SET, UPDATE IGNORE, infix MOD) are rewritten first;
//!   [`planner::place`] first decides which keyspace plans a statement
//!   (qualifiers, global routing, routing rules, reference sources);
//!   then which tables, subqueries, derived tables and UNION parts share
//!   one route (colocation; a WITH is inlined first), [`planner::join`]'s
//!   nested loop for tables that do not (and semi-joins for a correlated
//!   EXISTS or value), and [`planner::pullout`]'s subqueries, derived
//!   tables and UNION parts that run first (and the rows an UPDATE or
//!   DELETE across shards finds by primary key first, and a recursive
//!   WITH's rounds); unqualified names are given their tables where a
//!   statement is split by table; [`planner::keys`] answers VEXPLAIN KEYS.
//! - [`engine`]: executes plans; reaches shards only through [`engine::VCursor`];
//!   merges several shards' row streams as they arrive, reading each row
//!   where its packet lies ([`engine::row`]: text rows, or the binary rows
//!   of a prepared statement's scatter, which the tablets run prepared when
//!   every column comes as a length-coded string; an unordered scatter
//!   passes the rows a read brought in on in runs; [`engine::gate`] for
//!   ordering, grouping, aggregation and the rest of the cross-shard work;
//!   the engine's `lookup` reads and writes lookup vindexes' tables).
//! - [`executor`]: the real `VCursor`: resolves targets, picks connections,
//!   streams results, wraps errors with their target;
//!   [`executor::verdicts`] remembers what a session SET did on a tablet,
//!   so a driver's connect-time SETs cost no round trip the next time;
//!   [`executor::deadlock`] finds cycles of lock waits across shards,
//!   which no tablet sees, and fails the youngest transaction as MySQL
//!   fails a deadlock's victim; [`executor::interrupt`] stops a
//!   session's statement from outside it (KILL, the query timeout) by
//!   killing its queries on the tablets; [`executor::twopc`] commits a
//!   transaction's parts on several shards atomically (XA transactions,
//!   a decision in the topology store, a resolver for what a failure
//!   left).
//! - [`gateway`]: picks the tablet of the wanted type for a shard, the
//!   fittest first by [`gateway::health`]'s checks (a ping of each
//!   primary, each replica's replication lag), as vtgate's minimum of
//!   serving tablets and lag bounds say; [`gateway::buffer`] holds
//!   statements a demoted primary refused until the topology names its
//!   successor.
//! - [`backend`]: [`backend::lean`] tablet connections that carry every
//!   session's statements (results forwarded undecoded when the client
//!   takes them as they are, decoded for the engine's merges; MariaDB's
//!   cached column definitions, so a repeated execution comes without
//!   them), pooled per tablet and tagged with the session settings they
//!   carry; mysql_async
//!   pools, reconciled with the snapshot, as the fallback; [`backend::mux`]
//!   shares pipelined connections between the stateless reads of many
//!   sessions (a read that finds its tablet idle runs on its own);
//!   [`backend::budget`] bounds the connections to each tablet and queues
//!   the statements beyond the bound; [`backend::defaults`] keeps, for a
//!   second, a tablet's answer to what connectors ask at every connect.
//! - [`topo`]: the topology store (etcd or files), the immutable [`topo::Snapshot`]
//!   and the watcher that swaps it in, keeping what the gate's
//!   [`topo::Scope`] watches (cells, keyspaces, tablet types, shards);
//!   [`topo::schema`] learns the sharded
//!   tables' columns, their types and primary keys from the tablets into
//!   it; [`topo::lock`] keeps commands that change a shard's primary
//!   apart.
//! - [`vschema`]: Vitess VSchema model and validation, and the vindex
//!   functions (bit-exact with Vitess, incl. the Unicode collation keys);
//!   [`vschema::lookup`] describes lookup vindexes, which the engine reads
//!   to route and keeps in step with their owner tables' writes;
//!   declared column types tell the planner which keys need no weight
//!   strings (and, through `planner::derive`, which string expressions,
//!   derived tables' and UNIONs' columns have a known collation).
//! - [`collation`]: MariaDB's string order in the collations the gate
//!   compares itself (`utf8mb4_general_ci`, `_bin`, `latin1_swedish_ci`,
//!   `binary`).
//! - [`admin`]: `shardgate ctl ...` commands that write the topology and
//!   move a shard's primary (`planned-reparent-shard`, and
//!   `emergency-reparent-shard` away from a dead one), with a keyspace's
//!   durability policy (`semi_sync`).
//! - [`local`]: the local cluster launcher (etcd, MariaDB tablets, shardgate),
//!   shared with the integration-test harness.
//! - [`stats`]: what the statement path counts for the web port, under
//!   vtgate's metric names (each command's latency and errors by target).
//! - [`querylog`]: vtgate's query log file (`--log_queries_to_file`), a
//!   line per client statement, written off the statement path.
//! - [`web`]: the HTTP port (`/metrics` for Prometheus, health and debug
//!   pages).
//! - [`heap`]: hands the allocator's free pages back to the kernel after
//!   a large client command (a bulk INSERT's parse and split).
//! - [`spin`]: an event loop's short busy polling after each client command
//!   (`--busy-poll-us`), while it can have a core without waiting for it.
//! - [`recent`]: tablets' answers kept for a while (SET verdicts, session
//!   defaults), so drivers' connect-time statements skip the round trip.
//! - [`config`]: command-line flags ([`config::vtgate`] takes vtgate's
//!   command lines as they are); [`error`]: the one place errors become
//!   MySQL error codes; [`fasthash`]: the hash of the statement path's maps.

pub mod admin;
pub mod backend;
pub mod collation;
pub mod config;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fasthash;
pub mod frontend;
pub mod gateway;
pub mod heap;
pub mod local;
pub mod planner;
pub mod querylog;
pub mod recent;
pub mod server;
pub mod session;
pub mod spin;
pub mod sql;
pub mod stats;
pub mod topo;
pub mod vschema;
pub mod web;
