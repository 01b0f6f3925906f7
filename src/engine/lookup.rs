//! Lookup vindexes at run time (see [`crate::vschema::lookup`]): the shards
//! a lookup table names for some values, and the lookup rows an owner
//! table's writes add and remove. The lookup table is read and written by
//! statements planned on its own keyspace, as a client's would be, inside
//! the owner statement's transaction.

use mysql_common::value::Value;

use super::{keyspace_of, run_statement, shard_for, Gather, VCursor};
use crate::error::Error;
use crate::planner::PlanError;
use crate::sql::{quote_ident, TabletType};
use crate::topo::{Keyspace, Snapshot};
use crate::vschema::lookup::{Lookup, To};
use crate::vschema::vindex::{Func, KeyspaceId};

/// One owner row's entry in a lookup table.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The owner row's values of the vindex's columns (`from`).
    pub from: Vec<Value>,
    /// The owner row's keyspace id.
    pub ksid: KeyspaceId,
    /// The owner row's primary vindex value (what `lookup_hash` keeps).
    pub value: Value,
}

fn refused(msg: String) -> Error {
    Error::Plan(PlanError::Unsupported(msg))
}

/// The lookup vindex `vindex` of keyspace `ks`.
pub(super) fn definition(ks: &Keyspace, vindex: &str) -> Result<Lookup, Error> {
    let def = ks
        .vschema
        .vindexes
        .get(vindex)
        .ok_or_else(|| refused(format!("vindex {vindex} is not in keyspace {}", ks.name)))?;
    Lookup::from_vindex(vindex, def)
        .ok_or_else(|| refused(format!("vindex {vindex} is not a lookup vindex")))?
        .map_err(|e| refused(e.to_string()))
}

/// Where a lookup table lives: the keyspace its `table` names; else the
/// owner's keyspace when its VSchema lists the table; else the one
/// keyspace whose VSchema does (vtgate resolves an unqualified name so).
fn table_keyspace<'a>(
    snap: &'a Snapshot,
    owner: &'a Keyspace,
    l: &Lookup,
) -> Result<&'a Keyspace, Error> {
    if let Some(ks) = &l.keyspace {
        return keyspace_of(snap, ks);
    }
    if owner.vschema.tables.contains_key(&l.table) {
        return Ok(owner);
    }
    let mut listing = snap
        .keyspaces
        .values()
        .filter(|k| k.vschema.tables.contains_key(&l.table));
    match (listing.next(), listing.next()) {
        (Some(ks), None) => Ok(ks),
        (None, _) => Err(refused(format!(
            "lookup vindex {}: table {} is in no keyspace's VSchema",
            l.name, l.table
        ))),
        (Some(_), Some(_)) => Err(refused(format!(
            "lookup vindex {}: table {} is in several keyspaces; name one in its 'table' parameter",
            l.name, l.table
        ))),
    }
}

/// Runs `sql` on `keyspace` as a client's statement there would run, and
/// returns its rows.
pub(super) async fn run<V: VCursor + Send>(
    keyspace: &str,
    sql: &str,
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
) -> Result<Gather, Error> {
    let mut rows = Gather::new(vc.max_memory_rows());
    Box::pin(run_statement(keyspace, sql, tt, snap, vc, &mut rows)).await?;
    Ok(rows)
}

