//! Failover buffering (vtgate's `--enable_buffer`): while a shard's
//! primary changes, its statements are held and then sent to the new
//! primary, so clients see a pause instead of errors.
//!
//! Two things start a hold:
//! - the shard record says the primary is not serving (the first step of
//!   `ctl planned-reparent-shard`): a statement that would start new work
//!   there (a write outside a transaction, or a transaction's first
//!   statement on that shard) is held before it is sent, while
//!   transactions already under way there go on and finish;
//! - the primary refused a statement outside a transaction as read-only
//!   (it has been demoted): the refusal changed nothing, so sending the
//!   statement again is safe. A transaction that reached the old primary
//!   and writes after its demotion fails as it would without buffering.
//!
//! A held statement goes to the primary the topology records next; or to
//! the same one again when the shard serves again (a reparent undone), or
//! every 250 ms when a refusal came with no reparent behind it. Bounded as vtgate
//! bounds it: a statement waits at most `--buffer_window`, a failover is
//! buffered for at most `--buffer_max_failover_duration`, at most
//! `--buffer_size` statements wait at once, and a shard whose failover
//! ended less than `--buffer_min_time_between_failovers` ago is not
//! buffered again. A statement that is not held, or waited in vain,
//! fails with the primary's own error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sql::TabletType;
use crate::topo::{Snapshot, SnapshotHandle};

/// The buffer's flags (vtgate's names and defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--enable_buffer`.
    pub enabled: bool,
    /// `--buffer_window`: how long one statement may wait.
    pub window: Duration,
    /// `--buffer_size`: statements waiting at once, over all shards.
    pub size: usize,
    /// `--buffer_max_failover_duration`: how long one failover is buffered.
    pub max_failover_duration: Duration,
    /// `--buffer_min_time_between_failovers`.
    pub min_time_between_failovers: Duration,
    /// `--buffer_keyspace_shards`: `keyspace` or `keyspace/shard` entries
    /// (empty: every shard).
    pub keyspace_shards: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            window: Duration::from_secs(10),
            size: 1000,
            max_failover_duration: Duration::from_secs(20),
            min_time_between_failovers: Duration::from_secs(60),
            keyspace_shards: Vec::new(),
        }
    }
}

/// What happened to held statements of one shard, as vtgate counts them
/// (`/debug/vars` `BufferStarts`, `BufferRequestsBuffered`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Failovers buffering started for.
    pub starts: u64,
    /// Statements held.
    pub buffered: u64,
    /// Held statements sent to the new primary.
    pub drained: u64,
    /// Held statements that waited in vain (window or failover duration
    /// exceeded).
    pub evicted: u64,
    /// Statements refused by a read-only primary and not held (the buffer
    /// was full, or the last failover ended too recently).
    pub skipped: u64,
    /// Milliseconds from each failover's first held statement to the new
    /// primary, summed.
    pub failover_ms: u64,
}

#[derive(Default)]
struct ShardState {
    /// The failover in progress: when it began, and the primary that
    /// refused.
    failover: Option<(Instant, String)>,
    /// When the last failover ended.
    last_end: Option<Instant>,
    stats: ShardStats,
}

/// Holds primary-bound statements of shards whose primary is changing;
/// shared by all sessions.
#[derive(Default)]
pub struct Buffer {
    cfg: Config,
    shards: Mutex<BTreeMap<(String, String), ShardState>>,
    waiting: AtomicUsize,
    changed: tokio::sync::Notify,
}

/// The primary the snapshot records for a shard.
pub fn primary_of<'a>(snap: &'a Snapshot, keyspace: &str, shard: &str) -> Option<&'a str> {
    snap.shard(keyspace, shard)?.tablets[TabletType::Primary as usize]
        .first()
        .map(String::as_str)
}

/// Whether a tablet error says its server is read-only: what a primary
/// answers from the moment a reparent demotes it.
pub fn is_read_only(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1290 && s.message.contains("read-only"))
}

impl Buffer {
    /// A buffer with these flags.
    pub fn new(cfg: Config) -> Self {
        Buffer {
            cfg,
            ..Buffer::default()
        }
    }

