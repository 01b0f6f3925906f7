//! Topology end to end: VSchema changes reach a running shardgate without a
//! restart (etcd and file stores), bad ones are rejected while serving goes
//! on, tablets come and go (and may name their database), and the `ctl` /
//! `vschema check` commands work.

mod common;

use common::*;
use mysql_async::prelude::*;

/// `ctl add-tablet` for a tablet of shard 0 of `keyspace`, and `extra`.
fn add_tablet_args(
    alias: &str,
    keyspace: &str,
    kind: &str,
    port: u16,
    extra: &[&str],
) -> Vec<String> {
    add_tablet_args_in(alias, keyspace, "0", kind, port, extra)
}

/// [`add_tablet_args`] for a tablet of `shard`.
fn add_tablet_args_in(
    alias: &str,
    keyspace: &str,
    shard: &str,
    kind: &str,
    port: u16,
    extra: &[&str],
) -> Vec<String> {
    let port = port.to_string();
    // One argument: a shard name may begin with a dash (`-80`).
    let shard = format!("--shard={shard}");
    let mut args = vec![
        "add-tablet",
        "--alias",
        alias,
        "--keyspace",
        keyspace,
        &shard,
        "--type",
        kind,
        "--mysql-port",
        &port,
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

/// Runs `shardgate ctl` off the runtime's threads (it waits for the
/// process).
async fn run_ctl(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&args)
    })
    .await
    .unwrap()
}

