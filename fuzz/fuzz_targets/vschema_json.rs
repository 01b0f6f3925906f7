//! Arbitrary bytes as a keyspace VSchema document and as topology records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shardgate::vschema::KeyspaceVSchema::from_json("ks", data);
    let mut records = std::collections::BTreeMap::new();
    records.insert("global/keyspaces/ks/VSchema".to_string(), data.to_vec());
    records.insert("global/keyspaces/ks/shards/-80/Shard".to_string(), b"{}".to_vec());
    records.insert("global/keyspaces/ks/shards/80-/Shard".to_string(), b"{}".to_vec());
    let _ = shardgate::topo::Snapshot::build(&records, &[], 1);
});
