//! End to end through shardgate on the unsharded `commerce` keyspace of a
//! real local cluster: the mysql client, a Rust driver (text and prepared),
//! sessions, transactions, targeting, and errors.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::Value;

/// Flags for a shardgate with one event loop. Idle, shared and reserved
/// tablet connections are kept per loop, and clients are dealt to the
/// loops in turn; tests of which tablet connection a session gets (or of
/// a tablet held busy by another session) need consecutive sessions on
/// one loop, whatever other tests connect meanwhile.
fn one_loop(extra: &[&str]) -> Vec<String> {
    ["--worker-threads", "1"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_client_batch_session() {
    let c = cluster();
    let script = "\
        drop table if exists cli_t;\n\
        create table cli_t (id int auto_increment primary key, name varchar(20));\n\
        insert into cli_t (name) values ('alpha'), ('beta');\n\
        select last_insert_id();\n\
        drop table if exists cli_c;\n\
        create table cli_c (id int primary key, parent int, note char(1));\n\
        insert into cli_c (id, parent, note) values (5, last_insert_id(), 'n');\n\
        select parent from cli_c;\n\
        drop table cli_c;\n\
        update cli_t set name = 'gamma' where id = 2;\n\
        delete from cli_t where id = 1;\n\
        select * from cli_t;\n\
        select database();\n\
        show tables like 'cli_t';\n\
        select @@version like '%MariaDB%';\n\
        show databases;\n";
    let out = std::process::Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", c.port),
            "-uapp",
            "--batch",
            "commerce",
            "-e",
            script,
        ])
        .output()
        .expect("run mysql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mysql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "last_insert_id()\n1\nparent\n1\nid\tname\n2\tgamma\ndatabase()\ncommerce\nTables_in_commerce (cli_t)\ncli_t\n\
         @@version like '%MariaDB%'\n1\nDatabase\ncommerce\ncustomer\ninformation_schema\nmysql\nperformance_schema\nsys\n"
    );
}

/// A client that asks for another character set in its handshake (the
/// `mysql` client's `--default-character-set`) gets it on the tablet in
/// every session, as it would from MariaDB itself: the setting comes with
/// the tag of the connections that carry it, so a pooled connection
/// without it is brought to it (it used to be taken as it was, leaving
/// utf8mb4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_character_set_reaches_the_tablet() {
    let c = cluster();
    let run = |port: u16, user: &str, db: &str| {
        let out = std::process::Command::new("mysql")
            .args([
                "-h127.0.0.1",
                &format!("-P{port}"),
                &format!("-u{user}"),
                "--default-character-set=latin1",
                "--batch",
                "--skip-column-names",
                db,
                "-e",
                "select @@character_set_client, @@character_set_results, \
                 @@collation_connection; select 1 from dual; \
                 select char_length('Å'); select char_length('Å')",
            ])
            .output()
            .expect("run mysql");
        assert!(
            out.status.success(),
            "mysql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let direct = run(tablet_port(100), "vt_dba", "vt_commerce");
    assert!(direct.starts_with("latin1\tlatin1\t"), "{direct}");
    // Two bytes of UTF-8, two latin1 characters (one in utf8mb4).
    assert!(direct.ends_with("\n2\n2\n"), "{direct}");
    for session in 0..4 {
        assert_eq!(run(c.port, "app", "commerce"), direct, "session {session}");
    }
    // The setting reserves nothing: such a session's reads share the
    // connections that carry it.
    let (port, web) = spawn_shardgate(&["--mysql-auth-server-impl".into(), "none".into()]).await;
    let shared = || async move {
        debug_var_at(web, "SharedReadExecutions").await + debug_var_at(web, "SharedReadSolo").await
    };
    let before = shared().await;
    assert_eq!(run(port, "app", "commerce"), direct);
    assert!(shared().await > before, "no read of the session shared");
}

const TYPES_DDL: &str = "create table if not exists types_t (
    id int primary key, ti tinyint, si smallint unsigned, mi mediumint, i int, bi bigint, ubi bigint unsigned,
    de decimal(20,6), fl float, db double, dt date, dtm datetime(6), ts timestamp(3) null, tm time(2), yr year,
    vc varchar(50), ch char(5), tx text, bl blob, vb varbinary(20), bt bit(8), en enum('a','b'), js json)";

const TYPES_ROWS: &str = "insert into types_t values
    (1, -128, 65535, -8388608, -2147483648, -9223372036854775808, 18446744073709551615, -12345678901234.123456,
     1.5, -2.2250738585072014e-308, '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123', '-838:59:59.99', 1901,
     'héllo wörld', 'abc', 'some text', x'00ff10', x'deadbeef', b'10101010', 'b', '{\"k\": [1, 2]}'),
    (2, 127, 0, 0, 0, 0, 0, 0, 0, 0, '2024-02-29', '2024-02-29 00:00:00', '2024-02-29 12:00:00', '00:00:00', 2155,
     '', '', '', '', '', b'0', 'a', 'null'),
    (3, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
     null, null, null, null, null, null, null, null)";

/// Every common column type, read through shardgate with text and with
/// prepared statements, equals what the primary's MariaDB returns directly,
/// values and column metadata alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_types_match_direct_mariadb_text_and_binary() {
    let mut sg = connect(Some("commerce")).await;
    sg.query_drop("drop table if exists types_t").await.unwrap();
    sg.query_drop(TYPES_DDL).await.unwrap();
    sg.query_drop(TYPES_ROWS).await.unwrap();
    let mut direct = connect_tablet(100).await;
    let sql = "select * from types_t order by id";

    let text_sg: Vec<mysql_async::Row> = sg.query(sql).await.unwrap();
    let text_direct: Vec<mysql_async::Row> = direct.query(sql).await.unwrap();
    let bin_sg: Vec<mysql_async::Row> = sg.exec(sql, ()).await.unwrap();
    let bin_direct: Vec<mysql_async::Row> = direct.exec(sql, ()).await.unwrap();
    assert_eq!(text_sg.len(), 3);
    for (a, b) in [(&text_sg, &text_direct), (&bin_sg, &bin_direct)] {
        for (ra, rb) in a.iter().zip(b.iter()) {
            assert_eq!(ra.clone().unwrap(), rb.clone().unwrap());
            for (ca, cb) in ra.columns_ref().iter().zip(rb.columns_ref()) {
                assert_eq!(ca, cb, "column metadata of {}", ca.name_str());
            }
        }
    }
    // Binary values are typed (not text) and the same as direct.
    assert!(matches!(bin_sg[0][1], Value::Int(-128)));
    assert!(matches!(
        bin_sg[0][6],
        Value::UInt(u64::MAX) | Value::Int(-1)
    ));

    // Parameters of every kind bound through shardgate select the same rows.
    let psql = "select id, vc from types_t where (ti = ? or ? is null) and dt >= ? and vc <> ? and fl >= ? and ubi >= ? order by id";
    let params: Vec<Value> = vec![
        Value::Int(127),
        Value::NULL,
        Value::Date(2000, 1, 1, 0, 0, 0, 0),
        Value::Bytes(b"it's \\ \"quoted\"".to_vec()),
        Value::Double(-1.0),
        Value::UInt(0),
    ];
    let a: Vec<(i32, String)> = sg.exec(psql, params.clone()).await.unwrap();
    let b: Vec<(i32, String)> = direct.exec(psql, params).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a, vec![(2, String::new())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_1049_and_connection_stays_usable() {
    let c = cluster();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(c.port)
        .user(Some("app"))
        .db_name(Some("nope"))
        .prefer_socket(false);
    let e = mysql_async::Conn::new(opts).await.unwrap_err();
    assert_eq!(err_code(&e), Some(1049), "{e}");

    let mut conn = connect(None).await;
    let e = conn.query_drop("use nope").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1049));
    assert!(e.to_string().contains("nope"));
    let e = conn.query_drop("use `commerce:7`").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1049));
    conn.query_drop("use commerce").await.unwrap();
    assert_eq!(
        rows(&mut conn, "select database()").await,
        vec![vec![Some("commerce".into())]]
    );
    // A backend error passes through with its own code and SQLSTATE.
    let e = conn
        .query_drop("select * from no_such_table")
        .await
        .unwrap_err();
    match e {
        mysql_async::Error::Server(s) => {
            assert_eq!((s.code, s.state.as_str()), (1146, "42S02"));
        }
        other => panic!("{other}"),
    }
    // Unparsable SQL too, and the connection goes on.
    let e = conn.query_drop("selec 1").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1064));
    assert_eq!(
        rows(&mut conn, "select 1").await,
        vec![vec![Some("1".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_and_rdonly_reads_go_to_those_tablets() {
    let mut conn = connect(Some("commerce@replica")).await;
    let port = rows(&mut conn, "select @@port").await;
    assert_eq!(port, vec![vec![Some(tablet_port(101).to_string())]]);
    conn.query_drop("use commerce@rdonly").await.unwrap();
    let port = rows(&mut conn, "select @@port").await;
    assert_eq!(port, vec![vec![Some(tablet_port(102).to_string())]]);
    conn.query_drop("use commerce").await.unwrap();
    let port = rows(&mut conn, "select @@port").await;
    assert_eq!(port, vec![vec![Some(tablet_port(100).to_string())]]);

    // A write on the primary reaches the replica (GTID replication set up by init-shard-primary).
    conn.query_drop("create table if not exists repl_t (id int primary key)")
        .await
        .unwrap();
    conn.query_drop("replace into repl_t values (42)")
        .await
        .unwrap();
    conn.query_drop("use commerce@replica").await.unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = conn
            .query_first("select id from repl_t where id = 42")
            .await
            .ok()
            .flatten();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(42i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_stay_with_their_client() {
    let mut a = connect(Some("commerce")).await;
    let mut b = connect(Some("commerce")).await;
    a.query_drop("set sql_mode = 'ANSI_QUOTES', time_zone = '+05:00', @who = 'a'")
        .await
        .unwrap();
    a.query_drop("set names latin1").await.unwrap();
    for _ in 0..20 {
        let r = rows(
            &mut a,
            "select @@sql_mode, @@time_zone, @who, @@character_set_client",
        )
        .await;
        assert_eq!(
            r,
            vec![vec![
                Some("ANSI_QUOTES".into()),
                Some("+05:00".into()),
                Some("a".into()),
                Some("latin1".into())
            ]]
        );
        let r = rows(&mut b, "select @@time_zone, @who, @@character_set_client").await;
        assert_eq!(
            r,
            vec![vec![Some("SYSTEM".into()), None, Some("utf8mb4".into())]]
        );
    }
    let e = a.query_drop("set autocommit = maybe").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1231));
}

/// What connectors ask at every connect (mysql_async's own
/// `SELECT @@max_allowed_packet,@@wait_timeout`, Connector/J's list) is
/// answered as the tablet answers a new connection, for a moment from
/// what it said last (no round trip to the tablet). A kept answer serves
/// only sessions with the same settings: a session with settings, asking
/// right after, gets its own values, kept for it in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_session_defaults_are_kept_for_a_moment_per_settings() {
    // Its own shardgate: its counter counts this test alone.
    let (port, web) = spawn_shardgate(&one_loop(&["--mysql-auth-server-impl", "none"])).await;
    let q = "/* as Connector/J */ select @@sql_mode, @@max_allowed_packet as m, @@session.wait_timeout w";
    let want = rows(&mut connect_tablet(100).await, q).await;
    let mut clean = connect_port(port, Some("commerce")).await;
    // Asked twice within a second, one answer is a kept one (tries
    // again should a loaded machine have let a second pass between).
    for _ in 0..20 {
        assert_eq!(rows(&mut clean, q).await, want);
        if debug_var_at(web, "SessionDefaultsKept").await > 0 {
            break;
        }
    }
    assert!(debug_var_at(web, "SessionDefaultsKept").await > 0);
    let mut set = connect_port(port, Some("commerce")).await;
    set.query_drop("set sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    let mut mine = want.clone();
    mine[0][0] = Some("ANSI_QUOTES".into());
    let before = debug_var_at(web, "SessionDefaultsKept").await;
    for _ in 0..20 {
        assert_eq!(rows(&mut set, q).await, mine);
        if debug_var_at(web, "SessionDefaultsKept").await > before {
            break;
        }
    }
    assert!(debug_var_at(web, "SessionDefaultsKept").await > before);
    assert_eq!(rows(&mut clean, q).await, want);
    assert_eq!(rows(&mut set, q).await, mine);
}

/// Sessions with settings reserve no connection: when one ends, its
/// tablet connection goes back to the pool and the next session gets it,
/// reset (COM_RESET_CONNECTION clears the session's status counters too)
/// so nothing of the first session shows. A SET that changes nothing on a
/// clean connection (a driver's `SET NAMES utf8mb4` at connect) does not
/// even mark the connection: the next session gets it as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_share_connections_between_sessions() {
    // Its own shardgate: its pool serves this test alone.
    let (port, _) = spawn_shardgate(&one_loop(&["--mysql-auth-server-impl", "none"])).await;
    let next_session = |set: &'static str| async move {
        let mut a = connect_port(port, Some("commerce")).await;
        a.query_drop(set).await.unwrap();
        let mine: Option<u64> = a.query_first("select connection_id()").await.unwrap();
        a.disconnect().await.unwrap();
        // The connection returns to the pool once shardgate has reset it,
        // after the client left (longer on a loaded machine). A session
        // that got another one keeps it (open sessions keep their
        // connection) until one gets ours: handing it back would put it
        // in the pool after ours, and the next session would take it again.
        let mut others = Vec::new();
        let start = std::time::Instant::now();
        let mut b = loop {
            let mut b = connect_port(port, Some("commerce")).await;
            let next: Option<u64> = b.query_first("select connection_id()").await.unwrap();
            if next == mine {
                break b;
            }
            others.push(b);
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "{set}: the next session never gets the connection"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        for o in others {
            o.disconnect().await.unwrap();
        }
        let sets: Option<(String, u64)> = b
            .query_first("show session status like 'Com_set_option'")
            .await
            .unwrap();
        let seen = rows(
            &mut b,
            "select @@character_set_client, @@sql_mode = @@global.sql_mode, @who",
        )
        .await;
        (sets.unwrap().1 > 0, seen)
    };
    let clean = vec![vec![Some("utf8mb4".into()), Some("1".into()), None]];
    assert_eq!(
        next_session("SET NAMES utf8mb4").await,
        (true, clean.clone())
    );
    assert_eq!(
        next_session("set sql_mode = @@global.sql_mode, names utf8mb4").await,
        (true, clean.clone())
    );
    assert_eq!(
        next_session("set names latin1, sql_mode = 'ANSI_QUOTES', @who = 'a'").await,
        (false, clean)
    );
}

/// State a session leaves on its tablet connection (a temporary table, a
/// named lock) stays with it while it lives; when it ends the connection
/// is reset and serves the next session with none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_state_is_reset_when_the_session_ends() {
    let (port, _) = spawn_shardgate(&one_loop(&["--mysql-auth-server-impl", "none"])).await;
    let mut a = connect_port(port, Some("commerce")).await;
    a.query_drop("create temporary table reserved_tmp (id int)")
        .await
        .unwrap();
    let locked: Option<i64> = a
        .query_first("select get_lock('sg_reserved_lock', 0)")
        .await
        .unwrap();
    assert_eq!(locked, Some(1));
    for i in 0..5 {
        a.query_drop(format!("insert into reserved_tmp values ({i})"))
            .await
            .unwrap();
    }
    let n: Option<u64> = a
        .query_first("select count(*) from reserved_tmp")
        .await
        .unwrap();
    assert_eq!(n, Some(5));
    let mine: Option<u64> = a.query_first("select connection_id()").await.unwrap();
    a.disconnect().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut b = connect_port(port, Some("commerce")).await;
    let next: Option<u64> = b.query_first("select connection_id()").await.unwrap();
    assert_eq!(
        mine, next,
        "the connection was reset and pooled, not closed"
    );
    let e = b
        .query_drop("select count(*) from reserved_tmp")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1146));
    let mut direct = connect_tablet(100).await;
    let free: Option<i64> = direct
        .query_first("select is_free_lock('sg_reserved_lock')")
        .await
        .unwrap();
    assert_eq!(free, Some(1));
}

