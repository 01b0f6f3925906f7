//! Keeps a [`SnapshotHandle`] in step with the store: rebuild on change,
//! validate, swap; an invalid update is logged and counted and the last good
//! snapshot keeps serving, as does an unreachable store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::schema::{Learned, Pass, Progress};
use super::store::TopoStore;
use super::{Snapshot, SnapshotHandle, TopoError};

/// Counters an operator reads on the debug pages.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Snapshots accepted and swapped in.
    pub accepted: AtomicU64,
    /// Updates rejected by validation.
    pub rejected: AtomicU64,
    /// The last rejection's reason.
    pub last_error: std::sync::Mutex<Option<String>>,
}

/// What [`initial`] loaded: the handle, the records it was built from,
/// and why they were rejected, if they were.
pub type Initial = (SnapshotHandle, BTreeMap<String, Vec<u8>>, Option<TopoError>);

/// Loads the first snapshot and returns the handle. An invalid topology
/// does not stop the start (a keyspace whose shards are being added one
/// by one, a bad VSchema): the gate serves an empty one, logs why, and
/// swaps in the first valid update the watch sees, as vtgate comes up
/// serving what it can. Only an unreachable store fails the start.
pub async fn initial(store: &TopoStore, cells: &[String]) -> Result<Initial, TopoError> {
    let records = store.list_all().await?;
    let (snap, rejected) = match Snapshot::build(&records, cells, 1) {
        Ok(snap) => (snap, None),
        Err(e) => {
            tracing::error!(error = %e, "topology invalid at start: no keyspace is served until a valid update");
            (Snapshot::build(&BTreeMap::new(), cells, 1)?, Some(e))
        }
    };
    Ok((Arc::new(ArcSwap::from_pointee(snap)), records, rejected))
}

/// Runs forever: watches the store and swaps in each valid new snapshot,
/// and a new one also when the schema tracker (`learned`, see
/// [`super::schema`]) learned something new. `on_swap` runs after each swap
/// (pool reconciliation, plan-cache clearing).
pub async fn run(
    store: TopoStore,
    cells: Vec<String>,
    handle: SnapshotHandle,
    mut last: BTreeMap<String, Vec<u8>>,
    mut learned: Option<(tokio::sync::watch::Receiver<Pass>, Arc<Progress>)>,
    stats: Arc<WatchStats>,
    on_swap: impl Fn(&Snapshot) + Send + Sync + 'static,
) {
    let mut version = handle.load().version;
    let mut changes = Changes::new(&store);
    let mut applied: Arc<Learned> = Arc::default();
    loop {
        // The watch is open before the re-read, so no write falls between them.
        changes.open(&store).await;
        let (pass, knows) = learned
            .as_mut()
            .map_or_else(Default::default, |(l, _)| l.borrow_and_update().clone());
        match store.list_all().await {
            Ok(records) if records != last || knows != applied => {
                last = records;
                applied = knows.clone();
                match Snapshot::build(&last, &cells, version + 1) {
                    Ok(mut snap) => {
                        snap.learn(&applied);
                        version += 1;
                        let snap = Arc::new(snap);
                        handle.store(snap.clone());
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(version, "topology snapshot swapped in");
                        on_swap(&snap);
                    }
                    Err(e) => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "topology update rejected; keeping the last good snapshot");
                        *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "topology store unreachable; serving from the last snapshot");
                changes.close();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if let Some((_, progress)) = &learned {
            // Applied, or the same as before: a DDL waiting on it may go on.
            if knows == applied {
                progress.applied(pass);
            }
        }
        match learned.as_mut() {
            Some((l, _)) => {
                tokio::select! {
                    _ = changes.next() => {}
                    r = l.changed() => if r.is_err() {
                        // The tracker stopped: the topology alone drives.
                        learned = None;
                    },
                }
            }
            None => changes.next().await,
        }
    }
}

/// A source of "something may have changed" signals: an etcd watch, or a
/// poll tick for files.
struct Changes {
    stream: Option<etcd_client::WatchStream>,
    poll: bool,
}

impl Changes {
    fn new(store: &TopoStore) -> Self {
        Changes {
            stream: None,
            poll: matches!(store, TopoStore::Dir { .. }),
        }
    }

    async fn open(&mut self, store: &TopoStore) {
        if let (None, TopoStore::Etcd { client, root }) = (&self.stream, store) {
            let opts = etcd_client::WatchOptions::new().with_prefix();
            if let Ok(mut s) = client.clone().watch(format!("{root}/"), Some(opts)).await {
                // The first message only confirms the watch was created.
                if let Ok(Some(_)) = s.message().await {
                    self.stream = Some(s);
                }
            }
        }
    }

    fn close(&mut self) {
        self.stream = None;
    }

    async fn next(&mut self) {
        if self.poll {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) if resp.events().is_empty() => continue,
                Ok(Some(_)) => {
                    // Let a burst of writes (a keyspace and its shards) settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return;
                }
                _ => {
                    self.stream = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
            }
        }
    }
}
