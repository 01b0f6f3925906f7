//! The two topology stores behind one type: etcd (what deployments use, so
//! several shardgates watch one cluster shape) and a directory of files
//! laid out like the etcd keys (the embedded default for one machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TopoError;

/// Which store, as vtgate's `--topo-implementation` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopoImpl {
    /// etcd v3 (Vitess's `etcd2` implementation name).
    Etcd2,
    /// A directory on local disk.
    File,
}

/// A connected topology store rooted at the topo root.
#[derive(Clone)]
pub enum TopoStore {
    /// etcd, with keys under `root/`.
    Etcd {
        /// Shared gRPC client (cheap to clone).
        client: Box<etcd_client::Client>,
        /// Key prefix, without trailing slash.
        root: String,
    },
    /// A directory whose relative file paths are the keys.
    Dir {
        /// The directory.
        root: PathBuf,
    },
}

/// Puts `root/key` in one etcd transaction only if it is absent (and,
/// with a witness, only while `root/witness` exists; with a lease, bound
/// to it); the store's revision of the put when it did.
pub(super) async fn etcd_create(
    client: &etcd_client::Client,
    root: &str,
    key: &str,
    value: &[u8],
    witness: Option<&str>,
    lease: Option<i64>,
) -> Result<Option<i64>, TopoError> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let key = format!("{root}/{key}");
    let mut when = vec![Compare::version(key.clone(), CompareOp::Equal, 0)];
    if let Some(w) = witness {
        when.push(Compare::version(
            format!("{root}/{w}"),
            CompareOp::Greater,
            0,
        ));
    }
    let opts = lease.map(|l| etcd_client::PutOptions::new().with_lease(l));
    let txn = Txn::new()
        .when(when)
        .and_then(vec![TxnOp::put(key, value.to_vec(), opts)]);
    let resp = client.clone().txn(txn).await.map_err(store_err)?;
    Ok(resp
        .succeeded()
        .then(|| resp.header().map_or(0, |h| h.revision())))
}

/// A record as [`TopoStore::get_versioned`] read it.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The record, if present.
    pub value: Option<Vec<u8>>,
    /// etcd's modification revision (0: absent); files compare the bytes.
    revision: i64,
}

