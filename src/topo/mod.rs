//! Topology: where the cluster's shape lives (etcd or files), the immutable
//! [`Snapshot`] every statement reads, and the watcher that swaps it.
//!
//! Keys follow Vitess's layout (DESIGN.md), relative to the topo root:
//! `global/keyspaces/{ks}/Keyspace`, `.../VSchema`, `.../shards/{shard}/Shard`,
//! `global/RoutingRules`, `{cell}/tablets/{alias}/Tablet`; values are JSON.

pub mod keyrange;
pub mod lock;
pub mod schema;
pub mod store;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::sql::TabletType;
use crate::vschema::{KeyspaceVSchema, VSchemaError};
pub use keyrange::KeyRange;

/// The handle every component holds: load once per statement.
pub type SnapshotHandle = Arc<ArcSwap<Snapshot>>;

/// Errors building a snapshot or talking to the topology store.
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// A VSchema failed validation.
    #[error(transparent)]
    VSchema(#[from] VSchemaError),
    /// A record is not valid JSON for its key.
    #[error("topo key {key}: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The records contradict each other.
    #[error("{0}")]
    Inconsistent(String),
    /// The store could not be reached or answered with an error.
    #[error("topo store: {0}")]
    Store(String),
    /// A lock could not be taken in time, or was lost while held.
    #[error("{0}")]
    Locked(String),
}

/// `global/keyspaces/{ks}/Keyspace`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyspaceRecord {
    /// True when the keyspace has several shards.
    #[serde(default)]
    pub sharded: bool,
    /// Vitess's durability policy (`none`, `semi_sync`): with
    /// `semi_sync`, a primary's commit waits until a replica has the
    /// write (see `admin`), so no acknowledged write is lost when the
    /// primary dies and an emergency reparent promotes a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability_policy: Option<String>,
}

/// `global/keyspaces/{ks}/shards/{shard}/Shard`.
///
/// Topology records take fields they do not know (unlike VSchemas, which
/// people write): a record written by a newer `ctl` must not stop an
/// older shardgate from serving during a rolling upgrade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The shard's key range in Vitess's hex form ("-80", "80-", "" for all).
    #[serde(default)]
    pub key_range: String,
    /// The tablet that is primary, as recorded by init-shard-primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_alias: Option<String>,
    /// When that tablet became the primary (RFC 3339, UTC), as Vitess's
    /// shard record keeps it: `SHOW VITESS_TABLETS` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_term_start_time: Option<String>,
    /// False while a reparent drains the primary (Vitess's field): shardgates
    /// with `--enable_buffer` hold statements that would start new work
    /// there, and let transactions under way finish.
    #[serde(default = "serving", skip_serializing_if = "is_serving")]
    pub is_primary_serving: bool,
}

fn serving() -> bool {
    true
}

fn is_serving(b: &bool) -> bool {
    *b
}

impl ShardRecord {
    /// The shard's key range as written: its record's, else its name
    /// (`-80`), as Vitess names shards by their range.
    pub fn range_text<'a>(&'a self, name: &'a str) -> &'a str {
        if self.key_range.is_empty() {
            name
        } else {
            &self.key_range
        }
    }

    /// The type tablet `alias`, whose own record says `own`, is served
    /// as: the shard record alone names the primary (one write moves
    /// it), so a tablet it names is PRIMARY, and one still recorded
    /// PRIMARY beside it a REPLICA.
    pub fn served_type(rec: Option<&Self>, alias: &str, own: TabletType) -> TabletType {
        match rec.and_then(|r| r.primary_alias.as_deref()) {
            Some(p) if p == alias => TabletType::Primary,
            Some(_) if own == TabletType::Primary => TabletType::Replica,
            _ => own,
        }
    }
}

impl Default for ShardRecord {
    fn default() -> Self {
        ShardRecord {
            key_range: String::new(),
            primary_alias: None,
            primary_term_start_time: None,
            is_primary_serving: true,
        }
    }
}

