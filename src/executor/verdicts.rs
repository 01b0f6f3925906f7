//! What a session SET did on a tablet lately, so the next session that
//! sends the same one is answered without asking the tablet again.
//!
//! Drivers set their connection up with the same SETs at every connect
//! (Perl's DBD::MariaDB sends four: `SET NAMES`, two collations and the
//! server character set). Checked each time, a connect costs a round trip
//! to the tablet per SET before the client's first query. vtgate answers
//! `SET NAMES` without one and checks the rest with one query each; here
//! a SET whose values are literals ([`crate::sql::SetStmt::constant`]) is
//! checked once per tablet and settings, and its verdict serves later
//! sessions for [`TTL`]:
//! - [`Verdict::Noop`]: it left a clean connection as it was; the session
//!   need not carry it.
//! - [`Verdict::Applies`]: it changed something and ran without error;
//!   the session carries it, and connections that already do (tagged with
//!   the same settings in the pools) serve it without running it again.
//!
//! A verdict can go stale only when a tablet's global variables change
//! under it: a `SET GLOBAL` through shardgate forgets every verdict, and
//! [`TTL`] bounds the rest (a change made on the tablet directly).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verdict serves before the SET is checked again.
pub const TTL: Duration = Duration::from_secs(10);

/// Verdicts kept at most; past that they are all forgotten (a client
/// sending ever new SET texts must not grow the gate).
const MAX: usize = 4096;

/// What a SET did on a tablet, after the settings the session had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It left the session variables as a clean connection has them.
    Noop,
    /// It changed something, and the tablet took it.
    Applies,
}

/// The verdicts of the whole gate, by tablet, settings before, and SET.
#[derive(Default)]
pub struct SetVerdicts {
    map: Mutex<HashMap<String, (Verdict, Instant)>>,
}

impl SetVerdicts {
    /// The fresh verdict on `set` run on `tablet` by a session holding
    /// the settings `prior` (joined, as the pools tag connections).
    pub fn get(&self, tablet: &str, prior: &str, set: &str) -> Option<Verdict> {
        self.get_at(tablet, prior, set, Instant::now())
    }

    fn get_at(&self, tablet: &str, prior: &str, set: &str, now: Instant) -> Option<Verdict> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key(tablet, prior, set)) {
            Some(&(v, at)) if now.saturating_duration_since(at) < TTL => Some(v),
            _ => None,
        }
    }

    /// Remembers what `set` just did on `tablet`.
    pub fn record(&self, tablet: &str, prior: &str, set: &str, verdict: Verdict) {
        self.record_at(tablet, prior, set, verdict, Instant::now());
    }

    fn record_at(&self, tablet: &str, prior: &str, set: &str, verdict: Verdict, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < TTL);
            if map.len() >= MAX {
                map.clear();
            }
        }
        map.insert(key(tablet, prior, set), (verdict, now));
    }

    /// Forgets every verdict: a tablet's global variables changed, and with
    /// them what a clean connection holds.
    pub fn forget_all(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// One string for the three parts, led by the first two's lengths so no
/// two triples share it.
fn key(tablet: &str, prior: &str, set: &str) -> String {
    format!("{}:{}:{tablet}{prior}{set}", tablet.len(), prior.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_serves_its_tablet_and_settings_until_it_ages() {
        let v = SetVerdicts::default();
        let t0 = Instant::now();
        let names = "SET NAMES 'utf8mb4'";
        v.record_at("zone1-100", "", names, Verdict::Noop, t0);
        assert_eq!(v.get_at("zone1-100", "", names, t0), Some(Verdict::Noop));
        assert_eq!(v.get_at("zone1-200", "", names, t0), None);
        assert_eq!(v.get_at("zone1-100", "SET a = 1", names, t0), None);
        assert_eq!(v.get_at("zone1-100", "", "SET NAMES latin1", t0), None);
        let later = t0 + TTL - Duration::from_millis(1);
        assert_eq!(v.get_at("zone1-100", "", names, later), Some(Verdict::Noop));
        assert_eq!(v.get_at("zone1-100", "", names, t0 + TTL), None);
        v.record_at("zone1-100", "", names, Verdict::Applies, t0);
        assert_eq!(v.get_at("zone1-100", "", names, t0), Some(Verdict::Applies));
        v.forget_all();
        assert_eq!(v.get_at("zone1-100", "", names, t0), None);
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        let v = SetVerdicts::default();
        let t0 = Instant::now();
        v.record_at("a", "b", "c", Verdict::Noop, t0);
        assert_eq!(v.get_at("a", "", "bc", t0), None);
        assert_eq!(v.get_at("ab", "", "c", t0), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let v = SetVerdicts::default();
        let t0 = Instant::now();
        for i in 0..MAX + 10 {
            v.record_at("t", "", &format!("SET x = {i}"), Verdict::Applies, t0);
        }
        assert!(v.map.lock().unwrap().len() <= MAX);
        let last = format!("SET x = {}", MAX + 9);
        assert_eq!(v.get_at("t", "", &last, t0), Some(Verdict::Applies));
    }
}
