//! Failover buffering (vtgate's `--enable_buffer`): a statement that the
//! shard's primary refused because it has just been made read-only (the
//! first step of `ctl planned-reparent-shard`) is held until the topology
//! records another primary, then sent there, so clients see a pause
//! instead of errors while a primary changes.
//!
//! Only statements outside a transaction are held (their refusal changed
//! nothing, so sending them again is safe); a transaction that reached the
//! old primary fails as it would without buffering. Bounded as vtgate
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
fn primary_of<'a>(snap: &'a Snapshot, keyspace: &str, shard: &str) -> Option<&'a str> {
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

    /// Called when `refused`, the primary of `keyspace/shard` in the
    /// statement's snapshot, refused a statement outside a transaction as
    /// read-only: waits until the topology records another primary and
    /// returns the snapshot that does, or None when the statement is not
    /// held or waited in vain (it then fails with the primary's error).
    pub async fn wait_for_new_primary(
        &self,
        snapshot: &SnapshotHandle,
        keyspace: &str,
        shard: &str,
        refused: &str,
    ) -> Option<Arc<Snapshot>> {
        if !self.cfg.enabled || !self.covers(keyspace, shard) {
            return None;
        }
        let moved =
            |snap: &Snapshot| primary_of(snap, keyspace, shard).is_some_and(|p| p != refused);
        // Sent before the switch and refused after it: straight to the
        // new primary.
        let snap = snapshot.load_full();
        if moved(&snap) {
            return Some(snap);
        }
        let key = (keyspace.to_string(), shard.to_string());
        let started = {
            let now = Instant::now();
            let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
            let st = shards.entry(key.clone()).or_default();
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
            let started = st.failover.as_ref().map_or(now, |(t, _)| *t);
            if now.duration_since(started) >= self.cfg.max_failover_duration {
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
            started
        };
        let now = Instant::now();
        let deadline = (now + self.cfg.window).min(started + self.cfg.max_failover_duration);
        let found = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snap = snapshot.load_full();
            if moved(&snap) {
                break Some(snap);
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            // Woken by the watcher; the tick is a safety net only.
            let nap = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(nap, notified).await;
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let now = Instant::now();
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        let st = shards.entry(key).or_default();
        let ours = st
            .failover
            .as_ref()
            .filter(|(_, p)| p == refused)
            .map(|(t, _)| *t);
        match &found {
            Some(_) => {
                st.stats.drained += 1;
                if let Some(t) = ours {
                    st.stats.failover_ms += now.duration_since(t).as_millis() as u64;
                    st.failover = None;
                    st.last_end = Some(now);
                    tracing::info!(
                        keyspace,
                        shard,
                        "new primary recorded: buffered statements sent to it"
                    );
                }
            }
            None => {
                st.stats.evicted += 1;
                if ours.is_some_and(|t| now.duration_since(t) >= self.cfg.max_failover_duration) {
                    st.failover = None;
                    st.last_end = Some(now);
                    tracing::warn!(
                        keyspace,
                        shard,
                        "no new primary within --buffer_max_failover_duration: buffering stopped"
                    );
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;

    /// A snapshot of keyspace `ks`, shard 0, whose primary is `primary`
    /// (tablets zone1-1 and zone1-2).
    fn snap(primary: &str) -> Arc<Snapshot> {
        let mut r = BTreeMap::new();
        let mut put = |k: &str, v: String| r.insert(k.to_string(), v.into_bytes());
        put(
            "global/keyspaces/ks/Keyspace",
            r#"{"sharded": false}"#.into(),
        );
        put(
            "global/keyspaces/ks/shards/0/Shard",
            format!(r#"{{"key_range": "", "primary_alias": "{primary}"}}"#),
        );
        for uid in [1, 2] {
            put(
                &format!("zone1/tablets/zone1-{uid}/Tablet"),
                format!(
                    r#"{{"alias":"zone1-{uid}","hostname":"127.0.0.1","mysql_port":{uid},"keyspace":"ks","shard":"0","type":"REPLICA"}}"#
                ),
            );
        }
        Arc::new(Snapshot::build(&r, &[], 1).unwrap())
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
        let b = Arc::new(Buffer::new(config()));
        let h = handle("zone1-1");
        let waiter = {
            let (b, h) = (b.clone(), h.clone());
            tokio::spawn(async move { b.wait_for_new_primary(&h, "ks", "0", "zone1-1").await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.store(snap("zone1-2"));
        b.snapshot_changed();
        let got = waiter.await.unwrap().expect("released");
        assert_eq!(primary_of(&got, "ks", "0"), Some("zone1-2"));
        let s = stats(&b);
        assert_eq!((s.starts, s.buffered, s.drained, s.evicted), (1, 1, 1, 0));
        assert!(s.failover_ms >= 20, "{s:?}");
        // The new primary refusing right after: not buffered again within
        // --buffer_min_time_between_failovers.
        h.store(snap("zone1-2"));
        assert!(b
            .wait_for_new_primary(&h, "ks", "0", "zone1-2")
            .await
            .is_none());
        assert_eq!(stats(&b).skipped, 1);
    }

    #[tokio::test]
    async fn a_refusal_after_the_switch_goes_straight_on() {
        let b = Buffer::new(config());
        let h = handle("zone1-2");
        let t0 = Instant::now();
        assert!(b
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_some());
        assert!(t0.elapsed() < Duration::from_millis(100));
        assert_eq!(stats(&b), ShardStats::default());
    }

    #[tokio::test]
    async fn a_statement_waits_its_window_then_fails() {
        let b = Buffer::new(config());
        let h = handle("zone1-1");
        let t0 = Instant::now();
        assert!(b
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        assert!(t0.elapsed() >= Duration::from_millis(200));
        // The failover goes on (its duration is not over): held again.
        assert!(b
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        let s = stats(&b);
        assert_eq!((s.starts, s.buffered, s.evicted, s.drained), (1, 2, 2, 0));
    }

    #[tokio::test]
    async fn bounds_and_filters_turn_statements_away() {
        let h = handle("zone1-1");
        let off = Buffer::new(Config::default());
        assert!(off
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        assert!(off.stats().is_empty());
        let full = Buffer::new(Config {
            size: 0,
            ..config()
        });
        assert!(full
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        assert_eq!(stats(&full).skipped, 1);
        let other = Buffer::new(Config {
            keyspace_shards: vec!["other".into(), "ks/-80".into()],
            ..config()
        });
        assert!(other
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        assert!(other.stats().is_empty());
        assert!(other.covers("ks", "-80") && other.covers("other", "0"));
        // A failover that lasts longer than its bound stops buffering.
        let short = Buffer::new(Config {
            max_failover_duration: Duration::from_millis(50),
            ..config()
        });
        let t0 = Instant::now();
        assert!(short
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
        assert!(t0.elapsed() < Duration::from_millis(150));
        assert!(short
            .wait_for_new_primary(&h, "ks", "0", "zone1-1")
            .await
            .is_none());
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
