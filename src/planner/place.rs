//! Which keyspace plans a statement, before it is planned: vtgate's table
//! resolution. A qualified table (`commerce.product`) is its keyspace's; an
//! unqualified one is the session keyspace's, or, with none selected, the
//! keyspace whose VSchema alone lists it (global routing). A statement whose
//! tables are all one keyspace's runs there, qualifiers removed, since a
//! tablet knows its database by another name. One that mixes keyspaces is
//! planned in a sharded one of them, the others' tables qualified: the
//! planner gives each of those a route of its own (a nested loop).

use super::PlanError;
use crate::sql::{cte_names, quote_ident, splice, table_refs, TabletType, Target};
use crate::topo::RoutingRule;
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
/// (`None`: no keyspace selected). `Ok(None)`: it names no keyspace's
/// table.
pub fn place(sql: &str, target: &Target, snap: &Snapshot) -> Result<Option<Placement>, PlanError> {
    let session = target.keyspace.as_deref();
    // A shard target bypasses the planner: only a qualifier moves its
    // statement.
    let planned = target.shard.is_none();
    let verb = first_word(sql);
    let writes = planned
        && ["insert", "replace", "update", "delete"]
            .iter()
            .any(|w| verb.eq_ignore_ascii_case(w));
    let rules = if planned {
        &snap.routing_rules[..]
    } else {
        &[]
    };
    // Under a keyspace only a qualifier, a routing rule, or a write to a
    // reference table's copy can point elsewhere.
    let copies = |ks: &str| {
        snap.keyspaces
            .get(ks)
            .is_some_and(|k| k.vschema.tables.values().any(|t| t.source.is_some()))
    };
    if let Some(s) = session {
        if !sql.contains('.') && rules.is_empty() && !(writes && copies(s)) {
            return Ok(None);
        }
    }
    let refs = table_refs(sql);
    let ctes = cte_names(sql);
    let verb = verb.to_ascii_lowercase();
    // With no keyspace selected, unqualified names are looked up in the
    // VSchemas, except a table being created (in none yet) and SHOW's,
    // whose FROM may name a database.
    let global = verb != "create" && verb != "show";
    // Each table's keyspace and, when a routing rule or a reference
    // table's source renames it, its name there.
    let mut owners: Vec<(Option<&str>, Option<&str>)> = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let mut owner = if r.column || (r.qualifier.is_none() && ctes.contains(&r.name)) {
            (None, None)
        } else {
            owner_of(
                r.qualifier,
                r.name,
                session,
                target.tablet_type,
                rules,
                global,
                snap,
            )?
        };
        // A write to a reference table goes to its source, as vtgate's.
        if writes && i == 0 {
            if let Some(source) = owner
                .0
                .and_then(|k| source_of(k, owner.1.unwrap_or(r.name), snap))
            {
                owner = (Some(source.0), (source.1 != r.name).then_some(source.1));
            }
        }
        owners.push(owner);
    }
    let Some(home) = home_of(&refs, &owners, session, snap)? else {
        return Ok(None);
    };
    // Another keyspace's table the home keyspace keeps a reference copy
    // of is read there.
    for (r, owner) in refs.iter().zip(owners.iter_mut()) {
        let Some(k) = owner
            .0
            .filter(|k| *k != home && !r.column && !writes && planned)
        else {
            continue;
        };
        if let Some(copy) = copy_of(home, k, owner.1.unwrap_or(r.name), snap) {
            *owner = (Some(home), (copy != r.name).then_some(copy));
        }
    }
    // A three-part column name follows its table.
    for i in 0..refs.len() {
        if !refs[i].column {
            continue;
        }
        let table = refs
            .iter()
            .position(|t| !t.column && t.qualifier == refs[i].qualifier && t.name == refs[i].name);
        owners[i] = match table {
            Some(j) => owners[j],
            None => (
                refs[i].qualifier.and_then(|q| keyspace_named(q, snap)),
                None,
            ),
        };
    }
    let across = keyspaces_named(&refs, &owners).len() > 1;
    // A renamed table keeps the name the statement knows it by as its
    // alias, where MariaDB allows one (not in INSERT, REPLACE or a
    // single-table DELETE).
    let alias_allowed = !["insert", "replace", "delete"].contains(&verb.as_str());
    let qualified = |k: &str| format!("{}.", quote_ident(k));
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (r, (owner, renamed)) in refs.iter().zip(&owners) {
        let Some(k) = *owner else { continue };
        match r.qualifier {
            // Its own tables go down unqualified, and so do the columns of
            // a renamed table, which its alias names.
            Some(_) if k == home || (r.column && renamed.is_some()) => {
                edits.push((r.at, r.name_at, String::new()))
            }
            // Another keyspace's tables are qualified by it.
            Some(written) if written != k => edits.push((r.at, r.name_at, qualified(k))),
            None if k != home && !r.column => edits.push((r.at, r.at, qualified(k))),
            _ => {}
        }
        if let Some(t) = renamed.filter(|_| !r.column) {
            let name = match alias_allowed && !r.aliased {
                true => format!("{} AS {}", quote_ident(t), quote_ident(r.name)),
                false => quote_ident(t),
            };
            edits.push((r.name_at, r.end, name));
        }
    }
    Ok(Some(Placement {
        keyspace: home.to_string(),
        sql: (!edits.is_empty()).then(|| splice(sql, &edits)),
        across,
    }))
}