/// `{cell}/tablets/{alias}/Tablet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabletRecord {
    /// `cell-uid`, e.g. `zone1-100`.
    pub alias: String,
    /// Where its mysqld listens.
    pub hostname: String,
    /// Its mysqld's TCP port.
    pub mysql_port: u16,
    /// The keyspace it serves.
    pub keyspace: String,
    /// The shard it serves.
    pub shard: String,
    /// PRIMARY, REPLICA or RDONLY.
    #[serde(rename = "type")]
    pub tablet_type: String,
    /// The MySQL database holding the keyspace (default `vt_{keyspace}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_name: Option<String>,
}

impl TabletRecord {
    /// The MySQL database the tablet serves its keyspace from: its own
    /// name if it has one (several shards sharing a mysqld), else
    /// `vt_{keyspace}`, as vttablet names it.
    pub fn database(&self) -> String {
        self.db_name
            .clone()
            .unwrap_or_else(|| format!("vt_{}", self.keyspace))
    }
}

/// `global/RoutingRules`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    /// Table redirections.
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
}

/// One routing rule: a table name that resolves to another keyspace's table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// `table` or `ks.table` (with optional `@type`).
    pub from_table: String,
    /// Targets as `ks.table`.
    pub to_tables: Vec<String>,
}

/// A tablet as the gateway needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablet {
    /// `cell-uid`.
    pub alias: String,
    /// Host of its mysqld.
    pub hostname: String,
    /// Port of its mysqld.
    pub port: u16,
    /// Keyspace served.
    pub keyspace: String,
    /// Shard served.
    pub shard: String,
    /// Effective type (the shard record's primary wins over the tablet's own word).
    pub tablet_type: TabletType,
    /// MySQL database name.
    pub db_name: String,
}

/// A shard of a keyspace.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Name as in the topology ("-80", "0").
    pub name: String,
    /// The key range it holds.
    pub key_range: KeyRange,
    /// Tablet aliases by type: [primary, replica, rdonly].
    pub tablets: [Vec<String>; 3],
    /// When the primary's term began (RFC 3339; empty when unknown).
    pub primary_term_start: String,
    /// False while a reparent drains the primary (see
    /// [`crate::gateway::buffer`]).
    pub primary_serving: bool,
}

/// A keyspace with its VSchema and shards (sorted by key range).
#[derive(Debug, Clone)]
pub struct Keyspace {
    /// Keyspace name.
    pub name: String,
    /// Sharded or not.
    pub sharded: bool,
    /// Its VSchema (empty unsharded one if none was applied).
    pub vschema: KeyspaceVSchema,
    /// Its shards.
    pub shards: Vec<Shard>,
    /// Tables learned from its tablets ([`schema`]): their columns and
    /// primary keys.
    pub learned: BTreeMap<String, schema::TableSchema>,
}

/// The whole cluster as one immutable value; statements load it once and
/// see a consistent picture even while a new one is being swapped in.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases with every accepted change; part of plan-cache keys.
    pub version: u64,
    /// Keyspaces by name.
    pub keyspaces: BTreeMap<String, Keyspace>,
    /// Tablets by alias.
    pub tablets: BTreeMap<String, Tablet>,
    /// Global routing rules.
    pub routing_rules: Vec<RoutingRule>,
    /// Some shard's primary is drained by a reparent (its record says not
    /// serving): one load tells the statement path it need not look.
    pub draining: bool,
}

/// Which part of the topology a gate serves: vtgate's `--cells_to_watch`,
/// `--keyspaces_to_watch` and `--allowed_tablet_types`. Whatever lies
/// outside is left out when the snapshot is built, so no statement can
/// be routed there (a keyspace outside is unknown; a tablet type outside
/// has no tablets) and no pool or health check is kept for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Cells whose tablets are kept (all when empty).
    pub cells: Vec<String>,
    /// Keyspaces kept (all when empty).
    pub keyspaces: Vec<String>,
    /// Tablet types routed to (all when empty).
    pub tablet_types: Vec<TabletType>,
    /// `--tablet_filters`: when any, only tablets of these (keyspace,
    /// shard name or key range) are kept; a range keeps the shards that
    /// lie inside it.
    pub shards: Vec<(String, String)>,
}

