//! Micro-benchmarks of the per-statement hot path: normalize, plan, plan
//! cache, vindexes, row encoding, the engine's streaming merge of sorted
//! shard streams and the gate's aggregation.
//! Run: `cargo bench --bench micro`.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use shardgate::engine::{
    self, gate, row, QueryDone, RowSink, ScatterConsumer, ShardResult, ShardStreams, VCursor,
};
use shardgate::error::Error;
use shardgate::planner::cache::PlanCache;
use shardgate::planner::sharded::{AggKind, Gate, GateExpr, Weight};
use shardgate::planner::{self};
use shardgate::sql::TabletType;
use shardgate::sql::{self, Target};
use shardgate::topo::Snapshot;
use shardgate::vschema::vindex::Func;

const POINT: &str = "select id, name from user where id = 5";

fn sql_path(c: &mut Criterion) {
    let snap = snapshot_n(2);
    let target = Target::parse("user").unwrap();
    let cache = PlanCache::new(1000);
    c.bench_function("classify+normalize point select", |b| {
        b.iter(|| {
            let s = sql::classify(black_box(POINT)).unwrap();
            (s, sql::normalize::normalize(black_box(POINT), &[], false))
        })
    });
    c.bench_function("plan point select (cache miss)", |b| {
        let stmt = sql::classify(POINT).unwrap();
        let n = sql::normalize::normalize(POINT, &[], false);
        b.iter(|| planner::plan(&stmt, Some(&n.template), &target, &snap).unwrap())
    });
    c.bench_function("normalize + plan-cache hit", |b| {
        let stmt = sql::classify(POINT).unwrap();
        b.iter(|| {
            let n = sql::normalize::normalize(black_box(POINT), &[], false);
            cache
                .get_or_plan(1, "user", &n.template, || {
                    planner::plan(&stmt, Some(&n.template), &target, &snap)
                })
                .unwrap()
        })
    });
}

/// What `/metrics` costs a command: aiming at the session's target (the
/// same as last time), two clock reads and the record.
fn stats(c: &mut Criterion) {
    use shardgate::stats::{Api, Operation, Recorder};
    let api = Api::default();
    let mut rec = Recorder::default();
    let target = Target::parse("user").unwrap();
    c.bench_function("time and count a command (metrics)", |b| {
        b.iter(|| {
            rec.aim(&api, target.keyspace.as_deref(), target.tablet_type);
            let t0 = std::time::Instant::now();
            rec.record(&api, Operation::Execute, t0.elapsed(), black_box(None));
        })
    });
}

fn vindexes(c: &mut Criterion) {
    c.bench_function("vindex hash", |b| {
        b.iter(|| Func::Hash.map(black_box(&Value::Int(123456))).unwrap())
    });
    c.bench_function("vindex xxhash", |b| {
        b.iter(|| {
            Func::Xxhash
                .map(black_box(&Value::Bytes(b"some-user@example.com".to_vec())))
                .unwrap()
        })
    });
}

fn rows(n: usize) -> (Vec<Column>, Vec<Vec<Value>>) {
    let cols = vec![
        Column::new(ColumnType::MYSQL_TYPE_LONGLONG)
            .with_name(b"id")
            .with_flags(ColumnFlags::NUM_FLAG),
        Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
            .with_name(b"name")
            .with_character_set(45),
        Column::new(ColumnType::MYSQL_TYPE_DATETIME).with_name(b"ts"),
        Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
            .with_name(b"w")
            .with_character_set(63),
    ];
    let rows = (0..n)
        .map(|i| {
            vec![
                Value::Bytes(i.to_string().into_bytes()),
                Value::Bytes(format!("name-{}", i % 97).into_bytes()),
                Value::Bytes(b"2024-02-29 12:34:56".to_vec()),
                Value::Bytes(format!("name-{}", i % 97).to_uppercase().into_bytes()),
            ]
        })
        .collect();
    (cols, rows)
}

fn encoding(c: &mut Criterion) {
    let (cols, rows) = rows(1000);
    c.bench_function("encode 1000 text rows", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            for r in &rows {
                shardgate::frontend::packets::text_row(&mut out, r);
            }
            out.len()
        })
    });
    c.bench_function("encode 1000 binary rows", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            for r in &rows {
                shardgate::frontend::packets::binary_row(&mut out, &cols, r).unwrap();
            }
            out.len()
        })
    });
}

/// A keyspace `user` split evenly into `n` shards.
fn snapshot_n(n: usize) -> Snapshot {
    let mut r = BTreeMap::new();
    r.insert(
        "global/keyspaces/user/VSchema".to_string(),
        br#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"user": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#
            .to_vec(),
    );
    let bound = |i: usize| {
        if i == 0 || i == n {
            String::new()
        } else {
            format!("{:02x}", i * 256 / n)
        }
    };
    for i in 0..n {
        r.insert(
            format!(
                "global/keyspaces/user/shards/{}-{}/Shard",
                bound(i),
                bound(i + 1)
            ),
            b"{}".to_vec(),
        );
    }
    Snapshot::build(&r, &Default::default(), 1).unwrap()
}

