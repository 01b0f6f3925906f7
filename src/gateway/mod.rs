//! Picks the tablet that serves a (keyspace, shard, tablet type).
//!
//! Today every tablet in the snapshot is taken as serving; the health
//! checker and failover buffering plug in here, in front of the same call.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sql::TabletType;
use crate::topo::{Snapshot, Tablet};

/// Why no tablet could be picked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The keyspace or shard does not exist in the snapshot.
    #[error("Unknown database '{0}'")]
    UnknownKeyspace(String),
    /// The shard does not exist.
    #[error("target: {keyspace}.{shard}: no such shard")]
    UnknownShard { keyspace: String, shard: String },
    /// No tablet of that type serves the shard.
    #[error("target: {keyspace}.{shard}.{}: no healthy tablet available", tablet_type.as_str())]
    NoTablet {
        keyspace: String,
        shard: String,
        tablet_type: TabletType,
    },
}

/// Round-robin counter over replicas; shared by all sessions.
#[derive(Debug, Default)]
pub struct Gateway {
    next: AtomicUsize,
}

impl Gateway {
    /// Picks a tablet of `tablet_type` for the shard.
    pub fn pick<'a>(
        &self,
        snap: &'a Snapshot,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
    ) -> Result<&'a Tablet, GatewayError> {
        let ks = snap
            .keyspaces
            .get(keyspace)
            .ok_or_else(|| GatewayError::UnknownKeyspace(keyspace.to_string()))?;
        let sh = ks.shards.iter().find(|s| s.name == shard).ok_or_else(|| {
            GatewayError::UnknownShard {
                keyspace: keyspace.to_string(),
                shard: shard.to_string(),
            }
        })?;
        let candidates = &sh.tablets[tablet_type as usize];
        let no_tablet = || GatewayError::NoTablet {
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            tablet_type,
        };
        if candidates.is_empty() {
            return Err(no_tablet());
        }
        let i = if candidates.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
        };
        snap.tablets.get(&candidates[i]).ok_or_else(no_tablet)
    }
}
