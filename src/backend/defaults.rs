//! Tablets' answers to reads of session defaults, kept for a moment.
//!
//! Connectors ask a few session variables at every connect
//! (`SELECT @@max_allowed_packet,@@wait_timeout` from mysql_async,
//! Connector/J's long list; see `sql::reads_defaults`). Like vtgate,
//! shardgate sends them to a tablet. For a session that holds nothing,
//! the answer is what any connection opened alike and given the same
//! settings would say: the server's globals when it opened, as the
//! session's settings (a handshake's character set, a driver's `SET`s)
//! changed them. Kept per tablet, settings and statement for [`KEEP`],
//! such a read costs a client that connects, reads and leaves no tablet
//! round trip at all.
//!
//! How stale can a kept answer be? No staler than the pools already are:
//! a session variable of a pooled tablet connection is as old as the
//! connection (a `SET GLOBAL` changes only connections opened after it),
//! and pooled connections live far longer than [`KEEP`]. A `SET GLOBAL`
//! that passes through shardgate forgets every kept answer at once (the
//! pooled connection that answers next may still predate it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mux::Recorded;
use crate::recent::{key, Recent};

/// How long a kept answer serves.
pub const KEEP: Duration = Duration::from_secs(1);

/// Answers kept at most (they differ only by tablet, by the sessions'
/// settings and by what a connector asks, so a handful in practice; see
/// [`Recent`]).
const MAX: usize = 256;

/// Kept answers, by tablet alias, session settings and statement text.
pub struct Defaults {
    kept: Recent<Arc<Recorded>>,
    /// Reads answered from a kept reply (`/debug/vars`).
    pub served: AtomicU64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            kept: Recent::new(KEEP, MAX),
            served: AtomicU64::new(0),
        }
    }
}

impl Defaults {
    /// The answer `alias` gave to `sql`, on a connection carrying the
    /// `settings` (the session's settings key), within [`KEEP`] of `now`.
    pub fn get(
        &self,
        alias: &str,
        settings: &str,
        sql: &str,
        now: Instant,
    ) -> Option<Arc<Recorded>> {
        let reply = self.kept.get_at(&key(&[alias, settings, sql]), now)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(reply)
    }

    /// Keeps the answer `alias` gave to `sql` at `now` on a connection
    /// carrying the `settings`.
    pub fn put(&self, alias: &str, settings: &str, sql: &str, now: Instant, reply: Recorded) {
        self.kept
            .put_at(key(&[alias, settings, sql]), Arc::new(reply), now);
    }

    /// Forgets every kept answer (a `SET GLOBAL` went through, or the
    /// tablets changed).
    pub fn forget(&self) {
        self.kept.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_serves_its_tablet_for_a_moment() {
        let d = Defaults::default();
        let t0 = Instant::now();
        let sql = "select @@wait_timeout";
        assert!(d.get("zone1-100", "", sql, t0).is_none());
        d.put("zone1-100", "", sql, t0, Recorded::default());
        assert!(d.get("zone1-100", "", sql, t0 + KEEP / 2).is_some());
        assert_eq!(d.served.load(Ordering::Relaxed), 1);
        assert!(d.get("zone1-101", "", sql, t0).is_none(), "another tablet");
        assert!(d.get("zone1-100", "", "select @@sql_mode", t0).is_none());
        let names = "SET NAMES utf8mb3";
        assert!(
            d.get("zone1-100", names, sql, t0).is_none(),
            "other settings"
        );
        d.put("zone1-100", names, sql, t0, Recorded::default());
        assert!(d.get("zone1-100", names, sql, t0).is_some());
        assert!(d.get("zone1-100", "", sql, t0 + KEEP).is_none(), "expired");
        d.forget();
        assert!(d.get("zone1-100", "", sql, t0).is_none(), "forgotten");
        assert!(d.get("zone1-100", names, sql, t0).is_none(), "forgotten");
    }
}