/// The driver's pool (the fallback when lean connections cannot be had,
/// here forced with `--lean-connections=false`) keeps transactions and
/// settings with their client too: its connections are not reset on
/// return, so one that carried a session's settings (also through a
/// transaction) must never reach another session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_fallback_keeps_sessions_apart() {
    let (port, _) = spawn_shardgate(&[
        "--mysql-auth-server-impl".into(),
        "none".into(),
        "--lean-connections=false".into(),
    ])
    .await;
    let mut a = connect_port(port, Some("commerce")).await;
    a.query_drop("create table if not exists fallback_t (id int primary key)")
        .await
        .unwrap();
    a.query_drop("delete from fallback_t").await.unwrap();
    a.query_drop("set sql_mode = 'ANSI_QUOTES', @who = 'a'")
        .await
        .unwrap();
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into fallback_t values (1)")
        .await
        .unwrap();
    let mut b = connect_port(port, Some("commerce")).await;
    assert_eq!(count(&mut b, "fallback_t").await, 0);
    a.query_drop("commit").await.unwrap();
    drop(b);
    for _ in 0..10 {
        let mut b = connect_port(port, Some("commerce")).await;
        assert_eq!(
            rows(
                &mut b,
                "select @@sql_mode = @@global.sql_mode, @who, count(*) from fallback_t"
            )
            .await,
            vec![vec![Some("1".into()), None, Some("1".into())]]
        );
        assert_eq!(
            rows(&mut a, "select @@sql_mode, @who").await,
            vec![vec![Some("ANSI_QUOTES".into()), Some("a".into())]]
        );
    }
    // Nor after the session has gone.
    a.disconnect().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..10 {
        let mut b = connect_port(port, Some("commerce")).await;
        assert_eq!(
            rows(&mut b, "select @@sql_mode = @@global.sql_mode, @who").await,
            vec![vec![Some("1".into()), None]]
        );
    }
}