/// Arguments, owned.
fn own(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The admin login on a test's own mysqld, in database `db`.
async fn dba_at(port: u16, db: &'static str) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("vt_dba"))
        .db_name(Some(db));
    mysql_async::Conn::new(opts).await.unwrap()
}

/// A shard of its own for a test that changes server-wide state
/// (read_only, replication): a mysqld per uid in a temp dir, each the
/// tablet `zone1-<uid>` of `ks`/0 (`extra` added to its add-tablet), the
/// first made the primary and the others its replicas. The dir, the
/// servers' ports and their PIDs.
async fn own_shard(
    tag: &str,
    ks: &str,
    uids: &[u32],
    extra: &[&str],
) -> (std::path::PathBuf, Vec<u16>, Vec<i32>) {
    own_shard_in(tag, ks, "0", uids, extra).await
}

/// [`own_shard`] for shard `shard` of `ks`.
async fn own_shard_in(
    tag: &str,
    ks: &str,
    shard_name: &str,
    uids: &[u32],
    extra: &[&str],
) -> (std::path::PathBuf, Vec<u16>, Vec<i32>) {
    use shardgate::local::{init_tablet_users, start_mariadb};
    let dir = temp_dir(tag);
    let (mut ports, mut pids) = (Vec::new(), Vec::new());
    for (i, &uid) in uids.iter().enumerate() {
        let port = free_port();
        let data = dir.join(uid.to_string());
        let p = start_mariadb(&data, port, uid).await.unwrap();
        track_pid(p.pid);
        init_tablet_users(&data.join("mysql.sock"), &format!("vt_{ks}"))
            .await
            .unwrap();
        let alias = format!("zone1-{uid}");
        let kind = if i == 0 { "primary" } else { "replica" };
        assert_ok(
            &run_ctl(add_tablet_args_in(
                &alias, ks, shard_name, kind, port, extra,
            ))
            .await,
        );
        ports.push(port);
        pids.push(p.pid);
    }
    let primary = format!("zone1-{}", uids[0]);
    let shard = format!("{ks}/{shard_name}");
    assert_ok(&run_ctl(own(&["init-shard-primary", &shard, &primary])).await);
    (dir, ports, pids)
}

/// Applies to keyspace `ks` a VSchema of one table, `t`, hashed on `id`
/// (written in `dir`).
async fn apply_hashed_t(dir: &std::path::Path, ks: &str) {
    let file = dir.join(format!("{ks}.json"));
    std::fs::write(
        &file,
        r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"t": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#,
    )
    .unwrap();
    let file = file.display().to_string();
    assert_ok(&run_ctl(own(&["apply-vschema", "--vschema-file", &file, ks])).await);
}

/// Runs `shardgate ctl` with `args`, which must succeed; what it printed.
async fn ctl_says(args: Vec<String>) -> String {
    let out = run_ctl(args).await;
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn vschema_tables(conn: &mut mysql_async::Conn) -> Vec<String> {
    conn.query("show vschema tables").await.unwrap()
}

/// Whether the gate on `port` comes to list `table` in keyspace `ks`'s
/// VSchema within ten seconds.
async fn comes_to_serve(port: u16, ks: &'static str, table: &'static str) -> bool {
    let seen = eventually(10, || async move {
        let mut conn = connect_port(port, Some(ks)).await;
        vschema_tables(&mut conn)
            .await
            .contains(&table.to_string())
            .then_some(())
    })
    .await;
    seen.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vschema_change_in_etcd_is_seen_without_restart() {
    let c = cluster();
    let dir = temp_dir("vs");
    let mut conn = connect(Some("commerce")).await;
    assert!(!vschema_tables(&mut conn)
        .await
        .contains(&"added_later".to_string()));

    let good = dir.join("commerce.json");
    std::fs::write(
        &good,
        r#"{"sharded": false, "tables": {"product": {}, "added_later": {}}}"#,
    )
    .unwrap();
    let out = ctl(&[
        "apply-vschema",
        "--vschema-file",
        &good.display().to_string(),
        "commerce",
    ]);
    assert_ok(&out);
    assert!(
        comes_to_serve(c.port, "commerce", "added_later").await,
        "the new VSchema never reached shardgate"
    );

    // ctl validates first: a bad document is refused with a message naming the fault.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"sharded": true, "tables": {"t1": {"column_vindexes": [{"column": "id", "name": "missing"}]}}}"#,
    )
    .unwrap();
    let out = ctl(&[
        "apply-vschema",
        "--vschema-file",
        &bad.display().to_string(),
        "customer",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t1") && err.contains("missing"), "{err}");

    // get-vschema prints what was applied.
    let out = ctl(&["get-vschema", "commerce"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("added_later"));

    // Put the example VSchema back.
    let orig = dir.join("orig.json");
    std::fs::write(&orig, shardgate::local::COMMERCE_VSCHEMA).unwrap();
    let out = ctl(&[
        "apply-vschema",
        "--vschema-file",
        &orig.display().to_string(),
        "commerce",
    ]);
    assert_ok(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_topology_reloads_and_rejects_bad_updates() {
    // Copy the cluster's topology into a directory and serve from it.
    let dir = temp_dir("filetopo");
    let records = store().await.list_all().await.unwrap();
    let files = shardgate::topo::store::TopoStore::connect(
        shardgate::topo::store::TopoImpl::File,
        &dir.display().to_string(),
        "/vitess",
    )
    .await
    .unwrap();
    for (k, v) in &records {
        files.put(k, v).await.unwrap();
    }
    let file_gate = || {
        let args = own(&[
            "--topo-implementation",
            "file",
            "--topo-global-server-address",
            &dir.display().to_string(),
            "--vschema_ddl_authorized_users=%",
        ]);
        async move { spawn_shardgate(&args).await }
    };
    // commerce's VSchema: bad (a misspelt key), or good (one table).
    let commerce_vschema = |good: bool| {
        let files = files.clone();
        async move {
            let v: &[u8] = match good {
                true => br#"{"sharded": false, "tables": {"from_file": {}}}"#,
                false => br#"{"sharded": false, "tablez": {}}"#,
            };
            files
                .put("global/keyspaces/commerce/VSchema", v)
                .await
                .unwrap();
        }
    };
    let (port, web) = file_gate().await;
    let mut conn = connect_port(port, Some("commerce")).await;
    assert_eq!(
        rows(&mut conn, "select @@port").await,
        vec![vec![Some(tablet_port(100).to_string())]]
    );
    assert!(vschema_tables(&mut conn)
        .await
        .contains(&"product".to_string()));

    // A bad VSchema lands in the store: rejected, counted, serving goes on.
    commerce_vschema(false).await;
    let rejected = eventually(10, || async move {
        let vars = http_get(web, "/debug/vars").await;
        vars.contains("\"TopoRejected\":1").then_some(())
    })
    .await;
    assert!(rejected.is_some(), "bad VSchema was not rejected");
    // The keyspace says why its last good version still serves.
    let keyspaces = rows(&mut conn, "show vschema keyspaces").await;
    let commerce = keyspaces
        .iter()
        .find(|r| r[0].as_deref() == Some("commerce"))
        .unwrap();
    let why = commerce[3].clone().unwrap_or_default();
    assert!(why.contains("tablez"), "{keyspaces:?}");
    let customer = keyspaces
        .iter()
        .find(|r| r[0].as_deref() == Some("customer"))
        .unwrap();
    assert_eq!(customer[3].as_deref(), Some(""));
    assert!(vschema_tables(&mut conn)
        .await
        .contains(&"product".to_string()));
    // Another keyspace's update goes through meanwhile.
    files
        .put("global/keyspaces/fresh/Keyspace", b"{}")
        .await
        .unwrap();
    files
        .put("global/keyspaces/fresh/shards/0/Shard", b"{}")
        .await
        .unwrap();
    let fresh = eventually(10, || async move {
        let mut c = connect_port(port, None).await;
        let names = rows(&mut c, "show keyspaces").await;
        names
            .contains(&vec![Some("fresh".to_string())])
            .then_some(())
    })
    .await;
    assert!(
        fresh.is_some(),
        "a keyspace's update was held back by another's"
    );
    assert!(vschema_tables(&mut conn)
        .await
        .contains(&"product".to_string()));
    assert_eq!(
        rows(&mut conn, "select 2").await,
        vec![vec![Some("2".into())]]
    );

    // A good one is picked up.
    commerce_vschema(true).await;
    let seen = eventually(10, || async move {
        let mut conn = connect_port(port, Some("commerce")).await;
        (vschema_tables(&mut conn).await == vec!["from_file".to_string()]).then_some(())
    })
    .await;
    assert!(seen.is_some());
    let status = http_get(web, "/debug/status").await;
    assert!(status.contains("zone1-100"), "{status}");

    // A gate started while a keyspace is invalid (here a bad VSchema; as
    // well one whose shards are being added one by one) comes up serving
    // the others, counts the rejection, and serves that one once it is
    // valid again.
    commerce_vschema(false).await;
    let (port, web) = file_gate().await;
    let vars = http_get(web, "/debug/vars").await;
    assert!(vars.contains("\"TopoRejected\":1"), "{vars}");
    let refused = try_connect_port(port, Some("commerce")).await;
    assert!(refused.is_err(), "an invalid keyspace was served");
    let mut other = connect_port(port, Some("customer")).await;
    assert_eq!(
        rows(&mut other, "show vitess_target").await,
        vec![vec![Some("customer".to_string())]]
    );
    commerce_vschema(true).await;
    let served = eventually(10, || async move {
        let mut conn = try_connect_port(port, Some("commerce")).await.ok()?;
        (vschema_tables(&mut conn).await == vec!["from_file".to_string()]).then_some(())
    })
    .await;
    assert!(served.is_some(), "the valid topology was not picked up");
    // ALTER VSCHEMA writes the file store too.
    let mut conn = connect_port(port, Some("commerce")).await;
    conn.query_drop("alter vschema add table from_sql")
        .await
        .unwrap();
    assert_eq!(
        vschema_tables(&mut conn).await,
        vec!["from_file".to_string(), "from_sql".to_string()]
    );
    let stored = files
        .get("global/keyspaces/commerce/VSchema")
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&stored).contains("from_sql"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablets_come_and_go() {
    let c = cluster();
    let mut conn = connect(Some("commerce@rdonly")).await;
    assert_eq!(
        rows(&mut conn, "select @@port").await,
        vec![vec![Some(tablet_port(102).to_string())]]
    );
    let out = ctl(&["delete-tablet", "zone1-102"]);
    assert_ok(&out);
    let gone = eventually(10, || {
        let port = c.port;
        async move {
            // The driver itself runs a query at connect, so either step may fail.
            let mut conn = connect_port(port, None).await;
            conn.query_drop("use commerce@rdonly").await.ok()?;
            // (`select 1` needs no tablet: shardgate answers it.)
            match conn.query_drop("select @@port").await {
                Err(e)
                    if err_code(&e) == Some(1105)
                        && e.to_string().contains("no healthy tablet") =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    assert!(
        gone.is_some(),
        "rdonly reads still served after the tablet was deleted"
    );

    let out = ctl(&[
        "add-tablet",
        "--alias",
        "zone1-102",
        "--keyspace",
        "commerce",
        "--shard",
        "0",
        "--type",
        "rdonly",
        "--mysql-port",
        &tablet_port(102).to_string(),
    ]);
    assert_ok(&out);
    let back = eventually(10, || {
        let port = c.port;
        async move {
            let mut conn = connect_port(port, None).await;
            conn.query_drop("use commerce@rdonly").await.ok()?;
            let p: Option<u16> = conn.query_first("select @@port").await.ok().flatten();
            p.filter(|p| *p == tablet_port(102))
        }
    })
    .await;
    assert!(back.is_some());
}

#[test]
fn vschema_check_command() {
    let dir = temp_dir("check");
    let good = dir.join("good.json");
    std::fs::write(&good, shardgate::local::CUSTOMER_VSCHEMA).unwrap();
    let out = shardgate_cmd(&["vschema", "check", &good.display().to_string()]);
    assert_ok(&out);
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"sharded": true, "vindexes": {"v": {"type": "no_such_vindex"}}}"#,
    )
    .unwrap();
    let out = shardgate_cmd(&[
        "vschema",
        "check",
        &good.display().to_string(),
        &bad.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_vindex"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_serves_the_database_it_names() {
    let c = cluster();
    // A keyspace of its own in tablet 100's mysqld, in a database that is
    // not `vt_{keyspace}` (vttablet's --init_db_name_override).
    let mut t = connect_tablet(100).await;
    t.query_drop(
        "create database if not exists elsewhere_db; \
         create table if not exists elsewhere_db.t (id int primary key); \
         replace into elsewhere_db.t values (7)",
    )
    .await
    .unwrap();
    let args = add_tablet_args(
        "zone1-150",
        "elsewhere",
        "primary",
        tablet_port(100),
        &["--db-name", "elsewhere_db"],
    );
    ctl_says(args).await;
    let seen = eventually(10, || {
        let port = c.port;
        async move {
            let mut conn = connect_port(port, None).await;
            let id: Option<u32> = conn
                .query_first("select id from elsewhere.t")
                .await
                .ok()
                .flatten();
            id
        }
    })
    .await;
    // `vt_elsewhere` does not exist: the row came from the named database.
    assert_eq!(seen, Some(7));
    let out = ctl(&["delete-tablet", "zone1-150"]);
    assert_ok(&out);
}

/// A replica that does not answer stops taking reads once the health
/// check finds it down: every read goes to the replica that answers, and
/// SHOW VITESS_TABLETS and /debug/status say which one is not serving.
/// Without the checks, every other read would go to the dead one and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_around_a_replica_that_is_down() {
    let c = cluster();
    // A keyspace of its own: its primary and one replica are tablets 100
    // and 101's servers (101 replicates 100), the other replica's port
    // has nothing listening.
    let mut t = connect_tablet(100).await;
    t.query_drop("create database if not exists health_db")
        .await
        .unwrap();
    let dead = free_port();
    for (alias, kind, port) in [
        ("zone1-160", "primary", tablet_port(100)),
        ("zone1-161", "replica", tablet_port(101)),
        ("zone1-162", "replica", dead),
    ] {
        let args = add_tablet_args(alias, "healthks", kind, port, &["--db-name", "health_db"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_ok(&ctl(&args));
    }
    // (Empty until the shardgate has the keyspace.)
    let states = |port: u16| async move {
        let Ok(mut conn) = try_connect_port(port, Some("healthks")).await else {
            return Default::default();
        };
        let rows = rows(&mut conn, "show vitess_tablets").await;
        rows.into_iter()
            .filter(|r| r[1].as_deref() == Some("healthks"))
            .map(|r| (r[5].clone().unwrap(), r[4].clone().unwrap()))
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let checked = eventually(15, || async {
        let s = states(c.port).await;
        (s.get("zone1-162").map(String::as_str) == Some("NOT_SERVING")).then_some(s)
    })
    .await
    .expect("the dead replica found not serving");
    assert_eq!(checked["zone1-160"], "SERVING");
    assert_eq!(checked["zone1-161"], "SERVING");
    // vtgate's count of serving tablets per target, which tools wait on.
    let vars = http_get(c.web_port, "/debug/vars").await;
    let vars: serde_json::Value =
        serde_json::from_str(vars.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let serving = &vars["HealthcheckConnections"];
    assert_eq!(serving["healthks.0.primary"], 1, "{serving}");
    assert_eq!(serving["healthks.0.replica"], 1, "{serving}");
    let metrics = http_get(c.web_port, "/metrics").await;
    let line = "vtgate_healthcheck_connections{keyspace=\"healthks\",shard_name=\"0\",tablet_type=\"replica\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{metrics}");

    let mut conn = connect_port(c.port, Some("healthks@replica")).await;
    for i in 0..20 {
        let port: Result<Option<u16>, _> = conn.query_first("select @@port").await;
        assert_eq!(port.ok().flatten(), Some(tablet_port(101)), "read {i}");
    }
    let status = http_get(c.web_port, "/debug/status").await;
    let row = status
        .split("<tr>")
        .find(|r| r.contains("<td>zone1-162</td>"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains("Down: cannot connect"), "{row}");

    // Without health checks, a read that finds the dead replica unreachable
    // goes to the other one: every read is still answered, and SHOW
    // VITESS_TABLETS knows no better than SERVING.
    let (port, _) = spawn_shardgate(&["--health-check-interval-ms".into(), "0".into()]).await;
    let unchecked = eventually(10, || async {
        let s = states(port).await;
        (s.len() == 3).then_some(s)
    })
    .await
    .expect("the keyspace on a shardgate without health checks");
    assert_eq!(unchecked["zone1-162"], "SERVING");
    let mut conn = connect_port(port, Some("healthks@replica")).await;
    for i in 0..10 {
        let port: Result<Option<u16>, _> = conn.query_first("select @@port").await;
        assert_eq!(
            port.ok().flatten(),
            Some(tablet_port(101)),
            "unchecked read {i}"
        );
    }

    // A shardgate whose login may read the tablets' data but not their
    // replication status (no SLAVE MONITOR): the replica answers, so it
    // serves, with its lag unknown.
    t.query_drop(
        "create user if not exists 'hc_limited'@'%'; \
         grant select on health_db.* to 'hc_limited'@'%'",
    )
    .await
    .unwrap();
    let (port, web) = spawn_shardgate(&["--db-app-user".into(), "hc_limited".into()]).await;
    let limited = eventually(15, || async {
        let status = http_get(web, "/debug/status").await;
        let row = status
            .split("<tr>")
            .find(|r| r.contains("<td>zone1-161</td>"))?
            .to_string();
        row.contains("lag unknown").then_some(row)
    })
    .await
    .expect("the replica checked by a login that cannot read its status");
    assert!(limited.contains("<td>Fit: lag unknown"), "{limited}");
    let seen = states(port).await;
    assert_eq!(seen.get("zone1-161").map(String::as_str), Some("SERVING"));
    let mut conn = connect_port(port, Some("healthks@replica")).await;
    let read: Option<u16> = conn.query_first("select @@port").await.unwrap();
    assert_eq!(read, Some(tablet_port(101)));

    for alias in ["zone1-160", "zone1-161", "zone1-162"] {
        assert_ok(&ctl(&["delete-tablet", alias]));
    }
}

/// `ctl planned-reparent-shard` under a steady stream of autocommit writes
/// (text and prepared) through a shardgate with `--enable_buffer`: no
/// client sees an error, every acknowledged write is on the primary
/// afterwards, the demoted primary replicates from the new one, and the
/// buffer counts what it held. The shard moves there and back, once
/// choosing its new primary itself. Two servers of its own: a reparent
/// changes server-wide state (read_only, replication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_reparent_under_writes_loses_none_of_them() {
    cluster();
    let (dir, ports, _) = own_shard("reparent", "failks", &[950, 951], &["--sharded"]).await;
    // Sharded (one shard holding the whole range): inserts and updates
    // take the multi-shard path, prepared ones the single-shard one.
    apply_hashed_t(&dir, "failks").await;
    let dba = |port: u16| dba_at(port, "vt_failks");
    dba(ports[0])
        .await
        .query_drop("create table t (id bigint primary key, via varchar(10))")
        .await
        .unwrap();
    let (buffered, buffered_web) = spawn_shardgate(&own(&[
        "--enable_buffer",
        "--buffer_min_time_between_failovers",
        "0s",
    ]))
    .await;
    let (plain, plain_web) = spawn_shardgate(&[]).await;
    eventually(15, || async move {
        let mut probe = try_connect_port(buffered, Some("failks")).await.ok()?;
        probe.query_drop("select 1 from t").await.ok()
    })
    .await
    .expect("the new keyspace served");
    let mut probe = connect_port(buffered, Some("failks")).await;

    // A primary made read-only by hand, with no reparent behind it: a
    // shardgate without the buffer fails the write at once, one with it
    // holds the write for its window, then fails it the same way.
    let mut primary = dba(ports[0]).await;
    primary
        .query_drop("set global read_only = 1")
        .await
        .unwrap();
    let mut p = connect_port(plain, Some("failks")).await;
    let e = p
        .query_drop("insert into t (id, via) values (1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1290), "{e}");
    let (short, short_web) =
        spawn_shardgate(&own(&["--enable_buffer", "--buffer_window", "300ms"])).await;
    let mut s = connect_port(short, Some("failks")).await;
    let t0 = std::time::Instant::now();
    let e = s
        .query_drop("insert into t (id, via) values (1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1290), "{e}");
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    let evicted = buffer_var(short_web, "BufferRequestsEvicted").await;
    assert_eq!(evicted, 1);
    // Made writable again while a write is held (as when a reparent is
    // undone): the held write goes through on the same primary.
    let held_write = tokio::spawn(async move {
        let mut b = connect_port(buffered, Some("failks")).await;
        let t0 = std::time::Instant::now();
        let res = b
            .query_drop("insert into t (id, via) values (2, 'held')")
            .await;
        (res, t0.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    primary
        .query_drop("set global read_only = 0")
        .await
        .unwrap();
    let (res, took) = held_write.await.unwrap();
    res.expect("the held write");
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    assert_eq!(buffer_var(buffered_web, "BufferRequestsDrained").await, 1);
    assert_eq!(buffer_var(plain_web, "BufferRequestsBuffered").await, 0);

    // Writers: three by text, one by prepared statement, each its own ids.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut conn = connect_port(buffered, Some("failks")).await;
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut id = (w + 1) * 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                let res = match w {
                    3 => {
                        conn.exec_drop("insert into t (id, via) values (?, 'prepared')", (id,))
                            .await
                    }
                    // Each insert followed by an update of it.
                    2 => match conn
                        .query_drop(format!("insert into t (id, via) values ({id}, 'text')"))
                        .await
                    {
                        Ok(()) => {
                            conn.query_drop(format!("update t set via = 'updated' where id = {id}"))
                                .await
                        }
                        e => e,
                    },
                    // Transactions: text, and prepared as sysbench's.
                    4 => {
                        let mut tx = conn
                            .start_transaction(mysql_async::TxOpts::default())
                            .await
                            .unwrap();
                        let res = async {
                            tx.query_drop(format!("select count(*) from t where id = {}", id - 1))
                                .await?;
                            tx.query_drop(format!("insert into t (id, via) values ({id}, 'txn')"))
                                .await?;
                            tx.query_drop(format!("update t set via = 'txn2' where id = {id}"))
                                .await
                        }
                        .await;
                        match res {
                            Ok(()) => tx.commit().await,
                            Err(e) => Err(e),
                        }
                    }
                    5 => {
                        let res = async {
                            conn.query_drop("begin").await?;
                            conn.exec_drop("select via from t where id = ?", (id - 1,))
                                .await?;
                            conn.exec_drop("insert into t (id, via) values (?, 'ptxn')", (id,))
                                .await?;
                            conn.query_drop("commit").await
                        }
                        .await;
                        if res.is_err() {
                            let _ = conn.query_drop("rollback").await;
                        }
                        res
                    }
                    _ => {
                        conn.query_drop(format!("insert into t (id, via) values ({id}, 'text')"))
                            .await
                    }
                };
                match res {
                    Ok(()) => acked.push(id),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (acked, errors)
        }));
    }
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(400));
    pause().await;
    // Each reparent succeeds, says what it did, and finds every
    // transaction under way ended in the grace period (the shardgate held
    // new ones).
    let reparent = |args: &[&str], said_what: &'static str| {
        let args = own(args);
        async move {
            let out = run_ctl(args).await;
            assert_ok(&out);
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(said.contains(said_what), "{said}");
            assert!(!said.contains("still open"), "{said}");
        }
    };
    reparent(
        &[
            "planned-reparent-shard",
            "failks/0",
            "--new-primary",
            "zone1-951",
        ],
        "zone1-951 is now the primary of failks/0 (was zone1-950)",
    )
    .await;
    pause().await;
    // Back, the new primary chosen by ctl: the only other replica.
    reparent(
        &["planned-reparent-shard", "failks/0"],
        "zone1-950 is now the primary of failks/0 (was zone1-951)",
    )
    .await;
    pause().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let (ids, errors) = writer.await.unwrap();
        if !errors.is_empty() {
            let vars = http_get(buffered_web, "/debug/vars").await;
            let n = errors.len();
            panic!(
                "writer {w}: {n} errors through the buffer: {:?}\n{vars}",
                &errors[..1]
            );
        }
        assert!(ids.len() > 10, "only {} writes", ids.len());
        acked.extend(ids);
    }
    acked.sort_unstable();
    // On the primary, every acknowledged write and nothing else; the
    // replica (the primary of a moment ago) catches up with it.
    let on = |port: u16| async move {
        let mut c = dba(port).await;
        c.query::<u64, _>("select id from t where id >= 1000000 order by id")
            .await
            .unwrap()
    };
    assert_eq!(on(ports[0]).await, acked, "the primary's rows");
    let mut p = dba(ports[0]).await;
    let updated: Vec<u64> = p
        .query("select id from t where via = 'updated' order by id")
        .await
        .unwrap();
    let by_w2: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| (3_000_000..4_000_000).contains(id))
        .collect();
    assert_eq!(updated, by_w2, "every acknowledged update");
    let replica = ports[1];
    let caught_up = eventually(15, || {
        let acked = &acked;
        async move { (on(replica).await == *acked).then_some(()) }
    })
    .await;
    assert!(caught_up.is_some(), "the replica did not catch up");
    let tablets = rows(&mut probe, "show vitess_tablets").await;
    let tablets: Vec<Vec<Option<String>>> = tablets
        .into_iter()
        .filter(|r| r[1].as_deref() == Some("failks"))
        .collect();
    let types: Vec<(String, String)> = tablets
        .iter()
        .map(|r| (r[5].clone().unwrap(), r[3].clone().unwrap()))
        .collect();
    // The primary's term began at the last reparent (RFC 3339, UTC).
    let term = tablets[0][7].clone().unwrap();
    assert!(
        term.len() == 20 && term.ends_with('Z') && term.as_bytes()[10] == b'T',
        "{term}"
    );
    assert_eq!(tablets[1][7].as_deref(), Some(""));
    assert_eq!(
        types,
        [
            ("zone1-950".to_string(), "PRIMARY".to_string()),
            ("zone1-951".to_string(), "REPLICA".to_string())
        ]
    );
    // Both failovers held writes (besides the one above), and sent every
    // one of them on.
    assert_eq!(buffer_var(buffered_web, "BufferStarts").await, 3);
    let held = buffer_var(buffered_web, "BufferRequestsBuffered").await;
    assert!(held >= 3, "{held} writes held");
    assert_eq!(
        buffer_var(buffered_web, "BufferRequestsDrained").await,
        held
    );
    assert_eq!(buffer_var(buffered_web, "BufferRequestsEvicted").await, 0);
    let metrics = http_get(buffered_web, "/metrics").await;
    let line =
        format!("vtgate_buffer_requests_drained{{keyspace=\"failks\",shard_name=\"0\"}} {held}");
    assert!(metrics.contains(&line), "{metrics}");

    // A replica that cannot catch up (its replication stopped, a write
    // since): the reparent gives up in time and undoes the demotion.
    let mut replica_conn = dba(replica).await;
    replica_conn.query_drop("stop slave").await.unwrap();
    probe
        .query_drop("insert into t (id, via) values (3, 'late')")
        .await
        .unwrap();
    let out = run_ctl(own(&[
        "planned-reparent-shard",
        "failks/0",
        "--new-primary",
        "zone1-951",
        "--wait-replicas-timeout",
        "500ms",
    ]))
    .await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("zone1-950 is the primary still"), "{said}");
    probe
        .query_drop("insert into t (id, via) values (4, 'after')")
        .await
        .expect("the primary is writable again");
    replica_conn.query_drop("start slave").await.unwrap();
}

/// A failover buffer counter of `failks.0` in a shardgate's `/debug/vars`.
async fn buffer_var(web: u16, name: &str) -> u64 {
    let vars = http_get(web, "/debug/vars").await;
    let vars: serde_json::Value =
        serde_json::from_str(vars.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    vars[name]["failks.0"].as_u64().unwrap_or(0)
}

/// `ctl emergency-reparent-shard` after the primary's mysqld is killed:
/// every write a replica had received survives. A replica named as the
/// new primary though it is behind (its replication was stopped) first
/// catches up with the most advanced one; the other replica then
/// replicates from it, and writes through shardgate go to it. When that
/// primary dies too, the reparent picks the most advanced replica itself
/// and leaves out the tablets that do not answer; the first dead primary,
/// back, rejoins with `reparent-tablet` and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_reparent_keeps_every_write_a_replica_received() {
    cluster();
    let (dir, ports, pids) = own_shard("ers", "ersks", &[970, 971, 972], &[]).await;
    let dba = |port: u16| dba_at(port, "vt_ersks");
    dba(ports[0])
        .await
        .query_drop("create table t (id bigint primary key)")
        .await
        .unwrap();
    let ids_on = |port: u16| async move {
        let mut c = dba(port).await;
        c.query::<u64, _>("select id from t order by id")
            .await
            .unwrap_or_default()
    };
    let has = |port: u16, n: u64| async move {
        eventually(15, || async move {
            (ids_on(port).await.len() as u64 == n).then_some(())
        })
        .await
        .is_some()
    };
    let (gate, _) = spawn_shardgate(&[]).await;
    let insert = |from: u64, to: u64| async move {
        let mut c = connect_port(gate, Some("ersks")).await;
        for id in from..=to {
            c.query_drop(format!("insert into t values ({id})"))
                .await
                .unwrap();
        }
    };
    eventually(15, || async move {
        let mut probe = try_connect_port(gate, Some("ersks")).await.ok()?;
        probe.query_drop("select 1 from t").await.ok()
    })
    .await
    .expect("the new keyspace served");
    insert(1, 20).await;
    assert!(has(ports[1], 20).await && has(ports[2], 20).await);
    // c falls behind; b receives everything.
    dba(ports[2]).await.query_drop("stop slave").await.unwrap();
    insert(21, 30).await;
    assert!(has(ports[1], 30).await);
    assert_eq!(ids_on(ports[2]).await.len(), 20);

    // SAFETY: a signal to a mysqld this test started.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let said = ctl_says(own(&[
        "emergency-reparent-shard",
        "ersks/0",
        "--new-primary",
        "zone1-972",
    ]))
    .await;
    assert!(said.contains("zone1-970 does not answer"), "{said}");
    assert!(
        said.contains("zone1-972 catches up with zone1-971"),
        "{said}"
    );
    assert!(
        said.contains("zone1-972 is now the primary of ersks/0 (was zone1-970)"),
        "{said}"
    );
    let all: Vec<u64> = (1..=30).collect();
    assert_eq!(ids_on(ports[2]).await, all, "the new primary's rows");
    // Writes through shardgate reach it, and b replicates them.
    let written = eventually(15, || async move {
        let mut c = try_connect_port(gate, Some("ersks")).await.ok()?;
        c.query_drop("insert into t values (31)").await.ok()
    })
    .await;
    assert!(
        written.is_some(),
        "no write through shardgate after the reparent"
    );
    assert_eq!(ids_on(ports[2]).await.len(), 31);
    assert!(
        has(ports[1], 31).await,
        "b does not replicate from the new primary"
    );
    let mut probe = connect_port(gate, Some("ersks")).await;
    let types: Vec<(String, String)> = rows(&mut probe, "show vitess_tablets")
        .await
        .into_iter()
        .filter(|r| r[1].as_deref() == Some("ersks"))
        .map(|r| (r[5].clone().unwrap(), r[3].clone().unwrap()))
        .collect();
    assert!(
        types.contains(&("zone1-972".to_string(), "PRIMARY".to_string())),
        "{types:?}"
    );

    // That primary dies too: the only replica that answers is chosen.
    insert(32, 35).await;
    assert!(has(ports[1], 35).await);
    unsafe { libc::kill(pids[2], libc::SIGKILL) };
    let said = ctl_says(own(&["emergency-reparent-shard", "ersks/0"])).await;
    assert!(
        said.contains("zone1-970 does not answer: left out"),
        "{said}"
    );
    assert!(
        said.contains("zone1-971 is now the primary of ersks/0 (was zone1-972)"),
        "{said}"
    );
    let all: Vec<u64> = (1..=35).collect();
    assert_eq!(ids_on(ports[1]).await, all);
    let written = eventually(15, || async move {
        let mut c = try_connect_port(gate, Some("ersks")).await.ok()?;
        c.query_drop("insert into t values (36)").await.ok()
    })
    .await;
    assert!(written.is_some(), "no write after the second reparent");

    // The first dead primary comes back: `reparent-tablet` points it at
    // the primary, and it catches up with everything written since.
    let back = shardgate::local::start_mariadb(&dir.join("970"), ports[0], 970)
        .await
        .unwrap();
    track_pid(back.pid);
    let said = ctl_says(own(&["reparent-tablet", "zone1-970"])).await;
    assert!(
        said.contains("zone1-970 replicates from zone1-971, caught up"),
        "{said}"
    );
    let all: Vec<u64> = (1..=36).collect();
    assert_eq!(ids_on(ports[0]).await, all, "the rejoined tablet's rows");
    let out = run_ctl(own(&["reparent-tablet", "zone1-971"])).await;
    assert!(!out.status.success(), "the primary itself was reparented");

    // The second dead primary comes back as a resumed cluster brings its
    // servers back (`local up`): the recorded primary is kept, and it
    // replicates from it, read-only.
    let back = shardgate::local::start_mariadb(&dir.join("972"), ports[2], 972)
        .await
        .unwrap();
    track_pid(back.pid);
    let creds = shardgate::admin::DbaCreds::default();
    let kept =
        shardgate::admin::resume_shard(&store().await, "ersks", "0", &creds, &Default::default())
            .await
            .unwrap();
    assert_eq!(kept.as_deref(), Some("zone1-971"));
    assert!(
        has(ports[2], 36).await,
        "the resumed tablet did not catch up"
    );
    let mut resumed = dba(ports[2]).await;
    let read_only: Option<u32> = resumed
        .query_first("select @@global.read_only")
        .await
        .unwrap();
    assert_eq!(read_only, Some(1));
}

/// `ctl set-keyspace-durability-policy --durability-policy semi_sync`: the
/// primary acknowledges a commit only once a replica has received it (a
/// write waits while no replica receives, and goes through when one does
/// again), and a reparent keeps the policy on the new primary; `none`
/// turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_acknowledges_a_write_only_once_a_replica_has_it() {
    cluster();
    let (_, ports, _) = own_shard("semisync", "semiks", &[980, 981], &[]).await;
    let ports: [u16; 2] = ports.try_into().unwrap();
    let bad = run_ctl(own(&[
        "set-keyspace-durability-policy",
        "semiks",
        "--durability-policy",
        "cross_cell",
    ]))
    .await;
    assert!(!bad.status.success());
    let out = run_ctl(own(&[
        "set-keyspace-durability-policy",
        "semiks",
        "--durability-policy",
        "semi_sync",
    ]))
    .await;
    assert_ok(&out);
    let dba = |port: u16| dba_at(port, "vt_semiks");
    let status = |port: u16, name: &'static str| async move {
        let mut c = dba(port).await;
        global_status(&mut c, name).await
    };
    dba(ports[0])
        .await
        .query_drop("create table t (id bigint primary key)")
        .await
        .unwrap();
    let clients = eventually(15, || async move {
        (status(ports[0], "Rpl_semi_sync_master_clients").await == 1).then_some(())
    })
    .await;
    assert!(
        clients.is_some(),
        "the replica never acknowledged as semi-sync"
    );
    let (gate, _) = spawn_shardgate(&[]).await;
    let ready = eventually(15, || async move {
        let mut c = try_connect_port(gate, Some("semiks")).await.ok()?;
        c.query_drop("select 1 from t").await.ok()
    })
    .await;
    assert!(ready.is_some(), "the new keyspace served");
    let mut c = connect_port(gate, Some("semiks")).await;
    let acked = status(ports[0], "Rpl_semi_sync_master_yes_tx").await;
    c.query_drop("insert into t values (1)").await.unwrap();
    assert_eq!(
        status(ports[0], "Rpl_semi_sync_master_yes_tx").await,
        acked + 1
    );

    // No replica receiving: the write waits; it is answered once one does.
    let mut replica = dba(ports[1]).await;
    replica.query_drop("stop slave io_thread").await.unwrap();
    let write =
        tokio::spawn(async move { c.query_drop("insert into t values (2)").await.map(|_| c) });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !write.is_finished(),
        "a write was acknowledged that no replica had"
    );
    replica.query_drop("start slave io_thread").await.unwrap();
    let mut c = tokio::time::timeout(std::time::Duration::from_secs(15), write)
        .await
        .expect("the write is answered once the replica receives again")
        .unwrap()
        .unwrap();
    // Received when acknowledged; applied soon after.
    let applied = eventually(15, || async move {
        let mut r = dba(ports[1]).await;
        let ids: Vec<u64> = r.query("select id from t order by id").await.ok()?;
        (ids == [1, 2]).then_some(())
    })
    .await;
    assert!(applied.is_some(), "the replica never applied the write");

    // A planned reparent: the new primary waits for acknowledgements too.
    let out = run_ctl(own(&["planned-reparent-shard", "semiks/0"])).await;
    assert_ok(&out);
    let enabled: Option<u32> = replica
        .query_first("select @@global.rpl_semi_sync_master_enabled")
        .await
        .unwrap();
    assert_eq!(enabled, Some(1));
    let clients = eventually(15, || async move {
        (status(ports[1], "Rpl_semi_sync_master_clients").await == 1).then_some(())
    })
    .await;
    assert!(clients.is_some(), "the old primary does not acknowledge");
    let written = eventually(15, || async move {
        let mut w = try_connect_port(gate, Some("semiks")).await.ok()?;
        w.query_drop("insert into t values (3)").await.ok()
    })
    .await;
    assert!(written.is_some());

    // `none`: a write goes through with no replica receiving.
    let out = run_ctl(own(&[
        "set-keyspace-durability-policy",
        "semiks",
        "--durability-policy",
        "none",
    ]))
    .await;
    assert_ok(&out);
    dba(ports[0])
        .await
        .query_drop("stop slave io_thread")
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.query_drop("insert into t values (4)"),
    )
    .await
    .expect("a write waited under durability policy none")
    .unwrap();
}

/// The shard lock keeps commands that change a shard's primary apart
/// (vtctld's LockShard, in etcd under the shard's `locks/`): a reparent
/// of a shard another holds gives up after `--lock-timeout`, naming the
/// holder, with nothing changed; one that waits goes on once the lock is
/// released, or once a dead holder's lease expires; a holder whose lock
/// was taken from it writes nothing; and a reparent stopped half way (the
/// shard not serving, its primary read-only) is finished by the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_lock_keeps_reparents_apart() {
    use shardgate::topo::lock::LockOptions;
    cluster();
    let (_, ports, _) = own_shard("lock", "lockks", &[990, 991], &[]).await;
    let store = store().await;
    let dir = "global/keyspaces/lockks/shards/0";
    let quiet = |_: &str| {};
    let opts = |ttl: u64| LockOptions {
        timeout: std::time::Duration::from_secs(5),
        lease_ttl: std::time::Duration::from_secs(ttl),
    };
    let read_only = |port: u16| async move {
        let mut c = dba_at(port, "vt_lockks").await;
        c.query_first::<u8, _>("select @@global.read_only")
            .await
            .unwrap()
            .unwrap()
    };
    let shard = || async {
        let v = store.get(&format!("{dir}/Shard")).await.unwrap().unwrap();
        serde_json::from_slice::<shardgate::topo::ShardRecord>(&v).unwrap()
    };
    let prs = |extra: &[&str]| {
        let mut args = own(&["--lock-timeout"]);
        args.extend(own(extra));
        args
    };

    // Held by another: the reparent gives up, naming the holder.
    let held = store
        .lock(dir, "an operator's repair", &opts(30), &quiet)
        .await
        .unwrap();
    // `get-shard` names the holder; `get-tablets` lists the shard.
    let out = run_ctl(own(&["get-shard", "lockks/0"])).await;
    assert_ok(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["shard"]["primary_alias"], "zone1-990", "{shown}");
    assert_eq!(shown["shard"]["is_primary_serving"], true, "{shown}");
    assert_eq!(
        shown["locks"][0]["action"], "an operator's repair",
        "{shown}"
    );
    let out = run_ctl(own(&["get-tablets", "--keyspace", "lockks"])).await;
    assert_ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let kinds: Vec<(&str, &str)> = listed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], f[3])
        })
        .collect();
    assert_eq!(
        kinds,
        [("zone1-990", "primary"), ("zone1-991", "replica")],
        "{listed}"
    );
    let out = run_ctl(prs(&["1s", "planned-reparent-shard", "lockks/0"])).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("could not lock") && said.contains("held by an operator's repair"),
        "{said}"
    );
    let out = run_ctl(prs(&[
        "1s",
        "set-keyspace-durability-policy",
        "lockks",
        "--durability-policy",
        "none",
    ]))
    .await;
    assert!(!out.status.success(), "the policy changed under a lock");
    let rec = shard();
    let rec = rec.await;
    assert_eq!(rec.primary_alias.as_deref(), Some("zone1-990"));
    assert!(rec.is_primary_serving);
    assert_eq!(read_only(ports[0]).await, 0, "the primary was demoted");

    // One that waits goes on once the holder lets go.
    let waiting = tokio::spawn(run_ctl(prs(&["20s", "planned-reparent-shard", "lockks/0"])));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the reparent did not wait");
    assert_eq!(shard().await.primary_alias.as_deref(), Some("zone1-990"));
    held.unlock().await.unwrap();
    let out = waiting.await.unwrap();
    assert_ok(&out);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("waiting up to 20s for the lock"), "{said}");
    assert!(said.contains("zone1-991 is now the primary"), "{said}");

    // A holder that dies (its lease no longer kept alive) holds the lock
    // only until its lease expires.
    let dead = store
        .lock(dir, "a dead holder", &opts(2), &quiet)
        .await
        .unwrap();
    drop(dead);
    let started = std::time::Instant::now();
    let said = ctl_says(prs(&["20s", "planned-reparent-shard", "lockks/0"])).await;
    assert!(said.contains("held by a dead holder"), "{said}");
    assert!(said.contains("zone1-990 is now the primary"), "{said}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));

    // A holder whose lock was taken from it writes nothing.
    let lost = store
        .lock(dir, "a slow holder", &opts(30), &quiet)
        .await
        .unwrap();
    store.delete(&format!("{dir}/locks"), true).await.unwrap();
    let e = lost
        .put("global/keyspaces/lockks/shards/0/Shard", b"{}")
        .await
        .expect_err("a lost lock wrote");
    assert!(e.to_string().contains("was lost"), "{e}");
    assert_eq!(shard().await.primary_alias.as_deref(), Some("zone1-990"));
    drop(lost);

    // A reparent stopped after the demotion: the next one, naming the
    // recorded primary, makes it writable and the shard serving again.
    let mut rec = shard().await;
    rec.is_primary_serving = false;
    store
        .put(&format!("{dir}/Shard"), &serde_json::to_vec(&rec).unwrap())
        .await
        .unwrap();
    dba_at(ports[0], "vt_lockks")
        .await
        .query_drop("set global read_only = 1")
        .await
        .unwrap();
    let said = ctl_says(own(&[
        "planned-reparent-shard",
        "lockks/0",
        "--new-primary",
        "zone1-990",
    ]))
    .await;
    assert!(said.contains("stopped half way"), "{said}");
    assert!(said.contains("writable again"), "{said}");
    assert!(shard().await.is_primary_serving);
    assert_eq!(read_only(ports[0]).await, 0);
    assert_eq!(read_only(ports[1]).await, 1);

    // The primary's record is deleted only when asked for by name
    // (vtctldclient's --allow-primary), and the shard record then names
    // no primary; a replica's goes as before.
    let out = run_ctl(own(&["delete-tablet", "zone1-990"])).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("is the primary of lockks/0"), "{said}");
    assert_ok(&run_ctl(own(&["delete-tablet", "zone1-991"])).await);
    assert_ok(&run_ctl(own(&["delete-tablet", "zone1-990", "--allow-primary"])).await);
    assert_eq!(shard().await.primary_alias, None);
    let left = store.list_all().await.unwrap();
    assert!(
        !left.keys().any(|k| k.contains("zone1-99")),
        "{:?}",
        left.keys()
            .filter(|k| k.contains("zone1-99"))
            .collect::<Vec<_>>()
    );
}

