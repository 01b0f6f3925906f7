//! What tablets answered lately, kept for a while so that the next
//! session asking the same is answered without a round trip: what a
//! session SET did (`executor::verdicts`) and what a connection's
//! session variables read, by the settings it carries
//! (`backend::defaults`). Both are what drivers
//! send at every connect, and both can go stale only when a tablet's
//! global variables change, so each is kept for a bounded time and
//! forgotten at once when a `SET GLOBAL` passes through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fasthash::FastMap;

/// Answers by key, each serving for `ttl` after it was kept; at most
/// `max` of them (a client sending ever new texts must not grow the
/// gate: past the bound the stale ones go, and if none are, all).
pub struct Recent<V> {
    map: Mutex<FastMap<String, (V, Instant)>>,
    ttl: Duration,
    max: usize,
}

impl<V: Clone> Recent<V> {
    /// An empty set whose answers serve for `ttl`, `max` at most.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Recent {
            map: Mutex::default(),
            ttl,
            max,
        }
    }

    /// The answer kept under `key` less than the TTL before `now`.
    pub fn get_at(&self, key: &str, now: Instant) -> Option<V> {
        let map = self.lock();
        match map.get(key) {
            Some((v, at)) if now.saturating_duration_since(*at) < self.ttl => Some(v.clone()),
            _ => None,
        }
    }

    /// Keeps `v` under `key` as of `now`.
    pub fn put_at(&self, key: String, v: V, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key, (v, now));
    }

    /// Forgets every answer (what they depend on changed).
    pub fn forget(&self) {
        self.lock().clear();
    }

    /// Answers kept, stale ones included (for the bound's tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// A panic elsewhere while the map was held leaves it usable (every
    /// update is one insert, retain or clear).
    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<String, (V, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One key for several parts: the lengths of all but the last, then the
/// parts, so that no two lists of parts share it.
pub fn key(parts: &[&str]) -> String {
    let mut k = String::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    if let Some((last, lead)) = parts.split_last() {
        for p in lead {
            k.push_str(&p.len().to_string());
            k.push(':');
        }
        for p in lead {
            k.push_str(p);
        }
        k.push_str(last);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_serves_until_it_ages_or_is_forgotten() {
        let r = Recent::new(Duration::from_secs(10), 8);
        let t0 = Instant::now();
        r.put_at("a".into(), 1, t0);
        assert_eq!(r.get_at("a", t0), Some(1));
        assert_eq!(r.get_at("b", t0), None);
        assert_eq!(r.get_at("a", t0 + Duration::from_millis(9999)), Some(1));
        assert_eq!(r.get_at("a", t0 + Duration::from_secs(10)), None);
        r.put_at("a".into(), 2, t0);
        assert_eq!(r.get_at("a", t0), Some(2));
        r.forget();
        assert_eq!(r.get_at("a", t0), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let r = Recent::new(Duration::from_secs(1), 4);
        let t0 = Instant::now();
        for i in 0..4 {
            r.put_at(i.to_string(), i, t0);
        }
        // Full of fresh answers: a new one makes room by forgetting all.
        r.put_at("new".into(), 9, t0);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get_at("new", t0), Some(9));
        // Stale ones make room and the fresh stay.
        for i in 0..2 {
            r.put_at(i.to_string(), i, t0);
        }
        r.put_at("fresh".into(), 5, t0 + Duration::from_millis(900));
        assert_eq!(r.len(), 4);
        let later = t0 + Duration::from_millis(1500);
        r.put_at("newer".into(), 6, later);
        assert_eq!(r.len(), 2);
        assert_eq!(r.get_at("fresh", later), Some(5));
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        assert_ne!(key(&["a", "b", "c"]), key(&["a", "", "bc"]));
        assert_ne!(key(&["a", "b", "c"]), key(&["ab", "", "c"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_eq!(key(&["zone1-100", "x"]), key(&["zone1-100", "x"]));
    }
}
