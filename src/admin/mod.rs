//! Topology administration, the part of vtctldclient a user needs:
//! keyspaces, shards, tablets, VSchemas, schema changes, making a
//! tablet the primary of its shard (with MariaDB GTID replication),
//! moving the primary to another tablet without losing a write, and away
//! from a dead one without losing a write a replica received.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::topo::lock::{Lock, LockOptions};
use crate::topo::store::TopoStore;
use crate::topo::{rfc3339, KeyspaceRecord, ShardRecord, TabletRecord, TopoError};
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
    /// No keyspace record of that name (MySQL's words for a database).
    #[error("Unknown database '{0}'")]
    UnknownKeyspace(String),
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
        let rec = KeyspaceRecord {
            sharded,
            ..KeyspaceRecord::default()
        };
        store.put(&key, &json(&rec)).await?;
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
                    ..ShardRecord::default()
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
    let (key, rec) = keyspace_record(store, ks).await?;
    let rec = KeyspaceRecord {
        sharded: vs.sharded,
        ..rec.unwrap_or_default()
    };
    store.put(&key, &json(&rec)).await?;
    store
        .put(&format!("global/keyspaces/{ks}/VSchema"), &json(&vs))
        .await?;
    Ok(vs)
}

/// Changes keyspace `ks`'s VSchema by `change` (an `ALTER VSCHEMA`, see
/// [`crate::vschema::ddl`]) and stores it, with the keyspace record's
/// `sharded` flag when the change flips it; the VSchema stored.
///
/// Checked before it is written: the VSchema alone, then the topology it
/// would make (built as a gate builds it, keeping tablets of `cells`), so
/// a change that would leave the keyspace unservable (a sharded VSchema
/// over one unsplit shard) is refused rather than ignored by every gate.
/// Written only if neither record changed since it was read; otherwise
/// read again and redone, so two changes made at once both land.
pub async fn alter_vschema(
    store: &TopoStore,
    cells: &[String],
    ks: &str,
    change: &crate::vschema::ddl::Alter,
) -> Result<KeyspaceVSchema, AdminError> {
    let vs_key = format!("global/keyspaces/{ks}/VSchema");
    let ks_key = format!("global/keyspaces/{ks}/Keyspace");
    for _ in 0..20 {
        let vs_read = store.get_versioned(&vs_key).await?;
        let ks_read = store.get_versioned(&ks_key).await?;
        let rec: KeyspaceRecord = match &ks_read.value {
            Some(v) => serde_json::from_slice(v).map_err(|source| TopoError::Record {
                key: ks_key.clone(),
                source,
            })?,
            None => return Err(AdminError::UnknownKeyspace(ks.to_string())),
        };
        let mut vs = match &vs_read.value {
            Some(v) => KeyspaceVSchema::from_json(ks, v)?,
            None => KeyspaceVSchema {
                sharded: rec.sharded,
                ..Default::default()
            },
        };
        change
            .apply(ks, &mut vs)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        vs.validate(ks)?;
        let mut puts = vec![(vs_key.clone(), json(&vs))];
        if vs.sharded != rec.sharded {
            let rec = KeyspaceRecord {
                sharded: vs.sharded,
                ..rec
            };
            puts.push((ks_key.clone(), json(&rec)));
        }
        let mut records = store.list_all().await?;
        records.extend(puts.iter().cloned());
        let scope = crate::topo::Scope::cells(cells);
        let (snap, problems) = crate::topo::Snapshot::build_keeping(&records, &scope, 0, None)?;
        if !snap.keyspaces.contains_key(ks) {
            let problem = problems.iter().find(|p| p.to_string().contains(ks));
            return Err(AdminError::Invalid(match problem {
                Some(p) => format!("the VSchema would leave keyspace {ks} unservable: {p}"),
                None => format!("the VSchema would leave keyspace {ks} unservable"),
            }));
        }
        let guards = [(vs_key.as_str(), &vs_read), (ks_key.as_str(), &ks_read)];
        if store.put_if_unchanged(&guards, &puts).await? {
            return Ok(vs);
        }
    }
    Err(AdminError::Invalid(format!(
        "the VSchema of keyspace {ks} kept changing while this change was made; try again"
    )))
}

/// Stores vtgate's metadata `key` (`SET @@vitess_metadata.key = value`),
/// or deletes it when `value` is empty, as vtgate does: at
/// `global/metadata/{key}`, where every gate (and `SHOW VITESS_METADATA
/// VARIABLES`) finds it.
pub async fn set_metadata(store: &TopoStore, key: &str, value: &str) -> Result<(), AdminError> {
    let path = format!("global/metadata/{key}");
    match value.is_empty() {
        true => store.delete(&path, false).await?,
        false => store.put(&path, value.as_bytes()).await?,
    }
    Ok(())
}

/// vtgate's metadata whose keys are LIKE `like` (all without one), by key.
pub async fn metadata(
    store: &TopoStore,
    like: Option<&str>,
) -> Result<Vec<(String, String)>, AdminError> {
    let all = store.list_all().await?;
    Ok(all
        .into_iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("global/metadata/")?.to_string();
            let value = String::from_utf8_lossy(&v).into_owned();
            like.is_none_or(|p| crate::sql::like(p, &key))
                .then_some((key, value))
        })
        .collect())
}

