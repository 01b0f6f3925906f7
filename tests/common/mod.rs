//! The integration-test harness: one real cluster per test binary (etcd,
//! seven MariaDB tablets with replication, and the real `shardgate` binary),
//! on free ports in a temp dir, built by the same code as `shardgate local
//! up`, and stopped when the test process exits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use shardgate::local::{Cluster, ClusterSpec};

/// What tests need to know about the shared cluster.
pub struct TestCluster {
    /// The cluster's spec (ports, data root).
    pub spec: ClusterSpec,
    /// shardgate's MySQL port.
    pub port: u16,
    /// shardgate's web port.
    pub web_port: u16,
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
static PIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().unwrap().port();
        let mut taken = TAKEN.lock().unwrap();
        if !taken.contains(&p) {
            taken.push(p);
            return p;
        }
    }
}

/// A fresh temporary directory removed at exit.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardgate-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    DIRS.lock().unwrap().push(d.clone());
    d
}

/// Remembers a PID to stop at exit.
pub fn track_pid(pid: i32) {
    PIDS.lock().unwrap().push(pid);
}

extern "C" fn cleanup() {
    let pids: Vec<i32> = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for &pid in pids.iter().rev() {
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for &pid in &pids {
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    for d in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The shared cluster, started on first use.
pub fn cluster() -> &'static TestCluster {
    CLUSTER.get_or_init(|| {
        unsafe {
            libc::atexit(cleanup);
        }
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .worker_threads(2)
                .build()
                .unwrap();
            rt.block_on(async {
                let dataroot = temp_dir("cluster");
                let ports: std::collections::HashMap<u32, u16> =
                    [100, 101, 102, 300, 301, 400, 401].into_iter().map(|u| (u, free_port())).collect();
                let (port, web_port) = (free_port(), free_port());
                let mut spec = ClusterSpec::example_with_ports(
                    dataroot,
                    |uid| ports[&uid],
                    free_port(),
                    free_port(),
                    Some(port),
                    web_port,
                );
                spec.shardgate_bin = PathBuf::from(env!("CARGO_BIN_EXE_shardgate"));
                let started = std::time::Instant::now();
                let mut cluster = Cluster::up(spec.clone(), false, |m| eprintln!("[cluster] {m}"))
                    .await
                    .expect("cluster up");
                eprintln!("[cluster] up in {:?}", started.elapsed());
                for p in &cluster.procs {
                    track_pid(p.pid);
                }
                cluster.stop_on_drop = false;
                drop(cluster);
                TestCluster { spec, port, web_port }
            })
        })
        .join()
        .expect("cluster thread")
    })
}

/// Connects to shardgate with a database (target) string.
pub async fn connect(db: Option<&str>) -> Conn {
    let c = cluster();
    connect_port(c.port, db).await
}

/// Connects to a MySQL-protocol port over TCP.
pub async fn connect_port(port: u16, db: Option<&str>) -> Conn {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .db_name(db.map(|s| s.to_string()))
        .prefer_socket(false);
    Conn::new(opts).await.expect("connect")
}

/// Connects straight to a tablet's mysqld (as the admin user).
pub async fn connect_tablet(uid: u32) -> Conn {
    let c = cluster();
    let t = c.spec.tablets.iter().find(|t| t.uid == uid).expect("tablet");
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(t.port)
        .user(Some("vt_dba"))
        .db_name(Some(format!("vt_{}", t.keyspace)))
        .prefer_socket(false);
    Conn::new(opts).await.expect("connect tablet")
}

/// The port of a tablet's mysqld.
pub fn tablet_port(uid: u32) -> u16 {
    cluster().spec.tablets.iter().find(|t| t.uid == uid).expect("tablet").port
}

/// A topology store handle on the cluster's etcd.
pub async fn store() -> shardgate::topo::store::TopoStore {
    shardgate::topo::store::TopoStore::connect(
        shardgate::topo::store::TopoImpl::Etcd2,
        &cluster().spec.etcd_addr(),
        "/vitess",
    )
    .await
    .expect("etcd")
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The error code of a failed mysql_async call.
pub fn err_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs one query through the shardgate connection and collects string cells.
pub async fn rows(conn: &mut Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect()
}
