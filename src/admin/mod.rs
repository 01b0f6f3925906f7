//! Topology administration, the part of vtctldclient a user needs:
//! keyspaces, shards, tablets, VSchemas, schema changes and making a
//! tablet the primary of its shard (with MariaDB GTID replication).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::topo::store::TopoStore;
use crate::topo::{KeyspaceRecord, ShardRecord, TabletRecord, TopoError};
use crate::vschema::{KeyspaceVSchema, VSchemaError};

/// Errors of admin commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The topology store failed.
    #[error(transparent)]
    Topo(#[from] TopoError),
    /// The VSchema is invalid.
    #[error(transparent)]
    VSchema(#[from] VSchemaError),
    /// A tablet's mysqld refused or failed.
    #[error("tablet {alias} ({addr}): {source}")]
    Mysql {
        alias: String,
        addr: String,
        #[source]
        source: mysql_async::Error,
    },
    /// Bad arguments or a missing record.
    #[error("{0}")]
    Invalid(String),
}

/// How admin commands log in to tablets.
#[derive(Debug, Clone)]
pub struct DbaCreds {
    /// Admin user (all privileges).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Replication user the replicas use.
    pub repl_user: String,
    /// Its password.
    pub repl_password: String,
}

impl Default for DbaCreds {
    fn default() -> Self {
        DbaCreds {
            user: "vt_dba".into(),
            password: String::new(),
            repl_user: "vt_repl".into(),
            repl_password: String::new(),
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Creates the keyspace record if it does not exist.
pub async fn ensure_keyspace(store: &TopoStore, ks: &str, sharded: bool) -> Result<(), AdminError> {
    let key = format!("global/keyspaces/{ks}/Keyspace");
    if store.get(&key).await?.is_none() {
        store.put(&key, &json(&KeyspaceRecord { sharded })).await?;
    }
    Ok(())
}

/// Creates the shard record if it does not exist.
pub async fn ensure_shard(store: &TopoStore, ks: &str, shard: &str) -> Result<(), AdminError> {
    crate::topo::KeyRange::parse(shard).map_err(AdminError::Invalid)?;
    let key = format!("global/keyspaces/{ks}/shards/{shard}/Shard");
    if store.get(&key).await?.is_none() {
        let range = if shard == "0" || shard == "-" {
            String::new()
        } else {
            shard.to_string()
        };
        store
            .put(
                &key,
                &json(&ShardRecord {
                    key_range: range,
                    primary_alias: None,
                }),
            )
            .await?;
    }
    Ok(())
}

/// Validates and stores a keyspace VSchema (creating the keyspace record).
pub async fn apply_vschema(
    store: &TopoStore,
    ks: &str,
    text: &[u8],
) -> Result<KeyspaceVSchema, AdminError> {
    let vs = KeyspaceVSchema::from_json(ks, text)?;
    ensure_keyspace(store, ks, vs.sharded).await?;
    let key = format!("global/keyspaces/{ks}/Keyspace");
    store
        .put(
            &key,
            &json(&KeyspaceRecord {
                sharded: vs.sharded,
            }),
        )
        .await?;
    store
        .put(&format!("global/keyspaces/{ks}/VSchema"), &json(&vs))
        .await?;
    Ok(vs)
}

/// Reads a keyspace's VSchema back.
pub async fn get_vschema(store: &TopoStore, ks: &str) -> Result<Option<String>, AdminError> {
    Ok(store
        .get(&format!("global/keyspaces/{ks}/VSchema"))
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Registers a tablet, creating its keyspace and shard records if needed.
pub async fn add_tablet(
    store: &TopoStore,
    rec: &TabletRecord,
    sharded: bool,
) -> Result<(), AdminError> {
    let cell = cell_of(&rec.alias)?;
    if crate::sql::TabletType::parse(&rec.tablet_type).is_none() {
        return Err(AdminError::Invalid(format!(
            "unknown tablet type '{}'",
            rec.tablet_type
        )));
    }
    ensure_keyspace(store, &rec.keyspace, sharded).await?;
    ensure_shard(store, &rec.keyspace, &rec.shard).await?;
    let mut rec = rec.clone();
    rec.tablet_type = rec.tablet_type.to_ascii_uppercase();
    store
        .put(&format!("{cell}/tablets/{}/Tablet", rec.alias), &json(&rec))
        .await?;
    Ok(())
}

/// Removes a tablet record.
pub async fn delete_tablet(store: &TopoStore, alias: &str) -> Result<(), AdminError> {
    let cell = cell_of(alias)?;
    store
        .delete(&format!("{cell}/tablets/{alias}"), true)
        .await?;
    Ok(())
}

fn cell_of(alias: &str) -> Result<&str, AdminError> {
    alias
        .rsplit_once('-')
        .map(|(c, _)| c)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AdminError::Invalid(format!("tablet alias '{alias}' is not CELL-UID")))
}

/// Every tablet record in the store.
pub async fn list_tablets(store: &TopoStore) -> Result<Vec<TabletRecord>, AdminError> {
    let all = store.list_all().await?;
    let mut out = Vec::new();
    for (k, v) in all {
        if k.ends_with("/Tablet") && k.contains("/tablets/") {
            let rec: TabletRecord = serde_json::from_slice(&v)
                .map_err(|source| TopoError::Record { key: k, source })?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// Connects to a tablet's mysqld as the admin user.
pub async fn dba_conn(
    rec: &TabletRecord,
    creds: &DbaCreds,
    db: Option<String>,
) -> Result<Conn, AdminError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(rec.hostname.clone())
        .tcp_port(rec.mysql_port)
        .user(Some(creds.user.clone()))
        .pass((!creds.password.is_empty()).then(|| creds.password.clone()))
        .db_name(db)
        .prefer_socket(false);
    Conn::new(opts).await.map_err(|source| AdminError::Mysql {
        alias: rec.alias.clone(),
        addr: format!("{}:{}", rec.hostname, rec.mysql_port),
        source,
    })
}

fn mysql_err(rec: &TabletRecord) -> impl Fn(mysql_async::Error) -> AdminError + '_ {
    move |source| AdminError::Mysql {
        alias: rec.alias.clone(),
        addr: format!("{}:{}", rec.hostname, rec.mysql_port),
        source,
    }
}

/// Makes `alias` the writable primary of `ks/shard` (creating the
/// keyspace's database there if it is new), points every other tablet of
/// the shard at it with GTID replication, and records it.
pub async fn init_shard_primary(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    alias: &str,
    creds: &DbaCreds,
) -> Result<(), AdminError> {
    let tablets: Vec<TabletRecord> = list_tablets(store)
        .await?
        .into_iter()
        .filter(|t| t.keyspace == ks && t.shard == shard)
        .collect();
    let primary = tablets
        .iter()
        .find(|t| t.alias == alias)
        .ok_or_else(|| AdminError::Invalid(format!("tablet {alias} is not in {ks}/{shard}")))?
        .clone();
    let mut c = dba_conn(&primary, creds, None).await?;
    // The keyspace's database, created if new (as vttablet does for a
    // primary): a tablet given its own database name (shards sharing a
    // mysqld) is ready for apply-schema without a step by hand.
    let create = format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        crate::sql::quote_ident(&primary.database())
    );
    for q in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = 0",
        create.as_str(),
    ] {
        c.query_drop(q).await.map_err(mysql_err(&primary))?;
    }
    let _ = c.disconnect().await;
    for t in tablets.iter().filter(|t| t.alias != alias) {
        let mut c = dba_conn(t, creds, None).await?;
        let change = format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
            crate::sql::quote_str(&primary.hostname),
            primary.mysql_port,
            crate::sql::quote_str(&creds.repl_user),
            crate::sql::quote_str(&creds.repl_password),
        );
        for q in [
            "STOP SLAVE",
            "SET GLOBAL read_only = 1",
            change.as_str(),
            "START SLAVE",
        ] {
            c.query_drop(q).await.map_err(mysql_err(t))?;
        }
        let _ = c.disconnect().await;
        if t.tablet_type.eq_ignore_ascii_case("primary") {
            let mut demoted = t.clone();
            demoted.tablet_type = "REPLICA".into();
            add_tablet(store, &demoted, false).await?;
        }
    }
    if !primary.tablet_type.eq_ignore_ascii_case("primary") {
        let mut promoted = primary.clone();
        promoted.tablet_type = "PRIMARY".into();
        add_tablet(store, &promoted, false).await?;
    }
    let key = format!("global/keyspaces/{ks}/shards/{shard}/Shard");
    let mut rec: ShardRecord = match store.get(&key).await? {
        Some(v) => serde_json::from_slice(&v).map_err(|source| TopoError::Record {
            key: key.clone(),
            source,
        })?,
        None => ShardRecord::default(),
    };
    rec.primary_alias = Some(alias.to_string());
    store.put(&key, &json(&rec)).await?;
    Ok(())
}

/// Runs SQL (several statements allowed) on the primary of every shard of
/// the keyspace, in its `vt_` database.
pub async fn apply_schema(
    store: &TopoStore,
    ks: &str,
    sql: &str,
    creds: &DbaCreds,
) -> Result<usize, AdminError> {
    let all = store.list_all().await?;
    let snap = crate::topo::Snapshot::build(&all, &[], 0)?;
    let keyspace = snap
        .keyspaces
        .get(ks)
        .ok_or_else(|| AdminError::Invalid(format!("keyspace {ks} does not exist")))?;
    let mut n = 0;
    for shard in &keyspace.shards {
        let alias = shard.tablets[0].first().ok_or_else(|| {
            AdminError::Invalid(format!("shard {ks}/{} has no primary", shard.name))
        })?;
        let t = &snap.tablets[alias];
        let rec = TabletRecord {
            alias: t.alias.clone(),
            hostname: t.hostname.clone(),
            mysql_port: t.port,
            keyspace: t.keyspace.clone(),
            shard: t.shard.clone(),
            tablet_type: "PRIMARY".into(),
            db_name: Some(t.db_name.clone()),
        };
        let mut c = dba_conn(&rec, creds, Some(t.db_name.clone())).await?;
        c.query_drop(sql).await.map_err(mysql_err(&rec))?;
        let _ = c.disconnect().await;
        n += 1;
    }
    Ok(n)
}
