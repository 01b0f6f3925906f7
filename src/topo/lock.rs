//! Locks on a part of the topology (a shard), taken by the operations that
//! change who a shard's primary is (vtctld's LockShard). Why: two reparents
//! of one shard at once (an operator's and a script's, or two operators')
//! could each promote a tablet, and the shard would have two writable
//! primaries whose writes diverge; one of them loses its writes.
//!
//! A lock is a record under `{dir}/locks/` (Vitess's layout). In etcd it is
//! bound to a lease the holder keeps alive (`--topo_etcd_lease_ttl`), so a
//! holder that dies releases it within that time; waiters queue in the
//! order their records were created. In the file store it is one file
//! created exclusively; a holder whose process is gone (same host) no
//! longer holds it. A holder writes the records its operation decides
//! through [`Lock::put`], which writes only while the lock is still its
//! own (one etcd transaction): a holder that lost its lease, paused past
//! its TTL, cannot overwrite what the next holder decided.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::store::{etcd_create, store_err, TopoStore};
use super::TopoError;

/// How locks are taken: vtctld's `--lock-timeout` and
/// `--topo_etcd_lease_ttl`.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// How long to wait for a lock another holds before giving up.
    pub timeout: Duration,
    /// The etcd lease's time to live: how long a dead holder keeps the
    /// lock.
    pub lease_ttl: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            timeout: Duration::from_secs(45),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// Who holds a lock, written as its record's value so that a waiter (and
/// an operator reading the store) can say what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// The operation (`PlannedReparentShard customer/-80`).
    pub action: String,
    /// The host its process runs on.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// The user that started it.
    pub user: String,
    /// When it took the lock (RFC 3339).
    pub time: String,
}

impl Holder {
    /// This process, doing `action`, now.
    fn here(action: &str) -> Holder {
        Holder {
            action: action.to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            user: std::env::var("USER").unwrap_or_default(),
            time: super::rfc3339(std::time::SystemTime::now()),
        }
    }

