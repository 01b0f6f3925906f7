//! Keeps a [`SnapshotHandle`] in step with the store: rebuild on change,
//! validate, swap; an invalid keyspace is logged and counted and its last
//! good version keeps serving while the others update, as the whole last
//! snapshot does while the store is unreachable.

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
    /// Updates rejected by validation (a keyspace's problem counts once
    /// however many rebuilds meet it).
    pub rejected: AtomicU64,
    /// The last rejection's reason.
    pub last_error: std::sync::Mutex<Option<String>>,
    /// The problems the current snapshot was built around.
    current: std::sync::Mutex<Vec<String>>,
}

impl WatchStats {
    /// The problems the current snapshot was built around (a keyspace
    /// kept at its last good version, or left out), as the log said them:
    /// what `SHOW VSCHEMA KEYSPACES` shows as a keyspace's comment.
    pub fn problems(&self) -> Vec<String> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What [`initial`] loaded: the handle, the records it was built from,
/// and the problems it left out.
pub type Initial = (SnapshotHandle, BTreeMap<String, Vec<u8>>, Vec<TopoError>);

/// Loads the first snapshot and returns the handle. An invalid keyspace
/// does not stop the start (one whose shards are being added one by one,
/// a bad VSchema): it is left out, and served from the first valid update
/// the watch sees, as vtgate comes up serving what it can; the caller
/// counts and logs the problems ([`note_problems`]). Only an unreachable
/// store or invalid routing rules fail the start.
pub async fn initial(store: &TopoStore, scope: &super::Scope) -> Result<Initial, TopoError> {
    let records = store.list_all().await?;
    let (snap, problems) = Snapshot::build_keeping(&records, scope, 1, None)?;
    Ok((Arc::new(ArcSwap::from_pointee(snap)), records, problems))
}

/// Counts and logs the problems a snapshot was built around, each once
/// while it lasts.
pub fn note_problems(stats: &WatchStats, problems: &[TopoError]) {
    let text: Vec<String> = problems.iter().map(|e| e.to_string()).collect();
    let mut current = stats.current.lock().unwrap_or_else(|p| p.into_inner());
    let new: Vec<&String> = text.iter().filter(|t| !current.contains(t)).collect();
    if !new.is_empty() {
        stats
            .rejected
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        for t in &new {
            tracing::error!(error = %t, "topology update rejected; its last good version keeps serving");
        }
        *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.join("; "));
    }
    *current = text;
}

/// Runs forever: watches the store and swaps in each valid new snapshot,
/// and a new one also when the schema tracker (`learned`, see
/// [`super::schema`]) learned something new. `on_swap` runs after each swap
/// (pool reconciliation, plan-cache clearing).
pub async fn run(
    store: TopoStore,
    scope: super::Scope,
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
                let previous = handle.load_full();
                match Snapshot::build_keeping(&last, &scope, version + 1, Some(&previous)) {
                    Ok((mut snap, problems)) => {
                        note_problems(&stats, &problems);
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