/// Sessions beyond the budget of connections kept between statements
/// (`--sticky-connections 0`) still run on lean connections, taken from the
/// pool per statement, and hold one per transaction: six open transactions
/// at once do not wait on the driver's pool (`--pool-size 1`, which its
/// minimum of four idle connections raises to four), only the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_sticky_budget_stay_on_lean_connections() {
    let (port, _) = spawn_shardgate(&[
        "--mysql-auth-server-impl".into(),
        "none".into(),
        "--sticky-connections".into(),
        "0".into(),
        "--pool-size".into(),
        "1".into(),
    ])
    .await;
    let mut admin = connect_port(port, Some("commerce")).await;
    admin
        .query_drop("create table if not exists budget_t (id int primary key)")
        .await
        .unwrap();
    admin.query_drop("delete from budget_t").await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(connect_port(port, Some("commerce")).await);
    }
    let all = async {
        for (i, s) in sessions.iter_mut().enumerate() {
            s.query_drop("begin").await.unwrap();
            s.query_drop(format!("insert into budget_t values ({i})"))
                .await
                .unwrap();
        }
        for s in &mut sessions {
            assert_eq!(count(s, "budget_t").await, 1);
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            let end = if i % 2 == 0 { "commit" } else { "rollback" };
            s.query_drop(end).await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .expect("open transactions must not wait on each other");
    for s in &mut sessions {
        assert_eq!(count(s, "budget_t").await, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_pin_one_connection() {
    let mut a = connect(Some("commerce")).await;
    let mut b = connect(Some("commerce")).await;
    a.query_drop("create table if not exists txn_t (id int primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txn_t").await.unwrap();

    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txn_t values (1, 1)")
        .await
        .unwrap();
    assert_eq!(count(&mut a, "txn_t").await, 1);
    assert_eq!(count(&mut b, "txn_t").await, 0);
    a.query_drop("rollback").await.unwrap();
    assert_eq!(count(&mut a, "txn_t").await, 0);

    // A transaction whose first statement is a read (BEGIN rides with it).
    a.query_drop("begin").await.unwrap();
    assert_eq!(count(&mut a, "txn_t").await, 0);
    a.query_drop("insert into txn_t values (9, 9)")
        .await
        .unwrap();
    assert_eq!(count(&mut b, "txn_t").await, 0);
    a.query_drop("rollback").await.unwrap();
    assert_eq!(count(&mut a, "txn_t").await, 0);

    a.query_drop("start transaction").await.unwrap();
    a.query_drop("insert into txn_t values (2, 2)")
        .await
        .unwrap();
    a.query_drop("commit").await.unwrap();
    assert_eq!(
        rows(&mut b, "select id from txn_t").await,
        vec![vec![Some("2".into())]]
    );

    // autocommit=0: statements open a transaction that COMMIT ends.
    a.query_drop("set autocommit = 0").await.unwrap();
    a.query_drop("insert into txn_t values (3, 3)")
        .await
        .unwrap();
    assert_eq!(count(&mut b, "txn_t").await, 1);
    a.query_drop("commit").await.unwrap();
    assert_eq!(count(&mut b, "txn_t").await, 2);
    a.query_drop("insert into txn_t values (4, 4)")
        .await
        .unwrap();
    // Turning autocommit back on commits the open transaction, as in MySQL.
    a.query_drop("set autocommit = 1").await.unwrap();
    assert_eq!(count(&mut b, "txn_t").await, 3);

    // A client that disconnects mid-transaction loses its writes and its
    // locks: another client's insert of the same key goes through (it would
    // wait for the lock, then fail, if the transaction were left open on a
    // pooled connection).
    let mut c = connect(Some("commerce")).await;
    c.query_drop("begin").await.unwrap();
    c.query_drop("insert into txn_t values (5, 5)")
        .await
        .unwrap();
    drop(c);
    b.query_drop("set innodb_lock_wait_timeout = 20")
        .await
        .unwrap();
    b.query_drop("insert into txn_t values (5, 50)")
        .await
        .unwrap();
    assert_eq!(
        rows(&mut b, "select v from txn_t where id = 5").await,
        vec![vec![Some("50".into())]]
    );
}

/// A temporary table created inside a transaction, after the transaction
/// has a connection, lives on that connection: prepared statements can
/// name it (MariaDB describes them there) and it outlives COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_table_made_mid_transaction_stays_with_the_session() {
    let mut a = connect(Some("commerce")).await;
    a.query_drop("create table if not exists tmp_src (id int primary key)")
        .await
        .unwrap();
    a.query_drop("begin").await.unwrap();
    a.query_drop("select count(*) from tmp_src").await.unwrap();
    a.query_drop("create temporary table tmp_mid (id int)")
        .await
        .unwrap();
    a.query_drop("insert into tmp_mid values (7), (8)")
        .await
        .unwrap();
    let stmt = a
        .prep("select id from tmp_mid where id > ? order by id")
        .await
        .unwrap();
    let ids: Vec<i32> = a.exec(&stmt, (0,)).await.unwrap();
    assert_eq!(ids, vec![7, 8]);
    a.query_drop("commit").await.unwrap();
    let ids: Vec<i32> = a.exec(&stmt, (7,)).await.unwrap();
    assert_eq!(ids, vec![8]);
    assert_eq!(count(&mut a, "tmp_mid").await, 2);
    // A transaction begun later on that connection is a transaction there.
    a.query_drop("delete from tmp_src").await.unwrap();
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into tmp_src values (1)")
        .await
        .unwrap();
    let mut b = connect(Some("commerce")).await;
    assert_eq!(count(&mut b, "tmp_src").await, 0);
    a.query_drop("rollback").await.unwrap();
    assert_eq!(count(&mut a, "tmp_src").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_returns_every_result() {
    let mut conn = connect(Some("commerce")).await;
    conn.query_drop("create table if not exists multi_t (id int primary key)")
        .await
        .unwrap();
    let mut result = conn
        .query_iter("delete from multi_t; insert into multi_t values (1), (2); select id from multi_t order by id; select 'x', null")
        .await
        .unwrap();
    let mut sets = Vec::new();
    loop {
        let set: Vec<mysql_async::Row> = result.collect().await.unwrap();
        sets.push((set.len(), result.affected_rows()));
        if result.is_empty() {
            break;
        }
    }
    drop(result);
    assert_eq!(sets.len(), 4, "{sets:?}");
    assert_eq!(sets[2].0, 2);
    assert_eq!(sets[3].0, 1);
    // An error in the middle stops the batch and reports that error.
    let e = conn
        .query_drop("select 1; select * from nope_t; select 3")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1146));
    assert_eq!(
        rows(&mut conn, "select 7").await,
        vec![vec![Some("7".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_variable_is_answered_by_shardgate() {
    let mut conn = connect(Some("commerce")).await;
    let r = rows(&mut conn, "select @@socket").await;
    assert_eq!(r, vec![vec![None]]);
    // A pool with the driver's default prefer_socket asks for @@socket and
    // must keep talking to shardgate over TCP.
    let c = cluster();
    let pool = mysql_async::Pool::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(c.port)
            .user(Some("app"))
            .db_name(Some("commerce")),
    );
    let mut pc = pool.get_conn().await.unwrap();
    let shown: Vec<String> = pc
        .query("show vitess_tablets")
        .await
        .map(|r: Vec<mysql_async::Row>| {
            r.into_iter()
                .map(|row| row.get::<String, _>(5).unwrap())
                .collect()
        })
        .unwrap();
    assert!(shown.contains(&"zone1-100".to_string()), "{shown:?}");
    drop(pc);
    pool.disconnect().await.unwrap();
    // shardgate itself reaches its local tablets over their Unix sockets
    // (MariaDB shows such clients as `localhost`, TCP ones as `ip:port`).
    let host = rows(
        &mut conn,
        "select host from information_schema.processlist where id = connection_id()",
    )
    .await;
    assert_eq!(host, vec![vec![Some("localhost".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_transactions_and_reuse() {
    let mut conn = connect(Some("commerce")).await;
    conn.query_drop("create table if not exists prep_t (id int primary key, v varchar(10))")
        .await
        .unwrap();
    conn.query_drop("delete from prep_t").await.unwrap();
    let begin = conn.prep("BEGIN").await.unwrap();
    let ins = conn.prep("insert into prep_t values (?, ?)").await.unwrap();
    let commit = conn.prep("COMMIT").await.unwrap();
    assert_eq!(ins.num_params(), 2);
    conn.exec_drop(&begin, ()).await.unwrap();
    for i in 0..5 {
        conn.exec_drop(&ins, (i, format!("v{i}"))).await.unwrap();
    }
    conn.exec_drop(&commit, ()).await.unwrap();
    let sel = conn
        .prep("select v from prep_t where id = ?")
        .await
        .unwrap();
    assert_eq!(sel.columns().len(), 1);
    for i in 0..5 {
        let v: Option<String> = conn.exec_first(&sel, (i,)).await.unwrap();
        assert_eq!(v, Some(format!("v{i}")));
    }
    let e = conn.exec_drop(&ins, (1, "dup")).await.unwrap_err();
    assert_eq!(err_code(&e), Some(1062));
    conn.close(sel).await.unwrap();
}

/// Tablets leave out an execution's column definitions when they are
/// those they last sent for the statement (MariaDB's cached metadata, which
/// shardgate's tablet connections take). Repeated executions, in and out
/// of a transaction, read as from MariaDB; when a column's type changes
/// under a prepared statement the new definitions come through, and the
/// values decode by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_results_follow_changed_column_definitions() {
    let mut sg = connect(Some("commerce")).await;
    let mut direct = connect_tablet(100).await;
    sg.query_drop("drop table if exists meta_t").await.unwrap();
    sg.query_drop("create table meta_t (id int primary key, v int, w varchar(8))")
        .await
        .unwrap();
    sg.query_drop("insert into meta_t values (1, 10, 'a'), (2, 20, 'b')")
        .await
        .unwrap();
    let sql = "select v, w from meta_t where id = ?";
    let sel = sg.prep(sql).await.unwrap();
    let direct_sel = direct.prep(sql).await.unwrap();
    for round in 0..3 {
        for id in [1i64, 2] {
            let got: Option<(i64, String)> = sg.exec_first(&sel, (id,)).await.unwrap();
            let want: Option<(i64, String)> = direct.exec_first(&direct_sel, (id,)).await.unwrap();
            assert_eq!(got, want, "round {round}, id {id}");
            assert_eq!(got.map(|r| r.0), Some(id * 10));
        }
        // The same statement on the session's own connection.
        sg.query_drop("begin").await.unwrap();
        let got: Option<(i64, String)> = sg.exec_first(&sel, (2i64,)).await.unwrap();
        sg.query_drop("commit").await.unwrap();
        assert_eq!(got, Some((20, "b".to_string())));
    }
    sg.query_drop("alter table meta_t modify v varchar(40)")
        .await
        .unwrap();
    sg.query_drop("update meta_t set v = concat('text-', id)")
        .await
        .unwrap();
    for _ in 0..3 {
        let got: Option<(String, String)> = sg.exec_first(&sel, (1i64,)).await.unwrap();
        let want: Option<(String, String)> = direct.exec_first(&direct_sel, (1i64,)).await.unwrap();
        assert_eq!(got, want);
        assert_eq!(got, Some(("text-1".to_string(), "a".to_string())));
    }
    sg.query_drop("drop table meta_t").await.unwrap();
}

/// A client that sets its connection's collation at every connect (as
/// MariaDB's Perl driver does) keeps using the tablet connection that
/// carries the setting: the connection the no-op check ran the SET on
/// serves the session, and the next session with the same SET gets it
/// back, instead of a tablet connection opened per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changing_set_keeps_the_connection_it_was_checked_on() {
    let (port, _) = spawn_shardgate(&one_loop(&[])).await;
    let mut ids = Vec::new();
    for round in 0..3 {
        let mut sg = connect_port(port, Some("commerce")).await;
        sg.query_drop("set collation_connection = 'utf8mb4_unicode_ci'")
            .await
            .unwrap();
        let coll: Option<String> = sg
            .query_first("select @@collation_connection")
            .await
            .unwrap();
        assert_eq!(coll.as_deref(), Some("utf8mb4_unicode_ci"));
        let marker = format!("set-keeps-{round}-{}", std::process::id());
        let sleeper = format!("select sleep(0.5), '{marker}'");
        let (slept, id) = tokio::join!(sg.query_drop(sleeper), connection_running(100, &marker));
        slept.unwrap();
        ids.push(id.expect("the session's tablet connection in the processlist"));
        sg.disconnect().await.unwrap();
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "tablet connections {ids:?}"
    );
}

/// Sessions with the same settings (a driver's connect-time SETs) share
/// pipelined tablet connections that carry those settings: sixteen
/// clients in two time zones read at once, each gets its own zone's
/// answer (as the tablet gives it), and their reads went out on shared
/// connections (before, any setting kept a session's reads on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_with_the_same_settings_share_connections() {
    let (port, web) = spawn_shardgate(&[]).await;
    let sql = "select cast(from_unixtime(?) as char)";
    let mut direct = connect_tablet(100).await;
    let mut want = std::collections::HashMap::new();
    for tz in ["+05:00", "-03:00"] {
        direct
            .query_drop(format!("set time_zone = '{tz}'"))
            .await
            .unwrap();
        let at: Option<String> = direct.exec_first(sql, (86_400,)).await.unwrap();
        want.insert(tz, at.unwrap());
    }
    assert_ne!(want["+05:00"], want["-03:00"]);
    let before = debug_var_at(web, "SharedReadExecutions").await;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let tz = if i % 2 == 0 { "+05:00" } else { "-03:00" };
            let want = want[tz].clone();
            tokio::spawn(async move {
                let mut c = connect_port(port, Some("commerce")).await;
                c.query_drop(format!("set time_zone = '{tz}'"))
                    .await
                    .unwrap();
                for n in 0..100 {
                    let got: Option<String> = c.exec_first(sql, (86_400,)).await.unwrap();
                    assert_eq!(got.as_deref(), Some(want.as_str()), "{tz}, read {n}");
                }
                c.disconnect().await.unwrap();
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let shared = debug_var_at(web, "SharedReadExecutions").await - before;
    assert!(shared > 0, "{shared} shared executions of 1,600 reads");
}

/// Statements a tablet ran for one user (MariaDB's user statistics).
async fn statements_of(dba: &mut mysql_async::Conn, user: &str) -> u64 {
    let n: Option<u64> = dba
        .query_first(format!(
            "select select_commands + update_commands + other_commands \
             from information_schema.user_statistics where user = '{user}'"
        ))
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// A driver's connect-time SETs that the tablet judged lately (after the
/// same settings) are answered by shardgate itself: the next client that
/// sends them costs the tablet only its own query, and still sees the
/// values it set. A `SET GLOBAL` through shardgate makes it ask again.
/// Counted with the tablet's user statistics for a user only this test's
/// shardgate connects as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sets_judged_lately_cost_no_round_trip() {
    let user = "sg_verdicts";
    let mut dba = connect_tablet(100).await;
    for host in ["localhost", "127.0.0.1"] {
        dba.query_drop(format!("create user if not exists '{user}'@'{host}'"))
            .await
            .unwrap();
        dba.query_drop(format!("grant all on *.* to '{user}'@'{host}'"))
            .await
            .unwrap();
    }
    dba.query_drop("set global userstat = 1").await.unwrap();
    let (port, _) = spawn_shardgate(&one_loop(&["--db-app-user", user])).await;
    // Sent first thing after connecting, as DBD::MariaDB sends them
    // (mysql_async reads two variables first unless told their values).
    let session = |sets: &'static [&'static str]| async move {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("app"))
            .db_name(Some("commerce"))
            .prefer_socket(false)
            .max_allowed_packet(Some(16 << 20))
            .wait_timeout(Some(28800));
        let mut sg = mysql_async::Conn::new(opts).await.unwrap();
        for set in sets {
            sg.query_drop(*set).await.unwrap();
        }
        // LIMIT: not a read of session defaults, whose answers are kept
        // a moment (so the tablet runs this one every time).
        let got: Option<(String, String, String)> = sg
            .query_first(
                "select @@collation_connection, @@character_set_client, @@collation_server limit 1",
            )
            .await
            .unwrap();
        sg.disconnect().await.unwrap();
        got.unwrap()
    };
    const SETS: &[&str] = &[
        "SET NAMES 'utf8mb4'",
        "SET collation_connection = 'utf8mb4_unicode_ci'",
        "SET collation_server = 'utf8mb4_unicode_ci'",
    ];
    let want = (
        "utf8mb4_unicode_ci".to_string(),
        "utf8mb4".to_string(),
        "utf8mb4_unicode_ci".to_string(),
    );
    assert_eq!(session(SETS).await, want);
    let first = statements_of(&mut dba, user).await;
    for round in 0..3 {
        assert_eq!(session(SETS).await, want, "round {round}");
    }
    let repeated = statements_of(&mut dba, user).await - first;
    assert_eq!(repeated, 3, "statements the tablet ran for three sessions");
    // A session without the SETs gets a clean connection, not theirs.
    let clean = session(&[]).await;
    assert_ne!(clean.0, want.0);
    // A SET GLOBAL through shardgate: the next session's SETs are checked.
    let mut sg = connect_port(port, Some("commerce")).await;
    let secs: u64 = sg
        .query_first("select @@global.net_read_timeout")
        .await
        .unwrap()
        .unwrap();
    sg.query_drop(format!("set global net_read_timeout = {secs}"))
        .await
        .unwrap();
    sg.disconnect().await.unwrap();
    let before = statements_of(&mut dba, user).await;
    assert_eq!(session(SETS).await, want);
    let checked = statements_of(&mut dba, user).await - before;
    assert!(checked > 1, "{checked} statements after SET GLOBAL");
    dba.query_drop("set global userstat = 0").await.unwrap();
}

fn sysbench(port: u16, db: &str, cmd: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "oltp_read_write".to_string(),
        "--db-driver=mysql".into(),
        "--mysql-host=127.0.0.1".into(),
        format!("--mysql-port={port}"),
        "--mysql-user=sbtest".into(),
        format!("--mysql-db={db}"),
        "--tables=2".into(),
        "--table-size=10000".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(cmd.into());
    let out = std::process::Command::new("sysbench")
        .args(&args)
        .output()
        .expect("run sysbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sysbench {cmd} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("FATAL") && !stderr.contains("FATAL"),
        "{stdout}\n{stderr}"
    );
    stdout
}

/// sysbench's default mode (server-side prepared statements, including
/// prepared BEGIN/COMMIT) through shardgate: prepare, a 10 s run, cleanup.
/// sysbench stops at the first error it does not ignore; the ones it
/// ignores are InnoDB deadlocks (1213) that MariaDB reports just the same
/// without a proxy in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_prepared() {
    let c = cluster();
    let mut conn = connect(Some("commerce")).await;
    conn.query_drop("drop table if exists sbtest1, sbtest2")
        .await
        .unwrap();
    sysbench(c.port, "commerce", "prepare", &[]);
    let run = sysbench(c.port, "commerce", "run", &["--threads=8", "--time=10"]);
    let tx: u64 = run
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("transactions line");
    assert!(tx > 100, "{run}");
    sysbench(c.port, "commerce", "cleanup", &[]);
    // sbtestN_seq (sequences for the sharded sysbench tables) stay.
    let left: Vec<String> = conn.query("show tables like 'sbtest_'").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// The same on the sharded keyspace: sbtest tables hashed by id, ids from
/// sequences in commerce (vschema/customer.json), without transactions
/// until cross-shard transactions exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_sharded() {
    let c = cluster();
    let mut conn = connect(Some("customer")).await;
    conn.query_drop("drop table if exists sbtest1, sbtest2")
        .await
        .unwrap();
    sysbench(c.port, "customer", "prepare", &[]);
    let total: u64 = conn
        .query_first("select count(*) from sbtest1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, 10000);
    // Rows are spread over both shards.
    let mut per_shard = Vec::new();
    for uid in [300, 400] {
        let mut t = connect_tablet(uid).await;
        let n: u64 = t
            .query_first("select count(*) from sbtest1")
            .await
            .unwrap()
            .unwrap();
        per_shard.push(n);
    }
    assert_eq!(per_shard.iter().sum::<u64>(), 10000);
    assert!(per_shard.iter().all(|n| *n > 3000), "{per_shard:?}");
    // sysbench's defaults (one thread): with --skip_trx its DELETE/INSERT
    // pairs race each other at 8 threads even on a single MariaDB.
    let run = sysbench(c.port, "customer", "run", &["--time=10", "--skip_trx=on"]);
    assert!(run.contains("queries:"), "{run}");
    sysbench(c.port, "customer", "cleanup", &[]);
}

/// A client's prepared statement that goes whole to one tablet runs there
/// as a prepared statement (MariaDB does not parse it again); statements
/// that need shardgate's own values still go as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_run_prepared_on_their_tablet() {
    let mut sg = connect(Some("commerce")).await;
    let mut direct = connect_tablet(100).await;
    let before = global_status(&mut direct, "Com_stmt_execute").await;
    for i in 0..200i64 {
        let got: Option<i64> = sg.exec_first("select ? + 1", (i,)).await.unwrap();
        assert_eq!(got, Some(i + 1));
    }
    let after = global_status(&mut direct, "Com_stmt_execute").await;
    assert!(after - before >= 200, "{before} -> {after}");
    // database() is answered with the keyspace name, not the tablet's.
    let db: Option<(String, i64)> = sg.exec_first("select database(), ?", (7,)).await.unwrap();
    assert_eq!(db, Some(("commerce".to_string(), 7)));
    // A failing prepared statement is a clean error; the session goes on.
    let e = sg
        .exec_drop("select * from no_such_table where id = ?", (1,))
        .await;
    assert!(e.is_err());
    let one: Option<i64> = sg.exec_first("select ?", (1,)).await.unwrap();
    assert_eq!(one, Some(1));
}

/// A tablet connection the server closed while the session was idle (here
/// `KILL`; a restart or `wait_timeout` look the same) is replaced: found
/// dead before use after a second of idleness, or, sooner, when sending the
/// statement fails (it never reached the server, so it runs on another
/// connection). The client sees no error, text or prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_connections_closed_while_idle_are_replaced() {
    let mut sg = connect(Some("commerce")).await;
    let mut dba = connect_tablet(100).await;
    let one: Option<i64> = sg.exec_first("select ? + 0", (1,)).await.unwrap();
    assert_eq!(one, Some(1));
    for (round, idle_ms) in [(0, 1500), (1, 300)] {
        // Find the tablet connection serving this session by a statement
        // it is running, then close it from the server side.
        let marker = format!("idle-kill-{round}-{}", std::process::id());
        let sleeper = format!("select sleep(1), '{marker}'");
        let (slept, id) = tokio::join!(sg.query_drop(sleeper), connection_running(100, &marker));
        slept.unwrap();
        let id = id.expect("the session's tablet connection in the processlist");
        dba.query_drop(format!("kill connection {id}"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(idle_ms)).await;
        let n: Option<i64> = sg.query_first("select 40 + 2").await.unwrap();
        assert_eq!(n, Some(42), "text, round {round}");
        let n: Option<i64> = sg.exec_first("select ? + 0", (7,)).await.unwrap();
        assert_eq!(n, Some(7), "prepared, round {round}");
    }
}

/// Prepared writes inside a transaction stay in it (they go to the
/// session's transaction connection, not the connections that forward
/// clean prepared statements): a rollback undoes them, a commit or
/// autocommit keeps them, as MariaDB itself sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_writes_follow_the_transaction() {
    let mut sg = connect(Some("commerce")).await;
    sg.query_drop("create table if not exists ptx_t (id int primary key, v int)")
        .await
        .unwrap();
    sg.query_drop("delete from ptx_t").await.unwrap();
    let ins = "insert into ptx_t values (?, ?)";
    let count = "select count(*) from ptx_t where v = ?";
    // Warm the forwarding path first.
    let n: Option<i64> = sg.exec_first(count, (1,)).await.unwrap();
    assert_eq!(n, Some(0));

    sg.query_drop("begin").await.unwrap();
    sg.exec_drop(ins, (1, 1)).await.unwrap();
    let n: Option<i64> = sg.exec_first(count, (1,)).await.unwrap();
    assert_eq!(n, Some(1), "the transaction sees its own write");
    sg.query_drop("rollback").await.unwrap();
    let n: Option<i64> = sg.exec_first(count, (1,)).await.unwrap();
    assert_eq!(n, Some(0), "rolled back");

    sg.exec_drop(ins, (2, 1)).await.unwrap();
    assert_eq!(sg.last_insert_id(), None);
    sg.query_drop("set autocommit = 0").await.unwrap();
    sg.exec_drop(ins, (3, 1)).await.unwrap();
    sg.query_drop("rollback").await.unwrap();
    sg.exec_drop(ins, (4, 1)).await.unwrap();
    sg.query_drop("commit").await.unwrap();
    sg.query_drop("set autocommit = 1").await.unwrap();

    let mut direct = connect_tablet(100).await;
    let ids: Vec<i32> = direct
        .query("select id from vt_commerce.ptx_t order by id")
        .await
        .unwrap();
    assert_eq!(ids, vec![2, 4]);
    let n: Option<i64> = sg.exec_first(count, (1,)).await.unwrap();
    assert_eq!(n, Some(2));
}

/// A connection pool's `SELECT 1` is answered by shardgate itself, as vtgate
/// answers it: the same columns and row as MariaDB gives, no tablet asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_one_is_answered_like_mariadb_without_a_tablet() {
    let mut sg = connect(Some("commerce")).await;
    let mut direct = connect_tablet(100).await;
    // The last two go to the tablet (MariaDB types them differently).
    for sql in [
        "select 1",
        "SELECT 1, 22, 333 FROM DUAL;",
        "select 0",
        "select 007",
        "select 1234567890",
    ] {
        let a: Vec<mysql_async::Row> = sg.query(sql).await.unwrap();
        let b: Vec<mysql_async::Row> = direct.query(sql).await.unwrap();
        assert_eq!(a.len(), 1, "{sql}");
        assert_eq!(a[0].clone().unwrap(), b[0].clone().unwrap(), "{sql}");
        for (ca, cb) in a[0].columns_ref().iter().zip(b[0].columns_ref()) {
            assert_eq!(ca, cb, "{sql}: column {}", ca.name_str());
        }
    }
    let listed: Vec<mysql_async::Row> = sg.query("vexplain queries select 1").await.unwrap();
    assert!(listed.is_empty(), "select 1 reached a tablet");
    // A target with no tablet of its type still answers it.
    let mut conn = connect(None).await;
    conn.query_drop("use customer@rdonly").await.unwrap();
    let one: Option<u32> = conn.query_first("select 1").await.unwrap();
    assert_eq!(one, Some(1));
    let e = conn.query_drop("select 2 from corder").await.unwrap_err();
    assert!(e.to_string().contains("no healthy tablet"), "{e}");
}

/// Reads (prepared and text) of sessions that hold no state share
/// pipelined tablet connections: sixteen clients at once each get their own rows (checked
/// against the tablet itself), several executions go out in one batch,
/// a statement that fails at execution fails alone and its session goes
/// on, and a session in a transaction or with settings keeps reading on
/// its own connection (it sees its uncommitted rows and its time zone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_reads_pipeline_sessions_and_keep_them_apart() {
    let mut setup = connect(Some("commerce")).await;
    setup
        .query_drop("create table if not exists shared_t (id bigint primary key, v varchar(40))")
        .await
        .unwrap();
    setup.query_drop("delete from shared_t").await.unwrap();
    let values: Vec<String> = (1..=200)
        .map(|i| format!("({i}, 'row-{i}-{}')", i * 7919 % 1000))
        .collect();
    setup
        .query_drop(format!("insert into shared_t values {}", values.join(",")))
        .await
        .unwrap();
    let mut direct = connect_tablet(100).await;
    let expected: Vec<(i64, String)> = direct
        .query("select id, v from shared_t order by id")
        .await
        .unwrap();
    assert_eq!(expected.len(), 200);
    let expected = std::sync::Arc::new(expected);

    let (batches, executions, solo) = (
        debug_var("SharedReadBatches").await,
        debug_var("SharedReadExecutions").await,
        debug_var("SharedReadSolo").await,
    );
    let clients: Vec<_> = (0..16i64)
        .map(|c| {
            let expected = expected.clone();
            tokio::spawn(async move {
                let mut sg = connect(Some("commerce")).await;
                for n in 0..60i64 {
                    let id = (c * 61 + n * 13) % 230 + 1;
                    let got: Option<String> = sg
                        .exec_first("select v from shared_t where id = ?", (id,))
                        .await
                        .unwrap();
                    let want = expected.iter().find(|(i, _)| *i == id).map(|r| r.1.clone());
                    assert_eq!(got, want, "client {c}, id {id}");
                    let text: Option<String> = sg
                        .query_first(format!("select v from shared_t where id = {id}"))
                        .await
                        .unwrap();
                    assert_eq!(text, want, "client {c}, id {id}, text");
                    if n % 10 == 0 {
                        let lo = id.min(190);
                        let got: Vec<(i64, String)> = sg
                            .exec(
                                "select id, v from shared_t where id between ? and ? order by id",
                                (lo, lo + 9),
                            )
                            .await
                            .unwrap();
                        let want: Vec<(i64, String)> = expected
                            .iter()
                            .filter(|(i, _)| (lo..=lo + 9).contains(i))
                            .cloned()
                            .collect();
                        assert_eq!(got, want, "client {c}, range from {lo}");
                    }
                    if n % 20 == 5 {
                        // Fails when it runs (more than one row), not when prepared.
                        let e = sg
                            .exec_drop(
                                "select (select id from shared_t) from dual where ? = 1",
                                (1,),
                            )
                            .await
                            .unwrap_err();
                        assert_eq!(err_code(&e), Some(1242), "{e}");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let (batches, executions, solo) = (
        debug_var("SharedReadBatches").await - batches,
        debug_var("SharedReadExecutions").await - executions,
        debug_var("SharedReadSolo").await - solo,
    );
    // Every read shared, or run alone when its tablet had nothing else in
    // flight (the clients' first reads, mostly); most of sixteen busy
    // clients' reads find company.
    assert!(
        executions + solo >= 16 * 60 * 2,
        "{executions} shared executions, {solo} alone"
    );
    assert!(
        executions > solo,
        "{executions} shared executions, {solo} alone"
    );
    assert!(
        batches < executions,
        "{executions} executions in {batches} batches"
    );
    // A lone client's reads run on its own connection (other tests share
    // the tablet: some of twenty may find company).
    // Other tests may hold the tablet busy for a while (`hold_tablet`), so
    // the lone client tries for up to 30 s.
    let before = debug_var("SharedReadSolo").await;
    let mut lone = connect(Some("commerce")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for id in 1..=20i64 {
            let got: Option<String> = lone
                .exec_first("select v from shared_t where id = ?", (id,))
                .await
                .unwrap();
            let want = expected.iter().find(|(i, _)| *i == id).map(|r| r.1.clone());
            assert_eq!(got, want, "lone client, id {id}");
        }
        if debug_var("SharedReadSolo").await > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a lone client's reads never ran on its own connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A transaction reads its own uncommitted row; the others do not see it.
    let mut txn = connect(Some("commerce")).await;
    txn.query_drop("begin").await.unwrap();
    txn.exec_drop("insert into shared_t values (?, ?)", (1000, "mine"))
        .await
        .unwrap();
    let mine: Option<String> = txn
        .exec_first("select v from shared_t where id = ?", (1000,))
        .await
        .unwrap();
    assert_eq!(mine.as_deref(), Some("mine"));
    let other: Option<String> = setup
        .exec_first("select v from shared_t where id = ?", (1000,))
        .await
        .unwrap();
    assert_eq!(other, None);
    txn.query_drop("rollback").await.unwrap();

    // SHOW WARNINGS after a shared read lists its warnings, as MariaDB
    // does (the read runs again where the question goes), prepared and
    // text; a statement that reads a table in between clears them.
    let mut warned = connect(Some("commerce")).await;
    let sql = "select cast(? as unsigned)";
    let got: Option<u64> = warned.exec_first(sql, ("12abc",)).await.unwrap();
    let want: Option<u64> = direct.exec_first(sql, ("12abc",)).await.unwrap();
    assert_eq!(got, want);
    let show = "show warnings";
    let want: Vec<(String, u32, String)> = direct.query(show).await.unwrap();
    assert_eq!(want.len(), 1, "MariaDB warns about '12abc'");
    let got: Vec<(String, u32, String)> = warned.query(show).await.unwrap();
    assert_eq!(got, want, "prepared");
    let text = "select cast('7x' as unsigned)";
    let _: Option<u64> = warned.query_first(text).await.unwrap();
    let _: Option<u64> = direct.query_first(text).await.unwrap();
    let want: Vec<(String, u32, String)> = direct.query(show).await.unwrap();
    let got: Vec<(String, u32, String)> = warned.query(show).await.unwrap();
    assert_eq!(got, want, "text");
    let count: Option<u64> = warned.query_first("select @@warning_count").await.unwrap();
    assert_eq!(count, Some(1));
    let clear = "select count(*) from shared_t";
    let _: Option<u64> = warned.query_first(clear).await.unwrap();
    let _: Option<u64> = direct.query_first(clear).await.unwrap();
    let want: Vec<(String, u32, String)> = direct.query(show).await.unwrap();
    let got: Vec<(String, u32, String)> = warned.query(show).await.unwrap();
    assert_eq!(got, want, "after a statement without warnings");

    // A session with settings reads under them.
    let mut tz = connect(Some("commerce")).await;
    tz.query_drop("set time_zone = '+05:00'").await.unwrap();
    direct.query_drop("set time_zone = '+05:00'").await.unwrap();
    let sql = "select cast(from_unixtime(?) as char)";
    let got: Option<String> = tz.exec_first(sql, (86_400,)).await.unwrap();
    let want: Option<String> = direct.exec_first(sql, (86_400,)).await.unwrap();
    assert_eq!(got, want);
    let plain: Option<String> = setup.exec_first(sql, (86_400,)).await.unwrap();
    assert_ne!(plain, want, "the setting leaked to another session");
}

/// A slow statement holds its shared connection only: a read that comes
/// while it runs goes out on another and is answered first, whether it
/// comes once the statement is known to be slow or right behind it (then
/// it may have picked the slow statement's queue, which gives it back
/// unwritten); when the tablet kills the slow statement's connection,
/// that client gets an error and its next statements run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shared_read_holds_up_no_other() {
    // The tablet busy, so both reads go to shared connections.
    let (port, _) = spawn_shardgate(&one_loop(&[])).await;
    let held = hold_tablet(port).await;
    let mut slow = connect_port(port, Some("commerce")).await;
    let mut quick = connect_port(port, Some("commerce")).await;
    let mut dba = connect_tablet(100).await;
    // Warm both sessions up, so they are on the shared path.
    for conn in [&mut slow, &mut quick] {
        let one: Option<i64> = conn.exec_first("select ? + 0", (1,)).await.unwrap();
        assert_eq!(one, Some(1));
    }
    for (round, wait_for_start) in [true, false].into_iter().enumerate() {
        let marker = format!("slow-shared-{}-{round}", std::process::id());
        let slow_sql =
            format!("select sum(seq % 7), '{marker}' from seq_1_to_100000000 where ? > 0");
        let running = tokio::spawn(async move {
            let res = slow.exec_drop(slow_sql, (1,)).await;
            (slow, res)
        });
        if wait_for_start {
            connection_running(100, &marker)
                .await
                .expect("the slow statement in the tablet's processlist");
        }
        let started = std::time::Instant::now();
        // A statement no shared connection has prepared yet.
        let sql = format!("select ? * 2, {round}");
        let got: Option<(i64, i64)> = quick.exec_first(sql, (21,)).await.unwrap();
        assert_eq!(got, Some((42, round as i64)));
        assert!(
            !running.is_finished(),
            "round {round}: the quick read waited {:?} for the slow one",
            started.elapsed()
        );
        let id = connection_running(100, &marker)
            .await
            .expect("the slow statement in the tablet's processlist");
        dba.query_drop(format!("kill connection {id}"))
            .await
            .unwrap();
        let (back, res) = running.await.unwrap();
        slow = back;
        assert!(res.is_err(), "the killed statement succeeded");
        let n: Option<i64> = slow.exec_first("select ? + 1", (6,)).await.unwrap();
        assert_eq!(n, Some(7));
        let n: Option<i64> = quick.exec_first("select ? + 1", (8,)).await.unwrap();
        assert_eq!(n, Some(9));
    }
    held.release().await;
}

/// A read held in flight on tablet 100 (the commerce primary), through
/// the shardgate at `port`, until [`HeldTablet::release`]: while it waits,
/// every other read of the tablet on its event loop goes to a shared
/// connection (a read that finds its tablet idle runs on its session's
/// own), so its callers run a one-loop shardgate of their own
/// ([`one_loop`]). It waits on a table lock, so it burns nothing.
/// One test holds the tablet at a time: each then runs statements that
/// burn the tablet's CPU for seconds and times reads against them (a slow
/// one must hold up no other), which another's would disturb.
struct HeldTablet {
    lock: mysql_async::Conn,
    reader: tokio::task::JoinHandle<()>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn hold_tablet(port: u16) -> HeldTablet {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = TURN.lock().await;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let table = format!("held_{}_{n}", std::process::id());
    let mut lock = connect_tablet(100).await;
    lock.query_drop(format!(
        "create table if not exists {table} (id int primary key)"
    ))
    .await
    .unwrap();
    lock.query_drop(format!("lock tables {table} write"))
        .await
        .unwrap();
    let marker = format!("held-read-{table}");
    let sql = format!("select count(*), '{marker}' from {table}");
    let reader = tokio::spawn(async move {
        let mut c = connect_port(port, Some("commerce")).await;
        let _: Option<(i64, String)> = c.query_first(sql).await.unwrap();
    });
    connection_running(100, &marker)
        .await
        .expect("the held read waits on the tablet");
    HeldTablet {
        lock,
        reader,
        _turn: turn,
    }
}

impl HeldTablet {
    async fn release(mut self) {
        self.lock.query_drop("unlock tables").await.unwrap();
        self.reader.await.unwrap();
    }
}

/// A shared read too large to hand over whole streams to its client in
/// chunks (prepared and text, rows equal to the tablet's); a client that
/// leaves in the middle of one costs the other sessions nothing: the rest
/// of its reply is read and dropped, and the shared connections go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_shared_reads_stream_and_a_client_leaving_costs_nothing() {
    let (port, web) = spawn_shardgate(&one_loop(&[])).await;
    let mut sg = connect_port(port, Some("commerce")).await;
    sg.query_drop(
        "create table if not exists big_shared_t (id bigint primary key, pad varchar(200))",
    )
    .await
    .unwrap();
    sg.query_drop("delete from big_shared_t").await.unwrap();
    sg.query_drop(
        "insert into big_shared_t select seq, repeat(char(65 + seq % 26), 200) from seq_1_to_40000",
    )
    .await
    .unwrap();
    let mut direct = connect_tablet(100).await;
    let want: Vec<(i64, String)> = direct
        .query("select id, pad from big_shared_t order by id")
        .await
        .unwrap();
    assert_eq!(want.len(), 40000);
    let held = hold_tablet(port).await;
    let streamed = debug_var_at(web, "SharedReadStreamed").await;
    let got: Vec<(i64, String)> = sg
        .exec(
            "select id, pad from big_shared_t where id > ? order by id",
            (0,),
        )
        .await
        .unwrap();
    assert!(
        got == want,
        "prepared: {} rows differ from the tablet's",
        got.len()
    );
    let got: Vec<(i64, String)> = sg
        .query("select id, pad from big_shared_t order by id")
        .await
        .unwrap();
    assert!(
        got == want,
        "text: {} rows differ from the tablet's",
        got.len()
    );
    assert!(debug_var_at(web, "SharedReadStreamed").await >= streamed + 2);

    // Clients that read the first kilobyte and leave (utf8mb4, the
    // tablets' character set: a client of another one carries a SET NAMES
    // and reads on its own connection).
    let streamed = debug_var_at(web, "SharedReadStreamed").await;
    for _ in 0..3 {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "mysql --quick --default-character-set=utf8mb4 -h127.0.0.1 -P{} -uapp commerce -e 'select id, pad from big_shared_t order by id' | head -c 1000 | wc -c",
                port
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    }
    // Their replies went through the shared connections, read to the end.
    assert!(debug_var_at(web, "SharedReadStreamed").await >= streamed + 3);
    held.release().await;
    let readers: Vec<_> = (0..4i64)
        .map(|k| {
            tokio::spawn(async move {
                let mut conn = connect_port(port, Some("commerce")).await;
                for id in (1..=200i64).step_by(7) {
                    let pad: Option<String> = conn
                        .exec_first("select pad from big_shared_t where id = ?", (id + k,))
                        .await
                        .unwrap();
                    assert_eq!(pad.map(|p| p.len()), Some(200), "id {}", id + k);
                }
                let n: Vec<i64> = conn
                    .exec("select id from big_shared_t where id > ? order by id", (0,))
                    .await
                    .unwrap();
                assert_eq!(n.len(), 40000);
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
}

/// With one shared connection per tablet (`--shared-read-connections 1`)
/// a read waits behind a slow one on it; when the tablet kills that
/// connection, the slow read fails (as on a connection of its own) and
/// the read waiting behind it, which never ran, runs on another
/// connection and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_waiting_behind_a_killed_shared_read_are_answered() {
    let (port, _) = spawn_shardgate(&one_loop(&["--shared-read-connections", "1"])).await;
    // The tablet busy, so the slow read goes to the shared connection.
    let held = hold_tablet(port).await;
    let marker = format!("killed-shared-{}", std::process::id());
    let mut slow = connect_port(port, Some("commerce")).await;
    let mut waiting = connect_port(port, Some("commerce")).await;
    let mut dba = connect_tablet(100).await;
    let slow_sql = format!("select sum(seq % 7), '{marker}' from seq_1_to_100000000 where ? > 0");
    let running = tokio::spawn(async move { slow.exec_drop(slow_sql, (1,)).await });
    let id = connection_running(100, &marker)
        .await
        .expect("the slow statement in the tablet's processlist");
    let behind = tokio::spawn(async move {
        let got: Option<i64> = waiting.exec_first("select ? * 2", (21,)).await.unwrap();
        got
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !behind.is_finished(),
        "the read did not wait behind the slow one"
    );
    dba.query_drop(format!("kill connection {id}"))
        .await
        .unwrap();
    assert!(
        running.await.unwrap().is_err(),
        "the killed statement succeeded"
    );
    assert_eq!(behind.await.unwrap(), Some(42));
    held.release().await;
}

/// A transaction's reads run on its own connection, where rows that lie
/// whole in the read buffer go to the client in runs, renumbered: the
/// driver checks every packet's sequence number. Rows of many sizes (so
/// runs end mid-packet at read boundaries), a NULL first cell (0xFB first
/// byte), text and prepared, BEGIN sent with the first read; equal to the
/// tablet's rows.
#[tokio::test(flavor = "multi_thread")]
async fn rows_read_in_a_transaction_arrive_whole_and_in_order() {
    let _ = cluster();
    let mut sg = connect(Some("commerce")).await;
    sg.query_drop("create table if not exists txn_runs_t (id bigint primary key, pad text)")
        .await
        .unwrap();
    sg.query_drop("delete from txn_runs_t").await.unwrap();
    sg.query_drop(
        "insert into txn_runs_t select seq, if(seq % 7 = 0, null, repeat(char(97 + seq % 26), seq * 37 % 3000)) from seq_1_to_6000",
    )
    .await
    .unwrap();
    let mut direct = connect_tablet(100).await;
    let sql = "select pad, id from txn_runs_t order by id";
    let want: Vec<(Option<String>, i64)> = direct.query(sql).await.unwrap();
    assert_eq!(want.len(), 6000);
    for round in 0..2 {
        sg.query_drop("begin").await.unwrap();
        let got: Vec<(Option<String>, i64)> = if round == 0 {
            sg.query(sql).await.unwrap()
        } else {
            sg.exec(
                "select pad, id from txn_runs_t where id > ? order by id",
                (0,),
            )
            .await
            .unwrap()
        };
        assert!(
            got == want,
            "round {round}: {} rows differ from the tablet's",
            got.len()
        );
        // A second read in the same transaction, on the same connection.
        let n: Vec<(i64,)> = sg
            .exec(
                "select count(*) from txn_runs_t where pad is null and id > ?",
                (0,),
            )
            .await
            .unwrap();
        assert_eq!(n, vec![(857,)]);
        sg.query_drop("commit").await.unwrap();
    }
    sg.query_drop("drop table txn_runs_t").await.unwrap();
}

/// A transaction that only read commits without a round trip for its
/// client: COMMIT is written and answered at once, its reply read ahead
/// of the connection's next one. The tablet still ends the transaction (a
/// DDL that needs the table's metadata lock goes through, the next
/// transaction sees rows written since), the connection serves the next
/// statements and, back in the pool, other sessions. A transaction that
/// wrote or locked rows waits for its COMMIT.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_that_only_read_commits_without_a_round_trip() {
    let (port, web) = spawn_shardgate(&[]).await;
    let t = format!("ro_commit_{}", std::process::id());
    let mut sg = connect_port(port, Some("commerce")).await;
    sg.query_drop(format!("create table {t} (id bigint primary key, v int)"))
        .await
        .unwrap();
    sg.query_drop(format!("insert into {t} values (1, 10)"))
        .await
        .unwrap();
    let mut direct = connect_tablet(100).await;
    direct
        .query_drop("set session lock_wait_timeout = 5")
        .await
        .unwrap();
    let counts = || async move {
        (
            debug_var_at(web, "TransactionPartsCommitted").await,
            debug_var_at(web, "TransactionPartsCommittedUnanswered").await,
        )
    };
    let (c0, u0) = counts().await;
    for round in 0..3i64 {
        sg.query_drop("begin").await.unwrap();
        let sql = format!("select v from {t} where id = ?");
        let v: Option<i64> = sg.exec_first(sql, (1,)).await.unwrap();
        assert_eq!(v, Some(10 + round));
        let text: Option<i64> = sg
            .query_first(format!("select v + 0 from {t} where id = 1"))
            .await
            .unwrap();
        assert_eq!(text, Some(10 + round));
        sg.query_drop("commit").await.unwrap();
        direct
            .query_drop(format!("alter table {t} add column c{round} int"))
            .await
            .unwrap_or_else(|e| {
                panic!("round {round}: the read-only transaction still holds {t}: {e}")
            });
        direct
            .query_drop(format!("update {t} set v = v + 1"))
            .await
            .unwrap();
    }
    assert_eq!(counts().await, (c0 + 3, u0 + 3));

    // A write, and a locking read: their COMMIT is waited for.
    let update = format!("update {t} set v = v * 2 where id = ?");
    assert_eq!(txn(&mut sg, &[&update], "commit").await, None);
    assert_eq!(v_of(&mut direct, &t).await, Some(26));
    let locking = format!("select v from {t} where id = ? for update");
    assert_eq!(txn(&mut sg, &[&locking], "commit").await, Some(26));
    assert_eq!(counts().await, (c0 + 5, u0 + 3));
    // A SELECT calling a stored function may write: its COMMIT is waited
    // for too. One calling built-in functions only is not.
    let f = format!("{t}_f");
    direct
        .query_drop(format!("create table vt_commerce.{t}_log (x int)"))
        .await
        .unwrap();
    direct
        .query_drop(format!(
            "create function vt_commerce.{f}(x int) returns int deterministic modifies sql data \
             begin insert into vt_commerce.{t}_log values (x); return x; end"
        ))
        .await
        .unwrap();
    let call = format!("select {f}(?)");
    assert_eq!(txn(&mut sg, &[&call], "commit").await, Some(1));
    let logged: Option<i64> = direct
        .query_first(format!("select count(*) from vt_commerce.{t}_log"))
        .await
        .unwrap();
    assert_eq!(logged, Some(1));
    let sum = format!("select sum(v) from {t} where id between ? and 2");
    assert_eq!(txn(&mut sg, &[&sum], "commit").await, Some(26));
    assert_eq!(counts().await, (c0 + 7, u0 + 4));
    direct
        .query_drop(format!("drop function vt_commerce.{f}"))
        .await
        .unwrap();
    direct
        .query_drop(format!("drop table vt_commerce.{t}_log"))
        .await
        .unwrap();

    // A rollback after a read-only transaction's unanswered commit, then
    // the session leaves right after one: its connection, back in the
    // pool with the reply still owed, serves the next session.
    let read = format!("select v from {t} where id = ?");
    assert_eq!(txn(&mut sg, &[&read], "rollback").await, Some(26));
    assert_eq!(txn(&mut sg, &[&read], "commit").await, Some(26));
    drop(sg);
    assert_eq!(counts().await, (c0 + 8, u0 + 5));
    let bump = format!("update {t} set v = v + 1 where id = ?");
    for _ in 0..2 {
        let mut next = connect_port(port, Some("commerce")).await;
        let v = txn(&mut next, &[&bump, &read], "commit").await;
        assert_eq!(v_of(&mut direct, &t).await, v);
        // Past the idle check's second, the pooled connection is checked
        // before use with the reply of a read-only commit owed.
        assert_eq!(txn(&mut next, &[&read], "commit").await, v);
        drop(next);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    }
    sg = connect_port(port, Some("commerce")).await;
    assert_eq!(v_of(&mut sg, &t).await, Some(28));
    sg.query_drop(format!("drop table {t}")).await.unwrap();
}

/// Busy polling (`--busy-poll-us`) ends with the commands: a shardgate
/// that may poll for 50 ms after each command answers a burst of queries
/// and then, with no command coming, polls no more and spends next to no
/// CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shardgate_stops_polling() {
    let (port, web, pid) = spawn_shardgate_pid(&["--busy-poll-us".into(), "50000".into()]).await;
    let mut sg = connect_port(port, Some("commerce")).await;
    for i in 0..200i64 {
        let v: Option<i64> = sg.exec_first("select ? + 1", (i,)).await.unwrap();
        assert_eq!(v, Some(i + 1));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the parenthesized name: utime and stime are the
        // 12th and 13th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        f[11] + f[12]
    };
    let polls = debug_var_at(web, "EventLoopBusyPolls").await;
    let before = ticks();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let spent = ticks() - before;
    // A web request is not a client command: no poll since the last
    // command's window closed.
    assert_eq!(debug_var_at(web, "EventLoopBusyPolls").await, polls);
    // Clock ticks are 10 ms: a loop still polling would spend ~200.
    assert!(
        spent <= 20,
        "idle shardgate spent {spent} ticks of CPU in 2 s"
    );
    // Still answering after its idle spell.
    let v: Option<i64> = sg.query_first("select 41 + 1").await.unwrap();
    assert_eq!(v, Some(42));
}

/// With two event loops (`--worker-threads 2`, clients dealt in turn), a
/// session takes tablet connections its own loop opened: one registered
/// with another loop's reactor would have each reply woken across
/// threads. Sequential clients alternate loops; each reports the tablet
/// connection its transaction ran on: the two loops' sets never meet, and
/// each loop reuses its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_take_tablet_connections_of_their_own_event_loop() {
    let (port, _, _) = spawn_shardgate_pid(&["--worker-threads".into(), "2".into()]).await;
    let mut ids: [std::collections::BTreeSet<u64>; 2] = Default::default();
    for i in 0..8 {
        let mut conn = connect_port(port, Some("commerce")).await;
        conn.query_drop("begin").await.unwrap();
        let id: Option<u64> = conn.query_first("select connection_id()").await.unwrap();
        conn.query_drop("commit").await.unwrap();
        conn.disconnect().await.unwrap();
        ids[i % 2].insert(id.unwrap());
        // The session's connections go back to the pools as it ends.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ids[0].is_disjoint(&ids[1]),
        "loops shared a connection: {ids:?}"
    );
    assert!(
        ids.iter().all(|s| s.len() < 4),
        "a loop reused none of its connections: {ids:?}"
    );
}

/// A transaction running each prepared statement of `stmts` on row 1 and
/// ending with `end`: what the last one read.
async fn txn(conn: &mut mysql_async::Conn, stmts: &[&str], end: &str) -> Option<i64> {
    conn.query_drop("begin").await.unwrap();
    let mut got = None;
    for sql in stmts {
        got = conn.exec_first(*sql, (1,)).await.unwrap();
    }
    conn.query_drop(end).await.unwrap();
    got
}

/// `v` of row 1 of `t`, as `conn` reads it.
async fn v_of(conn: &mut mysql_async::Conn, t: &str) -> Option<i64> {
    let sql = format!("select v from {t} where id = 1");
    conn.query_first(sql).await.unwrap()
}

/// A large client command (here a 100 KB statement) has the allocator's
/// free memory handed back to the kernel a second after it ends, once for
/// a burst of them; small commands never ask for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_command_is_followed_by_one_heap_trim() {
    let (port, web) = spawn_shardgate(&[]).await;
    let mut sg = connect_port(port, Some("commerce")).await;
    for i in 0..50i64 {
        let v: Option<i64> = sg.query_first(format!("select {i} + 1")).await.unwrap();
        assert_eq!(v, Some(i + 1));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(debug_var_at(web, "HeapTrims").await, 0);
    let big = "x".repeat(100 * 1024);
    for _ in 0..3 {
        let n: Option<i64> = sg
            .query_first(format!("select length('{big}')"))
            .await
            .unwrap();
        assert_eq!(n, Some(100 * 1024));
    }
    let trimmed = eventually(5, || async move {
        (debug_var_at(web, "HeapTrims").await > 0).then_some(())
    })
    .await;
    assert!(trimmed.is_some(), "no trim after large commands");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        debug_var_at(web, "HeapTrims").await,
        1,
        "one trim per burst"
    );
}

/// One loop, a budget of `cap` connections per tablet waited for up to
/// `wait_ms`, and no shared reads (which would gather the statements of
/// these tests onto fewer connections than their sessions).
fn budget(cap: u32, wait_ms: u32) -> Vec<String> {
    let (cap, wait) = (cap.to_string(), wait_ms.to_string());
    one_loop(&[
        "--tablet-connections",
        &cap,
        "--tablet-connection-wait-ms",
        &wait,
        "--shared-read-connections",
        "0",
    ])
}

/// How many connections on tablet 100 are running a statement that
/// contains `marker` (the poller's own left out).
async fn running(marker: &str) -> usize {
    let mut dba = connect_tablet(100).await;
    let n: Option<u64> = dba
        .query_first(format!(
            "select count(*) from information_schema.processlist \
             where info like '%{marker}%' and id <> connection_id()"
        ))
        .await
        .expect("processlist");
    n.unwrap_or_default() as usize
}

/// A burst of clients beyond `--tablet-connections` queues for the
/// tablet's connections instead of failing (MariaDB's "Too many
/// connections" when each opened one): every statement answers, the
/// tablet never runs more of them at once than the budget, and the burst
/// takes as long as running them that many at a time does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_tablet_budget_waits_its_turn() {
    let _ = cluster();
    let (port, web) = spawn_shardgate(&budget(3, 30000)).await;
    let marker = "budget_burst_7";
    let clients = 9;
    let start = std::time::Instant::now();
    let burst = futures_util::future::join_all((0..clients).map(|_| async move {
        let mut c = connect_port(port, Some("commerce")).await;
        c.query_first::<i64, _>(format!("select sleep(0.4) + length('{marker}')"))
            .await
    }));
    let watch = async {
        let mut most = 0;
        while start.elapsed() < std::time::Duration::from_millis(1000) {
            most = most.max(running(marker).await);
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        most
    };
    let (answers, most) = tokio::join!(burst, watch);
    for a in &answers {
        assert_eq!(a.as_ref().ok(), Some(&Some(marker.len() as i64)), "{a:?}");
    }
    assert!(most <= 3, "{most} ran at once on the tablet, budget 3");
    assert!(most >= 2, "the budget was used: {most} at once at most");
    let took = start.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1150),
        "nine 0.4 s statements three at a time took {took:?}"
    );
    // What /debug/vars says agrees: six statements at least waited, none
    // in vain, and no more than three connections are open.
    assert!(debug_var_at(web, "TabletConnectionWaits").await >= 6);
    assert_eq!(debug_var_at(web, "TabletConnectionTimeouts").await, 0);
    assert!(debug_var_at(web, "TabletConnectionsOpen").await <= 3);
}

/// A statement that finds every connection of the budget busy for longer
/// than `--tablet-connection-wait-ms` fails with vtgate's error for a full
/// pool (1203, SQLSTATE 42000) and did not run; its client connection
/// stays usable, and its next statement runs once a connection is free.
/// An open transaction holds its connection meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_waits_too_long_for_a_tablet_connection_fails_cleanly() {
    let _ = cluster();
    let (port, web) = spawn_shardgate(&budget(2, 300)).await;
    let mut txn = connect_port(port, Some("commerce")).await;
    txn.query_drop("begin").await.unwrap();
    // Not `select 1`, which shardgate answers itself.
    txn.query_drop("select sleep(0)").await.unwrap();
    let mut sleeper = connect_port(port, Some("commerce")).await;
    let mut late = connect_port(port, Some("commerce")).await;
    let sleep = sleeper.query_drop("select sleep(1.5)");
    let refused = async {
        // Once the sleep holds the budget's other connection.
        connection_running(100, "sleep(1.5)")
            .await
            .expect("sleeping");
        let start = std::time::Instant::now();
        let e = late
            .query_drop("select 'budget_late_3'")
            .await
            .expect_err("no connection free");
        (e, start.elapsed())
    };
    let (slept, (e, waited)) = tokio::join!(sleep, refused);
    slept.unwrap();
    let mysql_async::Error::Server(se) = &e else {
        panic!("{e:?}");
    };
    assert_eq!((se.code, se.state.as_str()), (1203, "42000"), "{se:?}");
    assert!(se.message.contains("commerce.0.primary"), "{se:?}");
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "waited {waited:?}"
    );
    // The sleep is over: the same client's next statement runs.
    assert_eq!(
        rows(&mut late, "select 'budget_late_4'").await,
        [[Some("budget_late_4".to_string())]]
    );
    // The transaction kept its connection all along.
    txn.query_drop("commit").await.unwrap();
    assert_eq!(debug_var_at(web, "TabletConnectionTimeouts").await, 1);
}

/// Connections kept while idle (a session's sticky ones) hold at most
/// half the tablet's budget: clients that ran a statement and went quiet
/// leave the rest to the next ones, which run without waiting out
/// `--tablet-connection-wait-ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sessions_keep_at_most_half_the_tablet_budget() {
    let _ = cluster();
    let (port, _) = spawn_shardgate(&budget(4, 1000)).await;
    let mut quiet = Vec::new();
    for _ in 0..6 {
        let mut c = connect_port(port, Some("commerce")).await;
        c.query_drop("select sleep(0)").await.unwrap();
        quiet.push(c);
    }
    let busy = futures_util::future::join_all((0..3).map(|i| async move {
        let mut c = connect_port(port, Some("commerce")).await;
        c.query_first::<i64, _>(format!("select sleep(0.3) + {i}"))
            .await
    }));
    for (i, a) in busy.await.into_iter().enumerate() {
        assert_eq!(a.ok(), Some(Some(i as i64)), "busy client {i}");
    }
    // The quiet ones are still served.
    for c in &mut quiet {
        c.query_drop("select sleep(0)").await.unwrap();
    }
}

/// One sample of `/metrics`: the value of the series `series` (name and
/// labels exactly as written), or 0 when it is absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{series} value {v}")))
        .unwrap_or(0.0)
}

/// Prometheus scrapes `/metrics`: every command a client sends is timed
/// under vtgate's names and labels (`vtgate_api` by operation, keyspace
/// and tablet type), each error counted with its Vitess code, and the
/// `/debug/vars` numbers appear under vtgate's snake-case names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_command_by_target_and_errors_by_code() {
    let _ = cluster();
    let (port, web) = spawn_shardgate(&[]).await;
    let mut conn = connect_port(port, Some("commerce")).await;
    conn.query_drop("create table if not exists metrics_t (id int primary key)")
        .await
        .unwrap();
    conn.query_drop("delete from metrics_t").await.unwrap();
    let before = http_get(web, "/metrics").await;
    let primary = "db_type=\"primary\",keyspace=\"commerce\"";
    let exec = format!("{primary},operation=\"Execute\"");
    let count = |page: &str, labels: &str| sample(page, &format!("vtgate_api_count{{{labels}}}"));

    // Five text statements, one of them failing on a duplicate key, one
    // that does not parse.
    conn.query_drop("insert into metrics_t values (1)")
        .await
        .unwrap();
    let dup = conn.query_drop("insert into metrics_t values (1)").await;
    assert!(
        matches!(dup, Err(mysql_async::Error::Server(ref e)) if e.code == 1062),
        "{dup:?}"
    );
    let bad = conn.query_drop("selec 1").await;
    assert!(bad.is_err());
    let _: Vec<i64> = conn.query("select id from metrics_t").await.unwrap();
    conn.query_drop("use commerce@replica").await.unwrap();
    // Then on the replica: one prepare and two executions.
    let stmt = conn.prep("select ? + 1").await.unwrap();
    for i in 0..2 {
        let v: Option<i64> = conn.exec_first(&stmt, (i,)).await.unwrap();
        assert_eq!(v, Some(i + 1));
    }

    let after = http_get(web, "/metrics").await;
    let body = after.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(after.starts_with("HTTP/1.0 200"), "{after}");
    // The USE ran on the primary target, so it counts there.
    assert_eq!(count(body, &exec) - count(&before, &exec), 5.0, "{body}");
    let replica = "db_type=\"replica\",keyspace=\"commerce\"";
    let (rexec, rprep) = (
        format!("{replica},operation=\"Execute\""),
        format!("{replica},operation=\"Prepare\""),
    );
    assert_eq!(count(body, &rexec) - count(&before, &rexec), 2.0, "{body}");
    assert_eq!(count(body, &rprep) - count(&before, &rprep), 1.0, "{body}");
    let errors = |page: &str, code: &str| {
        sample(
            page,
            &format!("vtgate_api_error_counts{{code=\"{code}\",{exec}}}"),
        )
    };
    assert_eq!(
        errors(body, "ALREADY_EXISTS") - errors(&before, "ALREADY_EXISTS"),
        1.0
    );
    assert_eq!(
        errors(body, "INVALID_ARGUMENT") - errors(&before, "INVALID_ARGUMENT"),
        1.0
    );
    // A histogram whose buckets add up: cumulative, the last is the count,
    // and the time summed is that of commands that each took under 10 s.
    let buckets: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("vtgate_api_bucket{{{exec},le=")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 11, "{body}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets[10], count(body, &exec));
    let sum = sample(body, &format!("vtgate_api_sum{{{exec}}}"));
    assert!(sum > 0.0 && sum < 10.0 * count(body, &exec), "{sum}");
    // The process metrics every Prometheus client exports, vtgate's too.
    let rss = sample(body, "process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    assert!(sample(body, "process_cpu_seconds_total") > 0.0, "{body}");
    assert!(sample(body, "process_open_fds") >= 3.0, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(body, "process_start_time_seconds");
    assert!(
        (now - started).abs() < 600.0,
        "started {started}, now {now}"
    );
    // The /debug/vars numbers, under vtgate's names.
    assert!(sample(body, "vtgate_tablets") >= 1.0, "{body}");
    assert!(body.contains("# TYPE vtgate_tablet_connections_open gauge\n"));
    // The text format: every sample line is a name, optional labels and a
    // number, and every family is typed before its samples.
    let mut typed = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            typed.insert(t.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{line} before its TYPE");
    }
    // The same numbers as vtgate's /debug/vars shows them.
    let vars = http_get(web, "/debug/vars").await;
    let vars: serde_json::Value =
        serde_json::from_str(vars.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        vars["VtgateApi"]["Histograms"]["Prepare.commerce.replica"]["Count"],
        count(body, &rprep) as u64
    );
    assert_eq!(
        vars["VtgateApiErrorCounts"]["Execute.commerce.primary.ALREADY_EXISTS"],
        errors(body, "ALREADY_EXISTS") as u64
    );
    // And for a person, on the status page.
    let status = http_get(web, "/debug/status").await;
    assert!(
        status.contains("<tr><td>Prepare</td><td>commerce</td><td>replica</td><td>1</td>"),
        "{status}"
    );
    // With the rate since start, over every command counted.
    let total = count(body, &exec) + count(body, &rexec) + count(body, &rprep);
    assert!(
        status.contains(&format!("s: {total} commands, ")),
        "{status}"
    );
    assert!(
        status.contains("<td>commerce</td><td>primary</td><td>ALREADY_EXISTS</td><td>1</td>"),
        "{status}"
    );
    conn.query_drop("use commerce").await.unwrap();
    conn.query_drop("drop table metrics_t").await.unwrap();
}

/// vttablet's transaction killer: a transaction open for longer than
/// `--queryserver-config-transaction-timeout` has its tablet connection
/// killed, so its row locks go at once (another client's update of the
/// row goes through), its changes are rolled back, its client's next
/// statement fails with 1317 and the session goes on; a ROLLBACK after the
/// timeout succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_too_long_is_rolled_back_and_its_locks_freed() {
    let _ = cluster();
    let flags = ["--queryserver-config-transaction-timeout", "500ms"];
    let (port, _) = spawn_shardgate(&flags.map(String::from)).await;
    let mut a = connect_port(port, Some("commerce")).await;
    let mut b = connect_port(port, Some("commerce")).await;
    a.query_drop("create table if not exists txtimeout (id int primary key, v int)")
        .await
        .unwrap();
    a.query_drop("replace into txtimeout values (1, 0), (2, 0)")
        .await
        .unwrap();

    a.query_drop("begin").await.unwrap();
    a.query_drop("update txtimeout set v = 10 where id = 1")
        .await
        .unwrap();
    a.query_drop("insert into txtimeout values (3, 3)")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // The lock is gone: without the killer this waits out the 2 s and fails.
    b.query_drop("set innodb_lock_wait_timeout = 2")
        .await
        .unwrap();
    b.query_drop("update txtimeout set v = 20 where id = 1")
        .await
        .unwrap();
    let e = a.query_drop("commit").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    assert!(e.to_string().contains("transaction timeout"), "{e}");
    // Rolled back: the insert is gone, and the session goes on.
    let rows: Vec<(i32, i32)> = a
        .query("select id, v from txtimeout order by id")
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, 20), (2, 0)]);

    // A ROLLBACK after the timeout is what the client asked for.
    a.query_drop("begin").await.unwrap();
    a.query_drop("update txtimeout set v = 30 where id = 2")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    a.query_drop("rollback").await.unwrap();
    let v: Option<i32> = a
        .query_first("select v from txtimeout where id = 2")
        .await
        .unwrap();
    assert_eq!(v, Some(0));
    // A short transaction commits.
    a.query_drop("begin").await.unwrap();
    a.query_drop("update txtimeout set v = 40 where id = 2")
        .await
        .unwrap();
    a.query_drop("commit").await.unwrap();
    let v: Option<i32> = b
        .query_first("select v from txtimeout where id = 2")
        .await
        .unwrap();
    assert_eq!(v, Some(40));
    a.query_drop("drop table txtimeout").await.unwrap();
}

/// Runs `sql` on `conn` in the background: its outcome, and how long it
/// took.
fn in_background(
    mut conn: mysql_async::Conn,
    sql: &str,
) -> tokio::task::JoinHandle<(
    mysql_async::Conn,
    Result<(), mysql_async::Error>,
    std::time::Duration,
)> {
    let sql = sql.to_string();
    tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let res = conn.query_drop(&sql).await;
        (conn, res, t0.elapsed())
    })
}

