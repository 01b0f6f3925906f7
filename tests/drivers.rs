//! Applications' own drivers against a sharded keyspace: PHP's mysqlnd
//! (PDO with server and emulated prepares, mysqli), Python's PyMySQL and
//! SQLAlchemy's ORM, Node's mysql2 and MariaDB Connector/J. Each driver
//! runs one script (`tests/drivers/`) against the gate's `customer`
//! keyspace and against one MariaDB holding the same tables, and prints
//! what the application sees: typed values, column metadata, affected
//! rows, generated keys, error codes and SQLSTATEs, multi-statement
//! results, streamed rows. Every line must match, and so must the tables
//! the scripts leave behind.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use mysql_async::prelude::*;

/// One driver's script and the tables it works on.
struct Driver {
    /// Its table prefix, and the name its outputs are kept under.
    name: &'static str,
    /// Whether the test makes `{name}` and `{name}_auto` before the
    /// script runs (see [`ddl`]); an ORM's script makes its own.
    made_here: bool,
    /// The VSchema's other tables for it: (table, vindex column, vindex,
    /// whether its `id` comes from a sequence).
    vschema: &'static [(&'static str, &'static str, &'static str, bool)],
    /// Tables the script leaves rows in, compared whole (by `id`)
    /// afterwards; dropped first, children before parents.
    tables: &'static [&'static str],
    /// Tables dropped first but not compared (their rows hold times).
    also_dropped: &'static [&'static str],
}

const DRIVERS: [Driver; 9] = [
    Driver {
        name: "drv_php",
        made_here: true,
        vschema: &[],
        tables: &["drv_php"],
        also_dropped: &[],
    },
    // SQLAlchemy's addresses share their user's shard.
    Driver {
        name: "drv_py",
        made_here: true,
        vschema: &[
            ("drv_py_user", "id", "hash", true),
            ("drv_py_address", "user_id", "hash", true),
        ],
        tables: &["drv_py", "drv_py_address", "drv_py_user"],
        also_dropped: &[],
    },
    Driver {
        name: "drv_node",
        made_here: true,
        vschema: &[],
        tables: &["drv_node"],
        also_dropped: &[],
    },
    Driver {
        name: "drv_java",
        made_here: true,
        vschema: &[],
        tables: &["drv_java"],
        also_dropped: &[],
    },
    // Django's ORM makes its tables (and its migrations table) itself.
    Driver {
        name: "drv_dj",
        made_here: false,
        vschema: &[
            ("drv_dj_author", "id", "hash", true),
            ("drv_dj_book", "author_id", "hash", true),
            ("django_migrations", "id", "hash", true),
        ],
        tables: &["drv_dj_book", "drv_dj_author"],
        also_dropped: &["django_migrations"],
    },
    // So does ActiveRecord, with its two bookkeeping tables keyed by text.
    Driver {
        name: "drv_rb",
        made_here: false,
        vschema: &[
            ("drv_rb_shops", "id", "hash", true),
            ("drv_rb_orders", "shop_id", "hash", true),
            ("schema_migrations", "version", "xx", false),
            ("ar_internal_metadata", "key", "xx", false),
        ],
        tables: &["drv_rb_orders", "drv_rb_shops"],
        also_dropped: &["schema_migrations", "ar_internal_metadata"],
    },
    // Sequelize's sync() makes its tables; posts share their user's shard.
    Driver {
        name: "drv_sq",
        made_here: false,
        vschema: &[
            ("drv_sq_users", "id", "hash", true),
            ("drv_sq_posts", "user_id", "hash", true),
        ],
        tables: &["drv_sq_posts", "drv_sq_users"],
        also_dropped: &[],
    },
    // TypeORM's synchronize reads its tables back from information_schema
    // at every start.
    Driver {
        name: "drv_to",
        made_here: false,
        vschema: &[
            ("drv_to_teams", "id", "hash", true),
            ("drv_to_players", "team_id", "hash", true),
        ],
        tables: &["drv_to_players", "drv_to_teams"],
        also_dropped: &[],
    },
    // Go's database/sql, sqlx and GORM, whose AutoMigrate makes its users
    // and orders (orders on their user's shard). Soft-deleted users hold
    // the time they were deleted: not compared.
    Driver {
        name: "drv_go",
        made_here: true,
        vschema: &[
            ("drv_go_users", "id", "hash", true),
            ("drv_go_orders", "user_id", "hash", true),
        ],
        tables: &["drv_go", "drv_go_orders"],
        also_dropped: &["drv_go_users"],
    },
];

/// The tables whose ids come from sequences in `commerce`.
fn sequenced() -> Vec<String> {
    DRIVERS
        .iter()
        .flat_map(|d| {
            let auto = d.made_here.then(|| format!("{}_auto", d.name));
            let others = d.vschema.iter().filter(|t| t.3).map(|t| t.0.to_string());
            auto.into_iter().chain(others)
        })
        .collect()
}

