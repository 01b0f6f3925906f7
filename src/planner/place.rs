//! Which keyspace plans a statement, before it is planned: vtgate's table
//! resolution. A qualified table (`commerce.product`) is its keyspace's; an
//! unqualified one is the session keyspace's, or, with none selected, the
//! keyspace whose VSchema alone lists it (global routing). A statement whose
//! tables are all one keyspace's runs there, qualifiers removed, since a
//! tablet knows its database by another name. One that mixes keyspaces is
//! planned in a sharded one of them, the others' tables qualified: the
//! planner gives each of those a route of its own (a nested loop).

use super::PlanError;
use crate::sql::{quote_ident, splice, table_refs};
use crate::topo::Snapshot;

/// Where a statement is planned, when not as written under the session's
/// keyspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The keyspace that plans it.
    pub keyspace: String,
    /// The statement with its tables qualified for that keyspace (its own
    /// unqualified, the others' qualified), when that changes it.
    pub sql: Option<String>,
    /// Whether it reads tables of other keyspaces too (no one tablet can
    /// describe its columns).
    pub across: bool,
}

impl Placement {
    /// Whether the statement runs elsewhere than as written on keyspace
    /// `session`.
    pub fn moves(&self, session: Option<&str>) -> bool {
        self.sql.is_some() || session != Some(self.keyspace.as_str())
    }
}

/// Decides where `sql` is planned for a session on keyspace `session`
/// (`None`: no keyspace selected). With `global` false, unqualified names
/// are left where the session is even with none selected. `Ok(None)`: it
/// names no keyspace's table.
pub fn place(
    sql: &str,
    session: Option<&str>,
    global: bool,
    snap: &Snapshot,
) -> Result<Option<Placement>, PlanError> {
    // Under a keyspace only a qualifier can point elsewhere.
    if session.is_some() && !sql.contains('.') {
        return Ok(None);
    }
    let refs = table_refs(sql);
    let mut owners: Vec<Option<&str>> = Vec::with_capacity(refs.len());
    let mut seen: Vec<&str> = Vec::new();
    for r in &refs {
        let owner = match (r.qualifier, session) {
            (Some(q), _) => snap.keyspaces.get_key_value(q).map(|(k, _)| k.as_str()),
            (None, _) if r.column => None,
            (None, Some(s)) => Some(s),
            (None, None) if global => global_owner(r.name, snap)?,
            (None, None) => None,
        };
        if let Some(k) = owner.filter(|k| !seen.contains(k)) {
            seen.push(k);
        }
        owners.push(owner);
    }
    let home = match seen.as_slice() {
        [] => return Ok(None),
        [only] => *only,
        _ => {
            let sharded = |k: &str| snap.keyspaces.get(k).is_some_and(|ks| ks.sharded);
            match session.filter(|s| seen.contains(s) && sharded(s)) {
                Some(s) => s,
                None => *seen.iter().find(|k| sharded(k)).ok_or_else(|| {
                    PlanError::Unsupported(format!(
                        "a statement across unsharded keyspaces ({})",
                        seen.join(", ")
                    ))
                })?,
            }
        }
    };
    let qualifiers: Vec<String> = owners
        .iter()
        .map(|o| {
            o.map(|k| format!("{}.", quote_ident(k)))
                .unwrap_or_default()
        })
        .collect();
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    for ((r, owner), q) in refs.iter().zip(&owners).zip(&qualifiers) {
        match (r.qualifier, *owner) {
            // Its own tables go down unqualified.
            (Some(_), Some(k)) if k == home => edits.push((r.at, r.name_at, "")),
            // Another keyspace's unqualified table gets its keyspace.
            (None, Some(k)) if k != home && !r.column => edits.push((r.at, r.at, q)),
            _ => {}
        }
    }
    Ok(Some(Placement {
        keyspace: home.to_string(),
        sql: (!edits.is_empty()).then(|| splice(sql, &edits)),
        across: seen.len() > 1,
    }))
}

