//! Connection pools to tablets: one mysql_async pool per tablet, created and
//! retired as tablets come and go in the snapshot.
//!
//! Pools do not reset connections on return (a round trip per checkout);
//! instead the session never returns a connection that carries state: it
//! rolls back or resets it first (see `session`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::topo::{Snapshot, Tablet};

/// Prepared statements each backend connection keeps (MariaDB allows
/// 16,382 per server by default; pools hold at most a few hundred
/// connections).
const STMT_CACHE: usize = 32;

/// How shardgate logs in to tablets.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// MySQL user on every tablet.
    pub user: String,
    /// Its password (empty for none).
    pub password: String,
    /// Idle connections kept per tablet.
    pub pool_min: usize,
    /// Upper bound of connections per tablet.
    pub pool_max: usize,
    /// Switch loopback tablets to their Unix socket (see the
    /// `--tablet-local-socket` flag).
    pub local_socket: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            user: "vt_app".into(),
            password: String::new(),
            pool_min: 4,
            pool_max: 200,
            local_socket: true,
        }
    }
}

/// Address and database a pool was built for; a change means a new pool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolKey {
    host: String,
    port: u16,
    db: String,
}

/// The set of tablet pools, keyed by tablet alias.
pub struct Pools {
    cfg: BackendConfig,
    map: RwLock<HashMap<String, (PoolKey, Pool)>>,
}

impl Pools {
    /// An empty set; pools are made on first use or by [`Pools::reconcile`].
    pub fn new(cfg: BackendConfig) -> Self {
        Pools {
            cfg,
            map: RwLock::new(HashMap::new()),
        }
    }

    fn key(t: &Tablet) -> PoolKey {
        PoolKey {
            host: t.hostname.clone(),
            port: t.port,
            db: t.db_name.clone(),
        }
    }

    fn make(&self, k: &PoolKey) -> Pool {
        let constraints = PoolConstraints::new(
            self.cfg.pool_min,
            self.cfg.pool_max.max(self.cfg.pool_min.max(1)),
        )
        .unwrap_or_default();
        let pool_opts = PoolOpts::new()
            .with_constraints(constraints)
            .with_reset_connection(false)
            .with_inactive_connection_ttl(Duration::from_secs(300));
        let opts = OptsBuilder::default()
            .ip_or_hostname(k.host.clone())
            .tcp_port(k.port)
            .user(Some(self.cfg.user.clone()))
            .pass((!self.cfg.password.is_empty()).then(|| self.cfg.password.clone()))
            .db_name(Some(k.db.clone()))
            // mysql_async asks a loopback server for @@socket and reconnects
            // through it when it can.
            .prefer_socket(self.cfg.local_socket)
            .tcp_nodelay(true)
            // Client prepared statements that go whole to one tablet run
            // prepared there too, once per connection.
            .stmt_cache_size(STMT_CACHE)
            .pool_opts(pool_opts);
        Pool::new(opts)
    }

    /// The pool for a tablet, creating it if the tablet is new.
    pub fn get(&self, t: &Tablet) -> Pool {
        let key = Self::key(t);
        if let Some((k, p)) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&t.alias)
        {
            if *k == key {
                return p.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&t.alias) {
            Some((k, p)) if *k == key => p.clone(),
            _ => {
                let pool = self.make(&key);
                if let Some((_, old)) = map.insert(t.alias.clone(), (key, pool.clone())) {
                    retire(old);
                }
                pool
            }
        }
    }

    /// Makes the pool set match the snapshot: new tablets get pools, moved
    /// ones get new pools, removed ones are drained and closed.
    pub fn reconcile(&self, snap: &Snapshot) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|alias, (k, pool)| {
            let keep = snap.tablets.get(alias).is_some_and(|t| Self::key(t) == *k);
            if !keep {
                retire(pool.clone());
            }
            keep
        });
        for t in snap.tablets.values() {
            if !map.contains_key(&t.alias) {
                let key = Self::key(t);
                let pool = self.make(&key);
                map.insert(t.alias.clone(), (key, pool));
            }
        }
    }

    /// Closes every pool (at shutdown).
    pub async fn close_all(&self) {
        let pools: Vec<Pool> = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, (_, p))| p)
            .collect();
        for p in pools {
            let _ = p.disconnect().await;
        }
    }
}

fn retire(pool: Pool) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = pool.disconnect().await;
        });
    }
}