/// The `customer` keyspace's VSchema for these tables: each hashed on its
/// id (an ORM's children on their parent's id, so a parent's rows share a
/// shard), auto-increment ids from sequences in `commerce`.
fn customer_vschema() -> String {
    let mut tables = serde_json::Map::new();
    let vindex = |column: &str, name: &str| serde_json::json!([{"column": column, "name": name}]);
    for d in DRIVERS.iter().filter(|d| d.made_here) {
        tables.insert(
            d.name.into(),
            serde_json::json!({"column_vindexes": vindex("id", "hash")}),
        );
        let auto = format!("{}_auto", d.name);
        tables.insert(
            auto.clone(),
            serde_json::json!({"column_vindexes": vindex("id", "hash"),
                               "auto_increment": {"column": "id", "sequence": format!("{auto}_seq")}}),
        );
    }
    for &(t, column, name, sequenced) in DRIVERS.iter().flat_map(|d| d.vschema) {
        let mut table = serde_json::json!({"column_vindexes": vindex(column, name)});
        if sequenced {
            table["auto_increment"] =
                serde_json::json!({"column": "id", "sequence": format!("{t}_seq")});
        }
        tables.insert(t.into(), table);
    }
    serde_json::json!({"sharded": true, "tables": tables,
                       "vindexes": {"hash": {"type": "hash"}, "xx": {"type": "xxhash"}}})
    .to_string()
}

/// `commerce`'s VSchema (the repository's) with these tables' sequences.
fn commerce_vschema() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("vschema/commerce.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for t in sequenced() {
        v["tables"][format!("{t}_seq")] = serde_json::json!({"type": "sequence"});
    }
    v.to_string()
}

/// The tables every script writes, made alike on the gate and the oracle.
fn ddl(t: &str) -> [String; 2] {
    [
        format!(
            "create table {t} (id bigint primary key, name varchar(64), amount decimal(12,2), \
             ratio double, born date, seen datetime(3), dur time, data varbinary(32), \
             flag tinyint(1) not null default 0, note text)"
        ),
        format!("create table {t}_auto (id bigint auto_increment primary key, name varchar(16))"),
    ]
}

/// How to run one driver's script: the program and its arguments before
/// the port, database and table prefix.
fn command(t: &str) -> (String, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers");
    let script = |f: &str| dir.join(f).to_string_lossy().into_owned();
    match t {
        "drv_php" => ("php".into(), vec![script("pdo.php")]),
        // Debian's interpreter, which has Debian's python3-pymysql and
        // python3-sqlalchemy whatever `python3` is first on the PATH.
        "drv_py" => ("/usr/bin/python3".into(), vec![script("orm.py")]),
        "drv_node" => ("node".into(), vec![script("mysql2.js")]),
        "drv_dj" => ("/usr/bin/python3".into(), vec![script("django_shop.py")]),
        "drv_rb" => ("ruby".into(), vec![script("active_record.rb")]),
        "drv_sq" => ("node".into(), vec![script("sequelize.js")]),
        "drv_to" => ("node".into(), vec![script("typeorm.js")]),
        // Debian's Go and its packaged libraries, without modules.
        "drv_go" => ("go".into(), vec!["run".into(), script("gosql.go")]),
        "drv_java" => (
            "java".into(),
            vec![
                "-cp".into(),
                "/usr/share/java/mariadb-java-client.jar".into(),
                script("Jdbc.java"),
            ],
        ),
        _ => unreachable!(),
    }
}

/// Runs driver `t`'s script against `port`; the lines it printed, after
/// checking it ran to its end.
fn run(t: &str, port: u16) -> Vec<String> {
    let (program, mut args) = command(t);
    args.extend([port.to_string(), "customer".into(), t.into()]);
    let out = Command::new(&program)
        .args(&args)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
        )
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (scripts/install-deps.sh installs the drivers)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert!(
        out.status.success() && lines.last().map(String::as_str) == Some("done"),
        "{t} against port {port} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lines
            .iter()
            .rev()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    lines
}

/// Where two scripts' outputs part: the first few differing lines, cut
/// short (a long text column fills a line).
fn differences(gate: &[String], oracle: &[String]) -> Vec<String> {
    let cut = |s: &str| s.chars().take(300).collect::<String>();
    let mut d: Vec<String> = gate
        .iter()
        .zip(oracle)
        .filter(|(a, b)| a != b)
        .take(6)
        .map(|(a, b)| format!("gate:   {}\noracle: {}", cut(a), cut(b)))
        .collect();
    if gate.len() != oracle.len() {
        d.push(format!(
            "gate printed {} lines, oracle {}",
            gate.len(),
            oracle.len()
        ));
    }
    d
}