/// The keyspace of table `name` when no keyspace is selected: the one
/// whose VSchema lists it, among those that allow routing without a
/// qualifier. A name several list is ambiguous, unless all but one of them
/// are reference tables whose source is the other. `None`: no VSchema
/// lists it (it runs where statements without tables do).
fn global_owner<'s>(name: &str, snap: &'s Snapshot) -> Result<Option<&'s str>, PlanError> {
    let listing: Vec<(&'s str, &'s crate::vschema::Table)> = snap
        .keyspaces
        .values()
        .filter(|k| !k.vschema.require_explicit_routing)
        .filter_map(|k| Some((k.name.as_str(), k.vschema.tables.get(name)?)))
        .collect();
    if listing.len() <= 1 {
        return Ok(listing.first().map(|(k, _)| *k));
    }
    // Vitess: a reference table naming its source leaves the name to it.
    let sourced = |ks: &str, t: &crate::vschema::Table| {
        t.kind == "reference"
            && t.source.as_deref().is_some_and(|src| {
                let (sk, st) = src.split_once('.').unwrap_or(("", src));
                st == name && sk != ks
            })
    };
    let mut sources = listing.iter().filter(|(k, t)| !sourced(k, t));
    match (sources.next(), sources.next()) {
        (Some((k, _)), None) => Ok(Some(*k)),
        _ => Err(PlanError::AmbiguousTable(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let vs = |sharded: bool, tables: &str| {
            format!(
                r#"{{"sharded": {sharded}, "vindexes": {{"hash": {{"type": "hash"}}}}, "tables": {{{tables}}}}}"#
            )
        };
        let sharded_t = r#"{"column_vindexes": [{"column": "id", "name": "hash"}]}"#;
        let entries = [
            (
                "global/keyspaces/commerce/Keyspace".to_string(),
                "{}".to_string(),
            ),
            (
                "global/keyspaces/commerce/VSchema".to_string(),
                vs(false, r#""product": {}, "both": {}, "ref": {}"#),
            ),
            (
                "global/keyspaces/commerce/shards/0/Shard".to_string(),
                "{}".to_string(),
            ),
            (
                "global/keyspaces/lookups/Keyspace".to_string(),
                "{}".to_string(),
            ),
            (
                "global/keyspaces/lookups/VSchema".to_string(),
                vs(false, r#""lk": {}"#),
            ),
            (
                "global/keyspaces/lookups/shards/0/Shard".to_string(),
                "{}".to_string(),
            ),
            (
                "global/keyspaces/customer/Keyspace".to_string(),
                r#"{"sharded": true}"#.to_string(),
            ),
            (
                "global/keyspaces/customer/VSchema".to_string(),
                vs(
                    true,
                    &format!(
                        r#""customer": {sharded_t}, "corder": {sharded_t}, "both": {sharded_t}, "ref": {{"type": "reference", "source": "commerce.ref"}}"#
                    ),
                ),
            ),
            (
                "global/keyspaces/customer/shards/-80/Shard".to_string(),
                "{}".to_string(),
            ),
            (
                "global/keyspaces/customer/shards/80-/Shard".to_string(),
                "{}".to_string(),
            ),
        ];
        let kv: std::collections::BTreeMap<String, Vec<u8>> = entries
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        Snapshot::build(&kv, &[], 1).unwrap()
    }

    /// Where `sql` moves to: keyspace, text, across keyspaces.
    fn placed(sql: &str, session: Option<&str>) -> Option<(String, String, bool)> {
        place(sql, session, true, &snap())
            .unwrap()
            .filter(|p| p.moves(session))
            .map(|p| {
                (
                    p.keyspace,
                    p.sql.unwrap_or_else(|| sql.to_string()),
                    p.across,
                )
            })
    }

    #[test]
    fn one_keyspace_runs_there_unqualified() {
        assert_eq!(
            placed("select * from customer where id = 1", None),
            Some((
                "customer".into(),
                "select * from customer where id = 1".into(),
                false
            ))
        );
        assert_eq!(
            placed(
                "select * from customer.corder c, customer.customer",
                Some("commerce")
            ),
            Some((
                "customer".into(),
                "select * from corder c, customer".into(),
                false
            ))
        );
        // As written where the session is.
        assert_eq!(placed("select * from corder", Some("customer")), None);
        assert_eq!(
            placed("select 1.5, t.a from corder t", Some("customer")),
            None
        );
        // No VSchema lists it: where statements without tables go.
        assert_eq!(placed("select * from nowhere", None), None);
        // A reference table's name belongs to its source.
        assert_eq!(
            placed("select * from ref", None).map(|p| p.0),
            Some("commerce".into())
        );
    }

    #[test]
    fn mixed_keyspaces_plan_in_a_sharded_one() {
        assert_eq!(
            placed(
                "select * from product p join corder o on o.sku = p.sku",
                None
            ),
            Some((
                "customer".into(),
                "select * from `commerce`.product p join corder o on o.sku = p.sku".into(),
                true
            ))
        );
        assert_eq!(
            placed(
                "select * from product join customer.customer c on c.id = product.id",
                Some("commerce")
            ),
            Some((
                "customer".into(),
                "select * from `commerce`.product join customer c on c.id = product.id".into(),
                true
            ))
        );
        // Planned where it is: the other keyspace's table is already named.
        let sql = "select * from corder join commerce.product p";
        assert_eq!(placed(sql, Some("customer")), None);
        assert!(
            place(sql, Some("customer"), true, &snap())
                .unwrap()
                .unwrap()
                .across
        );
        let err = place("select * from product, lk", None, true, &snap()).unwrap_err();
        assert!(err.to_string().contains("unsharded keyspaces"), "{err}");
    }

    #[test]
    fn a_name_two_keyspaces_list_is_ambiguous() {
        let err = place("select * from both", None, true, &snap()).unwrap_err();
        assert_eq!(err.to_string(), "ambiguous table reference: both");
        // Qualified, or under a keyspace, it is not.
        assert_eq!(placed("select * from both", Some("commerce")), None);
        assert_eq!(
            placed("select * from commerce.both", None).map(|p| p.1),
            Some("select * from both".into())
        );
    }
}
