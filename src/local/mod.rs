//! The local cluster launcher: etcd, MariaDB tablets with GTID replication,
//! the topology and shardgate itself, under one data root. `shardgate local
//! up` runs it detached; the integration tests run the same code with free
//! ports and stop what it started.

pub mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::OptsBuilder;

use crate::admin::{self, DbaCreds};
use crate::topo::store::{TopoImpl, TopoStore};
use crate::topo::TabletRecord;
pub use process::Proc;

/// Errors bringing the cluster up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A server did not become ready.
    #[error("{0} did not become ready in time; see its log at {1}")]
    NotReady(String, String),
    /// Topology or tablet administration failed.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// A tablet rejected setup SQL.
    #[error("tablet {0}: {1}")]
    Mysql(String, mysql_async::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

/// One tablet of the cluster.
#[derive(Debug, Clone)]
pub struct TabletSpec {
    /// Tablet uid (alias is `{cell}-{uid}`).
    pub uid: u32,
    /// Keyspace.
    pub keyspace: String,
    /// Shard.
    pub shard: String,
    /// PRIMARY, REPLICA or RDONLY.
    pub tablet_type: String,
    /// mysqld port.
    pub port: u16,
}

/// The shape of a local cluster and where it runs.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Data root.
    pub dataroot: PathBuf,
    /// Cell name.
    pub cell: String,
    /// etcd client port.
    pub etcd_port: u16,
    /// etcd peer port.
    pub etcd_peer_port: u16,
    /// Tablets.
    pub tablets: Vec<TabletSpec>,
    /// Keyspaces: (name, sharded, VSchema JSON, schema SQL).
    pub keyspaces: Vec<(String, bool, String, String)>,
    /// shardgate's MySQL port (None: do not start shardgate).
    pub shardgate_port: Option<u16>,
    /// shardgate's web port.
    pub shardgate_web_port: u16,
    /// The shardgate binary to run.
    pub shardgate_bin: PathBuf,
    /// Extra flags for shardgate.
    pub shardgate_args: Vec<String>,
}

/// The VSchemas and schemas the local cluster starts with.
pub const COMMERCE_VSCHEMA: &str = include_str!("../../vschema/commerce.json");
/// See [`COMMERCE_VSCHEMA`].
pub const CUSTOMER_VSCHEMA: &str = include_str!("../../vschema/customer.json");
/// See [`COMMERCE_VSCHEMA`].
pub const COMMERCE_SCHEMA: &str = include_str!("../../vschema/commerce.sql");
/// See [`COMMERCE_VSCHEMA`].
pub const CUSTOMER_SCHEMA: &str = include_str!("../../vschema/customer.sql");

impl ClusterSpec {
    /// Vitess's local example: commerce (unsharded, 100 primary, 101
    /// replica, 102 rdonly) and customer (-80: 300/301, 80-: 400/401),
    /// mysqld of tablet uid N on port 17000+N.
    /// Its shardgate buffers failovers, so that `ctl
    /// planned-reparent-shard` costs its clients no error.
    pub fn example(dataroot: PathBuf) -> Self {
        let mut spec = ClusterSpec::example_with_ports(
            dataroot,
            |uid| 17000 + uid as u16,
            2379,
            2380,
            Some(15306),
            15001,
        );
        spec.shardgate_args.push("--enable_buffer".into());
        spec
    }

