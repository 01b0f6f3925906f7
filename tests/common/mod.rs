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

/// A free TCP port on loopback, for a server a test starts.
pub fn free_port() -> u16 {
    shardgate::local::free_port()
}

/// A fresh temporary directory removed at exit.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shardgate-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&d).unwrap();
    DIRS.lock().unwrap().push(d.clone());
    watch_note(format!("dir {}", d.display()));
    d
}

static WATCH_FILE: OnceLock<PathBuf> = OnceLock::new();

/// A watchdog shell that outlives this process: when the test binary dies
/// (even by abort, when atexit handlers do not run) it stops every tracked
/// server and removes the temp dirs.
fn watchdog_file() -> &'static PathBuf {
    WATCH_FILE.get_or_init(|| {
        use std::os::unix::process::CommandExt;
        let file = std::env::temp_dir().join(format!("shardgate-watch-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             for p in $(grep '^pid ' {f} | cut -d' ' -f2); do kill $p 2>/dev/null; done; sleep 10; \
             for p in $(grep '^pid ' {f} | cut -d' ' -f2); do kill -9 $p 2>/dev/null; done; \
             for d in $(grep '^dir ' {f} | cut -d' ' -f2); do rm -rf $d; done; rm -f {f}",
            me = std::process::id(),
            f = file.display()
        );
        let _ = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
        file
    })
}

fn watch_note(line: String) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(watchdog_file())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Remembers a PID to stop at exit.
pub fn track_pid(pid: i32) {
    PIDS.lock().unwrap().push(pid);
    watch_note(format!("pid {pid}"));
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
    // Everything is stopped: the watchdog has nothing left to do.
    if let Some(f) = WATCH_FILE.get() {
        let _ = std::fs::write(f, "");
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
                    [100, 101, 102, 300, 301, 400, 401]
                        .into_iter()
                        .map(|u| (u, free_port()))
                        .collect();
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
                // Stopped on drop until it is up: a failed start leaves no
                // servers behind.
                let mut cluster = Cluster::up(spec.clone(), true, |m| eprintln!("[cluster] {m}"))
                    .await
                    .expect("cluster up");
                eprintln!("[cluster] up in {:?}", started.elapsed());
                for p in &cluster.procs {
                    track_pid(p.pid);
                }
                cluster.stop_on_drop = false;
                drop(cluster);
                TestCluster {
                    spec,
                    port,
                    web_port,
                }
            })
        })
        .join()
        .expect("cluster thread")
    })
}

/// Runs the shardgate binary with `args`.
pub fn shardgate_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .output()
        .expect("run shardgate")
}

/// Runs `shardgate ctl` against the cluster's etcd.
pub fn ctl(args: &[&str]) -> std::process::Output {
    let etcd = cluster().spec.etcd_addr();
    let mut all = vec!["ctl", "--topo-global-server-address", etcd.as_str()];
    all.extend_from_slice(args);
    shardgate_cmd(&all)
}

/// Connects to shardgate with a database (target) string.
pub async fn connect(db: Option<&str>) -> Conn {
    let c = cluster();
    connect_port(c.port, db).await
}

/// Connects to a MySQL-protocol port over TCP.
pub async fn connect_port(port: u16, db: Option<&str>) -> Conn {
    try_connect_port(port, db).await.expect("connect")
}

/// Connects to a MySQL-protocol port over TCP, or says why not (a
/// keyspace shardgate does not serve yet).
pub async fn try_connect_port(port: u16, db: Option<&str>) -> Result<Conn, mysql_async::Error> {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .db_name(db.map(|s| s.to_string()))
        .prefer_socket(false);
    Conn::new(opts).await
}

/// The oracle: one standalone MariaDB (stopped with the test binary),
/// its database `db` made; a connection to it, and its port.
pub async fn start_oracle(db: &str) -> (Conn, u16) {
    let odir = temp_dir("oracle");
    let oport = free_port();
    let oproc = shardgate::local::start_mariadb(&odir, oport, 999)
        .await
        .unwrap();
    track_pid(oproc.pid);
    shardgate::local::init_tablet_users(&odir.join("mysql.sock"), db)
        .await
        .unwrap();
    let oracle = Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(oport)
            .user(Some("vt_dba"))
            .db_name(Some(db))
            .prefer_socket(false),
    )
    .await
    .unwrap();
    (oracle, oport)
}

