//! The end-to-end load harness: direct MariaDB, HAProxy (TCP mode) in front
//! of the same tablet, and shardgate (unsharded, and three 2-shard
//! keyspaces: hashed by id, ranged by id, and hashed with both shards in
//! the unsharded tablet's mysqld),
//! measured with sysbench in interleaved rounds on this machine; goal 2's
//! bound (the 2-shard tablets' share of the work, run with no proxy; see
//! `benches/split_ranges.lua`); a connect storm, an idle-connection test,
//! a large scatter (RSS growth and time to first row) and shardgate's
//! user-space instructions per query (callgrind; steady where QPS and CPU
//! time drift with the machine).
//! Prints a Markdown table and writes it to `target/load-results.md`.
//!
//!   cargo bench --bench load            # 20 s runs, 1/8/32 threads, 2 rounds
//!   cargo bench --bench load -- --quick # 5 s runs, 1/8 threads, 1 round
//!   cargo bench --bench load -- --only scatter   # one part: sysbench, bound, instructions, scatter, connect or idle
//!   cargo bench --bench load -- --only sysbench --workload oltp_read_only --threads 8
//!   cargo bench --bench load -- --only sysbench --threads 1 --rounds 7   # medians of 7 rounds
//!   SHARDGATE_BIN=/path/to/shardgate cargo bench --bench load   # measure another build
//!   SHARDGATE_ALSO="--worker-threads 1" cargo bench --bench load   # one more shardgate, with these flags
//!   SHARDGATE_ALSO="--busy-poll-us 0; --worker-threads 1" cargo bench --bench load -- --only sysbench --unsharded
//!       # one more shardgate per flag set; --unsharded: the unsharded keyspace's targets only
//!   SHARDGATE_ALSO_BIN=/path/to/other/shardgate cargo bench --bench load   # one more shardgate, another build
//!
//! Needs sysbench and haproxy (Debian packages `sysbench`, `haproxy`), and
//! valgrind for the instructions part (skipped, with a message, without it;
//! `SHARDGATE_CALLGRIND_DIR=dir` keeps its dumps there, one per run).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use shardgate::local::{free_port, Cluster, ClusterSpec, TabletSpec};

/// The `ranged` keyspace's shards: keyspace ids of the numeric vindex are
/// the ids themselves (big-endian), so ids below 5001 (0x1389) go to the first.
const RANGED_SHARDS: [&str; 2] = ["-0000000000001389", "0000000000001389-"];

/// sbtest1's columns as the VSchema declares them (the tablets' default
/// collation), so that sorting and grouping by `c` or `pad` go to the shards
/// without weight strings, as in `vschema/customer.json`; put in for
/// `SBTEST1_COLUMNS` by [`with_columns`].
const SBTEST1_COLUMNS: &str = r#"[{"name": "id", "type": "INT32"}, {"name": "k", "type": "INT32"},
    {"name": "c", "type": "CHAR", "collation_name": "utf8mb4_general_ci"},
    {"name": "pad", "type": "CHAR", "collation_name": "utf8mb4_general_ci"}]"#;

fn with_columns(vschema: &str) -> String {
    vschema.replace("SBTEST1_COLUMNS", SBTEST1_COLUMNS)
}

/// sbtest1 placed by its id's value, so an id range stays on one shard.
const RANGED_VSCHEMA: &str = r#"{"sharded": true, "vindexes": {"num": {"type": "numeric"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "num"}],
    "columns": SBTEST1_COLUMNS}}}"#;

/// The `colocated` keyspace: hashed like `customer` (no sequence), but both
/// shards live in the unsharded tablet's mysqld, as two databases. Against
/// `customer` (one mysqld per shard) it separates what sharding costs
/// shardgate from what a second mysqld process costs this 2-core machine.
const COLOCATED_VSCHEMA: &str = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}],
    "columns": SBTEST1_COLUMNS}}}"#;

