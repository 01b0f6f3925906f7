//! Arbitrary bytes as a column value through every functional vindex
//! (as text, and as an integer when eight bytes are there): a keyspace id or
//! a clear error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mysql_common::value::Value;
use shardgate::vschema::vindex::Func;

fuzz_target!(|data: &[u8]| {
    let mut values = vec![Value::Bytes(data.to_vec())];
    if let Ok(b) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        values.push(Value::Int(i64::from_le_bytes(b)));
        values.push(Value::UInt(u64::from_le_bytes(b)));
        values.push(Value::Double(f64::from_le_bytes(b)));
    }
    let funcs = shardgate::vschema::KNOWN_VINDEX_TYPES
        .iter()
        .filter_map(|t| Func::from_type(t).ok());
    for f in funcs {
        for v in &values {
            let _ = f.map(v);
        }
    }
});
