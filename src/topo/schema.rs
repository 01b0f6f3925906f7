//! The schema tracker: learns the column types and collations of sharded
//! tables from the tablets themselves, as vtgate's schema tracking does
//! (`--schema_change_signal`), so that sorting and grouping by a column
//! across shards needs no `weight_string()` from the shards where the
//! VSchema declares no columns (see [`crate::collation`]).
//!
//! One tablet per sharded keyspace (its first shard's primary) is asked
//! for `information_schema.COLUMNS` every [`REFRESH`], and at once after a
//! DDL statement passes through shardgate, which answers once the change
//! is learned ([`Progress::relearn`]). What it learns goes to the
//! topology watcher, which swaps in a snapshot that carries it (and so
//! clears the plan cache); a column the VSchema declares keeps the
//! VSchema's word. A DDL run on the tablets behind shardgate's back is seen
//! at the next refresh; until then plans follow the old schema (vtgate's
//! tracker has the same window, up to its tablets' reload interval).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::{watch, Notify};

use super::{Keyspace, Snapshot, SnapshotHandle};
use crate::collation::Collation;
use crate::sql::TabletType;
use crate::vschema::Declared;

/// What the tablets say of a table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSchema {
    /// Every column, in order, with what its type tells the gate (`None`:
    /// a type it cannot order by itself). Every column is kept: a tracked
    /// table's list is complete, which lets a join tell whose an
    /// unqualified name is.
    pub columns: Vec<(String, Option<Declared>)>,
    /// Its primary key's columns, in key order (empty: none): what names
    /// a row, for writes whose rows are found first.
    pub primary_key: Vec<String>,
}

/// Tables learned from the tablets: keyspace → table → its schema.
pub type Learned = BTreeMap<String, BTreeMap<String, TableSchema>>;

/// How often the tablets are asked again when no DDL passed through.
pub const REFRESH: Duration = Duration::from_secs(30);

/// How long one keyspace's question may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What `information_schema.COLUMNS` (`DATA_TYPE`, `COLLATION_NAME`) says
/// about how a column's values order, when the gate can follow it.
pub fn declared(data_type: &str, collation: Option<&str>) -> Option<Declared> {
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
        | "float" | "double" | "year" => Some(Declared::Number),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Some(Declared::Text(Collation::Binary))
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            collation.and_then(Collation::from_name).map(Declared::Text)
        }
        "enum" | "set" => Some(Declared::Indexed),
        _ => None,
    }
}

/// One pass's findings, numbered, as the tracker hands them to the watcher.
pub type Pass = (u64, Arc<Learned>);

/// Where the tracker stands, so that a DDL can wait until what it changed
/// is learned and in the snapshot: the next statement then plans with it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Wakes the tracker for a pass.
    wake: Notify,
    /// Passes begun.
    started: AtomicU64,
    /// The last pass the watcher has applied to the snapshot.
    applied: AtomicU64,
    applied_changed: Notify,
}