/// The statement's first word (its verb).
fn first_word(sql: &str) -> &str {
    sql.trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

/// The keyspace named `name`, as the snapshot spells it.
fn keyspace_named<'s>(name: &str, snap: &'s Snapshot) -> Option<&'s str> {
    snap.keyspaces.get_key_value(name).map(|(k, _)| k.as_str())
}

/// The keyspace of table `name` (written with `qualifier`), and its name
/// there when a routing rule renames it.
fn owner_of<'a>(
    qualifier: Option<&'a str>,
    name: &'a str,
    session: Option<&'a str>,
    tablet_type: TabletType,
    rules: &'a [RoutingRule],
    global: bool,
    snap: &'a Snapshot,
) -> Result<(Option<&'a str>, Option<&'a str>), PlanError> {
    if let Some((k, t)) = routed(qualifier.or(session), name, tablet_type, rules, snap)? {
        return Ok((Some(k), (t != name).then_some(t)));
    }
    Ok(match (qualifier, session) {
        (Some(q), _) => (keyspace_named(q, snap), None),
        (None, Some(s)) => (Some(s), None),
        (None, None) if global => (global_owner(name, snap)?, None),
        (None, None) => (None, None),
    })
}

/// The keyspace that plans a statement whose tables are in `owners`: the
/// only one, else the session's when it is sharded and named, else the
/// first sharded one named, else (unsharded keyspaces only) the session's
/// when named, else the first named (the others' tables become routes of
/// their own). `None`: no keyspace's table is named.
fn home_of<'a>(
    refs: &[crate::sql::TableRef<'_>],
    owners: &[(Option<&'a str>, Option<&'a str>)],
    session: Option<&'a str>,
    snap: &Snapshot,
) -> Result<Option<&'a str>, PlanError> {
    let seen = keyspaces_named(refs, owners);
    let sharded = |k: &str| snap.keyspaces.get(k).is_some_and(|ks| ks.sharded);
    Ok(match seen.as_slice() {
        [] => None,
        [only] => Some(*only),
        _ => match session.filter(|s| seen.contains(s) && sharded(s)) {
            Some(s) => Some(s),
            // Unsharded keyspaces only: the session's, else the first
            // named, plans it (each other keyspace's tables a route).
            None => Some(
                seen.iter()
                    .find(|k| sharded(k))
                    .or_else(|| seen.iter().find(|k| Some(**k) == session))
                    .unwrap_or(&seen[0]),
            ),
        },
    })
}

/// The keyspaces whose tables (not three-part column names) `owners`
/// places `refs` in, each once, in the order the statement names them.
fn keyspaces_named<'a>(
    refs: &[crate::sql::TableRef<'_>],
    owners: &[(Option<&'a str>, Option<&'a str>)],
) -> Vec<&'a str> {
    let mut seen: Vec<&'a str> = Vec::new();
    for (r, owner) in refs.iter().zip(owners) {
        if let Some(k) = owner.0.filter(|k| !r.column && !seen.contains(k)) {
            seen.push(k);
        }
    }
    seen
}

/// The source (keyspace and table) of keyspace `ks`'s reference table
/// `name`, when it names one in another keyspace.
fn source_of<'s>(ks: &str, name: &str, snap: &'s Snapshot) -> Option<(&'s str, &'s str)> {
    let t = snap.keyspaces.get(ks)?.vschema.tables.get(name)?;
    source_table(ks, t, snap)
}

/// A reference table's source: `ks.table`, or a table name another
/// keyspace's VSchema alone lists (as vtgate resolves an unqualified one).
fn source_table<'s>(
    ks: &str,
    t: &'s crate::vschema::Table,
    snap: &'s Snapshot,
) -> Option<(&'s str, &'s str)> {
    let (sk, st) = match source_parts(t)? {
        (Some(sk), st) => (keyspace_named(sk, snap)?, st),
        (None, st) => {
            let mut listing = snap
                .keyspaces
                .values()
                .filter(|k| k.name != ks && k.vschema.tables.contains_key(st));
            let only = listing.next()?;
            listing.next().is_none().then_some(())?;
            (only.name.as_str(), st)
        }
    };
    (sk != ks).then_some((sk, st))
}