impl Scope {
    /// Everything in `cells` (all when empty).
    pub fn cells(cells: &[String]) -> Scope {
        Scope {
            cells: cells.to_vec(),
            ..Scope::default()
        }
    }

    fn cell(&self, cell: &str) -> bool {
        self.cells.is_empty() || self.cells.iter().any(|c| c == cell)
    }

    fn keyspace(&self, ks: &str) -> bool {
        self.keyspaces.is_empty() || self.keyspaces.iter().any(|k| k == ks)
    }

    fn tablet_type(&self, t: TabletType) -> bool {
        self.tablet_types.is_empty() || self.tablet_types.contains(&t)
    }

    fn shard(&self, ks: &str, shard: &Shard) -> bool {
        self.shards.is_empty()
            || self.shards.iter().any(|(k, filter)| {
                k == ks
                    && (*filter == shard.name
                        || KeyRange::parse(filter).is_ok_and(|r| r.covers(&shard.key_range)))
            })
    }
}

impl Snapshot {
    /// A snapshot of one sharded keyspace `ks` (shards -80 and 80-) under
    /// VSchema `vschema`, with what the schema tracker learned of its
    /// tables, for the planner's unit tests.
    #[cfg(test)]
    pub(crate) fn sharded_for_tests(
        vschema: &str,
        learned: BTreeMap<String, schema::TableSchema>,
    ) -> Snapshot {
        let mut r = BTreeMap::new();
        for (k, v) in [
            ("global/keyspaces/ks/Keyspace", r#"{"sharded": true}"#),
            ("global/keyspaces/ks/VSchema", vschema),
            ("global/keyspaces/ks/shards/-80/Shard", "{}"),
            ("global/keyspaces/ks/shards/80-/Shard", "{}"),
        ] {
            r.insert(k.to_string(), v.as_bytes().to_vec());
        }
        let mut s = Snapshot::build(&r, &Default::default(), 1).expect("test snapshot");
        s.learn(&[("ks".to_string(), learned)].into());
        s
    }

    /// Builds and validates a snapshot from raw topology records (key → JSON),
    /// keeping what `scope` names (everything by default); the first
    /// problem found fails it.
    pub fn build(
        records: &BTreeMap<String, Vec<u8>>,
        scope: &Scope,
        version: u64,
    ) -> Result<Self, TopoError> {
        let (snap, mut problems) = Self::build_keeping(records, scope, version, None)?;
        match problems.is_empty() {
            true => Ok(snap),
            false => Err(problems.swap_remove(0)),
        }
    }

    /// [`Self::build`], keyspace by keyspace: a keyspace whose records
    /// are invalid (a bad VSchema, shards that do not cover the key space
    /// yet while they are added one by one) stays as `previous` had it,
    /// its tablets too, or is left out when `previous` had none; a tablet
    /// record that does not parse is left out. Each is one of the problems
    /// returned beside the snapshot. Why: one keyspace's bad update must
    /// not hold back every other's (a reparent elsewhere would go unseen).
    /// Only invalid routing rules, which span keyspaces, fail it whole.
    pub fn build_keeping(
        records: &BTreeMap<String, Vec<u8>>,
        scope: &Scope,
        version: u64,
        previous: Option<&Snapshot>,
    ) -> Result<(Self, Vec<TopoError>), TopoError> {
        fn parse<'a, T: Deserialize<'a>>(key: &str, v: &'a [u8]) -> Result<T, TopoError> {
            serde_json::from_slice(v).map_err(|source| TopoError::Record {
                key: key.to_string(),
                source,
            })
        }
        let mut ks_records: BTreeMap<String, KeyspaceRecord> = BTreeMap::new();
        let mut vschemas: BTreeMap<String, KeyspaceVSchema> = BTreeMap::new();
        let mut shard_records: BTreeMap<String, BTreeMap<String, ShardRecord>> = BTreeMap::new();
        let mut tablet_records: Vec<TabletRecord> = Vec::new();
        let mut routing_rules = Vec::new();
        // Keyspaces whose records are invalid, with the first problem.
        let mut broken: BTreeMap<String, TopoError> = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, value) in records {
            let parts: Vec<&str> = key.split('/').collect();
            let read = match parts.as_slice() {
                ["global", "keyspaces", ks, ..] if !scope.keyspace(ks) => Ok(()),
                ["global", "keyspaces", ks, "Keyspace"] => parse(key, value).map(|r| {
                    ks_records.insert(ks.to_string(), r);
                }),
                ["global", "keyspaces", ks, "VSchema"] => KeyspaceVSchema::from_json(ks, value)
                    .map(|v| {
                        vschemas.insert(ks.to_string(), v);
                    })
                    .map_err(TopoError::from),
                ["global", "keyspaces", ks, "shards", shard, "Shard"] => {
                    parse(key, value).map(|r| {
                        shard_records
                            .entry(ks.to_string())
                            .or_default()
                            .insert(shard.to_string(), r);
                    })
                }
                ["global", "RoutingRules"] => {
                    routing_rules = parse::<RoutingRules>(key, value)?.rules;
                    Ok(())
                }
                [cell, "tablets", _alias, "Tablet"] if scope.cell(cell) => {
                    match parse(key, value) {
                        Ok(t) => tablet_records.push(t),
                        Err(e) => problems.push(e),
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            if let (Err(e), ["global", "keyspaces", ks, ..]) = (read, parts.as_slice()) {
                broken.entry(ks.to_string()).or_insert(e);
            }
        }
        let mut keyspaces = BTreeMap::new();
        let names: std::collections::BTreeSet<&String> = ks_records
            .keys()
            .chain(vschemas.keys())
            .chain(shard_records.keys())
            .collect();
        for name in names {
            if broken.contains_key(name) {
                continue;
            }
            match Self::keyspace(name, &ks_records, &vschemas, &shard_records) {
                Ok(ks) => {
                    keyspaces.insert(name.clone(), ks);
                }
                Err(e) => {
                    broken.insert(name.clone(), e);
                }
            }
        }
        // A broken keyspace keeps its last good version, tablets and all.
        let mut tablets = BTreeMap::new();
        let mut kept = std::collections::BTreeSet::new();
        for (name, e) in broken {
            if let Some(prev) = previous.and_then(|p| p.keyspaces.get(&name)) {
                keyspaces.insert(name.clone(), prev.clone());
                let theirs = previous.into_iter().flat_map(|p| p.tablets.values());
                for t in theirs.filter(|t| t.keyspace == name) {
                    tablets.insert(t.alias.clone(), t.clone());
                }
                kept.insert(name);
            }
            problems.push(e);
        }
        for rec in tablet_records {
            if kept.contains(&rec.keyspace) || !scope.keyspace(&rec.keyspace) {
                continue;
            }
            let Some(ks) = keyspaces.get_mut(&rec.keyspace) else {
                tracing::warn!(tablet = %rec.alias, keyspace = %rec.keyspace, "tablet of unknown keyspace ignored");
                continue;
            };
            let Some(shard) = ks.shards.iter_mut().find(|s| s.name == rec.shard) else {
                tracing::warn!(tablet = %rec.alias, shard = %rec.shard, "tablet of unknown shard ignored");
                continue;
            };
            let shard_rec = shard_records
                .get(&rec.keyspace)
                .and_then(|m| m.get(&rec.shard));
            let Some(own) = TabletType::parse(&rec.tablet_type) else {
                problems.push(TopoError::Inconsistent(format!(
                    "tablet {}: unknown type '{}'",
                    rec.alias, rec.tablet_type
                )));
                continue;
            };
            let tablet_type = ShardRecord::served_type(shard_rec, &rec.alias, own);
            if !scope.tablet_type(tablet_type) || !scope.shard(&rec.keyspace, shard) {
                continue;
            }
            shard.tablets[tablet_type as usize].push(rec.alias.clone());
            tablets.insert(
                rec.alias.clone(),
                Tablet {
                    db_name: rec.database(),
                    alias: rec.alias,
                    hostname: rec.hostname,
                    port: rec.mysql_port,
                    keyspace: rec.keyspace,
                    shard: rec.shard,
                    tablet_type,
                },
            );
        }
        let draining = keyspaces
            .values()
            .flat_map(|k| &k.shards)
            .any(|s| !s.primary_serving);
        let snap = Snapshot {
            version,
            keyspaces,
            tablets,
            routing_rules,
            draining,
        };
        Ok((snap, problems))
    }

    /// One keyspace from its records, validated.
    fn keyspace(
        name: &String,
        ks_records: &BTreeMap<String, KeyspaceRecord>,
        vschemas: &BTreeMap<String, KeyspaceVSchema>,
        shard_records: &BTreeMap<String, BTreeMap<String, ShardRecord>>,
    ) -> Result<Keyspace, TopoError> {
        let vschema = vschemas.get(name).cloned().unwrap_or_default();
        let sharded = ks_records.get(name).map(|r| r.sharded).unwrap_or(false) || vschema.sharded;
        if vschemas.contains_key(name) && vschema.sharded != sharded {
            return Err(TopoError::Inconsistent(format!(
                "keyspace {name}: the Keyspace record says sharded={sharded} but its VSchema says sharded={}",
                vschema.sharded
            )));
        }
        let mut shards = Vec::new();
        for (sname, rec) in shard_records.get(name).into_iter().flatten() {
            let key_range = KeyRange::parse(rec.range_text(sname)).map_err(|e| {
                TopoError::Inconsistent(format!("keyspace {name} shard {sname}: {e}"))
            })?;
            shards.push(Shard {
                name: sname.clone(),
                key_range,
                tablets: Default::default(),
                primary_term_start: rec.primary_term_start_time.clone().unwrap_or_default(),
                primary_serving: rec.is_primary_serving,
            });
        }
        shards.sort_by(|a, b| a.key_range.start.cmp(&b.key_range.start));
        KeyRange::check_partition(shards.iter().map(|s| (&s.name, &s.key_range)))
            .map_err(|e| TopoError::Inconsistent(format!("keyspace {name}: {e}")))?;
        if !sharded && shards.len() > 1 {
            return Err(TopoError::Inconsistent(format!(
                "keyspace {name}: unsharded but has {} shards",
                shards.len()
            )));
        }
        Ok(Keyspace {
            name: name.clone(),
            sharded,
            vschema,
            shards,
            learned: BTreeMap::new(),
        })
    }

    /// Puts in what the schema tracker learned of each keyspace.
    pub fn learn(&mut self, learned: &schema::Learned) {
        for ks in self.keyspaces.values_mut() {
            ks.learned = learned.get(&ks.name).cloned().unwrap_or_default();
        }
    }

    /// The shard named `shard` of keyspace `ks`.
    pub fn shard(&self, ks: &str, shard: &str) -> Option<&Shard> {
        self.keyspaces
            .get(ks)?
            .shards
            .iter()
            .find(|s| s.name == shard)
    }

    /// Tablet aliases per (keyspace, shard) for quick inspection in tests and pages.
    pub fn tablets_by_shard(&self) -> HashMap<(String, String), Vec<&Tablet>> {
        let mut m: HashMap<(String, String), Vec<&Tablet>> = HashMap::new();
        for t in self.tablets.values() {
            m.entry((t.keyspace.clone(), t.shard.clone()))
                .or_default()
                .push(t);
        }
        m
    }
}

/// A time as RFC 3339 in UTC to the second (`2026-12-05T10:04:21Z`), as
/// Vitess prints a primary's term start.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        let at = |secs: u64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_551_461), "2026-12-06T10:04:21Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    fn rec(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn builds_keyspaces_shards_and_tablets() {
        let r = rec(&[
            (
                "global/keyspaces/commerce/Keyspace",
                r#"{"sharded": false}"#,
            ),
            (
                "global/keyspaces/commerce/VSchema",
                r#"{"tables": {"product": {}}}"#,
            ),
            (
                "global/keyspaces/commerce/shards/0/Shard",
                r#"{"key_range": "", "primary_alias": "zone1-100"}"#,
            ),
            (
                "zone1/tablets/zone1-100/Tablet",
                r#"{"alias":"zone1-100","hostname":"127.0.0.1","mysql_port":17100,"keyspace":"commerce","shard":"0","type":"REPLICA"}"#,
            ),
            (
                "zone1/tablets/zone1-101/Tablet",
                r#"{"alias":"zone1-101","hostname":"127.0.0.1","mysql_port":17101,"keyspace":"commerce","shard":"0","type":"REPLICA"}"#,
            ),
            (
                "zone2/tablets/zone2-200/Tablet",
                r#"{"alias":"zone2-200","hostname":"127.0.0.1","mysql_port":17200,"keyspace":"commerce","shard":"0","type":"RDONLY"}"#,
            ),
        ]);
        let s = Snapshot::build(&r, &Scope::cells(&["zone1".to_string()]), 7).unwrap();
        let sh = s.shard("commerce", "0").unwrap();
        assert_eq!(sh.tablets[0], vec!["zone1-100"]);
        assert_eq!(sh.tablets[1], vec!["zone1-101"]);
        assert!(sh.tablets[2].is_empty(), "zone2 is not watched");
        assert_eq!(s.tablets["zone1-100"].db_name, "vt_commerce");
        assert_eq!(s.version, 7);
    }

    #[test]
    fn a_scope_leaves_out_keyspaces_and_tablet_types() {
        let r = rec(&[
            ("global/keyspaces/a/Keyspace", r#"{"sharded": false}"#),
            (
                "global/keyspaces/a/shards/0/Shard",
                r#"{"primary_alias": "zone1-1"}"#,
            ),
            ("global/keyspaces/b/Keyspace", r#"{"sharded": false}"#),
            ("global/keyspaces/b/VSchema", r#"{"tables": {"t": {}}}"#),
            (
                "global/keyspaces/b/shards/0/Shard",
                r#"{"primary_alias": "zone1-3"}"#,
            ),
            (
                "zone1/tablets/zone1-1/Tablet",
                r#"{"alias":"zone1-1","hostname":"h","mysql_port":1,"keyspace":"a","shard":"0","type":"PRIMARY"}"#,
            ),
            (
                "zone1/tablets/zone1-2/Tablet",
                r#"{"alias":"zone1-2","hostname":"h","mysql_port":2,"keyspace":"a","shard":"0","type":"REPLICA"}"#,
            ),
            (
                "zone1/tablets/zone1-3/Tablet",
                r#"{"alias":"zone1-3","hostname":"h","mysql_port":3,"keyspace":"b","shard":"0","type":"PRIMARY"}"#,
            ),
        ]);
        let scope = Scope {
            keyspaces: vec!["a".into()],
            tablet_types: vec![TabletType::Replica],
            ..Scope::default()
        };
        let s = Snapshot::build(&r, &scope, 1).unwrap();
        assert_eq!(s.keyspaces.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.tablets.keys().collect::<Vec<_>>(), ["zone1-2"]);
        let sh = s.shard("a", "0").unwrap();
        assert!(sh.tablets[TabletType::Primary as usize].is_empty());
        assert_eq!(sh.tablets[TabletType::Replica as usize], ["zone1-2"]);
        // Everything by default.
        let all = Snapshot::build(&r, &Scope::default(), 1).unwrap();
        assert_eq!((all.keyspaces.len(), all.tablets.len()), (2, 3));
        // Tablet filters: by shard name, and by a range holding the shard.
        for (filter, kept) in [
            ("0", vec!["zone1-3"]),
            ("-", vec!["zone1-3"]),
            ("1", vec![]),
        ] {
            let scope = Scope {
                shards: vec![("b".into(), filter.into())],
                ..Scope::default()
            };
            let s = Snapshot::build(&r, &scope, 1).unwrap();
            assert_eq!(s.tablets.keys().collect::<Vec<_>>(), kept, "{filter}");
            assert_eq!(s.keyspaces.len(), 2);
        }
    }

    #[test]
    fn records_from_a_newer_ctl_are_read() {
        let r = rec(&[
            (
                "global/keyspaces/c/Keyspace",
                r#"{"sharded": false, "later": 1}"#,
            ),
            (
                "global/keyspaces/c/shards/0/Shard",
                r#"{"primary_alias": "zone1-1", "source_shards": []}"#,
            ),
            (
                "zone1/tablets/zone1-1/Tablet",
                r#"{"alias":"zone1-1","hostname":"h","mysql_port":1,"keyspace":"c","shard":"0","type":"PRIMARY","tags":{}}"#,
            ),
        ]);
        let s = Snapshot::build(&r, &Default::default(), 1).unwrap();
        assert_eq!(s.shard("c", "0").unwrap().tablets[0], ["zone1-1"]);
        assert!(!s.draining);
    }

    #[test]
    fn rejects_gaps_and_bad_vschema() {
        let r = rec(&[
            ("global/keyspaces/c/Keyspace", r#"{"sharded": true}"#),
            ("global/keyspaces/c/shards/-40/Shard", r#"{}"#),
            ("global/keyspaces/c/shards/80-/Shard", r#"{}"#),
        ]);
        let e = Snapshot::build(&r, &Default::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("keyspace c"), "{e}");
        let r = rec(&[(
            "global/keyspaces/c/VSchema",
            r#"{"sharded": false, "bogus": 1}"#,
        )]);
        assert!(Snapshot::build(&r, &Default::default(), 1).is_err());
    }

    #[test]
    fn a_broken_keyspace_keeps_its_last_good_version_and_holds_no_other_back() {
        let tablet = |uid: u32, ks: &str, shard: &str| {
            (
                format!("zone1/tablets/zone1-{uid}/Tablet"),
                format!(
                    r#"{{"alias":"zone1-{uid}","hostname":"h","mysql_port":{uid},"keyspace":"{ks}","shard":"{shard}","type":"REPLICA"}}"#
                ),
            )
        };
        let good: Vec<(String, String)> = vec![
            ("global/keyspaces/a/Keyspace".into(), "{}".into()),
            ("global/keyspaces/a/shards/0/Shard".into(), "{}".into()),
            tablet(1, "a", "0"),
            (
                "global/keyspaces/b/Keyspace".into(),
                r#"{"sharded": true}"#.into(),
            ),
            ("global/keyspaces/b/shards/-80/Shard".into(), "{}".into()),
            ("global/keyspaces/b/shards/80-/Shard".into(), "{}".into()),
            tablet(2, "b", "-80"),
        ];
        let records = |pairs: &[(String, String)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect()
        };
        let (first, problems) =
            Snapshot::build_keeping(&records(&good), &Default::default(), 1, None).unwrap();
        assert!(problems.is_empty());
        // b loses its 80- shard (a shard added or removed one at a time)
        // and gets a new tablet; a gets a new tablet too.
        let mut next: Vec<(String, String)> = good
            .iter()
            .filter(|(k, _)| !k.contains("b/shards/80-"))
            .cloned()
            .collect();
        next.push(tablet(3, "a", "0"));
        next.push(tablet(4, "b", "-80"));
        next.push(("zone1/tablets/zone1-5/Tablet".into(), "{not json".into()));
        let (snap, problems) =
            Snapshot::build_keeping(&records(&next), &Default::default(), 2, Some(&first)).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.to_string().contains("keyspace b")));
        assert_eq!(
            snap.shard("a", "0").unwrap().tablets[1],
            ["zone1-1", "zone1-3"]
        );
        assert_eq!(snap.keyspaces["b"].shards.len(), 2, "b as it was");
        assert_eq!(snap.shard("b", "-80").unwrap().tablets[1], ["zone1-2"]);
        assert!(snap.tablets.contains_key("zone1-2") && !snap.tablets.contains_key("zone1-4"));
        // Without an earlier snapshot the broken keyspace is left out;
        // the strict build fails.
        let (start, _) =
            Snapshot::build_keeping(&records(&next), &Default::default(), 1, None).unwrap();
        assert!(start.keyspaces.contains_key("a") && !start.keyspaces.contains_key("b"));
        assert!(Snapshot::build(&records(&next), &Default::default(), 1).is_err());
    }
}