    /// The example shape with ports chosen by the caller (tests use free ports).
    pub fn example_with_ports(
        dataroot: PathBuf,
        port_of: impl Fn(u32) -> u16,
        etcd_port: u16,
        etcd_peer_port: u16,
        shardgate_port: Option<u16>,
        web_port: u16,
    ) -> Self {
        let t = |uid: u32, ks: &str, shard: &str, ty: &str| TabletSpec {
            uid,
            keyspace: ks.into(),
            shard: shard.into(),
            tablet_type: ty.into(),
            port: port_of(uid),
        };
        ClusterSpec {
            dataroot,
            cell: "zone1".into(),
            etcd_port,
            etcd_peer_port,
            tablets: vec![
                t(100, "commerce", "0", "PRIMARY"),
                t(101, "commerce", "0", "REPLICA"),
                t(102, "commerce", "0", "RDONLY"),
                t(300, "customer", "-80", "PRIMARY"),
                t(301, "customer", "-80", "REPLICA"),
                t(400, "customer", "80-", "PRIMARY"),
                t(401, "customer", "80-", "REPLICA"),
            ],
            keyspaces: vec![
                (
                    "commerce".into(),
                    false,
                    COMMERCE_VSCHEMA.into(),
                    COMMERCE_SCHEMA.into(),
                ),
                (
                    "customer".into(),
                    true,
                    CUSTOMER_VSCHEMA.into(),
                    CUSTOMER_SCHEMA.into(),
                ),
            ],
            shardgate_port,
            shardgate_web_port: web_port,
            shardgate_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("shardgate")),
            shardgate_args: vec![],
        }
    }

    /// etcd address for topology flags.
    pub fn etcd_addr(&self) -> String {
        format!("127.0.0.1:{}", self.etcd_port)
    }

    /// Where a tablet's mysqld keeps its data, socket and error log.
    pub fn tablet_dir(&self, uid: u32) -> PathBuf {
        self.dataroot.join(format!("vt_{uid:010}"))
    }
}

/// Everything a running cluster is made of.
pub struct Cluster {
    /// Its spec.
    pub spec: ClusterSpec,
    /// The processes, in start order.
    pub procs: Vec<Proc>,
    /// Stop the processes on drop (tests) or leave them running (`local up`).
    pub stop_on_drop: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            for p in self.procs.iter_mut().rev() {
                p.stop(Duration::from_secs(20));
            }
        }
    }
}

/// A free TCP port on loopback for a server the test harnesses start (the
/// ports of `local up` are fixed). Picked below the kernel's ephemeral
/// range (32768 and up here): a port the kernel hands out is free only
/// until the next outgoing connection takes it, and the servers bind
/// theirs later. Each process starts at its own place in 20000..32000, so
/// harnesses running side by side rarely meet.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let n = next.get_or_insert_with(|| (std::process::id().wrapping_mul(7_919)) % SPAN);
    loop {
        *n = (*n + 1) % SPAN;
        let p = (LOW + *n) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Starts an etcd member on loopback (or finds it running) and waits for it.
pub async fn start_etcd(dir: &Path, client_port: u16, peer_port: u16) -> Result<Proc, LocalError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let pidfile = dir.join("etcd.pid");
    if let Some(p) = Proc::running(&pidfile, "etcd") {
        return Ok(p);
    }
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let args: Vec<String> = vec![
        "--name".into(),
        "shardgate".into(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--listen-client-urls".into(),
        client.clone(),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
        "--initial-cluster".into(),
        format!("shardgate={peer}"),
    ];
    let log = dir.join("etcd.log");
    let p = Proc::spawn("etcd", &args, &log, &pidfile)?;
    let addr = format!("127.0.0.1:{client_port}");
    wait_until(Duration::from_secs(20), "etcd", &log, || async {
        match TopoStore::connect(TopoImpl::Etcd2, &addr, "/probe").await {
            Ok(s) => s.get("x").await.is_ok(),
            Err(_) => false,
        }
    })
    .await?;
    Ok(p)
}

async fn wait_until<F, Fut>(
    limit: Duration,
    what: &str,
    log: &Path,
    mut probe: F,
) -> Result<(), LocalError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LocalError::NotReady(
        what.to_string(),
        log.display().to_string(),
    ))
}