    /// Whether statements are held at all.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn covers(&self, keyspace: &str, shard: &str) -> bool {
        self.cfg.keyspace_shards.is_empty()
            || self
                .cfg
                .keyspace_shards
                .iter()
                .any(|e| match e.split_once('/') {
                    Some((k, s)) => k == keyspace && s == shard,
                    None => e == keyspace,
                })
    }

    /// Wakes held statements to look at a new snapshot (called by the
    /// topology watcher after every swap).
    pub fn snapshot_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Per shard (`keyspace/shard`), what was held and what became of it.
    pub fn stats(&self) -> BTreeMap<String, ShardStats> {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards
            .iter()
            .map(|((k, s), st)| (format!("{k}.{s}"), st.stats.clone()))
            .collect()
    }

    /// Called for a statement that `refused`, the primary of
    /// `keyspace/shard` in the statement's snapshot, refused as read-only,
    /// or that would start new work on it while the shard record says it
    /// is not serving: the statement's place in the buffer, whose
    /// [`Hold::next`] says when and where to send it; None when it is not
    /// held (it then goes on as without buffering).
    pub fn hold(
        &self,
        snapshot: &SnapshotHandle,
        keyspace: &str,
        shard: &str,
        refused: &str,
    ) -> Option<Hold<'_>> {
        if !self.cfg.enabled || !self.covers(keyspace, shard) {
            return None;
        }
        let now = Instant::now();
        let mut hold = Hold {
            buffer: self,
            key: (keyspace.to_string(), shard.to_string()),
            refused: refused.to_string(),
            failover_began: now,
            deadline: now,
            recheck_at: now + RECHECK,
            counted: false,
            drained: false,
        };
        // Sent before the switch and refused after it: straight to the
        // new primary, not counted.
        if hold.moved(&snapshot.load()) {
            return Some(hold);
        }
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        let st = shards.entry(hold.key.clone()).or_default();
        if st.failover.is_none() {
            let recent = st
                .last_end
                .is_some_and(|t| now.duration_since(t) < self.cfg.min_time_between_failovers);
            if recent {
                st.stats.skipped += 1;
                return None;
            }
            tracing::info!(
                keyspace,
                shard,
                primary = refused,
                "primary is read-only: buffering its statements"
            );
            st.failover = Some((now, refused.to_string()));
            st.stats.starts += 1;
        }
        let began = st.failover.as_ref().map_or(now, |(t, _)| *t);
        if now.duration_since(began) >= self.cfg.max_failover_duration {
            st.failover = None;
            st.last_end = Some(now);
            st.stats.skipped += 1;
            return None;
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.cfg.size {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            st.stats.skipped += 1;
            return None;
        }
        st.stats.buffered += 1;
        hold.counted = true;
        hold.failover_began = began;
        hold.deadline = (now + self.cfg.window).min(began + self.cfg.max_failover_duration);
        Some(hold)
    }
}

/// How often a held statement is sent to the same primary again: a
/// reparent that was undone (its new primary did not catch up) or a
/// primary made writable again by hand releases it within this.
const RECHECK: Duration = Duration::from_millis(250);

/// What a held statement does next.
pub enum Next {
    /// Go to the new primary this snapshot records.
    Moved(Arc<Snapshot>),
    /// Go to the same primary again: it may be writable once more (a
    /// refusal sends the statement back to [`Hold::next`]).
    Recheck,
    /// Fail with the primary's refusal: the window or the failover's
    /// bound is over.
    GiveUp,
}

/// One held statement's place in the [`Buffer`]; counted as drained,
/// or as evicted when dropped without having been released.
pub struct Hold<'b> {
    buffer: &'b Buffer,
    key: (String, String),
    refused: String,
    failover_began: Instant,
    deadline: Instant,
    recheck_at: Instant,
    /// Held (not sent straight to a primary recorded already).
    counted: bool,
    /// The shard was seen not serving since the last look at the primary.
    drained: bool,
}