/// `--transaction_mode=twopc` through planned reparents of one of two
/// shards, under a steady stream of transactions that each write one row
/// on each shard: every transaction ends whole (both rows or neither),
/// every acknowledged one has both, and nothing stays prepared. A part
/// prepared on the primary as it is demoted is committed (or rolled back)
/// on the new primary, which applied the prepare from the binlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twopc_transactions_stay_whole_through_a_reparent() {
    use shardgate::vschema::vindex::Func;
    cluster();
    // Both shards' records first: a keyspace with only -80 would be
    // invalid meanwhile for every gate watching.
    {
        let store = store().await;
        shardgate::admin::ensure_keyspace(&store, "tpcks", true)
            .await
            .unwrap();
        for shard in ["-80", "80-"] {
            shardgate::admin::ensure_shard(&store, "tpcks", shard)
                .await
                .unwrap();
        }
    }
    let (dir, low_ports, _) =
        own_shard_in("tpc-low", "tpcks", "-80", &[960, 961], &["--sharded"]).await;
    let (_, high_ports, _) = own_shard_in("tpc-high", "tpcks", "80-", &[962], &["--sharded"]).await;
    apply_hashed_t(&dir, "tpcks").await;
    for port in [low_ports[0], high_ports[0]] {
        dba_at(port, "vt_tpcks")
            .await
            .query_drop("create table t (id bigint primary key, w int)")
            .await
            .unwrap();
    }
    // Ids by shard, as the hash vindex places them.
    let low_shard = |id: u64| {
        let ksid = Func::from_type("hash")
            .unwrap()
            .map(&mysql_async::Value::UInt(id))
            .unwrap()
            .unwrap();
        ksid[0] < 0x80
    };
    let (gate, web) = spawn_shardgate(&own(&[
        "--transaction_mode",
        "twopc",
        "--twopc_abandon_age",
        "1s",
        "--enable_buffer",
        "--buffer_min_time_between_failovers",
        "0s",
    ]))
    .await;
    eventually(15, || async move {
        let mut probe = try_connect_port(gate, Some("tpcks")).await.ok()?;
        probe.query_drop("select 1 from t").await.ok()
    })
    .await
    .expect("the new keyspace served");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut conn = connect_port(gate, Some("tpcks")).await;
            let mut ids = (w * 1_000_000 + 1..).filter(|_| true);
            let mut ended = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let low = ids.by_ref().find(|&i| low_shard(i)).unwrap();
                let high = ids.by_ref().find(|&i| !low_shard(i)).unwrap();
                let res = async {
                    conn.query_drop("begin").await?;
                    conn.query_drop(format!("insert into t (id, w) values ({low}, {w})"))
                        .await?;
                    conn.query_drop(format!("insert into t (id, w) values ({high}, {w})"))
                        .await?;
                    conn.query_drop("commit").await
                }
                .await;
                if res.is_err() {
                    let _ = conn.query_drop("rollback").await;
                }
                ended.push((low, high, res.map_err(|e| e.to_string())));
            }
            ended
        }));
    }
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(700));
    pause().await;
    for args in [
        &[
            "planned-reparent-shard",
            "tpcks/-80",
            "--new-primary",
            "zone1-961",
        ][..],
        &["planned-reparent-shard", "tpcks/-80"][..],
    ] {
        let out = run_ctl(own(args)).await;
        assert_ok(&out);
        pause().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ended = Vec::new();
    for writer in writers {
        ended.extend(writer.await.unwrap());
    }
    let acked = ended.iter().filter(|e| e.2.is_ok()).count();
    assert!(
        acked > 20,
        "{acked} transactions committed of {}",
        ended.len()
    );

    // Nothing stays prepared on any of the three servers, and no record.
    let ports: Vec<u16> = low_ports.iter().chain(&high_ports).copied().collect();
    let settled = eventually(30, || {
        let ports = ports.clone();
        async move {
            for port in ports {
                let mut c = dba_at(port, "vt_tpcks").await;
                let xids: Vec<(u32, u32, u32, String)> = c.query("xa recover").await.ok()?;
                if xids.iter().any(|x| x.3.starts_with("sg-")) {
                    return None;
                }
            }
            let left = store()
                .await
                .beside(shardgate::executor::twopc::STORE_SUFFIX)
                .list_all()
                .await
                .ok()?;
            left.is_empty().then_some(())
        }
    })
    .await;
    assert!(settled.is_some(), "prepared parts or records stay");

    // Whole: both rows or neither, on the shards' primaries now (960
    // again) and on the -80 replica once it caught up.
    let rows = |port: u16| async move {
        let mut c = dba_at(port, "vt_tpcks").await;
        let ids: Vec<u64> = c.query("select id from t").await.unwrap();
        ids.into_iter().collect::<std::collections::BTreeSet<u64>>()
    };
    let (low, high) = (rows(low_ports[0]).await, rows(high_ports[0]).await);
    let mut torn = Vec::new();
    for (l, h, res) in &ended {
        let (has_l, has_h) = (low.contains(l), high.contains(h));
        if has_l != has_h || (res.is_ok() && !has_l) {
            torn.push((l, h, has_l, has_h, res.clone()));
        }
    }
    assert!(
        torn.is_empty(),
        "{} of {} transactions torn: {:?}",
        torn.len(),
        ended.len(),
        &torn[..torn.len().min(5)]
    );
    let replica = low_ports[1];
    let replica_caught_up = eventually(15, || {
        let low = low.clone();
        async move { (rows(replica).await == low).then_some(()) }
    })
    .await;
    assert!(replica_caught_up.is_some(), "the -80 replica differs");
    let committed = debug_var_at(web, "TwopcCommitted").await;
    assert!(committed >= acked as u64, "{committed} < {acked}");

    // A part prepared on the -80 primary, which a reparent then demotes
    // before the decision is taken (a gate that died half way): the
    // resolver commits it on the new primary, which applied the prepare
    // from the binlog, and the demoted one applies the commit from it.
    use shardgate::executor::twopc;
    let twopc_store = store().await.beside(twopc::STORE_SUFFIX);
    let dtid = format!("t-{:x}-demoted", std::process::id());
    let record = |at: u64| twopc_record("tpcks", &[("-80", "zone1-960"), ("80-", "zone1-962")], at);
    // Young while prepared and reparented (the resolver leaves it).
    let now = twopc::now_ms();
    twopc_store
        .put(&dtid, &record(now + 3_600_000))
        .await
        .unwrap();
    for (port, uid, id) in [
        (low_ports[0], 960, 9_000_001u64),
        (high_ports[0], 962, 9_000_002),
    ] {
        let write = format!("insert into t (id, w) values ({id}, 99)");
        let tablet = format!("zone1-{uid}");
        prepare_by_hand(dba_at(port, "vt_tpcks").await, &dtid, &tablet, &write).await;
    }
    let out = run_ctl(own(&[
        "planned-reparent-shard",
        "tpcks/-80",
        "--new-primary",
        "zone1-961",
        "--transaction-grace-period",
        "200ms",
    ]))
    .await;
    assert_ok(&out);
    let prepared_on = |port: u16| {
        let dtid = dtid.clone();
        async move {
            let mut c = dba_at(port, "vt_tpcks").await;
            let xids: Vec<(u32, u32, u32, String)> = c.query("xa recover").await.unwrap();
            xids.iter().any(|x| x.3.starts_with(&dtid))
        }
    };
    assert!(
        prepared_on(low_ports[1]).await,
        "the new primary lacks the prepared part"
    );
    let decision = serde_json::to_vec(&twopc::Decision {
        decision: twopc::Outcome::Commit,
        at: now,
    })
    .unwrap();
    twopc_store
        .put(&twopc::decision_key(&dtid), &decision)
        .await
        .unwrap();
    twopc_store.put(&dtid, &record(now - 60_000)).await.unwrap();
    let resolved = eventually(20, || {
        let ports = ports.clone();
        let prepared_on = &prepared_on;
        async move {
            for port in ports {
                if prepared_on(port).await {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(
        resolved.is_some(),
        "the demoted primary's part stays prepared"
    );
    let high = high_ports[0];
    for port in [low_ports[1], high, low_ports[0]] {
        let id = 9_000_001 + u64::from(port == high);
        let has = eventually(15, || async move {
            rows(port).await.contains(&id).then_some(())
        })
        .await;
        assert!(has.is_some(), "the committed row is missing on port {port}");
    }
}

/// A join and a subquery across two unsharded keyspaces run at the gate
/// (each keyspace's tables a route, as vtgate plans them), with or
/// without a keyspace selected, and answer as one MariaDB holding both
/// keyspaces' tables does. The second keyspace is a database of its own
/// in tablet 100's mysqld, so that mysqld is the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_across_unsharded_keyspaces_runs_at_the_gate() {
    let c = cluster();
    let mut t = connect_tablet(100).await;
    t.query_drop(
        "create database if not exists uks2_db; \
         drop table if exists uks2_db.owners; \
         create table uks2_db.owners (id int primary key, name varchar(20)); \
         insert into uks2_db.owners values (1, 'ann'), (2, 'bob'), (3, 'amy'); \
         drop table if exists vt_commerce.ujoin; \
         create table vt_commerce.ujoin (id int primary key, owner int, v int); \
         insert into vt_commerce.ujoin values (10, 1, 5), (11, 2, 1), (12, 3, 7), (13, 9, 2)",
    )
    .await
    .unwrap();
    let args = add_tablet_args(
        "zone1-151",
        "uks2",
        "primary",
        tablet_port(100),
        &["--db-name", "uks2_db"],
    );
    ctl_says(args).await;
    let port = c.port;
    let seen = eventually(10, || async move {
        let mut conn = connect_port(port, None).await;
        conn.query_first::<u64, _>("select count(*) from uks2.owners")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(seen, Some(3));
    let cases = [
        (
            Some("commerce"),
            "select u.id, o.name from ujoin u join uks2.owners o on u.owner = o.id order by u.id",
            "select u.id, o.name from vt_commerce.ujoin u join uks2_db.owners o on u.owner = o.id order by u.id",
        ),
        (
            Some("commerce"),
            "select id from ujoin where owner in (select id from uks2.owners where name like 'a%') order by id",
            "select id from vt_commerce.ujoin where owner in (select id from uks2_db.owners where name like 'a%') order by id",
        ),
        (
            None,
            "select u.v, o.name from commerce.ujoin u join uks2.owners o on o.id = u.owner where u.v > 1 order by u.v",
            "select u.v, o.name from vt_commerce.ujoin u join uks2_db.owners o on o.id = u.owner where u.v > 1 order by u.v",
        ),
        (
            Some("uks2"),
            "select o.name, count(*) from owners o join commerce.ujoin u on u.owner = o.id group by o.name order by o.name",
            "select o.name, count(*) from uks2_db.owners o join vt_commerce.ujoin u on u.owner = o.id group by o.name order by o.name",
        ),
    ];
    for (db, through_gate, oracle) in cases {
        let mut conn = connect_port(port, db).await;
        let got = rows(&mut conn, through_gate).await;
        let want = rows(&mut t, oracle).await;
        assert!(!want.is_empty(), "{oracle}");
        assert_eq!(got, want, "{through_gate} (keyspace {db:?})");
    }
    // Writes that read the other keyspace: the same statements on a copy
    // of both tables in one database leave the same rows.
    t.query_drop(
        "drop database if exists uks_oracle; create database uks_oracle; \
         create table uks_oracle.ujoin as select * from vt_commerce.ujoin; \
         create table uks_oracle.owners as select * from uks2_db.owners",
    )
    .await
    .unwrap();
    let writes = [
        "insert into ujoin (id, owner, v) select id + 100, id, 0 from uks2.owners where name <> 'bob'",
        "update ujoin set v = v + 1 where owner in (select id from uks2.owners where name like 'a%')",
        "delete from ujoin where owner not in (select id from uks2.owners)",
    ];
    let mut conn = connect_port(port, Some("commerce")).await;
    let mut oracle = connect_tablet(100).await;
    oracle.query_drop("use uks_oracle").await.unwrap();
    for w in writes {
        conn.query_drop(w)
            .await
            .unwrap_or_else(|e| panic!("{w}: {e}"));
        oracle
            .query_drop(w.replace("uks2.owners", "owners"))
            .await
            .unwrap();
        let got = rows(&mut conn, "select id, owner, v from ujoin order by id").await;
        let want = rows(&mut oracle, "select id, owner, v from ujoin order by id").await;
        assert_eq!(got, want, "after {w}");
    }
    let out = ctl(&["delete-tablet", "zone1-151"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.query_drop("drop database uks2_db; drop database uks_oracle; drop table vt_commerce.ujoin")
        .await
        .unwrap();
}

/// Runs statements that must succeed, in order.
async fn run_all(conn: &mut mysql_async::Conn, statements: &[&str]) {
    for sql in statements {
        conn.query_drop(*sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The code and message of a statement that must fail.
async fn refused(conn: &mut mysql_async::Conn, sql: &str) -> (u16, String) {
    match conn.query_drop(sql).await {
        Ok(()) => panic!("{sql}: succeeded"),
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_vschema_changes_routing_from_sql() {
    let c = cluster();
    // Keyspace vddl: shard -80 in tablet 300's mysqld, 80- in 400's,
    // with no VSchema yet; keyspace vddlseq (unsharded) in tablet 100's.
    for uid in [300, 400] {
        connect_tablet(uid)
            .await
            .query_drop(
                "create database if not exists vddl_db; drop table if exists vddl_db.t; \
                 create table vddl_db.t (id bigint primary key, v int)",
            )
            .await
            .unwrap();
    }
    connect_tablet(100)
        .await
        .query_drop(
            "create database if not exists vddlseq_db; drop table if exists vddlseq_db.t_seq; \
             create table vddlseq_db.t_seq (id int primary key, next_id bigint, cache bigint) \
             comment 'vitess_sequence'; insert into vddlseq_db.t_seq values (0, 100, 10)",
        )
        .await
        .unwrap();
    let tablets = [
        ("zone1-155", "vddl", "-80", 300, "vddl_db"),
        ("zone1-156", "vddl", "80-", 400, "vddl_db"),
        ("zone1-157", "vddlseq", "0", 100, "vddlseq_db"),
    ];
    for (alias, ks, shard, uid, db) in tablets {
        let port = tablet_port(uid);
        let args = add_tablet_args_in(alias, ks, shard, "primary", port, &["--db-name", db]);
        ctl_says(args).await;
    }
    let port = c.port;
    let served = eventually(10, || async move {
        let mut conn = connect_port(port, None).await;
        let dbs: Vec<String> = conn.query("show databases").await.ok()?;
        dbs.iter().any(|d| d == "vddlseq").then_some(())
    })
    .await;
    assert!(served.is_some(), "keyspace vddlseq is served");
    let mut conn = connect_port(port, None).await;
    // Its first vindex makes vddl sharded, and so servable.
    run_all(
        &mut conn,
        &[
            "alter vschema create vindex vddl.hash using hash",
            "alter vschema on vddl.t add vindex hash (id)",
        ],
    )
    .await;
    // Answered once this gate serves it: routed by the new vindex at once.
    conn.query_drop("insert into vddl.t (id, v) values (1, 10), (2, 20), (4, 40)")
        .await
        .unwrap();
    let on = |uid: u32| async move {
        let mut t = connect_tablet(uid).await;
        t.query::<u64, _>("select id from vddl_db.t order by id")
            .await
            .unwrap()
    };
    assert_eq!(on(300).await, vec![1, 2]);
    assert_eq!(on(400).await, vec![4]);
    // Its columns are learned at once as well (the tracker asks for the
    // VSchema's tables): an INSERT without a column list needs them.
    conn.query_drop("insert into vddl.t values (3, 30)")
        .await
        .unwrap();
    let all: Vec<u64> = conn
        .query("select id from vddl.t order by id")
        .await
        .unwrap();
    assert_eq!(all, vec![1, 2, 3, 4]);
    conn.query_drop("delete from vddl.t where id = 3")
        .await
        .unwrap();
    let vindexes = rows(&mut conn, "show vschema vindexes on vddl.t").await;
    assert_eq!(
        vindexes,
        vec![vec![
            Some("id".to_string()),
            Some("hash".to_string()),
            Some("hash".to_string()),
            Some(String::new()),
            Some(String::new()),
        ]]
    );
    // Refusals leave the VSchema as it was, and the connection usable.
    for (sql, code, says) in [
        (
            "alter vschema create vindex vddl.hash using hash",
            1105,
            "vindex hash already exists in keyspace vddl",
        ),
        (
            "alter vschema drop vindex vddl.hash",
            1105,
            "can not drop vindex cause hash still defined on table t",
        ),
        (
            "alter vschema create vindex vddl.bad using no_such_type",
            1105,
            "unknown vindex type 'no_such_type'",
        ),
        (
            "alter vschema add table vddl.x",
            1105,
            "add vschema table: unsupported on sharded keyspace vddl",
        ),
        (
            "alter vschema on vddl.t add auto_increment id using vddlseq.t_seq",
            1105,
            "sequence t_seq is not a sequence table",
        ),
        (
            "alter vschema add table nosuch.x",
            1049,
            "Unknown database 'nosuch'",
        ),
        ("alter vschema add table x", 1046, "No database selected"),
        (
            "alter vschema remove table vddl.x",
            1064,
            "near 'remove table vddl.x'",
        ),
    ] {
        let (got, msg) = refused(&mut conn, sql).await;
        assert_eq!(got, code, "{sql}: {msg}");
        assert!(msg.contains(says), "{sql}: {msg}");
    }
    let one: Option<u8> = conn.query_first("select 1 from dual").await.unwrap();
    assert_eq!(one, Some(1));
    let vindexes = rows(&mut conn, "show vschema vindexes").await;
    assert!(
        !vindexes.iter().any(|r| r[1].as_deref() == Some("bad")),
        "{vindexes:?}"
    );
    // A sequence fills the column once it backs it, and not after.
    run_all(
        &mut conn,
        &[
            "alter vschema add sequence vddlseq.t_seq",
            "alter vschema on vddl.t add auto_increment id using vddlseq.t_seq",
        ],
    )
    .await;
    conn.query_drop("insert into vddl.t (v) values (50), (60)")
        .await
        .unwrap();
    let filled: Vec<u64> = conn
        .query("select id from vddl.t where v in (50, 60) order by id")
        .await
        .unwrap();
    assert_eq!(filled, vec![100, 101]);
    conn.query_drop("alter vschema on vddl.t drop auto_increment")
        .await
        .unwrap();
    let (code, msg) = refused(&mut conn, "insert into vddl.t (v) values (70)").await;
    assert_eq!(code, 1364, "{msg}");
    // Changes made at once all land: none overwrites another.
    let adds = (0..8).map(|i| async move {
        let mut c = connect_port(port, Some("vddlseq")).await;
        c.query_drop(format!("alter vschema add table c{i}")).await
    });
    for r in futures_util::future::join_all(adds).await {
        r.unwrap();
    }
    conn.query_drop("use vddlseq").await.unwrap();
    let tables = vschema_tables(&mut conn).await;
    for i in 0..8 {
        assert!(tables.contains(&format!("c{i}")), "c{i} in {tables:?}");
    }
    // `ctl apply-vschema --sql` makes the same changes, as vtctldclient's.
    ctl_says(own(&[
        "apply-vschema",
        "--sql",
        "alter vschema add table c_ctl",
        "vddlseq",
    ]))
    .await;
    let wrong = run_ctl(own(&[
        "apply-vschema",
        "--sql",
        "alter vschema add table vddl.c_ctl",
        "vddlseq",
    ]))
    .await;
    assert!(!wrong.status.success());
    assert!(
        comes_to_serve(port, "vddlseq", "c_ctl").await,
        "ctl's change is served"
    );
    // Only the users the flag names may change a VSchema.
    let alice = own(&["--vschema_ddl_authorized_users", "alice"]);
    let (other, _) = spawn_shardgate(&alice).await;
    let mut denied = connect_port(other, Some("vddlseq")).await;
    let (code, msg) = refused(&mut denied, "alter vschema add table z").await;
    assert_eq!(code, 1045, "{msg}");
    assert_eq!(
        msg,
        "User 'app' is not authorized to perform vschema operations"
    );
    assert!(!vschema_tables(&mut conn).await.contains(&"z".to_string()));
    // vtgate's metadata, under the same flag.
    let (code, msg) = refused(&mut denied, "set @@vitess_metadata.app_v = 'v1'").await;
    assert_eq!(code, 1045, "{msg}");
    conn.query_drop("set @@vitess_metadata.app_v = 'v1', @@vitess_metadata.other = 'x'")
        .await
        .unwrap();
    let stored = store().await.get("global/metadata/app_v").await.unwrap();
    assert_eq!(stored.as_deref(), Some(&b"v1"[..]));
    let shown = rows(&mut denied, "show vitess_metadata variables like 'app%'").await;
    assert_eq!(shown, vec![vec![Some("app_v".into()), Some("v1".into())]]);
    conn.query_drop("set @@vitess_metadata.app_v = ''")
        .await
        .unwrap();
    let shown = rows(&mut conn, "show vitess_metadata variables").await;
    assert_eq!(shown, vec![vec![Some("other".into()), Some("x".into())]]);
    conn.query_drop("set @@vitess_metadata.other = ''")
        .await
        .unwrap();
    // Dropped from the VSchema, the table is no longer routed.
    conn.query_drop("alter vschema drop table vddl.t")
        .await
        .unwrap();
    assert!(conn.query_drop("select * from vddl.t").await.is_err());
    for (alias, ..) in tablets {
        ctl_says(own(&["delete-tablet", alias])).await;
    }
}

/// vtgate's `--min_number_serving_vttablets`: while fewer replicas of a
/// shard are fit than the flag asks, the least lagging of the others
/// serve too. Here one replica replicates (fit) and the other does not
/// (its server is a primary: lagging). A gate with the default (1) reads
/// from the fit one only; one asking for two spreads reads over both, as
/// vtgate's default does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replicas_serve_while_fewer_than_the_minimum_are_fit() {
    let c = cluster();
    let mut t = connect_tablet(100).await;
    t.query_drop("create database if not exists lag_db")
        .await
        .unwrap();
    for (alias, kind, port) in [
        ("zone1-165", "primary", tablet_port(100)),
        ("zone1-166", "replica", tablet_port(101)),
        ("zone1-167", "replica", tablet_port(100)),
    ] {
        let args = add_tablet_args(alias, "lagks", kind, port, &["--db-name", "lag_db"]);
        ctl_says(args).await;
    }
    let (port, web) = spawn_shardgate(&["--min_number_serving_vttablets".into(), "2".into()]).await;
    for web in [c.web_port, web] {
        let judged = eventually(15, || async move {
            let status = http_get(web, "/debug/status").await;
            let row = status
                .split("<tr>")
                .find(|r| r.contains("<td>zone1-167</td>"))?
                .to_string();
            row.contains("Lagging: not replicating").then_some(())
        })
        .await;
        assert!(judged.is_some(), "zone1-167 not judged lagging");
    }
    let ports_read = |at: u16| async move {
        let mut conn = connect_port(at, Some("lagks@replica")).await;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let p: Option<u16> = conn.query_first("select @@port").await.unwrap();
            seen.insert(p.unwrap());
        }
        seen.into_iter().collect::<Vec<u16>>()
    };
    assert_eq!(ports_read(c.port).await, vec![tablet_port(101)]);
    let mut both = vec![tablet_port(100), tablet_port(101)];
    both.sort_unstable();
    assert_eq!(ports_read(port).await, both);
    for alias in ["zone1-167", "zone1-166"] {
        ctl_says(vec!["delete-tablet".into(), alias.into()]).await;
    }
}