/// Runs `sql`, which must be stopped (error 1317) well before it would
/// end on its own: the error.
async fn stopped_soon(conn: &mut mysql_async::Conn, sql: &str) -> mysql_async::Error {
    let t0 = std::time::Instant::now();
    let e = conn.query_drop(sql).await.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{sql}: {e}");
    let took = t0.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "{sql}: {took:?}");
    e
}

/// KILL names the gate's connections, never a tablet's: without
/// `--allow-kill-statement` it is refused (1095, as vtgate), and a KILL of
/// a number that is some tablet thread's, not a client's, kills nothing.
/// With it, `KILL QUERY id` stops another client's statement on the
/// tablet (1317 for that client, whose connection and transaction go on),
/// and `KILL CONNECTION id` ends that client's session, rolling back its
/// transaction. The id is the handshake's (what the `mysql` client shows
/// and sends on Ctrl-C).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stops_a_clients_statement_or_its_connection() {
    let _ = cluster();
    let mut plain = connect(Some("commerce")).await;
    let e = plain.query_drop("kill query 1").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1095), "{e}");
    let one: Option<i32> = plain.query_first("select 1 from dual").await.unwrap();
    assert_eq!(one, Some(1));

    let (port, _) = spawn_shardgate(&["--allow-kill-statement".to_string()]).await;
    let mut admin = connect_port(port, Some("commerce")).await;
    admin
        .query_drop("create table if not exists killed_t (id int primary key, v int)")
        .await
        .unwrap();
    admin.query_drop("delete from killed_t").await.unwrap();
    let a = connect_port(port, Some("commerce")).await;
    let e = admin.query_drop("kill query 4000000").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1094), "{e}");
    let e = admin.query_drop("kill user vt_app").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1064), "{e}");

    // A number that is a tablet thread's (a statement run on the tablet
    // directly) is no tablet thread to the gate: whether or not a client
    // of the gate has that number, the tablet's statement runs to its end.
    let a_id = a.id();
    let direct = tokio::spawn(async {
        let mut t = connect_tablet(100).await;
        let t0 = std::time::Instant::now();
        let res = t.query_drop("select sleep(3), 'kill_marker_1'").await;
        (res, t0.elapsed())
    });
    let thread = connection_running(100, "kill_marker_1")
        .await
        .expect("running");
    match admin.query_drop(format!("kill query {thread}")).await {
        Ok(()) => {}
        Err(e) => assert_eq!(err_code(&e), Some(1094), "{e}"),
    }
    let (res, took) = direct.await.unwrap();
    res.unwrap();
    assert!(took >= std::time::Duration::from_millis(2900), "{took:?}");

    // KILL QUERY: the statement ends at once, the tablet query with it,
    // and the session's transaction goes on.
    let mut a = a;
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into killed_t values (1, 1)")
        .await
        .unwrap();
    let run = in_background(a, "select sleep(20), 'kill_marker_2'");
    connection_running(100, "kill_marker_2")
        .await
        .expect("running");
    admin
        .query_drop(format!("kill query {a_id}"))
        .await
        .unwrap();
    let (mut a, res, took) = run.await.unwrap();
    let e = res.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    let gone = connection_running(100, "kill_marker_2").await;
    assert_eq!(gone, None, "the tablet query still runs");
    a.query_drop("commit").await.unwrap();
    assert_eq!(count(&mut admin, "killed_t").await, 1);

    // The real `mysql` client's Ctrl-C: it connects again and sends
    // `KILL QUERY <its connection id>`; its statement ends at once.
    let t0 = std::time::Instant::now();
    let cli = std::process::Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uapp",
            "--batch",
            "commerce",
            "-e",
            "select sleep(20), 'kill_marker_3'",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mysql");
    connection_running(100, "kill_marker_3")
        .await
        .expect("running");
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1317"), "{stderr}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(connection_running(100, "kill_marker_3").await, None);

    // KILL CONNECTION: the session ends and its transaction is rolled back.
    let mut b = connect_port(port, Some("commerce")).await;
    let b_id = b.id();
    b.query_drop("begin").await.unwrap();
    b.query_drop("insert into killed_t values (2, 2)")
        .await
        .unwrap();
    admin
        .query_drop(format!("kill connection {b_id}"))
        .await
        .unwrap();
    assert!(b.query_drop("select 1").await.is_err());
    let rows = eventually(5, || async move {
        let mut c = connect_port(port, Some("commerce")).await;
        let n = count(&mut c, "killed_t").await;
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(
        rows,
        Some(1),
        "the killed session's insert was not rolled back"
    );
    // The killer's own session goes on; the killed id is unknown now.
    let e = admin.query_drop(format!("kill {b_id}")).await.unwrap_err();
    assert_eq!(err_code(&e), Some(1094), "{e}");
    a.query_drop("drop table killed_t").await.unwrap();
}

/// vtgate's query timeout: `--query-timeout`, a session's
/// `SET query_timeout` over it and a statement's `/*vt+
/// QUERY_TIMEOUT_MS=n */` over both. A statement still running when it
/// passes is stopped on its tablet (a read, a prepared read, a write
/// waiting for a row lock, a scatter over two shards) and fails with 1317
/// (70100); the connection and its transaction go on, and a statement
/// that finishes in time is not disturbed later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_their_query_timeout_are_stopped() {
    let _ = cluster();
    let (port, _) = spawn_shardgate(&["--query-timeout".to_string(), "400".to_string()]).await;
    let mut a = connect_port(port, Some("commerce")).await;
    let e = stopped_soon(&mut a, "select sleep(10), 'qt_marker_1'").await;
    assert!(e.to_string().contains("query timeout (400 ms)"), "{e}");
    assert_eq!(connection_running(100, "qt_marker_1").await, None);
    // In time: answered, and the next statement is not stopped by the
    // timer of the last.
    let v: Option<i32> = a.query_first("select sleep(0.1)").await.unwrap();
    assert_eq!(v, Some(0));
    let e = a.query_drop("select sleep(0.8)").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    // The session's value, over the flag's.
    let v: Option<u64> = a.query_first("select @@query_timeout").await.unwrap();
    assert_eq!(v, Some(400));
    a.query_drop("set query_timeout = 0").await.unwrap();
    let v: Option<u64> = a.query_first("select @@query_timeout").await.unwrap();
    assert_eq!(v, Some(0));
    let v: Option<i32> = a.query_first("select sleep(0.6)").await.unwrap();
    assert_eq!(v, Some(0));
    // The statement's, over the session's; prepared too.
    let e = a
        .query_drop("select /*vt+ QUERY_TIMEOUT_MS=200 */ sleep(10)")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    let e = a
        .exec_drop("select /*vt+ QUERY_TIMEOUT_MS=200 */ sleep(?)", (10,))
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    let e = a
        .query_drop("set query_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1231), "{e}");

    // A write waiting for another transaction's row lock is stopped, and
    // its own transaction goes on.
    let mut holder = connect_port(port, Some("commerce")).await;
    holder
        .query_drop("create table if not exists qt_t (id int primary key, v int)")
        .await
        .unwrap();
    holder
        .query_drop("replace into qt_t values (1, 0), (2, 0)")
        .await
        .unwrap();
    holder.query_drop("set query_timeout = 0").await.unwrap();
    holder.query_drop("begin").await.unwrap();
    holder
        .query_drop("update qt_t set v = 1 where id = 1")
        .await
        .unwrap();
    a.query_drop("set query_timeout = 300").await.unwrap();
    a.query_drop("begin").await.unwrap();
    a.query_drop("update qt_t set v = 2 where id = 2")
        .await
        .unwrap();
    stopped_soon(&mut a, "update qt_t set v = 2 where id = 1").await;
    holder.query_drop("commit").await.unwrap();
    a.query_drop("commit").await.unwrap();
    let rows: Vec<(i32, i32)> = holder
        .query("select id, v from qt_t order by id")
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, 1), (2, 2)]);
    holder.query_drop("drop table qt_t").await.unwrap();

    // A scatter over the sharded keyspace's two shards: stopped on both.
    let mut c = connect_port(port, Some("customer")).await;
    c.query_drop("set query_timeout = 0").await.unwrap();
    c.query_drop(
        "insert into corder (order_id, customer_id, sku, price) values \
         (900001, 1, 'qt', 1), (900002, 2, 'qt', 1), (900003, 3, 'qt', 1), (900004, 4, 'qt', 1), \
         (900005, 5, 'qt', 1), (900006, 6, 'qt', 1), (900007, 7, 'qt', 1), (900008, 8, 'qt', 1)",
    )
    .await
    .unwrap();
    for uid in [300, 400] {
        let mut t = connect_tablet(uid).await;
        let n: Option<u64> = t
            .query_first("select count(*) from corder where sku = 'qt'")
            .await
            .unwrap();
        assert!(n.unwrap_or(0) > 0, "no rows on tablet {uid}");
    }
    c.query_drop("set query_timeout = 300").await.unwrap();
    stopped_soon(
        &mut c,
        "select sleep(10), 'qt_marker_2' from corder where sku = 'qt'",
    )
    .await;
    for uid in [300, 400] {
        assert_eq!(
            connection_running(uid, "qt_marker_2").await,
            None,
            "tablet {uid}"
        );
    }
    c.query_drop("delete from corder where sku = 'qt'")
        .await
        .unwrap();
    assert_eq!(count(&mut c, "corder where sku = 'qt'").await, 0);
}

