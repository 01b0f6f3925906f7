//! Health checks: which tablets are fit to serve, so that the gateway sends
//! a shard's reads around a replica that is down, not replicating or far
//! behind, as vtgate's health check does.
//!
//! vtgate learns health from each vttablet's health stream; shardgate has
//! no vttablets, so it asks the MariaDB servers itself: every
//! `--health-check-interval-ms`, one kept connection per tablet pings a
//! primary and reads a replica's `SHOW SLAVE STATUS`. A round's verdicts
//! replace the last round's at once ([`Health`] is an `ArcSwap` of an
//! immutable map), so the statement path reads them without a lock.
//!
//! Verdicts only rank the candidates: the gateway picks a fit tablet when
//! there is one, else a lagging one, else any, in that order (see
//! [`super::Gateway::pick`]). A tablet the checker has not reached yet
//! counts as fit, and one it wrongly finds down (a probe that timed out
//! under load) is still used when nothing better is left, so a check can
//! move traffic but never turn a working shard away.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mysql_async::prelude::Queryable;

use crate::fasthash::FastMap;
use crate::sql::TabletType;
use crate::topo::schema::Login;
use crate::topo::{SnapshotHandle, Tablet};

/// How fit a tablet is to serve, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fitness {
    /// Answers, and (a replica) replicates within the allowed lag.
    Fit,
    /// Answers, but replicates too far behind, or not at all.
    Lagging,
    /// Answers, but is further behind than a replica may be and still
    /// serve (`--discovery_high_replication_lag_minimum_serving`): taken
    /// only when no other tablet answers.
    FarBehind,
    /// Does not answer.
    Down,
}

impl Fitness {
    /// Whether a tablet so judged serves: it answers and is not too far
    /// behind (a lagging replica serves, it only takes reads last).
    /// `HealthcheckConnections` and SHOW VITESS_TABLETS' state both ask.
    pub fn serves(self) -> bool {
        self <= Fitness::Lagging
    }
}

/// What the last check found about one tablet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The verdict.
    pub fitness: Fitness,
    /// Seconds behind its primary, for a replica that said.
    pub lag: Option<u64>,
    /// Why it is not fit, or what the check could not tell, for the
    /// status page.
    pub reason: Option<String>,
}

impl Status {
    fn fit(lag: Option<u64>) -> Self {
        Status {
            fitness: Fitness::Fit,
            lag,
            reason: None,
        }
    }

    fn not(fitness: Fitness, lag: Option<u64>, reason: String) -> Self {
        Status {
            fitness,
            lag,
            reason: Some(reason),
        }
    }
}

/// The verdicts of the last round, by tablet alias.
#[derive(Default)]
pub struct Health {
    verdicts: ArcSwap<FastMap<String, Status>>,
}

impl Health {
    /// How fit `alias` is (fit until a check said otherwise).
    pub fn fitness(&self, alias: &str) -> Fitness {
        self.verdicts
            .load()
            .get(alias)
            .map_or(Fitness::Fit, |s| s.fitness)
    }

    /// What the last check found about `alias` (None: not checked yet).
    pub fn status(&self, alias: &str) -> Option<Status> {
        self.verdicts.load().get(alias).cloned()
    }

    /// Every verdict, read once for several lookups.
    pub fn verdicts(&self) -> arc_swap::Guard<Arc<FastMap<String, Status>>> {
        self.verdicts.load()
    }

    /// How many tablets of each (keyspace, shard, tablet type) serve, that
    /// is answer and are not too far behind (vtgate's
    /// `HealthcheckConnections`: a lagging replica still serves; it only
    /// takes reads last). Targets with none serving
    /// are left out, as vtgate leaves them.
    pub fn serving_counts(
        &self,
        snap: &crate::topo::Snapshot,
    ) -> std::collections::BTreeMap<(String, String, &'static str), u64> {
        let verdicts = self.verdicts();
        let mut counts = std::collections::BTreeMap::new();
        for t in snap.tablets.values() {
            let fitness = verdicts.get(&t.alias).map_or(Fitness::Fit, |s| s.fitness);
            if fitness.serves() {
                let key = (t.keyspace.clone(), t.shard.clone(), t.tablet_type.as_str());
                *counts.entry(key).or_default() += 1;
            }
        }
        counts
    }

    /// Replaces every verdict (a round of checks, or a test's).
    pub fn set(&self, verdicts: FastMap<String, Status>) {
        self.verdicts.store(Arc::new(verdicts));
    }
}

