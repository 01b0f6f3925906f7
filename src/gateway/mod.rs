//! Picks the tablet that serves a (keyspace, shard, tablet type): among
//! the candidates of the snapshot, the fittest by the [`health`] checks,
//! in turn; and holds a shard's primary-bound statements while its
//! primary changes ([`buffer`]).

pub mod buffer;
pub mod health;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use health::{Fitness, Health};

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

/// Round-robin counter over replicas and the health verdicts; shared by
/// all sessions.
pub struct Gateway {
    next: AtomicUsize,
    /// `--min_number_serving_vttablets`: while fewer tablets of a target
    /// are fit, the least lagging of the lagging ones serve too, up to
    /// this many (vtgate's rule; its default is 2, shardgate's 1, which
    /// keeps reads on fresh replicas while one is).
    pub min_serving: usize,
    /// What the health checks found (every tablet fit while they are off).
    pub health: Arc<Health>,
    /// Statements held while a primary changes (`--enable_buffer`).
    pub buffer: buffer::Buffer,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            next: AtomicUsize::new(0),
            min_serving: 1,
            health: Arc::default(),
            buffer: buffer::Buffer::default(),
        }
    }
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
        // One candidate is taken whatever its health: nothing better is
        // left, and its own error says more than "no healthy tablet".
        let i = if candidates.len() == 1 {
            0
        } else {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let verdicts = self.health.verdicts();
            choose(candidates, n, self.min_serving, |a| {
                verdicts
                    .get(a)
                    .map_or((Fitness::Fit, None), |s| (s.fitness, s.lag))
            })
        };
        snap.tablets.get(&candidates[i]).ok_or_else(no_tablet)
    }

    /// Another tablet of `tablet_type` for the shard than `failed`, which a
    /// statement could not reach (nothing was sent to it): the fittest of
    /// the others, in turn. None when there is no other.
    pub fn pick_other<'a>(
        &self,
        snap: &'a Snapshot,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        failed: &str,
    ) -> Option<&'a Tablet> {
        let ks = snap.keyspaces.get(keyspace)?;
        let sh = ks.shards.iter().find(|s| s.name == shard)?;
        let others: Vec<String> = sh.tablets[tablet_type as usize]
            .iter()
            .filter(|a| *a != failed)
            .cloned()
            .collect();
        if others.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let verdicts = self.health.verdicts();
        let i = choose(&others, n, self.min_serving, |a| {
            verdicts
                .get(a)
                .map_or((Fitness::Fit, None), |s| (s.fitness, s.lag))
        });
        snap.tablets.get(&others[i])
    }
}

/// The `n`th (in turn, modulo their number) of the candidates that serve,
/// as vtgate picks them: the fit ones, and while fewer than `min_serving`
/// are, the least lagging of the lagging ones up to that many (a replica
/// whose lag is unknown, its replication stopped, last). When none of
/// those is left, the fittest of the rest. `verdict` gives a candidate's
/// fitness and lag; no allocation.
fn choose(
    candidates: &[String],
    n: usize,
    min_serving: usize,
    verdict: impl Fn(&str) -> (Fitness, Option<u64>),
) -> usize {
    let fit = candidates
        .iter()
        .filter(|a| verdict(a).0 == Fitness::Fit)
        .count();
    let extra = min_serving.saturating_sub(fit);
    let key = |i: usize| (verdict(&candidates[i]).1.unwrap_or(u64::MAX), i);
    let serves = |i: usize| match verdict(&candidates[i]).0 {
        Fitness::Fit => true,
        // Among the `extra` least lagging of the lagging.
        Fitness::Lagging if extra > 0 => {
            let mine = key(i);
            let ahead = (0..candidates.len())
                .filter(|&j| verdict(&candidates[j]).0 == Fitness::Lagging && key(j) < mine)
                .count();
            ahead < extra
        }
        _ => false,
    };
    let serving = (0..candidates.len()).filter(|&i| serves(i)).count();
    if serving > 0 {
        let k = n % serving;
        return (0..candidates.len())
            .filter(|&i| serves(i))
            .nth(k)
            .unwrap_or(0);
    }
    let fitness = |a: &str| verdict(a).0;
    let best = candidates
        .iter()
        .map(|a| fitness(a))
        .min()
        .unwrap_or(Fitness::Fit);
    let fitness = &fitness;
    let fittest = || {
        candidates
            .iter()
            .enumerate()
            .filter(move |(_, a)| fitness(a) == best)
    };
    let k = n % fittest().count().max(1);
    fittest().nth(k).map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fittest_candidates_take_turns() {
        let c: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let picks = |min: usize, v: &dyn Fn(&str) -> (Fitness, Option<u64>), n: usize| {
            (0..n)
                .map(|n| choose(&c, n, min, v))
                .collect::<Vec<usize>>()
        };
        let all_fit = |_: &str| (Fitness::Fit, Some(0));
        assert_eq!(picks(1, &all_fit, 6), [0, 1, 2, 0, 1, 2]);
        // b is down: a and c take turns.
        let b_down = |a: &str| match a {
            "b" => (Fitness::Down, None),
            _ => (Fitness::Fit, Some(0)),
        };
        assert_eq!(picks(1, &b_down, 4), [0, 2, 0, 2]);
        // Only c is fit; a lags, b is down.
        let only_c = |a: &str| match a {
            "a" => (Fitness::Lagging, Some(90)),
            "b" => (Fitness::Down, None),
            _ => (Fitness::Fit, Some(1)),
        };
        assert_eq!(picks(1, &only_c, 4), [2, 2, 2, 2]);
        // vtgate's two serving: the least lagging joins the fit one.
        assert_eq!(picks(2, &only_c, 4), [0, 2, 0, 2]);
        // None fit: the least lagging serves (a stopped replica, lag
        // unknown, last); with two to serve, the next least too.
        let none_fit = |a: &str| match a {
            "a" => (Fitness::Lagging, None),
            "b" => (Fitness::Lagging, Some(300)),
            _ => (Fitness::Lagging, Some(60)),
        };
        assert_eq!(picks(1, &none_fit, 3), [2, 2, 2]);
        assert_eq!(picks(2, &none_fit, 4), [1, 2, 1, 2]);
        assert_eq!(picks(5, &none_fit, 3), [0, 1, 2]);
        // Too far behind serves only when nothing else answers.
        let far = |a: &str| match a {
            "a" => (Fitness::FarBehind, Some(9000)),
            _ => (Fitness::Down, None),
        };
        assert_eq!(picks(2, &far, 3), [0, 0, 0]);
        // All down: all of them in turn, as without health checks.
        let down = |_: &str| (Fitness::Down, None);
        assert_eq!(picks(1, &down, 3), [0, 1, 2]);
    }
}
