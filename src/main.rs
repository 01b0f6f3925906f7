//! The `shardgate` binary: serve (default), ctl, local, vschema.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use shardgate::admin::{self, DbaCreds};
use shardgate::backend::BackendConfig;
use shardgate::config::{
    Cli, Command, CtlArgs, CtlCommand, LocalArgs, LocalCommand, ServeArgs, TopoArgs, VschemaCommand,
};
use shardgate::frontend::auth::Auth;
use shardgate::local::{Cluster, ClusterSpec};
use shardgate::server::{self, ServeOptions};
use shardgate::topo::lock::LockOptions;
use shardgate::topo::store::TopoStore;
use shardgate::topo::TabletRecord;
use shardgate::vschema::KeyspaceVSchema;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    // vtgate's command lines as they are: Go's flag syntax, and vtgate
    // flags with nothing to act on here taken out (named below).
    let vtgate = shardgate::config::vtgate::rewrite(std::env::args_os());
    let cli = Cli::parse_from(&vtgate.args);
    let serve_args = match &cli.command {
        Some(Command::Serve(a)) => Some(a),
        None => Some(&cli.serve),
        _ => None,
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log_file = serve_args.and_then(|a| a.log_dir.as_ref()).map(|dir| {
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("shardgate.log"))
            })
            .map_err(|e| format!("--log_dir {}: {e}", dir.display()))
    });
    match log_file {
        Some(Err(e)) => {
            eprintln!("shardgate: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(file)) => {
            use tracing_subscriber::fmt::writer::MakeWriterExt;
            let file = std::sync::Mutex::new(file);
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr.and(file))
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    for line in vtgate.report() {
        tracing::warn!("{line}");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = serve_args
        .and_then(|a| a.worker_threads)
        .unwrap_or((cores / 2).max(2).min(cores))
        .max(1);
    // Each worker is an event loop of its own: a current-thread runtime
    // (no cross-thread task queues or wakeups per I/O event) that accepted
    // clients are dealt to in turn. The first is the runtime everything
    // else runs on too. Generous stacks: planning walks statement trees
    // recursively.
    let stack = 16 << 20;
    let more_loops = if serve_args.is_some() { workers - 1 } else { 0 };
    let busy_poll = serve_args
        .map(|a| match a.busy_poll_us {
            Some(us) => std::time::Duration::from_micros(us),
            None if shardgate::spin::cpu_quota_limited() => {
                tracing::info!("a cgroup CPU quota caps this process: event loops do not busy-poll (--busy-poll-us sets it)");
                std::time::Duration::ZERO
            }
            None => shardgate::spin::DEFAULT_WINDOW,
        })
        .filter(|d| !d.is_zero());
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = move || -> Result<(), AnyError> {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all().thread_stack_size(stack);
        let rt = shardgate::spin::runtime(b, busy_poll, &polls)
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let loops = event_loops(more_loops, stack, busy_poll, &polls)?;
        rt.block_on(async move {
            match cli.command {
                None => serve(cli.serve, loops, polls).await,
                Some(Command::Serve(args)) => serve(args, loops, polls).await,
                Some(Command::Ctl(args)) => ctl(args).await,
                Some(Command::Local(args)) => local(args).await,
                Some(Command::Vschema(args)) => match args.command {
                    VschemaCommand::Check { files } => vschema_check(&files),
                },
            }
        })
    };
    let result = std::thread::Builder::new()
        .name("shardgate-main".into())
        .stack_size(stack)
        .spawn(run)
        .map_err(|e| AnyError::from(format!("cannot start the main thread: {e}")))
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err("the main thread panicked".into()))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts `n` more event loops, each a current-thread runtime on a thread
/// of its own that runs until the process ends.
fn event_loops(
    n: usize,
    stack: usize,
    busy_poll: Option<std::time::Duration>,
    polls: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Vec<tokio::runtime::Handle>, AnyError> {
    (1..=n)
        .map(|i| {
            let (tx, rx) = std::sync::mpsc::channel();
            let polls = polls.clone();
            std::thread::Builder::new()
                .name(format!("sg-loop-{i}"))
                .stack_size(stack)
                .spawn(move || {
                    let mut b = tokio::runtime::Builder::new_current_thread();
                    b.enable_all();
                    match shardgate::spin::runtime(b, busy_poll, &polls) {
                        Ok(rt) => {
                            let _ = tx.send(Ok(rt.handle().clone()));
                            rt.block_on(std::future::pending::<()>())
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| format!("cannot start event loop {i}: {e}"))?;
            rx.recv()
                .map_err(|_| format!("event loop {i} ended at its start"))?
                .map_err(|e| AnyError::from(format!("cannot start event loop {i}: {e}")))
        })
        .collect()
}

async fn serve(
    args: ServeArgs,
    loops: Vec<tokio::runtime::Handle>,
    busy_polls: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), AnyError> {
    let ip: IpAddr = args.mysql_server_bind_address.parse().map_err(|e| {
        format!(
            "--mysql-server-bind-address {}: {e}",
            args.mysql_server_bind_address
        )
    })?;
    let auth = match args.mysql_auth_server_impl.as_str() {
        "none" => Auth::None,
        "static" => match (
            &args.mysql_auth_server_static_file,
            &args.mysql_auth_server_static_string,
        ) {
            (Some(file), _) => Auth::load_static(file)?,
            (None, Some(json)) => Auth::parse_static(json.as_bytes())
                .map_err(|e| format!("--mysql_auth_server_static_string: {e}"))?,
            (None, None) => return Err(
                "--mysql-auth-server-impl static needs --mysql-auth-server-static-file (or --mysql_auth_server_static_string)".into(),
            ),
        },
        // The certificate is checked against the CA; without one there is
        // nothing to trust (vtgate does not register it then either).
        "clientcert" if args.mysql_server_ssl_ca.is_none() => {
            return Err("--mysql-auth-server-impl clientcert needs --mysql_server_ssl_ca".into())
        }
        "clientcert" => Auth::ClientCert,
        other => {
            return Err(format!(
                "--mysql-auth-server-impl: unknown value '{other}' (none, static or clientcert)"
            )
            .into())
        }
    };
    let tls = client_tls(&args)?;
    let scope = args.scope()?;
    let opts = ServeOptions {
        mysql_addr: SocketAddr::new(ip, args.mysql_server_port),
        socket_path: args.mysql_server_socket_path.clone(),
        web_addr: Some(SocketAddr::new(ip, args.port)),
        topo_impl: args.topo.topo_implementation,
        topo_address: args.topo.topo_global_server_address.clone(),
        topo_root: args.topo.topo_global_root.clone(),
        scope,
        backend: BackendConfig {
            user: args.db_app_user.clone(),
            password: args.db_app_password.clone(),
            pool_max: args.pool_size,
            local_socket: args.tablet_local_socket,
            lean: args.lean_connections,
            sticky: args.sticky_connections,
            shared: args.shared_read_connections,
            tablet_cap: args.tablet_connections,
            wait: std::time::Duration::from_millis(args.tablet_connection_wait_ms),
            ..BackendConfig::default()
        },
        auth,
        auth_file: (args.mysql_auth_server_impl == "static")
            .then(|| args.mysql_auth_server_static_file.clone())
            .flatten(),
        auth_reload_interval: nonzero(args.mysql_auth_static_reload_interval),
        server_version: args.mysql_server_version.clone(),
        transaction_mode: args.transaction_mode,
        twopc_abandon_age: args.twopc_abandon_age,
        transaction_timeout: (!args.queryserver_config_transaction_timeout.is_zero())
            .then_some(args.queryserver_config_transaction_timeout),
        max_memory_rows: args.max_memory_rows,
        allow_kill: args.allow_kill_statement,
        no_scatter: args.no_scatter,
        default_tablet_type: args.default_tablet_type,
        query_log: args.log_queries_to_file.clone(),
        query_log_options: args.query_log_options()?,
        tls,
        vschema_ddl_users: shardgate::vschema::ddl::Authorized::parse(
            &args.vschema_ddl_authorized_users,
        ),
        query_timeout: match args.query_timeout {
            0 => nonzero(args.mysql_server_query_timeout),
            ms => Some(std::time::Duration::from_millis(ms)),
        },
        proxy_protocol: args.proxy_protocol,
        min_serving: args.min_number_serving_vttablets,
        max_payload_size: (args.max_payload_size > 0).then_some(args.max_payload_size),
        direct_ddl: args.enable_direct_ddl,
        read_timeout: nonzero(args.mysql_server_read_timeout),
        write_timeout: nonzero(args.mysql_server_write_timeout),
        default_workload: args.default_workload()?,
        schema_tracking: args.schema_change_signal,
        health: (args.health_check_interval_ms > 0).then(|| shardgate::gateway::health::Config {
            interval: std::time::Duration::from_millis(args.health_check_interval_ms),
            low_lag: args.discovery_low_replication_lag,
            high_lag: args.discovery_high_replication_lag_minimum_serving,
            login: shardgate::topo::schema::Login {
                user: args.db_app_user.clone(),
                password: args.db_app_password.clone(),
            },
        }),
        buffer: shardgate::gateway::buffer::Config {
            enabled: args.enable_buffer,
            window: args.buffer_window,
            size: args.buffer_size,
            max_failover_duration: args.buffer_max_failover_duration,
            min_time_between_failovers: args.buffer_min_time_between_failovers,
            keyspace_shards: args.buffer_keyspace_shards.clone(),
        },
        loops,
        busy_polls,
    };
    let running = server::start(opts).await?;
    if let Some(path) = &args.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("--pid_file {}: {e}", path.display()))?;
    }
    println!("shardgate: MySQL protocol on {}", running.mysql_addr);
    tokio::spawn(reload_on_sighup(running.ctx.clone()));
    shutdown_signal().await;
    running.stop_accepting();
    tracing::info!(period = ?args.lameduck_period, "lameduck: no new clients; then shutting down");
    tokio::time::sleep(args.lameduck_period).await;
    tracing::info!("shutting down");
    running.shutdown().await;
    if let Some(path) = &args.pid_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Client TLS from the `--mysql_server_ssl_*` flags (None without a
/// certificate). A half-given setup (a key without its certificate,
/// secure transport required without either) stops the start rather than
/// serving clients in the clear.
fn client_tls(
    args: &ServeArgs,
) -> Result<Option<std::sync::Arc<shardgate::frontend::tls::Tls>>, AnyError> {
    use shardgate::frontend::tls::{Tls, TlsFiles};
    let (cert, key) = match (&args.mysql_server_ssl_cert, &args.mysql_server_ssl_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) if args.mysql_server_require_secure_transport => {
            return Err("--mysql_server_require_secure_transport needs --mysql_server_ssl_cert and --mysql_server_ssl_key".into())
        }
        (None, None) => return Ok(None),
        _ => {
            return Err(
                "--mysql_server_ssl_cert and --mysql_server_ssl_key go together".into(),
            )
        }
    };
    let files = TlsFiles {
        cert,
        key,
        ca: args.mysql_server_ssl_ca.clone(),
        crl: args.mysql_server_ssl_crl.clone(),
        server_ca: args.mysql_server_ssl_server_ca.clone(),
        min_version: args.mysql_server_tls_min_version.clone(),
    };
    let tls = Tls::load(files, args.mysql_server_require_secure_transport)?;
    Ok(Some(std::sync::Arc::new(tls)))
}

/// Reads the TLS files and the static auth file again on each SIGHUP, as
/// vtgate does: rotated certificates and passwords reach new connections
/// without a restart. A file that does not load leaves the old in force.
async fn reload_on_sighup(ctx: std::sync::Arc<server::ServerCtx>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &ctx.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS configuration not reloaded; the old one serves")
                }
            }
        }
        ctx.auth.reload_logged();
    }
}

/// A duration flag's value, where 0 means off.
fn nonzero(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

async fn store(topo: &TopoArgs) -> Result<TopoStore, AnyError> {
    Ok(TopoStore::connect(
        topo.topo_implementation,
        &topo.topo_global_server_address,
        &topo.topo_global_root,
    )
    .await?)
}

async fn ctl(args: CtlArgs) -> Result<(), AnyError> {
    let store = store(&args.topo).await?;
    let creds = DbaCreds {
        user: args.dba_user.clone(),
        ..DbaCreds::default()
    };
    let locking = LockOptions {
        timeout: args.lock_timeout,
        lease_ttl: std::time::Duration::from_secs(args.topo_etcd_lease_ttl),
    };
    match args.command {
        CtlCommand::ApplyVschema {
            vschema_file,
            sql,
            keyspace,
        } => {
            if let Some(sql) = sql {
                let change = shardgate::vschema::ddl::parse(&sql)
                    .map_err(|e| format!("ALTER VSCHEMA: syntax error {e}"))?;
                if let Some(other) = change.keyspace().filter(|k| *k != keyspace) {
                    return Err(
                        format!("the statement names keyspace {other}, not {keyspace}").into(),
                    );
                }
                admin::alter_vschema(&store, &[], &keyspace, &change).await?;
            } else if let Some(file) = vschema_file {
                let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                admin::apply_vschema(&store, &keyspace, &text).await?;
            }
            println!("VSchema of keyspace {keyspace} applied");
        }
        CtlCommand::GetVschema { keyspace } => match admin::get_vschema(&store, &keyspace).await? {
            Some(v) => println!("{v}"),
            None => return Err(format!("keyspace {keyspace} has no VSchema").into()),
        },
        CtlCommand::ApplyRoutingRules { rules, rules_file } => {
            let text = match (rules, rules_file) {
                (Some(r), _) => r.into_bytes(),
                (None, Some(f)) => {
                    std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?
                }
                (None, None) => return Err("--rules or --rules-file is required".into()),
            };
            let rules = admin::apply_routing_rules(&store, &text).await?;
            println!("{} routing rule(s) applied", rules.rules.len());
        }
        CtlCommand::GetRoutingRules => println!("{}", admin::get_routing_rules(&store).await?),
        CtlCommand::ApplySchema { sql_file, keyspace } => {
            let sql = std::fs::read_to_string(&sql_file)
                .map_err(|e| format!("{}: {e}", sql_file.display()))?;
            let n = admin::apply_schema(&store, &keyspace, &sql, &creds).await?;
            println!("schema applied to {n} shard(s) of {keyspace}");
        }
        CtlCommand::AddTablet {
            alias,
            keyspace,
            shard,
            tablet_type,
            host,
            mysql_port,
            sharded,
            db_name,
        } => {
            let rec = TabletRecord {
                alias: alias.clone(),
                hostname: host,
                mysql_port,
                keyspace,
                shard,
                tablet_type,
                db_name,
            };
            admin::add_tablet(&store, &rec, sharded).await?;
            println!("tablet {alias} added");
        }
        CtlCommand::GetTablets { keyspace, shard } => {
            for line in admin::get_tablets(&store, keyspace.as_deref(), shard.as_deref()).await? {
                println!("{line}");
            }
        }
        CtlCommand::GetShard { keyspace_shard } => {
            let (ks, shard) = split_shard(&keyspace_shard)?;
            println!("{}", admin::get_shard(&store, ks, shard).await?);
        }
        CtlCommand::DeleteTablet {
            alias,
            allow_primary,
        } => {
            admin::delete_tablet(&store, &alias, allow_primary, &locking).await?;
            println!("tablet {alias} deleted");
        }
        CtlCommand::InitShardPrimary {
            keyspace_shard,
            alias,
        } => {
            let (ks, shard) = split_shard(&keyspace_shard)?;
            admin::init_shard_primary(&store, ks, shard, &alias, &creds, &locking).await?;
            println!("{alias} is now the primary of {ks}/{shard}");
        }
        CtlCommand::PlannedReparentShard {
            keyspace_shard,
            new_primary,
            avoid_primary,
            wait,
            transaction_grace_period,
        } => {
            let (ks, shard) = split_shard(&keyspace_shard)?;
            let how = admin::Reparent {
                new_primary,
                avoid: avoid_primary,
                wait_replicas_timeout: wait.wait_replicas_timeout,
                transaction_grace_period,
                lock: locking,
            };
            let say = |m: &str| println!("[reparent] {m}");
            let (old, new) =
                admin::planned_reparent_shard(&store, ks, shard, &how, &creds, say).await?;
            if old != new {
                println!("{new} is now the primary of {ks}/{shard} (was {old})");
            }
        }
        CtlCommand::SetKeyspaceDurabilityPolicy {
            keyspace,
            durability_policy,
        } => {
            let say = |m: &str| println!("[durability] {m}");
            admin::set_durability_policy(
                &store,
                &keyspace,
                &durability_policy,
                &creds,
                &locking,
                say,
            )
            .await?;
            println!("keyspace {keyspace}: durability policy {durability_policy}");
        }
        CtlCommand::ReparentTablet { alias, wait } => {
            let say = |m: &str| println!("[reparent tablet] {m}");
            let primary = admin::reparent_tablet(
                &store,
                &alias,
                wait.wait_replicas_timeout,
                &creds,
                &locking,
                say,
            )
            .await?;
            println!("{alias} replicates from {primary}, caught up");
        }
        CtlCommand::EmergencyReparentShard {
            keyspace_shard,
            new_primary,
            ignore_replicas,
            wait,
        } => {
            let (ks, shard) = split_shard(&keyspace_shard)?;
            let how = admin::Emergency {
                new_primary,
                ignore_replicas,
                wait_replicas_timeout: wait.wait_replicas_timeout,
                lock: locking,
            };
            let say = |m: &str| println!("[emergency reparent] {m}");
            let (old, new) =
                admin::emergency_reparent_shard(&store, ks, shard, &how, &creds, say).await?;
            println!("{new} is now the primary of {ks}/{shard} (was {old})");
        }
    }
    Ok(())
}

/// `KEYSPACE/SHARD` as its two parts.
fn split_shard(keyspace_shard: &str) -> Result<(&str, &str), &'static str> {
    keyspace_shard
        .split_once('/')
        .ok_or("expected KEYSPACE/SHARD")
}

async fn local(args: LocalArgs) -> Result<(), AnyError> {
    let say = |m: &str| println!("[local] {m}");
    match args.command {
        LocalCommand::Up => {
            let spec = ClusterSpec::example(args.dataroot.clone());
            let cluster = Cluster::up(spec, false, say).await?;
            drop(cluster);
            println!();
            println!(
                "The local cluster is serving (data, logs and PID files in {}).",
                args.dataroot.display()
            );
            println!("  keyspaces: commerce (unsharded), customer (sharded: -80, 80-)");
            println!("  tablets:   mysql -h127.0.0.1 -P17100 -uvt_dba   (17101, 17102, 17300, 17301, 17400, 17401)");
            println!("  web:       http://127.0.0.1:15001/debug/status   (Prometheus: /metrics)");
            println!();
            println!("Connect with:");
            println!("  mysql -h127.0.0.1 -P15306 commerce");
            println!("Stop with:");
            println!("  shardgate local down [--purge]");
            Ok(())
        }
        LocalCommand::Down { purge } => Ok(Cluster::down(&args.dataroot, purge, say)?),
    }
}

fn vschema_check(files: &[std::path::PathBuf]) -> Result<(), AnyError> {
    if files.is_empty() {
        return Err("no files given".into());
    }
    for f in files {
        let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let ks = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        KeyspaceVSchema::from_json(&ks, &text).map_err(|e| format!("{}: {e}", f.display()))?;
        println!("{}: ok", f.display());
    }
    Ok(())
}