/// How the checker runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between rounds (`--health-check-interval-ms`).
    pub interval: Duration,
    /// A replica further behind than this is lagging
    /// (`--discovery-low-replication-lag`, vtgate's flag).
    pub low_lag: Duration,
    /// A replica further behind than this does not serve
    /// (`--discovery_high_replication_lag_minimum_serving`, vtgate's flag).
    pub high_lag: Duration,
    /// How the checker logs in.
    pub login: Login,
}

/// How long one probe may take before its tablet counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A kept probe connection and the address it was made for.
type Probe = ((String, u16), mysql_async::Conn);

/// Runs forever: checks every tablet of the current snapshot each
/// interval, concurrently, and publishes the verdicts into `health`.
pub async fn run(handle: SnapshotHandle, health: Arc<Health>, cfg: Config) {
    let mut probes: FastMap<String, Probe> = FastMap::default();
    loop {
        let snap = handle.load_full();
        let checks = snap.tablets.values().map(|t| {
            let addr = (t.hostname.clone(), t.port);
            // A tablet that moved gets a new connection.
            let kept = probes
                .remove(&t.alias)
                .filter(|(a, _)| *a == addr)
                .map(|(_, c)| c);
            let cfg = &cfg;
            async move {
                let (status, conn) = tokio::time::timeout(PROBE_TIMEOUT, check(t, kept, cfg))
                    .await
                    .unwrap_or_else(|_| {
                        let why = format!("no answer in {PROBE_TIMEOUT:?}");
                        (Status::not(Fitness::Down, None, why), None)
                    });
                (t.alias.clone(), addr, status, conn)
            }
        });
        let results = futures_util::future::join_all(checks).await;
        // What is left belongs to tablets gone from the topology.
        probes.clear();
        let mut verdicts = FastMap::default();
        for (alias, addr, status, conn) in results {
            if let Some(c) = conn {
                probes.insert(alias.clone(), (addr, c));
            }
            if health.status(&alias).as_ref() != Some(&status) {
                tracing::info!(tablet = %alias, ?status, "health check");
            }
            verdicts.insert(alias, status);
        }
        health.set(verdicts);
        tokio::time::sleep(cfg.interval).await;
    }
}

/// One probe of `t`, on `kept` or a new connection; the connection comes
/// back when it is still good.
async fn check(
    t: &Tablet,
    kept: Option<mysql_async::Conn>,
    cfg: &Config,
) -> (Status, Option<mysql_async::Conn>) {
    let mut conn = match kept {
        Some(c) => c,
        None => match mysql_async::Conn::new(cfg.login.opts(t)).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot connect: {e}");
                return (Status::not(Fitness::Down, None, why), None);
            }
        },
    };
    if t.tablet_type == TabletType::Primary {
        return match conn.ping().await {
            Ok(()) => (Status::fit(None), Some(conn)),
            Err(e) => (Status::not(Fitness::Down, None, e.to_string()), None),
        };
    }
    let row: Result<Option<mysql_async::Row>, _> = conn.query_first("SHOW SLAVE STATUS").await;
    let row = match row {
        Ok(r) => r,
        // It answered, so it serves; a login without the privilege to
        // read replication status (SLAVE MONITOR) cannot tell its lag.
        Err(mysql_async::Error::Server(e)) => {
            let why = format!("lag unknown: {}", e.message);
            let status = Status {
                fitness: Fitness::Fit,
                lag: None,
                reason: Some(why),
            };
            return (status, Some(conn));
        }
        Err(e) => return (Status::not(Fitness::Down, None, e.to_string()), None),
    };
    let status = match row {
        None => Status::not(Fitness::Lagging, None, "not replicating".into()),
        Some(r) => judge_lag(
            r.get_opt::<Option<u64>, _>("Seconds_Behind_Master")
                .and_then(Result::ok)
                .flatten(),
            cfg.low_lag,
            cfg.high_lag,
        ),
    };
    (status, Some(conn))
}