/// Connects straight to a tablet's mysqld (as the admin user).
pub async fn connect_tablet(uid: u32) -> Conn {
    let c = cluster();
    let t = c
        .spec
        .tablets
        .iter()
        .find(|t| t.uid == uid)
        .expect("tablet");
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(t.port)
        .user(Some("vt_dba"))
        .db_name(Some(format!("vt_{}", t.keyspace)))
        .prefer_socket(false);
    match Conn::new(opts).await {
        Ok(conn) => conn,
        // What the tablet said last: the cluster's logs go when the test
        // binary exits.
        Err(e) => {
            let log = std::fs::read_to_string(c.spec.tablet_dir(uid).join("error.log"))
                .unwrap_or_else(|e| format!("(no error log: {e})"));
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "connect tablet {uid}: {e}\nits mysqld's error log ends:\n{}",
                tail.join("\n")
            )
        }
    }
}

/// The port of a tablet's mysqld.
pub fn tablet_port(uid: u32) -> u16 {
    cluster()
        .spec
        .tablets
        .iter()
        .find(|t| t.uid == uid)
        .expect("tablet")
        .port
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

/// The id of the connection on tablet `uid` that is running a statement
/// containing `marker` (the poller's own connection left out), looked for
/// for up to five seconds while the statement runs: how a test finds the
/// tablet connection serving a session, to close it from the server side.
/// Only a statement being run counts (command `Query` or `Execute`): a
/// client's prepared statement is also prepared on another connection to
/// learn its columns, and that one shows the text for a moment, as
/// `Prepare`.
pub async fn connection_running(uid: u32, marker: &str) -> Option<u64> {
    eventually(5, || async move {
        let mut dba = connect_tablet(uid).await;
        let ids: Vec<u64> = dba
            .query(format!(
                "select id from information_schema.processlist \
                 where info like '%{marker}%' and id <> connection_id() \
                 and command in ('Query', 'Execute')"
            ))
            .await
            .ok()?;
        ids.first().copied()
    })
    .await
}

/// How many rows `table` holds, as the connection sees it (inside its
/// transaction, if one is open).
pub async fn count(conn: &mut Conn, table: &str) -> u64 {
    let sql = format!("select count(*) from {table}");
    let n: Option<u64> = conn
        .query_first(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n.unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Runs one query through the shardgate connection and collects string cells.
pub async fn rows(conn: &mut Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
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

/// Starts another shardgate process with extra flags (stopped at exit) and
/// waits until its MySQL port accepts connections.
pub async fn spawn_shardgate(extra: &[String]) -> (u16, u16) {
    let (port, web, _) = spawn_shardgate_pid(extra).await;
    (port, web)
}

/// [`spawn_shardgate`], with the process id, for tests that look at the
/// process itself.
pub async fn spawn_shardgate_pid(extra: &[String]) -> (u16, u16, i32) {
    let (port, web) = (free_port(), free_port());
    let dir = temp_dir("sg");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--mysql-server-port".into(),
        port.to_string(),
        "--port".into(),
        web.to_string(),
    ];
    if !extra.iter().any(|a| a.starts_with("--topo-implementation")) {
        args.extend([
            "--topo-implementation".into(),
            "etcd2".into(),
            "--topo-global-server-address".into(),
            cluster().spec.etcd_addr(),
        ]);
    }
    args.extend(extra.iter().cloned());
    let p = shardgate::local::Proc::spawn(
        env!("CARGO_BIN_EXE_shardgate"),
        &args,
        &dir.join("shardgate.log"),
        &dir.join("shardgate.pid"),
    )
    .expect("spawn shardgate");
    track_pid(p.pid);
    let up = eventually(20, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    if up.is_none() {
        let log = std::fs::read_to_string(dir.join("shardgate.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "shardgate did not start; its log ends:\n{}",
            tail.join("\n")
        );
    }
    (port, web, p.pid)
}

/// A raw MySQL-protocol client for protocol edge cases.
pub struct RawClient {
    /// The socket.
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and completes the handshake (auth `none`).
    pub async fn connect(port: u16, db: Option<&str>) -> RawClient {
        Self::connect_with(port, db, 0, false).await.0
    }

    /// [`RawClient::connect`] asking for MariaDB's extended capabilities
    /// `ext` (written where a MariaDB client writes them) and, with
    /// `deprecate_eof`, for CLIENT_DEPRECATE_EOF; also returns the greeting.
    pub async fn connect_with(
        port: u16,
        db: Option<&str>,
        ext: u32,
        deprecate_eof: bool,
    ) -> (RawClient, Vec<u8>) {
        use mysql_common::constants::CapabilityFlags as C;
        use mysql_common::proto::MySerialize;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut c = RawClient {
            stream,
            buf: Vec::new(),
        };
        let (_, hs) = c.read_packet().await.expect("handshake");
        assert_eq!(hs[0], 10);
        let caps = C::CLIENT_PROTOCOL_41
            | C::CLIENT_SECURE_CONNECTION
            | C::CLIENT_PLUGIN_AUTH
            | C::CLIENT_MULTI_STATEMENTS
            | C::CLIENT_MULTI_RESULTS
            | C::CLIENT_TRANSACTIONS
            | if deprecate_eof {
                C::CLIENT_DEPRECATE_EOF
            } else {
                C::empty()
            }
            | if db.is_some() {
                C::CLIENT_CONNECT_WITH_DB
            } else {
                C::empty()
            };
        let resp = mysql_common::packets::HandshakeResponse::new(
            Some(&[0u8; 20][..]),
            (10, 11, 0),
            Some(&b"raw"[..]),
            db.map(|d| d.as_bytes().to_vec()),
            Some(mysql_common::packets::AuthPlugin::MysqlNativePassword),
            caps,
            None,
            1 << 24,
        );
        let mut payload = Vec::new();
        resp.serialize(&mut payload);
        // Capabilities, max packet, collation and 19 bytes of filler first.
        payload[28..32].copy_from_slice(&ext.to_le_bytes());
        c.write_packet(1, &payload).await;
        let (_, ok) = c.read_packet().await.expect("auth reply");
        assert_eq!(ok[0], 0, "auth failed: {:?}", String::from_utf8_lossy(&ok));
        (c, hs)
    }

    /// Frames one packet.
    pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut out = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        out.extend_from_slice(payload);
        out
    }

    /// Writes one packet.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(&Self::frame(seq, payload))
            .await
            .unwrap();
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one packet: (seq, payload); None at EOF or after 10 s.
    pub async fn read_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 4 {
                let n = self.buf[0] as usize
                    | (self.buf[1] as usize) << 8
                    | (self.buf[2] as usize) << 16;
                if self.buf.len() >= 4 + n {
                    let seq = self.buf[3];
                    let payload = self.buf[4..4 + n].to_vec();
                    self.buf.drain(..4 + n);
                    return Some((seq, payload));
                }
            }
            let mut tmp = vec![0u8; 65536];
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read(&mut tmp),
            )
            .await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Reads one whole result (OK, ERR, or a text result set) and returns
    /// a summary: ("ok", status) / ("err", code) / ("rows", first cells...).
    pub async fn read_result(&mut self) -> Option<RawResult> {
        let (_, first) = self.read_packet().await?;
        match first[0] {
            0x00 => {
                let mut p = &first[1..];
                let _affected = lenenc(&mut p);
                let _id = lenenc(&mut p);
                Some(RawResult::Ok {
                    status: u16::from_le_bytes([p[0], p[1]]),
                })
            }
            0xFF => Some(RawResult::Err {
                code: u16::from_le_bytes([first[1], first[2]]),
            }),
            _ => {
                let mut p = &first[..];
                let ncols = lenenc(&mut p) as usize;
                for _ in 0..ncols {
                    self.read_packet().await?;
                }
                let (_, eof) = self.read_packet().await?;
                assert_eq!(eof[0], 0xFE);
                let mut cells = Vec::new();
                loop {
                    let (_, row) = self.read_packet().await?;
                    if row[0] == 0xFE && row.len() < 9 {
                        return Some(RawResult::Rows {
                            cells,
                            status: u16::from_le_bytes([row[3], row[4]]),
                        });
                    }
                    if row[0] == 0xFF {
                        return Some(RawResult::Err {
                            code: u16::from_le_bytes([row[1], row[2]]),
                        });
                    }
                    let mut p = &row[..];
                    for _ in 0..ncols {
                        if p[0] == 0xFB {
                            cells.push(None);
                            p = &p[1..];
                        } else {
                            let n = lenenc(&mut p) as usize;
                            cells.push(Some(String::from_utf8_lossy(&p[..n]).into_owned()));
                            p = &p[n..];
                        }
                    }
                }
            }
        }
    }
}

/// One result read by [`RawClient::read_result`].
#[derive(Debug, PartialEq)]
pub enum RawResult {
    /// An OK packet and its status flags.
    Ok { status: u16 },
    /// An ERR packet and its code.
    Err { code: u16 },
    /// A result set: all cells in order, and the EOF status flags.
    Rows {
        cells: Vec<Option<String>>,
        status: u16,
    },
}

fn lenenc(p: &mut &[u8]) -> u64 {
    let (v, n) = match p[0] {
        0xFC => (u16::from_le_bytes([p[1], p[2]]) as u64, 3),
        0xFD => (u32::from_le_bytes([p[1], p[2], p[3], 0]) as u64, 4),
        0xFE => (u64::from_le_bytes(p[1..9].try_into().unwrap()), 9),
        b => (b as u64, 1),
    };
    *p = &p[n..];
    v
}

/// The body and head of a GET on a local web port.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A counter of shardgate's `/debug/vars` on the shared cluster.
pub async fn debug_var(name: &str) -> u64 {
    debug_var_at(cluster().web_port, name).await
}

/// [`debug_var`] of the shardgate whose web port is `web`.
pub async fn debug_var_at(web: u16, name: &str) -> u64 {
    let page = http_get(web, "/debug/vars").await;
    let body = page.split("\r\n\r\n").nth(1).unwrap_or_default();
    let vars: serde_json::Value = serde_json::from_str(body).expect("/debug/vars is JSON");
    vars[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in /debug/vars: {body}"))
}

/// A server's global status counter (`SHOW GLOBAL STATUS`).
pub async fn global_status(conn: &mut Conn, name: &str) -> u64 {
    let row: Option<(String, String)> = conn
        .query_first(format!("show global status like '{name}'"))
        .await
        .unwrap();
    row.unwrap().1.parse().unwrap()
}

/// A twopc transaction's record as a gate writes it: parts of keyspace
/// `ks`, each (shard, tablet), recorded at `at` (ms since the epoch).
pub fn twopc_record(ks: &str, parts: &[(&str, &str)], at: u64) -> Vec<u8> {
    use shardgate::executor::twopc::{Part, Record};
    let parts = parts
        .iter()
        .map(|(shard, tablet)| Part {
            keyspace: ks.into(),
            shard: (*shard).into(),
            tablet: (*tablet).into(),
        })
        .collect();
    serde_json::to_vec(&Record { parts, at }).unwrap()
}

/// Prepares the part of twopc transaction `dtid` on tablet `tablet` by
/// hand over `c`, running `write` in it, and closes `c`, which detaches
/// the prepared part as a gate that died leaves it.
pub async fn prepare_by_hand(mut c: Conn, dtid: &str, tablet: &str, write: &str) {
    let x = shardgate::executor::twopc::xid(dtid, tablet);
    for sql in [
        format!("xa start {x}"),
        write.to_string(),
        format!("xa end {x}"),
        format!("xa prepare {x}"),
    ] {
        c.query_drop(sql).await.unwrap();
    }
    c.disconnect().await.unwrap();
}