/// Reads a keyspace's VSchema back.
pub async fn get_vschema(store: &TopoStore, ks: &str) -> Result<Option<String>, AdminError> {
    Ok(store
        .get(&format!("global/keyspaces/{ks}/VSchema"))
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Validates and stores the routing rules (vtctldclient's
/// ApplyRoutingRules): each rule sends a table name (`t`, `ks.t`, with an
/// optional `@tablet_type`) to one `ks.table`, or, with none, disables it.
/// They replace the rules stored before.
pub async fn apply_routing_rules(
    store: &TopoStore,
    text: &[u8],
) -> Result<crate::topo::RoutingRules, AdminError> {
    let rules: crate::topo::RoutingRules = serde_json::from_slice(text)
        .map_err(|e| AdminError::Invalid(format!("routing rules: {e}")))?;
    for r in &rules.rules {
        if r.from_table.is_empty() || r.to_tables.len() > 1 {
            return Err(AdminError::Invalid(format!(
                "routing rule for '{}': one target table, or none to disable it",
                r.from_table
            )));
        }
        if let Some(to) = r.to_tables.iter().find(|t| !t.contains('.')) {
            return Err(AdminError::Invalid(format!(
                "routing rule for '{}': target '{to}' must be qualified (keyspace.table)",
                r.from_table
            )));
        }
        if rules
            .rules
            .iter()
            .filter(|o| o.from_table == r.from_table)
            .count()
            > 1
        {
            return Err(AdminError::Invalid(format!(
                "duplicate routing rule for '{}'",
                r.from_table
            )));
        }
    }
    store.put("global/RoutingRules", &json(&rules)).await?;
    Ok(rules)
}

/// Reads the routing rules back (`{"rules": []}` when none are stored).
pub async fn get_routing_rules(store: &TopoStore) -> Result<String, AdminError> {
    Ok(store
        .get("global/RoutingRules")
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| r#"{"rules":[]}"#.to_string()))
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

/// Removes a tablet record. The shard's recorded primary only with
/// `allow_primary` (vtctldclient's `DeleteTablets --allow-primary`): its
/// shard then has no primary, and takes no writes, until
/// init-shard-primary or a reparent names one; the shard record stops
/// naming it under the shard's lock.
pub async fn delete_tablet(
    store: &TopoStore,
    alias: &str,
    allow_primary: bool,
    locking: &LockOptions,
) -> Result<(), AdminError> {
    let cell = cell_of(alias)?;
    let key = format!("{cell}/tablets/{alias}");
    let rec: Option<TabletRecord> = record(store, &format!("{key}/Tablet")).await?;
    let Some(rec) = rec else {
        return store.delete(&key, true).await.map_err(Into::into);
    };
    let (ks, shard) = (rec.keyspace.as_str(), rec.shard.as_str());
    if recorded_primary(store, ks, shard).await?.as_deref() != Some(alias) {
        return store.delete(&key, true).await.map_err(Into::into);
    }
    if !allow_primary {
        return Err(AdminError::Invalid(format!(
            "tablet {alias} is the primary of {ks}/{shard}: reparent first, or pass --allow-primary (the shard then takes no writes until a primary is named)"
        )));
    }
    let say = |m: &str| tracing::info!("{m}");
    under_shard_lock(
        store,
        ks,
        shard,
        "DeleteTablet",
        locking,
        &say,
        async |lock| {
            let (skey, srec) = shard_record(store, ks, shard).await?;
            if let Some(mut srec) = srec.filter(|r| r.primary_alias.as_deref() == Some(alias)) {
                srec.primary_alias = None;
                lock.put(&skey, &json(&srec)).await?;
            }
            store.delete(&key, true).await.map_err(AdminError::from)
        },
    )
    .await
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
    tablet_records(&store.list_all().await?)
}

/// The tablet records among a listing of the store.
fn tablet_records(
    all: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Vec<TabletRecord>, AdminError> {
    let mut out = Vec::new();
    for (k, v) in all {
        if k.ends_with("/Tablet") && k.contains("/tablets/") {
            let rec: TabletRecord =
                serde_json::from_slice(v).map_err(|source| TopoError::Record {
                    key: k.clone(),
                    source,
                })?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// vtctldclient's GetTablets: one line per tablet (alias, keyspace,
/// shard, type, address), those of `keyspace` (and `shard`) only when
/// given, sorted by alias. The type is the one the topology serves it as
/// ([`ShardRecord::served_type`]). One read of the store.
pub async fn get_tablets(
    store: &TopoStore,
    keyspace: Option<&str>,
    shard: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    let all = store.list_all().await?;
    let mut tablets = tablet_records(&all)?;
    tablets
        .retain(|t| keyspace.is_none_or(|k| t.keyspace == k) && shard.is_none_or(|s| t.shard == s));
    tablets.sort_by(|a, b| a.alias.cmp(&b.alias));
    let mut out = Vec::with_capacity(tablets.len());
    for t in tablets {
        let key = format!("global/keyspaces/{}/shards/{}/Shard", t.keyspace, t.shard);
        let rec: Option<ShardRecord> = all.get(&key).and_then(|v| serde_json::from_slice(v).ok());
        let kind = match crate::sql::TabletType::parse(&t.tablet_type) {
            Some(own) => ShardRecord::served_type(rec.as_ref(), &t.alias, own)
                .as_str()
                .to_string(),
            None => t.tablet_type.to_ascii_lowercase(),
        };
        out.push(format!(
            "{} {} {} {kind} {}:{}",
            t.alias, t.keyspace, t.shard, t.hostname, t.mysql_port
        ));
    }
    Ok(out)
}

/// vtctldclient's GetShard, as JSON: the shard's record (primary, its
/// term's start, whether it serves) and who holds its lock, if anyone
/// (what a reparent waiting on it would name).
pub async fn get_shard(store: &TopoStore, ks: &str, shard: &str) -> Result<String, AdminError> {
    let (_, rec) = shard_record(store, ks, shard).await?;
    let Some(rec) = rec else {
        return Err(AdminError::Invalid(format!(
            "shard {ks}/{shard} does not exist"
        )));
    };
    let locks_at = format!("global/keyspaces/{ks}/shards/{shard}/locks/");
    let holders: Vec<serde_json::Value> = store
        .list_all()
        .await?
        .into_iter()
        .filter(|(k, _)| k.starts_with(&locks_at))
        .map(|(_, v)| serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null))
        .collect();
    let shown = serde_json::json!({
        "keyspace": ks,
        "name": shard,
        "shard": {
            "primary_alias": rec.primary_alias,
            "primary_term_start_time": rec.primary_term_start_time,
            "is_primary_serving": rec.is_primary_serving,
            "key_range": rec.range_text(shard),
        },
        "locks": holders,
    });
    Ok(serde_json::to_string_pretty(&shown).unwrap_or_default())
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

/// The tablet records of one shard.
async fn shard_tablets(
    store: &TopoStore,
    ks: &str,
    shard: &str,
) -> Result<Vec<TabletRecord>, AdminError> {
    let all = list_tablets(store).await?;
    Ok(all
        .into_iter()
        .filter(|t| t.keyspace == ks && t.shard == shard)
        .collect())
}

/// A shard record's key and the record (None when there is none).
async fn shard_record(
    store: &TopoStore,
    ks: &str,
    shard: &str,
) -> Result<(String, Option<ShardRecord>), AdminError> {
    let key = format!("global/keyspaces/{ks}/shards/{shard}/Shard");
    let rec = record(store, &key).await?;
    Ok((key, rec))
}

/// The topology record at `key`, if there is one.
async fn record<T: serde::de::DeserializeOwned>(
    store: &TopoStore,
    key: &str,
) -> Result<Option<T>, AdminError> {
    let Some(raw) = store.get(key).await? else {
        return Ok(None);
    };
    let rec = serde_json::from_slice(&raw).map_err(|source| TopoError::Record {
        key: key.to_string(),
        source,
    })?;
    Ok(Some(rec))
}

/// The keyspace record's key, and the record if there is one.
async fn keyspace_record(
    store: &TopoStore,
    ks: &str,
) -> Result<(String, Option<KeyspaceRecord>), AdminError> {
    let key = format!("global/keyspaces/{ks}/Keyspace");
    let rec = record(store, &key).await?;
    Ok((key, rec))
}

/// Whether the keyspace's durability policy is `semi_sync`: its
/// primaries commit only once a replica has received the write, and its
/// replicas acknowledge what they receive.
async fn semi_sync(store: &TopoStore, ks: &str) -> Result<bool, AdminError> {
    let (_, rec) = keyspace_record(store, ks).await?;
    Ok(rec.and_then(|r| r.durability_policy).as_deref() == Some("semi_sync"))
}

/// The semi-sync settings of a primary: with `on`, a commit waits (after
/// the binlog is written, before the commit is visible: MariaDB's lossless
/// `AFTER_SYNC`) until a replica has received it, with no timeout and
/// even with no replica connected (Vitess's `semi_sync` policy: a write
/// is acknowledged only once it would survive the primary's loss).
const SEMI_SYNC_PRIMARY: [&str; 4] = [
    "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
    "SET GLOBAL rpl_semi_sync_master_timeout = 4294967295",
    "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
    "SET GLOBAL rpl_semi_sync_master_enabled = ON",
];

/// Brings the semi-sync settings of the tablet behind `c` to its role:
/// a primary waits for an acknowledgement (with `on`), a replica gives
/// them (set before its replication starts, which reads it).
async fn set_semi_sync(
    c: &mut Conn,
    t: &TabletRecord,
    primary: bool,
    on: bool,
) -> Result<(), AdminError> {
    let mut qs: Vec<&str> = Vec::new();
    if primary && on {
        qs.extend(SEMI_SYNC_PRIMARY);
    } else {
        qs.push("SET GLOBAL rpl_semi_sync_master_enabled = OFF");
    }
    qs.push(if on && !primary {
        "SET GLOBAL rpl_semi_sync_slave_enabled = ON"
    } else {
        "SET GLOBAL rpl_semi_sync_slave_enabled = OFF"
    });
    for q in qs {
        c.query_drop(q).await.map_err(mysql_err(t))?;
    }
    Ok(())
}

/// Makes the tablet behind `c` (its replication stopped) the writable
/// primary, waiting for a replica's acknowledgement of each commit under
/// `semi_sync`.
async fn promote(c: &mut Conn, t: &TabletRecord, semi: bool) -> Result<(), AdminError> {
    for q in ["STOP SLAVE", "RESET SLAVE ALL"] {
        c.query_drop(q).await.map_err(mysql_err(t))?;
    }
    set_semi_sync(c, t, true, semi).await?;
    c.query_drop("SET GLOBAL read_only = 0")
        .await
        .map_err(mysql_err(t))
}

/// vtctldclient's SetKeyspaceDurabilityPolicy: records `none` or
/// `semi_sync` for the keyspace and brings its tablets that answer to it
/// at once (primaries wait for acknowledgements, replicas give them,
/// their replication restarted to take it).
pub async fn set_durability_policy(
    store: &TopoStore,
    ks: &str,
    policy: &str,
    creds: &DbaCreds,
    locking: &LockOptions,
    say: impl Fn(&str),
) -> Result<(), AdminError> {
    if !matches!(policy, "none" | "semi_sync") {
        return Err(AdminError::Invalid(format!(
            "durability policy '{policy}': shardgate knows 'none' and 'semi_sync'"
        )));
    }
    // Every shard's lock, in name order (a reparent holds one and waits
    // for none, so the order alone rules out a deadlock): a reparent
    // under way would otherwise promote with the old policy.
    let shards: std::collections::BTreeSet<String> = list_tablets(store)
        .await?
        .into_iter()
        .filter(|t| t.keyspace == ks)
        .map(|t| t.shard)
        .collect();
    let mut locks = Vec::new();
    for shard in &shards {
        match lock_shard(
            store,
            ks,
            shard,
            "SetKeyspaceDurabilityPolicy",
            locking,
            &say,
        )
        .await
        {
            Ok(l) => locks.push(l),
            Err(e) => return unlock_all(locks, Err(e)).await,
        }
    }
    let r = set_durability(store, ks, policy, creds, &say).await;
    unlock_all(locks, r).await
}

/// [`unlocked`] for several locks.
async fn unlock_all<T>(locks: Vec<Lock>, r: Result<T, AdminError>) -> Result<T, AdminError> {
    for l in locks {
        let _ = unlocked(l, Ok(())).await;
    }
    r
}

async fn set_durability(
    store: &TopoStore,
    ks: &str,
    policy: &str,
    creds: &DbaCreds,
    say: &dyn Fn(&str),
) -> Result<(), AdminError> {
    let (key, rec) = keyspace_record(store, ks).await?;
    let Some(mut rec) = rec else {
        return Err(AdminError::Invalid(format!("keyspace {ks} does not exist")));
    };
    rec.durability_policy = Some(policy.to_string());
    store.put(&key, &json(&rec)).await?;
    let on = policy == "semi_sync";
    let all = list_tablets(store).await?;
    // Replicas first: a primary that starts waiting before any replica
    // acknowledges would hold its writes meanwhile.
    let mut order: Vec<&TabletRecord> = all.iter().filter(|t| t.keyspace == ks).collect();
    order.sort_by_key(|t| t.tablet_type.eq_ignore_ascii_case("primary"));
    for t in order {
        let primary = t.tablet_type.eq_ignore_ascii_case("primary");
        let Some(mut c) = reach(t, creds).await else {
            say(&format!(
                "{} does not answer: set when it is next reparented",
                t.alias
            ));
            continue;
        };
        set_semi_sync(&mut c, t, primary, on).await?;
        if !primary {
            // The IO thread reads the setting when it starts.
            for q in ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"] {
                c.query_drop(q).await.map_err(mysql_err(t))?;
            }
        }
        say(&format!(
            "{} ({}): semi-sync {}",
            t.alias,
            t.tablet_type.to_ascii_lowercase(),
            if on { "on" } else { "off" }
        ));
    }
    Ok(())
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
    locking: &LockOptions,
) -> Result<(), AdminError> {
    let say = |m: &str| tracing::info!("{m}");
    under_shard_lock(
        store,
        ks,
        shard,
        "InitShardPrimary",
        locking,
        &say,
        async |lock| init_primary(lock, ks, shard, alias, creds).await,
    )
    .await
}

async fn init_primary(
    lock: &Lock,
    ks: &str,
    shard: &str,
    alias: &str,
    creds: &DbaCreds,
) -> Result<(), AdminError> {
    let store = lock.store();
    let tablets = shard_tablets(store, ks, shard).await?;
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
    let semi = semi_sync(store, ks).await?;
    promote(&mut c, &primary, semi).await?;
    c.query_drop(create).await.map_err(mysql_err(&primary))?;
    let _ = c.disconnect().await;
    for t in tablets.iter().filter(|t| t.alias != alias) {
        let mut c = dba_conn(t, creds, None).await?;
        c.query_drop("STOP SLAVE").await.map_err(mysql_err(t))?;
        follow(&mut c, t, &primary, creds, semi).await?;
        let _ = c.disconnect().await;
    }
    record_primary(lock, ks, shard, &tablets, alias).await
}

/// Makes the tablet behind `c` (its replication stopped) a read-only
/// replica of `primary`, from the GTID position it holds, acknowledging
/// what it receives under `semi_sync`.
async fn follow(
    c: &mut Conn,
    t: &TabletRecord,
    primary: &TabletRecord,
    creds: &DbaCreds,
    semi: bool,
) -> Result<(), AdminError> {
    set_semi_sync(c, t, false, semi).await?;
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
        crate::sql::quote_str(&primary.hostname),
        primary.mysql_port,
        crate::sql::quote_str(&creds.repl_user),
        crate::sql::quote_str(&creds.repl_password),
    );
    for q in ["SET GLOBAL read_only = 1", change.as_str(), "START SLAVE"] {
        c.query_drop(q).await.map_err(mysql_err(t))?;
    }
    Ok(())
}

/// Records `alias` as the shard's primary. The shard record goes first:
/// it alone decides where shardgates send primary traffic (a tablet
/// record still saying PRIMARY is served as a replica), so the switch is
/// one write. The tablet records follow, to agree with it.
async fn record_primary(
    lock: &Lock,
    ks: &str,
    shard: &str,
    tablets: &[TabletRecord],
    alias: &str,
) -> Result<(), AdminError> {
    let (key, rec) = shard_record(lock.store(), ks, shard).await?;
    let mut rec = rec.unwrap_or_default();
    rec.primary_alias = Some(alias.to_string());
    rec.primary_term_start_time = Some(rfc3339(std::time::SystemTime::now()));
    rec.is_primary_serving = true;
    lock.put(&key, &json(&rec)).await?;
    for t in tablets {
        let is_primary = t.tablet_type.eq_ignore_ascii_case("primary");
        let wanted = match (t.alias == alias, is_primary) {
            (true, false) => "PRIMARY",
            (false, true) => "REPLICA",
            _ => continue,
        };
        let mut changed = t.clone();
        changed.tablet_type = wanted.into();
        add_tablet(lock.store(), &changed, false).await?;
    }
    Ok(())
}

/// The alias of the shard's recorded primary, if it has one.
async fn recorded_primary(
    store: &TopoStore,
    ks: &str,
    shard: &str,
) -> Result<Option<String>, AdminError> {
    let (_, rec) = shard_record(store, ks, shard).await?;
    Ok(rec.and_then(|r| r.primary_alias))
}

/// The record of the shard's primary `alias` among its `tablets`.
fn record_of<'t>(tablets: &'t [TabletRecord], alias: &str) -> Result<&'t TabletRecord, AdminError> {
    tablets
        .iter()
        .find(|p| p.alias == alias)
        .ok_or_else(|| AdminError::Invalid(format!("the primary {alias} has no tablet record")))
}

/// A shard's tablets and the alias of its recorded primary, for a
/// reparent (which needs one).
async fn shard_and_primary(
    store: &TopoStore,
    ks: &str,
    shard: &str,
) -> Result<(Vec<TabletRecord>, String), AdminError> {
    let tablets = shard_tablets(store, ks, shard).await?;
    let primary = recorded_primary(store, ks, shard).await?.ok_or_else(|| {
        AdminError::Invalid(format!(
            "shard {ks}/{shard} has no primary (run init-shard-primary first)"
        ))
    })?;
    Ok((tablets, primary))
}

/// What [`planned_reparent_shard`] is asked to do (vtctldclient's
/// PlannedReparentShard flags).
#[derive(Debug, Clone, Default)]
pub struct Reparent {
    /// The tablet to promote (None: the most caught-up replica that is
    /// not `avoid`).
    pub new_primary: Option<String>,
    /// A tablet that must not stay or become the primary (None: the
    /// current primary, when no new one is named).
    pub avoid: Option<String>,
    /// How long the new primary may take to apply what the old one
    /// wrote before the reparent gives up and undoes the demotion.
    pub wait_replicas_timeout: std::time::Duration,
    /// How long transactions under way on the old primary may take to
    /// finish before it is made read-only (their writes fail after).
    pub transaction_grace_period: std::time::Duration,
    /// How the shard's lock is taken.
    pub lock: LockOptions,
}

/// Takes the shard's lock for `action` (vtctld's LockShard), so no other
/// operation changes who its primary is meanwhile; says so when an
/// earlier one left the shard not serving (it was stopped half way: this
/// one finishes it).
async fn lock_shard(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    action: &str,
    locking: &LockOptions,
    say: &dyn Fn(&str),
) -> Result<Lock, AdminError> {
    let dir = format!("global/keyspaces/{ks}/shards/{shard}");
    let lock = store
        .lock(&dir, &format!("{action} {ks}/{shard}"), locking, say)
        .await?;
    if let (_, Some(rec)) = shard_record(store, ks, shard).await? {
        if !rec.is_primary_serving {
            say(&format!(
                "{ks}/{shard} is marked not serving: an earlier reparent stopped half way; this one finishes it"
            ));
        }
    }
    Ok(lock)
}

/// Runs `op` holding the shard's lock ([`lock_shard`]) and releases it
/// whatever `op` returned.
async fn under_shard_lock<T>(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    action: &str,
    locking: &LockOptions,
    say: &dyn Fn(&str),
    op: impl AsyncFnOnce(&Lock) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let lock = lock_shard(store, ks, shard, action, locking, say).await?;
    let r = op(&lock).await;
    unlocked(lock, r).await
}

/// Releases `lock` and returns what the operation under it returned. A
/// lock that cannot be released expires with its lease; that does not
/// undo the operation.
async fn unlocked<T>(lock: Lock, r: Result<T, AdminError>) -> Result<T, AdminError> {
    if let Err(e) = lock.unlock().await {
        tracing::warn!("releasing a shard lock: {e}");
    }
    r
}

/// Marks the shard's primary as serving or not (Vitess's
/// `is_primary_serving`): while it is not, shardgates with
/// `--enable_buffer` hold statements that would start new work there.
async fn set_serving(lock: &Lock, ks: &str, shard: &str, serving: bool) -> Result<(), AdminError> {
    let (key, rec) = shard_record(lock.store(), ks, shard).await?;
    let Some(mut rec) = rec else {
        return Err(AdminError::Invalid(format!(
            "shard {ks}/{shard} does not exist"
        )));
    };
    rec.is_primary_serving = serving;
    lock.put(&key, &json(&rec)).await?;
    Ok(())
}

/// Waits up to `grace` for the transactions open on the tablet behind `c`
/// to end (autocommit reads aside); the number still open.
async fn wait_transactions(
    c: &mut Conn,
    t: &TabletRecord,
    grace: std::time::Duration,
) -> Result<u64, AdminError> {
    let until = std::time::Instant::now() + grace;
    loop {
        // First a pause, in which shardgates see the shard record and
        // stop starting transactions there; then one every 150 ms:
        // InnoDB refreshes what INNODB_TRX shows only when it was last
        // read over 100 ms ago, so a faster poll would see it frozen.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let open: Option<u64> = c
            .query_first(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
                 WHERE trx_autocommit_non_locking = 0 AND trx_mysql_thread_id <> CONNECTION_ID()",
            )
            .await
            .map_err(mysql_err(t))?;
        let open = open.unwrap_or(0);
        if open == 0 || std::time::Instant::now() >= until {
            return Ok(open);
        }
    }
}

/// A planned change of a shard's primary that loses no committed write:
/// the shard is marked not serving (shardgates with `--enable_buffer`
/// hold new work for it) and its transactions under way get
/// `transaction_grace_period` to finish; then
/// the old primary is made read-only (MariaDB then refuses every write
/// and every COMMIT of a transaction that wrote, so nothing commits there
/// any more), the new one applies everything up to the old one's last
/// GTID, is made writable and is recorded as the primary (one topology
/// write, which shardgates see and send primary traffic to it, releasing
/// what their failover buffers hold), and the other tablets, the old
/// primary included, replicate from it. Should the new primary not catch
/// up in time, the old one is made writable again and nothing changes.
/// Returns (old primary, new primary); `say` reports each step.
pub async fn planned_reparent_shard(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    how: &Reparent,
    creds: &DbaCreds,
    say: impl Fn(&str),
) -> Result<(String, String), AdminError> {
    let action = "PlannedReparentShard";
    under_shard_lock(store, ks, shard, action, &how.lock, &say, async |lock| {
        planned(lock, ks, shard, how, creds, &say).await
    })
    .await
}

async fn planned(
    lock: &Lock,
    ks: &str,
    shard: &str,
    how: &Reparent,
    creds: &DbaCreds,
    say: &dyn Fn(&str),
) -> Result<(String, String), AdminError> {
    let store = lock.store();
    let (tablets, old_alias) = shard_and_primary(store, ks, shard).await?;
    let find = |alias: &str| {
        tablets
            .iter()
            .find(|t| t.alias == alias)
            .ok_or_else(|| AdminError::Invalid(format!("tablet {alias} is not in {ks}/{shard}")))
    };
    let old = find(&old_alias)?.clone();
    let avoid = match (&how.new_primary, &how.avoid) {
        (_, Some(a)) => Some(a.as_str()),
        (None, None) => Some(old_alias.as_str()),
        (Some(_), None) => None,
    };
    let new = match &how.new_primary {
        Some(a) => find(a)?.clone(),
        None if avoid != Some(old_alias.as_str()) => old.clone(),
        None => most_caught_up(&tablets, &old_alias, avoid, creds).await?,
    };
    if avoid == Some(new.alias.as_str()) {
        return Err(AdminError::Invalid(format!(
            "the new primary {} is the tablet to avoid",
            new.alias
        )));
    }
    if new.alias == old.alias {
        say(&format!(
            "{} is already the primary of {ks}/{shard}",
            old.alias
        ));
        if !shard_record(store, ks, shard)
            .await?
            .1
            .unwrap_or_default()
            .is_primary_serving
        {
            // What an interrupted reparent left: the recorded primary
            // read-only, the others maybe not replicating from it.
            let semi = semi_sync(store, ks).await?;
            restore_roles(&old, &tablets, creds, semi).await?;
            set_serving(lock, ks, shard, true).await?;
            say(&format!(
                "{} is writable again and the other tablets replicate from it; {ks}/{shard} serves",
                old.alias
            ));
        }
        return Ok((old.alias.clone(), new.alias));
    }
    if !new.tablet_type.eq_ignore_ascii_case("replica") {
        return Err(AdminError::Invalid(format!(
            "tablet {} is {}: only a REPLICA can become the primary",
            new.alias, new.tablet_type
        )));
    }
    // Connect to both before touching anything.
    let mut old_c = dba_conn(&old, creds, None).await?;
    let mut new_c = dba_conn(&new, creds, None).await?;
    say(&format!(
        "{ks}/{shard} not serving: shardgates hold its new work; waiting up to {:?} for transactions on {} to end",
        how.transaction_grace_period, old.alias
    ));
    set_serving(lock, ks, shard, false).await?;
    let demoted = async {
        let open = wait_transactions(&mut old_c, &old, how.transaction_grace_period).await?;
        if open > 0 {
            let who: Vec<(u64, String, String, String)> = old_c
                .query(
                    "SELECT t.trx_mysql_thread_id, CAST(t.trx_started AS CHAR), p.USER, \
                     CONCAT(p.COMMAND, ' ', IFNULL(p.INFO, '')) \
                     FROM information_schema.INNODB_TRX t \
                     JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                     WHERE t.trx_autocommit_non_locking = 0 AND p.ID <> CONNECTION_ID()",
                )
                .await
                .map_err(mysql_err(&old))?;
            let who: Vec<String> = who
                .into_iter()
                .map(|(id, since, user, doing)| {
                    format!("thread {id} ({user}, since {since}): {doing}")
                })
                .collect();
            say(&format!(
                "{open} transaction(s) still open, their writes will be refused: {}",
                who.join("; ")
            ));
        }
        say(&format!("demoting {}: read-only", old.alias));
        old_c
            .query_drop("SET GLOBAL read_only = 1")
            .await
            .map_err(mysql_err(&old))
    };
    if let Err(e) = demoted.await {
        let _ = set_serving(lock, ks, shard, true).await;
        return Err(e);
    }
    // Until the new primary has everything, the old one can come back.
    let secs = how.wait_replicas_timeout.as_secs_f64().max(0.001);
    let caught_up = async {
        let pos = gtid_pos(&mut old_c, &old, "gtid_binlog_pos").await?;
        say(&format!(
            "waiting up to {secs}s for {} to apply up to GTID {}",
            new.alias,
            if pos.is_empty() { "(none)" } else { &pos }
        ));
        if !applied_up_to(&mut new_c, &new, &pos, secs).await? {
            return Err(AdminError::Invalid(format!(
                "{} did not reach the primary's position {pos} within {secs}s; {} is the primary still",
                new.alias, old.alias
            )));
        }
        Ok(())
    };
    if let Err(e) = caught_up.await {
        say(&format!(
            "{} did not catch up: undoing the demotion",
            new.alias
        ));
        old_c
            .query_drop("SET GLOBAL read_only = 0")
            .await
            .map_err(mysql_err(&old))?;
        set_serving(lock, ks, shard, true).await?;
        return Err(e);
    }
    say(&format!("promoting {}: writable", new.alias));
    let semi = semi_sync(store, ks).await?;
    promote(&mut new_c, &new, semi).await?;
    let _ = new_c.disconnect().await;
    record_primary(lock, ks, shard, &tablets, &new.alias).await?;
    say(&format!(
        "{} recorded as the primary of {ks}/{shard}",
        new.alias
    ));
    // The old primary replicates from where its own binlog ends.
    repoint(&mut old_c, &old, &new, creds, semi).await?;
    let _ = old_c.disconnect().await;
    for t in tablets
        .iter()
        .filter(|t| t.alias != old.alias && t.alias != new.alias)
    {
        let mut c = dba_conn(t, creds, None).await?;
        c.query_drop("STOP SLAVE").await.map_err(mysql_err(t))?;
        follow(&mut c, t, &new, creds, semi).await?;
        let _ = c.disconnect().await;
    }
    say(&format!(
        "{} and the other tablets of {ks}/{shard} replicate from {}",
        old.alias, new.alias
    ));
    Ok((old.alias.clone(), new.alias))
}

/// What [`emergency_reparent_shard`] is asked to do (vtctldclient's
/// EmergencyReparentShard flags).
#[derive(Debug, Clone, Default)]
pub struct Emergency {
    /// The replica to promote (None: the most advanced one).
    pub new_primary: Option<String>,
    /// Tablets left out: not waited for, not repointed.
    pub ignore_replicas: Vec<String>,
    /// How long each replica may take to apply what it had received, and
    /// the new primary to catch up with the most advanced replica.
    pub wait_replicas_timeout: std::time::Duration,
    /// How the shard's lock is taken.
    pub lock: LockOptions,
}

/// A tablet's mysqld if it answers within a few seconds (a dead primary's
/// host may drop packets rather than refuse them).
async fn reach(t: &TabletRecord, creds: &DbaCreds) -> Option<Conn> {
    let wait = std::time::Duration::from_secs(5);
    tokio::time::timeout(wait, dba_conn(t, creds, None))
        .await
        .ok()?
        .ok()
}

/// One of the GTID positions of the server behind `c`
/// (`gtid_binlog_pos`, `gtid_slave_pos`; empty for none).
async fn gtid_pos(c: &mut Conn, t: &TabletRecord, var: &str) -> Result<String, AdminError> {
    let pos: Option<String> = c
        .query_first(format!("SELECT @@GLOBAL.{var}"))
        .await
        .map_err(mysql_err(t))?;
    Ok(pos.unwrap_or_default())
}

/// Whether the server behind `c` has applied everything up to GTID
/// `pos` within `secs` (`MASTER_GTID_WAIT`).
async fn applied_up_to(
    c: &mut Conn,
    t: &TabletRecord,
    pos: &str,
    secs: f64,
) -> Result<bool, AdminError> {
    let waited: Option<i64> = c
        .exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (pos, secs))
        .await
        .map_err(mysql_err(t))?;
    Ok(waited == Some(0))
}

/// Columns `cols` of the `SHOW SLAVE STATUS` of the server behind `c`
/// (empty where it has none).
async fn slave_status<const N: usize>(
    c: &mut Conn,
    t: &TabletRecord,
    cols: [&str; N],
) -> Result<[String; N], AdminError> {
    let status: Option<mysql_async::Row> = c
        .query_first("SHOW SLAVE STATUS")
        .await
        .map_err(mysql_err(t))?;
    Ok(cols.map(|col| {
        status
            .as_ref()
            .and_then(|r| r.get_opt::<String, _>(col)?.ok())
            .unwrap_or_default()
    }))
}

/// A replica of the shard that answered, its replication stopped once it
/// had applied all it received, and its GTID position then.
struct Stopped {
    t: TabletRecord,
    c: Conn,
    pos: String,
}

/// Stops the replica behind `c` receiving and waits up to `secs` for it
/// to apply what it had received (its relay log): its position then.
async fn drain_relay_log(c: &mut Conn, t: &TabletRecord, secs: f64) -> Result<String, AdminError> {
    c.query_drop("STOP SLAVE IO_THREAD")
        .await
        .map_err(mysql_err(t))?;
    let [received] = slave_status(c, t, ["Gtid_IO_Pos"]).await?;
    if !received.is_empty() && !applied_up_to(c, t, &received, secs).await? {
        return Err(AdminError::Invalid(format!(
            "{} did not apply what it received (up to {received}) within {secs}s",
            t.alias
        )));
    }
    c.query_drop("STOP SLAVE").await.map_err(mysql_err(t))?;
    gtid_pos(c, t, "gtid_slave_pos").await
}

/// Moves a shard's primary away from one that is dead or unreachable
/// (vtctldclient's EmergencyReparentShard), losing no write a replica
/// had received: the shard is marked not serving (shardgates with
/// `--enable_buffer` hold its new work), the old primary is made
/// read-only should it still answer, every replica stops receiving and
/// applies what it received, and the most advanced REPLICA (or the one
/// named, once it has caught up with the most advanced) is made writable
/// and recorded as the primary; the others replicate from it. The old
/// primary, if it answered, replicates from it too (with GTID strict mode
/// a write of its own that no replica got stops its replication rather
/// than diverge); if not, it is recorded as a replica, which the health
/// checks keep out of service while it is down or does not replicate.
/// Should no replica answer, or one not apply its relay log in time,
/// nothing is promoted and what was stopped is started again. Returns
/// (old primary, new primary); `say` reports each step.
pub async fn emergency_reparent_shard(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    how: &Emergency,
    creds: &DbaCreds,
    say: impl Fn(&str),
) -> Result<(String, String), AdminError> {
    let action = "EmergencyReparentShard";
    under_shard_lock(store, ks, shard, action, &how.lock, &say, async |lock| {
        emergency(lock, ks, shard, how, creds, &say).await
    })
    .await
}

async fn emergency(
    lock: &Lock,
    ks: &str,
    shard: &str,
    how: &Emergency,
    creds: &DbaCreds,
    say: &dyn Fn(&str),
) -> Result<(String, String), AdminError> {
    let store = lock.store();
    let (tablets, old_alias) = shard_and_primary(store, ks, shard).await?;
    let ignored = |alias: &str| how.ignore_replicas.iter().any(|a| a == alias);
    if let Some(n) = &how.new_primary {
        let t = tablets
            .iter()
            .find(|t| &t.alias == n)
            .ok_or_else(|| AdminError::Invalid(format!("tablet {n} is not in {ks}/{shard}")))?;
        if *n == old_alias || ignored(n) || !t.tablet_type.eq_ignore_ascii_case("replica") {
            return Err(AdminError::Invalid(format!(
                "tablet {n} cannot become the primary: only a REPLICA that is not the old primary and not ignored can"
            )));
        }
    }
    say(&format!(
        "{ks}/{shard} not serving: shardgates hold its new work"
    ));
    set_serving(lock, ks, shard, false).await?;
    let old = tablets.iter().find(|t| t.alias == old_alias);
    let mut old_c = match old {
        Some(o) => reach(o, creds).await,
        None => None,
    };
    if let (Some(c), Some(o)) = (&mut old_c, old) {
        say(&format!("{old_alias} answers: made read-only"));
        // One that answers but cannot be fenced could still take writes:
        // nothing is promoted, and the shard serves again.
        if let Err(e) = c.query_drop("SET GLOBAL read_only = 1").await {
            set_serving(lock, ks, shard, true).await?;
            return Err(mysql_err(o)(e));
        }
    } else {
        say(&format!("{old_alias} does not answer: taken as dead"));
    }
    let secs = how.wait_replicas_timeout.as_secs_f64().max(0.001);
    let mut stopped: Vec<Stopped> = Vec::new();
    let mut failed = None;
    for t in tablets
        .iter()
        .filter(|t| t.alias != old_alias && !ignored(&t.alias))
    {
        let Some(mut c) = reach(t, creds).await else {
            say(&format!("{} does not answer: left out", t.alias));
            continue;
        };
        match drain_relay_log(&mut c, t, secs).await {
            Ok(pos) => {
                say(&format!("{} stopped at GTID {pos}", t.alias));
                stopped.push(Stopped {
                    t: t.clone(),
                    c,
                    pos,
                });
            }
            Err(e) => {
                stopped.push(Stopped {
                    t: t.clone(),
                    c,
                    pos: String::new(),
                });
                failed = Some(e);
                break;
            }
        }
    }
    let seq = |s: &Stopped| gtid_seq(&s.pos);
    let ahead = stopped.iter().map(seq).max();
    let chosen = match &how.new_primary {
        Some(n) => stopped.iter().position(|s| &s.t.alias == n),
        None => stopped
            .iter()
            .enumerate()
            .filter(|(_, s)| s.t.tablet_type.eq_ignore_ascii_case("replica"))
            .max_by_key(|(_, s)| seq(s))
            .map(|(i, _)| i),
    };
    let chosen = match (failed, chosen) {
        (None, Some(i)) => i,
        (failed, _) => {
            say("no replica to promote: starting replication again");
            for s in &mut stopped {
                let _ = s.c.query_drop("START SLAVE").await;
            }
            if let Some(c) = &mut old_c {
                let _ = c.query_drop("SET GLOBAL read_only = 0").await;
            }
            set_serving(lock, ks, shard, true).await?;
            return Err(failed.unwrap_or_else(|| {
                AdminError::Invalid(format!(
                    "no REPLICA of {ks}/{shard} answers{}",
                    how.new_primary
                        .as_ref()
                        .map(|n| format!(" ({n} does not)"))
                        .unwrap_or_default()
                ))
            }));
        }
    };
    let mut new = stopped.swap_remove(chosen);
    // Named but behind another replica: it first gets what that one has.
    if let Some(src) = stopped
        .iter()
        .filter(|s| ahead == Some(seq(s)))
        .find(|s| seq(s) > seq(&new))
    {
        say(&format!(
            "{} catches up with {} (GTID {}) first",
            new.t.alias, src.t.alias, src.pos
        ));
        // Start the source's binlog where the new primary stands.
        follow(&mut new.c, &new.t, &src.t, creds, false).await?;
        let caught_up = applied_up_to(&mut new.c, &new.t, &src.pos, secs).await?;
        new.c
            .query_drop("STOP SLAVE")
            .await
            .map_err(mysql_err(&new.t))?;
        if !caught_up {
            return Err(AdminError::Invalid(format!(
                "{} did not catch up with {} within {secs}s; nothing was promoted (the shard stays not serving: run it again, or name another --new-primary)",
                new.t.alias, src.t.alias
            )));
        }
    }
    say(&format!("promoting {}: writable", new.t.alias));
    let semi = semi_sync(store, ks).await?;
    promote(&mut new.c, &new.t, semi).await?;
    let _ = new.c.disconnect().await;
    record_primary(lock, ks, shard, &tablets, &new.t.alias).await?;
    say(&format!(
        "{} recorded as the primary of {ks}/{shard}",
        new.t.alias
    ));
    for s in &mut stopped {
        follow(&mut s.c, &s.t, &new.t, creds, semi).await?;
        say(&format!("{} replicates from {}", s.t.alias, new.t.alias));
    }
    if let (Some(mut c), Some(o)) = (old_c, old) {
        // As after a planned reparent: from where its own binlog ends.
        repoint(&mut c, o, &new.t, creds, semi).await?;
        say(&format!("{old_alias} replicates from {}", new.t.alias));
    } else {
        say(&format!(
            "{old_alias} is recorded as a replica: once it is back, `ctl reparent-tablet {old_alias}` points it at {} (and says so if it has writes no replica received)",
            new.t.alias
        ));
    }
    Ok((old_alias, new.t.alias))
}

/// Points the tablet behind `c` at `primary` from where its own binlog
/// ends (its replica position may be stale or empty: it may have been a
/// primary).
async fn repoint(
    c: &mut Conn,
    t: &TabletRecord,
    primary: &TabletRecord,
    creds: &DbaCreds,
    semi: bool,
) -> Result<(), AdminError> {
    c.query_drop("STOP SLAVE").await.map_err(mysql_err(t))?;
    c.query_drop("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")
        .await
        .map_err(mysql_err(t))?;
    follow(c, t, primary, creds, semi).await
}

/// Brings the servers of a shard whose topology names its primary back
/// to their roles after a restart (a resumed local cluster): settings a
/// restart forgets (read-only, semi-sync) are set again, and every other
/// tablet that answers replicates from the recorded primary, from where
/// its own binlog ends (one with writes the primary lacks stops
/// replicating under GTID strict mode). Returns the primary's alias;
/// None, with nothing done, for a shard with no primary recorded yet.
pub async fn resume_shard(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    creds: &DbaCreds,
    locking: &LockOptions,
) -> Result<Option<String>, AdminError> {
    let say = |m: &str| tracing::info!("{m}");
    under_shard_lock(store, ks, shard, "ResumeShard", locking, &say, async |_| {
        resume(store, ks, shard, creds).await
    })
    .await
}

async fn resume(
    store: &TopoStore,
    ks: &str,
    shard: &str,
    creds: &DbaCreds,
) -> Result<Option<String>, AdminError> {
    let Some(primary_alias) = recorded_primary(store, ks, shard).await? else {
        return Ok(None);
    };
    let tablets = shard_tablets(store, ks, shard).await?;
    let semi = semi_sync(store, ks).await?;
    let primary = record_of(&tablets, &primary_alias)?;
    restore_roles(primary, &tablets, creds, semi).await?;
    Ok(Some(primary_alias))
}

/// Makes `primary` writable (waiting for acknowledgements under
/// `semi`) and points every other of `tablets` that answers at it, from
/// where its own binlog ends.
async fn restore_roles(
    primary: &TabletRecord,
    tablets: &[TabletRecord],
    creds: &DbaCreds,
    semi: bool,
) -> Result<(), AdminError> {
    let mut p = dba_conn(primary, creds, None).await?;
    set_semi_sync(&mut p, primary, true, semi).await?;
    p.query_drop("SET GLOBAL read_only = 0")
        .await
        .map_err(mysql_err(primary))?;
    for t in tablets.iter().filter(|t| t.alias != primary.alias) {
        if let Some(mut c) = reach(t, creds).await {
            repoint(&mut c, t, primary, creds, semi).await?;
        }
    }
    Ok(())
}

/// vtctldclient's ReparentTablet: points tablet `alias` at its shard's
/// recorded primary (the old primary once it is back after an emergency
/// reparent, or a replica that was left out), from where its own binlog
/// ends, and waits up to `wait` for it to have everything the primary
/// has. A tablet with writes the primary lacks cannot catch up (GTID
/// strict mode stops its replication): the error says what replication
/// reported, and the health checks keep it out of service. Returns the
/// primary's alias; `say` reports each step.
pub async fn reparent_tablet(
    store: &TopoStore,
    alias: &str,
    wait: std::time::Duration,
    creds: &DbaCreds,
    locking: &LockOptions,
    say: impl Fn(&str),
) -> Result<String, AdminError> {
    let all = list_tablets(store).await?;
    let t = all
        .iter()
        .find(|t| t.alias == alias)
        .ok_or_else(|| AdminError::Invalid(format!("tablet {alias} is not in the topology")))?;
    let (ks, shard) = (&t.keyspace, &t.shard);
    under_shard_lock(
        store,
        ks,
        shard,
        "ReparentTablet",
        locking,
        &say,
        async |_| rejoin(store, t, wait, creds, &say).await,
    )
    .await
}

async fn rejoin(
    store: &TopoStore,
    t: &TabletRecord,
    wait: std::time::Duration,
    creds: &DbaCreds,
    say: &dyn Fn(&str),
) -> Result<String, AdminError> {
    let alias = t.alias.as_str();
    let (tablets, primary_alias) = shard_and_primary(store, &t.keyspace, &t.shard).await?;
    if primary_alias == alias {
        return Err(AdminError::Invalid(format!(
            "{alias} is the primary of {}/{}",
            t.keyspace, t.shard
        )));
    }
    let primary = record_of(&tablets, &primary_alias)?;
    let semi = semi_sync(store, &t.keyspace).await?;
    let mut c = dba_conn(t, creds, None).await?;
    let mut p = dba_conn(primary, creds, None).await?;
    repoint(&mut c, t, primary, creds, semi).await?;
    say(&format!("{alias} replicates from {primary_alias}"));
    let pos = gtid_pos(&mut p, primary, "gtid_binlog_pos").await?;
    let secs = wait.as_secs_f64().max(0.001);
    if !applied_up_to(&mut c, t, &pos, secs).await? {
        let [io, sql] = slave_status(&mut c, t, ["Last_IO_Error", "Last_SQL_Error"]).await?;
        return Err(AdminError::Invalid(format!(
            "{alias} did not reach {primary_alias}'s position {pos} within {secs}s (replication says: {io} {sql})"
        )));
    }
    say(&format!(
        "{alias} has everything {primary_alias} has (GTID {pos})"
    ));
    Ok(primary_alias)
}

/// The REPLICA of the shard (not `primary`, not `avoid`) that has applied
/// the most of the primary's writes (highest sequence number in its
/// replica GTID position).
async fn most_caught_up(
    tablets: &[TabletRecord],
    primary: &str,
    avoid: Option<&str>,
    creds: &DbaCreds,
) -> Result<TabletRecord, AdminError> {
    let mut best: Option<(u64, &TabletRecord)> = None;
    for t in tablets.iter().filter(|t| {
        t.alias != primary
            && Some(t.alias.as_str()) != avoid
            && t.tablet_type.eq_ignore_ascii_case("replica")
    }) {
        let Ok(mut c) = dba_conn(t, creds, None).await else {
            continue;
        };
        let pos = gtid_pos(&mut c, t, "gtid_slave_pos").await?;
        let _ = c.disconnect().await;
        let seq = gtid_seq(&pos);
        if best.is_none_or(|(b, _)| seq > b) {
            best = Some((seq, t));
        }
    }
    best.map(|(_, t)| t.clone())
        .ok_or_else(|| AdminError::Invalid("no reachable REPLICA to promote".into()))
}

/// The highest sequence number in a MariaDB GTID list
/// (`domain-server-seq,...`).
fn gtid_seq(pos: &str) -> u64 {
    pos.split(',')
        .filter_map(|g| g.trim().rsplit('-').next()?.parse().ok())
        .max()
        .unwrap_or(0)
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
    // Another keyspace's problem (one being built shard by shard) does
    // not stop a schema change here.
    let (snap, problems) =
        crate::topo::Snapshot::build_keeping(&all, &Default::default(), 0, None)?;
    let keyspace = snap.keyspaces.get(ks).ok_or_else(|| {
        let why: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        AdminError::Invalid(match why.is_empty() {
            true => format!("keyspace {ks} does not exist"),
            false => format!(
                "keyspace {ks} does not exist or is invalid ({})",
                why.join("; ")
            ),
        })
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_sequence_of_a_gtid_list() {
        assert_eq!(gtid_seq(""), 0);
        assert_eq!(gtid_seq("0-100-121"), 121);
        assert_eq!(gtid_seq("0-100-121,1-200-7"), 121);
        assert_eq!(gtid_seq("0-1-5, 2-3-900"), 900);
    }
}