impl Progress {
    /// Asks for a pass and waits (at most `within`) until one that began
    /// after this call is in the snapshot.
    pub async fn relearn(&self, within: Duration) {
        let want = self.started.load(Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let _ = tokio::time::timeout(within, async {
            loop {
                let changed = self.applied_changed.notified();
                if self.applied.load(Ordering::SeqCst) >= want {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    /// The watcher has applied pass `pass` to the snapshot.
    pub fn applied(&self, pass: u64) {
        self.applied.fetch_max(pass, Ordering::SeqCst);
        self.applied_changed.notify_waiters();
    }
}

/// Who the tracker logs in as on the tablets.
#[derive(Debug, Clone)]
pub struct Login {
    /// MySQL user.
    pub user: String,
    /// Its password (empty: none).
    pub password: String,
}

impl Login {
    /// Connection options for a one-off connection to `tablet`'s database
    /// (schema tracking, health checks), over TCP as the topology names it.
    pub fn opts(&self, tablet: &crate::topo::Tablet) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(tablet.hostname.clone())
            .tcp_port(tablet.port)
            .user(Some(self.user.clone()))
            .pass((!self.password.is_empty()).then(|| self.password.clone()))
            .db_name(Some(tablet.db_name.clone()))
            .prefer_socket(false)
    }
}

/// Runs forever: learns every sharded keyspace's columns, hands each
/// pass to the watcher, then waits for [`REFRESH`] or a DDL
/// ([`Progress::relearn`]).
pub async fn run(
    handle: SnapshotHandle,
    login: Login,
    tx: watch::Sender<Pass>,
    progress: Arc<Progress>,
) {
    loop {
        let pass = progress.started.fetch_add(1, Ordering::SeqCst) + 1;
        let snap = handle.load_full();
        let mut learned = Learned::new();
        let sharded = snap.keyspaces.values().filter(|k| k.sharded);
        for ks in sharded.filter(|k| !k.vschema.tables.is_empty()) {
            match tokio::time::timeout(TIMEOUT, learn(&snap, ks, &login)).await {
                Ok(Ok(tables)) => {
                    learned.insert(ks.name.clone(), tables);
                }
                // Without an answer the keyspace's sorts keep their weight
                // strings, which are right whatever the schema.
                Ok(Err(e)) => {
                    tracing::warn!(keyspace = %ks.name, error = %e, "schema tracking: no answer")
                }
                Err(_) => tracing::warn!(keyspace = %ks.name, "schema tracking: timed out"),
            }
        }
        // Every pass is handed on (the watcher reports it applied, even
        // when nothing changed); unchanged findings keep their allocation.
        tx.send_modify(|current| {
            if *current.1 != learned {
                current.1 = Arc::new(learned);
            }
            current.0 = pass;
        });
        tokio::select! {
            _ = progress.wake.notified() => {}
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// Asks the primary of the keyspace's first shard for the columns of the
/// keyspace's VSchema tables.
async fn learn(
    snap: &Snapshot,
    ks: &Keyspace,
    login: &Login,
) -> Result<BTreeMap<String, TableSchema>, String> {
    let tablet = ks
        .shards
        .first()
        .and_then(|s| s.tablets[TabletType::Primary as usize].first())
        .and_then(|alias| snap.tablets.get(alias))
        .ok_or("no primary tablet")?;
    let mut conn = mysql_async::Conn::new(login.opts(tablet))
        .await
        .map_err(|e| e.to_string())?;
    // Only the VSchema's tables: information_schema opens every table it
    // lists, and a schema may hold many more than are sharded.
    let names: Vec<String> = ks
        .vschema
        .tables
        .keys()
        .map(|t| format!("'{}'", t.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    let rows: Vec<(String, String, String, Option<String>)> = conn
        .query(format!(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME IN ({}) ORDER BY TABLE_NAME, ORDINAL_POSITION",
            names.join(", ")
        ))
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<(String, String)> = conn
        .query(format!(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = DATABASE() AND CONSTRAINT_NAME = 'PRIMARY' \
             AND TABLE_NAME IN ({}) ORDER BY TABLE_NAME, ORDINAL_POSITION",
            names.join(", ")
        ))
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    let mut tables: BTreeMap<String, TableSchema> = BTreeMap::new();
    for (table, column, data_type, collation) in rows {
        if !ks.vschema.tables.contains_key(&table) {
            continue;
        }
        let d = declared(&data_type, collation.as_deref());
        tables.entry(table).or_default().columns.push((column, d));
    }
    for (table, column) in keys {
        if let Some(t) = tables.get_mut(&table) {
            t.primary_key.push(column);
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_schema_types() {
        assert_eq!(declared("int", None), Some(Declared::Number));
        assert_eq!(
            declared("enum", Some("utf8mb4_bin")),
            Some(Declared::Indexed)
        );
        assert_eq!(declared("DECIMAL", None), Some(Declared::Number));
        assert_eq!(
            declared("char", Some("utf8mb4_general_ci")),
            Some(Declared::Text(Collation::Utf8GeneralCi))
        );
        assert_eq!(
            declared("longblob", None),
            Some(Declared::Text(Collation::Binary))
        );
        assert_eq!(declared("varchar", Some("utf8mb4_unicode_ci")), None);
        assert_eq!(
            declared("varchar", Some("latin1_swedish_ci")),
            Some(Declared::Text(Collation::Latin1SwedishCi))
        );
        assert_eq!(declared("varchar", Some("latin1_german1_ci")), None);
        assert_eq!(declared("datetime", None), None);
        // ENUM and SET order by their numbers.
        assert_eq!(
            declared("set", Some("utf8mb4_general_ci")),
            Some(Declared::Indexed)
        );
    }
}
