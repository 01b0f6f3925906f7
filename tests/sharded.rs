//! The sharded keyspace against an oracle: the same generated rows go into
//! the 2-shard `customer` keyspace through shardgate and into one standalone
//! MariaDB; hundreds of SELECTs and DMLs must answer the same (in order where
//! the SQL orders). Rows must sit on the shard their vindex names.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use shardgate::vschema::vindex::Func;

const DDL: &str = "create table dt (
    id bigint not null primary key,
    k int,
    name varchar(32) collate utf8mb4_general_ci,
    amount decimal(12,2),
    big bigint,
    flag tinyint
)";

const VSCHEMA: &str = r#"{
  "sharded": true,
  "vindexes": {"hash": {"type": "hash"}, "loose": {"type": "unicode_loose_md5"},
                "num": {"type": "numeric"}, "xx": {"type": "xxhash"},
                "lu_name": {"type": "consistent_lookup_unique", "owner": "lu",
                            "params": {"table": "lu_name_idx", "from": "name", "to": "keyspace_id"}},
                "lu_tag": {"type": "lookup", "owner": "lu",
                           "params": {"table": "customer.lu_tag_idx", "from": "tag", "to": "keyspace_id",
                                      "ignore_nulls": "true"}},
                "lu_code": {"type": "lookup_hash_unique", "owner": "lu",
                            "params": {"table": "commerce.lu_code_idx", "from": "code", "to": "id",
                                       "ignore_nulls": "true"}}},
  "tables": {
    "lu": {"column_vindexes": [{"column": "id", "name": "hash"}, {"column": "name", "name": "lu_name"},
                               {"column": "tag", "name": "lu_tag"}, {"column": "code", "name": "lu_code"}]},
    "lu_name_idx": {"column_vindexes": [{"column": "name", "name": "loose"}]},
    "pin": {"pinned": "c0"},
    "nb1": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "nb2": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "lu_tag_idx": {"column_vindexes": [{"column": "tag", "name": "xx"}]},
    "customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}],
                 "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}},
    "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}],
               "auto_increment": {"column": "order_id", "sequence": "order_seq"}},
    "dt": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "dmp": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "ldt": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "dmp_item": {"column_vindexes": [{"column": "dmp_id", "name": "hash"}]},
    "tag": {"column_vindexes": [{"column": "name", "name": "loose"}]},
    "kq": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "ptgt": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "txs": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "ro_txs": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "serial_ro": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "loops_t": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "killt": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "nt": {"column_vindexes": [{"column": "id", "name": "num"}]},
    "bt": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "trk": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "ct": {"column_vindexes": [{"column": "id", "name": "hash"}],
           "columns": [{"name": "id", "type": "INT64"}, {"name": "n", "type": "INT32"},
                       {"name": "g", "type": "VARCHAR", "collation_name": "utf8mb4_general_ci"},
                       {"name": "bn", "type": "VARCHAR", "collation_name": "utf8mb4_bin"},
                       {"name": "vb", "type": "VARBINARY"},
                       {"name": "l", "type": "VARCHAR", "collation_name": "latin1_swedish_ci"}]},
    "txsingle": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "txmode": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "txatomic": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "txdead": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "tximplicit": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "msauto": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "foundr": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "dlx": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "pchg": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "jl": {"column_vindexes": [{"column": "dt_id", "name": "hash"}]},
    "jn": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "jref": {"type": "reference"},
    "jb": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "wa": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "wb": {"column_vindexes": [{"column": "a", "name": "hash"}]},
    "tree": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "ret": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "qa": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "qb": {"column_vindexes": [{"column": "a_id", "name": "hash"}]},
    "qr": {"type": "reference"},
    "xa": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "xb": {"column_vindexes": [{"column": "a_id", "name": "hash"}]},
    "tmv": {"column_vindexes": [{"column": "id", "name": "hash"}]}
  }
}"#;

#[path = "sharded/random.rs"]
mod random;

/// Random SELECTs (see [`random`]) answer as one MariaDB answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_selects_answer_as_one_mariadb() {
    let (mut oracle, _) = start_oracle("oracle").await;
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    let _prepares = TABLET_PREPARES.lock().await;
    random::answer_as_one_mariadb(&mut sg, &mut oracle).await;
}

/// Random writes (see [`random`]) leave what one MariaDB leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_leave_what_one_mariadb_leaves() {
    let (mut oracle, _) = start_oracle("oracle").await;
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    random::writes_leave_what_one_mariadb_leaves(&mut sg, &mut oracle).await;
}

/// A small deterministic generator (no dependency needed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn row_sql(r: &mut Rng, id: i64) -> String {
    let names = [
        "alpha", "Alpha", "ALPHA", "beta", "Beta", "gamma", "delta", "Zeta", "zeta", "éclair",
        "Eclair", "omega",
    ];
    let name = if r.below(10) == 0 {
        "NULL".to_string()
    } else {
        format!(
            "'{}{}'",
            names[r.below(names.len() as u64) as usize],
            if r.below(3) == 0 { "" } else { "x" }
        )
    };
    let amount = if r.below(8) == 0 {
        "NULL".to_string()
    } else {
        format!("{}.{:02}", r.below(20000) as i64 - 10000, r.below(100))
    };
    let big = match r.below(5) {
        0 => "9223372036854775000".to_string(),
        1 => "-9223372036854775000".to_string(),
        _ => (r.below(1_000_000) as i64 - 500_000).to_string(),
    };
    let k = if r.below(12) == 0 {
        "NULL".to_string()
    } else {
        (r.below(40) as i64 - 20).to_string()
    };
    format!("({id}, {k}, {name}, {amount}, {big}, {})", r.below(2))
}

/// A query's rows as text, or (`prepared`) as a prepared statement
/// returns them: binary protocol, typed values shown with their type.
async fn cells_by(
    conn: &mut Conn,
    sql: &str,
    prepared: bool,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let rows: Vec<mysql_async::Row> = if prepared {
        conn.exec(sql, ()).await
    } else {
        conn.query(sql).await
    }
    .map_err(|e| format!("{sql}: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::NULL => None,
                    Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    other if prepared => Some(format!("{other:?}")),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect())
}

struct Case {
    sql: String,
    ordered: bool,
    fold_case: bool,
}

fn case(sql: impl Into<String>, ordered: bool) -> Case {
    Case {
        sql: sql.into(),
        ordered,
        fold_case: false,
    }
}

fn queries(r: &mut Rng, max_id: i64) -> Vec<Case> {
    let mut q = Vec::new();
    for _ in 0..40 {
        let id = r.below(max_id as u64 + 20) as i64;
        q.push(case(format!("select * from dt where id = {id}"), false));
    }
    for _ in 0..30 {
        let ids: Vec<String> = (0..1 + r.below(6))
            .map(|_| r.below(max_id as u64).to_string())
            .collect();
        q.push(case(
            format!(
                "select id, name, amount from dt where id in ({}) order by id",
                ids.join(", ")
            ),
            true,
        ));
        q.push(case(
            format!(
                "select count(*), sum(amount) from dt where id in ({})",
                ids.join(", ")
            ),
            true,
        ));
    }
    for _ in 0..30 {
        let a = r.below(40) as i64 - 20;
        let b = a + r.below(10) as i64;
        q.push(case(
            format!("select id, k, big from dt where k between {a} and {b}"),
            false,
        ));
        q.push(case(
            format!("select id, k from dt where k between {a} and {b} order by k desc, id limit 7"),
            true,
        ));
    }
    for _ in 0..30 {
        let (n, m) = (1 + r.below(20), r.below(30));
        q.push(case(
            format!("select id, name from dt order by name, id limit {n} offset {m}"),
            true,
        ));
        q.push(case(
            format!("select id, amount from dt order by amount desc, id limit {n}"),
            true,
        ));
        q.push(case(
            format!(
                "select name, id from dt where k > {} order by 1 desc, 2 limit {m}, {n}",
                r.below(20)
            ),
            true,
        ));
    }
    for _ in 0..20 {
        let x = r.below(40) as i64 - 20;
        q.push(case(
            format!(
                "select count(*), count(name), count(amount), sum(amount), min(amount), max(amount), avg(amount), \
                 min(big), max(big), sum(big), avg(k) from dt where k > {x}"
            ),
            true,
        ));
        q.push(case(
            format!("select count(*) + 1, max(k) - min(k), sum(amount) * 2 from dt where k < {x}"),
            true,
        ));
        // Of DOUBLEs (exact in binary, so any order of adding agrees).
        q.push(case(
            format!("select avg(k * 1e0), sum(k * 0.25e0), min(k * 0.5e0) from dt where k < {x}"),
            true,
        ));
    }
    for _ in 0..20 {
        let x = r.below(10) as i64;
        q.push(case("select k, count(*), sum(amount), avg(big), min(id), max(id) from dt group by k order by k", true));
        q.push(case(
            format!("select k, count(*) as c from dt group by k having c > {x} order by c desc, k"),
            true,
        ));
        q.push(case(
            format!(
                "select flag, k, count(*) from dt where id < {} group by flag, k order by flag, k",
                r.below(max_id as u64)
            ),
            true,
        ));
        q.push(Case {
            sql: format!(
                "select name, count(*), sum(k) from dt where k > {} group by name order by name",
                x - 10
            ),
            ordered: true,
            fold_case: true,
        });
    }
    for _ in 0..20 {
        let x = r.below(max_id as u64);
        q.push(case(
            format!("select distinct k from dt where id < {x} order by k"),
            true,
        ));
        q.push(case(
            format!("select count(distinct k) from dt where id > {x}"),
            true,
        ));
        q.push(case(
            "select flag, count(distinct k) from dt group by flag order by flag",
            true,
        ));
        q.push(Case {
            sql: format!("select distinct name from dt where id < {x} order by name"),
            ordered: true,
            fold_case: true,
        });
        // Groupings the gate merges as they pass (several keys, picks
        // that are not the leading columns, LIMIT over groups), and one
        // whose order it must sort itself.
        q.push(Case {
            sql: format!("select distinct k, name from dt where id < {x} order by k, name"),
            ordered: true,
            fold_case: true,
        });
        q.push(case(
            format!("select distinct flag, k from dt where id > {x}"),
            false,
        ));
        q.push(Case {
            sql: format!("select name from dt where id < {x} group by name"),
            ordered: false,
            fold_case: true,
        });
        q.push(case(
            format!(
                "select distinct k from dt order by k limit 5 offset {}",
                x % 7
            ),
            true,
        ));
        q.push(case(
            format!("select k from dt where id < {x} group by k order by k desc"),
            true,
        ));
        q.push(case(
            format!("select distinct amount from dt where id < {x} order by amount"),
            true,
        ));
        q.push(case(
            format!("select distinct big, flag from dt where id > {x} order by big, flag"),
            true,
        ));
        // Aggregations folded as the groups pass: HAVING and a window
        // over the groups, AVG, MIN/MAX of strings.
        q.push(case(
            format!(
                "select k, count(*), avg(amount) from dt where id < {x} group by k having count(*) > 3 order by k limit 5 offset {}",
                x % 4
            ),
            true,
        ));
        q.push(Case {
            sql: format!(
                "select name, min(amount), max(k), count(*) from dt where id > {x} group by name"
            ),
            ordered: false,
            fold_case: true,
        });
        // HAVING over ungrouped rows filters each shard's rows; one with
        // an aggregate and no GROUP BY is one group.
        q.push(case(
            format!("select id as x, k from dt where k > 0 having x < {x} order by x limit 9"),
            true,
        ));
        q.push(case(
            format!("select id, flag as f from dt having f = 1 and id > {x}"),
            false,
        ));
        q.push(case(
            format!("select max(id) as m from dt where id < {x} having count(*) > 2"),
            false,
        ));
        // A function whose name ends like an aggregate's is not one.
        q.push(case(
            format!("select id, bit_count(k) from dt where id < {x} order by id"),
            true,
        ));
        // MySQL's other aggregates, over one group.
        q.push(case(
            format!("select bit_or(k), bit_and(flag), bit_xor(id) from dt where id < {x}"),
            false,
        ));
        q.push(case(
            format!("select k, bit_or(id), bit_xor(big), count(*) from dt where id > {x} group by k order by k"),
            true,
        ));
        // SUM and AVG of the distinct values, with COUNT of them.
        q.push(case(
            format!("select k, sum(distinct amount), avg(distinct amount), count(distinct amount) from dt where id > {x} group by k order by k"),
            true,
        ));
        q.push(case(
            format!(
                "select sum(distinct k), avg(distinct k), count(distinct k) from dt where id < {x}"
            ),
            false,
        ));
        // A window partitioned by the vindex column lives on one shard.
        q.push(case(
            format!("select id, sum(k) over (partition by id) s, row_number() over (partition by dt.id order by k) r from dt where id < {x} order by id"),
            true,
        ));
        // DISTINCT over aggregated rows; MIN and MAX of distinct values.
        q.push(case(
            format!("select distinct count(*) from dt where id < {x} group by k"),
            false,
        ));
        q.push(case(
            format!("select distinct max(flag), min(flag) from dt where id > {x} group by k order by 1, 2"),
            true,
        ));
        q.push(case(
            format!("select k, min(distinct amount), max(distinct big) from dt where id > {x} group by k order by k"),
            true,
        ));
    }
    q
}

/// Tables qualified with their keyspace (`customer.customer`) reach that
/// keyspace whatever the session's target, text or prepared, with the
/// qualifier removed for the tablet, and agree with the unqualified form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_qualified_tables_route_to_their_keyspace() {
    apply_test_vschema().await;
    // Its own table: other tests count the rows of theirs.
    let mut home = connect(Some("customer")).await;
    home.query_drop("create table if not exists kq (id bigint primary key, email varchar(20))")
        .await
        .unwrap();
    home.query_drop("delete from kq").await.unwrap();
    home.query_drop("insert into kq (id, email) values (1, 'kq-1'), (2, 'kq-2'), (3, 'other')")
        .await
        .unwrap();
    for db in [None, Some("commerce"), Some("customer")] {
        let mut sg = connect(db).await;
        let n: Option<u64> = sg
            .query_first("select count(*) from customer.kq where email like 'kq-%'")
            .await
            .unwrap();
        assert_eq!(n, Some(2), "text from {db:?}");
        let n: Option<u64> = sg
            .exec_first(
                "select count(*) from `customer`.kq k where k.email like ?",
                ("kq-%",),
            )
            .await
            .unwrap();
        assert_eq!(n, Some(2), "prepared from {db:?}");
        let email: Option<String> = sg
            .query_first("select customer.kq.email from customer.kq where id = 1")
            .await
            .unwrap();
        assert_eq!(
            email.as_deref(),
            Some("kq-1"),
            "three-part column from {db:?}"
        );
    }
    home.query_drop("delete from customer.kq where email like 'kq-%'")
        .await
        .unwrap();
    let left: Option<u64> = home.query_first("select count(*) from kq").await.unwrap();
    assert_eq!(left, Some(1));
}

/// A transaction that writes to both shards sees its own writes in
/// scatters (merged, aggregated, prepared and DML), hides them from other
/// sessions until COMMIT, and loses them on ROLLBACK: every statement on a
/// shard runs on the one connection holding the transaction there, also
/// after a session setting arrives mid-transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_span_shards_on_one_connection_each() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    let mut b = connect(Some("customer")).await;
    a.query_drop("create table if not exists txs (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txs").await.unwrap();
    let insert = "insert into txs (id, v) values (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)";

    a.query_drop("begin").await.unwrap();
    a.query_drop(insert).await.unwrap();
    assert_eq!(count(&mut a, "txs").await, 8);
    let ids = rows(&mut a, "select id from txs order by id").await;
    assert_eq!(ids.len(), 8, "{ids:?}");
    let n: Option<u64> = a
        .exec_first("select count(*) from txs where v >= ?", (0,))
        .await
        .unwrap();
    assert_eq!(n, Some(8));
    // A merge that needs only the first row leaves the others unread.
    assert_eq!(
        rows(&mut a, "select id from txs order by id limit 1").await,
        vec![vec![Some("1".into())]]
    );
    a.query_drop("update txs set v = v + 10").await.unwrap();
    let sum: Option<u64> = a.query_first("select sum(v) from txs").await.unwrap();
    assert_eq!(sum, Some(36 + 80));
    assert_eq!(count(&mut b, "txs").await, 0);
    a.query_drop("rollback").await.unwrap();
    assert_eq!(count(&mut a, "txs").await, 0);
    assert_eq!(placement("txs", "id", Func::Hash).await, vec![0, 0]);

    a.query_drop("begin").await.unwrap();
    a.query_drop(insert).await.unwrap();
    a.query_drop("set @@session.sql_safe_updates = 0")
        .await
        .unwrap();
    a.query_drop("delete from txs where id = 8").await.unwrap();
    assert_eq!(count(&mut a, "txs").await, 7);
    assert_eq!(count(&mut b, "txs").await, 0);
    a.query_drop("commit").await.unwrap();
    assert_eq!(count(&mut b, "txs").await, 7);
    let per_shard = placement("txs", "id", Func::Hash).await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    // The session keeps working with its setting after the transaction.
    assert_eq!(count(&mut a, "txs").await, 7);
    a.query_drop("delete from txs").await.unwrap();
}

/// `START TRANSACTION READ ONLY` begins a read-only transaction on every
/// shard it reaches (Go's `BeginTx` with `ReadOnly`): reads run, a write
/// fails as MariaDB fails it (1792) on whichever shard it reaches, and the
/// transaction goes on. Other characteristics reach the tablets too; an
/// unknown one is a syntax error, and the session stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_refuses_writes_on_every_shard() {
    apply_test_vschema().await;
    let mut c = connect(Some("customer")).await;
    c.query_drop("create table if not exists ro_txs (id bigint primary key, v int)")
        .await
        .unwrap();
    c.query_drop("delete from ro_txs").await.unwrap();
    c.query_drop("insert into ro_txs (id, v) values (1, 1), (2, 2), (3, 3), (4, 4)")
        .await
        .unwrap();
    for write in [
        "update ro_txs set v = 0 where id = 1",
        "update ro_txs set v = 0",
        "insert into ro_txs (id, v) values (9, 9)",
    ] {
        c.query_drop("start transaction read only").await.unwrap();
        assert_eq!(count(&mut c, "ro_txs").await, 4);
        let e = c.query_drop(write).await.unwrap_err();
        assert_eq!(err_code(&e), Some(1792), "{write}: {e}");
        let sum: Option<i64> = c.query_first("select sum(v) from ro_txs").await.unwrap();
        assert_eq!(sum, Some(10), "{write}");
        c.query_drop("commit").await.unwrap();
    }
    // The next transaction writes as usual.
    c.query_drop("start transaction with consistent snapshot, read write")
        .await
        .unwrap();
    c.query_drop("update ro_txs set v = v + 1").await.unwrap();
    c.query_drop("commit").await.unwrap();
    c.query_drop("begin").await.unwrap();
    c.query_drop("update ro_txs set v = v + 1").await.unwrap();
    c.query_drop("commit").await.unwrap();
    let sum: Option<i64> = c.query_first("select sum(v) from ro_txs").await.unwrap();
    assert_eq!(sum, Some(18));
    let e = c
        .query_drop("start transaction read only read write")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1064), "{e}");
    assert_eq!(count(&mut c, "ro_txs").await, 4);
}

/// `--worker-threads 3`: clients are dealt to three event loops in turn,
/// and the sessions on each loop share that loop's tablet connections for
/// their reads. Six clients at once write rows in transactions that span
/// both shards, read each back by key (prepared: shared reads) and count
/// theirs with a scatter; every answer is right, and both extra loops
/// served clients (their threads woke many times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_dealt_to_event_loops_are_served_alike() {
    apply_test_vschema().await;
    let (port, _, pid) = spawn_shardgate_pid(&["--worker-threads".into(), "3".into()]).await;
    let before = loop_wakeups(pid);
    assert_eq!(before.len(), 2, "threads named sg-loop-*: {before:?}");
    let mut setup = connect_port(port, Some("customer")).await;
    setup
        .query_drop("create table if not exists loops_t (id bigint primary key, v bigint)")
        .await
        .unwrap();
    setup.query_drop("delete from loops_t").await.unwrap();
    let clients: Vec<_> = (1..=6i64)
        .map(|c| {
            tokio::spawn(async move {
                let mut conn = connect_port(port, Some("customer")).await;
                for round in 0..20i64 {
                    let base = c * 1000 + round * 10;
                    conn.query_drop("begin").await.unwrap();
                    let values: Vec<String> =
                        (0..4).map(|i| format!("({}, {c})", base + i)).collect();
                    conn.query_drop(format!(
                        "insert into loops_t (id, v) values {}",
                        values.join(", ")
                    ))
                    .await
                    .unwrap();
                    conn.query_drop("commit").await.unwrap();
                    let v: Option<i64> = conn
                        .exec_first("select v from loops_t where id = ?", (base + 3,))
                        .await
                        .unwrap();
                    assert_eq!(v, Some(c), "client {c} round {round}");
                }
                let got: Option<(i64, i64)> = conn
                    .exec_first("select count(*), sum(v) from loops_t where v = ?", (c,))
                    .await
                    .unwrap();
                assert_eq!(got, Some((80, 80 * c)), "client {c}");
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        placement("loops_t", "id", Func::Hash)
            .await
            .iter()
            .sum::<usize>(),
        480
    );
    let after = loop_wakeups(pid);
    for (name, n) in &after {
        let woke = n - before.get(name).copied().unwrap_or(0);
        assert!(woke >= 20, "{name} woke {woke} times: it served no client");
    }
    setup.query_drop("delete from loops_t").await.unwrap();
}

/// Without `--worker-threads` the event loops number half the cores, but
/// two on two or three cores (one loop left a tenth of a 2-core machine
/// idle) and one on a single core. Counted by the extra loops' threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_number_of_event_loops_follows_the_cores() {
    let (_, _, pid) = spawn_shardgate_pid(&[]).await;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let loops = match cores {
        1 => 1,
        2 | 3 => 2,
        n => n / 2,
    };
    let extra = loop_wakeups(pid);
    assert_eq!(
        extra.len() + 1,
        loops,
        "{cores} cores, extra loops {extra:?}"
    );
}

/// Context switches of each of a shardgate's extra event loops, by thread
/// name: a loop with no clients sleeps in its poll and never switches.
fn loop_wakeups(pid: i32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.starts_with("sg-loop-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(name.trim().to_string(), switches);
    }
    out
}

/// `--transaction_mode=SINGLE` (vtgate's flag and spelling): a
/// transaction that reaches a second shard fails with vtgate's error and
/// is rolled back; one that stays on one shard commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_transaction_mode_refuses_a_second_shard() {
    apply_test_vschema().await;
    let (port, _) = spawn_shardgate(&["--transaction_mode".into(), "SINGLE".into()]).await;
    let mut a = connect_port(port, Some("customer")).await;
    let mut b = connect(Some("customer")).await;
    a.query_drop("create table if not exists txsingle (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txsingle").await.unwrap();
    let multi_db = |e: mysql_async::Error| {
        let code = err_code(&e);
        let text = e.to_string();
        assert_eq!(code, Some(1317), "{text}");
        assert!(text.contains("multi-db transaction attempted"), "{text}");
    };

    // ids 1 and 2 hash to -80, 4 to 80-.
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txsingle (id, v) values (1, 1)")
        .await
        .unwrap();
    multi_db(
        a.query_drop("insert into txsingle (id, v) values (4, 4)")
            .await
            .unwrap_err(),
    );
    // Rolled back: the first insert is gone, and the session is usable.
    assert_eq!(count(&mut b, "txsingle").await, 0);
    assert_eq!(count(&mut a, "txsingle").await, 0);
    a.query_drop("commit").await.unwrap();

    // A read that scatters inside a transaction reaches both shards too.
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txsingle (id, v) values (1, 1)")
        .await
        .unwrap();
    multi_db(
        a.query_drop("select count(*) from txsingle")
            .await
            .unwrap_err(),
    );
    assert_eq!(count(&mut b, "txsingle").await, 0);

    // Prepared statements take the same path.
    a.query_drop("begin").await.unwrap();
    let ins = "insert into txsingle (id, v) values (?, ?)";
    a.exec_drop(ins, (1, 1)).await.unwrap();
    multi_db(a.exec_drop(ins, (4, 4)).await.unwrap_err());
    assert_eq!(count(&mut b, "txsingle").await, 0);

    // One shard: commits.
    a.query_drop("begin").await.unwrap();
    a.exec_drop(ins, (1, 1)).await.unwrap();
    a.exec_drop(ins, (2, 2)).await.unwrap();
    a.query_drop("commit").await.unwrap();
    assert_eq!(count(&mut b, "txsingle").await, 2);
    assert_eq!(placement("txsingle", "id", Func::Hash).await, vec![2, 0]);
    a.query_drop("delete from txsingle").await.unwrap();
}

/// vtgate's session variable: `SET transaction_mode = 'single'` makes this
/// session's transactions refuse a second shard on a shardgate whose
/// `--transaction_mode` is MULTI, `@@transaction_mode` says which mode
/// holds, and it cannot change inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_chooses_its_transaction_mode() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    let mut b = connect(Some("customer")).await;
    a.query_drop("create table if not exists txmode (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txmode").await.unwrap();
    assert_eq!(transaction_mode(&mut a).await, "MULTI");
    a.query_drop("set transaction_mode = 'single'")
        .await
        .unwrap();
    assert_eq!(transaction_mode(&mut a).await, "SINGLE");
    // Another session keeps the server's mode.
    assert_eq!(transaction_mode(&mut b).await, "MULTI");

    // ids 1 and 2 hash to -80, 4 to 80-.
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txmode (id, v) values (1, 1)")
        .await
        .unwrap();
    let e = a
        .query_drop("insert into txmode (id, v) values (4, 4)")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    assert_eq!(count(&mut b, "txmode").await, 0);
    a.query_drop("commit").await.unwrap();

    // Not inside a transaction; not to a mode vtgate does not know.
    a.query_drop("begin").await.unwrap();
    let e = a
        .query_drop("set transaction_mode = 'multi'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1568), "{e}");
    a.query_drop("rollback").await.unwrap();
    let e = a
        .query_drop("set transaction_mode = 'sometimes'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1231), "{e}");
    assert_eq!(transaction_mode(&mut a).await, "SINGLE");

    // Back to MULTI: a transaction spans both shards and commits.
    a.query_drop("set transaction_mode = 'multi'")
        .await
        .unwrap();
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txmode (id, v) values (1, 1), (4, 4)")
        .await
        .unwrap();
    a.query_drop("commit").await.unwrap();
    assert_eq!(count(&mut b, "txmode").await, 2);
    a.query_drop("delete from txmode").await.unwrap();
}

/// A shardgate of its own under `--transaction_mode=twopc`, whose
/// resolver acts on records a second old: (MySQL port, web port).
async fn twopc_gate() -> (u16, u16) {
    spawn_shardgate(&[
        "--transaction_mode".into(),
        "twopc".into(),
        "--twopc_abandon_age".into(),
        "1s".into(),
    ])
    .await
}

/// `--transaction_mode=twopc`: a transaction whose parts on two shards
/// wrote commits both or neither. A part that cannot prepare (its tablet
/// connection killed before COMMIT) rolls the other shard's part back,
/// where MULTI leaves it committed; the client's COMMIT fails, the
/// session stays usable, and no record or prepared part is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twopc_commits_every_part_or_none() {
    apply_test_vschema().await;
    let (port, web) = twopc_gate().await;
    let mut a = connect_port(port, Some("customer")).await;
    a.query_drop("create table if not exists txatomic (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txatomic").await.unwrap();
    assert_eq!(transaction_mode(&mut a).await, "TWOPC");
    let on_shard = |uid: u32, id: u32| async move {
        let mut t = connect_tablet(uid).await;
        let v: Option<i64> = t
            .query_first(format!("select v from txatomic where id = {id}"))
            .await
            .unwrap();
        v
    };

    // ids 1 and 2 hash to -80 (tablet 300), 4 to 80- (400).
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txatomic (id, v) values (1, 1), (4, 4)")
        .await
        .unwrap();
    a.query_drop("update txatomic set v = v + 10")
        .await
        .unwrap();
    a.query_drop("commit").await.unwrap();
    assert_eq!(on_shard(300, 1).await, Some(11));
    assert_eq!(on_shard(400, 4).await, Some(14));
    a.query_drop("delete from txatomic where id = 4")
        .await
        .unwrap();

    // The 80- part's connection dies before COMMIT: under each mode,
    // what the -80 part left.
    let mut left = Vec::new();
    for mode in ["multi", "twopc"] {
        a.query_drop(format!("set transaction_mode = '{mode}'"))
            .await
            .unwrap();
        a.query_drop("begin").await.unwrap();
        a.query_drop("insert into txatomic (id, v) values (2, 2), (4, 4)")
            .await
            .unwrap();
        let tid: u64 = a
            .query_first("select connection_id() from txatomic where id = 4")
            .await
            .unwrap()
            .unwrap();
        let mut t = connect_tablet(400).await;
        t.query_drop(format!("kill {tid}")).await.unwrap();
        let e = a.query_drop("commit").await.unwrap_err();
        assert!(err_code(&e).is_some(), "{e}");
        left.push((on_shard(300, 2).await, on_shard(400, 4).await));
        a.query_drop("delete from txatomic where id in (2, 4)")
            .await
            .unwrap();
    }
    assert_eq!(left, [(Some(2), None), (None, None)], "multi, then twopc");

    // Nothing of the transactions is left: no prepared part on either
    // primary, no record (the one of the rollback whose part had lost its
    // connection goes with the resolver's next round). Shardgate's ids
    // begin with `sg-`; the resolver test's are its own.
    for uid in [300, 400] {
        let mut t = connect_tablet(uid).await;
        let xids: Vec<(u32, u32, u32, String)> = t.query("xa recover").await.unwrap();
        assert!(!xids.iter().any(|x| x.3.starts_with("sg-")), "{xids:?}");
    }
    let twopc = store()
        .await
        .beside(shardgate::executor::twopc::STORE_SUFFIX);
    let cleared = eventually(10, || {
        let twopc = twopc.clone();
        async move {
            let keys = twopc.list_all().await.ok()?;
            (!keys.keys().any(|k| k.starts_with("sg-"))).then_some(())
        }
    })
    .await;
    assert!(cleared.is_some(), "{:?}", twopc.list_all().await);

    // A transaction that begins with a read on both shards: each part's
    // XA START rides in the same write as the read.
    a.query_drop("begin").await.unwrap();
    let n: Option<u64> = a
        .query_first("select count(*) from txatomic")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    a.query_drop("insert into txatomic (id, v) values (2, 2), (4, 4)")
        .await
        .unwrap();
    a.query_drop("commit").await.unwrap();
    assert_eq!(
        (on_shard(300, 2).await, on_shard(400, 4).await),
        (Some(2), Some(4))
    );
    a.query_drop("delete from txatomic where id in (2, 4)")
        .await
        .unwrap();

    // Two-phase: the two transactions above, and the three DELETEs on
    // both shards outside a transaction (each runs in one of its own,
    // atomic under twopc too).
    assert_eq!(debug_var_at(web, "TwopcCommitted").await, 5);
    assert_eq!(debug_var_at(web, "TwopcRolledBack").await, 1);

    // A write that fails on one shard inside the transaction is taken
    // back on the other (to a savepoint inside each part, which a part
    // the write began sets after its XA START), as MariaDB takes back a
    // failed statement; the transaction goes on and commits the rest.
    a.query_drop("begin").await.unwrap();
    a.query_drop("insert into txatomic (id, v) values (2, 2)")
        .await
        .unwrap();
    let e = a
        .query_drop("insert into txatomic (id, v) values (4, 4), (1, 1)")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1062), "{e}");
    let seen: Vec<u64> = a
        .query("select id from txatomic order by id")
        .await
        .unwrap();
    assert_eq!(seen, [1, 2], "inside the transaction");
    a.query_drop("commit").await.unwrap();
    assert_eq!(
        (on_shard(300, 2).await, on_shard(400, 4).await),
        (Some(2), None)
    );
    a.query_drop("delete from txatomic where id = 2")
        .await
        .unwrap();

    // A session's SET chooses twopc on a MULTI gate too.
    let mut b = connect(Some("customer")).await;
    b.query_drop("set transaction_mode = 'twopc'")
        .await
        .unwrap();
    b.query_drop("begin").await.unwrap();
    b.query_drop("insert into txatomic (id, v) values (2, 20), (4, 40)")
        .await
        .unwrap();
    b.query_drop("commit").await.unwrap();
    assert_eq!(on_shard(300, 2).await, Some(20));
    assert_eq!(on_shard(400, 4).await, Some(40));
    a.query_drop("delete from txatomic").await.unwrap();
}

