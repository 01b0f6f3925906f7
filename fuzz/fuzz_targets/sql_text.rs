//! Arbitrary SQL text through split → classify → rewrite → plan.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shardgate::sql::{self, SessionValues, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for stmt in sql::lexer::split_statements(text) {
        if let Ok(s) = sql::classify(stmt) {
            let snap = shardgate::topo::Snapshot::default();
            let _ = shardgate::planner::plan(&s, &Target::default(), &snap);
        }
        let _ = sql::rewrite_session_values(
            stmt,
            &SessionValues { database: Some("ks"), last_insert_id: 1 },
        );
        let n = sql::count_placeholders(stmt);
        let params = vec![mysql_common::value::Value::Bytes(b"x'\\".to_vec()); n];
        let _ = sql::substitute_params(stmt, &params, false);
    }
    let _ = Target::parse(text);
});