/// A reference table's `source` as written: its qualifier, if any, and
/// its table.
fn source_parts(t: &crate::vschema::Table) -> Option<(Option<&str>, &str)> {
    let src = t.source.as_deref().filter(|_| t.kind == "reference")?;
    Some(match src.split_once('.') {
        Some((sk, st)) => (Some(sk), st),
        None => (None, src),
    })
}

/// Keyspace `home`'s reference table whose source is `ks`.`name`.
fn copy_of<'s>(home: &str, ks: &str, name: &str, snap: &'s Snapshot) -> Option<&'s str> {
    let tables = &snap.keyspaces.get(home)?.vschema.tables;
    tables.iter().find_map(|(tname, t)| {
        (source_table(home, t, snap)? == (ks, name)).then_some(tname.as_str())
    })
}

/// Where a routing rule sends table `name`, named under keyspace
/// `keyspace` (its qualifier, else the session's): the rule for
/// `ks.name@type`, else `ks.name` (`name@type`, `name` without a keyspace),
/// as vtgate looks them up. Its keyspace and table.
fn routed<'s>(
    keyspace: Option<&str>,
    name: &str,
    tablet_type: TabletType,
    rules: &'s [RoutingRule],
    snap: &'s Snapshot,
) -> Result<Option<(&'s str, &'s str)>, PlanError> {
    if rules.is_empty() {
        return Ok(None);
    }
    let qualified = match keyspace {
        Some(k) => format!("{k}.{name}"),
        None => name.to_string(),
    };
    let typed = format!("{qualified}@{}", tablet_type.as_str());
    let Some(rule) = [typed, qualified]
        .iter()
        .find_map(|from| rules.iter().find(|r| &r.from_table == from))
    else {
        return Ok(None);
    };
    let to = match rule.to_tables.as_slice() {
        [] => {
            return Err(PlanError::Routing(format!(
                "table {name} has been disabled"
            )))
        }
        [to] => to,
        _ => {
            return Err(PlanError::Routing(format!(
                "table {} has more than one target: {:?}",
                rule.from_table, rule.to_tables
            )))
        }
    };
    let Some((ks, table)) = to.split_once('.') else {
        return Err(PlanError::Routing(format!("table {to} must be qualified")));
    };
    let (ks, table) = (ks.trim_matches('`'), table.trim_matches('`'));
    let Some((ks, _)) = snap.keyspaces.get_key_value(ks) else {
        return Err(PlanError::UnknownKeyspace(ks.to_string()));
    };
    Ok(Some((ks.as_str(), table)))
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
        source_parts(t).is_some_and(|(sk, st)| st == name && sk != Some(ks))
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
            (
                "global/RoutingRules".to_string(),
                r#"{"rules": [
                    {"from_table": "both", "to_tables": ["customer.both"]},
                    {"from_table": "commerce.both", "to_tables": ["customer.both"]},
                    {"from_table": "route1", "to_tables": ["customer.customer"]},
                    {"from_table": "disabled", "to_tables": []},
                    {"from_table": "commerce.product@replica", "to_tables": ["lookups.lk"]}
                ]}"#
                .to_string(),
            ),
        ];
        let kv: std::collections::BTreeMap<String, Vec<u8>> = entries
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        Snapshot::build(&kv, &Default::default(), 1).unwrap()
    }

    /// Where `sql` moves to: keyspace, text, across keyspaces.
    fn target(session: Option<&str>, tablet_type: TabletType) -> Target {
        Target {
            keyspace: session.map(str::to_string),
            shard: None,
            tablet_type,
        }
    }

    fn placed(sql: &str, session: Option<&str>) -> Option<(String, String, bool)> {
        place(sql, &target(session, TabletType::Primary), &snap())
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
            place(sql, &target(Some("customer"), TabletType::Primary), &snap())
                .unwrap()
                .unwrap()
                .across
        );
        // Unsharded keyspaces only: the first named plans it.
        let p = place_as(
            "select * from product, lk",
            None,
            TabletType::Primary,
            &snap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.keyspace, "commerce");
        assert!(p.across);
    }

    fn place_as(
        sql: &str,
        session: Option<&str>,
        tt: TabletType,
        s: &Snapshot,
    ) -> Result<Option<Placement>, PlanError> {
        place(sql, &target(session, tt), s)
    }

    #[test]
    fn a_name_two_keyspaces_list_is_ambiguous() {
        let mut s = snap();
        s.routing_rules.clear();
        let err = place_as("select * from both", None, TabletType::Primary, &s).unwrap_err();
        assert_eq!(err.to_string(), "ambiguous table reference: both");
        // Qualified, or under a keyspace, it is not.
        let p = place_as(
            "select * from both",
            Some("commerce"),
            TabletType::Primary,
            &s,
        );
        assert_eq!(p.unwrap(), None);
        let p = place_as("select * from commerce.both", None, TabletType::Primary, &s);
        assert_eq!(
            p.unwrap().unwrap().sql.as_deref(),
            Some("select * from both")
        );
    }

    #[test]
    fn reference_tables_read_their_copy_and_write_their_source() {
        // Joined with the sharded keyspace's tables, the copy there.
        assert_eq!(
            placed(
                "select * from corder join commerce.ref r on r.id = corder.id",
                None
            ),
            Some((
                "customer".into(),
                "select * from corder join ref r on r.id = corder.id".into(),
                false
            ))
        );
        // Written, the source.
        assert_eq!(
            placed("insert into customer.ref (id) values (1)", None),
            Some((
                "commerce".into(),
                "insert into ref (id) values (1)".into(),
                false
            ))
        );
        assert_eq!(
            placed("update ref set x = 1", Some("customer")),
            Some(("commerce".into(), "update ref set x = 1".into(), false))
        );
        // A shard target bypasses it.
        let shard = Target::parse("customer:-80").unwrap();
        assert_eq!(
            place("update ref set x = 1", &shard, &snap()).unwrap(),
            None
        );
    }

    #[test]
    fn with_names_and_keywords_are_no_tables() {
        // `both` would be ambiguous without the rules; as a WITH name it is
        // no table at all.
        let mut s = snap();
        s.routing_rules.clear();
        let sql = "with both as (select id from corder) select * from both";
        let p = place_as(sql, None, TabletType::Primary, &s)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.keyspace.as_str(), p.sql, p.across),
            ("customer", None, false)
        );
        let sql = "with recursive a (n) as (select 1), both as (select 2) select * from a, both";
        assert_eq!(place_as(sql, None, TabletType::Primary, &s).unwrap(), None);
        // A three-part column name follows its table, not its qualifier.
        assert_eq!(
            placed("select commerce.both.id from commerce.both", None).map(|p| p.1),
            Some("select both.id from both".into())
        );
        // Keywords in a table's place.
        assert_eq!(placed("select 1 from dual", None), None);
        assert_eq!(
            placed("truncate table customer.corder", None).map(|p| p.1),
            Some("truncate table corder".into())
        );
        assert_eq!(
            placed("describe corder", None).map(|p| p.0),
            Some("customer".into())
        );
        assert_eq!(
            placed("desc corder", None).map(|p| p.0),
            Some("customer".into())
        );
        let sql = "select * from product order by sku desc limit 1 for update nowait";
        let refs = crate::sql::table_refs(sql);
        assert_eq!(refs.len(), 1, "{refs:?}");
    }

    #[test]
    fn routing_rules_move_and_rename_tables() {
        // MoveTables's rules: the name, and the old keyspace's name.
        assert_eq!(
            placed("select * from both", None).map(|p| p.0),
            Some("customer".into())
        );
        assert_eq!(
            placed("select * from both where id = 1", Some("commerce")),
            Some((
                "customer".into(),
                "select * from both where id = 1".into(),
                false
            ))
        );
        assert_eq!(
            placed(
                "select * from commerce.both b join lk on lk.id = b.id",
                None
            ),
            Some((
                "customer".into(),
                "select * from both b join `lookups`.lk on lk.id = b.id".into(),
                true
            ))
        );
        // A renamed table keeps its name as its alias, where it has none.
        assert_eq!(
            placed("select route1.id from route1 where route1.id = 5", None).map(|p| p.1),
            Some("select route1.id from `customer` AS `route1` where route1.id = 5".into())
        );
        assert_eq!(
            placed("select r.id from route1 as r", None).map(|p| p.1),
            Some("select r.id from `customer` as r".into())
        );
        assert_eq!(
            placed("delete from route1 where id = 5", None).map(|p| p.1),
            Some("delete from `customer` where id = 5".into())
        );
        // A rule for one tablet type.
        let p = place_as(
            "select * from product",
            Some("commerce"),
            TabletType::Replica,
            &snap(),
        );
        let p = p.unwrap().unwrap();
        assert_eq!(
            (p.keyspace.as_str(), p.sql.as_deref()),
            ("lookups", Some("select * from `lk` AS `product`"))
        );
        assert_eq!(placed("select * from product", Some("commerce")), None);
        let err =
            place_as("select * from disabled", None, TabletType::Primary, &snap()).unwrap_err();
        assert_eq!(err.to_string(), "table disabled has been disabled");
    }
}
