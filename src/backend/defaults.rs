//! Tablets' answers to reads of session defaults, kept for a moment.
//!
//! Connectors ask a few session variables at every connect
//! (`SELECT @@max_allowed_packet,@@wait_timeout` from mysql_async,
//! Connector/J's long list; see `sql::reads_defaults`). Like vtgate,
//! shardgate sends them to a tablet; for a clean session (no settings,
//! nothing held) the answer is what any connection opened alike would
//! say, the server's globals when it opened. Kept per tablet and
//! statement for [`KEEP`], such a read costs a client that connects,
//! reads and leaves no tablet round trip at all.
//!
//! How stale can a kept answer be? No staler than the pools already are:
//! a session variable of a pooled tablet connection is as old as the
//! connection (a `SET GLOBAL` changes only connections opened after it),
//! and pooled connections live far longer than [`KEEP`]. A `SET GLOBAL`
//! that passes through shardgate forgets every kept answer at once (the
//! pooled connection that answers next may still predate it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fasthash::FastMap;

use super::lock;
use super::mux::Recorded;

/// How long a kept answer serves.
pub const KEEP: Duration = Duration::from_secs(1);

/// Statements kept at most (they differ only by what a connector asks,
/// so a handful in practice; past this, expired ones make room or the
/// answer is not kept).
const MAX_STATEMENTS: usize = 64;

/// Kept answers, by statement text, then by tablet alias.
#[derive(Default)]
pub struct Defaults {
    kept: Mutex<FastMap<Box<str>, Vec<Kept>>>,
    /// Reads answered from a kept reply (`/debug/vars`).
    pub served: AtomicU64,
}

struct Kept {
    alias: Box<str>,
    at: Instant,
    reply: Arc<Recorded>,
}

impl Defaults {
    /// The answer `alias` gave to `sql` within [`KEEP`] of `now`.
    pub fn get(&self, alias: &str, sql: &str, now: Instant) -> Option<Arc<Recorded>> {
        let kept = lock(&self.kept);
        let reply = kept
            .get(sql)?
            .iter()
            .find(|k| &*k.alias == alias && now.saturating_duration_since(k.at) < KEEP)?
            .reply
            .clone();
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(reply)
    }

    /// Keeps the answer `alias` gave to `sql` at `now`.
    pub fn put(&self, alias: &str, sql: &str, now: Instant, reply: Recorded) {
        let mut kept = lock(&self.kept);
        if kept.len() >= MAX_STATEMENTS && !kept.contains_key(sql) {
            kept.retain(|_, v| {
                v.retain(|k| now.saturating_duration_since(k.at) < KEEP);
                !v.is_empty()
            });
            if kept.len() >= MAX_STATEMENTS {
                return;
            }
        }
        let list = kept.entry(sql.into()).or_default();
        list.retain(|k| &*k.alias != alias);
        list.push(Kept {
            alias: alias.into(),
            at: now,
            reply: Arc::new(reply),
        });
    }

    /// Forgets every kept answer (a `SET GLOBAL` went through, or the
    /// tablets changed).
    pub fn forget(&self) {
        lock(&self.kept).clear();
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
        assert!(d.get("zone1-100", sql, t0).is_none());
        d.put("zone1-100", sql, t0, Recorded::default());
        assert!(d.get("zone1-100", sql, t0 + KEEP / 2).is_some());
        assert_eq!(d.served.load(Ordering::Relaxed), 1);
        assert!(d.get("zone1-101", sql, t0).is_none(), "another tablet");
        assert!(d.get("zone1-100", "select @@sql_mode", t0).is_none());
        assert!(d.get("zone1-100", sql, t0 + KEEP).is_none(), "expired");
        d.forget();
        assert!(d.get("zone1-100", sql, t0).is_none(), "forgotten");
    }

    #[test]
    fn statements_kept_are_bounded() {
        let d = Defaults::default();
        let t0 = Instant::now();
        for i in 0..MAX_STATEMENTS {
            d.put(
                "a",
                &format!("select @@wait_timeout as w{i}"),
                t0,
                Recorded::default(),
            );
        }
        d.put("a", "select @@sql_mode", t0, Recorded::default());
        assert!(d.get("a", "select @@sql_mode", t0).is_none(), "no room");
        // Expired ones make room.
        let later = t0 + KEEP;
        d.put("a", "select @@sql_mode", later, Recorded::default());
        assert!(d.get("a", "select @@sql_mode", later).is_some());
        assert_eq!(lock(&d.kept).len(), 1);
    }
}