    /// Whether the holder's process is known to be gone: it ran on this
    /// host and no process has its id. Why: a file lock has no lease, so
    /// a killed holder's lock would otherwise stay forever.
    fn gone(&self) -> bool {
        if self.hostname != hostname() || self.pid == 0 {
            return false;
        }
        // SAFETY: kill with signal 0 sends nothing; it only checks the id.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// For messages: what, by whom, since when.
    fn describe(raw: &[u8]) -> String {
        match serde_json::from_slice::<Holder>(raw) {
            Ok(h) => format!(
                "{} (pid {} on {}, since {})",
                h.action, h.pid, h.hostname, h.time
            ),
            Err(_) => String::from_utf8_lossy(raw).into_owned(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A held lock. Release it with [`Lock::unlock`]; dropped without that,
/// an etcd lock stops being kept alive and expires with its lease, a file
/// lock stays until its process is gone.
pub struct Lock {
    store: TopoStore,
    /// The lock's record, relative to the store's root.
    key: String,
    /// What was written there (a file lock is ours while it holds this).
    me: Vec<u8>,
    /// The etcd lease and the task keeping it alive.
    lease: Option<(i64, tokio::task::JoinHandle<()>)>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some((_, keeper)) = &self.lease {
            keeper.abort();
        }
    }
}

impl TopoStore {
    /// Locks `dir` (`global/keyspaces/{ks}/shards/{shard}`) for `action`,
    /// waiting up to `opts.timeout` for another holder to release it;
    /// `say` tells once whom it waits for.
    pub async fn lock(
        &self,
        dir: &str,
        action: &str,
        opts: &LockOptions,
        say: &dyn Fn(&str),
    ) -> Result<Lock, TopoError> {
        let me = serde_json::to_vec(&Holder::here(action)).map_err(store_err)?;
        let deadline = Instant::now() + opts.timeout;
        let mut told = false;
        let mut waiting = |holder: &[u8]| -> Result<(), TopoError> {
            if Instant::now() >= deadline {
                return Err(TopoError::Locked(format!(
                    "could not lock {dir} within {:?}: held by {}",
                    opts.timeout,
                    Holder::describe(holder)
                )));
            }
            if !told {
                told = true;
                say(&format!(
                    "waiting up to {:?} for the lock on {dir}, held by {}",
                    opts.timeout,
                    Holder::describe(holder)
                ));
            }
            Ok(())
        };
        match self {
            TopoStore::Etcd { client, root } => {
                let mut c = (**client).clone();
                let ttl = opts.lease_ttl.as_secs().max(1) as i64;
                let lease = c.lease_grant(ttl, None).await.map_err(store_err)?.id();
                let keeper = tokio::spawn(keep_alive(c.clone(), lease, ttl));
                let key = format!("{dir}/locks/{lease:x}");
                let lock = Lock {
                    store: self.clone(),
                    key: key.clone(),
                    me: me.clone(),
                    lease: Some((lease, keeper)),
                };
                let Some(mine) = etcd_create(client, root, &key, &me, None, Some(lease)).await?
                else {
                    return Err(TopoError::Store(format!("lock record {key} exists")));
                };
                // Queued by creation: the lock is ours once no record
                // created before ours is left.
                let prefix = format!("{root}/{dir}/locks/");
                let ours = async {
                    loop {
                        let all = c
                            .get(
                                prefix.clone(),
                                Some(etcd_client::GetOptions::new().with_prefix()),
                            )
                            .await
                            .map_err(store_err)?;
                        let first = all
                            .kvs()
                            .iter()
                            .filter(|kv| kv.create_revision() < mine)
                            .min_by_key(|kv| kv.create_revision());
                        let Some(first) = first else {
                            return Ok(());
                        };
                        waiting(first.value())?;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                match ours.await {
                    Ok(()) => Ok(lock),
                    // Not waited for until its lease expires: our record
                    // would hold back the holders after us.
                    Err(e) => {
                        let _ = lock.unlock().await;
                        Err(e)
                    }
                }
            }
            TopoStore::Dir { .. } => {
                let key = format!("{dir}/locks/lock");
                loop {
                    if self.create(&key, &me).await? {
                        return Ok(Lock {
                            store: self.clone(),
                            key,
                            me,
                            lease: None,
                        });
                    }
                    let Some(held) = self.get(&key).await? else {
                        continue;
                    };
                    if serde_json::from_slice::<Holder>(&held).is_ok_and(|h| h.gone()) {
                        say(&format!(
                            "breaking the lock on {dir}: its holder {} is gone",
                            Holder::describe(&held)
                        ));
                        self.delete(&key, false).await?;
                        continue;
                    }
                    waiting(&held)?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Renews the lease every third of its TTL until the lock is released
/// (the task is aborted); a broken stream is opened again.
async fn keep_alive(mut c: etcd_client::Client, lease: i64, ttl: i64) {
    let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
    loop {
        if let Ok((mut keeper, mut stream)) = c.lease_keep_alive(lease).await {
            loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    // The lease is gone: nothing left to keep.
                    Ok(Some(_)) => return,
                    _ => break,
                }
                tokio::time::sleep(every).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Lock {
    /// The store the lock was taken in, for reads under it.
    pub fn store(&self) -> &TopoStore {
        &self.store
    }

    /// Writes a record only while this lock is held (in etcd, one
    /// transaction that compares the lock's record): what a holder
    /// decides never lands after its lock passed to another.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), TopoError> {
        match &self.store {
            TopoStore::Etcd { client, root } => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let txn = Txn::new()
                    .when(vec![Compare::version(
                        format!("{root}/{}", self.key),
                        CompareOp::Greater,
                        0,
                    )])
                    .and_then(vec![TxnOp::put(
                        format!("{root}/{key}"),
                        value.to_vec(),
                        None,
                    )]);
                let resp = client.clone().txn(txn).await.map_err(store_err)?;
                if !resp.succeeded() {
                    return Err(self.lost());
                }
                Ok(())
            }
            TopoStore::Dir { .. } => {
                self.check().await?;
                self.store.put(key, value).await
            }
        }
    }

    /// Fails when the lock is no longer this holder's (its lease expired,
    /// or another broke it).
    pub async fn check(&self) -> Result<(), TopoError> {
        match self.store.get(&self.key).await? {
            Some(v) if v == self.me => Ok(()),
            _ => Err(self.lost()),
        }
    }

    fn lost(&self) -> TopoError {
        TopoError::Locked(format!(
            "the lock {} was lost (its lease expired, or another holder broke it)",
            self.key
        ))
    }

    /// Releases the lock (revokes the lease, or deletes the file if it is
    /// still ours).
    pub async fn unlock(mut self) -> Result<(), TopoError> {
        if let Some((lease, keeper)) = self.lease.take() {
            keeper.abort();
            if let TopoStore::Etcd { client, .. } = &self.store {
                client
                    .clone()
                    .lease_revoke(lease)
                    .await
                    .map_err(store_err)?;
            }
            return Ok(());
        }
        if self.check().await.is_ok() {
            self.store.delete(&self.key, false).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_store(tag: &str) -> (TopoStore, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!(
            "shardgate-lock-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (TopoStore::Dir { root: root.clone() }, root)
    }

    fn quick() -> LockOptions {
        LockOptions {
            timeout: Duration::from_millis(300),
            lease_ttl: Duration::from_secs(1),
        }
    }

    const SHARD: &str = "global/keyspaces/ks/shards/-80";

    #[tokio::test]
    async fn a_second_holder_waits_then_gives_up_naming_the_first() {
        let (store, root) = dir_store("wait");
        let first = store.lock(SHARD, "first", &quick(), &|_| {}).await.unwrap();
        let said = std::sync::Mutex::new(Vec::new());
        let err = store
            .lock(SHARD, "second", &quick(), &|m| {
                said.lock().unwrap().push(m.to_string())
            })
            .await
            .err()
            .expect("the second holder got the lock");
        let err = err.to_string();
        assert!(err.contains("held by first"), "{err}");
        assert!(said.lock().unwrap()[0].contains("waiting up to"));
        // Released, it is free again.
        first.put("global/x", b"1").await.unwrap();
        first.unlock().await.unwrap();
        let second = store
            .lock(SHARD, "second", &quick(), &|_| {})
            .await
            .unwrap();
        second.check().await.unwrap();
        second.unlock().await.unwrap();
        assert_eq!(store.get("global/x").await.unwrap().unwrap(), b"1");
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn a_lock_whose_holder_is_gone_is_broken() {
        let (store, root) = dir_store("gone");
        // A holder on this host whose process has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            pid,
            ..Holder::here("dead")
        };
        let key = format!("{SHARD}/locks/lock");
        store
            .put(&key, &serde_json::to_vec(&dead).unwrap())
            .await
            .unwrap();
        let said = std::sync::Mutex::new(Vec::new());
        let lock = store
            .lock(SHARD, "next", &quick(), &|m| {
                said.lock().unwrap().push(m.to_string())
            })
            .await
            .unwrap();
        assert!(said.lock().unwrap()[0].contains("is gone"));
        // A holder on another host is never taken for gone.
        let elsewhere = Holder {
            hostname: "elsewhere".into(),
            ..dead
        };
        assert!(!elsewhere.gone());
        // Broken by another meanwhile: the holder's writes are refused.
        store.delete(&key, false).await.unwrap();
        assert!(lock.put("global/y", b"1").await.is_err());
        assert!(store.get("global/y").await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(root);
    }
}