/// A deadlock on one shard rolls back the whole transaction, as MySQL's
/// does: the victim's part on the other shard goes too (a COMMIT after it
/// commits nothing), under MULTI and under TWOPC, whose deadlocked part
/// is left rollback-only by MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_rolls_back_every_shard() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    let mut b = connect(Some("customer")).await;
    a.query_drop("create table if not exists txdead (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from txdead").await.unwrap();
    a.query_drop("insert into txdead (id, v) values (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0)")
        .await
        .unwrap();
    let ids = |uid: u32| async move {
        let mut t = connect_tablet(uid).await;
        let ids: Vec<u32> = t.query("select id from txdead order by id").await.unwrap();
        ids
    };
    let (low, high) = (ids(300).await, ids(400).await);
    assert!(low.len() >= 2 && high.len() >= 2, "{low:?} {high:?}");
    let v = |id: u32| async move {
        let mut c = connect(Some("customer")).await;
        let v: Option<i64> = c
            .query_first(format!("select v from txdead where id = {id}"))
            .await
            .unwrap();
        v.unwrap()
    };
    for mode in ["multi", "twopc"] {
        for c in [&mut a, &mut b] {
            c.query_drop(format!("set transaction_mode = '{mode}'"))
                .await
                .unwrap();
            c.query_drop("begin").await.unwrap();
        }
        let before = (v(high[0]).await, v(high[1]).await);
        // Each holds a row of 80-, then one of -80, then wants the other's.
        for (c, own) in [(&mut a, 0), (&mut b, 1)] {
            c.query_drop(format!(
                "update txdead set v = v + 1 where id = {}",
                high[own]
            ))
            .await
            .unwrap();
            c.query_drop(format!(
                "update txdead set v = v + 1 where id = {}",
                low[own]
            ))
            .await
            .unwrap();
        }
        let wants = |id: u32| format!("update txdead set v = v + 1 where id = {id}");
        let (ra, rb) = tokio::join!(a.query_drop(wants(low[1])), b.query_drop(wants(low[0])));
        let (victim, winner, lost) = match (ra, rb) {
            (Err(e), Ok(())) => (&mut a, &mut b, (e, 0)),
            (Ok(()), Err(e)) => (&mut b, &mut a, (e, 1)),
            other => panic!("{mode}: one deadlock victim expected, got {other:?}"),
        };
        assert_eq!(err_code(&lost.0), Some(1213), "{mode}: {}", lost.0);
        victim.query_drop("commit").await.unwrap();
        winner.query_drop("commit").await.unwrap();
        let after = (v(high[0]).await, v(high[1]).await);
        let (won_before, won_after, lost_before, lost_after) = if lost.1 == 0 {
            (before.1, after.1, before.0, after.0)
        } else {
            (before.0, after.0, before.1, after.1)
        };
        assert_eq!(
            lost_after, lost_before,
            "{mode}: the victim's 80- part was rolled back"
        );
        assert_eq!(won_after, won_before + 1, "{mode}: the winner committed");
    }
}

/// The resolver finishes what a shardgate that died half way through a
/// two-phase commit left, as the decision store says: parts prepared on
/// both shards whose decision is commit are committed; an old record
/// without a decision is rolled back; a prepared part of ours without a
/// record is rolled back; a young record is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twopc_resolver_finishes_what_a_dead_gate_left() {
    use shardgate::executor::twopc;
    apply_test_vschema().await;
    let mut t300 = connect_tablet(300).await;
    let mut t400 = connect_tablet(400).await;
    for t in [&mut t300, &mut t400] {
        t.query_drop("create table if not exists txresolve (id bigint primary key, v int)")
            .await
            .unwrap();
        t.query_drop("delete from txresolve").await.unwrap();
    }
    let store = store().await.beside(twopc::STORE_SUFFIX);
    let record = |at: u64| {
        twopc_record(
            "customer",
            &[("-80", "zone1-300"), ("80-", "zone1-400")],
            at,
        )
    };
    // A part prepared and left by its connection, as a dead gate's is.
    let prepare = |uid: u32, dtid: String, id: u32| async move {
        let write = format!("insert into txresolve values ({id}, {id})");
        let tablet = format!("zone1-{uid}");
        prepare_by_hand(connect_tablet(uid).await, &dtid, &tablet, &write).await;
    };
    let run = format!("{:x}", std::process::id());
    let (commit, abandon, orphan, young) = (
        format!("t-{run}-commit"),
        format!("t-{run}-abandon"),
        format!("t-{run}-orphan"),
        format!("t-{run}-young"),
    );
    // Records young while their parts are prepared (the resolver leaves
    // them), then aged.
    let now = twopc::now_ms();
    for d in [&commit, &abandon] {
        store.put(d, &record(now)).await.unwrap();
    }
    store.put(&young, &record(now + 3_600_000)).await.unwrap();
    for (d, id) in [(&commit, 1), (&abandon, 2), (&young, 3)] {
        prepare(300, d.clone(), id).await;
        prepare(400, d.clone(), id + 10).await;
    }
    let decision = serde_json::to_vec(&twopc::Decision {
        decision: twopc::Outcome::Commit,
        at: now,
    })
    .unwrap();
    store
        .put(&twopc::decision_key(&commit), &decision)
        .await
        .unwrap();
    for d in [&commit, &abandon] {
        store.put(d, &record(now - 60_000)).await.unwrap();
    }
    prepare(400, orphan.clone(), 4).await;
    // A prepared part reaches the shard's replica (binlogged): a
    // failover keeps it for the resolver to end on the new primary.
    let replicated = eventually(10, || {
        let young = young.clone();
        async move {
            let mut t = connect_tablet(301).await;
            let xids: Vec<(u32, u32, u32, String)> = t.query("xa recover").await.ok()?;
            xids.iter().any(|x| x.3.starts_with(&young)).then_some(())
        }
    })
    .await;
    assert!(replicated.is_some(), "the replica holds the prepared part");

    let (port, _) = twopc_gate().await;
    let ours = |x: &(u32, u32, u32, String)| x.0 == twopc::FORMAT_ID && x.3.starts_with("t-");
    let settled = eventually(20, || {
        let store = store.clone();
        let run = run.clone();
        async move {
            let mut prepared = Vec::new();
            for uid in [300, 400] {
                let mut t = connect_tablet(uid).await;
                let xids: Vec<(u32, u32, u32, String)> = t.query("xa recover").await.ok()?;
                prepared.extend(xids.into_iter().filter(ours).map(|x| x.3));
            }
            let records = store.list_all().await.ok()?;
            let keys: Vec<String> = records
                .into_keys()
                .filter(|k| k.starts_with(&format!("t-{run}")))
                .collect();
            (prepared.iter().all(|x| x.contains("young")) && keys.len() == 1)
                .then_some((prepared, keys))
        }
    })
    .await;
    let (prepared, keys) = settled.expect("the resolver settles the dead gate's transactions");
    assert_eq!(prepared.len(), 2, "the young transaction's parts stay");
    assert_eq!(keys, std::slice::from_ref(&young));
    let on_300: Vec<u32> = t300
        .query("select id from txresolve order by id")
        .await
        .unwrap();
    let on_400: Vec<u32> = t400
        .query("select id from txresolve order by id")
        .await
        .unwrap();
    assert_eq!((on_300, on_400), (vec![1], vec![11]));

    // vtgate's statements show what the store holds.
    let mut c = connect_port(port, Some("customer")).await;
    let shown = rows(&mut c, &format!("show transaction status for '{young}'")).await;
    let state = |r: &[Vec<Option<String>>]| -> Vec<(String, String, String)> {
        r.iter()
            .map(|r| {
                let s = |i: usize| r[i].clone().unwrap_or_default();
                (s(0), s(1), s(3))
            })
            .collect()
    };
    let parts = "customer:-80,customer:80-".to_string();
    assert_eq!(
        state(&shown),
        [(young.clone(), "PREPARE".into(), parts.clone())]
    );
    let listed = rows(&mut c, "show unresolved transactions").await;
    assert!(
        state(&listed).contains(&(young.clone(), "PREPARE".into(), parts)),
        "{listed:?}"
    );
    assert!(rows(&mut c, "show unresolved transactions for commerce")
        .await
        .iter()
        .all(|r| r[0].as_deref() != Some(young.as_str())));

    // The young one, by hand.
    for uid in [300, 400] {
        let mut t = connect_tablet(uid).await;
        t.query_drop(format!(
            "xa rollback {}",
            twopc::xid(&young, &format!("zone1-{uid}"))
        ))
        .await
        .unwrap();
    }
    store.delete(&young, false).await.unwrap();
}

/// What `@@transaction_mode` says on `c`.
async fn transaction_mode(c: &mut mysql_async::Conn) -> String {
    let m: Option<String> = c.query_first("select @@transaction_mode").await.unwrap();
    m.unwrap()
}