/// vtgate's `SHOW VITESS_REPLICATION_STATUS`: every replica's and
/// rdonly tablet's replication as its server says it now (`SHOW SLAVE
/// STATUS`, each asked at once, two seconds at most), for those
/// whose `keyspace/shard` is LIKE `like`. Columns as vtgate's: Keyspace,
/// Shard, TabletType, Alias, Hostname, ReplicationSource (`host:port`),
/// ReplicationHealth (JSON: both threads running, the last error),
/// ReplicationLag (seconds; the health check's when it has one, `NULL`
/// when replication is stopped, -1 when the server could not be asked),
/// ThrottlerStatus (empty: there is no tablet throttler).
pub async fn replication_status(
    snap: &crate::topo::Snapshot,
    health: &Health,
    login: &Login,
    like: Option<&str>,
) -> Vec<Vec<String>> {
    let replicas = snap.tablets.values().filter(|t| {
        matches!(t.tablet_type, TabletType::Replica | TabletType::Rdonly)
            && like.is_none_or(|p| crate::sql::like(p, &format!("{}/{}", t.keyspace, t.shard)))
    });
    let rows = replicas.map(|t| async move {
        let asked = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut conn = mysql_async::Conn::new(login.opts(t)).await.ok()?;
            let row: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await.ok()?;
            let _ = conn.disconnect().await;
            Some(row)
        })
        .await
        .ok()
        .flatten();
        let text = |r: &mysql_async::Row, name: &str| -> Option<String> {
            r.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
        };
        let lag_checked = health
            .status(&t.alias)
            .and_then(|s| s.lag)
            .filter(|&l| l > 0);
        let (source, threads, lag) = match &asked {
            Some(Some(r)) => {
                let field = |name| text(r, name).unwrap_or_default();
                let lag = match (lag_checked, text(r, "Seconds_Behind_Master")) {
                    (Some(l), _) => l.to_string(),
                    (None, Some(s)) => s,
                    (None, None) => "NULL".to_string(),
                };
                let source = format!("{}:{}", field("Master_Host"), field("Master_Port"));
                let threads = [
                    field("Slave_IO_Running"),
                    field("Slave_SQL_Running"),
                    field("Last_Error"),
                ];
                (source, threads, lag)
            }
            // Not replicating at all, or not asked.
            Some(None) => (":0".to_string(), Default::default(), "NULL".to_string()),
            None => (":0".to_string(), Default::default(), "-1".to_string()),
        };
        // vtgate's JSON, its keys in vtgate's order.
        let [io, sql, error] = threads.map(|t| serde_json::Value::from(t).to_string());
        let health = format!(
            "{{\"EventStreamRunning\":{io},\"EventApplierRunning\":{sql},\"LastError\":{error}}}"
        );
        vec![
            t.keyspace.clone(),
            t.shard.clone(),
            t.tablet_type.as_str().to_ascii_uppercase(),
            t.alias.clone(),
            format!("{}:{}", t.hostname, t.port),
            source,
            health,
            lag,
            String::new(),
        ]
    });
    let mut rows = futures_util::future::join_all(rows).await;
    rows.sort();
    rows
}

/// A replica's verdict from its `Seconds_Behind_Master` (None: replication
/// is stopped).
fn judge_lag(seconds: Option<u64>, low_lag: Duration, high_lag: Duration) -> Status {
    match seconds {
        None => Status::not(Fitness::Lagging, None, "replication stopped".into()),
        Some(s) if Duration::from_secs(s) > high_lag => Status::not(
            Fitness::FarBehind,
            Some(s),
            format!("{s} s behind (more than {high_lag:?}: not serving)"),
        ),
        Some(s) if Duration::from_secs(s) > low_lag => Status::not(
            Fitness::Lagging,
            Some(s),
            format!("{s} s behind (more than {low_lag:?})"),
        ),
        Some(s) => Status::fit(Some(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_far_behind_or_stopped_is_lagging() {
        let (low, high) = (Duration::from_secs(30), Duration::from_secs(7200));
        assert_eq!(judge_lag(Some(0), low, high).fitness, Fitness::Fit);
        assert_eq!(judge_lag(Some(30), low, high).fitness, Fitness::Fit);
        let far = judge_lag(Some(31), low, high);
        assert_eq!((far.fitness, far.lag), (Fitness::Lagging, Some(31)));
        assert_eq!(judge_lag(None, low, high).fitness, Fitness::Lagging);
        assert_eq!(judge_lag(Some(7200), low, high).fitness, Fitness::Lagging);
        let too_far = judge_lag(Some(7201), low, high);
        assert_eq!(
            (too_far.fitness, too_far.lag),
            (Fitness::FarBehind, Some(7201))
        );
        // Lagging still serves (last); too far behind or down does not.
        assert!(far.fitness.serves() && !too_far.fitness.serves() && !Fitness::Down.serves());
    }

    #[test]
    fn unchecked_tablets_are_fit() {
        let h = Health::default();
        assert_eq!(h.fitness("zone1-100"), Fitness::Fit);
        let mut v = FastMap::default();
        v.insert(
            "zone1-100".to_string(),
            Status::not(Fitness::Down, None, "x".into()),
        );
        h.set(v);
        assert_eq!(h.fitness("zone1-100"), Fitness::Down);
        assert_eq!(h.fitness("zone1-101"), Fitness::Fit);
    }
}