/// Registers the `colocated` keyspace: shards `-80` and `80-` on the mysqld
/// at `port`, in databases `vt_colocated_a` and `vt_colocated_b` (the
/// tablet records' db name, vttablet's `--init_db_name_override`).
async fn add_colocated(etcd: &str, port: u16, sg_port: u16) {
    use shardgate::admin;
    use shardgate::topo::store::{TopoImpl, TopoStore};
    let store = TopoStore::connect(TopoImpl::Etcd2, etcd, "/vitess")
        .await
        .expect("topo");
    let creds = admin::DbaCreds::default();
    for (uid, shard, db) in [
        (700, "-80", "vt_colocated_a"),
        (800, "80-", "vt_colocated_b"),
    ] {
        let rec = shardgate::topo::TabletRecord {
            alias: format!("zone1-{uid}"),
            hostname: "127.0.0.1".into(),
            mysql_port: port,
            keyspace: "colocated".into(),
            shard: shard.into(),
            tablet_type: "PRIMARY".into(),
            db_name: Some(db.into()),
        };
        admin::add_tablet(&store, &rec, true).await.unwrap();
        admin::init_shard_primary(
            &store,
            &rec.keyspace,
            &rec.shard,
            &rec.alias,
            &creds,
            &Default::default(),
        )
        .await
        .unwrap();
    }
    admin::apply_vschema(
        &store,
        "colocated",
        with_columns(COLOCATED_VSCHEMA).as_bytes(),
    )
    .await
    .expect("vschema");
    // shardgate learns of the keyspace from its topology watch.
    for _ in 0..100 {
        if let Ok(c) = mysql_async::Conn::new(client_opts(sg_port, "sb", "colocated")).await {
            let _ = c.disconnect().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("shardgate did not pick up the colocated keyspace");
}

/// A sysbench target.
#[derive(Clone)]
struct Target {
    name: &'static str,
    port: u16,
    user: &'static str,
    db: &'static str,
    /// PID of the proxy process whose CPU and memory are measured.
    pid: Option<i32>,
    extra: &'static [&'static str],
}

/// One sysbench run's figures.
#[derive(Default, Clone)]
struct Run {
    qps: f64,
    avg_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    cpu_us_per_query: Option<f64>,
    rss_mb: Option<f64>,
    /// The target's MariaDB tablets' CPU per query (all its shards').
    tablets_us_per_query: f64,
    /// sysbench's own CPU per query.
    client_us_per_query: f64,
    /// The share of the machine's CPU time nobody used, in percent.
    idle_pct: f64,
}

/// CPU counters read before and after a run: a run's QPS alone does not
/// say whether the proxy, the tablets or the clients took the machine, or
/// whether part of it stood idle (one event loop's wait; session 16).
struct Counters {
    tablets: f64,
    clients: f64,
    idle: f64,
    total: f64,
}

impl Counters {
    fn read(tablets: &[i32]) -> Counters {
        // The whole machine's time, from the first line of /proc/stat
        // (user nice system idle iowait irq softirq steal, in ticks).
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let tick = |i: usize| f.get(i).copied().unwrap_or(0.0);
        // SAFETY: getrusage fills the struct it is given; zeroed is a valid value.
        let clients = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(u.ru_utime) + secs(u.ru_stime)
        };
        Counters {
            tablets: tablets.iter().map(|&p| proc_cpu_seconds(p)).sum(),
            clients,
            idle: tick(3) + tick(4),
            total: f.iter().sum(),
        }
    }

    /// Fills `r`'s tablet, client and idle figures for the run since `self`.
    fn fill(&self, now: &Counters, queries: f64, r: &mut Run) {
        if queries > 0.0 {
            r.tablets_us_per_query = (now.tablets - self.tablets) * 1e6 / queries;
            // sysbench is waited for when it ends: its time counts then.
            r.client_us_per_query = (now.clients - self.clients) * 1e6 / queries;
        }
        if now.total > self.total {
            r.idle_pct = 100.0 * (now.idle - self.idle) / (now.total - self.total);
        }
    }
}

fn proc_cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime [11], stime [12] (in ticks).
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