impl Hold<'_> {
    fn moved(&self, snap: &Snapshot) -> bool {
        primary_of(snap, &self.key.0, &self.key.1).is_some_and(|p| p != self.refused)
    }

    /// Waits until the topology records another primary, the time to ask
    /// the same one again comes, or the wait is over.
    pub async fn next(&mut self, snapshot: &SnapshotHandle) -> Next {
        loop {
            let notified = self.buffer.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snap = snapshot.load_full();
            if self.moved(&snap) {
                self.end(true);
                return Next::Moved(snap);
            }
            let serving = snap
                .shard(&self.key.0, &self.key.1)
                .is_none_or(|s| s.primary_serving);
            let now = Instant::now();
            // Serving again after a drain (a reparent undone): at once.
            if serving && (std::mem::take(&mut self.drained) || now >= self.recheck_at) {
                self.recheck_at = now + RECHECK;
                return Next::Recheck;
            }
            self.drained |= !serving;
            if now >= self.deadline {
                self.end(false);
                return Next::GiveUp;
            }
            // Woken by the watcher; the timeout is the recheck (none
            // while the primary drains: it would refuse).
            let until = if serving {
                self.recheck_at
            } else {
                self.deadline
            };
            let nap = until.min(self.deadline) - now;
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    /// The same primary took the statement: it is writable again, and the
    /// failover is over.
    pub fn released(&mut self) {
        self.end(true);
    }

    fn end(&mut self, drained: bool) {
        if !std::mem::take(&mut self.counted) {
            return;
        }
        let b = self.buffer;
        b.waiting.fetch_sub(1, Ordering::AcqRel);
        let now = Instant::now();
        let (keyspace, shard) = (&self.key.0, &self.key.1);
        let mut shards = b.shards.lock().unwrap_or_else(|p| p.into_inner());
        let st = shards.entry(self.key.clone()).or_default();
        let ours = st
            .failover
            .as_ref()
            .is_some_and(|(_, p)| *p == self.refused);
        if drained {
            st.stats.drained += 1;
            if ours {
                st.stats.failover_ms += now.duration_since(self.failover_began).as_millis() as u64;
                st.failover = None;
                st.last_end = Some(now);
                tracing::info!(
                    keyspace,
                    shard,
                    "primary writable: buffered statements sent to it"
                );
            }
        } else {
            st.stats.evicted += 1;
            let over = now.duration_since(self.failover_began) >= b.cfg.max_failover_duration;
            if ours && over {
                st.failover = None;
                st.last_end = Some(now);
                tracing::warn!(
                    keyspace,
                    shard,
                    "no writable primary within --buffer_max_failover_duration: buffering stopped"
                );
            }
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;

    /// A snapshot of keyspace `ks`, shard 0, whose primary is `primary`
    /// (tablets zone1-1 and zone1-2).
    fn snap(primary: &str) -> Arc<Snapshot> {
        snap_serving(primary, true)
    }

    /// [`snap`], the primary serving or drained by a reparent.
    fn snap_serving(primary: &str, serving: bool) -> Arc<Snapshot> {
        let mut r = BTreeMap::new();
        let mut put = |k: &str, v: String| r.insert(k.to_string(), v.into_bytes());
        put(
            "global/keyspaces/ks/Keyspace",
            r#"{"sharded": false}"#.into(),
        );
        put(
            "global/keyspaces/ks/shards/0/Shard",
            format!(
                r#"{{"key_range": "", "primary_alias": "{primary}", "is_primary_serving": {serving}}}"#
            ),
        );
        for uid in [1, 2] {
            put(
                &format!("zone1/tablets/zone1-{uid}/Tablet"),
                format!(
                    r#"{{"alias":"zone1-{uid}","hostname":"127.0.0.1","mysql_port":{uid},"keyspace":"ks","shard":"0","type":"REPLICA"}}"#
                ),
            );
        }
        Arc::new(Snapshot::build(&r, &Default::default(), 1).unwrap())
    }

    fn handle(primary: &str) -> SnapshotHandle {
        Arc::new(ArcSwap::new(snap(primary)))
    }

    fn config() -> Config {
        Config {
            enabled: true,
            window: Duration::from_millis(200),
            ..Config::default()
        }
    }

    fn stats(b: &Buffer) -> ShardStats {
        b.stats().remove("ks.0").unwrap_or_default()
    }

    #[tokio::test]
    async fn a_held_statement_goes_to_the_new_primary() {
        let b = Buffer::new(config());
        let h = handle("zone1-1");
        let mut hold = b.hold(&h, "ks", "0", "zone1-1").expect("held");
        let switch = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            h.store(snap("zone1-2"));
            b.snapshot_changed();
        };
        let (next, ()) = tokio::join!(hold.next(&h), switch);
        let Next::Moved(got) = next else {
            panic!("not moved")
        };
        assert_eq!(primary_of(&got, "ks", "0"), Some("zone1-2"));
        drop(hold);
        let s = stats(&b);
        assert_eq!((s.starts, s.buffered, s.drained, s.evicted), (1, 1, 1, 0));
        assert!(s.failover_ms >= 20, "{s:?}");
        // The new primary refusing right after: not buffered again within
        // --buffer_min_time_between_failovers.
        assert!(b.hold(&h, "ks", "0", "zone1-2").is_none());
        assert_eq!(stats(&b).skipped, 1);
    }

    #[tokio::test]
    async fn a_refusal_after_the_switch_goes_straight_on() {
        let b = Buffer::new(config());
        let h = handle("zone1-2");
        let t0 = Instant::now();
        let mut hold = b.hold(&h, "ks", "0", "zone1-1").expect("held");
        assert!(matches!(hold.next(&h).await, Next::Moved(_)));
        assert!(t0.elapsed() < Duration::from_millis(100));
        drop(hold);
        assert_eq!(stats(&b), ShardStats::default());
    }

    #[tokio::test]
    async fn the_same_primary_is_asked_again_until_the_window_ends() {
        let b = Buffer::new(Config {
            window: Duration::from_millis(600),
            ..config()
        });
        let h = handle("zone1-1");
        let t0 = Instant::now();
        let mut hold = b.hold(&h, "ks", "0", "zone1-1").expect("held");
        assert!(matches!(hold.next(&h).await, Next::Recheck));
        assert!(t0.elapsed() >= RECHECK, "{:?}", t0.elapsed());
        assert!(matches!(hold.next(&h).await, Next::Recheck));
        assert!(matches!(hold.next(&h).await, Next::GiveUp));
        assert!(t0.elapsed() >= Duration::from_millis(600));
        drop(hold);
        // The failover goes on (its duration is not over): a statement is
        // held again, and released when the primary takes it.
        let mut hold = b.hold(&h, "ks", "0", "zone1-1").expect("held");
        assert!(matches!(hold.next(&h).await, Next::Recheck));
        hold.released();
        drop(hold);
        let s = stats(&b);
        assert_eq!(
            (s.starts, s.buffered, s.evicted, s.drained),
            (1, 2, 1, 1),
            "{s:?}"
        );
        assert!(s.failover_ms >= 600, "{s:?}");
    }

    #[tokio::test]
    async fn a_drain_undone_sends_held_statements_to_the_same_primary() {
        let b = Buffer::new(Config {
            window: Duration::from_secs(5),
            ..config()
        });
        let h = Arc::new(ArcSwap::new(snap_serving("zone1-1", false)));
        let mut hold = b.hold(&h, "ks", "0", "zone1-1").expect("held");
        let t0 = Instant::now();
        let undo = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            h.store(snap("zone1-1"));
            b.snapshot_changed();
        };
        // No recheck while the primary drains (it would refuse), one at
        // once when it serves again.
        let (next, ()) = tokio::join!(hold.next(&h), undo);
        assert!(matches!(next, Next::Recheck));
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_millis(400) + RECHECK, "{waited:?}");
        hold.released();
        drop(hold);
        let s = stats(&b);
        assert_eq!((s.buffered, s.drained, s.evicted), (1, 1, 0));
    }

    #[tokio::test]
    async fn bounds_and_filters_turn_statements_away() {
        let h = handle("zone1-1");
        let off = Buffer::new(Config::default());
        assert!(off.hold(&h, "ks", "0", "zone1-1").is_none());
        assert!(off.stats().is_empty());
        let full = Buffer::new(Config {
            size: 0,
            ..config()
        });
        assert!(full.hold(&h, "ks", "0", "zone1-1").is_none());
        assert_eq!(stats(&full).skipped, 1);
        let other = Buffer::new(Config {
            keyspace_shards: vec!["other".into(), "ks/-80".into()],
            ..config()
        });
        assert!(other.hold(&h, "ks", "0", "zone1-1").is_none());
        assert!(other.stats().is_empty());
        assert!(other.covers("ks", "-80") && other.covers("other", "0"));
        // A failover that lasts longer than its bound stops buffering.
        let short = Buffer::new(Config {
            max_failover_duration: Duration::from_millis(50),
            ..config()
        });
        let t0 = Instant::now();
        let mut hold = short.hold(&h, "ks", "0", "zone1-1").expect("held");
        assert!(matches!(hold.next(&h).await, Next::GiveUp));
        assert!(t0.elapsed() < Duration::from_millis(150));
        drop(hold);
        assert!(short.hold(&h, "ks", "0", "zone1-1").is_none());
        let s = stats(&short);
        assert_eq!((s.buffered, s.evicted, s.skipped), (1, 1, 1));
    }

    #[test]
    fn only_a_read_only_refusal_counts() {
        let err = |code: u16, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.into(),
                state: "HY000".into(),
            })
        };
        assert!(is_read_only(&err(
            1290,
            "The MariaDB server is running with the --read-only option so it cannot execute this statement"
        )));
        assert!(!is_read_only(&err(
            1290,
            "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement"
        )));
        assert!(!is_read_only(&err(1062, "Duplicate entry")));
    }
}