async fn apply_vschemas() {
    let store = store().await;
    shardgate::admin::apply_vschema(&store, "commerce", commerce_vschema().as_bytes())
        .await
        .unwrap();
    shardgate::admin::apply_vschema(&store, "customer", customer_vschema().as_bytes())
        .await
        .unwrap();
    let seen = eventually(10, || async {
        let mut conn = connect(Some("customer")).await;
        let c: Vec<String> = conn.query("show vschema tables").await.ok()?;
        let mut conn = connect(Some("commerce")).await;
        let s: Vec<String> = conn.query("show vschema tables").await.ok()?;
        (c.iter().any(|t| t == "ar_internal_metadata")
            && s.iter().any(|t| t == "drv_py_address_seq"))
        .then_some(())
    })
    .await;
    assert!(seen.is_some(), "the drivers' VSchema is not served");
}

/// Drivers see through the gate what they see on one MariaDB.
///
/// Each script writes 200 rows of every common type (NULLs, quotes,
/// backslashes, unicode, bytes that are not UTF-8, negative times,
/// fractional seconds, 40 KB texts) with its driver's own binding, reads
/// them back by key, by range, scattered, aggregated and streamed, reads
/// column metadata, rolls back and commits transactions, counts affected
/// rows, takes generated keys, runs multi-statement queries and meets
/// errors (duplicate key, syntax, unknown column, unknown table) after
/// which its connection goes on. SQLAlchemy's ORM makes its tables, loads
/// relationships eagerly (a join and an IN list), counts through derived
/// tables and deletes with cascades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_see_through_the_gate_what_one_mariadb_shows() {
    let (mut oracle, oport) = start_oracle("customer").await;
    // The scripts log in as the gate's test user, whom the oracle lets in.
    oracle
        .query_drop(
            "create user app@'127.0.0.1'; grant all on *.* to app@'127.0.0.1'; \
             create database commerce",
        )
        .await
        .unwrap();
    apply_vschemas().await;
    let mut gate = connect(Some("commerce")).await;
    for t in sequenced() {
        gate.query_drop(format!(
            "create table if not exists {t}_seq (id int, next_id bigint, cache bigint, primary key (id)) \
             comment 'vitess_sequence'"
        ))
        .await
        .unwrap();
        gate.query_drop(format!(
            "insert ignore into {t}_seq (id, next_id, cache) values (0, 1, 100)"
        ))
        .await
        .unwrap();
    }
    let mut gate = connect(Some("customer")).await;
    for d in &DRIVERS {
        for side in [&mut gate, &mut oracle] {
            let auto = format!("{}_auto", d.name);
            let all = d.tables.iter().chain(d.also_dropped).copied();
            for t in all.chain([auto.as_str()]) {
                side.query_drop(format!("drop table if exists {t}"))
                    .await
                    .unwrap();
            }
            if d.made_here {
                for sql in ddl(d.name) {
                    side.query_drop(sql).await.unwrap();
                }
            }
        }
    }

    let gate_port = cluster().port;
    let outputs: Vec<(&str, Vec<String>, Vec<String>)> = std::thread::scope(|s| {
        let runs: Vec<_> = DRIVERS
            .iter()
            .map(|d| {
                let t = d.name;
                s.spawn(move || (t, run(t, gate_port), run(t, oport)))
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Each output is kept (under target/tmp) to read whole.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("drivers");
    std::fs::create_dir_all(&kept).unwrap();
    let mut failures = Vec::new();
    for (d, (t, on_gate, on_oracle)) in DRIVERS.iter().zip(&outputs) {
        for (side, lines) in [("gate", on_gate), ("oracle", on_oracle)] {
            std::fs::write(kept.join(format!("{t}.{side}.txt")), lines.join("\n")).unwrap();
        }
        assert!(
            on_gate.len() > 15,
            "{t} printed only {} lines",
            on_gate.len()
        );
        let diff = differences(on_gate, on_oracle);
        if !diff.is_empty() {
            failures.push(format!(
                "{t} (outputs in {}):\n{}",
                kept.display(),
                diff.join("\n")
            ));
        }
        for table in d.tables {
            let sql = format!("select * from {table} order by id");
            let (a, b) = (rows(&mut gate, &sql).await, rows(&mut oracle, &sql).await);
            if a != b {
                failures.push(format!(
                    "{table}: the gate holds {} rows, the oracle {}",
                    a.len(),
                    b.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The rows are spread over both shards.
    for uid in [300, 400] {
        let mut shard = connect_tablet(uid).await;
        for t in DRIVERS.iter().map(|d| d.tables[0]) {
            let n = count(&mut shard, t).await;
            assert!(n > 2 && n < 190, "{t} has {n} rows on tablet {uid}");
        }
    }
}