/// Writes the option file, initializes the datadir if new, starts mariadbd
/// (or finds it running) and waits until it answers.
pub async fn start_mariadb(dir: &Path, port: u16, server_id: u32) -> Result<Proc, LocalError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    // Each tablet keeps its temporary tables under its own directory: a
    // CI run once saw a tablet fail to delete its own temporary table in
    // the shared `/tmp` (ENOENT), and a private directory leaves no other
    // process a way to touch them.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let cnf = dir.join("my.cnf");
    let d = dir.display();
    // mariadbd refuses to run as root unless told to; as anyone else it runs as itself.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root { "user=root\n" } else { "" };
    let conf = format!(
        "[mariadbd]\n{user}datadir={d}/data\nsocket={d}/mysql.sock\nport={port}\nbind-address=127.0.0.1\n\
         pid-file={d}/mysqld.pid\ntmpdir={d}/tmp\nlog-error={d}/error.log\nserver-id={server_id}\nlog-bin=mysql-bin\n\
         relay-log=relay-bin\nlog-slave-updates=1\nbinlog-format=ROW\ngtid-strict-mode=1\n\
         character-set-server=utf8mb4\ncollation-server=utf8mb4_general_ci\nskip-name-resolve\n\
         innodb-buffer-pool-size=32M\ninnodb-log-file-size=16M\nmax-connections=1000\n\
         performance-schema=OFF\n"
    );
    std::fs::write(&cnf, conf).map_err(io(format!("write {}", cnf.display())))?;
    let pidfile = dir.join("mysqld.pid");
    if let Some(p) = Proc::running(&pidfile, "mariadbd") {
        return Ok(p);
    }
    if !dir.join("data").join("mysql").exists() {
        install_db(dir, &cnf)?;
    }
    let args = vec![format!("--defaults-file={}", cnf.display())];
    let mut p = Proc::spawn("mariadbd", &args, &dir.join("mariadbd.out"), &pidfile)?;
    let sock = dir.join("mysql.sock");
    let start = Instant::now();
    while root_conn(&sock).await.is_err() {
        if !p.is_alive() || start.elapsed() > Duration::from_secs(60) {
            return Err(LocalError::NotReady(
                format!("mariadbd on port {port}"),
                dir.join("mariadbd.out").display().to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(p)
}

/// Initializes a tablet's datadir. mariadb-install-db now and then fails
/// on a loaded machine (twice in this project's test runs of one session,
/// nothing on stderr: the bootstrap server logs to the tablet's error
/// log), so a failed attempt is retried on a clean datadir; the last
/// failure reports the tool's output and the error log's tail.
fn install_db(dir: &Path, cnf: &Path) -> Result<(), LocalError> {
    let data = dir.join("data");
    let mut why = String::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&data);
        let out = std::process::Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", cnf.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .map_err(io("run mariadb-install-db (is mariadb-server installed?)"))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        why = format!(
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim(),
            tail.into_iter()
                .rev()
                .map(|l| format!("\n{l}"))
                .collect::<String>()
        );
    }
    Err(LocalError::Io {
        what: format!("mariadb-install-db in {}", dir.display()),
        source: std::io::Error::other(why),
    })
}

/// A root connection over the tablet's Unix socket (root has no TCP account).
pub async fn root_conn(sock: &Path) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = OptsBuilder::default()
        .socket(Some(sock.display().to_string()))
        .user(Some("root"));
    mysql_async::Conn::new(opts).await
}

/// Creates the users shardgate, admins and replicas log in as, and the
/// keyspace database. shardgate's user may do anything but write on a
/// read-only server (MariaDB's READ_ONLY ADMIN): a demoted primary then
/// refuses its writes, which is what makes a reparent lose none (as
/// Vitess's app user lacks SUPER under `super_read_only`). All this goes
/// without writing to the binlog (every tablet of a
/// shard makes its own, so replication starts from the same empty state).
pub async fn init_tablet_users(sock: &Path, db: &str) -> Result<(), mysql_async::Error> {
    let mut c = root_conn(sock).await?;
    let mut sql = String::from("SET sql_log_bin = 0;");
    for host in ["localhost", "127.0.0.1"] {
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS 'vt_dba'@'{host}'; GRANT ALL ON *.* TO 'vt_dba'@'{host}' WITH GRANT OPTION;\
             CREATE USER IF NOT EXISTS 'vt_app'@'{host}'; GRANT ALL ON *.* TO 'vt_app'@'{host}'; REVOKE READ_ONLY ADMIN ON *.* FROM 'vt_app'@'{host}';\
             CREATE USER IF NOT EXISTS 'vt_repl'@'{host}'; GRANT REPLICATION SLAVE ON *.* TO 'vt_repl'@'{host}';"
        ));
    }
    sql.push_str(&format!(
        "CREATE DATABASE IF NOT EXISTS `{db}`; SET sql_log_bin = 1;"
    ));
    c.query_drop(sql).await?;
    c.disconnect().await
}

