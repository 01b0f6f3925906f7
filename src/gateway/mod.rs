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
#[derive(Default)]
pub struct Gateway {
    next: AtomicUsize,
    /// What the health checks found (every tablet fit while they are off).
    pub health: Arc<Health>,
    /// Statements held while a primary changes (`--enable_buffer`).
    pub buffer: buffer::Buffer,
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
            choose(candidates, n, |a| {
                verdicts.get(a).map_or(Fitness::Fit, |s| s.fitness)
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
        let i = choose(&others, n, |a| {
            verdicts.get(a).map_or(Fitness::Fit, |s| s.fitness)
        });
        snap.tablets.get(&others[i])
    }
}

/// The `n`th (in turn, modulo their number) of the fittest candidates.
fn choose(candidates: &[String], n: usize, fitness: impl Fn(&str) -> Fitness) -> usize {
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
        let all_fit = |_: &str| Fitness::Fit;
        let picks: Vec<usize> = (0..6).map(|n| choose(&c, n, all_fit)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // b is down: a and c take turns.
        // b's fitness, and the others'.
        let b_and_others =
            |b: Fitness, others: Fitness| move |a: &str| if a == "b" { b } else { others };
        let b_down = b_and_others(Fitness::Down, Fitness::Fit);
        let picks: Vec<usize> = (0..4).map(|n| choose(&c, n, b_down)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        // Only c is fit; a lags, b is down.
        let only_c = |a: &str| match a {
            "a" => Fitness::Lagging,
            "b" => Fitness::Down,
            _ => Fitness::Fit,
        };
        assert!((0..4).all(|n| choose(&c, n, only_c) == 2));
        // None fit: the lagging one before the one that is down.
        let none_fit = b_and_others(Fitness::Down, Fitness::Lagging);
        let picks: Vec<usize> = (0..4).map(|n| choose(&c, n, none_fit)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        // All down: all of them in turn, as without health checks.
        let picks: Vec<usize> = (0..3).map(|n| choose(&c, n, |_| Fitness::Down)).collect();
        assert_eq!(picks, [0, 1, 2]);
    }
}