fn proc_rss_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn sysbench(
    t: &Target,
    workload: &str,
    cmd: &str,
    threads: u32,
    secs: u32,
    more: &[&str],
) -> String {
    let mut c = Command::new("sysbench");
    c.arg(workload)
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={}", t.port))
        .arg(format!("--mysql-user={}", t.user))
        .arg(format!("--mysql-db={}", t.db))
        .arg("--tables=1")
        .arg("--table-size=10000")
        .arg(format!("--threads={threads}"))
        .arg(format!("--time={secs}"))
        .arg("--histogram=on")
        .arg("--percentile=99")
        .args(t.extra)
        .args(more)
        .arg(cmd);
    let out = c.output().expect("run sysbench");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!(
            "sysbench {workload} {cmd} against {} failed:\n{text}\n{}",
            t.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text
}

/// Reads QPS, avg and p99 from the summary and p95 from the histogram.
fn parse(out: &str) -> Run {
    let num = |key: &str| -> f64 {
        out.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| {
                v.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .trim_start_matches('(')
                    .parse()
                    .unwrap_or(0.0)
            })
            .unwrap_or(0.0)
    };
    let qps = out
        .lines()
        .find(|l| l.trim_start().starts_with("queries:"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // Histogram lines: "  1.234 |****   42"
    let mut hist: Vec<(f64, u64)> = Vec::new();
    for l in out.lines() {
        let parts: Vec<&str> = l.split('|').collect();
        if parts.len() == 2 {
            if let (Ok(v), Some(Ok(n))) = (
                parts[0].trim().parse::<f64>(),
                parts[1].split_whitespace().last().map(|n| n.parse::<u64>()),
            ) {
                hist.push((v, n));
            }
        }
    }
    let total: u64 = hist.iter().map(|(_, n)| n).sum();
    let mut acc = 0;
    let mut p95 = 0.0;
    for (v, n) in &hist {
        acc += n;
        if acc * 100 >= total * 95 {
            p95 = *v;
            break;
        }
    }
    Run {
        qps,
        avg_ms: num("avg:"),
        p95_ms: p95,
        p99_ms: num("99th percentile:"),
        ..Run::default()
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median_of(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    match x.len() {
        0 => 0.0,
        n if n % 2 == 1 => x[n / 2],
        n => (x[n / 2 - 1] + x[n / 2]) / 2.0,
    }
}

/// Transactions (sysbench events) per second from a run's summary.
fn tps(out: &str) -> f64 {
    out.lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The tablets of a 2-shard keyspace under a workload, with no proxy: what
/// goal 2 (2 shards ≥ 0.9× unsharded) allows at best on this machine.
/// Returns (two shard mysqlds / one, one mysqld with ranges halved / whole)
/// for one round, in client transactions per second; `None` where it does
/// not apply. `whole` is the unsharded tablet, `shards` the two shards'.
fn no_proxy_bound(
    whole: &Target,
    shards: [&Target; 2],
    workload: &str,
    threads: u32,
    secs: u32,
) -> (f64, Option<f64>) {
    let skip: &[&str] = &["--skip_trx=on"];
    let base = tps(&sysbench(whole, workload, "run", threads, secs, skip));
    if base <= 0.0 {
        return (0.0, None);
    }
    // Each shard's mysqld gets its share of every client transaction: a
    // point select goes to one of them; read only's ten point selects split
    // five and five, and each of its four ranges reaches both (about 50 of
    // the 100 ids live on each). Half the threads each; a client
    // transaction needs both shares, so read only counts half their sum.
    // The ids a thread asks a shard for are not all on it, so misses make
    // this figure, if anything, too kind.
    let (more, per_txn): (&[&str], f64) = match workload {
        "oltp_read_only" => (&["--skip_trx=on", "--point_selects=5"], 0.5),
        _ => (skip, 1.0),
    };
    let half = (threads / 2).max(1);
    let sum: f64 = std::thread::scope(|s| {
        let runs: Vec<_> = shards
            .iter()
            .map(|t| s.spawn(move || tps(&sysbench(t, workload, "run", half, secs, more))))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap_or(0.0)).sum()
    });
    // One mysqld holding both shards: the same statements, each range sent
    // as two halves (point selects are unchanged, so only read only).
    let halved = (workload == "oltp_read_only").then(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/split_ranges.lua");
        tps(&sysbench(whole, script, "run", threads, secs, skip)) / base
    });
    (sum * per_txn / base, halved)
}

/// A client of `port` over TCP (never switching to a Unix socket).
fn client_opts(port: u16, user: &str, db: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .db_name(Some(db))
        .prefer_socket(false)
}

/// `shardgate serve` on `port` against the harness's etcd (web port free).
fn serve_args(etcd: &str, port: u16) -> Vec<String> {
    let web = free_port().to_string();
    let args = [
        "serve",
        "--topo-implementation",
        "etcd2",
        "--topo-global-server-address",
        etcd,
        "--cell",
        "zone1",
    ];
    let more = [
        "--mysql-auth-server-impl",
        "none",
        "--port",
        &web,
        "--mysql-server-port",
        &port.to_string(),
    ];
    args.iter()
        .chain(more.iter())
        .map(|a| a.to_string())
        .collect()
}

/// Starts the `n`th extra shardgate (`SHARDGATE_ALSO_BIN`, else this
/// build) with `extra` flags (one set of `SHARDGATE_ALSO`), measured as
/// two more targets (unsharded and hashed on 2 shards) in the same
/// interleaved rounds: an A/B of a flag
/// (`--worker-threads 1`) or of two builds that no two separate runs on
/// this drifting machine could settle. Returns its process and port once
/// it serves.
async fn start_extra(
    dir: &std::path::Path,
    bin: &std::path::Path,
    etcd: &str,
    extra: &str,
    n: usize,
) -> (Child, u16) {
    let port = free_port();
    let log_path = dir.join(format!("shardgate-also-{n}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(bin)
        .args(serve_args(etcd, port))
        .args(extra.split_whitespace())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the second shardgate");
    for _ in 0..100 {
        if let Ok(c) = mysql_async::Conn::new(client_opts(port, "sb", "commerce")).await {
            let _ = c.disconnect().await;
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "the extra shardgate ({extra}) did not serve: {}",
        log_path.display()
    );
}

/// Runs a second shardgate under callgrind against the same topology and
/// counts its instructions over a fixed number of sysbench events per
/// target and workload (counters zeroed after a warm-up, so connecting,
/// preparing and planning are left out): user-space work per query,
/// the same from run to run within a fraction of a percent.
async fn count_instructions(
    dir: &std::path::Path,
    etcd: &str,
    bin: &std::path::Path,
    targets: &[Target],
) -> Vec<(&'static str, &'static str, u32, f64)> {
    let port = free_port();
    let out = dir.join("callgrind.out");
    let log = std::fs::File::create(dir.join("callgrind.log")).expect("callgrind log");
    let mut child = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--dump-instr=no",
            "--collect-jumps=no",
            "--compress-strings=no",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(serve_args(etcd, port))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start valgrind");
    let pid = child.id().to_string();
    let mut up = false;
    for _ in 0..600 {
        if let Ok(c) = mysql_async::Conn::new(client_opts(port, "sb", "commerce")).await {
            let _ = c.disconnect().await;
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let control = |what: &str| {
        Command::new("callgrind_control")
            .arg(what)
            .arg(&pid)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut counts = Vec::new();
    // sysbench's --events counts transactions: 16 queries each for read only.
    let runs: [(&str, u32, &str); 3] = [
        ("oltp_point_select", 8, "5000"),
        ("oltp_read_only", 8, "500"),
        ("oltp_read_only", 1, "200"),
    ];
    for t in targets.iter().filter(|_| up) {
        let mut t = t.clone();
        t.port = port;
        for (w, th, events) in runs {
            sysbench(&t, w, "run", th, 0, &["--events=100"]);
            if !control("-z") {
                break;
            }
            let text = sysbench(&t, w, "run", th, 0, &[&format!("--events={events}")]);
            let queries: f64 = text
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("queries:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            control("-d");
            // Each dump is a new file, `callgrind.out.N`: read the newest.
            let newest = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("callgrind.out.")
                })
                .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
            // SHARDGATE_CALLGRIND_DIR keeps each dump for callgrind_annotate.
            if let (Some(keep), Some(e)) = (std::env::var_os("SHARDGATE_CALLGRIND_DIR"), &newest) {
                let name = format!("{}-{w}-{th}.out", t.name.replace(' ', "_"));
                let _ = std::fs::copy(e.path(), std::path::Path::new(&keep).join(name));
            }
            let dump = newest
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .unwrap_or_default();
            let total: f64 = dump
                .lines()
                .find_map(|l| {
                    l.strip_prefix("summary:")
                        .or_else(|| l.strip_prefix("totals:"))
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
            if queries > 0.0 && total > 0.0 {
                counts.push((t.name, w, th, total / queries));
            }
        }
    }
    // SAFETY: kill(2) on the valgrind this function started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    counts
}

async fn connect_storm(
    port: u16,
    user: &str,
    db: &str,
    queries: &'static [&'static str],
    total: usize,
    parallel: usize,
) -> f64 {
    let start = Instant::now();
    let per = total / parallel;
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (user, db) = (user.to_string(), db.to_string());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                if let Ok(mut c) = mysql_async::Conn::new(client_opts(port, &user, &db)).await {
                    for query in queries {
                        let _ = c.query_drop(*query).await;
                    }
                    let _ = c.disconnect().await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (per * parallel) as f64 / start.elapsed().as_secs_f64()
}

/// Has the tablets write out the pages the prepare step dirtied (MariaDB
/// leaves them dirty while idle), so the first measured runs do not pay for
/// that flush: dirty pages allowed down to 0 % until they are out (at most
/// 30 s), then the tablet's own limit back.
async fn settle(ports: impl Iterator<Item = u16>) {
    for port in ports {
        let Ok(mut c) = mysql_async::Conn::new(client_opts(port, "vt_app", "mysql")).await else {
            continue;
        };
        let limit: Option<f64> = c
            .query_first("select @@global.innodb_max_dirty_pages_pct")
            .await
            .ok()
            .flatten();
        if let Some(limit) = limit {
            let _ = c
                .query_drop("set global innodb_max_dirty_pages_pct = 0")
                .await;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                let dirty: Option<(String, u64)> = c
                    .query_first("show global status like 'Innodb_buffer_pool_pages_dirty'")
                    .await
                    .ok()
                    .flatten();
                if dirty.is_none_or(|(_, n)| n < 16) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = c
                .query_drop(format!("set global innodb_max_dirty_pages_pct = {limit}"))
                .await;
        }
        let _ = c.disconnect().await;
    }
}

/// What a large scatter cost: (rows, ms to first row, ms in all, shardgate
/// RSS MB before, peak RSS MB growth while it ran).
type ScatterRun = (usize, f64, f64, f64, f64);

/// Reads every row of `sql` through shardgate while sampling its RSS.
async fn scatter_stream(port: u16, pid: i32, sql: &str) -> ScatterRun {
    let mut conn = mysql_async::Conn::new(client_opts(port, "sb", "customer"))
        .await
        .expect("connect");
    let before = proc_rss_mb(pid);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_rss_mb(pid));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak
        })
    };
    let start = Instant::now();
    let mut first = None;
    let mut rows = 0;
    let mut result = conn.query_iter(sql).await.expect("scatter");
    while let Some(_row) = result.next().await.expect("row") {
        first.get_or_insert_with(|| start.elapsed());
        rows += 1;
    }
    drop(result);
    let total = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(before);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        rows,
        first.map(ms).unwrap_or(0.0),
        ms(total),
        before,
        (peak - before).max(0.0),
    )
}

fn start_haproxy(dir: &std::path::Path, port: u16, backend: u16) -> Child {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
             frontend mysql\n  bind 127.0.0.1:{port}\n  default_backend tablet\n\
             backend tablet\n  server t1 127.0.0.1:{backend}\n"
        ),
    )
    .unwrap();
    Command::new("haproxy")
        .args(["-f", &cfg.display().to_string(), "-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy (apt-get install haproxy)")
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("load harness: run with `cargo bench --bench load` (skipped under cargo test)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--only PART` runs one part of the harness.
    let only = flag("--only");
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let (secs, mut threads, rounds): (u32, Vec<u32>, usize) = if quick {
        (5, vec![1, 8], 1)
    } else {
        (20, vec![1, 8, 32], 2)
    };
    // `--threads N` and `--workload W` narrow the sysbench part to one
    // thread count or one workload (A/B runs of one figure).
    if let Some(n) = flag("--threads").and_then(|n| n.parse().ok()) {
        threads = vec![n];
    }
    // `--rounds N`: more interleaved rounds; the table shows each figure's
    // median, which one noisy run on this shared machine does not move.
    let rounds = flag("--rounds")
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(rounds);
    // `--workload a,b`: the named workloads only.
    let workload = flag("--workload");
    let unsharded_only = args.iter().any(|a| a == "--unsharded");
    let wanted = |w: &str| {
        workload
            .as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == w))
    };
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("shardgate-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sg_port, web_port) = (free_port(), free_port());
        let ports: BTreeMap<u32, u16> = [100, 300, 400, 500, 600].into_iter().map(|u| (u, free_port())).collect();
        let mut spec = ClusterSpec::example_with_ports(dir.clone(), |u| *ports.get(&u).unwrap_or(&0), free_port(), free_port(), Some(sg_port), web_port);
        // Primaries only: replicas would only take CPU from the measured processes.
        spec.tablets.retain(|t| t.tablet_type == "PRIMARY");
        // A second 2-shard keyspace sharded by range: a numeric vindex on id,
        // split at id 5001, the middle of sysbench's 10,000 rows. Its ranges
        // (BETWEEN) reach one shard, where the hashed `customer` scatters them.
        for (uid, shard) in [(500, RANGED_SHARDS[0]), (600, RANGED_SHARDS[1])] {
            spec.tablets.push(TabletSpec { uid, keyspace: "ranged".into(), shard: shard.into(), tablet_type: "PRIMARY".into(), port: ports[&uid] });
        }
        spec.keyspaces.push(("ranged".into(), true, with_columns(RANGED_VSCHEMA), String::new()));
        // SHARDGATE_BIN measures another build (A/B runs of two commits).
        spec.shardgate_bin = std::env::var_os("SHARDGATE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shardgate")));
        let cluster = Cluster::up(spec, true, |m| eprintln!("[load] {m}")).await.expect("cluster");
        let sg_pid = cluster.procs.last().map(|p| p.pid);
        add_colocated(&cluster.spec.etcd_addr(), ports[&100], sg_port).await;
        let hp_port = free_port();
        let mut haproxy = start_haproxy(&dir, hp_port, ports[&100]);
        let mut up = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", hp_port)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "haproxy did not start (haproxy -c -f {}/haproxy.cfg)", dir.display());
        let hp_pid = Some(haproxy.id() as i32);
        // SHARDGATE_ALSO="--worker-threads 1; --busy-poll-us 0": one more
        // shardgate per flag set, each as two more targets (unsharded, and
        // hashed on 2 shards). SHARDGATE_ALSO_BIN=/path: that build as the
        // extra shardgates (an A/B of two builds, with or without flags).
        let also_bin = std::env::var_os("SHARDGATE_ALSO_BIN").map(std::path::PathBuf::from);
        let mut also_flags: Vec<String> = std::env::var("SHARDGATE_ALSO")
            .unwrap_or_default()
            .split(';')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        if also_flags.is_empty() && also_bin.is_some() {
            also_flags.push(String::new());
        }
        let mut also = Vec::new();
        for (i, f) in also_flags.iter().enumerate() {
            let bin = also_bin.as_ref().unwrap_or(&cluster.spec.shardgate_bin);
            also.push(start_extra(&dir, bin, &cluster.spec.etcd_addr(), f, i).await);
        }
        // Interrupted (Ctrl-C, SIGTERM): the tablets and etcd run in their own
        // process groups and would outlive the harness, so stop them here.
        let mut started: Vec<i32> = cluster.procs.iter().map(|p| p.pid).collect();
        started.push(haproxy.id() as i32);
        started.extend(also.iter().map(|(c, _)| c.id() as i32));
        let dir2 = dir.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("[load] interrupted: stopping the servers this run started");
            let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0;
            for &pid in started.iter().rev() {
                // SAFETY: kill(2) on PIDs this harness started; no memory is touched.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            for _ in 0..200 {
                if !started.iter().any(|&p| alive(p)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = std::fs::remove_dir_all(&dir2);
            std::process::exit(130);
        });

        let mut targets = vec![
            Target { name: "direct", port: ports[&100], user: "vt_app", db: "vt_commerce", pid: None, extra: &[] },
            Target { name: "haproxy", port: hp_port, user: "vt_app", db: "vt_commerce", pid: hp_pid, extra: &[] },
            Target { name: "shardgate", port: sg_port, user: "sb", db: "commerce", pid: sg_pid, extra: &[] },
            Target { name: "shardgate 2 shards", port: sg_port, user: "sb", db: "customer", pid: sg_pid, extra: &[] },
            // Explicit ids (no sequence in this keyspace).
            Target { name: "shardgate 2 shards (numeric)", port: sg_port, user: "sb", db: "ranged", pid: sg_pid, extra: &["--auto_inc=off"] },
            Target { name: "shardgate 2 shards (one mysqld)", port: sg_port, user: "sb", db: "colocated", pid: sg_pid, extra: &["--auto_inc=off"] },
        ];
        eprintln!("[load] preparing sbtest1 (unsharded, hashed, ranged and colocated)");
        sysbench(&targets[0], "oltp_read_write", "prepare", 1, 10, &[]);
        for t in &targets[3..] {
            sysbench(t, "oltp_read_write", "prepare", 1, 10, &[]);
        }
        settle(ports.values().copied()).await;
        for ((child, port), flags) in also.iter().zip(&also_flags) {
            let build = also_bin.as_ref().map(|b| format!(" ({})", b.display())).unwrap_or_default();
            let name: &'static str = Box::leak(format!("shardgate{build} {flags}").trim_end().to_string().into_boxed_str());
            targets.push(Target { name, port: *port, user: "sb", db: "commerce", pid: Some(child.id() as i32), extra: &[] });
            // And on the hashed 2-shard keyspace, where a change to what
            // goes to the tablets shows twice.
            let sharded: &'static str = Box::leak(format!("{name} 2 shards").into_boxed_str());
            targets.push(Target { name: sharded, port: *port, user: "sb", db: "customer", pid: Some(child.id() as i32), extra: &[] });
        }
        // `--unsharded`: the unsharded keyspace's targets only (goal 1's
        // A/Bs in a third of the time).
        let measured: Vec<&Target> = targets.iter().filter(|t| !unsharded_only || t.db.ends_with("commerce")).collect();

        // The mysqld processes behind each target, by its database.
        let pid_of: BTreeMap<u32, i32> = cluster
            .spec
            .tablets
            .iter()
            .map(|t| t.uid)
            .zip(cluster.procs.iter().filter(|p| p.name == "mariadbd").map(|p| p.pid))
            .collect();
        let tablets_of = |t: &Target| -> Vec<i32> {
            let uids: &[u32] = match t.db {
                "customer" => &[300, 400],
                "ranged" => &[500, 600],
                _ => &[100],
            };
            uids.iter().filter_map(|u| pid_of.get(u).copied()).collect()
        };

        let workloads: Vec<&str> = ["oltp_point_select", "oltp_read_only", "oltp_read_write"]
            .into_iter()
            .filter(|w| part("sysbench") && wanted(w))
            .collect();
        let mut results: BTreeMap<(String, u32, String), Vec<Run>> = BTreeMap::new();
        for &w in &workloads {
            for &th in &threads {
                for round in 0..rounds {
                    // Rotate the order each round so no target always runs first.
                    let mut order = measured.clone();
                    let n = order.len();
                    order.rotate_left(round % n);
                    for t in order {
                        let cpu0 = t.pid.map(proc_cpu_seconds);
                        let tablets = tablets_of(t);
                        let counters = Counters::read(&tablets);
                        let out = sysbench(t, w, "run", th, secs, &[]);
                        let mut r = parse(&out);
                        counters.fill(&Counters::read(&tablets), r.qps * secs as f64, &mut r);
                        if let (Some(pid), Some(c0)) = (t.pid, cpu0) {
                            let cpu = proc_cpu_seconds(pid) - c0;
                            let queries = r.qps * secs as f64;
                            r.cpu_us_per_query = (queries > 0.0).then(|| cpu * 1e6 / queries);
                            r.rss_mb = Some(proc_rss_mb(pid));
                        }
                        eprintln!("[load] {w} {th}t {}: {:.0} qps", t.name, r.qps);
                        results.entry((w.to_string(), th, t.name.to_string())).or_default().push(r);
                    }
                }
            }
        }

        // Goal 2's bound, with no proxy (from 2 threads up: the shards' run
        // splits the threads between them).
        let mut bounds: Vec<(&str, u32, f64, Option<f64>)> = Vec::new();
        if part("bound") {
            eprintln!("[load] goal 2's bound: the shards' share of each workload, with no proxy");
            let shard = |port: u16| Target { name: "shard tablet", port, user: "vt_app", db: "vt_customer", pid: None, extra: &[] };
            let shards = [shard(ports[&300]), shard(ports[&400])];
            for w in ["oltp_point_select", "oltp_read_only"] {
                if !wanted(w) {
                    continue;
                }
                for &th in threads.iter().filter(|&&t| t >= 2) {
                    let (mut two, mut one) = (Vec::new(), Vec::new());
                    for _ in 0..rounds {
                        let (a, b) = no_proxy_bound(&targets[0], [&shards[0], &shards[1]], w, th, secs);
                        two.push(a);
                        one.extend(b);
                    }
                    let (two, one) = (median_of(two), (!one.is_empty()).then(|| median_of(one)));
                    eprintln!("[load] {w} {th}t with no proxy: two shards' mysqlds {two:.2}× one{}", one.map(|o| format!(", ranges halved {o:.2}×")).unwrap_or_default());
                    bounds.push((w, th, two, one));
                }
            }
        }

        // Instructions per query: shardgate's user-space work, counted by
        // callgrind, which no neighbour on a shared machine disturbs (QPS and
        // CPU time here drift by tens of percent within minutes).
        let mut instructions: Vec<(&str, &str, u32, f64)> = Vec::new();
        if part("instructions") {
            if Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success()) {
                eprintln!("[load] instructions per query (shardgate under callgrind)");
                instructions = count_instructions(&dir, &cluster.spec.etcd_addr(), &cluster.spec.shardgate_bin, &targets[2..4]).await;
            } else {
                eprintln!("[load] instructions part skipped: valgrind is not installed (apt-get install valgrind)");
            }
        }

        if part("scatter") {
            eprintln!("[load] large scatters over 2 shards");
        }
        let mut scatters = Vec::new();
        if let Some(pid) = sg_pid.filter(|_| part("scatter")) {
            let grow = format!("insert into sbtest1 (k, c, pad) values {}", vec!["(1, 'c', 'pad')"; 1000].join(", "));
            for extra in [0usize, 90_000] {
                // Grow the sharded table (ids from its sequence) for the larger run.
                if extra > 0 {
                    let mut conn = mysql_async::Conn::new(client_opts(sg_port, "sb", "customer")).await.expect("connect");
                    for _ in 0..extra / 1000 {
                        conn.query_drop(&grow).await.expect("grow sbtest1");
                    }
                }
                // The third is a grouped aggregation with a group per row:
                // folded as the shards' sorted groups pass.
                for sql in [
                    "select * from sbtest1",
                    "select * from sbtest1 order by c, id",
                    "select id, count(*), max(c) from sbtest1 group by id",
                ] {
                    let r = scatter_stream(sg_port, pid, sql).await;
                    eprintln!("[load] {sql}: {} rows, first after {:.1} ms of {:.1} ms, RSS +{:.1} MB", r.0, r.1, r.2, r.4);
                    scatters.push((sql, r));
                }
            }
        }

        // 4000 connects a storm (1000 before session 33: a storm of a tenth
        // of a second swung by a fifth between runs). Set SHARDGATE_STORM
        // to connect more times (to profile the connect path).
        let storm: usize = std::env::var("SHARDGATE_STORM").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
        // Five interleaved rounds, median per target: one storm takes a
        // fraction of a second, so single runs swing with the machine.
        const STORM_ROUNDS: usize = 5;
        if part("connect") {
            eprintln!("[load] connect storms ({storm} connects, 8 at a time, {STORM_ROUNDS} rounds)");
        }
        // The unsharded keyspace's targets, extra shardgates included.
        let storm_targets: Vec<&Target> =
            if part("connect") { targets.iter().filter(|t| t.db.ends_with("commerce")).collect() } else { Vec::new() };
        // Three first queries: a pool's validation query, which shardgate
        // (like vtgate) answers without a tablet; a point select, which
        // every target sends to MariaDB; and that point select after the
        // four SETs Perl's DBD::MariaDB sends at every connect.
        const POINT: &str = "select c from sbtest1 where id = 1";
        const STORM_QUERIES: [(&str, &[&str]); 3] = [
            ("`select 1`", &["select 1"]),
            ("`select c from sbtest1 where id = 1`", &[POINT]),
            (
                "DBD::MariaDB's four `SET`s, then the point select",
                &[
                    "SET NAMES 'utf8mb4'",
                    "SET character_set_server = 'utf8mb4'",
                    "SET collation_connection = 'utf8mb4_unicode_ci'",
                    "SET collation_server = 'utf8mb4_unicode_ci'",
                    POINT,
                ],
            ),
        ];
        let mut storms: Vec<(&str, &str, f64, Option<f64>)> = Vec::new();
        for (query, statements) in STORM_QUERIES {
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); storm_targets.len()];
            // The proxy's CPU over all rounds, per connection.
            let mut cpu: Vec<f64> = vec![0.0; storm_targets.len()];
            for _ in 0..STORM_ROUNDS {
                for ((t, r), c) in storm_targets.iter().zip(rates.iter_mut()).zip(cpu.iter_mut()) {
                    let c0 = t.pid.map(proc_cpu_seconds);
                    r.push(connect_storm(t.port, t.user, t.db, statements, storm, 8).await);
                    if let (Some(pid), Some(c0)) = (t.pid, c0) {
                        *c += proc_cpu_seconds(pid) - c0;
                    }
                }
            }
            for ((t, mut r), c) in storm_targets.iter().zip(rates).zip(cpu) {
                r.sort_by(f64::total_cmp);
                let per = t.pid.map(|_| c * 1e6 / (storm / 8 * 8 * STORM_ROUNDS) as f64);
                storms.push((query, t.name, r[r.len() / 2], per));
            }
        }

        if part("idle") {
            eprintln!("[load] 10,000 idle logged-in clients of shardgate");
        }
        let rss_before = sg_pid.map(proc_rss_mb).unwrap_or(0.0);
        // Logged-in clients that ran a query on a tablet (what an idle
        // application pool holds), not bare TCP connections.
        use futures_util::StreamExt as _;
        let idle: Vec<mysql_async::Conn> = futures_util::stream::iter(0..if part("idle") { 10_000 } else { 0 })
            .map(|_| async move {
                let mut c = mysql_async::Conn::new(client_opts(sg_port, "sb", "commerce")).await.ok()?;
                c.query_drop("select c from sbtest1 where id = 1").await.ok()?;
                Some(c)
            })
            .buffer_unordered(16)
            .filter_map(|c| async move { c })
            .collect()
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_idle = sg_pid.map(proc_rss_mb).unwrap_or(0.0);
        let idle_count = idle.len();
        drop(idle);

        let mut md = String::new();
        // The median of the rounds (the mean of the middle two for an even count).
        let median = |v: &[Run], f: fn(&Run) -> f64| median_of(v.iter().map(f).collect());
        // The parts `--only` left out print nothing.
        if !results.is_empty() {
            let _ = writeln!(md, "Each figure is the median of {rounds} round(s).\n");
            let _ = writeln!(md, "| workload | threads | target | QPS | vs direct | vs HAProxy | avg ms | p95 ms | p99 ms | proxy CPU µs/query | proxy RSS MB | tablets CPU µs/query | sysbench CPU µs/query | machine idle % |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for ((w, th, name), runs) in &results {
                let qps = median(runs, |r| r.qps);
                let direct = results.get(&(w.clone(), *th, "direct".into())).map(|v| median(v, |r| r.qps)).unwrap_or(0.0);
                let hap = results.get(&(w.clone(), *th, "haproxy".into())).map(|v| median(v, |r| r.qps)).unwrap_or(0.0);
                let cpu = median(runs, |r| r.cpu_us_per_query.unwrap_or(0.0));
                let rss = runs.iter().filter_map(|r| r.rss_mb).fold(0.0, f64::max);
                let _ = writeln!(
                    md,
                    "| {w} | {th} | {name} | {qps:.0} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} |",
                    if direct > 0.0 { qps / direct } else { 0.0 },
                    if hap > 0.0 { format!("{:.2}", qps / hap) } else { "-".into() },
                    median(runs, |r| r.avg_ms),
                    median(runs, |r| r.p95_ms),
                    median(runs, |r| r.p99_ms),
                    if runs[0].cpu_us_per_query.is_some() { format!("{cpu:.1}") } else { "-".into() },
                    if rss > 0.0 { format!("{rss:.0}") } else { "-".into() },
                    median(runs, |r| r.tablets_us_per_query),
                    median(runs, |r| r.client_us_per_query),
                    median(runs, |r| r.idle_pct),
                );
            }
            let _ = writeln!(md);
        }
        // Goal 2 compares the sharded keyspaces with the unsharded one.
        if !results.is_empty() && !unsharded_only {
            let _ = writeln!(md, "| workload | threads | 2 shards (hash) / unsharded | 2 shards (numeric) / unsharded | 2 shards (hash, one mysqld) / unsharded |");
            let _ = writeln!(md, "|---|---|---|---|---|");
            for ((w, th, name), runs) in &results {
                if name != "shardgate" {
                    continue;
                }
                let base = median(runs, |r| r.qps);
                let ratio = |target: &str| {
                    results
                        .get(&(w.clone(), *th, target.to_string()))
                        .filter(|_| base > 0.0)
                        .map(|v| format!("{:.2}", median(v, |r| r.qps) / base))
                        .unwrap_or_else(|| "-".into())
                };
                let _ = writeln!(
                    md,
                    "| {w} | {th} | {} | {} | {} |",
                    ratio("shardgate 2 shards"),
                    ratio("shardgate 2 shards (numeric)"),
                    ratio("shardgate 2 shards (one mysqld)")
                );
            }
            let _ = writeln!(md);
        }
        if !bounds.is_empty() {
            let _ = writeln!(md, "Goal 2's bound: the tablets' share of each workload run straight at them (no proxy, no BEGIN/COMMIT), against the whole workload on the unsharded tablet; client transactions per second, median of {rounds} round(s).\n");
            let _ = writeln!(md, "| workload | threads | no proxy: two shards' mysqlds / one mysqld | no proxy: one mysqld, ranges halved / whole |");
            let _ = writeln!(md, "|---|---|---|---|");
            for (w, th, two, one) in &bounds {
                let one = one.map(|o| format!("{o:.2}")).unwrap_or_else(|| "-".into());
                let _ = writeln!(md, "| {w} | {th} | {two:.2} | {one} |");
            }
            let _ = writeln!(md);
        }
        // The parts `--only` left out print nothing.
        if !storms.is_empty() {
            let _ = writeln!(md, "| connect + auth + first query ({storm}, 8 at a time; median of {STORM_ROUNDS} rounds) | target | connects/s | vs HAProxy | proxy CPU µs/connect |");
            let _ = writeln!(md, "|---|---|---|---|---|");
            for (query, name, rate, per) in &storms {
                let hap_rate = storms.iter().find(|s| s.0 == *query && s.1 == "haproxy").map(|s| s.2).unwrap_or(0.0);
                let vs = if hap_rate > 0.0 { format!("{:.2}", rate / hap_rate) } else { "-".into() };
                let per = per.map(|p| format!("{p:.0}")).unwrap_or_else(|| "-".into());
                let _ = writeln!(md, "| {query} | {name} | {rate:.0} | {vs} | {per} |");
            }
            let _ = writeln!(md);
        }
        if idle_count > 0 {
            let _ = writeln!(md, "Idle connections: {idle_count} logged-in clients (each ran a point select) held open to shardgate; RSS {rss_before:.0} MB before, {rss_idle:.0} MB with them open.");
            let _ = writeln!(md);
        }
        if !instructions.is_empty() {
            let _ = writeln!(md, "| shardgate user-space instructions per query (callgrind) | workload | threads | instructions |");
            let _ = writeln!(md, "|---|---|---|---|");
            for (name, w, th, ir) in &instructions {
                let _ = writeln!(md, "| {name} | {w} | {th} | {ir:.0} |");
            }
            let _ = writeln!(md);
        }
        if !scatters.is_empty() {
            let _ = writeln!(md, "| scatter over 2 shards | rows | first row ms | all rows ms | shardgate RSS MB before | RSS growth MB |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for (sql, (rows, first, total, before, growth)) in &scatters {
                let _ = writeln!(md, "| `{sql}` | {rows} | {first:.1} | {total:.1} | {before:.0} | {growth:.1} |");
            }
        }
        println!("{md}");
        let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/load-results.md"), &md);
        let _ = haproxy.kill();
        let _ = haproxy.wait();
        for (mut child, _) in also {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