/// `a = 1 AND b IS NULL`: the columns equal to the values.
fn matching(cols: &[String], values: &[Value], nbe: bool) -> String {
    cols.iter()
        .zip(values)
        .map(|(c, v)| match v {
            Value::NULL => format!("{} IS NULL", quote_ident(c)),
            v => format!("{} = {}", quote_ident(c), crate::sql::literal(v, nbe)),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// What the entry's lookup row holds in `to`, as SQL.
fn to_sql(l: &Lookup, e: &Entry, nbe: bool) -> String {
    match l.to_kind {
        To::KeyspaceId => crate::sql::hex_literal(&e.ksid),
        To::HashedValue => crate::sql::literal(&e.value, nbe),
    }
}

/// The keyspace id a lookup row's `to` cell names.
fn ksid_of(l: &Lookup, cell: &Value) -> Result<Option<KeyspaceId>, Error> {
    match (l.to_kind, cell) {
        (_, Value::NULL) => Ok(None),
        (To::KeyspaceId, Value::Bytes(b)) => Ok(Some(KeyspaceId::Bytes(b.clone()))),
        (To::KeyspaceId, other) => Err(refused(format!(
            "lookup vindex {}: {other:?} in column {} is not a keyspace id",
            l.name, l.to
        ))),
        (To::HashedValue, v) => Func::Hash.map(v).map_err(|e| refused(e.to_string())),
    }
}

/// The shards of `ks` that the lookup vindex `vindex` names for `values`
/// (none for values it has no rows for).
pub(super) async fn shards<V: VCursor + Send>(
    ks: &Keyspace,
    vindex: &str,
    values: &[Value],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
) -> Result<Vec<String>, Error> {
    let l = definition(ks, vindex)?;
    let values: Vec<String> = values
        .iter()
        .filter(|v| **v != Value::NULL)
        .map(|v| crate::sql::literal(v, vc.no_backslash_escapes()))
        .collect();
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let lks = table_keyspace(snap, ks, &l)?;
    let sql = format!(
        "SELECT {} FROM {} WHERE {} IN ({})",
        quote_ident(&l.to),
        quote_ident(&l.table),
        quote_ident(&l.from[0]),
        values.join(", ")
    );
    let rows = run(&lks.name, &sql, tt, snap, vc).await?;
    let mut shards: Vec<String> = Vec::new();
    for row in &rows.rows {
        let Some(ksid) = ksid_of(&l, row.first().unwrap_or(&Value::NULL))? else {
            continue;
        };
        if let Some(s) = shard_for(ks, &ksid) {
            if !shards.iter().any(|have| have == s) {
                shards.push(s.to_string());
            }
        }
    }
    Ok(shards)
}

fn is_duplicate(e: &Error) -> bool {
    matches!(e, Error::Backend { source: mysql_async::Error::Server(se), .. } if se.code == 1062)
}

/// Adds the lookup rows of new owner rows. A unique consistent lookup
/// whose value another row's lookup row holds takes that row over when
/// the owner row it names is gone (`owner`, `owner_cols`: the owner table
/// and its columns of the vindex), and fails as a duplicate otherwise.
pub(super) async fn create<V: VCursor + Send>(
    ks: &Keyspace,
    l: &Lookup,
    owner: &str,
    owner_cols: &[String],
    entries: &[Entry],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<(), Error> {
    let entries: Vec<&Entry> = entries
        .iter()
        .filter(|e| !(l.ignore_nulls && e.from.contains(&Value::NULL)))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let lks = table_keyspace(snap, ks, l)?;
    let nbe = vc.no_backslash_escapes();
    let insert = |es: &[&Entry]| insert_sql(l, es, false, nbe);
    let tt = TabletType::Primary;
    match run(&lks.name, &insert(&entries), tt, snap, vc).await {
        Ok(_) => return Ok(()),
        Err(e) if !(l.consistent && is_duplicate(&e)) => return Err(e),
        Err(_) => {}
    }
    // One at a time, to find the rows already there.
    for e in entries {
        let dup = match run(&lks.name, &insert(&[e]), tt, snap, vc).await {
            Ok(_) => continue,
            Err(dup) if is_duplicate(&dup) => dup,
            Err(other) => return Err(other),
        };
        // A non-unique lookup's row for this very pair is this row's.
        if !l.unique {
            continue;
        }
        let held = matching(&l.from, &e.from, nbe);
        let sql = format!(
            "SELECT {} FROM {} WHERE {held} FOR UPDATE",
            quote_ident(&l.to),
            quote_ident(&l.table)
        );
        let rows = run(&lks.name, &sql, tt, snap, vc).await?;
        let theirs = match rows.rows.first() {
            Some(r) => ksid_of(l, r.first().unwrap_or(&Value::NULL))?,
            None => return Err(dup),
        };
        if theirs.as_ref() == Some(&e.ksid) {
            continue;
        }
        // Does the row the lookup row names still exist?
        if let Some(shard) = theirs.as_ref().and_then(|k| shard_for(ks, k)) {
            let sql = format!(
                "SELECT 1 FROM {} WHERE {} LIMIT 1 FOR UPDATE",
                quote_ident(owner),
                matching(owner_cols, &e.from, nbe)
            );
            let mut found = Gather::new(1);
            vc.execute_shard(&ks.name, shard, tt, &sql, false, &mut found)
                .await?;
            if !found.rows.is_empty() {
                return Err(dup);
            }
        }
        let sql = format!(
            "UPDATE {} SET {} = {} WHERE {held}",
            quote_ident(&l.table),
            quote_ident(&l.to),
            to_sql(l, e, nbe)
        );
        run(&lks.name, &sql, tt, snap, vc).await?;
    }
    Ok(())
}

/// `INSERT [IGNORE] INTO` the lookup table the entries' rows.
fn insert_sql(l: &Lookup, es: &[&Entry], ignore: bool, nbe: bool) -> String {
    let mut cols: Vec<String> = l.from.iter().map(|c| quote_ident(c)).collect();
    cols.push(quote_ident(&l.to));
    let rows: Vec<String> = es
        .iter()
        .map(|e| {
            let mut cells: Vec<String> =
                e.from.iter().map(|v| crate::sql::literal(v, nbe)).collect();
            cells.push(to_sql(l, e, nbe));
            format!("({})", cells.join(", "))
        })
        .collect();
    format!(
        "INSERT{} INTO {} ({}) VALUES {}",
        if ignore { " IGNORE" } else { "" },
        quote_ident(&l.table),
        cols.join(", "),
        rows.join(", ")
    )
}

/// Adds the lookup rows of new owner rows of an INSERT IGNORE or an
/// upsert, as vtgate does: rows a unique lookup already holds for another
/// keyspace id are left alone, and their owner rows are not inserted.
/// `kept` says, per entry, whether its owner row still goes in: entries
/// an earlier lookup dropped are skipped, and those this one drops are
/// marked.
pub(super) async fn create_ignoring<V: VCursor + Send>(
    ks: &Keyspace,
    l: &Lookup,
    entries: &[Entry],
    kept: &mut [bool],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<(), Error> {
    let written: Vec<(usize, &Entry)> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            kept.get(*i).copied().unwrap_or(false)
                && !(l.ignore_nulls && e.from.contains(&Value::NULL))
        })
        .collect();
    if written.is_empty() {
        return Ok(());
    }
    let lks = table_keyspace(snap, ks, l)?;
    let es: Vec<&Entry> = written.iter().map(|(_, e)| *e).collect();
    let tt = TabletType::Primary;
    let nbe = vc.no_backslash_escapes();
    run(&lks.name, &insert_sql(l, &es, true, nbe), tt, snap, vc).await?;
    if !l.unique {
        return Ok(());
    }
    for (i, e) in written {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            quote_ident(&l.to),
            quote_ident(&l.table),
            matching(&l.from, &e.from, nbe)
        );
        let rows = run(&lks.name, &sql, tt, snap, vc).await?;
        let theirs = match rows.rows.first() {
            Some(r) => ksid_of(l, r.first().unwrap_or(&Value::NULL))?,
            None => None,
        };
        if let Some(k) = kept.get_mut(i) {
            *k = theirs.as_ref() == Some(&e.ksid);
        }
    }
    Ok(())
}

/// Removes the lookup rows of owner rows that are deleted or whose
/// vindex columns change.
pub(super) async fn delete<V: VCursor + Send>(
    ks: &Keyspace,
    l: &Lookup,
    entries: &[Entry],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<(), Error> {
    let lks = table_keyspace(snap, ks, l)?;
    let nbe = vc.no_backslash_escapes();
    for e in entries {
        if l.ignore_nulls && e.from.contains(&Value::NULL) {
            continue;
        }
        let sql = format!(
            "DELETE FROM {} WHERE {} AND {} = {}",
            quote_ident(&l.table),
            matching(&l.from, &e.from, nbe),
            quote_ident(&l.to),
            to_sql(l, e, nbe)
        );
        run(&lks.name, &sql, TabletType::Primary, snap, vc).await?;
    }
    Ok(())
}
