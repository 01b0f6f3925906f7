//! Arbitrary SQL text through split → classify → normalize → plan against
//! the planner fixture VSchema (a sharded and an unsharded keyspace).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shardgate::sql::{self, SessionValues, Target};
use shardgate::topo::Snapshot;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../vschema/planner_fixture.json")).unwrap();
        let mut records = std::collections::BTreeMap::new();
        for (ks, vs) in doc["keyspaces"].as_object().unwrap() {
            let sharded = vs["sharded"].as_bool().unwrap_or(false);
            records.insert(format!("global/keyspaces/{ks}/VSchema"), serde_json::to_vec(vs).unwrap());
            let shards: &[&str] = if sharded { &["-80", "80-"] } else { &["0"] };
            for s in shards {
                records.insert(format!("global/keyspaces/{ks}/shards/{s}/Shard"), b"{}".to_vec());
            }
        }
        Snapshot::build(&records, &[], 1).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let snap = snapshot();
    for stmt in sql::lexer::split_statements(text) {
        if let Ok(s) = sql::classify(stmt) {
            let n = sql::normalize::normalize(stmt, &[], false);
            for target in ["user", "main", "user:-80"] {
                let t = Target::parse(target).unwrap();
                if let Ok(p) = shardgate::planner::plan(&s, Some(&n.template), &t, snap) {
                    let _ = p.describe();
                }
            }
            let _ = sql::normalize::substitute_binds(&n.template, &n.binds);
        }
        let _ = sql::rewrite_session_values(stmt, &SessionValues { database: Some("ks"), last_insert_id: 1 });
        let n = sql::count_placeholders(stmt);
        let params = vec![mysql_common::value::Value::Bytes(b"x'\\".to_vec()); n];
        let _ = sql::substitute_params(stmt, &params, false);
    }
    let _ = Target::parse(text);
});