/// `SHOW [FULL] TABLES FROM ks` lists that keyspace's tables under its
/// name, from any session (a keyspace selected or none), as vtgate shows
/// them; a database that is no keyspace is the tablet's to refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tables_from_a_keyspace() {
    let _ = cluster();
    let mut anon = connect(None).await;
    let listed: Vec<mysql_async::Row> = anon
        .query("show tables from customer like 'corder'")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].columns_ref()[0].name_str(),
        "Tables_in_customer (corder)"
    );
    assert_eq!(listed[0].get::<String, _>(0).as_deref(), Some("corder"));
    let mut on_customer = connect(Some("customer")).await;
    let full = rows(
        &mut on_customer,
        "show full tables in commerce like 'product'",
    )
    .await;
    assert_eq!(
        full,
        vec![vec![
            Some("product".to_string()),
            Some("BASE TABLE".to_string())
        ]]
    );
    // ORMs ask by the column's name (GORM: `SHOW TABLES FROM db WHERE
    // Tables_in_db = ?`), and of a table's columns and indexes by
    // `FROM t FROM db`: the tablet knows both by its database's name.
    for (db, sql) in [
        (
            "customer",
            "show tables from customer where `Tables_in_customer` = 'corder'",
        ),
        (
            "commerce",
            "show full tables where Tables_in_commerce like 'prod%'",
        ),
    ] {
        let mut conn = connect(Some(db)).await;
        let listed = rows(&mut conn, sql).await;
        assert_eq!(listed.len(), 1, "{sql}: {listed:?}");
    }
    let columns = rows(
        &mut anon,
        "show columns from corder from customer where Field = 'order_id'",
    )
    .await;
    assert_eq!(columns.len(), 1, "{columns:?}");
    let indexes = rows(
        &mut on_customer,
        "show indexes from `product` in `commerce` where Key_name = 'PRIMARY'",
    )
    .await;
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let e = anon.query_drop("show tables from nope").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1049), "{e}");
    let one: Option<i32> = anon.query_first("select 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_show_statements_filter_by_like() {
    let mut conn = connect(None).await;
    let one = |v: &[&str]| -> Vec<Vec<Option<String>>> {
        v.iter().map(|s| vec![Some(s.to_string())]).collect()
    };
    assert_eq!(
        rows(&mut conn, "show keyspaces like 'cust%'").await,
        one(&["customer"])
    );
    assert_eq!(
        rows(&mut conn, "show databases like '%SCHEMA'").await,
        one(&["information_schema", "performance_schema"])
    );
    assert_eq!(
        rows(&mut conn, "show vitess_shards like 'customer/%'").await,
        one(&["customer/-80", "customer/80-"])
    );
    assert_eq!(
        rows(&mut conn, "show vitess_shards like '%/80-';").await,
        one(&["customer/80-"])
    );
    let host = format!("show vitess_tablets like '%:{}'", tablet_port(301));
    let tablets = rows(&mut conn, &host).await;
    assert_eq!(tablets.len(), 1, "{tablets:?}");
    assert_eq!(tablets[0][5].as_deref(), Some("zone1-301"));
    let keyspaces = rows(&mut conn, "show vschema keyspaces").await;
    for (ks, sharded) in [("commerce", "false"), ("customer", "true")] {
        let want = ["unmanaged", ""].map(|s| Some(s.to_string()));
        let row = vec![Some(ks.to_string()), Some(sharded.to_string())];
        let row: Vec<Option<String>> = row.into_iter().chain(want).collect();
        assert!(keyspaces.contains(&row), "{keyspaces:?}");
    }
    let (code, msg) = match conn
        .query_drop("show vitess_tablets where Alias = 'x'")
        .await
    {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, 1235, "{msg}");
    assert!(conn.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_status_is_read_from_each_replica() {
    let mut conn = connect(None).await;
    let status = rows(&mut conn, "show vitess_replication_status").await;
    let aliases: Vec<&str> = status.iter().map(|r| r[3].as_deref().unwrap()).collect();
    assert_eq!(
        aliases,
        ["zone1-102", "zone1-101", "zone1-301", "zone1-401"]
    );
    for (row, primary) in status.iter().zip([100, 100, 300, 400]) {
        let text = |i: usize| row[i].clone().unwrap();
        // What the replica's own server says, read now.
        let mut replica = connect_tablet(uid_of(&text(3))).await;
        let own: mysql_async::Row = replica
            .query_first("show slave status")
            .await
            .unwrap()
            .unwrap();
        let port: String = own.get("Master_Port").unwrap();
        assert_eq!(port, tablet_port(primary).to_string(), "{row:?}");
        assert!(text(5).ends_with(&format!(":{port}")), "{row:?}");
        let health = text(6);
        assert_eq!(
            health,
            r#"{"EventStreamRunning":"Yes","EventApplierRunning":"Yes","LastError":""}"#
        );
        assert!(text(7).parse::<u64>().is_ok(), "lag {row:?}");
    }
    let tablet_types: Vec<&str> = status.iter().map(|r| r[2].as_deref().unwrap()).collect();
    assert_eq!(tablet_types, ["RDONLY", "REPLICA", "REPLICA", "REPLICA"]);
    let filtered = rows(
        &mut conn,
        "show vitess_replication_status like 'customer/-80'",
    )
    .await;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0][3].as_deref(), Some("zone1-301"));
}

