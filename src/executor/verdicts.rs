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

use std::time::{Duration, Instant};

use crate::recent::{key, Recent};

/// How long a verdict serves before the SET is checked again.
pub const TTL: Duration = Duration::from_secs(10);

/// Verdicts kept at most (see [`Recent`]).
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
pub struct SetVerdicts(Recent<Verdict>);

impl Default for SetVerdicts {
    fn default() -> Self {
        SetVerdicts(Recent::new(TTL, MAX))
    }
}

impl SetVerdicts {
    /// The fresh verdict on `set` run on `tablet` by a session holding
    /// the settings `prior` (joined, as the pools tag connections).
    pub fn get(&self, tablet: &str, prior: &str, set: &str) -> Option<Verdict> {
        self.get_at(tablet, prior, set, Instant::now())
    }

    fn get_at(&self, tablet: &str, prior: &str, set: &str, now: Instant) -> Option<Verdict> {
        self.0.get_at(&key(&[tablet, prior, set]), now)
    }

    /// Remembers what `set` just did on `tablet`.
    pub fn record(&self, tablet: &str, prior: &str, set: &str, verdict: Verdict) {
        self.record_at(tablet, prior, set, verdict, Instant::now());
    }

    fn record_at(&self, tablet: &str, prior: &str, set: &str, verdict: Verdict, now: Instant) {
        self.0.put_at(key(&[tablet, prior, set]), verdict, now);
    }

    /// Forgets every verdict: a tablet's global variables changed, and with
    /// them what a clean connection holds.
    pub fn forget_all(&self) {
        self.0.forget();
    }
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
    fn the_map_stays_bounded() {
        let v = SetVerdicts::default();
        let t0 = Instant::now();
        for i in 0..MAX + 10 {
            v.record_at("t", "", &format!("SET x = {i}"), Verdict::Applies, t0);
        }
        assert!(v.0.len() <= MAX);
        let last = format!("SET x = {}", MAX + 9);
        assert_eq!(v.get_at("t", "", &last, t0), Some(Verdict::Applies));
    }
}