impl Cluster {
    /// Brings the whole cluster up (resuming whatever already runs), printing
    /// progress through `say`.
    pub async fn up(
        mut spec: ClusterSpec,
        stop_on_drop: bool,
        say: impl Fn(&str),
    ) -> Result<Cluster, LocalError> {
        std::fs::create_dir_all(&spec.dataroot)
            .map_err(io(format!("create {}", spec.dataroot.display())))?;
        // Servers change directory: every path they are given must be absolute.
        spec.dataroot = spec
            .dataroot
            .canonicalize()
            .map_err(io(format!("resolve {}", spec.dataroot.display())))?;
        let mut cluster = Cluster {
            spec,
            procs: Vec::new(),
            stop_on_drop,
        };
        let spec = cluster.spec.clone();
        say(&format!("starting etcd on 127.0.0.1:{}", spec.etcd_port));
        cluster.procs.push(
            start_etcd(
                &spec.dataroot.join("etcd"),
                spec.etcd_port,
                spec.etcd_peer_port,
            )
            .await?,
        );

        say(&format!("starting {} MariaDB tablets", spec.tablets.len()));
        let cell = spec.cell.clone();
        let starts = spec.tablets.iter().map(|t| {
            let dir = spec.tablet_dir(t.uid);
            let cell = cell.clone();
            async move {
                let p = start_mariadb(&dir, t.port, t.uid).await?;
                init_tablet_users(&dir.join("mysql.sock"), &format!("vt_{}", t.keyspace))
                    .await
                    .map_err(|e| LocalError::Mysql(format!("{cell}-{}", t.uid), e))?;
                Ok::<_, LocalError>(p)
            }
        });
        // Every tablet that started joins the cluster before the first
        // failure is returned, so a cluster that stops on drop stops them.
        let mut failed = None;
        for (t, r) in spec
            .tablets
            .iter()
            .zip(futures_util::future::join_all(starts).await)
        {
            match r {
                Ok(p) => {
                    say(&format!(
                        "  tablet {}-{} ({}/{} {}) mysqld on 127.0.0.1:{}",
                        spec.cell, t.uid, t.keyspace, t.shard, t.tablet_type, t.port
                    ));
                    cluster.procs.push(p);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }

        say("writing the topology and VSchemas to etcd");
        let store = TopoStore::connect(TopoImpl::Etcd2, &spec.etcd_addr(), "/vitess")
            .await
            .map_err(admin::AdminError::from)?;
        // A resumed cluster keeps the VSchemas it has (ALTER VSCHEMA's
        // changes included); a new one is given the examples'.
        for (ks, sharded, vschema, _) in &spec.keyspaces {
            admin::ensure_keyspace(&store, ks, *sharded).await?;
            let key = format!("global/keyspaces/{ks}/VSchema");
            if store
                .get(&key)
                .await
                .map_err(admin::AdminError::from)?
                .is_none()
            {
                admin::apply_vschema(&store, ks, vschema.as_bytes()).await?;
            }
        }
        for t in &spec.tablets {
            let sharded = spec.keyspaces.iter().any(|k| k.0 == t.keyspace && k.1);
            let rec = TabletRecord {
                alias: format!("{}-{}", spec.cell, t.uid),
                hostname: "127.0.0.1".into(),
                mysql_port: t.port,
                keyspace: t.keyspace.clone(),
                shard: t.shard.clone(),
                tablet_type: t.tablet_type.clone(),
                db_name: None,
            };
            admin::add_tablet(&store, &rec, sharded).await?;
        }
        let creds = DbaCreds::default();
        let locking = crate::topo::lock::LockOptions::default();
        for t in spec.tablets.iter().filter(|t| t.tablet_type == "PRIMARY") {
            // A resumed cluster keeps the primary its topology records
            // (one a reparent chose): making the first one primary again
            // would drop what was written since on the other.
            if let Some(p) =
                admin::resume_shard(&store, &t.keyspace, &t.shard, &creds, &locking).await?
            {
                say(&format!(
                    "{}/{}: primary {p} kept, the others replicate from it",
                    t.keyspace, t.shard
                ));
                continue;
            }
            let alias = format!("{}-{}", spec.cell, t.uid);
            say(&format!(
                "init shard primary {}/{} -> {alias}",
                t.keyspace, t.shard
            ));
            admin::init_shard_primary(&store, &t.keyspace, &t.shard, &alias, &creds, &locking)
                .await?;
        }
        for (ks, _, _, schema) in &spec.keyspaces {
            if !schema.trim().is_empty() {
                say(&format!("applying schema to keyspace {ks}"));
                admin::apply_schema(&store, ks, schema, &creds).await?;
            }
        }

        if let Some(port) = spec.shardgate_port {
            say(&format!(
                "starting shardgate: MySQL on 127.0.0.1:{port}, web on 127.0.0.1:{}",
                spec.shardgate_web_port
            ));
            let pidfile = spec.dataroot.join("shardgate.pid");
            let p = match Proc::running(&pidfile, "shardgate") {
                Some(p) => p,
                None => {
                    let mut args: Vec<String> = vec![
                        "serve".into(),
                        "--topo-implementation".into(),
                        "etcd2".into(),
                        "--topo-global-server-address".into(),
                        spec.etcd_addr(),
                        "--mysql-server-port".into(),
                        port.to_string(),
                        "--port".into(),
                        spec.shardgate_web_port.to_string(),
                        "--cell".into(),
                        spec.cell.clone(),
                    ];
                    if !spec
                        .shardgate_args
                        .iter()
                        .any(|a| a.contains("mysql-auth-server-impl"))
                    {
                        args.extend(["--mysql-auth-server-impl".to_string(), "none".to_string()]);
                    }
                    // A cluster of one's own, on 127.0.0.1: its VSchemas
                    // may be changed in SQL (`ALTER VSCHEMA`) by anyone.
                    if !spec
                        .shardgate_args
                        .iter()
                        .any(|a| a.contains("vschema_ddl_authorized_users"))
                    {
                        args.push("--vschema_ddl_authorized_users=%".to_string());
                    }
                    args.extend(spec.shardgate_args.iter().cloned());
                    let bin = spec.shardgate_bin.display().to_string();
                    Proc::spawn(&bin, &args, &spec.dataroot.join("shardgate.log"), &pidfile)?
                }
            };
            // Joins the cluster before it is waited for: should it not come
            // up, the cluster stops it with the rest.
            cluster.procs.push(p);
            let log = spec.dataroot.join("shardgate.log");
            wait_until(Duration::from_secs(30), "shardgate", &log, || async {
                let opts = OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some("probe"))
                    .db_name(Some("commerce"))
                    .prefer_socket(false);
                match mysql_async::Conn::new(opts).await {
                    Ok(mut c) => {
                        // A query a tablet answers (shardgate answers `select 1`).
                        let ok = c.query_drop("select @@port").await.is_ok();
                        let _ = c.disconnect().await;
                        ok
                    }
                    Err(_) => false,
                }
            })
            .await?;
        }
        Ok(cluster)
    }

    /// Stops every process `up` recorded under the data root (by PID file).
    pub fn down(dataroot: &Path, purge: bool, say: impl Fn(&str)) -> Result<(), LocalError> {
        let mut pidfiles = vec![(dataroot.join("shardgate.pid"), "shardgate")];
        if let Ok(entries) = std::fs::read_dir(dataroot) {
            let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for d in dirs {
                if d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vt_"))
                {
                    pidfiles.push((d.join("mysqld.pid"), "mariadbd"));
                }
            }
        }
        pidfiles.push((dataroot.join("etcd").join("etcd.pid"), "etcd"));
        for (pf, name) in pidfiles {
            if let Some(mut p) = Proc::running(&pf, name) {
                say(&format!("stopping {name} (pid {})", p.pid));
                p.stop(Duration::from_secs(30));
            }
        }
        if purge && dataroot.exists() {
            say(&format!("removing {}", dataroot.display()));
            std::fs::remove_dir_all(dataroot)
                .map_err(io(format!("remove {}", dataroot.display())))?;
        }
        Ok(())
    }
}