/// The uid of a tablet alias `zone1-<uid>`.
fn uid_of(alias: &str) -> u32 {
    alias.rsplit('-').next().unwrap().parse().unwrap()
}

/// The port of the MariaDB that answers a plain read (no `@`, so a read
/// the gate may send to a replica).
async fn answering_port(conn: &mut mysql_async::Conn) -> u16 {
    let port: Option<String> = conn
        .query_first(
            "select variable_value from information_schema.global_variables \
             where variable_name = 'PORT'",
        )
        .await
        .unwrap();
    port.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtgate_start_flags_are_taken_and_reads_go_to_the_default_tablet_type() {
    // The flags vtgate's example start script passes.
    let dir = temp_dir("vtgate-flags");
    let pid_file = dir.join("vtgate.pid");
    let log_dir = dir.join("logs");
    let args: Vec<String> = [
        "--log_dir",
        log_dir.to_str().unwrap(),
        "--log_queries_to_file",
        dir.join("querylog.txt").to_str().unwrap(),
        "--grpc_port",
        "15991",
        "--cell",
        "zone1",
        "--cells_to_watch",
        "zone1",
        "--tablet_types_to_wait",
        "PRIMARY,REPLICA",
        "--service_map",
        "grpc-vtgateservice",
        "--pid_file",
        pid_file.to_str().unwrap(),
        "--enable_buffer",
        "--mysql_auth_server_impl",
        "none",
        "--pprof-http",
        "--default_tablet_type",
        "REPLICA",
        "--config-file-not-found-handling=ignore",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (port, web, pid) = spawn_shardgate_pid(&args).await;
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), pid.to_string());
    let log = std::fs::read_to_string(log_dir.join("shardgate.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("gRPC") && l.contains("--grpc_port --service_map")),
        "{log}"
    );

    // Plain reads go to a replica; writes, reads in a transaction and
    // reads of session state go to the primary.
    let mut conn = connect_port(port, Some("commerce")).await;
    assert_eq!(answering_port(&mut conn).await, tablet_port(101));
    conn.query_drop("create table if not exists dtt_rw (id int primary key)")
        .await
        .unwrap();
    conn.query_drop("insert into dtt_rw values (1) on duplicate key update id = id")
        .await
        .unwrap();
    conn.query_drop("begin").await.unwrap();
    assert_eq!(answering_port(&mut conn).await, tablet_port(100));
    conn.query_drop("commit").await.unwrap();
    let at: Option<u16> = conn.query_first("select @@port").await.unwrap();
    assert_eq!(at, Some(tablet_port(100)));
    // Prepared reads too.
    let read = conn
        .prep("select variable_value from information_schema.global_variables where variable_name = ?")
        .await
        .unwrap();
    let p: Option<String> = conn.exec_first(&read, ("PORT",)).await.unwrap();
    assert_eq!(p, Some(tablet_port(101).to_string()));
    // A target naming its tablet type keeps it.
    conn.query_drop("use commerce@primary").await.unwrap();
    assert_eq!(answering_port(&mut conn).await, tablet_port(100));
    conn.query_drop("use commerce@rdonly").await.unwrap();
    assert_eq!(answering_port(&mut conn).await, tablet_port(102));
    conn.query_drop("use commerce").await.unwrap();
    assert_eq!(answering_port(&mut conn).await, tablet_port(101));
    conn.query_drop("drop table dtt_rw").await.unwrap();
    // Each statement is a line of vtgate's query log.
    assert!(conn
        .query_drop("select * from no_such_table")
        .await
        .is_err());
    let log_file = dir.join("querylog.txt");
    let logged = eventually(10, || {
        let log_file = log_file.clone();
        async move {
            let text = std::fs::read_to_string(&log_file).ok()?;
            text.contains("no_such_table").then_some(text)
        }
    })
    .await
    .expect("the query log has the last statement");
    let lines: Vec<Vec<&str>> = logged.lines().map(|l| l.split('\t').collect()).collect();
    let insert = lines
        .iter()
        .find(|f| f[12].starts_with("\"insert into dtt_rw"))
        .expect("the INSERT's line");
    assert_eq!(
        (insert[0], insert[2], insert[11]),
        ("Execute", "app", "INSERT")
    );
    assert_eq!((insert[15], insert[16]), ("1", "\"\""));
    let failed = lines
        .iter()
        .find(|f| f[12].contains("no_such_table"))
        .unwrap();
    assert!(failed[16].contains("doesn't exist"), "{failed:?}");
    let prepared = lines
        .iter()
        .filter(|f| f[12].contains("variable_name = ?"))
        .map(|f| (f[0], f[13]))
        .collect::<Vec<_>>();
    assert_eq!(
        prepared,
        [("Prepare", "map[]"), ("Execute", "map[v1:'PORT']")]
    );
    // None dropped: the writer kept up.
    assert_eq!(debug_var_at(web, "QueryLogDropped").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtgate_session_variables_are_kept_by_the_gate() {
    let mut conn = connect(Some("commerce")).await;
    let row: (String, String, u8) = conn
        .query_first("select @@workload, @@ddl_strategy, @@skip_query_plan_cache")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, ("OLTP".into(), "direct".into(), 0));
    // Set at the gate, never sent to a tablet (MariaDB knows none of them).
    conn.query_drop("set workload = 'olap', @@session.skip_query_plan_cache = on")
        .await
        .unwrap();
    let row: (String, u8) = conn
        .query_first("select @@workload, @@session.skip_query_plan_cache")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, ("OLAP".into(), 1));
    assert_eq!(
        rows(&mut conn, "select 40 + 2").await,
        vec![vec![Some("42".to_string())]]
    );
    // An online DDL strategy cannot be honoured: refused, not ignored.
    let e = conn
        .query_drop("set ddl_strategy = 'vitess'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1231), "{e}");
    let kept: Option<String> = conn.query_first("select @@ddl_strategy").await.unwrap();
    assert_eq!(kept.as_deref(), Some("direct"));
    // Another session starts from the defaults.
    let mut other = connect(Some("commerce")).await;
    let w: Option<String> = other.query_first("select @@workload").await.unwrap();
    assert_eq!(w.as_deref(), Some("OLTP"));
}