/// Two transactions that wait for each other through different shards
/// (each tablet sees one wait, no cycle): the gate finds the cycle and,
/// of two equally heavy ones, the younger gets ER_LOCK_DEADLOCK, as from
/// one MySQL server, instead of both waiting out
/// `innodb_lock_wait_timeout` (50 s). It is rolled back on both shards,
/// the older one commits, and the victim's session retries the
/// transaction on the same connection. Two other transactions wait on a
/// third row meanwhile, so the gate keeps looking at lock waits from
/// before the cycle forms: InnoDB's copy of them must still be fresh
/// when it does. Then an older transaction that changed less gives way
/// to a younger one that changed more, as InnoDB chooses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_across_shards_fails_the_lighter_transaction() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    let mut b = connect(Some("customer")).await;
    a.query_drop("create table if not exists dlx (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from dlx").await.unwrap();
    // ids 1 and 2 hash to -80, 0, 4 and 6 to 80-.
    a.query_drop("insert into dlx (id, v) values (0, 0), (1, 0), (2, 0), (4, 0), (6, 0)")
        .await
        .unwrap();
    assert_eq!(placement("dlx", "id", Func::Hash).await, vec![2, 3]);
    let broken_before = debug_var("CrossShardDeadlocks").await;

    // A plain wait of two transactions for a third, on row 2 (-80). Each
    // waiter holds a row on 80- too, so the detector asks the tablets
    // while they wait, before the cycle forms: it must not act on what
    // it read then.
    let mut holder = connect(Some("customer")).await;
    holder.query_drop("begin").await.unwrap();
    holder
        .query_drop("update dlx set v = 1 where id = 2")
        .await
        .unwrap();
    let mut queued = Vec::new();
    for (v, own) in [(2, 0), (3, 6)] {
        let mut c = connect(Some("customer")).await;
        c.query_drop("begin").await.unwrap();
        c.query_drop(format!("update dlx set v = {v} where id = {own}"))
            .await
            .unwrap();
        queued.push(tokio::spawn(async move {
            let r = c
                .query_drop(format!("update dlx set v = {v} where id = 2"))
                .await;
            (c, r)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    a.query_drop("begin").await.unwrap();
    a.query_drop("update dlx set v = 10 where id = 1")
        .await
        .unwrap();
    b.query_drop("begin").await.unwrap();
    b.exec_drop("update dlx set v = ? where id = ?", (20, 4))
        .await
        .unwrap();
    // Each now waits for the row the other holds, on the other shard.
    let (ra, rb) = tokio::join!(
        a.query_drop("update dlx set v = 11 where id = 4"),
        b.exec_drop("update dlx set v = ? where id = ?", (21, 1)),
    );
    ra.unwrap();
    let e = rb.unwrap_err();
    assert_eq!(err_code(&e), Some(1213), "{e}");
    match &e {
        mysql_async::Error::Server(se) => assert_eq!(se.state, "40001", "{e}"),
        other => panic!("{other}"),
    }
    a.query_drop("commit").await.unwrap();
    // B's first update was rolled back on its shard too.
    assert_eq!(
        rows(&mut b, "select id, v from dlx order by id").await,
        vec![
            vec![Some("0".into()), Some("0".into())],
            vec![Some("1".into()), Some("10".into())],
            vec![Some("2".into()), Some("0".into())],
            vec![Some("4".into()), Some("11".into())],
            vec![Some("6".into()), Some("0".into())]
        ]
    );
    assert!(debug_var("CrossShardDeadlocks").await > broken_before);
    // The plain wait was no deadlock: it ends when the holder does.
    holder.query_drop("rollback").await.unwrap();
    for q in queued {
        let (mut c, r) = q.await.unwrap();
        r.unwrap();
        c.query_drop("rollback").await.unwrap();
    }

    // The victim retries on the same connection and commits.
    b.query_drop("begin").await.unwrap();
    b.exec_drop("update dlx set v = ? where id = ?", (20, 4))
        .await
        .unwrap();
    b.exec_drop("update dlx set v = ? where id = ?", (21, 1))
        .await
        .unwrap();
    b.query_drop("commit").await.unwrap();
    assert_eq!(
        rows(&mut a, "select id, v from dlx order by id").await,
        vec![
            vec![Some("0".into()), Some("0".into())],
            vec![Some("1".into()), Some("21".into())],
            vec![Some("2".into()), Some("0".into())],
            vec![Some("4".into()), Some("20".into())],
            vec![Some("6".into()), Some("0".into())]
        ]
    );

    // The older transaction changes one row, the younger three rows
    // three times: the older, lighter one gives way.
    let broken_before = debug_var("CrossShardDeadlocks").await;
    let b_first = ["update dlx set v = v + 1 where id in (0, 4, 6)"; 3];
    let (ra, rb) = crossed(
        (&mut a, &mut b),
        (&["update dlx set v = 30 where id = 1"], &b_first),
        (
            "update dlx set v = 31 where id = 4",
            "update dlx set v = 41 where id = 1",
        ),
    )
    .await;
    rb.unwrap();
    let e = ra.unwrap_err();
    assert_eq!(err_code(&e), Some(1213), "{e}");
    b.query_drop("commit").await.unwrap();
    assert_eq!(
        rows(&mut a, "select id, v from dlx order by id").await,
        vec![
            vec![Some("0".into()), Some("3".into())],
            vec![Some("1".into()), Some("41".into())],
            vec![Some("2".into()), Some("0".into())],
            vec![Some("4".into()), Some("23".into())],
            vec![Some("6".into()), Some("3".into())]
        ]
    );
    assert!(debug_var("CrossShardDeadlocks").await > broken_before);
    a.query_drop("delete from dlx").await.unwrap();
}

/// Begins a transaction on each of two connections, runs each one's
/// `first` statements in turn, then both `then` statements at once (each
/// meant to wait for a row the other holds): their results, a's first.
async fn crossed(
    (a, b): (&mut Conn, &mut Conn),
    first: (&[&str], &[&str]),
    then: (&str, &str),
) -> (
    Result<(), mysql_async::Error>,
    Result<(), mysql_async::Error>,
) {
    for (c, stmts) in [(&mut *a, first.0), (&mut *b, first.1)] {
        c.query_drop("begin").await.unwrap();
        for q in stmts {
            c.query_drop(*q).await.unwrap();
        }
    }
    tokio::join!(a.query_drop(then.0), b.query_drop(then.1))
}

/// Two shards in one mysqld (as two databases) hold one gate
/// transaction's locks on two connections, which InnoDB takes for two
/// transactions: a cycle through the gate is as invisible to it as across
/// two mysqlds, and the gate must break it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_across_shards_in_one_mysqld_is_broken() {
    let store = store().await;
    let creds = shardgate::admin::DbaCreds::default();
    for (uid, shard) in [(900, "-80"), (901, "80-")] {
        let rec = shardgate::topo::TabletRecord {
            alias: format!("zone1-{uid}"),
            hostname: "127.0.0.1".into(),
            mysql_port: tablet_port(100),
            keyspace: "twin".into(),
            shard: shard.into(),
            tablet_type: "PRIMARY".into(),
            db_name: Some(format!("vt_twin_{uid}")),
        };
        shardgate::admin::add_tablet(&store, &rec, true)
            .await
            .unwrap();
        shardgate::admin::init_shard_primary(
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
    let vschema = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
        "tables": {"dlx": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#;
    shardgate::admin::apply_vschema(&store, "twin", vschema.as_bytes())
        .await
        .unwrap();
    let port = cluster().port;
    let seen = eventually(10, || async move {
        let mut conn = try_connect_port(port, Some("twin")).await.ok()?;
        let t: Vec<String> = conn.query("show vschema tables").await.ok()?;
        t.contains(&"dlx".to_string()).then_some(())
    })
    .await;
    assert!(seen.is_some(), "shardgate never served keyspace twin");
    let mut a = connect(Some("twin")).await;
    let mut b = connect(Some("twin")).await;
    a.query_drop("create table if not exists dlx (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from dlx").await.unwrap();
    // id 1 hashes to -80, 4 to 80-.
    a.query_drop("insert into dlx (id, v) values (1, 0), (4, 0)")
        .await
        .unwrap();
    let broken_before = debug_var("CrossShardDeadlocks").await;
    let (ra, rb) = crossed(
        (&mut a, &mut b),
        (
            &["update dlx set v = 10 where id = 1"],
            &["update dlx set v = 20 where id = 4"],
        ),
        (
            "update dlx set v = 11 where id = 4",
            "update dlx set v = 21 where id = 1",
        ),
    )
    .await;
    // Equal weights: the younger, b, gives way (not InnoDB's lock wait
    // timeout, 1205, which would mean nobody saw the cycle).
    ra.unwrap();
    let e = rb.unwrap_err();
    assert_eq!(err_code(&e), Some(1213), "{e}");
    a.query_drop("commit").await.unwrap();
    assert_eq!(
        rows(&mut b, "select id, v from dlx order by id").await,
        vec![
            vec![Some("1".into()), Some("10".into())],
            vec![Some("4".into()), Some("11".into())],
        ]
    );
    assert!(debug_var("CrossShardDeadlocks").await > broken_before);
}

/// A scatter's connections that their tablets closed since their last
/// use, however recent (a restarted tablet), are replaced before the
/// shards' queries go out: the scatter answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_replaces_connections_closed_since_their_last_use() {
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    sg.query_drop("create table if not exists killt (id bigint primary key)")
        .await
        .unwrap();
    sg.query_drop("delete from killt").await.unwrap();
    sg.query_drop("insert into killt (id) values (1), (2), (3), (4), (5), (6), (7), (8)")
        .await
        .unwrap();
    let per_shard = placement("killt", "id", Func::Hash).await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    // Find the session's connection on each shard by the query it runs.
    let marker = format!("scatter-kill-{}", std::process::id());
    let sleeper = format!("select sleep(0.3), '{marker}' from killt limit 1");
    let (slept, low, high) = tokio::join!(
        sg.query_drop(sleeper),
        connection_running(300, &marker),
        connection_running(400, &marker)
    );
    slept.unwrap();
    for (uid, id) in [(300, low), (400, high)] {
        let id = id.expect("the session's connection in the shard's processlist");
        let mut dba = connect_tablet(uid).await;
        dba.query_drop(format!("kill connection {id}"))
            .await
            .unwrap();
    }
    // Well within a second of their last use.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(count(&mut sg, "killt").await, 8);
    let ids = rows(&mut sg, "select id from killt order by id").await;
    assert_eq!(ids.len(), 8);
}

/// Runs a prepared `select count(*) ... >= ?` with 0.
async fn count_from(sg: &mut Conn, stmt: mysql_async::Statement) -> u64 {
    let n: Option<u64> = sg.exec_first(stmt, (0,)).await.unwrap();
    n.unwrap()
}

/// Puts this file's VSchema in etcd and waits until shardgate serves it
/// (every test here applies the same document, so order does not matter).
async fn apply_test_vschema() {
    let c = cluster();
    shardgate::admin::apply_vschema(&store().await, "customer", VSCHEMA.as_bytes())
        .await
        .unwrap();
    let seen = eventually(10, || async move {
        let mut conn = connect_port(c.port, Some("customer")).await;
        let t: Vec<String> = conn.query("show vschema tables").await.ok()?;
        (t.contains(&"dt".to_string()) && t.contains(&"tag".to_string())).then_some(())
    })
    .await;
    assert!(seen.is_some());
}

/// Reads `column` of every row of `table` straight from each shard's
/// primary and checks the row sits on the shard `func` maps it to; returns
/// how many rows each shard holds.
async fn placement(table: &str, column: &str, func: Func) -> Vec<usize> {
    let mut counts = Vec::new();
    for (uid, shard) in [(300u32, "-80"), (400, "80-")] {
        let mut t = connect_tablet(uid).await;
        let values: Vec<Value> = t
            .query(format!("select {column} from {table}"))
            .await
            .unwrap();
        let kr = shardgate::topo::KeyRange::parse(shard).unwrap();
        for v in &values {
            let ksid = func.map(v).unwrap().unwrap();
            assert!(
                kr.contains(&ksid),
                "{table}.{column} {v:?} is on {shard} but maps elsewhere"
            );
        }
        counts.push(values.len());
    }
    counts
}

async fn compare(sg: &mut Conn, oracle: &mut Conn, c: &Case) {
    compare_by(sg, oracle, c, false).await
}

/// Compares shardgate's answer with the oracle's, as text rows or (with
/// `prepared`) as a prepared statement's typed rows.
async fn compare_by(sg: &mut Conn, oracle: &mut Conn, c: &Case, prepared: bool) {
    let (a, b) = (
        cells_by(sg, &c.sql, prepared).await,
        cells_by(oracle, &c.sql, prepared).await,
    );
    let (mut a, mut b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => panic!("{}: shardgate {:?} vs oracle {:?}", c.sql, a.err(), b.err()),
    };
    if c.fold_case {
        for r in a.iter_mut().chain(b.iter_mut()) {
            for v in r.iter_mut().flatten() {
                *v = v.to_lowercase().replace('é', "e");
            }
        }
    }
    if !c.ordered {
        a.sort();
        b.sort();
    }
    assert_eq!(a, b, "{}", c.sql);
}

/// MariaDB's `INSERT ... RETURNING` and `DELETE ... RETURNING` (which
/// Django uses for every create once the server says MariaDB 10.5 or
/// later) return the rows they wrote: the gate had dropped the clause from
/// inserts and the shards' rows from deletes, answering OK. An insert's
/// rows come in VALUES order across shards (bulk_create pairs them with
/// its objects by position); a delete's in no promised order.
async fn returning_rows(sg: &mut Conn, oracle: &mut Conn) {
    for conn in [&mut *sg, &mut *oracle] {
        conn.query_drop("drop table if exists ret").await.unwrap();
        conn.query_drop("create table ret (id bigint primary key, v varchar(10), n int default 7)")
            .await
            .unwrap();
    }
    for (sql, ordered) in [
        ("insert into ret (id, v) values (5, 'e'), (1, 'a'), (9, 'i'), (3, 'c'), (12, 'l'), (2, 'b') returning id, v, id * 2 as twice", true),
        ("insert into ret (id, v) values (20, 't') returning *", true),
        ("insert ignore into ret (id, v) values (21, 'u'), (5, 'dup'), (22, 'v') returning id, v", false),
        ("insert into ret (id, v) values (5, 'e2'), (30, 'x') on duplicate key update v = values(v) returning id, v", false),
        ("delete from ret where id in (1, 9, 12) returning id, v", false),
        ("delete from ret where id = 3 returning *", true),
        ("delete from ret where id = 999 returning id", true),
        ("select * from ret", false),
        ("delete from ret returning id, n", false),
    ] {
        compare(sg, oracle, &case(sql, ordered)).await;
    }
    // Prepared, with parameters.
    let sql = "insert into ret (id, v) values (?, ?), (?, ?), (?, ?) returning v, id";
    let params = (8, "h", 4, "d", 11, "k");
    let a: Vec<(String, i64)> = sg.exec(sql, params).await.unwrap();
    let b: Vec<(String, i64)> = oracle.exec(sql, params).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
}

/// `SELECT SQL_CALC_FOUND_ROWS ... LIMIT` then `SELECT FOUND_ROWS()` (as
/// WordPress pages): the number of rows without the LIMIT over every
/// shard, as one server counts them (each shard's tablet knew only its
/// own, and the gate asked one of them).
async fn calc_found_rows(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select sql_calc_found_rows id, name from dt where k > 3 order by id limit 5",
        "select sql_calc_found_rows id from dt order by id limit 2 offset 10",
        "select sql_calc_found_rows k, count(*) from dt group by k order by k limit 3",
        "select sql_calc_found_rows distinct flag from dt order by flag limit 1",
        "select sql_calc_found_rows id from dt where id = 7 limit 1",
        "select sql_calc_found_rows dt.id from dt join dt d2 on d2.id = dt.id where d2.k < 0 order by dt.id limit 4",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
        compare(sg, oracle, &case("select found_rows()", true)).await;
    }
}

/// SQL's prepared statements, which the gate keeps in the session (as
/// vtgate does): each EXECUTE is its statement with the values in place,
/// planned over the shards, whatever tablet connection the PREPARE met.
/// The same rows, counts and error codes as the oracle's; before, the
/// gate's parser refused `PREPARE ... FROM` on a sharded keyspace.
async fn sql_prepared_statements(sg: &mut Conn, oracle: &mut Conn) {
    let q =
        "select k, count(*), sum(amount) from dt where id between ? and ? group by k order by k";
    on_both(
        sg,
        oracle,
        &[
            &format!("set @lo = 40, @hi = 90, @n = 7, @q = '{q}'"),
            "prepare point from 'select id, name, amount from dt where id = ?'",
            "prepare ranged from @q",
            "prepare top from 'select id, k from dt where k > ? order by id desc limit ?'",
            "prepare Bump from 'update dt set amount = amount + ? where id in (?, ?)'",
        ],
    )
    .await;
    for sql in [
        "execute point using 17",
        "execute POINT using @n",
        "execute point using '23'",
        "execute ranged using @lo, @hi",
        "execute top using -5, @n",
        "execute top using @lo div 10, @n + 1",
        "execute immediate 'select count(*), sum(amount) from dt where k < ?' using @n",
        "execute immediate concat('select max(id) from dt where flag = ', 1)",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    // A prepared statement runs in the database it was prepared in, as on
    // MariaDB: `dt` is no table of `commerce`.
    sg.query_drop("use commerce").await.unwrap();
    compare(sg, oracle, &case("execute ranged using @lo, @hi", true)).await;
    sg.query_drop("use customer").await.unwrap();
    // USING's variable is read by a statement of the gate's own, which
    // leaves what FOUND_ROWS() says to the statement it serves.
    let calc = "select sql_calc_found_rows id from dt where id < 100 order by id limit 3";
    compare(sg, oracle, &case(calc, true)).await;
    let found = "execute immediate 'select found_rows(), ?' using @n";
    compare(sg, oracle, &case(found, true)).await;
    // A write, then the rows it changed.
    same_writes(sg, oracle, "execute bump using 1, @lo, @hi").await;
    let changed = "select id, amount from dt where id in (40, 90) order by id";
    compare(sg, oracle, &case(changed, true)).await;
    // A PREPARE over one of the same name replaces it.
    let replaced = "prepare point from 'select count(*) from dt where k = ? or k = ?'";
    on_both(sg, oracle, &[replaced]).await;
    compare(sg, oracle, &case("execute point using 3, @n", true)).await;
    for (sql, code) in [
        ("execute point using 1", 1210),
        ("execute nope", 1243),
        ("prepare x from @undefined", 1064),
        ("prepare x from 'select 1; select 2'", 1064),
        ("prepare x from 'execute point using 1, 2'", 1295),
        ("deallocate prepare point", 0),
        ("execute point using 1, 2", 1243),
        ("drop prepare point", 1243),
        // A `?` belongs to a statement being prepared (the gate had read
        // it as NULL).
        ("select id from dt where id = ?", 1064),
    ] {
        for conn in [&mut *sg, &mut *oracle] {
            let got = conn.query_drop(sql).await;
            assert_eq!(
                got.err().and_then(|e| err_code(&e)).unwrap_or(0),
                code,
                "{sql}"
            );
        }
    }
    // Neither is prepared by the protocol.
    for conn in [&mut *sg, &mut *oracle] {
        let e = conn.prep("prepare x from 'select 1'").await.unwrap_err();
        assert_eq!(err_code(&e), Some(1295), "{e}");
    }
}

/// MySQL's ways of writing a write that the gate's parser does not read
/// (`INSERT ... SET`; UPDATE's and DELETE's LOW_PRIORITY, QUICK and
/// IGNORE), over one shard and several: the same counts and rows as the
/// oracle's. Before, the first was refused as an INSERT ... SELECT, the
/// second read `ignore` as a table. IGNORE keeps its meaning on every
/// shard: a value too long for its column is cut (a warning) where
/// without it the statement fails (1406, strict mode).
async fn mysql_write_forms(sg: &mut Conn, oracle: &mut Conn) {
    let rows = "select id, k, name, amount from dt where id between 5001 and 5004 order by id";
    writes_agree(
        sg,
        oracle,
        &[
            "insert into dt set id = 5001, k = 3, name = 'set', amount = 1.5",
            "insert into dt set k = 4, id = 5002, name = concat('s', 'et')",
            "replace into dt set id = 5001, k = 5, name = 'replaced'",
            "insert ignore into dt set id = 5002, k = 6, name = 'ignored'",
            "insert into dt set id = 5003, k = 7 on duplicate key update k = 8",
            "insert into dt set id = 5003, k = 7 on duplicate key update k = 8",
            "insert into dt (id, k) values (+5004, +1)",
            "update low_priority dt set amount = 2 where id = 5001",
            "update ignore dt set name = repeat('y', 40) where id in (5001, 5004)",
            "update ignore dt set name = repeat('z', 40) where k between 3 and 4 and id > 5000",
            "update ignore dt set k = k + 1 where id = 5002 order by id limit 1",
            "delete low_priority quick ignore from dt where id = 5003",
        ],
        &[rows],
    )
    .await;
    fails_on_both(
        sg,
        oracle,
        "update dt set name = repeat('w', 40) where id in (5001, 5004)",
        1406,
    )
    .await;
    // The same forms prepared, their values parameters.
    for conn in [&mut *sg, &mut *oracle] {
        conn.exec_drop(
            "insert into dt set id = ?, k = ?, name = ?",
            (5003, 9, "prep"),
        )
        .await
        .unwrap();
        conn.exec_drop(
            "update ignore dt set name = repeat(?, 40) where id = ?",
            ("p", 5003),
        )
        .await
        .unwrap();
    }
    compare(sg, oracle, &case(rows, true)).await;
    let modulo = "select id, k mod 4 from dt where id between 5001 and 5004 order by id";
    compare_by(sg, oracle, &case(modulo, true), true).await;
    // A vindex value written as an expression: the rows are selected
    // first (where the session's variables are), then routed.
    on_both(sg, oracle, &["set @vid = 5006"]).await;
    writes_agree(
        sg,
        oracle,
        &[
            "insert into dt (id, k) values (@vid, 1), (@vid + 1, 2)",
            "insert into dt (id, k, name) values (5000 + 9, 3, concat('a', 'b'))",
        ],
        &["select id, k, name from dt where id between 5005 and 5010 order by id"],
    )
    .await;
    same_writes(sg, oracle, "delete from dt where id between 5005 and 5010").await;
    same_writes(
        sg,
        oracle,
        "delete ignore from dt where id between 5001 and 5004",
    )
    .await;
}

/// A vindex column compared with a number written with a fraction, an
/// exponent or in hex, or a string of one: MariaDB compares them as the
/// integer they equal (or finds no row where none does); the gate routes
/// them so (it refused them as values the vindex cannot map). Beside
/// them, MySQL's infix MOD, which the gate's parser read as an alias.
async fn vindex_values_written_otherwise(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select id, k from dt where id = 7.0",
        "select id, k from dt where id = '8.00'",
        "select id from dt where id in (9.0, 10.5, 0x0b, 1.2e1, '13.') order by id",
        "select count(*), max(k) from dt where id = 1.5",
        "select id from dt where id = 14e0 or id = 15.000 order by id",
        "select id, k from dt where id = +19",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    // MySQL's infix MOD (the parser read it as an alias), names included.
    for sql in [
        "select id mod 7, count(*) from dt where id < 100 group by id mod 7 order by 1",
        "select id, k MOD 3 from dt where id mod 50 = 1 and k mod 2 = 0 order by id",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
    writes_agree(
        sg,
        oracle,
        &[
            "update dt set k = k + 1 where id = 16.0",
            "update dt set k = k + 1 where id in (17.5, '18.0')",
            "delete from dt where id = 2999.5",
        ],
        &["select id, k from dt where id between 16 and 18 order by id"],
    )
    .await;
}

/// `SET @v = (SELECT ...)` reads every shard the subquery reads: the gate
/// runs it as a SELECT ... INTO. Replayed on a tablet, as before, it read
/// one shard's rows (a count of one shard's).
async fn variables_set_from_queries(sg: &mut Conn, oracle: &mut Conn) {
    on_both(
        sg,
        oracle,
        &[
            "set @cnt = (select count(*) from dt), @mx := (select max(k) from dt where id < 500), @two = 2",
            "set @none = (select id from dt where id = 999999)",
            "set @named = (select name from dt where id > 100 order by id limit 1)",
        ],
    )
    .await;
    compare(
        sg,
        oracle,
        &case("select @cnt, @mx, @two, @none, @named", true),
    )
    .await;
    fails_on_both(
        sg,
        oracle,
        "set @many = (select id from dt where id < 10)",
        1242,
    )
    .await;
}

/// `sql_select_limit` caps what the client gets of a SELECT without a
/// LIMIT of its own, as MariaDB applies it, and nothing the gate sends
/// for it: each shard's part of a merge, a grouping's partial rows, a
/// nested loop's inner rows (replayed on the tablets, it cut all three).
/// Also the SQL the sharded planner could not read before: a number
/// written from its period (`.5`) and a statement that is one
/// parenthesized query, ordered or limited outside.
async fn select_limit_and_parentheses(sg: &mut Conn, oracle: &mut Conn) {
    on_both(sg, oracle, &["set sql_select_limit = 3"]).await;
    for sql in [
        "select id, k from dt order by id",
        "select k, count(*), sum(amount) from dt group by k order by k",
        "select a.id, b.id from dt a join dt b on a.k = b.k and a.id < 40 order by a.id, b.id",
        "select id from dt where id < 20 union select id from dt where id > 2900 order by id",
        "select id from dt order by id limit 5",
        "(select id from dt order by id desc limit 5)",
        "select @@sql_select_limit",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    compare_by(
        sg,
        oracle,
        &case("select id from dt order by id", true),
        true,
    )
    .await;
    on_both(sg, oracle, &["set sql_select_limit = default"]).await;
    compare(
        sg,
        oracle,
        &case("select count(*), @@sql_select_limit from dt", true),
    )
    .await;
    fails_on_both(sg, oracle, "set sql_select_limit = 'many'", 1232).await;
    for sql in [
        "select .5, -.25e1, id from dt where id < .5e2 order by id",
        // An exponent's sign (`1e-3` was `1e - 3` to the shards: 1054).
        "select id, 1e-3, -2.5E+2 * k from dt where amount > 1e-1 order by id limit 5",
        "select id from dt where amount > .5 order by id limit 3",
        "(select id from dt order by id desc limit 5) order by id",
        "(select k, count(*) as n from dt group by k) order by n desc, k limit 3",
        "((select id, name from dt where id = 7))",
        "(select id+1, k from dt where k > 0) order by 1 limit 4",
        "(select id, k from dt order by id desc limit 6) order by 2, 1 limit 4",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
}

/// TIME values order as durations across shards (their text put
/// `100:00:00` before `20:00:00` and `-10:00:00` after `-02:00:00`), in
/// a merge, MIN and MAX, and a grouping; ENUM and SET values by their
/// numbers (an ENUM's place in its list), where their text ordered them
/// before; MIN and MAX of those by their text, as MariaDB's.
async fn times_enums_and_sets_order_as_mariadb_orders_them(sg: &mut Conn, oracle: &mut Conn) {
    on_both(
        sg,
        oracle,
        &[
            "drop table if exists tmv",
            "create table tmv (id bigint primary key, t time(1), e enum('b', 'a', 'c'), s set('y', 'x'), \
             d date, dt datetime(2), n varchar(8) collate utf8mb4_general_ci)",
            "insert into tmv (id, t, e, s) values (1, '-10:00:00', 'a', 'x'), (2, '-02:00:00', 'b', 'y'), \
             (3, '100:00:00', 'c', 'x,y'), (4, '20:00:00', 'a', ''), (5, '00:30:00.5', null, 'y'), \
             (6, '-00:30:00', 'b', 'x'), (7, '838:59:59', 'c', null), (8, '-838:59:59', 'a', 'y'), \
             (9, null, 'b', 'x,y'), (10, '20:00:00', 'c', 'x')",
            "update tmv set d = '2024-01-31' + interval id * 11 day, \
             dt = '2023-12-31 23:59:58.25' + interval id * 3001 second where id <> 5",
            "update tmv set n = elt(id, 'Été', 'ète', 'Ärger', 'arger', 'Zoë', 'zoo', 'e', 'Ä', 'b', 'Œuf')",
        ],
    )
    .await;
    for sql in [
        "select id, t from tmv order by t, id",
        "select id from tmv order by t desc, id limit 4",
        "select min(t), max(t) from tmv",
        "select t, count(*) from tmv group by t order by t",
        "select id, e, s from tmv order by e, s desc, id",
        "select e, count(*) from tmv group by e order by e desc",
        "select distinct s from tmv order by s",
        "select min(e), max(e), min(s), max(s) from tmv",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
}

/// MariaDB's own ways of writing and ordering, against the oracle: `!x`
/// (a NOT tighter than `=`), `a SOUNDS LIKE b`, compound INTERVAL and
/// EXTRACT units, `INTERVAL(n, ...)`, CAST to a character set and `CHAR(n
/// USING cs)`, which the sharded planner could not parse; a GROUP BY without ORDER BY, whose groups a
/// single MariaDB returns sorted (across shards they came in shard order,
/// and a LIMIT took other groups); a vindex value beyond every BIGINT
/// (refused before, no row on MariaDB); `"name"` under ANSI_QUOTES. And
/// a user variable assigned as rows are read, which each shard computed
/// apart (refused, as vtgate).
async fn mariadb_forms(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select id, !k, !!flag, !k = 0 from dt where !(k > 3) and !flag order by id limit 20",
        "select id, name sounds like 'upd' from dt where name sounds like 'upd' order by id limit 9",
        "select id, count(*), sum(amount) from dt where id < 60 group by id",
        "select id, k from dt group by id limit 7",
        "select k, count(*) from dt group by k",
        "select * from dt where id = 99999999999999999999",
        "select id, extract(year_month from '2020-05-06'), '2020-01-01' + interval '1:2' hour_minute, \
         interval(k, 0, 5, 10), cast(name as char(3) charset utf8mb4), char(65 + id % 3 using utf8mb4) \
         from dt where id < 8 order by id",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
    let e = sg
        .query_drop("select @r := k from dt where id < 9")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
    // Counts sent as strings: PHP's PDO sends every prepared value so, and
    // EXECUTE ... USING '2' writes one.
    for (sql, params) in [
        ("select id from dt order by id limit ?", vec!["3"]),
        ("select id from dt order by id limit ?, ?", vec!["2", "4"]),
        ("select id from dt where id = 7 limit ?", vec!["1"]),
    ] {
        let mut answers = Vec::new();
        for conn in [&mut *sg, &mut *oracle] {
            let ids: Vec<i64> = conn.exec(sql, params.clone()).await.unwrap();
            answers.push(ids);
        }
        assert_eq!(answers[0], answers[1], "{sql}");
        assert!(!answers[0].is_empty(), "{sql}");
    }
    // Under ANSI_QUOTES `"k"` is a name (the gate grouped by the string
    // 'k': one group), however the mode was set.
    on_both(
        sg,
        oracle,
        &["set sql_mode = concat(@@sql_mode, ',ANSI_QUOTES')"],
    )
    .await;
    for sql in [
        "select \"k\", count(*) from \"dt\" group by \"k\" order by 1",
        "select d.\"id\", 'text' from dt d where \"id\" < 9 order by \"id\" desc",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    on_both(sg, oracle, &["set sql_mode = default"]).await;
    compare(
        sg,
        oracle,
        &case("select \"k\", count(*) from dt group by 1", true),
    )
    .await;
    on_both(
        sg,
        oracle,
        &[
            "prepare lim from 'select id from dt order by id limit ?'",
            "prepare one from 'select id, k from dt where id = 7 limit ?'",
        ],
    )
    .await;
    for sql in [
        "execute lim using '2'",
        "execute one using '1'",
        // A statement of no table: any shard's server answers it.
        "values (1, 'a'), (2, 'b')",
        "select * from (values (1, 2), (3, 4)) v order by 1",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
}

/// Expressions over the statistical aggregates (STD, VARIANCE, ...),
/// which only gathered rows give: MariaDB's values to the last digit
/// (computed over a grouping run first, they read its 4-decimal text:
/// `round(std(k), 8)` had four decimals). And aggregates an item holds
/// inside CASE and other expressions.
async fn statistics_over_gathered_rows(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select round(std(k), 8), round(var_samp(amount), 7), std(k) * 2 from dt",
        "select k % 3 g, round(stddev_pop(amount), 9), variance(k) / 3 from dt group by g order by g",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
    let c = case(
        "select round(var_pop(k), 10), count(*) from dt where id > 100",
        true,
    );
    compare_by(sg, oracle, &c, true).await;
    // Aggregates inside CASE, BETWEEN, IN and CAST at the top of an item:
    // the statement aggregates (each shard's own row came back, one per
    // shard, silently).
    for sql in [
        "select case when count(*) > 10 then 'a' else 'b' end, max(k) between 1 and 5, \
         sum(k) in (1, 2), cast(count(*) as char), case max(k) when 3 then 'x' end from dt",
        "select k, case when sum(amount) > 50 then 'big' else 'small' end from dt group by k order by k",
        "select k from dt group by k having case when count(*) > 1 then 1 else 0 end = 1 order by k",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
}

/// A GROUP BY name that is both a select alias and a column groups by
/// the column (the gate grouped by the alias's expression, or refused
/// an alias of an aggregate); ORDER BY reads it as the alias, HAVING as
/// the grouped column. And quotients computed from averages and
/// divisions read the digits MariaDB holds, not those it shows
/// (`avg(x) * 3`, `round(avg(x), 9)` differed in their last digits).
async fn names_and_quotients(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select k % 3 k, count(*) c from dt group by k order by c, k",
        "select count(*) k, min(id) from dt group by k order by 2",
        "select max(k) flag, count(*) from dt group by flag order by flag, 2",
        "select k % 3 k, count(*) c from dt group by k having k > 5 order by c, k",
        "select -k as k, sum(amount) from dt group by k order by k limit 9",
        "select avg(amount) * 3, sum(amount) / 7 * 7, count(*) / 3 * 3, avg(k) * avg(k) from dt",
        "select k % 3 g, round(avg(amount), 9), cast(avg(amount) as decimal(30, 12)) from dt group by g order by g",
        "select k % 4 g, avg(amount) * 2 a from dt group by g order by a, g",
        "select max(k) + 9223372036854775000, min(k) - 9223372036854775000 from dt",
        // A string in arithmetic is the number its text begins with, a
        // DOUBLE (the gate read such a string as 0); a date's or time's
        // number is its digits (it read 0 as well).
        "select max(concat(k, 'x')) + 1, min(concat(k, '.5e1x')) * 2, max(name) + 0, sum(k) + '1.5' from dt",
        "select flag, max(concat('  ', k)) + 1 from dt group by flag order by flag",
        "select max(t) + 0, max(t) - min(t), min(t) * 2, max(d) - min(d), max(dt) + 0, min(dt) / 7 from tmv",
        "select e, max(d) + 0 x, max(dt) - min(dt) from tmv group by e order by x, e",
        "select e from tmv group by e having max(d) > '2024-03-01' and max(t) > 100000 order by e",
    ] {
        compare_named(sg, oracle, &case(sql, true)).await;
    }
    // An average compared as MariaDB compares it: rounded to the
    // decimals it shows.
    let shown: Vec<String> = oracle
        .query("select cast(avg(amount) as char) from dt where k = 3")
        .await
        .unwrap();
    let sql = format!(
        "select k, count(*) from dt where k in (3, 4) group by k having avg(amount) = {}",
        shown[0]
    );
    let c = case(sql, true);
    compare(sg, oracle, &c).await;
    assert_eq!(rows(oracle, &c.sql).await.len(), 1, "{}", c.sql);
    // Refused with MariaDB's codes (they were syntax errors, 1064).
    for sql in [
        "select id, k from dt order by 3",
        "select k, count(*) from dt group by 5",
        "select sum(k) from dt group by sum(k)",
        "select count(*) c from dt group by k order by 2",
        // An integer beyond every BIGINT (the gate answered it, or sent
        // a prepared client an error of its own).
        "select max(k) + 18446744073709551615 from dt",
        "select flag, min(k) - 9223372036854775807 - 100 from dt group by flag",
        "select -max(k + 18446744073709551600) from dt",
    ] {
        let (e1, e2) = (
            sg.query_drop(sql).await.unwrap_err(),
            oracle.query_drop(sql).await.unwrap_err(),
        );
        assert_eq!(err_code(&e1), err_code(&e2), "{sql}: {e1} / {e2}");
    }
    // The expression named as the client wrote it (not the plan's
    // template, whose values are placeholders).
    let e = sg
        .query_drop("select max(k) + 18446744073709551615 from dt")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("out of range in 'max(k) + 18446744073709551615'"),
        "{e}"
    );
    // Typed as MariaDB types them (a driver picks its value's type by
    // the column's): a comparison is an INT, a SUM of integers and what
    // is computed from it a DECIMAL, a string in arithmetic a DOUBLE, a
    // short integer literal an INT.
    let sql = "select flag, max(k) > 3, sum(k) - min(k), sum(k) % 7, max(name) + 1, 7, 1234567890 \
               from dt group by flag";
    assert_eq!(
        column_types(sg, sql).await,
        column_types(oracle, sql).await,
        "{sql}"
    );
}

/// The types of the columns `sql` returns.
async fn column_types(conn: &mut Conn, sql: &str) -> Vec<mysql_async::consts::ColumnType> {
    let result = conn.query_iter(sql).await.unwrap();
    let types = result
        .columns_ref()
        .iter()
        .map(|c| c.column_type())
        .collect();
    result.drop_result().await.unwrap();
    types
}

/// A client whose connection's character set is latin1 is sent latin1
/// text (its settings are replayed on the tablets): the gate read it as
/// UTF-8 in the column's collation, and ordered, grouped and took MIN and
/// MAX wrong (`groups arrived out of order` for a GROUP BY).
async fn latin1_clients(sg: &mut Conn, oracle: &mut Conn) {
    on_both(sg, oracle, &["set names latin1"]).await;
    for sql in [
        "select id, hex(n) from tmv order by n, id",
        "select id from tmv order by n desc, id desc limit 4",
        "select count(*), min(id) from tmv group by n order by n",
        "select min(n), max(n) from tmv",
        "select id % 3, max(n) from tmv group by id % 3 order by 1",
        "select min(id) from tmv group by n having max(n) > 'B' order by 1",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    on_both(sg, oracle, &["set names utf8mb4"]).await;
}

/// Statements about the server rather than rows, which a sharded keyspace
/// refused or could not parse: FLUSH (every shard's server, as vtgate
/// sends it), HELP and MariaDB's ANALYZE of a SELECT (any shard's, as
/// EXPLAIN's). The same answers as the oracle's where one server's answer
/// is the same on every server.
async fn server_statements(sg: &mut Conn, oracle: &mut Conn) {
    on_both(
        sg,
        oracle,
        &["flush tables", "flush tables dt", "flush status"],
    )
    .await;
    compare_named(sg, oracle, &case("help 'concat'", true)).await;
    let analyze = "analyze format=json select count(*) from dt where k > 0";
    assert_eq!(
        column_names(sg, analyze).await,
        column_names(oracle, analyze).await
    );
    for conn in [&mut *sg, &mut *oracle] {
        let plan: Option<String> = conn.query_first(analyze).await.unwrap();
        assert!(plan.is_some_and(|p| p.contains("\"r_rows\"")), "{analyze}");
    }
}

/// `ORDER BY 2` after a `*` counts the table's columns, as MySQL does (the
/// schema tracker knows them): a position once read from the unexpanded
/// select list (`select *, id ... order by 2` sorted by id), and refused
/// where the gate cannot count a `*`'s columns (a join's).
async fn positions_over_a_star(sg: &mut Conn, oracle: &mut Conn) {
    for sql in [
        "select * from dt order by 3, 1",
        "select *, id from dt order by 2 desc, 1 limit 30",
        "select dt.* from dt order by 4 desc, 1 limit 15 offset 3",
        "select d.* from dt d where id < 500 order by 6, 2, 1",
        "select id, d.* from dt d order by 3, 1 limit 12",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    let e = sg
        .query_drop("select *, dt.id from dt join jl on jl.dt_id = dt.id order by 2")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_answers_match_a_single_mariadb() {
    let (mut oracle, _) = start_oracle("oracle").await;

    apply_test_vschema().await;

    let mut sg = connect(Some("customer")).await;
    sg.query_drop("drop table if exists dt").await.unwrap();
    sg.query_drop(DDL).await.unwrap();
    oracle.query_drop(DDL).await.unwrap();

    let mut r = Rng(0x5eed_1234_abcd_0001);
    let max_id: i64 = 3000;
    let mut id = 1;
    while id <= max_id {
        let rows: Vec<String> = (id..(id + 150).min(max_id + 1))
            .map(|i| row_sql(&mut r, i))
            .collect();
        let sql = format!(
            "insert into dt (id, k, name, amount, big, flag) values {}",
            rows.join(", ")
        );
        sg.query_drop(&sql).await.unwrap();
        assert_eq!(sg.affected_rows(), rows.len() as u64);
        oracle.query_drop(&sql).await.unwrap();
        id += 150;
    }

    // Placement: every row is on the shard its hash says.
    let placed = placement("dt", "id", Func::Hash).await;
    assert_eq!(placed.iter().sum::<usize>(), max_id as usize);

    let cases = queries(&mut r, max_id);
    assert!(cases.len() >= 300, "{} queries", cases.len());
    for c in &cases {
        compare(&mut sg, &mut oracle, c).await;
    }
    // Prepared, the merged rows are converted to the binary protocol.
    for c in cases.iter().step_by(3) {
        compare_by(&mut sg, &mut oracle, c, true).await;
    }
    // `dual` beside a table is planned as vtgate plans it, and MariaDB
    // refuses it as it refuses it alone (vtgate's planner takes it).
    let dual = "select 42, id from dual, dt where k = 3";
    let (e1, e2) = (
        sg.query_drop(dual).await.unwrap_err(),
        oracle.query_drop(dual).await.unwrap_err(),
    );
    assert_eq!((err_code(&e1), err_code(&e2)), (Some(1064), Some(1064)));
    // vtgate's vindex hints are taken out: the rows of the statement
    // without them (which MariaDB alone takes).
    for (hinted, plain) in [
        (
            "select id, name from dt use vindex (hash) where id = 7",
            "select id, name from dt where id = 7",
        ),
        (
            "select count(*) from dt IGNORE VINDEX (hash) where k = 3",
            "select count(*) from dt where k = 3",
        ),
    ] {
        assert_eq!(
            rows(&mut sg, hinted).await,
            rows(&mut oracle, plain).await,
            "{hinted}"
        );
    }
    prepared_scatters_run_prepared_on_the_shards(&mut sg, &mut oracle, &mut r).await;

    // DMLs: same affected rows, same table afterwards.
    let mut dmls = Vec::new();
    for _ in 0..15 {
        let i = r.below(max_id as u64);
        dmls.push(format!(
            "update dt set amount = amount + 1, name = 'upd' where id = {i}"
        ));
        dmls.push(format!(
            "update dt set flag = 1 - flag where id in ({}, {}, {})",
            r.below(3000),
            r.below(3000),
            r.below(3000)
        ));
        dmls.push(format!(
            "update dt set big = big div 2 where k = {}",
            r.below(40) as i64 - 20
        ));
        dmls.push(format!(
            "delete from dt where id = {}",
            r.below(max_id as u64)
        ));
        dmls.push(format!(
            "delete from dt where k = {} and flag = 1",
            r.below(40) as i64 - 20
        ));
        let new_id = r.below(max_id as u64 * 2) as i64;
        dmls.push(format!(
            "insert into dt (id, k, name, amount, big, flag) values {} on duplicate key update amount = 0",
            row_sql(&mut r, new_id)
        ));
    }
    for d in &dmls {
        same_writes(&mut sg, &mut oracle, d).await;
    }
    compare(
        &mut sg,
        &mut oracle,
        &case("select * from dt order by id", true),
    )
    .await;
    for c in cases.iter().step_by(7) {
        compare(&mut sg, &mut oracle, c).await;
    }

    positions_over_a_star(&mut sg, &mut oracle).await;
    calc_found_rows(&mut sg, &mut oracle).await;
    sql_prepared_statements(&mut sg, &mut oracle).await;
    mysql_write_forms(&mut sg, &mut oracle).await;
    vindex_values_written_otherwise(&mut sg, &mut oracle).await;
    server_statements(&mut sg, &mut oracle).await;
    variables_set_from_queries(&mut sg, &mut oracle).await;
    select_limit_and_parentheses(&mut sg, &mut oracle).await;
    mariadb_forms(&mut sg, &mut oracle).await;
    times_enums_and_sets_order_as_mariadb_orders_them(&mut sg, &mut oracle).await;
    statistics_over_gathered_rows(&mut sg, &mut oracle).await;
    names_and_quotients(&mut sg, &mut oracle).await;
    latin1_clients(&mut sg, &mut oracle).await;
    returning_rows(&mut sg, &mut oracle).await;
    ranges_on_a_numeric_vindex(&mut sg, &mut oracle).await;
    lookup_vindexes(&mut sg, &mut oracle).await;
    pinned_tables(&mut sg, &mut oracle).await;
    no_backslash_escapes(&mut sg, &mut oracle).await;
    row_counts(&mut sg, &mut oracle).await;
    savepoints(&mut sg, &mut oracle).await;
    cross_keyspace_joins(&mut sg, &mut oracle).await;
    writes_with_subqueries_elsewhere(&mut sg, &mut oracle).await;
    writes_that_find_their_rows_first(&mut sg, &mut oracle).await;
    recursive_with(&mut sg, &mut oracle).await;
    global_routing(&mut oracle).await;
    group_concats(&mut sg, &mut oracle).await;
    gathered_then_computed(&mut sg, &mut oracle).await;
    colocated_joins(&mut sg, &mut oracle, &mut r, max_id).await;
    long_rows_merge_whole(&mut sg, &mut oracle).await;
    declared_collations_compare_at_the_gate(&mut sg, &mut oracle).await;
}

/// Aggregates and windows the gate cannot combine from the shards'
/// answers (never answered per shard): the rows are gathered first, and
/// the statement runs over them on one tablet.
async fn gathered_then_computed(sg: &mut Conn, oracle: &mut Conn) {
    let cases = [
        case("select std(k) from dt", false),
        case("select k, variance(amount), round(stddev_samp(k), 4) from dt where id < 300 group by k order by k", true),
        case("select id, row_number() over (order by id) from dt where id < 20", true),
        case("select k, id, sum(id) over (partition by k) from dt order by k, id", true),
        case("select id, k, rank() over (partition by flag order by k desc, id) r from dt where id < 90 order by id", true),
        case("select group_concat(name order by name, id) from dt where id < 50", false),
        case("select k, group_concat(distinct id % 7 order by id % 7 desc separator '/') from dt where id < 200 group by k order by k", true),
        case("select count(distinct k, flag) from dt", false),
        case("select flag, k, count(*), sum(amount) from dt where id < 150 group by flag, k with rollup", true),
        case("select d.k, std(d.amount) s from dt d where d.id between 10 and 400 group by d.k having s > 0 order by s desc, d.k limit 5", true),
    ];
    // Prepared, a double computed over the gathered rows comes back as the
    // tablet's text (its shown decimals), not the server's full binary
    // value: those are compared as text only.
    for (i, c) in cases.iter().enumerate() {
        let float = ["std", "variance"].iter().any(|f| c.sql.contains(f));
        compare_by(sg, oracle, c, i % 2 == 1 && !float).await;
    }
    // The shards' answers are gathered, not combined.
    let sent = sent_to(sg, "select std(k) from dt").await;
    assert!(
        sent.iter()
            .any(|(_, _, q)| q.starts_with("SELECT * FROM dt"))
            && sent.iter().any(|(_, _, q)| q.contains("std(k)")),
        "{sent:?}"
    );
}

/// Both shard primaries' `name` counters, added.
/// Held by a test that counts the shards' prepared statements (global
/// counters) and by the random statements, which prepare many: so that
/// one's count does not take in the other's.
static TABLET_PREPARES: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

async fn shards_status(name: &str) -> u64 {
    let mut sum = 0;
    for uid in [300, 400] {
        sum += global_status(&mut connect_tablet(uid).await, name).await;
    }
    sum
}

/// A client's prepared statement that scatters runs prepared on the
/// shards' tablets too, with the client's parameters as the tablets'
/// (the SQL the same from one execution to the next, so each tablet
/// connection prepares it once): when every result column is a string or
/// a decimal, which the binary protocol sends as the text protocol does,
/// the gate reads the binary rows as text cells and the client gets them
/// as they came. Other columns (integers, here) run as text. Either way
/// the answers are the oracle's, executed with the same parameters.
async fn prepared_scatters_run_prepared_on_the_shards(
    sg: &mut Conn,
    oracle: &mut Conn,
    r: &mut Rng,
) {
    let _counting = TABLET_PREPARES.lock().await;
    // (SQL, ordered, eligible for the tablets' prepared statements)
    let stmts = [
        ("select name from dt where id between ? and ?", false, true),
        (
            "select sum(amount) from dt where id between ? and ?",
            true,
            true,
        ),
        (
            "select name, amount from dt where id between ? and ? order by amount desc, name",
            true,
            true,
        ),
        (
            "select distinct name from dt where id between ? and ? order by name",
            true,
            true,
        ),
        (
            "select amount, name from dt where name = ? or k between ? and ?",
            false,
            true,
        ),
        (
            "select name, count(*) from dt where id between ? and ? group by name",
            false,
            false,
        ),
        (
            "select id, name from dt where id between ? and ? order by id limit 5",
            true,
            false,
        ),
    ];
    let names = ["alpha", "Betax", "zeta", "éclairx"];
    let (execs, prepares) = (
        shards_status("Com_stmt_execute").await,
        shards_status("Com_stmt_prepare").await,
    );
    let rounds = 60;
    let mut eligible = 0;
    for round in 0..rounds {
        for (sql, ordered, prepared) in stmts {
            let low = r.below(3000) as i64;
            let high = low + r.below(400) as i64;
            let params: Vec<Value> = if sql.contains("name = ?") {
                let name = names[round % names.len()];
                vec![name.into(), (low % 40 - 20).into(), (high % 40 - 20).into()]
            } else {
                vec![low.into(), high.into()]
            };
            let mut got = [
                sg.exec(sql, params.clone()).await,
                oracle.exec(sql, params.clone()).await,
            ]
            .map(|rows: Result<Vec<mysql_async::Row>, _>| {
                let rows = rows.unwrap_or_else(|e| panic!("{sql} {params:?}: {e}"));
                let mut cells: Vec<Vec<Option<String>>> = rows
                    .into_iter()
                    .map(|row| {
                        row.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                Value::NULL => None,
                                Value::Bytes(b) => Some(
                                    String::from_utf8_lossy(&b).to_lowercase().replace('é', "e"),
                                ),
                                other => Some(format!("{other:?}")),
                            })
                            .collect()
                    })
                    .collect();
                if !ordered {
                    cells.sort();
                }
                cells
            });
            let [a, b] = std::mem::take(&mut got);
            assert_eq!(a, b, "{sql} {params:?}");
            eligible += usize::from(prepared);
        }
    }
    let execs = shards_status("Com_stmt_execute").await - execs;
    let prepares = shards_status("Com_stmt_prepare").await - prepares;
    // Each eligible execution ran prepared on both shards; the statements
    // were prepared once per tablet connection, not per execution.
    assert!(
        execs >= 2 * eligible as u64,
        "{execs} executions for {eligible} scatters"
    );
    assert!(prepares < 40, "{prepares} prepares for {execs} executions");
}

/// shardgate learns column types from the tablets (vtgate's schema
/// tracking): with no columns in the VSchema, a column in a collation the
/// gate knows is sorted without weight strings, one in another collation
/// with them, and a DDL through shardgate answers once its change is
/// learned: the next statement plans with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tracking_learns_collations_from_the_tablets() {
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    sg.query_drop("drop table if exists trk").await.unwrap();
    sg.query_drop(
        "create table trk (id bigint primary key, n int,
         c varchar(20) collate utf8mb4_general_ci, u varchar(20) collate utf8mb4_unicode_ci)",
    )
    .await
    .unwrap();
    // The first shard query of an ORDER BY on `col`, right away.
    async fn shard_query(c: &mut Conn, col: &str) -> String {
        let rows: Vec<(String, String, String, String)> = c
            .query(format!(
                "vexplain queries select id from trk order by {col}"
            ))
            .await
            .unwrap();
        rows[0].3.clone()
    }
    let q = shard_query(&mut sg, "c").await;
    assert_eq!(
        q, "SELECT id, c FROM trk ORDER BY c ASC",
        "c learned as utf8mb4_general_ci"
    );
    assert!(debug_var("SchemaTrackedTables").await >= 1);
    // Without tracking, the same column keeps its weight strings.
    let (untracked, _) = spawn_shardgate(&["--schema-change-signal=false".into()]).await;
    let mut u = connect_port(untracked, Some("customer")).await;
    let rows: Vec<(String, String, String, String)> = u
        .query("vexplain queries select id from trk order by c")
        .await
        .unwrap();
    assert!(
        rows[0].3.contains("weight_string(rtrim(c))"),
        "{}",
        rows[0].3
    );
    let q = shard_query(&mut sg, "u").await;
    assert!(
        q.contains("weight_string(rtrim(u))"),
        "u keeps its weight strings: {q}"
    );
    let q = shard_query(&mut sg, "n").await;
    assert!(!q.contains("weight_string"), "n is a number: {q}");
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select id from trk order by c")
        .await
        .unwrap();
    assert!(
        plan[0].0.contains("COLLATE utf8mb4_general_ci"),
        "{}",
        plan[0].0
    );

    sg.query_drop("insert into trk (id, n, c, u) values (1, 1, 'b', 'b'), (2, 2, 'A', 'a'), (3, 3, 'ä', 'ä'), (4, 4, 'a ', 'B'), (5, 5, 'Z', 'z')")
        .await
        .unwrap();
    let got: Vec<(u64, String)> = sg
        .query("select id, c from trk order by c, id")
        .await
        .unwrap();
    let ids: Vec<u64> = got.iter().map(|r| r.0).collect();
    // general_ci: A = a = ä (and `a ` pads to `a`), then b, then Z.
    assert_eq!(ids, vec![2, 3, 4, 1, 5], "{got:?}");

    // A collation the gate does not know, changed through shardgate, is
    // learned at once: the weight strings come back.
    sg.query_drop("alter table trk modify c varchar(20) collate utf8mb4_unicode_ci")
        .await
        .unwrap();
    let q = shard_query(&mut sg, "c").await;
    assert!(
        q.contains("weight_string(rtrim(c))"),
        "c is utf8mb4_unicode_ci now: {q}"
    );
    sg.query_drop("drop table trk").await.unwrap();
}

/// Columns whose VSchema declares a collation the gate knows are ordered,
/// grouped and deduplicated at the gate without the shards' weight strings,
/// and answer as MariaDB does: case and accents folded by
/// utf8mb4_general_ci (`ß` = `s`, characters beyond the BMP all alike),
/// code points by utf8mb4_bin, latin1 by latin1_swedish_ci (`Å Ä Ö`
/// after `Z`), trailing spaces ignored by all three (but not tabs), bytes
/// by VARBINARY.
async fn declared_collations_compare_at_the_gate(sg: &mut Conn, oracle: &mut Conn) {
    const CT: &str = "create table ct (id bigint not null primary key, n int,
        g varchar(32) collate utf8mb4_general_ci, bn varchar(32) collate utf8mb4_bin,
        vb varbinary(32), l varchar(32) character set latin1 collate latin1_swedish_ci)";
    sg.query_drop("drop table if exists ct").await.unwrap();
    sg.query_drop(CT).await.unwrap();
    oracle.query_drop(CT).await.unwrap();
    let pool = [
        "a", "A", "a ", "a\t", "ab", "Ab", "a b", "ß", "ss", "s", "S", "é", "e", "É", "ÿ", "z",
        "Z", "_", "😀", "🙂", "\u{FFFD}", "\u{FFFF}", "ǅ", "ı", "İ", "i", "I", "", "ａ", "Ω", "ω",
        "ﬁ", "  ", "9",
    ];
    let latin1 = [
        "a", "A", "a ", "a\t", "ab", "Ab", "ä", "Ä", "å", "Å", "ö", "z", "Z", "é", "e", "ü", "y",
        "Y", "€", "_", "9", "", "ß", "ss", "ÿ", "  ",
    ];
    let mut r = Rng(0xc011_a7e5);
    let pick = |r: &mut Rng, pool: &[&str]| -> String {
        if r.below(15) == 0 {
            return "NULL".into();
        }
        let mut v = pool[r.below(pool.len() as u64) as usize].to_string();
        if r.below(3) == 0 {
            v.push_str(pool[r.below(pool.len() as u64) as usize]);
        }
        format!("'{v}'")
    };
    let rows: Vec<String> = (1..=400)
        .map(|id| {
            let (g, bn, vb) = (
                pick(&mut r, &pool),
                pick(&mut r, &pool),
                pick(&mut r, &pool),
            );
            let l = pick(&mut r, &latin1);
            format!("({id}, {}, {g}, {bn}, {vb}, {l})", r.below(20))
        })
        .collect();
    let ins = format!(
        "insert into ct (id, n, g, bn, vb, l) values {}",
        rows.join(", ")
    );
    sg.query_drop(&ins).await.unwrap();
    oracle.query_drop(&ins).await.unwrap();

    // The shards are not asked for weight strings of declared columns.
    let shard_queries: Vec<(String, String, String, String)> = sg
        .query("vexplain queries select id, g from ct order by g, bn, vb, l, id")
        .await
        .unwrap();
    assert_eq!(shard_queries.len(), 2);
    for (_, _, _, q) in &shard_queries {
        assert!(!q.contains("weight_string"), "{q}");
    }

    // Ties are broken by id, so these compare byte for byte.
    for (sql, ordered) in [
        ("select id, g from ct order by g, id", true),
        ("select id, bn, g from ct order by bn desc, id", true),
        ("select id, vb from ct order by vb, id desc", true),
        (
            "select g, bn, id from ct where id between 20 and 300 order by g desc, bn, id",
            true,
        ),
        (
            "select vb, count(*), max(id) from ct group by vb order by vb",
            true,
        ),
        ("select n, count(distinct vb) from ct group by n", false),
        ("select id, l from ct order by l desc, id", true),
        ("select n, count(distinct l) from ct group by n", false),
        // MariaDB pads: `a` and `a ` are one value (weight strings of a
        // VARCHAR would count two).
        ("select count(distinct g) from ct", false),
        ("select n, count(distinct bn) from ct group by n", false),
    ] {
        for prepared in [false, true] {
            compare_by(sg, oracle, &case(sql, ordered), prepared).await;
        }
    }
    // A group shows one of its members (which one is MariaDB's choice), so
    // these compare the collation's weight of each shown string, spaces
    // trimmed (PAD SPACE: `a` and `a ` are one group).
    const GCI: &str = "utf8mb4_general_ci";
    const BIN: &str = "utf8mb4_bin";
    const L1: &str = "latin1_swedish_ci";
    // (query, ordered, the columns shown by one member and their collation)
    type Grouped = (&'static str, bool, &'static [(usize, &'static str)]);
    let grouped: [Grouped; 10] = [
        ("select distinct g from ct order by g", true, &[(0, GCI)]),
        (
            "select l, count(*) from ct group by l order by l",
            true,
            &[(0, L1)],
        ),
        (
            "select n, min(l), max(l) from ct group by n",
            false,
            &[(1, L1), (2, L1)],
        ),
        (
            "select n, min(g), max(g) from ct group by n",
            false,
            &[(1, GCI), (2, GCI)],
        ),
        (
            "select n, min(bn), max(bn) from ct where id > 30 group by n",
            false,
            &[(1, BIN), (2, BIN)],
        ),
        (
            "select g, count(*), max(n) from ct group by g",
            false,
            &[(0, GCI)],
        ),
        (
            "select g, count(*) from ct group by g having count(*) > 8 order by g",
            true,
            &[(0, GCI)],
        ),
        (
            "select g, min(id), sum(n) from ct group by g order by g desc",
            true,
            &[(0, GCI)],
        ),
        (
            "select bn, count(*) from ct group by bn order by bn",
            true,
            &[(0, BIN)],
        ),
        (
            "select g, bn, count(*) from ct where id < 250 group by g, bn order by g, bn",
            true,
            &[(0, GCI), (1, BIN)],
        ),
    ];
    for (sql, ordered, canon) in grouped {
        let (mut a, mut b) = (
            cells_by(sg, sql, false).await.unwrap(),
            cells_by(oracle, sql, false).await.unwrap(),
        );
        for rows in [&mut a, &mut b] {
            for row in rows.iter_mut() {
                for &(i, coll) in canon {
                    if let Some(v) = row[i].take() {
                        row[i] = oracle
                            .exec_first(
                                format!(
                                    "select hex(weight_string(rtrim(convert(? using {})) collate {coll}))",
                                    coll.split('_').next().unwrap_or_default()
                                ),
                                (v,),
                            )
                            .await
                            .unwrap();
                    }
                }
            }
            if !ordered {
                rows.sort();
            }
        }
        assert!(a.len() > 3, "{sql}: {} groups", a.len());
        assert_eq!(a, b, "{sql}");
    }
}

/// Scatters whose rows span reads and packets (up to 70,000 bytes, NULLs
/// among them) merge whole and in order, text and prepared.
async fn long_rows_merge_whole(sg: &mut Conn, oracle: &mut Conn) {
    const BT: &str = "create table bt (id bigint not null primary key, n int, b longtext)";
    sg.query_drop("drop table if exists bt").await.unwrap();
    sg.query_drop(BT).await.unwrap();
    oracle.query_drop(BT).await.unwrap();
    let mut r = Rng(0xb10b_5eed);
    for id in 0..120u64 {
        let len = match r.below(4) {
            0 => r.below(250),
            1 => 250 + r.below(70_000),
            2 => 65_000 + r.below(1_000),
            _ => r.below(20),
        };
        let b = if r.below(9) == 0 {
            "NULL".to_string()
        } else {
            format!("repeat('{}', {len})", (b'a' + (id % 26) as u8) as char)
        };
        let n = if r.below(7) == 0 {
            "NULL".to_string()
        } else {
            r.below(50).to_string()
        };
        let sql = format!("insert into bt (id, n, b) values ({id}, {n}, {b})");
        sg.query_drop(&sql).await.unwrap();
        oracle.query_drop(&sql).await.unwrap();
    }
    for (sql, ordered) in [
        ("select id, n, b from bt", false),
        ("select id, b, n from bt order by n desc, id", true),
        (
            "select b, id from bt where id between 10 and 100 order by id limit 40 offset 3",
            true,
        ),
        (
            "select n, count(*), max(length(b)) from bt group by n order by n",
            true,
        ),
    ] {
        for prepared in [false, true] {
            compare_by(sg, oracle, &case(sql, ordered), prepared).await;
        }
    }
}

/// BETWEEN on a numeric (order-keeping) vindex reaches only the shards of
/// its range: rows around 2^63, where `-80` ends and `80-` begins, answer as
/// on the oracle, whether a range sits on one shard or spans both.
async fn ranges_on_a_numeric_vindex(sg: &mut Conn, oracle: &mut Conn) {
    const NT: &str =
        "create table nt (id bigint unsigned not null primary key, v int, c varchar(16))";
    let top: u64 = 1 << 63;
    sg.query_drop("drop table if exists nt").await.unwrap();
    sg.query_drop(NT).await.unwrap();
    oracle.query_drop(NT).await.unwrap();
    let rows: Vec<String> = (top - 60..top + 60)
        .map(|i| format!("({i}, {}, 'c{}')", i % 7, i % 11))
        .collect();
    let ins = format!("insert into nt (id, v, c) values {}", rows.join(", "));
    sg.query_drop(&ins).await.unwrap();
    oracle.query_drop(&ins).await.unwrap();
    assert_eq!(placement("nt", "id", Func::Numeric).await, vec![60, 60]);

    let spans = [
        (top - 50, top - 10),
        (top - 5, top + 5),
        (top, top + 30),
        (top - 1, top),
        (top + 10, top - 10),
        (0, top - 59),
    ];
    for (a, b) in spans {
        for (sql, ordered) in [
            (
                format!("select id, v from nt where id between {a} and {b}"),
                false,
            ),
            (
                format!("select sum(v), count(*) from nt where id between {a} and {b}"),
                false,
            ),
            (
                format!("select c, id from nt where id between {a} and {b} order by c, id"),
                true,
            ),
            (
                format!("select distinct v from nt where id between {a} and {b} order by v"),
                true,
            ),
            (
                format!("select id from nt where v = 3 and id between '{a}' and '{b}'"),
                false,
            ),
        ] {
            compare(sg, oracle, &case(sql, ordered)).await;
        }
        // Prepared, with the bounds as parameters (sysbench's range queries).
        let stmt = "select id, c from nt where id between ? and ? order by id";
        let got: Vec<(u64, String)> = sg.exec(stmt, (a, b)).await.unwrap();
        let want: Vec<(u64, String)> = oracle.exec(stmt, (a, b)).await.unwrap();
        assert_eq!(got, want, "{stmt} with {a}, {b}");
    }
    for d in [
        format!(
            "update nt set v = v + 10 where id between {} and {}",
            top - 3,
            top + 3
        ),
        format!(
            "update nt set v = v + 1 where id between {} and {}",
            top + 1,
            top + 20
        ),
        format!(
            "delete from nt where id between {} and {}",
            top - 40,
            top - 30
        ),
    ] {
        same_writes(sg, oracle, &d).await;
    }
    compare(sg, oracle, &case("select * from nt order by id", true)).await;
}

/// Joins whose sharded tables meet on their vindex columns run whole on
/// each shard (one shard when the WHERE clause names it); their answers,
/// gathered, sorted, grouped and limited at the gate, must be the oracle's.
/// Tables that meet otherwise are refused.
async fn colocated_joins(sg: &mut Conn, oracle: &mut Conn, r: &mut Rng, max_id: i64) {
    let ddl = [
        "create table jl (id bigint not null primary key, dt_id bigint, qty int, note varchar(16))",
        "create table jn (id bigint not null primary key, memo varchar(16))",
        "create table jref (k int not null primary key, label varchar(16))",
    ];
    for d in ddl {
        let table = d.split_whitespace().nth(2).unwrap();
        sg.query_drop(format!("drop table if exists {table}"))
            .await
            .unwrap();
        sg.query_drop(d).await.unwrap();
        oracle.query_drop(d).await.unwrap();
    }
    // Order lines, some for ids dt does not hold (outer joins keep them).
    let lines: Vec<String> = (1..=1200)
        .map(|i| {
            format!(
                "({i}, {}, {}, {})",
                r.below(max_id as u64 + 200) + 1,
                r.below(12) as i64 - 2,
                if i % 9 == 0 {
                    "null".to_string()
                } else {
                    format!("'n{}'", i % 13)
                }
            )
        })
        .collect();
    let notes: Vec<String> = (1..=max_id)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("({i}, 'm{}')", i % 5))
        .collect();
    for ins in [
        format!(
            "insert into jl (id, dt_id, qty, note) values {}",
            lines.join(", ")
        ),
        format!("insert into jn (id, memo) values {}", notes.join(", ")),
    ] {
        sg.query_drop(&ins).await.unwrap();
        oracle.query_drop(&ins).await.unwrap();
    }
    assert_eq!(
        placement("jl", "dt_id", Func::Hash)
            .await
            .iter()
            .sum::<usize>(),
        1200
    );
    // A reference table is a copy on every shard.
    let refs: Vec<String> = (-20i64..20)
        .map(|k| format!("({k}, 'L{}')", k.rem_euclid(6)))
        .collect();
    let ins = format!("insert into jref (k, label) values {}", refs.join(", "));
    for uid in [300, 400] {
        connect_tablet(uid).await.query_drop(&ins).await.unwrap();
    }
    oracle.query_drop(&ins).await.unwrap();

    let (a, b, c) = (r.below(3000) + 1, r.below(3000) + 1, r.below(3000) + 1);
    let line = r.below(1200) + 1;
    let dt_of_line: u64 = oracle
        .query_first(format!("select dt_id from jl where id = {line}"))
        .await
        .unwrap()
        .unwrap();
    let cases = [
        // One shard, named through either table's vindex column.
        case(format!("select dt.id, dt.name, jl.id, jl.qty from dt join jl on dt.id = jl.dt_id where dt.id = {dt_of_line}"), false),
        case(format!("select dt.name, jl.qty from jl join dt on jl.dt_id = dt.id where jl.dt_id = {dt_of_line}"), false),
        case(format!("select jl.id, dt.name from jl left join dt on dt.id = jl.dt_id where jl.dt_id = {}", max_id + 50), false),
        // Some shards.
        case(format!("select dt.id, jl.id, jl.note from dt join jl on dt.id = jl.dt_id where dt.id in ({a}, {b}, {c}, {dt_of_line})"), false),
        case(format!("select dt.id, jl.id from dt, jl where jl.dt_id = dt.id and jl.dt_id in ({a}, {b}, {dt_of_line}) order by jl.id desc"), true),
        // Every shard, merged at the gate.
        case("select dt.id, jl.id, jl.qty from dt join jl on dt.id = jl.dt_id", false),
        case("select dt.id, jl.id, jl.qty from dt join jl on dt.id = jl.dt_id order by jl.id limit 25", true),
        case("select jl.id, dt.name from jl left join dt on dt.id = jl.dt_id order by jl.id limit 40 offset 30", true),
        case("select jl.id, jl.dt_id, dt.k from dt right join jl on jl.dt_id = dt.id where jl.qty > 6 order by jl.id", true),
        case("select dt.k, count(*), sum(jl.qty), max(jl.note) from dt join jl on dt.id = jl.dt_id group by dt.k order by dt.k", true),
        case("select count(*), count(dt.id), min(dt.name) from jl left join dt on dt.id = jl.dt_id", false),
        case("select distinct jl.note from jl join dt on dt.id = jl.dt_id order by jl.note", true),
        case("select count(*) from dt, jl where dt.id = jl.dt_id and jl.qty between 2 and 5", false),
        case("select count(*), min(jn.memo) from dt join jn using (id) where dt.flag = 1", false),
        case("select dt.id, jn.memo from dt natural join jn where dt.id < 40 order by dt.id", true),
        case("select dt.id, jl.id, jn.memo from dt join jl on jl.dt_id = dt.id join jn on jn.id = jl.dt_id order by jl.id limit 50", true),
        case("select dt.id, jl.id from (dt join jl on jl.dt_id = dt.id) left join jn on jn.id = dt.id where jn.id is null order by jl.id", true),
        // Reference tables join anything.
        case("select jref.label, count(*) from dt join jref on dt.k = jref.k group by jref.label order by jref.label", true),
        case(format!("select dt.id, jref.label from dt join jref on jref.k = dt.k where dt.id = {a}"), false),
        case("select jl.id, jref.label, dt.name from dt join jl on dt.id = jl.dt_id join jref on jref.k = jl.qty order by jl.id limit 30", true),
        case("select count(*) from jref a join jref b on a.label = b.label", false),
        // A reference table's rows kept by an outer join: once each, not
        // once per shard (the same for a derived table gathered first).
        case("select jref.k, jref.label, dt.id from jref left join dt on dt.k = jref.k and dt.id < 300 order by jref.k, dt.id", true),
        case("select count(*) from jref left join jl on jl.qty = jref.k", false),
        case("select u.id, u.name, jl.id from (select id, name from dt order by name, id limit 6) u left join jl on jl.dt_id = u.id order by u.id, jl.id", true),
        case(format!("select jref.k, dt.id from jref left join dt on dt.k = jref.k and dt.id = {a} order by jref.k"), true),
        // RIGHT JOIN, as the LEFT JOIN it is.
        case("select jref.k, dt.id from dt right join jref on dt.k = jref.k and dt.id < 300 order by jref.k, dt.id", true),
        case("select t.title, dt.name from dt right join (select 'hello' as title) as t on dt.id = 1", false),
        case("select dt.id, jl.id from jl right join dt on jl.dt_id = dt.id where dt.id < 30 order by dt.id, jl.id", true),
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().step_by(2) {
        compare_by(sg, oracle, c, true).await;
    }
    // One shard indeed: the plan names it.
    let plan: Vec<(String,)> = sg
        .query(format!(
            "vexplain plan select dt.id from dt join jl on dt.id = jl.dt_id where jl.dt_id = {a}"
        ))
        .await
        .unwrap();
    assert!(plan[0].0.contains("EqualUnique"), "{}", plan[0].0);
    // Tables that meet on other columns need rows of two shards: a
    // nested loop (see nested_loop_joins), not one route.
    for sql in [
        "select count(*) from dt join jl on dt.k = jl.qty",
        "select count(*) from dt join jl on dt.id = jl.id",
        "select count(*) from dt, jn",
        // jl.id is no vindex column of jl's: a nested loop over the
        // derived table.
        "select count(*) from (select id as a from dt) t join jl on jl.id = t.a",
    ] {
        let plan: Vec<(String,)> = sg.query(format!("vexplain plan {sql}")).await.unwrap();
        assert!(plan[0].0.contains("\"Join\""), "{sql}: {}", plan[0].0);
    }
    // VEXPLAIN KEYS: the columns by table, an unqualified one placed.
    let keys: String = sg
        .query_first(
            "vexplain keys select dt.k, count(*) from dt join jl j on dt.id = j.dt_id \
             where dt.k = 3 and qty > 1 group by dt.k",
        )
        .await
        .unwrap()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(
        keys,
        serde_json::json!({
            "statementType": "SELECT",
            "groupingColumns": ["dt.k"],
            "joinColumns": ["dt.id =", "jl.dt_id ="],
            "filterColumns": ["dt.k =", "jl.qty >"],
            "selectColumns": ["dt.k"],
            "joinPredicates": ["dt.id = jl.dt_id"],
        })
    );
    let one: i64 = sg.query_first("select 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    merged_subqueries(sg, oracle, r).await;
    colocated_updates_and_deletes(sg, oracle, [a, b, c], dt_of_line).await;
}

/// UPDATE and DELETE over colocated joins change on each shard what a
/// single MariaDB changes; joins the shards cannot answer, reference
/// tables as targets, and vindex columns are refused.
async fn colocated_updates_and_deletes(
    sg: &mut Conn,
    oracle: &mut Conn,
    [a, b, c]: [u64; 3],
    one: u64,
) {
    for d in [
        "update dt join jl on jl.dt_id = dt.id set dt.flag = 1 - dt.flag where jl.qty = 7".to_string(),
        format!("update jl join dt on dt.id = jl.dt_id set jl.note = dt.name where dt.id in ({a}, {b}, {c}, {one})"),
        format!("update jl join dt on dt.id = jl.dt_id set jl.qty = jl.qty + dt.k where jl.dt_id = {one}"),
        "update jl join jref on jref.k = jl.qty set jl.note = jref.label where jl.id < 100".to_string(),
        "delete jl from jl join dt on dt.id = jl.dt_id where dt.k = 3".to_string(),
        format!("delete jn from jn join dt using (id) where dt.id in ({a}, {one}, 1, 2)"),
        "delete dt, jn from dt join jn on jn.id = dt.id where dt.big < 0 and dt.flag = 0".to_string(),
    ] {
        sg.query_drop(&d)
            .await
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        let n = sg.affected_rows();
        oracle.query_drop(&d).await.unwrap();
        assert_eq!(n, oracle.affected_rows(), "{d}");
        assert!(n > 0, "{d} changed nothing");
    }
    // INSERT ... SELECT: the SELECT runs first; its rows are inserted as
    // VALUES, each on its vindex value's shard.
    for d in [
        "insert into jn (id, memo) select id + 10000, name from dt where k = 3",
        "insert into jn (id, memo) select jl.id + 20000, jl.note from jl join jn on jn.id = jl.id where jl.qty = 2",
        "insert into jn (id, memo) select k + 30000, count(*) from dt where k is not null group by k",
        "insert into jn (id, memo) select id + 40000, name from dt where k = 999",
        "insert into jn (id, memo) select id + 10000, 'again' from dt where k = 3 on duplicate key update memo = 'dup'",
    ] {
        sg.query_drop(d)
            .await
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        let n = sg.affected_rows();
        oracle.query_drop(d).await.unwrap();
        assert_eq!(n, oracle.affected_rows(), "{d}");
    }
    refused(
        sg,
        "insert into jn (id, memo) select id, name, k from dt",
        1136,
        &["Column count"],
        false,
    )
    .await;
    for t in ["dt", "jl", "jn"] {
        compare(
            sg,
            oracle,
            &case(format!("select * from {t} order by id"), true),
        )
        .await;
    }
    for (sql, why) in [
        (
            "update dt join jl on jl.dt_id = dt.id set flag = 0",
            "qualified",
        ),
        (
            "update dt join jl on jl.dt_id = dt.id set jl.dt_id = 5",
            "vindex column",
        ),
        (
            "delete jref from jref join dt on dt.k = jref.k",
            "reference",
        ),
    ] {
        refused(sg, sql, 1235, &[why], false).await;
    }
}

/// Subqueries run inside their statement's route when each finds its rows
/// on the shard of the row it serves: correlated to it by vindex columns,
/// over reference tables, or naming the same one shard. Other subqueries
/// are refused, including under a one-shard route, where they were once
/// answered from that shard's rows alone.
async fn merged_subqueries(sg: &mut Conn, oracle: &mut Conn, r: &mut Rng) {
    let shard_of = |id: u64| {
        let ksid = Func::Hash.map(&Value::UInt(id)).unwrap().unwrap();
        shardgate::topo::KeyRange::parse("-80")
            .unwrap()
            .contains(&ksid)
    };
    let x = r.below(3000) + 1;
    let y = (1..3000)
        .find(|&i| shard_of(i) == shard_of(x) && i != x)
        .unwrap();
    let z = (1..3000).find(|&i| shard_of(i) != shard_of(x)).unwrap();
    let cases = [
        case("select count(*) from dt where exists (select 1 from jl where jl.dt_id = dt.id)", false),
        case("select id from dt where not exists (select 1 from jn where jn.id = dt.id) and id < 200 order by id", true),
        case("select dt.id, (select count(*) from jl where jl.dt_id = dt.id) n from dt where dt.id < 300 order by dt.id", true),
        case("select d.id, d.k from dt d where d.k in (select jl.qty from jl where jl.dt_id = d.id) order by d.id", true),
        case("select d.id from dt d where d.amount > (select max(jl.qty) from jl where d.id = jl.dt_id) + 100 order by d.id limit 30", true),
        case("select id from dt where k in (select k from jref where label = 'L2') order by id limit 20", true),
        case("select dt.k, count(*) from dt where exists (select 1 from jl where jl.dt_id = dt.id and jl.qty > 4) group by dt.k order by dt.k", true),
        case(format!("select dt.name, (select count(*) from jl where jl.dt_id = {x}) from dt where dt.id = {x}"), false),
        case(format!("select id from dt where id = {x} and exists (select 1 from jn where jn.id in ({x}, {y}))"), false),
        case(format!("select id from dt where id = {x} and k in (select jl.qty from jl where jl.dt_id = dt.id)"), false),
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().step_by(2) {
        compare_by(sg, oracle, c, true).await;
    }
    // Subqueries that read nothing of their statement and that no one
    // shard answers run first; their answers go in as values.
    let pulled = [
        case(format!("select id from dt where id = {x} and k in (select qty from jl)"), false),
        case(format!("select count(*) from dt where exists (select 1 from jn where jn.id = {z})"), false),
        case(format!("select id from dt where id = {x} and exists (select 1 from jn where jn.id = {z})"), false),
        case("select id, k from dt where id in (select dt_id from jl where qty = 7) order by id", true),
        case("select count(*) from dt where k not in (select qty from jl where qty > 5) and id < 500", false),
        case("select id from dt where k not in (select qty from jl where qty > 100) and id < 50 order by id", true),
        case("select id from dt where id in (select dt_id from jl where qty > 100)", false),
        case("select id, name from dt where k = (select max(qty) from jl) and id < 300 order by id", true),
        case("select count(*) from dt where not exists (select 1 from jl where qty > 100) and k > (select min(qty) from jl where note = 'n3')", false),
        case("select jl.id from jl where jl.dt_id in (select dt.id from dt where dt.k = 4) and jl.qty in (select k from jref where label = 'L1') order by jl.id", true),
        // `id` is jl's own column here, not dt's: not correlated to dt, so
        // it runs first, under an OR as anywhere (its answer is a
        // condition equal to it).
        case("select count(*) from dt where exists (select 1 from jl where jl.dt_id = id) or k = 1", false),
        case("select count(*) from dt where not (k in (select qty from jl where qty > 5)) or id < 10", false),
        // A LIMIT inside IN, wrapped in derived tables as MySQL requires.
        case("select id, k from dt where id in (select * from (select * from (select dt_id from jl order by dt_id limit 10) x) y) order by id", true),
        // In HAVING, and EXISTS as a value.
        case("select k, count(*) from dt where id < 200 group by k having k in (select qty from jl where qty > 3) order by k", true),
        case("select exists (select 1 from jn where jn.id > 500), not exists (select 1 from jl where qty = 99), exists (select 1 from jl where qty = 2)", false),
        case("select id, exists (select 1 from jl where qty = 7) from dt where id < 20 order by id", true),
    ];
    for c in &pulled {
        compare(sg, oracle, c).await;
        compare_by(sg, oracle, c, true).await;
    }
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select id from dt where k in (select qty from jl)")
        .await
        .unwrap();
    assert!(plan[0].0.contains("UncorrelatedSubquery"), "{}", plan[0].0);
    for (sql, code, why) in [
        (
            "select id from dt where k = (select qty from jl where qty > 3)",
            1242,
            "more than 1 row",
        ),
        (
            "select id from dt where k in (select qty, id from jl)",
            1241,
            "1 column",
        ),
    ] {
        refused(sg, sql, code, &[why], true).await;
    }
    derived_tables(sg, oracle, x, z).await;
    nested_loop_joins(sg, oracle, x).await;
    unqualified_names_in_joins(sg, oracle).await;
    expressions_over_aggregates(sg, oracle).await;
    semi_joins(sg).await;
    unions(sg, oracle, x, y, z).await;
    // Prepared, with parameters: each plan's values come from them.
    for (sql, params) in [
        (
            "select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.qty = ? and jl.id < ? order by jl.id",
            vec![Value::Int(5), Value::Int(300)],
        ),
        (
            "select dt.k, count(*) from dt join jl on dt.k = jl.qty where dt.id < ? group by dt.k order by dt.k",
            vec![Value::Int(150)],
        ),
        (
            "select id from dt where k in (select qty from jl where note = ?) and id < ? order by id",
            vec![Value::Bytes(b"n3".to_vec()), Value::Int(400)],
        ),
        (
            "select id from dt where k = ? union select id from jl where qty = ? order by id limit 9",
            vec![Value::Int(2), Value::Int(2)],
        ),
        (
            "with t as (select id, k from dt where k = ?) select count(*), max(t.id) from t",
            vec![Value::Int(-3)],
        ),
    ] {
        let got: Vec<mysql_async::Row> = sg.exec(sql, params.clone()).await.unwrap();
        let want: Vec<mysql_async::Row> = oracle.exec(sql, params).await.unwrap();
        let cells = |rows: Vec<mysql_async::Row>| -> Vec<Vec<String>> {
            rows.into_iter()
                .map(|r| r.unwrap().into_iter().map(|v| v.as_sql(true)).collect())
                .collect()
        };
        assert_eq!(cells(got), cells(want), "{sql}");
    }
    // The gate's results carry MySQL's column names.
    for sql in [
        "select dt.k, count(*) from dt group by dt.k",
        "select t.k, max(t.name) m from (select k, name from dt) t group by t.k",
        "select id, k from dt where k = 3 union select id, qty from jl where qty = 3",
        "select jl.id, jn.memo, jl.qty + 1 from jl join jn on jn.id = jl.id where jl.id < 5",
        "select jl.qty, count(jn.memo) from jl join jn on jn.id = jl.id where jl.id < 50 group by jl.qty",
    ] {
        assert_eq!(
            column_names(sg, sql).await,
            column_names(oracle, sql).await,
            "{sql}"
        );
    }
}

/// A join across routes whose columns the client left unqualified: each
/// goes to the table that has it (the schema tracker knows every column
/// of `dt`, `jl`, `jn` and `jref`), with the names, and the errors for a
/// name two tables have or none has, that one MariaDB gives.
async fn unqualified_names_in_joins(sg: &mut Conn, oracle: &mut Conn) {
    let cases = [
        case("select name, qty, note from dt join jl on k = qty where dt.id < 100 order by dt.id, jl.id", true),
        case("select memo, flag, big from dt join jn on jn.id = k where flag = 1 and dt.id < 300 order by memo, dt.id", true),
        case("select note, count(*), sum(big), max(k) from jl join dt on dt.k = qty where jl.id < 200 group by note order by note", true),
        case("select label, qty, concat(note, '/', label) from jl join jref on jref.k = qty where jl.id < 60 order by jl.id", true),
        case("select dt.id, memo from dt left join jn on jn.id = k where dt.id < 40 order by dt.id", true),
        // ORDER BY a selected column's name; HAVING an alias.
        case("select dt.id, note from dt join jl on k = qty where dt.id < 30 order by note desc, id, jl.id", true),
        case("select qty q, count(*) n from dt join jl on k = qty where dt.id < 500 group by qty having n > 2 order by q", true),
        // A subquery's names: its own tables' first, else the statement's
        // (a semi-join, a correlated value, a subquery run first).
        case("select id from dt where exists (select 1 from jl where qty = k) and id < 100 order by id", true),
        case("select id from dt where not exists (select 1 from jl where qty = k and note = 'n1') and id < 80 order by id", true),
        case("select id, (select count(*) from jl where qty = k) n from dt where id < 40 order by id", true),
        case("select id from jn where id in (select k + 100 from dt where flag = id % 2) order by id", true),
        case("select memo, qty from jl join jn on jn.id = jl.id where jl.id < 100 and exists (select 1 from dt where dt.id = jl.dt_id and k > 3) order by jl.id", true),
    ];
    for c in &cases {
        compare_named(sg, oracle, c).await;
    }
    for c in cases.iter().take(3) {
        compare_by(sg, oracle, c, true).await;
    }
    // The first cases find rows (their answers are not vacuous).
    for c in cases.iter().take(4) {
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
    }
    for sql in [
        "select id from dt join jn on jn.id = dt.k",
        "select dt.k from dt join jl on jl.qty = dt.k where id < 5",
        "select nosuch from dt join jn on jn.id = dt.k",
        "select dt.k from dt join jn on jn.id = dt.k order by nosuch",
        "select dt.k from dt join jn on id = dt.k",
        "select dt.k from dt join jn on jn.id = dt.k group by id",
        "select dt.k from dt join jn on jn.id = dt.k order by id",
        "select dt.k from dt join jn on jn.id = dt.k where nosuch = 1",
        "select dt.k from dt join jn on nosuch = dt.k",
        "select dt.k from dt join jn on jn.id = dt.k group by nosuch",
        "select dt.k from dt join jn on jn.id = dt.k group by dt.k having nosuch > 1",
    ] {
        errors_agree(sg, oracle, sql).await;
    }
    // The session goes on.
    let one: i64 = sg.query_first("select 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

/// Expressions over aggregates across shards that the gate does not
/// compute itself (functions, CASE): the grouping runs first, and a
/// tablet computes the expressions over its rows.
async fn expressions_over_aggregates(sg: &mut Conn, oracle: &mut Conn) {
    let cases = [
        case("select k, round(avg(amount), 2) avg_amount from dt where id < 500 group by k order by k", true),
        case("select flag, greatest(sum(k), max(big) % 100) g, concat(flag, ':', count(*)) c from dt group by flag order by flag", true),
        case("select round(avg(amount), 1) a, count(*), case when sum(k) > 100 then 'many' else 'few' end s from dt", false),
        case("select k, ifnull(min(name), 'none') m from dt where id < 300 group by k having round(sum(amount)) > 100 order by k desc limit 4", true),
        case("select dt.flag, round(avg(jl.qty), 2) q, max(jn.memo) from dt join jl on jl.qty = dt.k join jn on jn.id = jl.id where dt.id < 200 group by dt.flag order by dt.flag", true),
        case("select k, sqrt(sum(k)) from dt where id < 100 group by k order by k", true),
        // Unnamed, with a literal: named as written, the literal in it.
        case("select k, round(avg(amount), 2), concat(k, 'x', count(*)) from dt where id < 300 group by k order by k", true),
        case("select dt.flag, round(avg(jl.qty), 1) from dt join jl on jl.qty = dt.k where dt.id < 100 group by dt.flag order by dt.flag", true),
    ];
    for c in &cases {
        compare_named(sg, oracle, c).await;
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
    }
}

/// [`compare`], and the columns' names too.
async fn compare_named(sg: &mut Conn, oracle: &mut Conn, c: &Case) {
    compare(sg, oracle, c).await;
    assert_eq!(
        column_names(sg, &c.sql).await,
        column_names(oracle, &c.sql).await,
        "{}",
        c.sql
    );
}

/// The names of the columns `sql` returns.
async fn column_names(conn: &mut Conn, sql: &str) -> Vec<String> {
    let result = conn.query_iter(sql).await.unwrap();
    let names = result
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    result.drop_result().await.unwrap();
    names
}

/// A UNION goes whole where its parts share a route: one shard they all
/// name, or every shard for a UNION ALL of parts that keep their rows
/// apart by shard. `x` and `y` are ids of dt on one shard, `z` on another.
async fn unions(sg: &mut Conn, oracle: &mut Conn, x: u64, y: u64, z: u64) {
    let cases = [
        case(format!("select id, name from dt where id = {x} union select id, memo from jn where id in ({x}, {y})"), false),
        case(format!("select id from dt where id = {x} union all select dt_id from jl where dt_id = {y} order by 1"), true),
        case("select id, k from dt where k = 3 union all select id, qty from jl where qty = 3", false),
        case("(select id from dt where k = 1) union all (select id from jl where qty = 1) union all select id from jn where memo = 'm2' and id < 90", false),
        case("select dt.id, jl.id from dt join jl on jl.dt_id = dt.id where dt.k = 2 union all select id, id from jn where id < 20", false),
        // The gate's DISTINCT, ORDER BY and LIMIT over every shard's rows.
        case("select id from dt where k = 3 union select id from jl where qty = 3", false),
        case("select id from dt where k = 3 union all select id from jl where qty = 3 order by 1 desc limit 5", true),
        case("select id, name from dt where k = 2 union select id, note from jl where qty = 2 order by id, name limit 10", true),
        case("select k from dt where id < 100 union select qty from jl where id < 100 union select id from jn where id < 5 order by k", true),
        Case {
            sql: "select name from dt where k = 5 union select note from jl where qty = 5 order by name desc limit 7".into(),
            ordered: true,
            fold_case: true,
        },
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().step_by(2) {
        compare_by(sg, oracle, c, true).await;
    }
    // No route answers these whole: each part runs first, on its own
    // plan, and one tablet unites the answers (vtgate's Concatenate).
    let concatenated = [
        case(format!("select id from dt where id = {x} union select id from jn where id = {z}"), false),
        case("select label from jref union all select name from dt where id < 10", false),
        case("select id from dt where k = 3 union all select id from jl where qty = 3 union select id from jn", false),
        case("(select id from dt where k = 3 order by id limit 4) union all (select id from jl where qty = 3 order by id desc limit 2)", false),
        case("select * from dt where id < 5 union select * from dt where id between 3 and 8 order by id", true),
        case("select k from dt where id < 200 intersect select qty from jl order by k", true),
        case("select k from dt where id < 200 except select qty from jl where id < 100 order by 1 limit 6", true),
        // A part that is itself a join across shards (a nested loop).
        case("select dt.id, jl.id as jid from dt join jl on jl.qty = dt.k where dt.id < 20 union all select id, id from jn where id < 5 order by 1, 2", true),
        case("select dt.k from dt join jl on jl.qty = dt.k where jl.id < 50 union select qty from jl where id < 10", false),
    ];
    for (i, c) in concatenated.iter().enumerate() {
        compare_by(sg, oracle, c, i % 2 == 1).await;
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
    }
    let plan: String = number(sg, &format!("vexplain plan {}", concatenated[3].sql)).await;
    assert!(plan.contains("UncorrelatedSubquery"), "{plan}");
    // A part over one table's rows the gate cannot combine gathers them.
    compare(
        sg,
        oracle,
        &case(
            "select id from dt union all select row_number() over (order by id) from jl",
            false,
        ),
    )
    .await;
    compare(
        sg,
        oracle,
        &case(
            "select id from dt union all select row_number() over (order by jl.id) from jl join jn on jn.id = jl.id",
            false,
        ),
    )
    .await;
    compare(
        sg,
        oracle,
        &case(
            "select id from dt where id < 40 union all select jn.id from jl right join jn on jn.id = jl.id",
            false,
        ),
    )
    .await;
    // A part no plan answers is refused as itself.
    refused(
        sg,
        "select id from dt union all select jl.id from jl right join jn on jn.id = jl.id right join dt on dt.id = jn.id",
        1235,
        &["LEFT JOIN"],
        false,
    )
    .await;
}

/// A semi-join and its anti-join split the rows between them (both
/// sides non-empty); ORDER BY a position or an alias orders as by the
/// column.
async fn semi_joins(sg: &mut Conn) {
    let all = rows(sg, "select dt.id from dt where dt.id < 300")
        .await
        .len();
    let with = |not: &str| {
        format!("select dt.id from dt where {not} exists (select 1 from jl where jl.qty = dt.k and jl.id < 400) and dt.id < 300")
    };
    let matched = rows(sg, &with("")).await.len();
    let unmatched = rows(sg, &with("not")).await.len();
    assert!(matched > 0 && unmatched > 0, "{matched} and {unmatched}");
    assert_eq!(matched + unmatched, all);
    let correlated_in = "select dt.id from dt where dt.k in (select jl.qty from jl where jl.id < dt.id) and dt.id < 120";
    let n = rows(sg, correlated_in).await.len();
    assert!(
        n > 0 && n < rows(sg, "select id from dt where id < 120").await.len(),
        "{n}"
    );
    // Ordered by position or alias: what they stand for.
    let by_position = rows(sg, "select dt.k, dt.id from dt where exists (select 1 from jl where jl.qty = dt.k) and dt.id < 200 order by 2 desc").await;
    let by_alias = rows(sg, "select dt.k, dt.id as i from dt where exists (select 1 from jl where jl.qty = dt.k) and dt.id < 200 order by i desc").await;
    let by_name = rows(sg, "select dt.k, dt.id from dt where exists (select 1 from jl where jl.qty = dt.k) and dt.id < 200 order by dt.id desc").await;
    assert!(!by_name.is_empty());
    assert_eq!(by_position, by_name);
    assert_eq!(by_alias, by_name);
    // A correlated value that finds two rows is MySQL's error.
    refused(
        sg,
        "select dt.id, (select jl.id from jl where jl.qty = dt.k) from dt where dt.id < 200",
        1242,
        &["more than 1 row"],
        true,
    )
    .await;
    let plan: String = number(
        sg,
        "vexplain plan select dt.id from dt where not exists (select 1 from jl where jl.qty = dt.k)",
    )
    .await;
    assert!(plan.contains("AntiJoin"), "{plan}");
}

/// Tables that meet on other than their vindex columns join in a nested
/// loop at the gate: the left route's rows, then for each the right
/// route with the left columns bound. Same rows as the oracle, in the
/// left side's order where the SQL orders by it.
async fn nested_loop_joins(sg: &mut Conn, oracle: &mut Conn, x: u64) {
    let cases = [
        case(format!("select dt.id, dt.name, jl.id from dt join jl on dt.k = jl.qty where dt.id = {x}"), false),
        case("select jl.id, dt.name from jl join dt on dt.k = jl.qty where jl.id < 30", false),
        case("select jl.id, jl.qty, jn.memo from jl join jn on jn.id = jl.id where jl.qty > 3 order by jl.id limit 25 offset 5", true),
        case("select jl.id, jn.memo from jl left join jn on jn.id = jl.id order by jl.id", true),
        case("select jl.id, jn.memo from jl left join jn on jn.id = jl.id and jl.qty > 5 where jl.id < 200 order by jl.id desc", true),
        case("select jl.id, jn.id + jl.qty as s, jl.note from jl join jn on jn.id = jl.id where jl.id < 100 order by jl.id", true),
        case("select dt.id, jl.id from dt join jl on jl.id = dt.id where dt.id < 300 order by dt.id", true),
        case("select dt.id, jn.memo from dt, jn where jn.id = dt.k + 100 and dt.id < 100 order by dt.id", true),
        case("select dt.id, jl.id, jn.memo from dt join jl on jl.dt_id = dt.id join jn on jn.id = jl.id where dt.id < 400 order by jl.id", true),
        case("select jl.id, jref.label, jn.memo from jl join jref on jref.k = jl.qty join jn on jn.id = jl.id where jl.id < 60 order by jl.id", true),
        case("select dt.id, jn.memo from dt join jn on jn.id = dt.k where dt.id = -5", false),
        // LEFT JOINs before other joins, or after a join across shards:
        // the last table is joined to the rows of all the others.
        case("select jl.id, jn.memo, d.name from jl left join jn on jn.id = jl.id left join dt d on d.id = jl.qty where jl.id < 80 order by jl.id", true),
        case("select jl.id, jn.memo, dt.k from jl left join jn on jn.id = jl.id join dt on dt.id = jl.dt_id where jl.id < 120 order by jl.id", true),
        case("select count(*), count(jn.memo), count(d.id), sum(d.k) from jl left join jn on jn.id = jl.id + 1 left join dt d on d.k = jl.qty and d.id < 30 where jl.id < 200", false),
        case("select dt.id, jl.id, jn.memo from dt join jl on jl.qty = dt.k left join jn on jn.id = jl.id where dt.id < 40 order by dt.id, jl.id", true),
        case("select jn.memo, count(*) from jl left join jn on jn.id = jl.id join jref on jref.k = jl.qty where jl.id < 300 group by jn.memo order by jn.memo", true),
        // A correlated subquery over both sides of a join: a semi-join
        // whose left side is the join.
        case("select dt.id, jn.id from dt join jn on jn.id = dt.k where exists (select 1 from jl where jl.qty = dt.flag and jl.dt_id = jn.id) and dt.id < 200 order by dt.id, jn.id", true),
        case("select jl.id from jl join jn on jn.id = jl.id where exists (select 1 from dt where dt.id = jl.dt_id and dt.k = jn.id) order by jl.id", true),
        case("select dt.id from dt, jref where jref.k = dt.flag and dt.k not in (select jl.qty from jl where jl.id < jref.k + 30 and jl.dt_id = dt.id) and dt.id < 60 order by dt.id", true),
        // What a nested loop cannot check of a LEFT JOIN: the joined rows
        // first, checked and computed over on one tablet.
        case("select dt.id, jn.memo from dt left join jn on jn.id = dt.k where coalesce(jn.memo, 'm1') = 'm1' and dt.id < 200 order by dt.id", true),
        case("select dt.id, jn.id from dt left join jn on jn.id = dt.k + 100 where (jn.id is null or jn.memo = 'm2') and dt.id < 90 order by dt.id", true),
        case("select dt.id, dt.k + jn.id s, concat(dt.name, jn.memo) c from dt left join jn on jn.id = dt.k + 100 where dt.id < 60 order by dt.id", true),
        // Aggregates and windows the gate cannot combine, over joins: the
        // joined rows' columns are gathered first.
        case("select dt.k, group_concat(jl.note order by jl.id separator '|') from dt join jl on jl.qty = dt.k where dt.id < 40 group by dt.k order by dt.k", true),
        case("select dt.id, jl.id, row_number() over (partition by dt.id order by jl.id) rn from dt join jl on jl.dt_id = dt.id where dt.id < 30 order by dt.id, jl.id", true),
        case("select dt.flag, group_concat(distinct jn.memo order by jn.memo desc) from dt join jn on jn.id = dt.k + 100 group by dt.flag order by dt.flag", true),
        case("select jl.qty, count(distinct jl.dt_id, jn.memo) c from jl join jn on jn.id = jl.id where jl.id < 300 group by jl.qty order by jl.qty", true),
        // USING across shards: the ON it means, its column the left
        // table's.
        case("select id, jl.note, jn.memo from jl join jn using (id) where jl.id < 60 order by id", true),
        case("select id, jn.memo from jl left join jn using (id) where jl.qty > 3 order by id limit 20", true),
        // Parenthesized inner joins join as if written without.
        case("select dt.id, jl.id, jn.memo from dt join (jl join jn on jn.id = jl.id) on jl.dt_id = dt.id where dt.id < 300 order by jl.id", true),
        case("select dt.id, d2.id from dt join dt d2 join jref where d2.id = dt.k and jref.k = dt.flag and dt.id < 50 order by dt.id, d2.id", true),
        // Grouped by the vindex column: each group is on one shard, so
        // any expression over its aggregates is the shard's to compute.
        case("select id, concat(max(name), '!'), round(sum(amount), 1) from dt where id < 80 group by id", false),
        case("select k, id, greatest(max(big), min(k)) g from dt where id < 200 group by k, id having count(*) = 1 order by k, id limit 30", true),
        case("select distinct count(*) from dt where id < 300 group by id", false),
        // HAVING with nothing grouped keeps rows as WHERE would, its
        // aliases the select list's.
        case("select dt.id, jl.qty from dt join jl on jl.qty = dt.k having jl.qty = 2 and dt.id < 90", false),
        case("select dt.id did, jl.id jid from dt join jl on jl.qty = dt.k where dt.id < 60 having did < jid order by did, jid", true),
        // A correlated EXISTS no route answers: a semi-join.
        case("select dt.id, dt.k from dt where exists (select 1 from jl where jl.qty = dt.k) and dt.id < 100 order by dt.id", true),
        case("select dt.id from dt where not exists (select 1 from jl where jl.qty = dt.k and jl.id < 50) and dt.id < 80 order by dt.id desc limit 7", true),
        case("select * from jn where exists (select 1 from dt where dt.k = jn.id and dt.flag = 1) and jn.id < 500 order by jn.id", true),
        case("select jl.id, jl.note from jl where exists (select 1 from dt join jn on jn.id = dt.id where dt.k = jl.qty) and jl.id < 90", false),
        // A correlated IN: the semi-join of its EXISTS.
        case("select jn.id from jn where jn.id in (select dt.k + 100 from dt where dt.flag = jn.id % 2) order by jn.id", true),
        case("select dt.id, dt.k from dt where dt.k in (select jl.qty from jl where jl.id < dt.id) and dt.id < 120 order by dt.id", true),
        // NOT IN, NULLs as MariaDB reads them: a NULL in the subquery's
        // answer keeps no row.
        case("select dt.id from dt where dt.k not in (select jl.qty from jl where jl.id < dt.id) and dt.id < 120 order by dt.id", true),
        case("select jn.id, jn.memo from jn where jn.memo not in (select dt.name from dt where dt.k = jn.id) and jn.id < 60 order by jn.id", true),
        case("select dt.id from dt where dt.k not in (select case when jl.id % 5 = 0 then null else jl.qty end from jl where jl.qty in (dt.k, dt.k + 1)) and dt.id < 150 order by dt.id", true),
        // Two correlated conditions: semi-joins in a chain.
        case("select dt.id from dt where exists (select 1 from jl where jl.qty = dt.k) and not exists (select 1 from jn where jn.id = dt.k + 100) and dt.id < 200 order by dt.id", true),
        // A correlated value in the select list, per row.
        case("select dt.id, (select count(*) from jl where jl.qty = dt.k) as n from dt where dt.id < 40 order by dt.id", true),
        case("select jn.*, (select max(dt.id) from dt where dt.k = jn.id) from jn where jn.id < 30 order by jn.id", true),
        // Grouped, aggregated or DISTINCT over a semi-join: the gate's.
        case("select count(*), sum(dt.big) from dt where exists (select 1 from jl where jl.qty = dt.k) and dt.id < 300", false),
        case("select dt.k, count(*), max(dt.id) from dt where not exists (select 1 from jl where jl.qty = dt.k and jl.id < 400) and dt.id < 600 group by dt.k order by dt.k", true),
        case("select distinct dt.flag from dt where exists (select 1 from jn where jn.id = dt.k + 100) order by dt.flag", true),
        case("select jl.id, jn.memo from jl join jn on jn.id = jl.id", false),
        case("select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 50 order by jl.id limit 10 for update", true),
        // Subqueries that one side's route answers.
        case("select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 100 and exists (select 1 from dt where dt.id = jl.dt_id and dt.k > 3) order by jl.id", true),
        case("select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 200 and jl.qty in (select k from jref where label = 'L2') order by jl.id", true),
        case("select jl.id, (select count(*) from jn x where x.id = jn.id) c from jl join jn on jn.id = jl.id where jl.id < 50 order by jl.id", true),
        // Each side's `*`.
        case("select * from jl join jn on jn.id = jl.id where jl.id < 40 order by jl.id", true),
        case("select jn.*, jl.qty from jl join jn on jn.id = jl.id where jl.id < 30 order by jl.id", true),
        case("select * from jl left join jn on jn.id = jl.id where jl.id < 30 order by jl.id", true),
        case("select jl.*, jn.memo from jl join jn on jn.id = jl.id where jl.id between 10 and 20 order by jl.id desc", true),
        // The gate's work over the joined rows.
        case("select count(*) from dt join jl on dt.k = jl.qty where dt.id < 200", false),
        case("select dt.k, count(*), sum(jl.qty), min(jl.note), max(dt.name) from dt join jl on dt.k = jl.qty where dt.id < 200 group by dt.k order by dt.k", true),
        case("select jl.note, count(distinct dt.k) from jl join dt on dt.k = jl.qty where jl.id < 100 group by jl.note order by jl.note", true),
        case("select distinct jn.memo from jl join jn on jn.id = jl.id where jl.id < 300 order by jn.memo", true),
        case("select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 300 order by jn.memo desc, jl.id limit 20 offset 3", true),
        case("select avg(jl.qty), count(jn.memo), count(*) from jl left join jn on jn.id = jl.id", false),
        case("select count(*), max(jn.memo) from dt join jn on jn.id = dt.k where dt.id = -5", false),
        case("select dt.k, count(*) c from dt join jl on dt.k = jl.qty where dt.id < 300 group by dt.k having count(*) > 20 order by c desc, dt.k", true),
        // A LEFT JOIN's WHERE on its right table: IS NULL keeps the left
        // rows without a match; IS NOT NULL only the matched ones.
        case("select jl.id, jl.qty from jl left join jn on jn.id = jl.id where jn.id is null order by jl.id", true),
        case("select count(*), sum(jl.qty) from jl left join jn on jn.id = jl.id where jn.memo is null and jl.id < 500", false),
        case("select jl.id, jn.memo from jl left join jn on jn.id = jl.id where jn.memo is not null and jl.id < 100 order by jl.id", true),
        // ORs under AND keep their parentheses on each side (they once
        // came out bare, joined to the side's other conditions by AND).
        case("select dt.id, jn.memo from dt join jn on jn.id = dt.k where (dt.flag = 1 or dt.big < 0) and dt.id < 300 and (jn.memo = 'm1' or jn.id > 7) order by dt.id", true),
        // Subqueries that read nothing of the join, over other shards'
        // rows: run first, their answers values.
        case("select dt.id, jn.memo, (select count(*) from jl where jl.qty = 3) c from dt join jn on jn.id = dt.k where dt.id < 40 order by dt.id", true),
        case("select dt.id, jn.memo from dt join jn on jn.id = dt.k where dt.k in (select qty from jl where jl.id < 20) and dt.id < 200 order by dt.id", true),
        // A correlated EXISTS over a join across shards: a semi-join whose
        // left side is the join.
        case("select dt.id, jn.memo from dt join jn on jn.id = dt.k where exists (select 1 from jl where jl.qty = dt.flag and jl.id < 40) and dt.id < 80 order by dt.id", true),
        case("select dt.id, jn.memo from dt join jn on jn.id = dt.k where not exists (select 1 from jl where jl.qty = jn.id) and dt.id < 150 order by dt.id", true),
        // A WHERE condition no unmatched row passes: an inner join.
        case("select dt.id, jn.memo from dt left join jn on jn.id = dt.k where jn.memo = 'm1' and dt.id < 500 order by dt.id", true),
        case("select dt.id, jn.id from dt left join jn on jn.id = dt.k where jn.id between 2 and 8 and dt.id < 300 order by dt.id", true),
        case("select count(*), sum(dt.big) from dt left join jn on jn.id = dt.k where not (jn.id = 4) and dt.id < 400", false),
        case("select dt.id, jn.id from dt left join jn on jn.id = dt.k where jn.id + dt.flag > 5 and dt.id < 200 order by dt.id", true),
        case("select dt.id from dt left join jn on jn.id = dt.k where (jn.id < 3 or jn.memo like 'm4%') and dt.id < 300 order by dt.id", true),
        // A derived table over such a join runs first, a table of constants.
        case("select t.a, count(*) from (select dt.k as a, jl.id as b from dt join jl on dt.k = jl.qty where dt.id < 50) as t group by t.a order by t.a", true),
        case("select t.id, t.memo, dt.k from (select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 40) as t join dt on dt.id = t.id order by t.id", true),
        // Three and four routes: the right side is a nested loop itself.
        case("select dt.id, jl.id, jn.memo from dt join jl on dt.k = jl.qty join jn on jn.id = jl.id where dt.id < 15 order by dt.id, jl.id", true),
        case("select count(*), max(jn.memo), sum(dt.k) from dt join jl on dt.k = jl.qty join jn on jn.id = jl.id where dt.id < 50", false),
        case("select dt.id, jl.id, jn.memo, jb.g from dt, jl, jn, jb where dt.k = jl.qty and jn.id = jl.id and jb.id = jl.qty % 4 + 1 and dt.id < 20", false),
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().step_by(2) {
        compare_by(sg, oracle, c, true).await;
    }
    // The many-route cases find rows (their answers are not vacuous).
    for c in cases.iter().rev().take(3) {
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
    }
    // The rows a join holds in memory are bounded (--max_memory_rows):
    // beyond, the statement fails, and the session goes on.
    let (port, _) = spawn_shardgate(&["--max_memory_rows".into(), "100".into()]).await;
    let mut small = connect_port(port, Some("customer")).await;
    let few: Vec<(u64, Option<String>)> = small
        .query("select jl.id, jn.memo from jl join jn on jn.id = jl.id where jl.id < 50")
        .await
        .unwrap();
    assert!(!few.is_empty() && few.len() < 50, "{}", few.len());
    for sql in [
        "select jl.id, jn.memo from jl join jn on jn.id = jl.id",
        "select count(*) from jl join jn on jn.id = jl.id where jl.id < 150",
    ] {
        let e = small.query_drop(sql).await.unwrap_err();
        assert_eq!(err_code(&e), Some(1041), "{sql}: {e}");
        assert!(e.to_string().contains("allowed limit of 100"), "{e}");
    }
    let one: i64 = small.query_first("select 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // A statement may say it holds more (vtgate's directive).
    let sql = "select count(*) from jl join jn on jn.id = jl.id where jl.id < 150";
    let want: Option<u64> = sg.query_first(sql).await.unwrap();
    let unbounded = format!("/*vt+ IGNORE_MAX_MEMORY_ROWS */ {sql}");
    let got: Option<u64> = small.query_first(&unbounded).await.unwrap();
    assert_eq!(got, want);
    assert!(want.unwrap() > 0, "{want:?}");
    // Under --no_scatter a read of every shard is refused unless it says
    // ALLOW_SCATTER; a read routed by its vindex is not.
    let (port, _) = spawn_shardgate(&["--no_scatter".into()]).await;
    let mut routed = connect_port(port, Some("customer")).await;
    let e = routed
        .query_drop("select count(*) from dt")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
    assert!(e.to_string().contains("no_scatter"), "{e}");
    let want: Option<u64> = sg.query_first("select count(*) from dt").await.unwrap();
    let got: Option<u64> = routed
        .query_first("select /*vt+ ALLOW_SCATTER */ count(*) from dt")
        .await
        .unwrap();
    assert_eq!(got, want);
    let want: Option<i64> = sg
        .query_first("select k from dt where id = 7")
        .await
        .unwrap();
    let got: Option<i64> = routed
        .query_first("select k from dt where id = 7")
        .await
        .unwrap();
    assert_eq!(got, want);
    // Each right row comes from the shard its vindex names: one query per
    // left row, to one shard.
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select jl.id, jn.memo from jl join jn on jn.id = jl.id")
        .await
        .unwrap();
    assert!(plan[0].0.contains("\"Join\""), "{}", plan[0].0);
    assert!(plan[0].0.contains("EqualUnique"), "{}", plan[0].0);
    // Row locks reach every shard, in scatters and in each side of a join.
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select jl.id, jn.memo from jl join jn on jn.id = jl.id for update")
        .await
        .unwrap();
    assert_eq!(plan[0].0.matches("FOR UPDATE").count(), 2, "{}", plan[0].0);
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select id from dt where k = 3 for update")
        .await
        .unwrap();
    assert!(plan[0].0.contains("FOR UPDATE"), "{}", plan[0].0);
    for (sql, why) in [
        (
            "select dt.id from dt join jn on jn.id = dt.k having count(*) > 3",
            "HAVING",
        ),
        ("select dt.*, dt.* from dt join jn on jn.id = dt.k", "'*'"),
    ] {
        refused(sg, sql, 1235, &["cross-shard joins", why], false).await;
    }
}

/// A derived table joins as a table: one that keeps its rows apart by
/// shard shows its vindex column under its own name; one that groups or
/// limits is whole only where its WHERE names one shard, which must be the
/// statement's. `x` and `z` are ids of dt on different shards.
async fn derived_tables(sg: &mut Conn, oracle: &mut Conn, x: u64, z: u64) {
    // Values that a table of constants must write back exactly.
    let tricky = r#"insert into jn (id, memo) values (5001, 'it''s'), (5002, 'back\\slash'), (5003, NULL), (5004, 'tab\there'), (5005, 'm2 ')"#;
    sg.query_drop(tricky).await.unwrap();
    oracle.query_drop(tricky).await.unwrap();
    // ... and compare as their columns did: binary strings as binary.
    let jb = [
        "drop table if exists jb",
        "create table jb (id bigint not null primary key, b varbinary(16), s varchar(16) collate utf8mb4_bin, g varchar(16))",
        "insert into jb (id, b, s, g) values (1, 'abc', 'abc', 'abc'), (2, 'ABC', 'ABC', 'ABC'), (3, 'Abc', 'x', 'Abc'), (4, NULL, NULL, NULL)",
    ];
    for d in jb {
        sg.query_drop(d).await.unwrap();
        oracle.query_drop(d).await.unwrap();
    }
    for sql in [
        "select d.b from (select b from jb group by b) d where d.b = 'abc'",
        "select count(*) from (select g from jb group by g) d where d.g = 'ABC'",
    ] {
        compare(sg, oracle, &case(sql, true)).await;
    }
    let cases = [
        case("select t.memo, t.c, t.hi from (select memo, count(*) c, max(id) hi from jn group by memo) t order by t.hi", true),
        case("select t.memo from (select memo from jn order by id desc limit 6) t", false),
        case(format!("select t.id, t.name from (select id, name from dt where id = {x}) as t"), false),
        case(format!("select count(*), max(t.name) from (select id, name from dt where id = {x}) t"), false),
        case("select t.k, count(*) from (select k from dt where id < 500) t group by t.k order by t.k", true),
        case("select t.id, jl.qty from (select id, name from dt where k > 5) t join jl on jl.dt_id = t.id order by jl.id limit 20", true),
        case("select t.a, jl.id from (select id as a, name from dt) t join jl on jl.dt_id = t.a where t.name like 'a%' order by jl.id", true),
        case("select t.label, count(*) from (select k, label from jref) t join dt on dt.k = t.k group by t.label order by t.label", true),
        // A derived table one route answers is a side of a nested loop.
        case("select t.id, jl.qty from (select id, k from dt where k = 3) t join jl on jl.qty = t.k order by t.id, jl.qty", true),
        case(format!("with w as (select id, name from dt where id = {x}) select w.name, jn.memo from w join jn on jn.id = w.id + 0"), false),
        case(format!("select m.n, dt.name from (select max(qty) n from jl where dt_id = {x}) m join dt where dt.id = {x}"), false),
        case(format!("select (select name from dt where id = {x})"), false),
        case(format!("select exists(select 1 from jl where dt_id = {x}), (select count(*) from jref)"), false),
        // A WITH's queries are derived tables where they are named.
        case(format!("with t as (select id, name from dt where id = {x}) select t.id, t.name from t"), false),
        case("with big as (select id, k from dt where k > 5) select big.k, count(*) from big group by big.k order by big.k", true),
        case("with a as (select id from dt where k = 1), b as (select a.id from a where a.id < 1500) select count(*) from b", false),
        case("with t as (select dt_id, qty from jl) select t.dt_id, t.qty from t join dt on dt.id = t.dt_id where dt.k = 4 order by t.dt_id, t.qty", true),
        // Grouped by its vindex column, each group is on one shard: the
        // derived table joins as a table.
        case("with t as (select dt_id, count(*) n from jl group by dt_id) select dt.name, t.n from t join dt on dt.id = t.dt_id where dt.k = 3 order by dt.id", true),
        // A column list names the query's columns.
        case("with c(a) as (select id from dt) select count(*), sum(a) from c", false),
        case("with x(n, total) as (select k, count(*) from dt group by k) select n, total from x where n > 2 order by n", true),
        case("with u(v) as (select k from dt where id < 50 union select qty from jl where id < 20) select v from u order by v", true),
        case("select t.n, t.dt_id from (select dt_id, count(*) n from jl group by dt_id having count(*) > 1) t order by t.dt_id limit 10", true),
        // A scalar subquery in the select list runs first.
        case(format!("select (select count(*) from jl) n, dt.name from dt where dt.id = {x}"), false),
        case("select dt.id, (select max(qty) from jl where note = 'n4') m from dt where dt.k = 7 order by dt.id", true),
        // A derived table that groups or limits across shards runs first;
        // its rows come back as constants every shard can join.
        case("select count(*) from (select k from dt group by k) t", false),
        case("select * from (select id from dt order by id limit 5) t", false),
        case("select t.m from (select max(id) m from jl) t", false),
        case("select count(*), sum(u.n) from (select k from dt where k > 1000 group by k) t cross join (select count(*) n from jl) u", false),
        case("select t.k, t.n, dt.name from (select k, count(*) n from dt group by k) t join dt on dt.k = t.k where dt.id < 100 order by dt.id", true),
        // A group's name is any of its spellings: compared folded.
        Case {
            sql: "select t.name, t.c from (select name, count(*) c from dt group by name order by c desc, name limit 12) t where t.c > 1".into(),
            ordered: false,
            fold_case: true,
        },
        case(format!("select a.n, dt.name from (select count(*) n from jl where dt_id = {x}) a, dt where dt.id = {z}"), false),
        // Refused before derived tables joined in nested loops.
        case("select count(*) from (select id as a from dt) t join jl on jl.id = t.a", false),
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().step_by(2) {
        compare_by(sg, oracle, c, true).await;
    }
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select dt.name, t.n from (select dt_id, count(*) n from jl group by dt_id) t join dt on dt.id = t.dt_id")
        .await
        .unwrap();
    assert!(
        plan[0].0.contains("\"Route\"") && !plan[0].0.contains("Uncorrelated"),
        "{}",
        plan[0].0
    );
    for (sql, why) in [
        (
            "with recursive a as (select 1 as n), r as (select n from a union all select n + 1 from r where n < 3) select * from r".to_string(),
            "WITH RECURSIVE of this shape",
        ),
    ] {
        refused(sg, &sql, 1235, &[why], false).await;
    }
}

/// Asserts that `sql` fails with MySQL error `code`, its message holding
/// each of `why`, as text and (with `prepared`) as a prepared statement.
async fn refused(sg: &mut Conn, sql: &str, code: u16, why: &[&str], prepared: bool) {
    for prepared in [false, true].into_iter().take(1 + usize::from(prepared)) {
        let err = if prepared {
            sg.exec_drop(sql, ())
                .await
                .expect_err(&format!("{sql} is refused when prepared"))
        } else {
            sg.query_drop(sql)
                .await
                .expect_err(&format!("{sql} is refused"))
        };
        let mysql_async::Error::Server(e) = err else {
            panic!("{sql}: {err:?}")
        };
        assert_eq!(e.code, code, "{sql}: {}", e.message);
        for w in why {
            assert!(e.message.contains(w), "{sql}: {}", e.message);
        }
    }
}

async fn total_direct(sg: &mut Conn) -> u64 {
    let mut sum = 0;
    for shard in ["customer:-80", "customer:80-"] {
        sg.query_drop(format!("use `{shard}`")).await.unwrap();
        let n: u64 = sg
            .query_first("select count(*) from customer")
            .await
            .unwrap()
            .unwrap();
        sum += n;
    }
    sg.query_drop("use customer").await.unwrap();
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_vindex_updates_and_unsupported_statements() {
    let mut sg = connect(Some("customer")).await;
    sg.query_drop("insert into customer (email) values ('s1'), ('s2'), ('s3')")
        .await
        .unwrap();
    let from_ok = sg.last_insert_id();
    let first: u64 = sg
        .query_first("select last_insert_id()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_ok, Some(first));
    let got: Vec<(u64, String)> = sg
        .query("select customer_id, email from customer where email in ('s1', 's2', 's3') order by customer_id")
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            (first, "s1".into()),
            (first + 1, "s2".into()),
            (first + 2, "s3".into())
        ]
    );
    // DEFAULT in the auto-increment column is the sequence's next id, as
    // NULL is.
    sg.query_drop("insert into customer (customer_id, email) values (default, 's4'), (null, 's5')")
        .await
        .unwrap();
    let next = sg.last_insert_id().unwrap();
    assert!(next > first + 2, "{next} after {first}");
    let got: Vec<(u64, String)> = sg
        .query("select customer_id, email from customer where email in ('s4', 's5') order by customer_id")
        .await
        .unwrap();
    assert_eq!(got, vec![(next, "s4".into()), (next + 1, "s5".into())]);
    // A child row names its parent by LAST_INSERT_ID() in its VALUES (the
    // gate's value, in place: it had been written with an alias there, a
    // syntax error, on any keyspace). Its vindex column, so it goes to
    // the parent's shard.
    let order = next + 900_000_000;
    sg.query_drop(format!(
        "insert into corder (order_id, customer_id, sku) values ({order}, last_insert_id(), 'child')"
    ))
    .await
    .unwrap();
    let parent: Option<u64> = sg
        .query_first(format!(
            "select c.customer_id from corder o join customer c on c.customer_id = o.customer_id \
             where o.order_id = {order} and c.customer_id = {next}"
        ))
        .await
        .unwrap();
    assert_eq!(parent, Some(next));
    sg.query_drop(format!("delete from corder where order_id = {order}"))
        .await
        .unwrap();
    // Changing a primary vindex column is refused.
    let e = sg
        .query_drop("update customer set customer_id = 5 where email = 's1'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
    // A row without its vindex column.
    let e = sg
        .query_drop("insert into corder (order_id, sku) values (1, 'x')")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("customer_id"), "{e}");
    // A cross-shard join's unqualified columns go to the table the schema
    // tracker says has them; one both tables have is ambiguous, as on one
    // server, never answered from either.
    sg.query_drop("select email from customer c join corder o on c.email = o.sku")
        .await
        .unwrap();
    let e = sg
        .query_drop("select customer_id from customer c join corder o on c.email = o.sku")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1052), "{e}");
    // Unknown table.
    let e = sg.query_drop("select * from nope").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1146));
    // Shard targeting bypasses the planner.
    sg.query_drop("use `customer:-80`").await.unwrap();
    let n: u64 = sg
        .query_first("select count(*) from customer")
        .await
        .unwrap()
        .unwrap();
    sg.query_drop("use customer[80-]").await.unwrap();
    let m: u64 = sg
        .query_first("select count(*) from customer")
        .await
        .unwrap()
        .unwrap();
    sg.query_drop("use customer").await.unwrap();
    // No keyspace selected: the table's keyspace is found in the VSchemas.
    let mut anon = connect(None).await;
    let all: u64 = anon
        .query_first("select count(*) from customer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, total_direct(&mut sg).await);
    let q: u64 = sg
        .query_first("select count(*) from `customer:-80`.customer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q, n);
    let total: u64 = sg
        .query_first("select count(*) from customer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n + m, total);
}

/// A table sharded by `unicode_loose_md5`: rows land where the loose key of
/// their name says, and names equal under the column's collation (case,
/// accents, width) are routed to one shard that holds all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_loose_vindex_routes_by_collation_key() {
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    sg.query_drop("drop table if exists tag").await.unwrap();
    sg.query_drop(
        "create table tag (name varchar(64) not null, n bigint not null, primary key (n)) \
         default charset utf8mb4 collate utf8mb4_general_ci",
    )
    .await
    .unwrap();
    let names = [
        "Zoë",
        "zoe",
        "ZOE ",
        "Tést",
        "TEST",
        "test",
        "résumé",
        "Resume",
        "RÉSUMÉ",
        "Łódź",
        "Ñandú",
        "nandu",
        "ёлка",
        "ЁЛКА",
        "елка",
        "й",
        "и\u{306}",
        "東京",
        "东京",
        "ｆｕｌｌ",
        "full",
        "Straße",
        "ß",
        "Ǆemal",
        "ﬁne",
        "ελλάδα",
        "ΕΛΛΆΔΑ",
        "שלום",
        "ąę",
        "",
        "a b",
    ];
    let values: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("('{n}', {i})"))
        .collect();
    sg.query_drop(format!(
        "insert into tag (name, n) values {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    assert_eq!(sg.affected_rows(), names.len() as u64);

    // Placement, read straight from each shard's MariaDB.
    let placed = placement("tag", "name", Func::UnicodeLooseMd5).await;
    assert_eq!(placed.iter().sum::<usize>(), names.len());
    // Both halves are used, so routing has something to get wrong.
    assert!(placed.iter().all(|n| *n > 0), "{placed:?}");

    // A routed lookup (one shard) finds what a scatter with the same
    // predicate finds.
    for probe in [
        "ZOE", "zoë", "test", "RESUME", "ЁЛКА", "й", "東京", "full", "ε", "a b",
    ] {
        let routed: Vec<i64> = sg
            .query(format!(
                "select n from tag where name = '{probe}' order by n"
            ))
            .await
            .unwrap();
        let scattered: Vec<i64> = sg
            .query(format!(
                "select n from tag where concat(name) = '{probe}' order by n"
            ))
            .await
            .unwrap();
        assert_eq!(routed, scattered, "{probe}");
        let plan: String = sg
            .query_first(format!(
                "vexplain plan select n from tag where name = '{probe}'"
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(plan.contains("EqualUnique"), "{probe}: {plan}");
    }
    let routed: Vec<i64> = sg
        .query("select n from tag where name in ('zoe', 'lodz', 'елка', 'full') order by n")
        .await
        .unwrap();
    let scattered: Vec<i64> = sg
        .query("select n from tag where concat(name) in ('zoe', 'lodz', 'елка', 'full') order by n")
        .await
        .unwrap();
    assert_eq!(routed, scattered);
    assert!(routed.len() >= 4, "{routed:?}");

    // Bytes that are not UTF-8 have no loose key: a clear error, and the
    // connection goes on.
    let e = sg
        .query_drop("insert into tag (name, n) values (x'ff', 999)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let n: u64 = sg
        .query_first("select count(*) from tag")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, names.len() as u64);
}

/// Prepared statements on a sharded keyspace: point reads and writes by the
/// vindex column go to their shard as prepared statements, the rest is
/// planned from the substituted text; both give the right answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_on_a_sharded_keyspace() {
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    sg.exec_drop("insert into customer (email) values (?), (?)", ("p1", "p2"))
        .await
        .unwrap();
    let first = sg.last_insert_id().unwrap();
    sg.exec_drop(
        "update customer set email = ? where customer_id = ?",
        ("p1-new", first),
    )
    .await
    .unwrap();
    assert_eq!(sg.affected_rows(), 1);
    let got: Option<String> = sg
        .exec_first("select email from customer where customer_id = ?", (first,))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("p1-new"));
    // Scatter with a parameter, merged at the gate.
    let both: Vec<(u64, String)> = sg
        .exec(
            "select customer_id, email from customer where customer_id in (?, ?) order by customer_id",
            (first, first + 1),
        )
        .await
        .unwrap();
    assert_eq!(
        both,
        vec![(first, "p1-new".to_string()), (first + 1, "p2".to_string())]
    );
    sg.exec_drop("delete from customer where customer_id = ?", (first + 1,))
        .await
        .unwrap();
    assert_eq!(sg.affected_rows(), 1);

    // One prepared statement executed under three targets: each execution
    // plans for the session's current target (the statement keeps its plan
    // only while the target is unchanged). Its own table: other tests write
    // to theirs meanwhile.
    sg.query_drop("create table if not exists ptgt (id bigint primary key)")
        .await
        .unwrap();
    sg.query_drop("delete from ptgt").await.unwrap();
    let ids: Vec<String> = (1..=20).map(|i| format!("({i})")).collect();
    sg.query_drop(format!("insert into ptgt (id) values {}", ids.join(", ")))
        .await
        .unwrap();
    let stmt = sg
        .prep("select count(*) from ptgt where id >= ?")
        .await
        .unwrap();
    let all = count_from(&mut sg, stmt.clone()).await;
    let mut per_shard = 0;
    for shard in ["-80", "80-"] {
        sg.query_drop(format!("use `customer:{shard}`"))
            .await
            .unwrap();
        let n = count_from(&mut sg, stmt.clone()).await;
        let direct: u64 = sg
            .query_first("select count(*) from ptgt")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, direct, "prepared and text agree on shard {shard}");
        per_shard += n;
    }
    assert_eq!(all, 20);
    assert_eq!(per_shard, all, "the shards together hold every row");
    sg.query_drop("use customer").await.unwrap();
    assert_eq!(count_from(&mut sg, stmt).await, all);

    // A table changed under a scatter the tablets run prepared: they
    // prepare it again, and a column that no longer comes as text cells
    // (a string become an integer) runs as text from then on.
    sg.query_drop("drop table if exists pchg").await.unwrap();
    sg.query_drop("create table pchg (id bigint primary key, v varchar(10))")
        .await
        .unwrap();
    sg.query_drop("insert into pchg (id, v) values (1, '10'), (2, '20'), (3, '30'), (4, '40'), (5, '50'), (6, '60')")
        .await
        .unwrap();
    let stmt = sg
        .prep("select v from pchg where id between ? and ?")
        .await
        .unwrap();
    for _ in 0..3 {
        let mut got: Vec<String> = sg.exec(&stmt, (1, 6)).await.unwrap();
        got.sort();
        assert_eq!(got, ["10", "20", "30", "40", "50", "60"]);
    }
    sg.query_drop("alter table pchg modify v int")
        .await
        .unwrap();
    for _ in 0..3 {
        let rows: Vec<mysql_async::Row> = sg.exec(&stmt, (2, 5)).await.unwrap();
        let mut got: Vec<Value> = rows.into_iter().map(|mut r| r.take(0).unwrap()).collect();
        got.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(
            got,
            [
                Value::Int(20),
                Value::Int(30),
                Value::Int(40),
                Value::Int(50)
            ]
        );
    }
    sg.query_drop("alter table pchg modify v varchar(10)")
        .await
        .unwrap();
    let mut got: Vec<String> = sg.exec(&stmt, (5, 9)).await.unwrap();
    got.sort();
    assert_eq!(got, ["50", "60"]);
    // A string again: a text run found every column would come as text
    // cells, and the statement runs prepared on the tablets again.
    let before = shards_status("Com_stmt_execute").await;
    for _ in 0..4 {
        let got: Vec<String> = sg.exec(&stmt, (1, 6)).await.unwrap();
        assert_eq!(got.len(), 6);
    }
    let execs = shards_status("Com_stmt_execute").await - before;
    assert!(
        execs >= 6,
        "{execs} executions for 4 scatters once a string again"
    );
    // A change that keeps the column a string, under a statement the
    // tablets run prepared: the columns the client gets are the new
    // definition's, not those decoded for the old one.
    let stmt = sg
        .prep("select v from pchg where id between ? and ? order by v")
        .await
        .unwrap();
    let length = |rows: &[mysql_async::Row]| rows[0].columns_ref()[0].column_length();
    let before: Vec<mysql_async::Row> = sg.exec(&stmt, (1, 6)).await.unwrap();
    sg.query_drop("alter table pchg modify v varchar(40)")
        .await
        .unwrap();
    let after: Vec<mysql_async::Row> = sg.exec(&stmt, (1, 6)).await.unwrap();
    assert_eq!(after.len(), 6);
    assert_eq!(
        length(&after),
        4 * length(&before),
        "varchar(10) became varchar(40)"
    );
}

/// A transaction that only read gets its COMMIT's OK without a round
/// trip, and the COMMIT still reaches the tablets at once: under
/// SERIALIZABLE its reads locked rows. The session reads a row on shard
/// -80 and commits, then at once runs a 1.5 s statement on shard 80-;
/// meanwhile a writer on -80's tablet gets the row within its 1 s lock
/// wait (a COMMIT held back, say to ride with the connection's next
/// command, would make it time out with 1205: checked on such a build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serializable_read_only_commit_releases_its_locks_at_once() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    a.query_drop("create table if not exists serial_ro (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from serial_ro").await.unwrap();
    // id 1 hashes to -80, 4 to 80-.
    a.query_drop("insert into serial_ro (id, v) values (1, 0), (4, 0)")
        .await
        .unwrap();
    a.query_drop("set session transaction isolation level serializable")
        .await
        .unwrap();
    let mut writer = connect_tablet(300).await;
    writer
        .query_drop("set session innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    for round in 0..2 {
        a.query_drop("begin").await.unwrap();
        let v: Option<i64> = a
            .query_first("select v from serial_ro where id = 1")
            .await
            .unwrap();
        assert_eq!(v, Some(round));
        a.query_drop("commit").await.unwrap();
        let long = a.query_drop("select sleep(1.5) from serial_ro where id = 4");
        let write = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            writer
                .query_drop("update vt_customer.serial_ro set v = v + 1 where id = 1")
                .await
        };
        let (long, write) = tokio::join!(long, write);
        long.unwrap();
        write.unwrap_or_else(|e| panic!("round {round}: the committed read still locks: {e}"));
    }
    a.query_drop("set session transaction isolation level repeatable read")
        .await
        .unwrap();
    a.query_drop("delete from serial_ro").await.unwrap();
}

/// The lookup tables of `lu` hold exactly the rows its rows call for
/// (read through shardgate, against the oracle's copy of `lu`).
async fn lookups_follow(sg: &mut Conn, oracle: &mut Conn, when: &str) {
    let rows: Vec<(u64, String, Option<String>, Option<u64>)> = oracle
        .query("select id, name, tag, code from lu")
        .await
        .unwrap();
    let ksid = |id: u64| {
        let k = Func::Hash.map(&Value::UInt(id)).unwrap().unwrap();
        k.iter().map(|b| format!("{b:02X}")).collect::<String>()
    };
    let mut want_names: Vec<(String, String)> =
        rows.iter().map(|r| (r.1.clone(), ksid(r.0))).collect();
    let mut want_tags: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| Some((r.2.clone()?, ksid(r.0))))
        .collect();
    let mut want_codes: Vec<(u64, u64)> = rows.iter().filter_map(|r| Some((r.3?, r.0))).collect();
    want_names.sort();
    want_tags.sort();
    want_codes.sort();
    let names: Vec<(String, String)> = sg
        .query("select name, hex(keyspace_id) from lu_name_idx order by name, 2")
        .await
        .unwrap();
    let tags: Vec<(String, String)> = sg
        .query("select tag, hex(keyspace_id) from lu_tag_idx order by tag, 2")
        .await
        .unwrap();
    let codes: Vec<(u64, u64)> = sg
        .query("select code, id from commerce.lu_code_idx order by code")
        .await
        .unwrap();
    assert_eq!(names, want_names, "{when}: lu_name_idx");
    assert_eq!(tags, want_tags, "{when}: lu_tag_idx");
    assert_eq!(codes, want_codes, "{when}: lu_code_idx");
}

/// Where a statement went: its (keyspace, shard) per query sent.
async fn sent_to(sg: &mut Conn, sql: &str) -> Vec<(String, String, String)> {
    let rows: Vec<(String, String, String, String)> =
        sg.query(format!("vexplain queries {sql}")).await.unwrap();
    rows.into_iter().map(|r| (r.1, r.2, r.3)).collect()
}

/// Lookup vindexes: reads route by the lookup tables (one sharded by its
/// own vindex, one non-unique, one in the unsharded keyspace), and the
/// owner's INSERTs, UPDATEs and DELETEs keep them, all or nothing.
async fn lookup_vindexes(sg: &mut Conn, oracle: &mut Conn) {
    // The oracle's unique keys stand for the unique lookups.
    let lu = "create table lu (id bigint not null primary key, name varchar(32) not null,
        tag varchar(16), code bigint, v int, unique key (name), unique key (code))";
    for d in [
        "drop table if exists lu",
        "drop table if exists lu_name_idx",
        "drop table if exists lu_tag_idx",
        "drop table if exists commerce.lu_code_idx",
    ] {
        sg.query_drop(d).await.unwrap();
    }
    sg.query_drop(lu).await.unwrap();
    oracle.query_drop("drop table if exists lu").await.unwrap();
    oracle.query_drop(lu).await.unwrap();
    for d in [
        "create table lu_name_idx (name varchar(32) not null primary key, keyspace_id varbinary(16))",
        "create table lu_tag_idx (tag varchar(16) not null, keyspace_id varbinary(16) not null,
            primary key (tag, keyspace_id))",
        "create table commerce.lu_code_idx (code bigint not null primary key, id bigint)",
    ] {
        sg.query_drop(d).await.unwrap();
    }
    let mut rows = Vec::new();
    for i in 1..=40u64 {
        let code = if i % 5 == 0 {
            "NULL".to_string()
        } else {
            (1000 + i).to_string()
        };
        rows.push(format!(
            "({i}, 'n{i}', 't{}', {code}, {})",
            i % 6,
            i * 7 % 10
        ));
    }
    for chunk in rows.chunks(13) {
        let sql = format!(
            "insert into lu (id, name, tag, code, v) values {}",
            chunk.join(", ")
        );
        sg.query_drop(&sql).await.unwrap();
        assert_eq!(sg.affected_rows(), chunk.len() as u64);
        oracle.query_drop(&sql).await.unwrap();
    }
    lookups_follow(sg, oracle, "after the inserts").await;

    // Reads by each lookup, against the oracle.
    let reads = [
        "select * from lu where name = 'n5'",
        "select * from lu where name = 'N5'",
        "select id, v from lu where name in ('n1', 'n2', 'n33', 'none') order by id",
        "select * from lu where tag = 't3' order by id",
        "select count(*), sum(v) from lu where tag = 't1'",
        "select * from lu where code = 1007",
        "select * from lu where code in (1001, 1040, 1039) order by id",
        "select * from lu where name = 'none'",
        "select * from lu where name = 'n6' and v > 100",
    ];
    for (i, sql) in reads.iter().enumerate() {
        compare_by(
            sg,
            oracle,
            &case(*sql, sql.contains("order by")),
            i % 2 == 1,
        )
        .await;
    }
    // A unique lookup's value reaches one shard, after the lookup read on
    // the lookup table's own shard.
    let sent = sent_to(sg, "select * from lu where name = 'n5'").await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].2.contains("lu_name_idx"), "{sent:?}");
    let owner = sent[1].1.clone();
    let k5 = Func::Hash.map(&Value::UInt(5)).unwrap().unwrap();
    assert!(
        shardgate::topo::KeyRange::parse(&owner)
            .unwrap()
            .contains(&k5),
        "{sent:?}"
    );
    let sent = sent_to(sg, "select * from lu where code = 1007").await;
    assert_eq!(
        (sent[0].0.as_str(), sent.len()),
        ("commerce", 2),
        "{sent:?}"
    );
    let plan: Vec<(String,)> = sg
        .query("vexplain plan select * from lu where tag = 't2'")
        .await
        .unwrap();
    assert!(plan[0].0.contains("\"lu_tag\""), "{}", plan[0].0);

    // Writes, each compared by affected rows, then the lookup tables.
    let dmls = [
        "update lu set name = 'renamed5' where id = 5",
        "update lu set v = v + 1 where name = 'n7'",
        "update lu set tag = 'tx' where v > 6",
        "update lu set code = 2002, tag = NULL where name = 'n2'",
        "update lu set code = NULL where code = 1003",
        "delete from lu where name = 'n9'",
        "delete from lu where tag = 't4'",
        "delete from lu where id in (11, 12)",
        // Rows found first (a self-join across shards, a LIMIT over both
        // shards): the lookups follow the write as for any other.
        "update lu x join lu y on y.v = x.v set x.tag = 'tj' where y.id = 14",
        "update lu set code = NULL, v = v + 10 where tag = 't5' order by id limit 2",
        "delete x from lu x join lu y on y.v = x.v + 1 where y.id = 13",
    ];
    for d in dmls {
        same_writes(sg, oracle, d).await;
        lookups_follow(sg, oracle, d).await;
    }
    // Joins on the vindex column run whole on each shard, the lookups
    // of each written table following (its rows read over the join,
    // each once); two tables written at once.
    for d in [
        "update lu x join lu y on y.id = x.id set x.tag = 'tc', x.v = 0 where y.v = 3",
        "update lu x join dt on dt.id = x.id set x.code = NULL, dt.flag = 2 where x.id in (16, 17, 18)",
        "delete x from lu x join lu y on x.id = y.id where y.tag = 't2'",
        "delete x, dt from lu x join dt on dt.id = x.id where x.v = 1 and x.id > 10",
    ] {
        let sent = sent_to(sg, d).await;
        assert!(
            sent.iter().any(|(_, _, q)| {
                let q = q.to_lowercase();
                q.starts_with(&d[..6]) && q.contains(" join ")
            }),
            "{d}: {sent:?}"
        );
        oracle.query_drop(d).await.unwrap();
        lookups_follow(sg, oracle, d).await;
        for table in ["lu", "dt"] {
            let all = format!("select * from {table} order by id");
            compare(sg, oracle, &case(&all, true)).await;
        }
    }
    compare(
        sg,
        oracle,
        &case("select * from lu where name = 'renamed5'", false),
    )
    .await;
    compare(
        sg,
        oracle,
        &case("select * from lu where name = 'n5'", false),
    )
    .await;
    compare(sg, oracle, &case("select * from lu order by id", true)).await;

    // A value a unique lookup holds fails as a duplicate, and nothing of
    // the statement stays: not the other lookups' rows, not its other rows.
    for dup in [
        "insert into lu (id, name, tag, code) values (101, 'fresh', 'tz', 3001), (102, 'n1', 'tz', 3002)",
        "insert into lu (id, name, tag, code) values (103, 'fresh2', 'tz', 1001)",
        "update lu set name = 'n3' where id = 1",
    ] {
        for conn in [&mut *sg, &mut *oracle] {
            let e = conn.query_drop(dup).await.unwrap_err();
            let mysql_async::Error::Server(e) = e else {
                panic!("{dup}: {e:?}")
            };
            assert_eq!(e.code, 1062, "{dup}: {}", e.message);
        }
        lookups_follow(sg, oracle, dup).await;
        compare(sg, oracle, &case("select * from lu order by id", true)).await;
    }
    // A consistent lookup's row whose owner row is gone is taken over.
    let mut shard = connect_tablet(if owner == "-80" { 300 } else { 400 }).await;
    shard
        .query_drop("delete from lu where id = 5")
        .await
        .unwrap();
    oracle
        .query_drop("delete from lu where id = 5")
        .await
        .unwrap();
    let orphan = "insert into lu (id, name, code) values (6000, 'renamed5', 6000)";
    sg.query_drop(orphan).await.unwrap();
    oracle.query_drop(orphan).await.unwrap();
    compare(
        sg,
        oracle,
        &case("select * from lu where name = 'renamed5'", false),
    )
    .await;
    // In a transaction, the lookup rows go with a rollback.
    sg.query_drop("begin").await.unwrap();
    sg.query_drop("insert into lu (id, name, tag, code) values (200, 'rolled', 'tr', 4000)")
        .await
        .unwrap();
    compare_rows_present(sg, "select id from lu where name = 'rolled'", 1).await;
    sg.query_drop("rollback").await.unwrap();
    compare_rows_present(sg, "select id from lu where name = 'rolled'", 0).await;
    // The row deleted behind shardgate's back left its other lookup rows
    // (a plain lookup keeps them, as vtgate's would); without them, every
    // lookup table again holds what the rows call for, the taken-over
    // name included.
    let k5: String = k5.iter().map(|b| format!("{b:02x}")).collect();
    sg.query_drop(format!(
        "delete from lu_tag_idx where tag = 't5' and keyspace_id = X'{k5}'"
    ))
    .await
    .unwrap();
    sg.query_drop("delete from commerce.lu_code_idx where code = 1005")
        .await
        .unwrap();
    lookups_follow(sg, oracle, "after the takeover and the rollback").await;
    // A lookup column set to an expression over the row: the new values
    // are read with the rows.
    for d in [
        "update lu set name = concat(name, 'x'), v = v + 1 where id in (21, 23, 24)",
        "update lu set code = code + 1000, tag = concat('t', v) where tag = 't1' and id > 20",
        "update lu x join lu y on y.id = x.id set x.tag = concat(x.tag, 'u') where y.v > 5 and y.id > 20",
    ] {
        same_writes(sg, oracle, d).await;
        lookups_follow(sg, oracle, d).await;
    }
    compare(sg, oracle, &case("select * from lu order by id", true)).await;
    // INSERT IGNORE and upserts: a row whose unique lookup value another
    // row holds is left out, as the oracle's unique key leaves it out.
    // The last one is left out by its third lookup, after the first two
    // added its rows: those stay behind, as vtgate leaves them (checked
    // after the others).
    for upsert in [
        "insert ignore into lu (id, name, tag, code) values (300, 'n1', 'ta', 7001), (301, 'ig1', 'ta', 7002)",
        "insert into lu (id, name, tag, code, v) values (303, 'up1', 'tc', 7003, 1), (1, 'n1', 'tx', 1001, 99) on duplicate key update v = values(v)",
        "insert ignore into lu (id, name, tag, code) values (302, 'ig2', 'tb', 1001)",
    ] {
        if upsert.contains("302") {
            lookups_follow(sg, oracle, "after the upserts").await;
        }
        same_writes(sg, oracle, upsert).await;
    }
    compare(sg, oracle, &case("select * from lu order by id", true)).await;
    // Statements that would need lookup rows shardgate cannot write.
    refused(
        sg,
        "replace into lu (id, name) values (300, 'x')",
        1235,
        &["owns lookup vindexes"],
        true,
    )
    .await;
    refused(
        sg,
        "insert into lu (id, name) values (1, 'x') on duplicate key update name = 'y'",
        1235,
        &["lookup vindex column 'name'"],
        true,
    )
    .await;
    // One that reads a column the UPDATE sets before it would read the
    // new value in MySQL: refused.
    refused(
        sg,
        "update lu set v = 5, name = concat(name, v) where id = 1",
        1235,
        &["columns the UPDATE sets before it"],
        true,
    )
    .await;
}

/// How many rows `sql` returns through shardgate must be `n`.
async fn compare_rows_present(sg: &mut Conn, sql: &str, n: usize) {
    let rows: Vec<mysql_async::Row> = sg.query(sql).await.unwrap();
    assert_eq!(rows.len(), n, "{sql}");
}

/// A pinned table lives on the one shard its keyspace id names: its rows
/// are written there and every read goes there alone.
async fn pinned_tables(sg: &mut Conn, oracle: &mut Conn) {
    let ddl = "create table pin (id int primary key, v varchar(8))";
    sg.query_drop("drop table if exists pin").await.unwrap();
    sg.query_drop(ddl).await.unwrap();
    oracle.query_drop("drop table if exists pin").await.unwrap();
    oracle.query_drop(ddl).await.unwrap();
    for sql in [
        "insert into pin (id, v) values (1, 'a'), (2, 'b'), (3, 'c')",
        "update pin set v = 'bb' where id = 2",
        "delete from pin where id = 3",
    ] {
        same_writes(sg, oracle, sql).await;
    }
    assert_eq!(placement_count(300, "pin").await, 0);
    assert_eq!(placement_count(400, "pin").await, 2);
    compare(sg, oracle, &case("select * from pin order by id", true)).await;
    compare(
        sg,
        oracle,
        &case("select count(*) from pin where v like 'b%'", false),
    )
    .await;
    let sent = sent_to(sg, "select * from pin").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, "80-", "{sent:?}");
}

/// How many rows `table` holds on tablet `uid`.
async fn placement_count(uid: u32, table: &str) -> u64 {
    let mut t = connect_tablet(uid).await;
    number(&mut t, &format!("select count(*) from {table}")).await
}

/// Under NO_BACKSLASH_ESCAPES a backslash in a string is itself: values
/// shardgate writes back into SQL (a nested loop's join variables,
/// run-first answers, tables of constants, lookup rows) are quoted so.
async fn no_backslash_escapes(sg: &mut Conn, oracle: &mut Conn) {
    let mut setup = vec![
        "drop table if exists nb1".to_string(),
        "drop table if exists nb2".to_string(),
        "create table nb1 (id int primary key, s varchar(16))".to_string(),
        "create table nb2 (id int primary key, s varchar(16))".to_string(),
        "set sql_mode = concat(@@sql_mode, ',NO_BACKSLASH_ESCAPES')".to_string(),
    ];
    let values = [r"a\b", r"a\\b", r"c\", r"it''s\n", "plain"];
    for (i, v) in values.iter().enumerate() {
        setup.push(format!(
            "insert into nb1 (id, s) values ({i}, '{v}'), ({}, '{v}x')",
            i + 10
        ));
        setup.push(format!(
            "insert into nb2 (id, s) values ({}, '{v}'), ({}, 'y{v}')",
            i + 20,
            i + 30
        ));
    }
    setup.push(r"insert into lu (id, name) values (700, 'x\y'), (701, 'x\\y')".to_string());
    // Two statements in one query, the first ending in a backslash string.
    setup.push(
        r"insert into nb1 (id, s) values (50, 'z\'); insert into nb1 (id, s) values (51, 'w')"
            .to_string(),
    );
    for sql in &setup {
        sg.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        oracle
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for (sql, ordered) in [
        (
            "select nb1.id, nb2.id, nb1.s from nb1 join nb2 on nb1.s = nb2.s order by nb1.id",
            true,
        ),
        (
            "select id, s from nb1 where s in (select s from nb2 where id < 30) order by id",
            true,
        ),
        (
            "select t.s, t.c from (select s, count(*) as c from nb2 group by s) as t order by t.s",
            true,
        ),
        (r"select id, name from lu where name = 'x\y'", false),
        (
            "select id, s from nb1 where id in (50, 51) order by id",
            true,
        ),
        (
            r"select id, name from lu where name in ('x\\y', 'none')",
            false,
        ),
    ] {
        compare(sg, oracle, &case(sql, ordered)).await;
    }
    let n: Vec<(i64,)> = sg
        .query(r"select id from lu where name = 'x\y'")
        .await
        .unwrap();
    assert_eq!(n, vec![(700,)]);
    for sql in [
        "delete from lu where id in (700, 701)",
        "set sql_mode = replace(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
    ] {
        sg.query_drop(sql).await.unwrap();
        oracle.query_drop(sql).await.unwrap();
    }
    // Their lookup rows went with them.
    let left: u64 = number(sg, "select count(*) from lu_name_idx where name like 'x%y'").await;
    assert_eq!(left, 0);
}

/// ROW_COUNT() is the session's: the last statement's affected rows over
/// every shard it reached (-1 after a result set or an error), whichever
/// tablet connection asks.
async fn row_counts(sg: &mut Conn, oracle: &mut Conn) {
    for (sql, prepared) in [
        (
            "insert into nb1 (id, s) values (100, 'r'), (101, 'r'), (102, 'r'), (103, 'r')",
            false,
        ),
        ("update nb1 set s = 'q' where id >= 100", false),
        ("update nb1 set s = 'q' where id >= 100", true),
        ("delete from nb1 where id = 100", false),
        ("select * from nb1 where id > 100", false),
        ("insert into nb1 (id, s) values (101, 'dup')", false),
        ("update nb1 set s = 'p' where id in (101, 102)", true),
        ("select row_count()", false),
    ] {
        for conn in [&mut *sg, &mut *oracle] {
            let res = if prepared {
                conn.exec_drop(sql, ()).await
            } else {
                conn.query_drop(sql).await
            };
            assert_eq!(res.is_ok(), !sql.contains("dup"), "{sql}: {res:?}");
        }
        let mut counts = Vec::new();
        for conn in [&mut *sg, &mut *oracle] {
            counts.push(number::<i64>(conn, "select row_count()").await);
        }
        assert_eq!(counts[0], counts[1], "row_count() after {sql}");
    }
}

/// vtgate's SHOW VSCHEMA VINDEXES (every keyspace's, or one table's
/// column vindexes) and SHOW VITESS_TARGET, answered from the topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vschema_vindexes_and_the_target_are_shown() {
    apply_test_vschema().await;
    let mut sg = connect(Some("customer")).await;
    let all = rows(&mut sg, "show vschema vindexes").await;
    let lookup = [
        "customer",
        "lu_tag",
        "lookup",
        "from=tag; ignore_nulls=true; table=customer.lu_tag_idx; to=keyspace_id",
        "lu",
    ]
    .map(|c| Some(c.to_string()));
    assert!(all.contains(&lookup.to_vec()), "{all:?}");
    let on = rows(&mut sg, "show vschema vindexes on lu").await;
    let first: Vec<Option<String>> = ["id", "hash", "hash", "", ""]
        .map(|c| Some(c.to_string()))
        .to_vec();
    assert_eq!(on.len(), 4, "{on:?}");
    assert_eq!(on[0], first);
    assert_eq!(
        on[1][..3],
        [
            Some("name".into()),
            Some("lu_name".into()),
            Some("consistent_lookup_unique".into())
        ]
    );
    assert_eq!(
        rows(&mut sg, "show vschema vindexes from customer.lu").await,
        on
    );
    assert!(rows(&mut sg, "show vschema vindexes on commerce.product")
        .await
        .is_empty());
    let err = sg
        .query_drop("show vschema vindexes on nosuch")
        .await
        .unwrap_err();
    assert_eq!(err_code(&err), Some(1146), "{err}");
    assert_eq!(
        rows(&mut sg, "show vitess_target").await,
        [[Some("customer".to_string())]]
    );
    sg.query_drop("use `customer@replica`").await.unwrap();
    assert_eq!(
        rows(&mut sg, "show vitess_target").await,
        [[Some("customer@replica".to_string())]]
    );
    let mut anon = connect(None).await;
    assert_eq!(
        rows(&mut anon, "show vitess_target").await,
        [[Some(String::new())]]
    );
}

/// Queries of information_schema name a keyspace by its name (as vtgate
/// lets them, and as ORMs ask with `table_schema = database()`): that
/// keyspace's tablet answers, on a sharded keyspace any one shard; the
/// columns that hold a schema's name name the keyspace again (vtgate shows
/// the tablet's `vt_` database, and TypeORM, finding no table of the name
/// it asked for, makes it again at its next start and fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_schema_names_keyspaces() {
    let mut sg = connect(Some("customer")).await;
    let names: Vec<String> = sg
        .query(
            "select table_name from information_schema.tables \
             where table_schema = 'customer' and table_name in ('customer', 'corder') order by table_name",
        )
        .await
        .unwrap();
    assert_eq!(names, ["corder", "customer"]);
    let n: u64 = number(
        &mut sg,
        "select count(*) from information_schema.columns \
         where table_schema = database() and table_name = 'corder'",
    )
    .await;
    assert_eq!(n, 4, "corder's columns");
    // Another keyspace's, named from this one; prepared, the values come
    // as parameters.
    let n: u64 = sg
        .exec_first(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            ("commerce", "product"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1, "commerce.product");
    let mut c = connect(Some("commerce")).await;
    let schemas: Vec<String> = c
        .query("select schema_name from information_schema.schemata where schema_name in ('customer', 'nope')")
        .await
        .unwrap();
    assert_eq!(schemas, ["customer"]);
    let rows: Vec<(String, String, String, String)> = sg
        .query(
            "select t.table_schema, t.table_name, k.constraint_schema, k.table_schema as ts              from information_schema.tables t join information_schema.key_column_usage k              on k.table_schema = t.table_schema and k.table_name = t.table_name              where t.table_schema = 'customer' and t.table_name = 'corder'",
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(
            (r.0.as_str(), r.2.as_str(), r.3.as_str()),
            ("customer", "customer", "customer"),
            "{r:?}"
        );
    }
    // A name that is no keyspace goes down as written.
    let n: u64 = number(
        &mut c,
        "select count(*) from information_schema.tables where table_schema = 'information_schema' and table_name = 'TABLES'",
    )
    .await;
    assert_eq!(n, 1);
}

/// Savepoints in a transaction over several shards: set on every shard
/// the transaction has reached and on each it reaches later, so ROLLBACK
/// TO undoes exactly what followed the savepoint, wherever it ran.
async fn savepoints(sg: &mut Conn, oracle: &mut Conn) {
    let script = [
        "begin",
        "savepoint early",
        "insert into nb2 (id, s) values (200, 'a')",
        "savepoint s1",
        "insert into nb2 (id, s) values (201, 'b'), (202, 'c'), (203, 'd'), (204, 'e')",
        "update nb2 set s = 'changed' where id = 200",
        "savepoint s2",
        "delete from nb2 where id in (201, 202)",
        "rollback to savepoint s1",
        "insert into nb2 (id, s) values (205, 'f'), (206, 'g')",
        "savepoint S3",
        "update nb2 set s = 'later' where id >= 205",
        "rollback to s3",
        "release savepoint s1",
        "commit",
        // Autocommit: a savepoint is forgotten at once.
        "savepoint lone",
    ];
    for sql in script {
        sg.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        oracle.query_drop(sql).await.unwrap();
    }
    for missing in ["rollback to s2", "release savepoint lone"] {
        for conn in [&mut *sg, &mut *oracle] {
            let e = conn.query_drop(missing).await.unwrap_err();
            assert_eq!(err_code(&e), Some(1305), "{missing}: {e}");
        }
    }
    compare(
        sg,
        oracle,
        &case("select * from nb2 where id >= 200 order by id", true),
    )
    .await;
    let n: u64 = number(sg, "select count(*) from nb2 where id >= 200").await;
    assert_eq!(n, 3, "200, 205 and 206");
}

/// A join of a sharded table with another keyspace's table: a nested loop
/// whose right side runs on that keyspace's tablet (the oracle holds the
/// table in a database of the keyspace's name).
async fn cross_keyspace_joins(sg: &mut Conn, oracle: &mut Conn) {
    oracle
        .query_drop("create database if not exists commerce")
        .await
        .unwrap();
    on_both(
        sg,
        oracle,
        &[
            "drop table if exists commerce.xk",
            "create table commerce.xk (k int primary key, label varchar(16))",
            "insert into commerce.xk (k, label) values (-3, 'minus three'), (0, 'zero'), (1, 'one'), (2, 'two'), (5, 'five'), (7, 'seven')",
        ],
    )
    .await;
    let cases = [
        case("select dt.id, x.label from dt join commerce.xk x on x.k = dt.k where dt.id < 60 order by dt.id", true),
        case("select x.label, count(*), sum(dt.big) from commerce.xk x join dt on dt.k = x.k group by x.label order by x.label", true),
        case("select dt.id, x.label from dt left join commerce.xk x on x.k = dt.k where dt.id < 25 order by dt.id", true),
        case("select dt.id, nb1.s, x.label from dt join nb1 on nb1.id = dt.k join commerce.xk x on x.k = dt.k where dt.id < 40", false),
        // Uncorrelated subqueries over the other keyspace's table run
        // there first.
        case("select id, k from dt where k in (select k from commerce.xk) and id < 100 order by id", true),
        case("select count(*), sum(big) from dt where k = (select max(k) from commerce.xk where k < 7)", true),
        case("select id, (select count(*) from commerce.xk) from dt where id < 8 order by id", true),
        case("select id from dt where exists (select 1 from commerce.xk where xk.k = 7) and id < 12 order by id", true),
        case("select id from dt where k not in (select k from commerce.xk where k > 0) and id < 30 order by id", true),
        case("select dt.id from dt where exists (select 1 from commerce.xk x where x.k = dt.k) and dt.id < 50 order by dt.id", true),
        // ... and the other way: the other keyspace's rows, kept by a
        // correlated EXISTS over this keyspace's.
        case("select x.k, x.label from commerce.xk x where exists (select 1 from dt where dt.k = x.k and dt.id < 300) order by x.k", true),
        case("select x.k from commerce.xk x where x.k not in (select dt.k from dt where dt.id = x.k + 1000) order by 1", true),
    ];
    for (i, c) in cases.iter().enumerate() {
        compare_by(sg, oracle, c, i % 2 == 1).await;
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
    }
}

/// An UPDATE or DELETE whose subqueries read another keyspace's tables
/// (an unsharded table written from the sharded keyspace's rows, a
/// sharded table from the unsharded one's): the subqueries run first
/// where their tables are, the write where its table is; the same rows
/// change as on the oracle, also where a subquery reads the table
/// written (MariaDB answers it from the rows before the write). Runs
/// after `cross_keyspace_joins`, on its table.
async fn writes_with_subqueries_elsewhere(sg: &mut Conn, oracle: &mut Conn) {
    let writes = [
        "update commerce.xk set label = (select max(name) from dt where k = 2) where k = 2",
        "update commerce.xk set label = 'some dt' where k in (select k from dt where id < 40)",
        "update commerce.xk set label = concat(label, '+') where k not in (select k from dt where k is not null) or k = 7",
        "delete from commerce.xk where k = (select min(k) from dt where k > 0 and id < 100)",
        "delete from commerce.xk where exists (select 1 from dt where id = 3) and k < 0",
        "update dt set flag = 1 - flag where k in (select k from commerce.xk where k > 0) and id < 200",
        "update dt set big = (select count(*) from commerce.xk) where id < 30",
        "delete from dt where id > 1000 and k in (select k from commerce.xk)",
        // A SET value over other shards' rows is read first; one through
        // the row's vindex column stays on the row's shard.
        "update dt set big = (select count(*) from dt where k = 3) where id < 40",
        "update dt set big = (select count(*) + 7 from dt d2 where d2.id = dt.id) where id < 60",
    ];
    // Each changed something somewhere or was meant to: the tables agree
    // after each.
    writes_agree(
        sg,
        oracle,
        &writes,
        &[
            "select k, label from commerce.xk order by k",
            "select id, flag, big from dt where id < 200 order by id",
        ],
    )
    .await;
    let changed: Vec<(i32, String)> = oracle
        .query("select k, label from commerce.xk where label in ('some dt') or label like '%+'")
        .await
        .unwrap();
    assert!(
        !changed.is_empty(),
        "the writes changed nothing on the oracle"
    );
    // A subquery reading the table written answers from the rows before
    // the write, as MariaDB's does.
    for sql in [
        "update dt set big = big + 1 where k = (select k from dt where id = 5) and id < 100",
        "delete from dt where id > 100000 and k in (select k from dt where id = 5)",
    ] {
        same_writes(sg, oracle, sql).await;
    }
    compare(
        sg,
        oracle,
        &case("select id, big from dt order by id", true),
    )
    .await;
}

/// UPDATE and DELETE whose rows no one route finds (vtgate's
/// DMLWithInput): multi-table writes joining tables on different shards,
/// and an ORDER BY ... LIMIT over both shards. Their rows are found first,
/// by the written table's primary key (one column for `wa`, two for
/// `wb`), then written; the tables and the rows affected match the
/// oracle's after each.
async fn writes_that_find_their_rows_first(sg: &mut Conn, oracle: &mut Conn) {
    for conn in [&mut *sg, &mut *oracle] {
        for sql in [
            "drop table if exists wa",
            "drop table if exists wb",
            "create table wa (id bigint primary key, k int, v int)",
            "create table wb (a bigint, b int, v int, primary key (a, b))",
        ] {
            conn.query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let wa: Vec<String> = (1..=60).map(|i| format!("({i}, {}, {i})", i % 7)).collect();
        let wb: Vec<String> = (1..=30)
            .flat_map(|a| (1..=3).map(move |b| format!("({a}, {b}, {})", a * b)))
            .collect();
        conn.query_drop(format!(
            "insert into wa (id, k, v) values {}",
            wa.join(", ")
        ))
        .await
        .unwrap();
        conn.query_drop(format!("insert into wb (a, b, v) values {}", wb.join(", ")))
            .await
            .unwrap();
    }
    // Without a column list, the columns schema tracking learned, in
    // order; a row of another width is MariaDB's error.
    for sql in [
        "insert into wa values (1001, 3, 4), (1002, 4, 5)",
        "insert into wb values (1001, 1, 7)",
    ] {
        same_writes(sg, oracle, sql).await;
    }
    for sql in [
        "insert into wa values (1003, 1)",
        "insert into wb values (1001, 2, 7), (1002, 3)",
    ] {
        errors_agree(sg, oracle, sql).await;
    }
    // An upsert that sets every column, the vindex column to the new
    // row's value as ORMs write it (the row stays on its shard); one that
    // would move the row is refused.
    same_writes(
        sg,
        oracle,
        "insert into wb (a, b, v) values (1, 1, 100), (2, 2, 200), (1001, 5, 5) \
         on duplicate key update a = values(a), b = values(b), v = values(v)",
    )
    .await;
    compare(sg, oracle, &case("select * from wb order by a, b", true)).await;
    refused(
        sg,
        "insert into wb (a, b, v) values (1, 1, 1) on duplicate key update a = a + 1",
        1235,
        &["vindex column 'a'"],
        false,
    )
    .await;
    let writes = [
        "delete wa from wa join wb on wb.v = wa.k where wb.b = 2 and wa.id < 20",
        "update wa join wb on wb.a = wa.k set wa.v = wa.v + 100 where wb.b = 3",
        "update wa x join wb on wb.a = x.k set x.v = x.v * 2, x.k = x.k + 10 where wb.v > 5",
        "delete from wa where k = 1 order by id desc limit 3",
        "update wa set v = -v where k = 3 order by id limit 2",
        "delete from wb where b = 1 order by a limit 4",
        "update wb set v = 0 where v > 50 order by v desc, a limit 5",
        "delete wb from wb join wa on wa.k = wb.a where wa.id > 40",
        "delete x from wa x, wb where wb.a = x.v and wb.b = 2 and x.id > 30",
        "delete from wa where k = 99 limit 1",
        // Values read from the other table come with the keys; each row
        // gets its own.
        "update wa join wb on wb.a = wa.k and wb.b = 2 set wa.v = wb.v",
        "update wa x join wb on wb.a = x.id and wb.b = 3 set x.v = wb.v * 10 + x.v, x.k = x.k + wb.b where x.id < 50",
        "update wa join wb on wb.a = wa.k and wb.b = 1 set wa.v = concat(wb.v, '7') where wa.id > 20",
        "update wa join wb on wb.a = wa.k set wa.v = wb.v where wb.a > 1000",
        // Correlated subqueries over other shards' rows, in a value and in
        // the WHERE clause of a one-table write.
        "update wa set v = (select count(*) + sum(wb.b) from wb where wb.a = wa.k) where wa.id < 30",
        "delete from wa where exists (select 1 from wb where wb.a = wa.k and wb.b = 3) and wa.id > 45",
        "update wa set k = k + 1 where k not in (select wb.b from wb where wb.a = wa.id) and wa.id between 20 and 40",
        // An uncorrelated ANY (its rows read first; once a 1064 at the
        // gate), a correlated ALL by a column that is no vindex (ranked
        // per row).
        "update wa set v = v + 1 where k = some (select wb.b from wb where wb.v > 5)",
        "delete from wa where k > all (select wb.b from wb where wb.v = wa.v) and wa.id > 40",
        // A subquery's bare name of the written table (`k`, `id`: wb has
        // no such columns): correlated, as MariaDB reads it (the subquery
        // ran alone, and its tablet knew no `k`: 1054).
        "delete from wa where v < (select max(wb.v) from wb where wb.a = k) and wa.id > 50",
        "update wa set v = (select min(wb.v) from wb where wb.b = k) where id between 5 and 15",
        // MySQL's comma form of a multi-table UPDATE (a cross join): on
        // the vindex columns it runs whole, else its rows are found first.
        "update wa, wb set wa.v = wa.v + 1, wb.v = wb.v + 2 where wb.a = wa.id and wb.b = 2",
        "update wa x, wb set x.v = wb.v where wb.a = x.k and wb.b = 1 and x.id < 30",
        // Two tables written: every table's rows are found before the
        // first is written; the rows changed add up.
        "update wa join wb on wb.a = wa.k set wa.v = wa.v + 1, wb.v = wb.v - 1 where wb.b = 2",
        "update wa x join wb on wb.a = x.id set wb.v = 7, x.k = 5 where wb.b < 3 and x.id > 25",
        "delete wa, wb from wa join wb on wb.a = wa.k where wb.b = 3 and wa.id between 10 and 40",
        "delete y, x from wa x join wb y on y.a = x.id where x.v > 30",
    ];
    writes_agree(
        sg,
        oracle,
        &writes,
        &[
            "select * from wa order by id",
            "select * from wb order by a, b",
        ],
    )
    .await;
    let left: Vec<(i64,)> = oracle.query("select id from wa").await.unwrap();
    assert!(left.len() < 50, "the writes deleted little: {}", left.len());
    // A VALUES row's subquery over the sharded tables reads all their
    // rows (the row's shard read its own alone: one shard's max); in an
    // upsert's assignment it is refused.
    same_writes(
        sg,
        oracle,
        "insert into wa (id, k, v) values (3001, (select max(v) from wb), (select count(*) from wb where b = 2)), (3002, 1, (select min(a) from wb))",
    )
    .await;
    compare(
        sg,
        oracle,
        &case("select * from wa where id > 3000 order by id", true),
    )
    .await;
    refused(
        sg,
        "insert into wa (id, k, v) values (3001, 1, 1) on duplicate key update v = (select max(v) from wb)",
        1235,
        &["ON DUPLICATE KEY UPDATE"],
        false,
    )
    .await;
    // A multi-table DELETE whose subquery reads a table it deletes from:
    // MariaDB's refusal, word for word (its single-table form runs).
    errors_agree(
        sg,
        oracle,
        "delete x from wa x where x.k in (select wa.k from wa where wa.id = 3)",
    )
    .await;
    // An INSERT ... SELECT across shards is all or nothing: the second
    // fails on a duplicate key on one shard, and no shard keeps its rows.
    same_writes(
        sg,
        oracle,
        "insert into wa select id + 2000, k, v from wa where id < 60",
    )
    .await;
    assert!(sg.affected_rows() > 3, "{}", sg.affected_rows());
    same_writes(sg, oracle, "insert into wa values (5000, 1, 1)").await;
    let again =
        "insert into wa select if(id = 5000, 5000, id + 3000), k, v from wa where id < 60 or id = 5000";
    fails_on_both(sg, oracle, again, 1062).await;
    compare(sg, oracle, &case("select * from wa order by id", true)).await;
    // So is a plain INSERT whose rows go to both shards.
    let again = format!(
        "insert into wa values {}, (5000, 2, 2)",
        (6001..6009)
            .map(|i| format!("({i}, 1, 1)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    fails_on_both(sg, oracle, &again, 1062).await;
    compare(sg, oracle, &case("select * from wa order by id", true)).await;
    // In a transaction, the rows found are the write's, and a rollback
    // undoes it.
    sg.query_drop("begin").await.unwrap();
    sg.query_drop("delete from wa order by id limit 5")
        .await
        .unwrap();
    assert_eq!(sg.affected_rows(), 5);
    sg.query_drop("rollback").await.unwrap();
    compare(sg, oracle, &case("select * from wa order by id", true)).await;
    // Two tables written in a transaction: a rollback undoes both.
    sg.query_drop("begin").await.unwrap();
    sg.query_drop("delete wa, wb from wa join wb on wb.a = wa.k")
        .await
        .unwrap();
    assert!(sg.affected_rows() > 0);
    sg.query_drop("rollback").await.unwrap();
    compare(sg, oracle, &case("select * from wa order by id", true)).await;
    compare(sg, oracle, &case("select * from wb order by a, b", true)).await;
    // Two tables whose values read each other's are refused.
    refused(
        sg,
        "update wa join wb on wb.a = wa.k set wa.v = 1, wb.v = wa.v",
        1235,
        &["values read from another table"],
        false,
    )
    .await;
}

/// WITH RECURSIVE across shards, computed at the gate round by round (a
/// tree's nodes hashed apart by id, each round's rows on both shards).
async fn recursive_with(sg: &mut Conn, oracle: &mut Conn) {
    for conn in [&mut *sg, &mut *oracle] {
        for sql in [
            "drop table if exists tree",
            "create table tree (id bigint primary key, parent bigint, name varchar(16))",
        ] {
            conn.query_drop(sql).await.unwrap();
        }
        let rows: Vec<String> = (1..=40)
            .map(|i| match i {
                1 => "(1, NULL, 'root')".to_string(),
                i => format!("({i}, {}, 'node{i}')", i / 3 + 1),
            })
            .collect();
        conn.query_drop(format!(
            "insert into tree (id, parent, name) values {}",
            rows.join(", ")
        ))
        .await
        .unwrap();
    }
    let below = "with recursive sub as (select id, parent, name, 0 as lvl from tree where id = 2 \
        union all select t.id, t.parent, t.name, sub.lvl + 1 from tree t join sub on t.parent = sub.id)";
    let cases = [
        case(format!("{below} select * from sub order by id"), true),
        case(format!("{below} select lvl, count(*), max(name) from sub group by lvl order by lvl"), true),
        case(format!("{below} select tree.name, sub.lvl from sub join tree on tree.id = sub.parent order by sub.id"), true),
        case("with recursive up (id, parent, lvl) as (select id, parent, 0 from tree where id = 38 \
            union all select t.id, t.parent, up.lvl + 1 from tree t join up on t.id = up.parent) \
            select id, lvl from up order by lvl", true),
        // UNION: a row found before is neither kept nor followed again.
        case("with recursive r as (select parent as p from tree where id in (30, 31, 32, 35) \
            union select t.parent from tree t join r on t.id = r.p) select p from r order by p", true),
        // No tables: a counter, and one MariaDB stops after 1000 rounds.
        case("with recursive c (n) as (select 1 union all select n + 1 from c where n < 25) select sum(n), count(*) from c", false),
        case("with recursive c (n) as (select 1 union all select n + 1 from c) select count(*), max(n) from c", false),
    ];
    for c in &cases {
        compare(sg, oracle, c).await;
    }
    for c in cases.iter().take(2) {
        compare_by(sg, oracle, c, true).await;
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(rows.len() > 3, "{}", c.sql);
    }
    // A step whose columns differ from the seed's is MariaDB's error.
    let sql = "with recursive r as (select id from tree where id = 1 \
        union all select t.id, t.name from tree t join r on t.parent = r.id) select * from r";
    let e = sg.query_drop(sql).await.unwrap_err();
    assert_eq!(err_code(&e), Some(1222), "{e}");
}

/// With no keyspace selected, an unqualified table is the keyspace's
/// whose VSchema lists it (vtgate's global routing), and a statement that
/// names tables of two keyspaces joins them. The oracle holds both tables
/// in one database; a session on `commerce` naming `customer.dt` gets the
/// same rows.
async fn global_routing(oracle: &mut Conn) {
    let mut vschema: serde_json::Value =
        serde_json::from_str(shardgate::local::COMMERCE_VSCHEMA).unwrap();
    vschema["tables"]["gx"] = serde_json::json!({});
    apply_listing("commerce", &vschema, "gx", true).await;
    let mut anon = connect(None).await;
    for (conn, table) in [(&mut anon, "commerce.gx"), (&mut *oracle, "gx")] {
        for sql in [
            format!("drop table if exists {table}"),
            format!("create table {table} (k int primary key, label varchar(16))"),
            format!("insert into {table} (k, label) values (-4, 'minus four'), (0, 'zero'), (3, 'three'), (6, 'six'), (9, 'nine')"),
        ] {
            conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    let cases = [
        case("select count(*), sum(big) from dt where k > 0", true),
        case("select label from gx order by k", true),
        case("select dt.id, gx.label from dt join gx on gx.k = dt.k where dt.id < 80 order by dt.id", true),
        case("select gx.label, count(*), max(dt.id) from gx join dt on dt.k = gx.k group by gx.label order by gx.label", true),
        case("select d.id, g.label from dt d left join gx g on g.k = d.k where d.id < 30 order by d.id",
            true,
        ),
        // A derived table grouped across shards runs first; joined with
        // the other keyspace's table, the rest runs there.
        case("select t.k, t.n, gx.label from (select k, count(*) as n from dt group by k order by k limit 30) t join gx on gx.k = t.k order by t.k", true),
        // The other keyspace's rows kept: it is the left side.
        case(
            "select g.label, d.id from gx g left join dt d on d.k = g.k and d.id < 40 order by g.label, d.id", true),
    ];
    for (i, c) in cases.iter().enumerate() {
        compare_by(&mut anon, oracle, c, false).await;
        compare_by(&mut anon, oracle, c, true).await;
        let rows: Vec<mysql_async::Row> = oracle.query(&c.sql).await.unwrap();
        assert!(!rows.is_empty(), "{}", c.sql);
        // From the unsharded keyspace, the sharded table qualified.
        if i >= 2 {
            let mut on_commerce = connect(Some("commerce")).await;
            let qualified = c
                .sql
                .replace("from dt ", "from customer.dt ")
                .replace("join dt ", "join customer.dt ")
                .replace("from dt d ", "from customer.dt d ");
            let a = cells_by(&mut on_commerce, &qualified, i % 2 == 0)
                .await
                .unwrap();
            let b = cells_by(&mut anon, &c.sql, i % 2 == 0).await.unwrap();
            assert_eq!(a, b, "{qualified}");
        }
    }
    // INSERT ... SELECT from the sharded keyspace into the unsharded one:
    // the SELECT first, its rows the INSERT's values there.
    let mut on_customer = connect(Some("customer")).await;
    on_customer
        .query_drop(
            "insert into commerce.gx (k, label) select id + 1000, name from dt where id < 6",
        )
        .await
        .unwrap();
    let inserted = on_customer.affected_rows();
    oracle
        .query_drop("insert into gx (k, label) select id + 1000, name from dt where id < 6")
        .await
        .unwrap();
    assert_eq!(inserted, oracle.affected_rows());
    assert!(inserted > 0);
    compare_by(
        &mut anon,
        oracle,
        &case("select k, label from gx order by k", true),
        false,
    )
    .await;
    for conn in [&mut anon, &mut *oracle] {
        conn.query_drop("delete from gx where k >= 1000")
            .await
            .unwrap();
    }
    // Writes too: the sharded table's keyspace, found by its name.
    same_writes(
        &mut anon,
        oracle,
        "update dt set amount = amount + 1 where k = 3",
    )
    .await;
    compare_by(
        &mut anon,
        oracle,
        &case("select id, amount from dt where k = 3 order by id", true),
        false,
    )
    .await;
    routing_rules(oracle).await;
    // VEXPLAIN names both keyspaces' routes.
    let plan: String = number(
        &mut anon,
        "vexplain plan select dt.id, gx.label from dt join gx on gx.k = dt.k",
    )
    .await;
    assert!(
        plan.contains("\"commerce\"") && plan.contains("\"customer\""),
        "{plan}"
    );
    reference_sources(oracle).await;
}

/// A reference table naming its source in another keyspace (as vtgate's
/// `source`): a join with the source from the sharded keyspace reads the
/// local copy (one route), and a write to the copy goes to the source.
async fn reference_sources(oracle: &mut Conn) {
    let mut vschema: serde_json::Value = serde_json::from_str(VSCHEMA).unwrap();
    vschema["tables"]["gxr"] = serde_json::json!({"type": "reference", "source": "commerce.gx"});
    apply_listing("customer", &vschema, "gxr", true).await;
    // The copy on each shard, as Materialize would keep it.
    for shard in ["customer:-80", "customer:80-"] {
        let mut on_shard = connect(Some(shard)).await;
        for sql in [
            "drop table if exists gxr",
            "create table gxr (k int primary key, label varchar(16))",
            "insert into gxr select * from (select -4 k, 'minus four' label union all select 0, 'zero' union all select 3, 'three' union all select 6, 'six' union all select 9, 'nine') t",
        ] {
            on_shard.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    let mut anon = connect(None).await;
    let join =
        "select dt.id, gx.label from dt join gx on gx.k = dt.k where dt.id < 80 order by dt.id";
    compare_by(&mut anon, oracle, &case(join, true), false).await;
    let plan: String = number(&mut anon, &format!("vexplain plan {join}")).await;
    assert!(
        !plan.contains("\"Join\"") && !plan.contains("commerce") && plan.contains("gxr"),
        "{plan}"
    );
    // A write to the copy goes to the source.
    let mut on_customer = connect(Some("customer")).await;
    on_customer
        .query_drop("insert into gxr (k, label) values (12, 'twelve')")
        .await
        .unwrap();
    let n: u64 = number(&mut anon, "select count(*) from commerce.gx where k = 12").await;
    assert_eq!(n, 1, "the source has the row");
    let mut on_shard = connect(Some("customer:80-")).await;
    let n: u64 = number(&mut on_shard, "select count(*) from gxr where k = 12").await;
    assert_eq!(n, 0, "the copy does not");
    anon.query_drop("delete from commerce.gx where k = 12")
        .await
        .unwrap();
    let test_vschema: serde_json::Value = serde_json::from_str(VSCHEMA).unwrap();
    apply_listing("customer", &test_vschema, "gxr", false).await;
}

/// Applies `vschema` to keyspace `ks` and waits until shardgate lists
/// `table` in it (or, with `listed` false, no longer does).
async fn apply_listing(ks: &str, vschema: &serde_json::Value, table: &str, listed: bool) {
    shardgate::admin::apply_vschema(&store().await, ks, vschema.to_string().as_bytes())
        .await
        .unwrap();
    let port = cluster().port;
    let seen = eventually(10, || async move {
        let mut conn = connect_port(port, Some(ks)).await;
        let t: Vec<String> = conn.query("show vschema tables").await.ok()?;
        (t.iter().any(|t| t == table) == listed).then_some(())
    })
    .await;
    assert!(seen.is_some(), "{ks}'s VSchema lists {table}: {listed}");
}

/// Routing rules (as MoveTables leaves them): a table name sent to
/// another keyspace's table, renamed, or disabled, per session keyspace
/// and tablet type; applied with `ctl ApplyRoutingRules`, removed after.
async fn routing_rules(oracle: &mut Conn) {
    let rules = r#"{"rules": [
        {"from_table": "gy", "to_tables": ["commerce.gx"]},
        {"from_table": "customer.gx", "to_tables": ["commerce.gx"]},
        {"from_table": "gz", "to_tables": []}
    ]}"#;
    let out = ctl(&["apply-routing-rules", "--rules", rules]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&["get-routing-rules"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("customer.gx"));
    let bad = ctl(&[
        "apply-routing-rules",
        "--rules",
        r#"{"rules": [{"from_table": "a", "to_tables": ["b"]}]}"#,
    ]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("qualified"));
    let port = cluster().port;
    let seen = eventually(10, || async move {
        let mut conn = connect_port(port, None).await;
        let n: Option<u64> = conn.query_first("select count(*) from gy").await.ok()?;
        n.filter(|&n| n == 5)
    })
    .await;
    assert!(seen.is_some(), "the rules reach shardgate");
    let mut anon = connect(None).await;
    let mut on_customer = connect(Some("customer")).await;
    // The renamed table, by the name the rule gives, keeps that name as
    // its alias; the oracle reads the table itself.
    for prepared in [false, true] {
        let a = cells_by(
            &mut anon,
            "select gy.label from gy where gy.k > 0 order by gy.k",
            prepared,
        )
        .await
        .unwrap();
        let b = cells_by(
            oracle,
            "select gx.label from gx where gx.k > 0 order by gx.k",
            prepared,
        )
        .await
        .unwrap();
        assert_eq!(a, b);
        // Under customer, gx is commerce's (the rule for customer.gx).
        compare_by(
            &mut on_customer,
            oracle,
            &case("select dt.id, gx.label from dt join gx on gx.k = dt.k where dt.id < 90 order by dt.id", true),
            prepared,
        )
        .await;
    }
    let err = anon.query_drop("select * from gz").await.unwrap_err();
    assert_eq!(err_code(&err), Some(1105), "{err}");
    assert!(err.to_string().contains("gz has been disabled"), "{err}");
    // Removed, the names are what they were: gy is nobody's, and gx under
    // customer names no table of customer's.
    let out = ctl(&["apply-routing-rules", "--rules", r#"{"rules": []}"#]);
    assert!(out.status.success());
    let gone = eventually(10, || async move {
        let mut conn = connect_port(port, Some("customer")).await;
        let e = conn.query_drop("select * from gx").await.err()?;
        (err_code(&e) == Some(1146)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the rules are gone");
}

/// The one number `sql` answers with.
async fn number<T: FromValue + Send + 'static>(conn: &mut Conn, sql: &str) -> T {
    conn.query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Runs a write on shardgate and the oracle: both succeed and change as
/// many rows.
/// Runs each of `writes` on both (as [`same_writes`]), and after each
/// compares the ordered answers to `checks`.
async fn writes_agree(sg: &mut Conn, oracle: &mut Conn, writes: &[&str], checks: &[&str]) {
    for sql in writes {
        same_writes(sg, oracle, sql).await;
        for check in checks {
            compare(sg, oracle, &case(*check, true)).await;
        }
    }
}

/// Runs each statement on both, in order (what a comparison starts from).
async fn on_both(sg: &mut Conn, oracle: &mut Conn, sqls: &[&str]) {
    for conn in [sg, oracle] {
        for sql in sqls {
            conn.query_drop(*sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// `sql` fails on both with MySQL error `code`.
async fn fails_on_both(sg: &mut Conn, oracle: &mut Conn, sql: &str, code: u16) {
    for conn in [sg, oracle] {
        let e = conn.query_drop(sql).await.unwrap_err();
        assert_eq!(err_code(&e), Some(code), "{sql}: {e}");
    }
}

/// `sql` fails on both with the same code, SQLSTATE and message.
async fn errors_agree(sg: &mut Conn, oracle: &mut Conn, sql: &str) {
    let (a, b) = (
        sg.query_drop(sql).await.unwrap_err(),
        oracle.query_drop(sql).await.unwrap_err(),
    );
    let (mysql_async::Error::Server(a), mysql_async::Error::Server(b)) = (a, b) else {
        panic!("{sql}: not server errors")
    };
    assert_eq!(
        (a.code, &a.state, &a.message),
        (b.code, &b.state, &b.message),
        "{sql}"
    );
}

async fn same_writes(sg: &mut Conn, oracle: &mut Conn, sql: &str) {
    sg.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let a = sg.affected_rows();
    oracle.query_drop(sql).await.unwrap();
    assert_eq!(a, oracle.affected_rows(), "{sql}");
}

/// GROUP_CONCAT across shards joins the shards' concatenations: the same
/// values as the oracle's, in an order MySQL leaves unspecified (so each
/// cell is compared as the sorted list of its values).
async fn group_concats(sg: &mut Conn, oracle: &mut Conn) {
    for (sql, sep) in [
        ("select k, group_concat(id) from dt where id < 300 group by k order by k", ","),
        ("select group_concat(name separator ' | '), count(*) from dt where id between 100 and 160", " | "),
        ("select flag, group_concat(k, '-', id separator ';') from dt where id < 90 group by flag order by flag", ";"),
        // Over a join across shards: each joined row's value.
        ("select dt.flag, group_concat(d2.name) from dt join dt d2 on d2.id = dt.k where dt.id < 60 group by dt.flag order by dt.flag", ","),
        ("select group_concat(d2.id separator '|'), count(*) from dt join dt d2 on d2.id = dt.k + 1 where dt.id < 40", "|"),
        ("select dt.flag, group_concat(d2.id), count(*) from dt left join dt d2 on d2.id = dt.k - 100 where dt.id < 50 group by dt.flag order by dt.flag", ","),
    ] {
        let mut answers = Vec::new();
        for conn in [&mut *sg, &mut *oracle] {
            let rows: Vec<mysql_async::Row> = conn
                .query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let cells: Vec<Vec<String>> = rows
                .into_iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            let v: Option<String> = r.get(i).flatten();
                            let mut parts: Vec<&str> =
                                v.as_deref().unwrap_or("NULL").split(sep).collect();
                            parts.sort_unstable();
                            parts.join(sep)
                        })
                        .collect()
                })
                .collect();
            answers.push(cells);
        }
        assert!(!answers[1].is_empty(), "{sql}");
        assert_eq!(answers[0], answers[1], "{sql}");
    }
}

/// A DDL inside a transaction commits it first, on every shard, as
/// MySQL's implicit commit (and vtgate) does, under MULTI and TWOPC:
/// run inside it, the DDL's tablets would each commit their own part
/// (or wait on the metadata lock the part holds) and a DDL of another
/// keyspace would leave the parts open for a later ROLLBACK to undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ddl_commits_the_open_transaction_first() {
    apply_test_vschema().await;
    let mut a = connect(Some("customer")).await;
    a.query_drop("create table if not exists tximplicit (id bigint primary key, v int)")
        .await
        .unwrap();
    a.query_drop("delete from tximplicit").await.unwrap();
    let on_shard = |uid: u32, id: u32| async move {
        let mut t = connect_tablet(uid).await;
        let v: Option<i64> = t
            .query_first(format!("select v from tximplicit where id = {id}"))
            .await
            .unwrap();
        v
    };
    async fn ddl(c: &mut mysql_async::Conn, sql: &str) -> Result<(), mysql_async::Error> {
        tokio::time::timeout(std::time::Duration::from_secs(20), c.query_drop(sql))
            .await
            .expect("the DDL waited on the transaction's own locks")
    }
    // ids 1 and 2 hash to -80 (tablet 300), 4 to 80- (400).
    for mode in ["multi", "twopc"] {
        a.query_drop(format!("set transaction_mode = '{mode}'"))
            .await
            .unwrap();
        // A DDL on the table the transaction wrote, on every shard.
        a.query_drop("begin").await.unwrap();
        a.query_drop("insert into tximplicit (id, v) values (1, 1), (4, 4)")
            .await
            .unwrap();
        ddl(&mut a, "alter table tximplicit comment 'implicit'")
            .await
            .unwrap();
        a.query_drop("rollback").await.unwrap();
        assert_eq!(
            (on_shard(300, 1).await, on_shard(400, 4).await),
            (Some(1), Some(4)),
            "{mode}"
        );
        // A DDL of another keyspace.
        a.query_drop("begin").await.unwrap();
        a.query_drop("update tximplicit set v = v + 10")
            .await
            .unwrap();
        ddl(
            &mut a,
            "create table if not exists commerce.tximplicit_u (id bigint primary key)",
        )
        .await
        .unwrap();
        a.query_drop("rollback").await.unwrap();
        assert_eq!(
            (on_shard(300, 1).await, on_shard(400, 4).await),
            (Some(11), Some(14)),
            "{mode}"
        );
        // Table maintenance commits too (here of another keyspace's
        // table: a sharded keyspace's is refused).
        a.query_drop("begin").await.unwrap();
        a.query_drop("update tximplicit set v = v + 10")
            .await
            .unwrap();
        ddl(&mut a, "analyze table commerce.tximplicit_u")
            .await
            .unwrap();
        a.query_drop("rollback").await.unwrap();
        assert_eq!(
            (on_shard(300, 1).await, on_shard(400, 4).await),
            (Some(21), Some(24)),
            "{mode}"
        );
        a.query_drop("delete from tximplicit").await.unwrap();
    }
    // With autocommit off: committed by the DDL; the next statement
    // begins a new transaction, which ROLLBACK undoes.
    a.query_drop("set transaction_mode = 'multi'")
        .await
        .unwrap();
    a.query_drop("set autocommit = 0").await.unwrap();
    a.query_drop("insert into tximplicit (id, v) values (1, 1), (4, 4)")
        .await
        .unwrap();
    ddl(&mut a, "drop table if exists commerce.tximplicit_u")
        .await
        .unwrap();
    a.query_drop("insert into tximplicit (id, v) values (2, 2)")
        .await
        .unwrap();
    a.query_drop("rollback").await.unwrap();
    assert_eq!(
        (
            on_shard(300, 1).await,
            on_shard(400, 4).await,
            on_shard(300, 2).await
        ),
        (Some(1), Some(4), None)
    );
    // A temporary table's DDL commits nothing (temporary tables live in
    // unsharded keyspaces).
    a.query_drop("use commerce").await.unwrap();
    a.query_drop("insert into customer.tximplicit (id, v) values (2, 2)")
        .await
        .unwrap();
    a.query_drop("create temporary table tximplicit_t (id int)")
        .await
        .unwrap();
    a.query_drop("drop temporary table tximplicit_t")
        .await
        .unwrap();
    a.query_drop("rollback").await.unwrap();
    assert_eq!(on_shard(300, 2).await, None);
    a.query_drop("use customer").await.unwrap();
    a.query_drop("set autocommit = 1").await.unwrap();
    a.query_drop("delete from tximplicit").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_shard_autocommit_commits_each_shard_alone() {
    apply_test_vschema().await;
    let mut c = connect(Some("customer")).await;
    c.query_drop("create table if not exists msauto (id bigint primary key, v int)")
        .await
        .unwrap();
    // Row 2 (shard -80, with 1) makes the UPDATE fail there: division by
    // zero is an error under MariaDB's default sql_mode. Row 4 is on 80-.
    let failing = "update msauto set v = v + 10 / (id - 2) where id in (1, 2, 4)";
    for (directive, want) in [
        // All or none: the shard that succeeded is rolled back.
        ("", vec![(1, 0), (2, 0), (4, 0)]),
        // Each shard commits alone: 80- keeps its write.
        (
            "/*vt+ MULTI_SHARD_AUTOCOMMIT */ ",
            vec![(1, 0), (2, 0), (4, 5)],
        ),
    ] {
        c.query_drop("delete from msauto").await.unwrap();
        c.query_drop("insert into msauto (id, v) values (1, 0), (2, 0), (4, 0)")
            .await
            .unwrap();
        let sql = failing.replacen("update ", &format!("update {directive}"), 1);
        let e = c.query_drop(&sql).await.unwrap_err();
        assert_eq!(err_code(&e), Some(1365), "{sql}: {e}");
        assert_eq!(msauto_rows(&mut c).await, want, "{sql}");
    }
    // Inside a transaction the directive changes nothing: the ROLLBACK
    // undoes both shards' writes.
    c.query_drop("begin").await.unwrap();
    c.query_drop("update /*vt+ MULTI_SHARD_AUTOCOMMIT */ msauto set v = 7 where id in (1, 4)")
        .await
        .unwrap();
    c.query_drop("rollback").await.unwrap();
    assert_eq!(msauto_rows(&mut c).await, vec![(1, 0), (2, 0), (4, 5)]);
}

async fn msauto_rows(c: &mut Conn) -> Vec<(u64, i64)> {
    c.query("select id, v from msauto order by id")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_rows_clients_are_told_the_rows_an_update_matched() {
    apply_test_vschema().await;
    let at = |port: u16, db: &'static str, found: bool| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(if port == cluster().port {
                "app"
            } else {
                "vt_dba"
            }))
            .db_name(Some(db))
            .client_found_rows(found)
    };
    let port = cluster().port;
    let mut found = Conn::new(at(port, "customer", true)).await.unwrap();
    let mut plain = Conn::new(at(port, "customer", false)).await.unwrap();
    found
        .query_drop("create table if not exists foundr (id bigint primary key, v int)")
        .await
        .unwrap();
    found.query_drop("delete from foundr").await.unwrap();
    found
        .query_drop("insert into foundr (id, v) values (1, 1), (2, 1), (4, 1)")
        .await
        .unwrap();
    // Rows on both shards, none changed: matched 3, changed 0.
    let sql = "update foundr set v = 1";
    found.query_drop(sql).await.unwrap();
    assert_eq!(found.affected_rows(), 3, "{sql}");
    plain.query_drop(sql).await.unwrap();
    assert_eq!(plain.affected_rows(), 0, "{sql}");
    // One shard's row: as a MariaDB would count it, prepared too.
    let one = "update foundr set v = 1 where id = 4";
    found.query_drop(one).await.unwrap();
    assert_eq!(found.affected_rows(), 1);
    found
        .exec_drop("update foundr set v = ? where id = ?", (1, 2))
        .await
        .unwrap();
    assert_eq!(found.affected_rows(), 1);
    let changed = "update foundr set v = 5 where id in (1, 4)";
    plain.query_drop(changed).await.unwrap();
    assert_eq!(plain.affected_rows(), 2);
    // The unsharded keyspace, against the same statements on its tablet.
    let mut gate = Conn::new(at(port, "commerce", true)).await.unwrap();
    let mut tablet = Conn::new(at(tablet_port(100), "vt_commerce", true))
        .await
        .unwrap();
    gate.query_drop("create table if not exists foundr_u (id int primary key, v int)")
        .await
        .unwrap();
    gate.query_drop("delete from foundr_u").await.unwrap();
    gate.query_drop("insert into foundr_u values (1, 1), (2, 2)")
        .await
        .unwrap();
    for sql in [
        "update foundr_u set v = v",
        "update foundr_u set v = 2 where id = 2",
        "update foundr_u set v = 3 where id > 0",
        "delete from foundr_u where id = 9",
    ] {
        gate.query_drop(sql).await.unwrap();
        let through = gate.affected_rows();
        // The tablet's count for the same (already applied) change.
        tablet.query_drop(sql).await.unwrap();
        assert_eq!(through, tablet.affected_rows(), "{sql}");
    }
    gate.query_drop("drop table foundr_u").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_values_take_ids_from_a_sequence() {
    apply_test_vschema().await;
    let mut c = connect(Some("customer")).await;
    let a: u64 = c
        .query_first("select next value from customer_seq")
        .await
        .unwrap()
        .unwrap();
    // Five ids at once, the first returned; the sequence's keyspace named.
    let b: u64 = c
        .query_first("select next 5 values from commerce.customer_seq")
        .await
        .unwrap()
        .unwrap();
    assert!(b > a, "{a} then {b}");
    let d: u64 = c
        .query_first("select next value from customer_seq;")
        .await
        .unwrap()
        .unwrap();
    assert!(d >= b + 5, "{b}..{} taken, then {d}", b + 4);
    // A row that takes its id from the sequence takes none of them.
    c.query_drop("insert into customer (email) values ('next@example.com')")
        .await
        .unwrap();
    let id = c.last_insert_id().unwrap();
    assert!(id > d, "{id} after {d}");
    let on_tablet: Option<String> = c
        .query_first(format!(
            "select email from customer where customer_id = {id}"
        ))
        .await
        .unwrap();
    assert_eq!(on_tablet.as_deref(), Some("next@example.com"));
    c.query_drop(format!("delete from customer where customer_id = {id}"))
        .await
        .unwrap();
    // Not a sequence: vtgate's error.
    let e = c.query_drop("select next value from dt").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1105), "{e}");
    assert!(
        e.to_string()
            .contains("NEXT used on a non-sequence table `dt`"),
        "{e}"
    );
    // A column named `next` is still a column.
    let col: Option<i64> = c
        .query_first("select next from (select 7 as next) t")
        .await
        .unwrap();
    assert_eq!(col, Some(7));
}

/// A string as an SQL literal under MariaDB's default escapes.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Runs `program` (mysqldump or mysql) against 127.0.0.1:`port` with
/// `args`, its input `input` when given; its standard output (a dump's
/// bytes: binary columns are not UTF-8), after checking it ran clean.
fn run_client(program: &str, port: u16, args: &[&str], input: Option<&std::path::Path>) -> Vec<u8> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(["-h127.0.0.1", &format!("-P{port}")]).args(args);
    if let Some(path) = input {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{program} {args:?}: {stderr}"
    );
    out.stdout
}

/// A dump without the lines that name its server (host, database,
/// version): what two servers with the same tables must write alike.
fn dump_body(dump: &[u8]) -> Vec<&[u8]> {
    dump.split(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"-- Host:") && !l.starts_with(b"-- Server version"))
        .collect()
}

/// A database moves into and out of a sharded keyspace with MariaDB's own
/// tools. `mysqldump` of one MariaDB loads through the gate with the
/// `mysql` client (the dump's executable comments, SETs, LOCK TABLES and
/// DISABLE KEYS as it writes them), every row lands on the shard its
/// vindex names, and `mysqldump` through the gate writes the single
/// MariaDB's dump byte for byte (ordered by primary key; its
/// `--single-transaction` dump loads back into MariaDB). With it come the
/// statements dumps and DBAs send: database statements answered as
/// vtgate answers them (nothing made on a tablet), table maintenance on
/// every shard, DO, MariaDB's `LOCK IN SHARE MODE` (whose rows another
/// session's write then waits for), and executable comments anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysqldump_moves_tables_into_and_out_of_a_sharded_keyspace() {
    let (mut src, oport) = start_oracle("src").await;
    apply_test_vschema().await;
    let c = cluster();
    let mut sg = connect(Some("customer")).await;
    for t in ["dmp", "dmp_item"] {
        sg.query_drop(format!("drop table if exists {t}"))
            .await
            .unwrap();
    }
    src.query_drop(
        "create table dmp (id bigint not null primary key,
            name varchar(64) collate utf8mb4_general_ci, note text, amount decimal(12,2),
            at datetime(3), raw varbinary(16));
         create table dmp_item (id bigint not null primary key, dmp_id bigint not null,
            qty int, key (dmp_id))",
    )
    .await
    .unwrap();
    let names = [
        "O'Brien",
        "back\\slash",
        "line\nbreak",
        "tab\there",
        "ünïcödé ✓",
        "",
        "plain",
    ];
    let rows_of = |n: i64| {
        (1..=n)
            .map(|id| {
                let name = match id % 9 {
                    8 => "NULL".to_string(),
                    k => sql_text(&format!("{}{id}", names[k as usize % names.len()])),
                };
                let note = match id % 50 {
                    0 => sql_text(&"long ".repeat(400)),
                    k if k % 7 == 0 => "NULL".to_string(),
                    _ => sql_text(&format!("note {id} \"quoted\" ;-- not a comment")),
                };
                let raw = match id % 11 {
                    0 => "NULL".to_string(),
                    _ => format!("x'00ff275c0a{id:08x}'"),
                };
                format!(
                    "({id}, {name}, {note}, {}.{:02}, '2026-01-{:02} {:02}:{:02}:{:02}.{:03}', {raw})",
                    id * 37 % 2000 - 1000,
                    id % 100,
                    1 + id % 28,
                    id % 24,
                    id % 60,
                    id * 7 % 60,
                    id % 1000
                )
            })
            .collect::<Vec<_>>()
    };
    for chunk in rows_of(600).chunks(200) {
        src.query_drop(format!("insert into dmp values {}", chunk.join(", ")))
            .await
            .unwrap();
    }
    let items: Vec<String> = (1..=1500)
        .map(|i| format!("({i}, {}, {})", 1 + i * 13 % 600, i % 17))
        .collect();
    src.query_drop(format!("insert into dmp_item values {}", items.join(", ")))
        .await
        .unwrap();

    // Into the keyspace: the single MariaDB's dump, as mysqldump writes it.
    let dir = temp_dir("dumps");
    let dump = run_client(
        "mysqldump",
        oport,
        &["-uvt_dba", "src", "dmp", "dmp_item"],
        None,
    );
    let text = String::from_utf8_lossy(&dump);
    for written in [
        "/*!40101 SET NAMES utf8mb4 */;",
        "/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;",
        "LOCK TABLES `dmp` WRITE;",
        "/*!40000 ALTER TABLE `dmp` DISABLE KEYS */;",
        "UNLOCK TABLES;",
    ] {
        assert!(text.contains(written), "the dump lacks {written}");
    }
    std::fs::write(dir.join("src.sql"), &dump).unwrap();
    run_client(
        "mysql",
        c.port,
        &["-uapp", "customer"],
        Some(&dir.join("src.sql")),
    );
    for q in [
        "select id, name, note, amount, at, hex(raw) from dmp order by id",
        "select id, dmp_id, qty from dmp_item order by id",
    ] {
        assert_eq!(rows(&mut sg, q).await, rows(&mut src, q).await, "{q}");
    }
    let placed = placement("dmp", "id", Func::Hash).await;
    assert_eq!(placed.iter().sum::<usize>(), 600);
    assert!(placed.iter().all(|&n| n > 0), "{placed:?}");
    let placed = placement("dmp_item", "dmp_id", Func::Hash).await;
    assert_eq!(placed.iter().sum::<usize>(), 1500);

    // Out of it: the same dump as the single MariaDB writes.
    let ordered = ["--order-by-primary", "--skip-dump-date"];
    let via_gate = run_client(
        "mysqldump",
        c.port,
        &[&["-uapp"], &ordered[..], &["customer", "dmp", "dmp_item"]].concat(),
        None,
    );
    let direct = run_client(
        "mysqldump",
        oport,
        &[&["-uvt_dba"], &ordered[..], &["src", "dmp", "dmp_item"]].concat(),
        None,
    );
    assert!(String::from_utf8_lossy(&via_gate).contains("INSERT INTO `dmp` VALUES"));
    let (ours, theirs) = (dump_body(&via_gate), dump_body(&direct));
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(
            a == b,
            "{} vs {}",
            String::from_utf8_lossy(&a[..a.len().min(200)]),
            String::from_utf8_lossy(&b[..b.len().min(200)])
        );
    }
    // A consistent dump (a transaction on every shard) loads back.
    let consistent = run_client(
        "mysqldump",
        c.port,
        &[
            "-uapp",
            "--single-transaction",
            "customer",
            "dmp",
            "dmp_item",
        ],
        None,
    );
    std::fs::write(dir.join("back.sql"), consistent).unwrap();
    src.query_drop("create database back").await.unwrap();
    run_client(
        "mysql",
        oport,
        &["-uvt_dba", "back"],
        Some(&dir.join("back.sql")),
    );
    for t in ["dmp", "dmp_item"] {
        let q = |db: &str| format!("select * from {db}.{t} order by id");
        assert_eq!(
            rows(&mut src, &q("back")).await,
            rows(&mut src, &q("src")).await
        );
    }

    // A dump made with --databases names its database.
    let named = dir.join("named.sql");
    std::fs::write(
        &named,
        "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `customer` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\
         USE `customer`;\nDROP DATABASE IF EXISTS `no_such_keyspace`;\nselect count(*) from dmp;\n",
    )
    .unwrap();
    let out = run_client("mysql", c.port, &["-uapp", "--batch"], Some(&named));
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("600"), "{out}");
    for (sql, code) in [
        ("create database customer", 1007),
        ("create schema if not exists fresh_db", 1235),
        ("drop database no_such_keyspace", 1008),
        ("drop database customer", 1235),
        (
            "alter database no_such_keyspace character set utf8mb4",
            1049,
        ),
    ] {
        let e = sg.query_drop(sql).await.unwrap_err();
        assert_eq!(err_code(&e), Some(code), "{sql}: {e}");
    }
    // SHOW CREATE DATABASE (mysqldump --databases asks it) names the
    // keyspace as one server names its database.
    let ours = rows(&mut sg, "show create database if not exists customer").await;
    let theirs = rows(&mut src, "show create database if not exists src").await;
    let renamed: Vec<Vec<Option<String>>> = theirs
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.map(|s| s.replace("src", "customer")))
                .collect()
        })
        .collect();
    assert_eq!(ours, renamed);
    for uid in [100, 300] {
        let dbs: Vec<String> = connect_tablet(uid)
            .await
            .query("show databases")
            .await
            .unwrap();
        assert!(
            !dbs.iter().any(|d| d == "customer" || d == "fresh_db"),
            "tablet {uid} has {dbs:?}"
        );
    }

    // Table maintenance runs on every shard: each shard's rows in turn.
    for sql in [
        "analyze table dmp",
        "check table dmp, dmp_item",
        "checksum table dmp",
        "optimize table dmp_item",
    ] {
        let one = rows(&mut src, sql).await.len();
        assert!(one > 0, "{sql}");
        assert_eq!(rows(&mut sg, sql).await.len(), 2 * one, "{sql}");
    }
    sg.query_drop("do 1 + 1").await.unwrap();
    let out = run_client(
        "mysqlcheck",
        c.port,
        &["-uapp", "--analyze", "customer", "dmp", "dmp_item"],
        None,
    );
    let out = String::from_utf8_lossy(&out);
    // Each table's second shard answers under the first's line.
    assert!(out.contains("vt_customer.dmp_item"), "{out}");
    assert_eq!(out.matches("status   : OK").count(), 2, "{out}");

    // Executable comments are code where MariaDB runs them, text or
    // prepared; those it skips stay comments.
    for q in [
        "select id /*!40101 + 1 */ from dmp where id = 7",
        "select count(*) from dmp /*!40101 where id > 300 */",
        "select count(*) from dmp /*M!100000 where id > 500 */",
        "select count(*) from dmp /*!50700 where id > 300 */",
        "select count(*) from dmp /*!99999 where id > 300 */",
        "select count(*) from dmp where name = '/*!40101 x */'",
    ] {
        assert_eq!(rows(&mut sg, q).await, rows(&mut src, q).await, "{q}");
    }
    let q = "select count(*) from dmp /*!40101 where id > ? */";
    let (a, b): (Option<u64>, Option<u64>) = (
        sg.exec_first(q, (450,)).await.unwrap(),
        src.exec_first(q, (450,)).await.unwrap(),
    );
    assert_eq!((a, b), (Some(150), Some(150)));

    // SELECT ... INTO variables: the session's variables get the one row.
    for conn in [&mut sg, &mut src] {
        conn.query_drop("set @z = 5").await.unwrap();
        conn.query_drop("select count(*), max(name) into @n, @m from dmp where id > 100")
            .await
            .unwrap();
        conn.query_drop("select id from dmp where id = 7 into @x")
            .await
            .unwrap();
        // The OK counts the row read, as MariaDB's.
        assert_eq!(conn.affected_rows(), 1);
        conn.exec_drop("select sum(id) into @p from dmp where id < ?", (50,))
            .await
            .unwrap();
        conn.query_drop("select id into @z from dmp where id < 0")
            .await
            .unwrap();
        assert_eq!(conn.get_warnings(), 1);
    }
    let vars = "select @n, @m, @x + 1, @p, @z";
    assert_eq!(rows(&mut sg, vars).await, rows(&mut src, vars).await);
    for (sql, code) in [
        ("select id into @y from dmp", 1172),
        ("select id into @y, @w from dmp where id = 3", 1222),
    ] {
        let ours = sg.query_drop(sql).await.unwrap_err();
        let theirs = src.query_drop(sql).await.unwrap_err();
        assert_eq!(
            (err_code(&ours), err_code(&theirs)),
            (Some(code), Some(code)),
            "{sql}"
        );
    }
    let e = sg
        .query_drop("select * from dmp into outfile '/tmp/dmp.txt'")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");

    // MariaDB's shared row lock, on one shard and on all of them.
    for q in [
        "select id, name from dmp where id in (3, 4, 5, 200) order by id lock in share mode",
        "select count(*) from dmp where amount > 0 lock in share mode",
        "select d.id, count(*) from dmp d join dmp_item i on i.dmp_id = d.id \
         where d.id < 20 group by d.id order by d.id lock in share mode",
    ] {
        assert_eq!(rows(&mut sg, q).await, rows(&mut src, q).await, "{q}");
    }
    let mut holder = connect(Some("customer")).await;
    holder.query_drop("begin").await.unwrap();
    holder
        .query_drop("select id from dmp where id > 0 lock in share mode")
        .await
        .unwrap();
    let e = sg
        .query_drop("update /*vt+ QUERY_TIMEOUT_MS=300 */ dmp set name = 'w' where id = 5")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    holder.query_drop("commit").await.unwrap();
    sg.query_drop("update dmp set name = 'w' where id = 5")
        .await
        .unwrap();
    assert_eq!(sg.affected_rows(), 1);
}

/// The `Records: ...` line the `mysql` client prints (with -vvv) for a
/// LOAD DATA: what the server's OK said of the file.
fn load_info(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find(|l| l.starts_with("Records:"))
        .unwrap_or_default()
        .to_string()
}

/// `LOAD DATA LOCAL INFILE` through the gate (which vtgate refuses):
/// the `mysql` client sends the file, the gate splits it as MariaDB does
/// and its rows land on their shards, equal to what one MariaDB loads
/// from the same file with the same statement, in MariaDB's default
/// format and in CSV with options; the OK's counts (records, skipped
/// duplicates, replaced rows) are MariaDB's. A file whose rows the gate
/// refuses halfway loads nothing, and the connection goes on; a SET
/// clause is refused before the file is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_fills_a_sharded_keyspace() {
    let (mut src, oport) = start_oracle("src").await;
    apply_test_vschema().await;
    let c = cluster();
    let mut sg = connect(Some("customer")).await;
    let ddl = "create table ldt (id bigint not null primary key,
        name varchar(64) collate utf8mb4_general_ci, note text, raw varbinary(16))";
    sg.query_drop("drop table if exists ldt").await.unwrap();
    sg.query_drop(ddl).await.unwrap();
    src.query_drop(ddl).await.unwrap();

    // MariaDB's default format: tabs, newlines, backslash escapes, \N.
    let dir = temp_dir("infile");
    let mut tsv: Vec<u8> = Vec::new();
    for id in 1..=4500u32 {
        let name: &[u8] = match id % 6 {
            0 => b"\\N",
            1 => "ünï\\tcödé".as_bytes(),
            2 => b"back\\\\slash",
            3 => b"line\\nbreak",
            4 => b"O'Brien \"q\"",
            _ => b"",
        };
        tsv.extend_from_slice(format!("{id}\t").as_bytes());
        tsv.extend_from_slice(name);
        tsv.extend_from_slice(format!("{id}\tnote {id}\t").as_bytes());
        tsv.extend_from_slice(&[0x00, 0xff, b'\\', b'\\', (id % 100) as u8 + 0x80]);
        tsv.push(b'\n');
    }
    std::fs::write(dir.join("rows.tsv"), &tsv).unwrap();
    let load = |file: &str, how: &str| {
        format!(
            "load data local infile '{}' {how}",
            dir.join(file).display()
        )
    };
    let both = |stmt: String| {
        let gate = run_client(
            "mysql",
            c.port,
            &["-uapp", "--local-infile=1", "-vvv", "customer", "-e", &stmt],
            None,
        );
        let one = run_client(
            "mysql",
            oport,
            &["-uvt_dba", "--local-infile=1", "-vvv", "src", "-e", &stmt],
            None,
        );
        (load_info(&gate), load_info(&one))
    };
    let q = "select id, name, note, hex(raw) from ldt order by id";
    let (gate, one) = both(load("rows.tsv", "into table ldt"));
    assert_eq!(gate, "Records: 4500  Deleted: 0  Skipped: 0  Warnings: 0");
    assert_eq!(gate, one);
    assert_eq!(rows(&mut sg, q).await, rows(&mut src, q).await);
    let placed = placement("ldt", "id", Func::Hash).await;
    assert_eq!(placed.iter().sum::<usize>(), 4500);
    // The client's --safe-updates mode sets sql_select_limit (with
    // --select-limit) at connect: a query's rows stop there, as on one
    // MariaDB (replayed on each shard, every shard gave that many).
    let capped = |port: u16, user: &str, db: &str| {
        let out = run_client(
            "mysql",
            port,
            &[
                user,
                "--safe-updates",
                "--select-limit=7",
                "-N",
                db,
                "-e",
                q,
            ],
            None,
        );
        String::from_utf8(out).unwrap()
    };
    let gate_rows = capped(c.port, "-uapp", "customer");
    assert_eq!(gate_rows.lines().count(), 7, "{gate_rows}");
    assert_eq!(gate_rows, capped(oport, "-uvt_dba", "src"));
    // Again: every row a duplicate, skipped with a warning each.
    let (gate, one) = both(load("rows.tsv", "into table ldt"));
    assert_eq!(
        gate,
        "Records: 4500  Deleted: 0  Skipped: 4500  Warnings: 4500"
    );
    assert_eq!(gate, one);

    // CSV with a header line, quotes and CRLF; some rows replace others.
    let mut csv = String::from("id,name,note\r\n");
    for id in (4400..4700).step_by(3) {
        csv.push_str(&format!(
            "{id},\"n, {id}\",\"say \"\"{id}\"\"\r\nagain\"\r\n"
        ));
    }
    csv.push_str("9001,NULL,\"NULL\"\r\n");
    std::fs::write(dir.join("rows.csv"), &csv).unwrap();
    let (gate, one) = both(load(
        "rows.csv",
        "replace into table ldt fields terminated by ',' optionally enclosed by '\"' \
         lines terminated by '\\r\\n' ignore 1 lines (id, name, note)",
    ));
    assert!(gate.starts_with("Records: 101  Deleted: 34"), "{gate}");
    assert_eq!(gate, one);
    assert_eq!(rows(&mut sg, q).await, rows(&mut src, q).await);

    // A row the gate cannot route, past the first batch: nothing loads.
    let mut bad = String::new();
    for id in 20_000..21_500 {
        bad.push_str(&format!("{id}\tok\n"));
    }
    bad.push_str("not-a-number\tbad\n");
    std::fs::write(dir.join("bad.tsv"), &bad).unwrap();
    let out = std::process::Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", c.port),
            "-uapp",
            "--local-infile=1",
        ])
        .args([
            "customer",
            "-e",
            &load("bad.tsv", "into table ldt (id, name)"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let count: Option<u64> = sg
        .query_first("select count(*) from ldt where id >= 20000")
        .await
        .unwrap();
    assert_eq!(count, Some(0));
    let e = sg
        .query_drop(load("rows.tsv", "into table ldt (id) set name = 'x'"))
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
    // Without LOCAL the file would be each tablet's own.
    let e = sg
        .query_drop("load data infile '/tmp/rows.tsv' into table ldt")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1235), "{e}");
    assert_eq!(
        rows(&mut sg, "select 1").await,
        vec![vec![Some("1".into())]]
    );

    // mysqlimport (a file named after its table; its own SET inside an
    // executable comment first).
    let lines: String = (30_000..30_010)
        .map(|id| format!("{id}\tm{id}\n"))
        .collect();
    std::fs::write(dir.join("ldt.txt"), lines).unwrap();
    let out = run_client(
        "mysqlimport",
        c.port,
        &[
            "-uapp",
            "--local",
            "--columns=id,name",
            "customer",
            &dir.join("ldt.txt").display().to_string(),
        ],
        None,
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("Records: 10  Deleted: 0  Skipped: 0"), "{out}");
    let count: Option<u64> = sg
        .query_first("select count(*) from ldt where id >= 30000 and name like 'm%'")
        .await
        .unwrap();
    assert_eq!(count, Some(10));

    // An unsharded keyspace's table loads the same way.
    let mut un = connect(Some("commerce")).await;
    un.query_drop("drop table if exists ldu").await.unwrap();
    un.query_drop(
        "create table ldu (id bigint primary key, name varchar(64), note text, raw varbinary(16))",
    )
    .await
    .unwrap();
    let out = run_client(
        "mysql",
        c.port,
        &[
            "-uapp",
            "--local-infile=1",
            "-vvv",
            "commerce",
            "-e",
            &load("rows.tsv", "into table ldu"),
        ],
        None,
    );
    assert_eq!(
        load_info(&out),
        "Records: 4500  Deleted: 0  Skipped: 0  Warnings: 0"
    );
    let count: Option<u64> = un.query_first("select count(*) from ldu").await.unwrap();
    assert_eq!(count, Some(4500));

    // A statement's bytes that are not UTF-8 reach the tablet as sent, on
    // either kind of keyspace.
    for (conn, table) in [(&mut un, "ldu"), (&mut sg, "ldt")] {
        let mut sql = format!("insert into {table} (id, raw) values (99999, '").into_bytes();
        sql.extend_from_slice(&[0xff, 0xfe, b'\\', b'0', 0xc3]);
        sql.extend_from_slice(b"')");
        conn.query_drop(sql).await.unwrap();
        let mut sql = format!("select hex(raw) from {table} where raw = '").into_bytes();
        sql.extend_from_slice(&[0xff, 0xfe, 0, 0xc3]);
        sql.extend_from_slice(b"'");
        let hex: Vec<String> = conn.query(sql).await.unwrap();
        assert_eq!(hex, ["FFFE00C3"], "{table}");
    }
    // A session setting carries them too (replayed on each connection).
    let mut set = b"set @raw_v = '".to_vec();
    set.extend_from_slice(&[0xff, 0xfe, b'\'']);
    sg.query_drop(set).await.unwrap();
    let hex: Vec<String> = sg.query("select hex(@raw_v)").await.unwrap();
    assert_eq!(hex, ["FFFE"]);
}