/// [`TopoStore::put_if_unchanged`] for files, under an exclusive `flock`
/// of the store's directory (released when the handle closes).
fn dir_put_if_unchanged(
    root: &Path,
    guards: &[(PathBuf, Option<Vec<u8>>)],
    puts: &[(PathBuf, Vec<u8>)],
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(root)?;
    let dir = std::fs::File::open(root)?;
    // SAFETY: flock on a descriptor this function owns for its whole call.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for (path, was) in guards {
        let now = match std::fs::read(path) {
            Ok(v) => Some(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if &now != was {
            return Ok(false);
        }
    }
    for (path, value) in puts {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, value)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(true)
}

pub(super) fn store_err(e: impl std::fmt::Display) -> TopoError {
    TopoError::Store(e.to_string())
}

impl TopoStore {
    /// Connects to the store. For etcd, `address` is `host:port[,host:port]`;
    /// for files it is the directory (created if missing).
    pub async fn connect(kind: TopoImpl, address: &str, root: &str) -> Result<Self, TopoError> {
        match kind {
            TopoImpl::Etcd2 => {
                let endpoints: Vec<String> = address
                    .split(',')
                    .map(|a| {
                        if a.contains("://") {
                            a.to_string()
                        } else {
                            format!("http://{a}")
                        }
                    })
                    .collect();
                let opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(5));
                let client = etcd_client::Client::connect(endpoints, Some(opts))
                    .await
                    .map_err(|e| {
                        TopoError::Store(format!("cannot reach etcd at {address}: {e}"))
                    })?;
                Ok(TopoStore::Etcd {
                    client: Box::new(client),
                    root: root.trim_end_matches('/').to_string(),
                })
            }
            TopoImpl::File => {
                let dir = Path::new(address).join(root.trim_start_matches('/'));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| TopoError::Store(format!("{}: {e}", dir.display())))?;
                Ok(TopoStore::Dir { root: dir })
            }
        }
    }

    /// Every record under the root, keyed by path relative to it.
    pub async fn list_all(&self) -> Result<BTreeMap<String, Vec<u8>>, TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                let prefix = format!("{root}/");
                let resp = client
                    .clone()
                    .get(
                        prefix.clone(),
                        Some(etcd_client::GetOptions::new().with_prefix()),
                    )
                    .await
                    .map_err(store_err)?;
                let mut out = BTreeMap::new();
                for kv in resp.kvs() {
                    let key = String::from_utf8_lossy(kv.key());
                    if let Some(rel) = key.strip_prefix(&prefix) {
                        out.insert(rel.to_string(), kv.value().to_vec());
                    }
                }
                Ok(out)
            }
            TopoStore::Dir { root } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = BTreeMap::new();
                    walk(&root, &root, &mut out).map_err(store_err)?;
                    Ok(out)
                })
                .await
                .map_err(store_err)?
            }
        }
    }

    /// One record, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TopoError> {
        Ok(self.get_versioned(key).await?.value)
    }

    /// Writes a record (atomically for files: write then rename).
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                client
                    .clone()
                    .put(format!("{root}/{key}"), value.to_vec(), None)
                    .await
                    .map_err(store_err)?;
                Ok(())
            }
            TopoStore::Dir { root } => {
                let path = root.join(key);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(store_err)?;
                }
                let tmp = path.with_extension("tmp~");
                tokio::fs::write(&tmp, value).await.map_err(store_err)?;
                tokio::fs::rename(&tmp, &path).await.map_err(store_err)
            }
        }
    }

    /// One record, if present, with what [`Self::put_if_unchanged`]
    /// compares against later.
    pub async fn get_versioned(&self, key: &str) -> Result<Versioned, TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                let resp = client
                    .clone()
                    .get(format!("{root}/{key}"), None)
                    .await
                    .map_err(store_err)?;
                let kv = resp.kvs().first();
                Ok(Versioned {
                    value: kv.map(|kv| kv.value().to_vec()),
                    revision: kv.map_or(0, |kv| kv.mod_revision()),
                })
            }
            TopoStore::Dir { root } => {
                let value = match tokio::fs::read(root.join(key)).await {
                    Ok(v) => Some(v),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(store_err(e)),
                };
                Ok(Versioned { value, revision: 0 })
            }
        }
    }

    /// Writes every record of `puts` at once, only while each record of
    /// `guards` is as it was read; false (nothing written) when one has
    /// changed since. Why: a read-modify-write of a record others may
    /// change too (two `ALTER VSCHEMA` of one keyspace at once) must
    /// lose neither change; the loser reads again and redoes its change.
    /// For files, the store's directory is locked (`flock`) while it
    /// compares and writes, which orders writers on one machine.
    pub async fn put_if_unchanged(
        &self,
        guards: &[(&str, &Versioned)],
        puts: &[(String, Vec<u8>)],
    ) -> Result<bool, TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let when: Vec<Compare> = guards
                    .iter()
                    .map(|(k, read)| {
                        let key = format!("{root}/{k}");
                        match read.revision {
                            0 => Compare::version(key, CompareOp::Equal, 0),
                            rev => Compare::mod_revision(key, CompareOp::Equal, rev),
                        }
                    })
                    .collect();
                let ops: Vec<TxnOp> = puts
                    .iter()
                    .map(|(k, v)| TxnOp::put(format!("{root}/{k}"), v.clone(), None))
                    .collect();
                let resp = client
                    .clone()
                    .txn(Txn::new().when(when).and_then(ops))
                    .await
                    .map_err(store_err)?;
                Ok(resp.succeeded())
            }
            TopoStore::Dir { root } => {
                let root = root.clone();
                let guards: Vec<(PathBuf, Option<Vec<u8>>)> = guards
                    .iter()
                    .map(|(k, read)| (root.join(k), read.value.clone()))
                    .collect();
                let puts: Vec<(PathBuf, Vec<u8>)> = puts
                    .iter()
                    .map(|(k, v)| (root.join(k), v.clone()))
                    .collect();
                tokio::task::spawn_blocking(move || dir_put_if_unchanged(&root, &guards, &puts))
                    .await
                    .map_err(store_err)?
                    .map_err(store_err)
            }
        }
    }

    /// Writes a record only if none is there yet; false when one was.
    /// Why: a decision two parties may race to take (a transaction's
    /// commit or its rollback by a resolver, see
    /// [`crate::executor::twopc`]) is whoever created it first.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<bool, TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                Ok(etcd_create(client, root, key, value, None, None)
                    .await?
                    .is_some())
            }
            TopoStore::Dir { root } => {
                let path = root.join(key);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(store_err)?;
                }
                // Written aside first, then linked in: a link fails when
                // the name exists, and a reader never sees half a record.
                let mut tmp = path.clone().into_os_string();
                tmp.push(format!(".{:x}.tmp~", rand::random::<u64>()));
                tokio::fs::write(&tmp, value).await.map_err(store_err)?;
                let linked = tokio::fs::hard_link(&tmp, &path).await;
                let _ = tokio::fs::remove_file(&tmp).await;
                match linked {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(store_err(e)),
                }
            }
        }
    }

    /// [`Self::create`], only while `witness` exists (one round trip to
    /// etcd): the record a decision `key` belongs to may have been
    /// resolved and deleted by another. For files, created first and the
    /// witness looked for after (a caller told false deletes what it may
    /// have made).
    pub async fn create_witnessed(
        &self,
        key: &str,
        value: &[u8],
        witness: &str,
    ) -> Result<bool, TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                Ok(etcd_create(client, root, key, value, Some(witness), None)
                    .await?
                    .is_some())
            }
            TopoStore::Dir { .. } => {
                Ok(self.create(key, value).await? && self.get(witness).await?.is_some())
            }
        }
    }

    /// Deletes several records (at once in etcd).
    pub async fn delete_keys(&self, keys: &[String]) -> Result<(), TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                use etcd_client::{Txn, TxnOp};
                let ops: Vec<TxnOp> = keys
                    .iter()
                    .map(|k| TxnOp::delete(format!("{root}/{k}"), None))
                    .collect();
                client
                    .clone()
                    .txn(Txn::new().and_then(ops))
                    .await
                    .map_err(store_err)?;
                Ok(())
            }
            TopoStore::Dir { .. } => {
                for k in keys {
                    self.delete(k, false).await?;
                }
                Ok(())
            }
        }
    }

    /// The store beside this one whose keys live under `root + suffix`
    /// (same etcd client, or a sibling directory). Why: records written
    /// on every commit (see [`crate::executor::twopc`]) must stay out of
    /// the prefix the topology watch reads, or each would rebuild the
    /// snapshot.
    pub fn beside(&self, suffix: &str) -> TopoStore {
        match self {
            TopoStore::Etcd { client, root } => TopoStore::Etcd {
                client: client.clone(),
                root: format!("{root}{suffix}"),
            },
            TopoStore::Dir { root } => {
                let mut name = root.file_name().unwrap_or_default().to_os_string();
                name.push(suffix);
                TopoStore::Dir {
                    root: root.with_file_name(name),
                }
            }
        }
    }

    /// Deletes a record and, with `prefix`, everything under it.
    pub async fn delete(&self, key: &str, prefix: bool) -> Result<(), TopoError> {
        match self {
            TopoStore::Etcd { client, root } => {
                let opts = prefix.then(|| etcd_client::DeleteOptions::new().with_prefix());
                client
                    .clone()
                    .delete(format!("{root}/{key}"), opts)
                    .await
                    .map_err(store_err)?;
                Ok(())
            }
            TopoStore::Dir { root } => {
                let path = root.join(key);
                let r = if prefix && path.is_dir() {
                    tokio::fs::remove_dir_all(&path).await
                } else {
                    tokio::fs::remove_file(&path).await
                };
                match r {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(store_err(e)),
                    _ => Ok(()),
                }
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if !path.to_string_lossy().ends_with('~') {
            if let Ok(rel) = path.strip_prefix(root) {
                out.insert(
                    rel.to_string_lossy().replace('\\', "/"),
                    std::fs::read(&path)?,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_over_a_stale_read_is_refused() {
        let root = std::env::temp_dir().join(format!(
            "shardgate-cas-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = TopoStore::Dir { root: root.clone() };
        let key = "global/keyspaces/ks/VSchema";
        let absent = store.get_versioned(key).await.unwrap();
        assert!(absent.value.is_none());
        let put = |v: &str| vec![(key.to_string(), v.as_bytes().to_vec())];
        assert!(store
            .put_if_unchanged(&[(key, &absent)], &put("one"))
            .await
            .unwrap());
        // Written after the read: the stale reader's write is refused.
        assert!(!store
            .put_if_unchanged(&[(key, &absent)], &put("two"))
            .await
            .unwrap());
        let now = store.get_versioned(key).await.unwrap();
        assert_eq!(now.value.as_deref(), Some(&b"one"[..]));
        assert!(store
            .put_if_unchanged(&[(key, &now)], &put("three"))
            .await
            .unwrap());
        assert_eq!(
            store.get(key).await.unwrap().as_deref(),
            Some(&b"three"[..])
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
