//! Micro-benchmarks of the per-statement hot path: normalize, plan, plan
//! cache, vindexes, row encoding and the gate's merge and aggregation.
//! Run: `cargo bench --bench micro`.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use shardgate::engine::gate;
use shardgate::planner::cache::PlanCache;
use shardgate::planner::sharded::{AggKind, Gate, GateExpr, SortKey};
use shardgate::planner::{self};
use shardgate::sql::{self, Target};
use shardgate::topo::Snapshot;
use shardgate::vschema::vindex::Func;

fn snapshot() -> Snapshot {
    let mut r = BTreeMap::new();
    r.insert(
        "global/keyspaces/user/VSchema".to_string(),
        br#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"user": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#
            .to_vec(),
    );
    for s in ["-80", "80-"] {
        r.insert(
            format!("global/keyspaces/user/shards/{s}/Shard"),
            b"{}".to_vec(),
        );
    }
    Snapshot::build(&r, &[], 1).unwrap()
}

const POINT: &str = "select id, name from user where id = 5";

fn sql_path(c: &mut Criterion) {
    let snap = snapshot();
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

fn merging(c: &mut Criterion) {
    for shards in [2usize, 4, 16] {
        let (cols, rows) = rows(1000 * shards);
        let gate = Gate {
            hidden: 2,
            order: vec![SortKey {
                expr: GateExpr::Col(shardgate::planner::sharded::HIDDEN),
                weight: Some(shardgate::planner::sharded::HIDDEN + 1),
                desc: false,
            }],
            ..Gate::default()
        };
        c.bench_function(&format!("merge-sort {shards} shards x 1000 rows"), |b| {
            b.iter(|| gate::run(&gate, &[], &cols, rows.clone()).unwrap().1.len())
        });
    }
    let (cols, rows) = rows(4000);
    let gate = Gate {
        aggregate: vec![AggKind::Key, AggKind::Key, AggKind::Key, AggKind::Weight],
        group_keys: vec![(1, Some(3))],
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

criterion_group!(benches, sql_path, vindexes, encoding, merging);
criterion_main!(benches);