/// A cursor whose shards stream canned, sorted rows (only scatters).
struct Canned {
    cols: Vec<Column>,
    rows: Vec<Vec<Vec<Value>>>,
}

impl VCursor for Canned {
    async fn stream_multi<C: ScatterConsumer + Send>(
        &mut self,
        _ks: &str,
        _tt: TabletType,
        queries: Vec<(String, String)>,
        _prepared: Option<&shardgate::engine::PreparedQuery>,
        consumer: &mut C,
    ) -> Result<(), Error> {
        let streams = (0..queries.len())
            .map(|i| {
                let rows = std::mem::take(&mut self.rows[i]);
                Box::new(row::BufferedRows::new(rows)) as Box<dyn row::ShardRows>
            })
            .collect();
        let columns = self.cols.clone();
        consumer
            .consume(ShardStreams {
                columns: columns.into(),
                streams,
            })
            .await
    }
    async fn execute_multi(
        &mut self,
        _ks: &str,
        _tt: TabletType,
        _q: Vec<(String, String)>,
    ) -> Result<Vec<ShardResult>, Error> {
        unreachable!("scatter SELECTs stream")
    }
    async fn next_sequence(&mut self, _ks: &str, _t: &str, _n: u64) -> Result<u64, Error> {
        unreachable!("no INSERT here")
    }
    fn set_last_insert_id(&mut self, _id: u64) {}
    async fn execute_shard<S: RowSink + Send>(
        &mut self,
        _ks: &str,
        _shard: &str,
        _tt: TabletType,
        _sql: &str,
        _rename: bool,
        _sink: &mut S,
    ) -> Result<(), Error> {
        unreachable!("a scatter")
    }
}

/// Counts what reaches the client.
#[derive(Default)]
struct Count(usize);

impl RowSink for Count {
    fn columns(&mut self, _c: &[Column]) -> Result<(), Error> {
        Ok(())
    }
    fn row(&mut self, v: &[Value]) -> Result<(), Error> {
        self.0 += black_box(v).len();
        Ok(())
    }
    fn end_rows(&mut self, _w: u16) -> Result<(), Error> {
        Ok(())
    }
    fn ok(&mut self, _d: QueryDone) -> Result<(), Error> {
        Ok(())
    }
}

fn merging(c: &mut Criterion) {
    // The engine's streaming merge of sorted shard streams, as an ORDER BY
    // scatter runs it (rows: id, name, then name and its weight string).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sql = "select id, name from user order by name";
    for shards in [2usize, 4, 16] {
        let snap = snapshot_n(shards);
        let stmt = sql::classify(sql).unwrap();
        let n = sql::normalize::normalize(sql, &[], false);
        let plan = planner::plan(
            &stmt,
            Some(&n.template),
            &Target::parse("user").unwrap(),
            &snap,
        )
        .unwrap();
        let (cols, all) = rows(1000 * shards);
        let mut per_shard: Vec<Vec<Vec<Value>>> = vec![Vec::new(); shards];
        let mut sorted = all;
        let key = |v: &Value| match v {
            Value::Bytes(b) => b.clone(),
            _ => Vec::new(),
        };
        sorted.sort_by_key(|r| key(&r[3]));
        for (i, r) in sorted.into_iter().enumerate() {
            let row = vec![r[0].clone(), r[1].clone(), r[1].clone(), r[3].clone()];
            per_shard[i % shards].push(row);
        }
        let cols = vec![
            cols[0].clone(),
            cols[1].clone(),
            cols[1].clone(),
            cols[3].clone(),
        ];
        c.bench_function(
            &format!("streaming merge {shards} shards x 1000 rows"),
            |b| {
                // Cloning the canned rows is setup, outside the timing.
                b.iter_batched(
                    || Canned {
                        cols: cols.clone(),
                        rows: per_shard.clone(),
                    },
                    |mut vc| {
                        let mut sink = Count::default();
                        rt.block_on(engine::execute(
                            &plan,
                            sql,
                            &n.binds,
                            TabletType::Primary,
                            &snap,
                            &mut vc,
                            &mut sink,
                        ))
                        .unwrap();
                        sink.0
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    let (cols, rows) = rows(4000);
    let gate = Gate {
        aggregate: vec![AggKind::Key, AggKind::Key, AggKind::Key, AggKind::Weight],
        group_keys: vec![(1, Some(Weight::Column(3)))],
        output: Some(vec![
            (GateExpr::Col(1), "name".into()),
            (GateExpr::Col(0), "id".into()),
        ]),
        ..Gate::default()
    };
    c.bench_function("aggregate merge 4000 rows into 97 groups", |b| {
        b.iter(|| gate::run(&gate, &[], &cols, rows.clone()).unwrap().1.len())
    });
}

criterion_group!(benches, sql_path, stats, vindexes, encoding, merging);
criterion_main!(benches);
