//! The planner: pure (statement, target, snapshot) → [`Plan`]. No I/O, so
//! plans can be cached, printed and tested without a database.

pub mod cache;
mod colocate;
mod cte;
mod derive;
mod dialect;
mod dml_input;
pub mod explain;
mod forms;
pub mod join;
pub mod keys;
pub mod place;
pub mod pullout;
mod qualify;
mod regroup;
pub mod sharded;

use crate::sql::{QueryKind, Statement, TabletType, Target};
use crate::topo::Snapshot;

/// Why a statement cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No keyspace selected and none could be inferred.
    #[error("No database selected")]
    NoDatabase,
    /// The target keyspace does not exist.
    #[error("Unknown database '{0}'")]
    UnknownKeyspace(String),
    /// The target shard does not exist.
    #[error("Unknown database '{keyspace}:{shard}': no such shard")]
    UnknownShard { keyspace: String, shard: String },
    /// Valid SQL that shardgate does not handle yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// SQL the parser rejects.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A table missing from the keyspace's VSchema.
    #[error("table {table} not found in keyspace {keyspace}")]
    TableNotFound { table: String, keyspace: String },
    /// A routing rule that names no one table, or one that is disabled.
    #[error("{0}")]
    Routing(String),
    /// CREATE DATABASE of a database that is there (a keyspace, or one of
    /// MySQL's own schemas).
    #[error("Can't create database '{0}'; database exists")]
    DatabaseExists(String),
    /// `SELECT ... INTO` variables of a result of more than one row.
    #[error("Result consisted of more than one row")]
    TooManyRows,
    /// `SELECT ... INTO` with other than one variable per column.
    #[error("The used SELECT statements have a different number of columns")]
    IntoColumnCount,
    /// DROP DATABASE of a database that is not there.
    #[error("Can't drop database '{0}'; database doesn't exist")]
    DatabaseMissing(String),
    /// With no keyspace selected, a table name several keyspaces list.
    #[error("ambiguous table reference: {0}")]
    AmbiguousTable(String),
    /// An INSERT without the primary vindex column (and no sequence for it).
    #[error("INSERT into {table}: the value of vindex column {column} is missing")]
    MissingVindexColumn { table: String, column: String },
    /// An unqualified column that two tables of a join have (MariaDB's
    /// words, so that a client sees what one server would say).
    #[error("Column '{column}' in {clause} is ambiguous")]
    AmbiguousColumn {
        column: String,
        clause: &'static str,
    },
    /// Two tables of a FROM clause known by one name.
    #[error("Not unique table/alias: '{0}'")]
    NotUniqueTable(String),
    /// A `t.*` whose `t` no table of the FROM clause is known by.
    #[error("Unknown table '{0}'")]
    UnknownTable(String),
    /// A subquery compared as one value that returns several columns.
    #[error("Operand should contain 1 column(s)")]
    OperandColumns,
    /// An aggregate where none may be (a GROUP BY key).
    #[error("Invalid use of group function")]
    GroupFunction,
    /// An INSERT row with another number of values than the columns it
    /// fills (MariaDB's words; rows count from 1).
    #[error("Column count doesn't match value count at row {0}")]
    ValueCount(usize),
    /// A column none of a join's tables has, every one's columns known;
    /// a select-list position past its last item.
    #[error("Unknown column '{column}' in '{clause}'")]
    UnknownColumn {
        column: String,
        clause: &'static str,
    },
    /// A multi-table DELETE whose subquery reads a table it deletes from:
    /// MariaDB refuses it (its single-table form reads the rows first),
    /// and so does the gate, which could run it (MariaDB's words).
    #[error("Table '{0}' is specified twice, both as a target for 'DELETE' and as a separate source for data")]
    TargetRead(String),
    /// A derived table or WITH table whose select list names two columns
    /// alike: MariaDB refuses it, read or not (its words).
    #[error("Duplicate column name '{0}'")]
    DuplicateColumn(String),
}

/// What the engine should do with a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send the statement as-is to one shard.
    Route(Route),
    /// Answer from the topology snapshot.
    Show(ShowPlan),
    /// A SELECT on a sharded keyspace.
    Select(Box<sharded::SelectPlan>),
    /// An INSERT on a sharded keyspace.
    Insert(Box<sharded::InsertPlan>),
    /// An UPDATE or DELETE on a sharded keyspace.
    Dml(Box<sharded::DmlPlan>),
    /// A SELECT joining tables on different routes: a nested loop.
    Join(Box<join::JoinPlan>),
    /// A SELECT whose uncorrelated subqueries run first.
    Pullout(Box<pullout::PulloutPlan>),
    /// The same statement on every shard: DDL (the first shard's OK), or
    /// table maintenance (every shard's rows in turn).
    AllShards {
        /// Keyspace.
        keyspace: String,
    },
    /// Any one shard (SHOW, DESCRIBE, DO).
    AnyShard {
        /// Keyspace.
        keyspace: String,
    },
    /// Nothing runs and the client gets OK: LOCK and UNLOCK TABLES on a
    /// sharded keyspace, as vtgate answers them.
    Ignored,
    /// `SELECT ... INTO @a, @b` on a sharded keyspace: the SELECT runs
    /// (`inner`), its one row's values go into the session's variables
    /// (no tablet holds the whole result to assign them).
    SelectInto {
        /// The user variables, as written.
        vars: Vec<String>,
        /// The SELECT without its INTO.
        inner: Box<Plan>,
    },
    /// `SELECT SQL_CALC_FOUND_ROWS ... LIMIT n` on a sharded keyspace: the
    /// rows (`limited`, the SELECT without the modifier), then the number
    /// of rows without the LIMIT (`count`), which the session keeps for
    /// `FOUND_ROWS()` (each shard's tablet knows only its own), as
    /// vtgate's SQLCalcFoundRows.
    CalcFoundRows {
        /// The SELECT without SQL_CALC_FOUND_ROWS.
        limited: Box<Plan>,
        /// `COUNT(*)` of what it reads without ORDER BY and LIMIT.
        count: Box<Plan>,
    },
}

/// MariaDB's `ANALYZE [FORMAT=JSON] SELECT ...` (an ANALYZE of a write
/// runs the write, which one shard must not do alone).
fn analyzes_a_read(sql: &str) -> bool {
    let toks = crate::sql::lexer::tokenize(sql);
    let at = if toks.get(1).is_some_and(|t| t.is_word(sql, "format")) {
        4
    } else {
        1
    };
    toks.get(at)
        .is_some_and(|t| t.is_word(sql, "select") || t.is_word(sql, "with"))
}

/// `FLUSH TABLES ... WITH READ LOCK` and `FOR EXPORT` lock tables until
/// the connection unlocks them.
fn takes_a_lock(sql: &str) -> bool {
    let toks = crate::sql::lexer::tokenize(sql);
    toks.windows(2).any(|w| {
        (w[0].is_word(sql, "read") && w[1].is_word(sql, "lock"))
            || (w[0].is_word(sql, "for") && w[1].is_word(sql, "export"))
    })
}

/// A single-shard route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Keyspace the statement runs in.
    pub keyspace: String,
    /// The shard it runs on.
    pub shard: String,
    /// The tablet type it runs on.
    pub tablet_type: TabletType,
    /// SHOW statements name the MySQL database in column headers
    /// (`Tables_in_vt_ks`): the engine renames it to the keyspace.
    pub rename_db_columns: bool,
}

/// Statements answered by shardgate itself from the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum ShowPlan {
    /// SHOW DATABASES: keyspaces plus MySQL's system schemas (those
    /// LIKE the pattern, if any).
    Databases(Option<String>),
    /// SHOW KEYSPACES, LIKE a pattern if one is given.
    Keyspaces(Option<String>),
    /// SHOW VITESS_SHARDS, LIKE a pattern matched against `ks/shard`.
    Shards(Option<String>),
    /// SHOW VITESS_TABLETS, LIKE a pattern matched against the Hostname
    /// column.
    Tablets(Option<String>),
    /// SHOW VSCHEMA KEYSPACES.
    VschemaKeyspaces,
    /// SHOW VSCHEMA TABLES of a keyspace.
    VschemaTables(String),
    /// SHOW VSCHEMA VINDEXES: every keyspace's, or (keyspace, table) one
    /// table's column vindexes.
    VschemaVindexes(Option<(String, String)>),
    /// SHOW VITESS_TARGET: the session's target, as USE set it.
    Target(String),
}

/// Plans one classified statement. Session statements (BEGIN, SET, USE...)
/// never get here: the session handles them.
/// `template` is the normalized text, needed for sharded keyspaces only.
pub fn plan(
    stmt: &Statement,
    template: Option<&str>,
    target: &Target,
    snap: &Snapshot,
) -> Result<Plan, PlanError> {
    let kind = match stmt {
        Statement::ShowDatabases(like) => return Ok(Plan::Show(ShowPlan::Databases(like.clone()))),
        Statement::ShowKeyspaces(like) => return Ok(Plan::Show(ShowPlan::Keyspaces(like.clone()))),
        Statement::ShowVitessShards(like) => return Ok(Plan::Show(ShowPlan::Shards(like.clone()))),
        Statement::ShowVitessTablets(like) => {
            return Ok(Plan::Show(ShowPlan::Tablets(like.clone())))
        }
        Statement::ShowVschemaKeyspaces => return Ok(Plan::Show(ShowPlan::VschemaKeyspaces)),
        Statement::ShowVschemaTables => {
            let ks = target.keyspace.clone().ok_or(PlanError::NoDatabase)?;
            if !snap.keyspaces.contains_key(&ks) {
                return Err(PlanError::UnknownKeyspace(ks));
            }
            return Ok(Plan::Show(ShowPlan::VschemaTables(ks)));
        }
        Statement::ShowVitessTarget => return Ok(Plan::Show(ShowPlan::Target(target.to_string()))),
        Statement::ShowVschemaVindexes(None) => {
            return Ok(Plan::Show(ShowPlan::VschemaVindexes(None)))
        }
        Statement::ShowVschemaVindexes(Some((qualifier, table))) => {
            let ks = qualifier
                .clone()
                .or_else(|| target.keyspace.clone())
                .ok_or(PlanError::NoDatabase)?;
            let keyspace = snap
                .keyspaces
                .get(&ks)
                .ok_or_else(|| PlanError::UnknownKeyspace(ks.clone()))?;
            // An unsharded keyspace's tables have no vindexes, listed or not.
            if keyspace.sharded && !keyspace.vschema.tables.contains_key(table) {
                return Err(PlanError::TableNotFound {
                    table: table.clone(),
                    keyspace: ks,
                });
            }
            return Ok(Plan::Show(ShowPlan::VschemaVindexes(Some((
                ks,
                table.clone(),
            )))));
        }
        Statement::Query(kind) => *kind,
        other => {
            return Err(PlanError::Unsupported(format!(
                "statement {other:?} is handled by the session"
            )))
        }
    };
    let keyspace = match &target.keyspace {
        Some(ks) => snap
            .keyspaces
            .get(ks)
            .ok_or_else(|| PlanError::UnknownKeyspace(ks.clone()))?,
        // No keyspace selected: statements without tables (SELECT 1, @@vars)
        // go to the first unsharded keyspace, as vtgate sends them to any.
        None => snap
            .keyspaces
            .values()
            .find(|k| !k.sharded)
            .or_else(|| snap.keyspaces.values().next())
            .ok_or(PlanError::NoDatabase)?,
    };
    let shard = match &target.shard {
        Some(sh) => keyspace
            .shards
            .iter()
            .find(|s| &s.name == sh)
            .ok_or_else(|| PlanError::UnknownShard {
                keyspace: keyspace.name.clone(),
                shard: sh.clone(),
            })?,
        // An unsharded keyspace's statement that names another
        // keyspace's tables: joined or pulled out at the gate, as on a
        // sharded keyspace (its own tables all on its one shard).
        None if !keyspace.sharded
            && template.is_some_and(|t| names_another_keyspace(t, keyspace, snap)) =>
        {
            return sharded::plan(template.unwrap_or_default(), keyspace, snap);
        }
        None if !keyspace.sharded => keyspace.shards.first().ok_or_else(|| {
            PlanError::Unsupported(format!("keyspace {} has no shards", keyspace.name))
        })?,
        None => {
            let first_word = matches!(kind, QueryKind::Other | QueryKind::Reserving)
                .then(|| template.and_then(crate::sql::first_word))
                .flatten();
            return Ok(match kind {
                QueryKind::Ddl => Plan::AllShards {
                    keyspace: keyspace.name.clone(),
                },
                QueryKind::Show => Plan::AnyShard {
                    keyspace: keyspace.name.clone(),
                },
                // Every shard keeps its own part of each table.
                QueryKind::Maintenance => Plan::AllShards {
                    keyspace: keyspace.name.clone(),
                },
                // DO reads no table's rows: any shard evaluates it, as
                // vtgate sends it; HELP reads the server's help tables; and
                // MariaDB's ANALYZE of a statement is its EXPLAIN (which
                // goes to any shard) run there.
                QueryKind::Other | QueryKind::Reserving
                    if matches!(first_word.as_deref(), Some("do" | "help"))
                        || (first_word.as_deref() == Some("analyze")
                            && template.is_some_and(analyzes_a_read)) =>
                {
                    Plan::AnyShard {
                        keyspace: keyspace.name.clone(),
                    }
                }
                // FLUSH of tables, logs or caches: every shard's server, as
                // vtgate sends it (not the lock-taking forms, which would
                // leave a lock on a pooled connection).
                QueryKind::Other
                    if first_word.as_deref() == Some("flush")
                        && !template.is_some_and(takes_a_lock) =>
                {
                    Plan::AllShards {
                        keyspace: keyspace.name.clone(),
                    }
                }
                // No one server holds a sharded table to lock: as vtgate,
                // the gate answers LOCK and UNLOCK TABLES with OK and locks
                // nothing (so dumps load).
                QueryKind::Reserving
                    if matches!(first_word.as_deref(), Some("lock" | "unlock")) =>
                {
                    Plan::Ignored
                }
                _ => {
                    let template = template.ok_or_else(|| {
                        PlanError::Unsupported(
                            "statement text needed for a sharded keyspace".into(),
                        )
                    })?;
                    // MySQL's own schemas are alike on every tablet.
                    if kind == QueryKind::Select && crate::sql::reads_system_schemas_only(template)
                    {
                        let shard = keyspace.shards.first().ok_or_else(|| {
                            PlanError::Unsupported(format!(
                                "keyspace {} has no shards",
                                keyspace.name
                            ))
                        })?;
                        return Ok(Plan::Route(Route {
                            keyspace: keyspace.name.clone(),
                            shard: shard.name.clone(),
                            tablet_type: target.tablet_type,
                            rename_db_columns: false,
                        }));
                    }
                    if target.tablet_type != TabletType::Primary && kind != QueryKind::Select {
                        return Err(PlanError::Unsupported(format!(
                            "writes to a {} tablet",
                            target.tablet_type.as_str()
                        )));
                    }
                    sharded::plan(template, keyspace, snap)?
                }
            });
        }
    };
    Ok(Plan::Route(Route {
        keyspace: keyspace.name.clone(),
        shard: shard.name.clone(),
        tablet_type: target.tablet_type,
        rename_db_columns: kind == QueryKind::Show,
    }))
}

/// Whether `sql` names a table of a keyspace other than `ks` (the
/// statement the placement qualified: a join or subquery across
/// keyspaces). A statement without a dot names none, at the cost of one
/// scan of its bytes.
pub fn names_another_keyspace(sql: &str, ks: &crate::topo::Keyspace, snap: &Snapshot) -> bool {
    qualifies_other(sql, &ks.name, |q| snap.keyspaces.contains_key(q))
}

/// Whether `sql` names a table qualified by something other than `own`
/// that `counts` (a keyspace, or anything but a system schema).
pub(crate) fn qualifies_other(sql: &str, own: &str, counts: impl Fn(&str) -> bool) -> bool {
    sql.contains('.')
        && crate::sql::table_refs(sql)
            .iter()
            .any(|r| !r.column && r.qualifier.is_some_and(|q| q != own && counts(q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn snap() -> Snapshot {
        let mut r = BTreeMap::new();
        for (k, v) in [
            ("global/keyspaces/commerce/Keyspace", "{}"),
            ("global/keyspaces/commerce/shards/0/Shard", "{}"),
            ("global/keyspaces/customer/Keyspace", r#"{"sharded": true}"#),
            ("global/keyspaces/customer/shards/-80/Shard", "{}"),
            ("global/keyspaces/customer/shards/80-/Shard", "{}"),
        ] {
            r.insert(k.to_string(), v.as_bytes().to_vec());
        }
        Snapshot::build(&r, &Default::default(), 1).unwrap()
    }

    #[test]
    fn unsharded_routes_to_its_shard() {
        let s = snap();
        let t = Target::parse("commerce@replica").unwrap();
        let p = plan(&Statement::Query(QueryKind::Select), None, &t, &s).unwrap();
        assert_eq!(
            p,
            Plan::Route(Route {
                keyspace: "commerce".into(),
                shard: "0".into(),
                tablet_type: TabletType::Replica,
                rename_db_columns: false
            })
        );
    }

    #[test]
    fn sharded_keyspaces_upkeep_every_shard_and_ignore_table_locks() {
        let s = snap();
        let t = Target::parse("customer").unwrap();
        let planned = |sql: &str| {
            let stmt = crate::sql::classify(sql).unwrap();
            plan(&stmt, Some(sql), &t, &s).unwrap()
        };
        let all = Plan::AllShards {
            keyspace: "customer".into(),
        };
        assert_eq!(planned("optimize table c"), all);
        assert_eq!(planned("check table c"), all);
        assert_eq!(
            planned("do 1"),
            Plan::AnyShard {
                keyspace: "customer".into()
            }
        );
        assert_eq!(planned("lock tables c write"), Plan::Ignored);
        assert_eq!(planned("unlock tables"), Plan::Ignored);
        // On an unsharded keyspace they go to its one shard as written.
        let t = Target::parse("commerce").unwrap();
        let stmt = crate::sql::classify("lock tables c write").unwrap();
        assert!(matches!(
            plan(&stmt, Some("lock tables c write"), &t, &s).unwrap(),
            Plan::Route(_)
        ));
    }

    /// A sharded keyspace of one table `c`, hashed by its id.
    const C_VSCHEMA: &str = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
        "tables": {"c": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#;

    /// A plan of `sql` in keyspace `ks` of `vschema`, normalized as a
    /// session would.
    fn planned_in(vschema: &str, sql: &str) -> Plan {
        let s = Snapshot::sharded_for_tests(vschema, BTreeMap::new());
        let stmt = crate::sql::classify(sql).unwrap();
        let n = crate::sql::normalize::normalize(sql, &[], false);
        plan(&stmt, Some(&n.template), &Target::parse("ks").unwrap(), &s).unwrap()
    }

    #[test]
    fn the_gate_computes_only_the_operators_it_knows_over_groups() {
        let described = |sql: &str| planned_in(C_VSCHEMA, sql).describe().to_string();
        // `%` over a group's rows at the gate; `&` is not computed there
        // (the rows are gathered and grouped on one tablet instead).
        let modulo = described("select k % 3, count(*) from c group by k");
        assert!(modulo.contains("% :v1) as"), "{modulo}");
        let bits = described("select k & 3, count(*) from c group by k");
        assert!(!bits.contains("& :v1) as"), "{bits}");
    }

    /// A grouped expression with a literal, repeated in the select list:
    /// the normalizer gives both literals one bind, so the item is the
    /// group's text and the shards group; with a bind each the item is an
    /// expression the gate does not compute, and the whole table is
    /// gathered to be grouped on one tablet.
    #[test]
    fn a_grouped_expression_with_a_literal_is_its_group() {
        let s = Snapshot::sharded_for_tests(C_VSCHEMA, BTreeMap::new());
        let t = Target::parse("ks").unwrap();
        let sql = "select left(name, 1), count(*) from c group by left(name, 1)";
        let stmt = crate::sql::classify(sql).unwrap();
        let n = crate::sql::normalize::normalize(sql, &[], false);
        assert_eq!(n.binds.len(), 1);
        let planned = plan(&stmt, Some(&n.template), &t, &s).unwrap();
        let shown = planned.describe().to_string();
        assert!(matches!(planned, Plan::Select(_)), "{shown}");
        assert!(shown.contains("GROUP BY left(name, :v1)"), "{shown}");
        // Apart, the table's rows are gathered and grouped on one tablet.
        let apart = "select left(name, :v1), count(*) from c group by left(name, :v2)";
        let gathered = plan(&stmt, Some(apart), &t, &s).unwrap();
        assert!(
            matches!(gathered, Plan::Pullout(_)),
            "{}",
            gathered.describe()
        );
    }

    /// A plan of `sql` over the random statements' tables
    /// (`tests/sharded/random.rs`): `qa` by its id, `qb` by the `qa` row
    /// it names, `qr` a reference table.
    fn planned_over_q(sql: &str) -> Plan {
        planned_in(Q_VSCHEMA, sql)
    }

    /// The description of `sql`'s plan over the same tables, which must
    /// run something first (a pullout) and show each of `parts`.
    fn run_first_over_q(sql: &str, parts: &[&str]) -> String {
        let planned = planned_over_q(sql);
        let shown = planned.describe().to_string();
        assert!(matches!(planned, Plan::Pullout(_)), "{shown}");
        for part in parts {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        shown
    }

    /// ORDER BY the position (or alias) of an uncorrelated subquery's
    /// value (`select (select max(b2.qty) from qb b2), a.k from qa a order
    /// by 1, 2`, planned with the value bound): the value, a number, would
    /// be a position again in the shards' ORDER BY (`ORDER BY 20`,
    /// MariaDB's 1054); it is sent as a value.
    #[test]
    fn an_order_by_a_selected_value_is_no_position() {
        let s = Snapshot::sharded_for_tests(Q_VSCHEMA, BTreeMap::new());
        for sql in [
            "select :vSQ1 as `(select max(b2.qty) from qb b2)`, a.k from qa a order by 1, 2",
            "select :vSQ1 as x, a.k from qa a order by x, 2",
        ] {
            let stmt = crate::sql::classify(sql).unwrap();
            let planned = plan(&stmt, Some(sql), &Target::parse("ks").unwrap(), &s).unwrap();
            let shown = planned.describe()["query"].to_string();
            assert!(
                shown.contains("ORDER BY COALESCE(:vSQ1) ASC, a.k ASC"),
                "{shown}"
            );
        }
    }

    /// A bare name in a subquery of a join across shards that the
    /// subquery's own table lacks (`g`, tracked as `qa`'s only) is the
    /// join's column: the subquery reads the join (a semi-join over it),
    /// where it once ran first alone and failed with 1054. Over a
    /// grouping, a subquery's bare name is placed before the grouping runs
    /// first as a derived table.
    #[test]
    fn a_subquery_s_bare_name_may_be_the_join_s() {
        let cols = |names: &[&str]| crate::topo::schema::TableSchema {
            columns: names.iter().map(|n| (n.to_string(), None)).collect(),
            primary_key: vec!["id".to_string()],
        };
        let learned = [
            (
                "qa".to_string(),
                cols(&["id", "k", "g", "name", "amt", "t", "u"]),
            ),
            (
                "qb".to_string(),
                cols(&["id", "a_id", "k", "tag", "qty", "f"]),
            ),
        ];
        let s = Snapshot::sharded_for_tests(Q_VSCHEMA, learned.into());
        let described = |sql: &str| {
            let stmt = crate::sql::classify(sql).unwrap();
            let n = crate::sql::normalize::normalize(sql, &[], false);
            let p = plan(&stmt, Some(&n.template), &Target::parse("ks").unwrap(), &s);
            p.unwrap().describe().to_string()
        };
        let joined = described(
            "select a.id, b.id from qa a join qb b on a.k = b.k \
             where exists (select 1 from qb b2 where b2.qty = g) order by 1, 2",
        );
        assert!(!joined.contains("b2.qty = g"), "{joined}");
        assert!(joined.contains("SELECT `a`.g, a.id"), "{joined}");
        let grouped = described(
            "select b.qty, (select count(*) from qa a3 where a3.g = qty), count(*) \
             from qa a join qb b on b.k = a.k group by b.qty",
        );
        assert!(grouped.contains("FROM qa a3 WHERE a3.g = :v1"), "{grouped}");
    }

    /// A derived table's and a WITH table's computed columns are named
    /// as written, as the statement reads them (a WITH table's past 64
    /// characters by its position, as MariaDB names it), and so are a
    /// UNION's, by its first part; two columns of one name in a derived
    /// table are MariaDB's 1060.
    #[test]
    fn a_derived_table_s_columns_are_named_as_written() {
        let query = |sql: &str| planned_over_q(sql).describe().to_string();
        let derived =
            query("select * from (select exists (select 1 from qb b where b.k = a.g) from qa a) w");
        assert!(
            derived.contains("exists (select :v1 from qb b where b.k = a.g)`"),
            "{derived}"
        );
        assert!(!derived.contains("`EXISTS"), "{derived}");
        let long = "(select count(*) from qb b3 where b3.a_id = a.id and b3.qty > b3.k)";
        let with = query(&format!(
            "with w as (select a.id, {long} from qa a) select * from w"
        ));
        assert!(with.contains("AS `Name_exp_2`"), "{with}");
        let union = query("select a.g, count(distinct a.k) from qa a group by a.g union select b.qty, 1 from qb b");
        assert!(union.contains("as count(distinct a.k)\""), "{union}");
        let s = Snapshot::sharded_for_tests(Q_VSCHEMA, BTreeMap::new());
        let sql = "select * from (select a.id, b.id from qa a join qb b on b.a_id = a.id) w";
        let stmt = crate::sql::classify(sql).unwrap();
        let refused = plan(&stmt, Some(sql), &Target::parse("ks").unwrap(), &s).unwrap_err();
        assert_eq!(refused.to_string(), "Duplicate column name 'id'");
    }

    /// A window sees the rows the whole statement keeps. Beside a
    /// correlated EXISTS that filters, the rows are gathered with the
    /// filter (the window once ran over the rows before it); beside a
    /// subquery over a grouping by the vindex column, the grouping runs
    /// first (once refused); ORDER BY a window that spans shards, and
    /// DISTINCT beside one each shard computes, and one over a join
    /// across shards, run over gathered rows (once each shard's window, a
    /// shard's GROUP BY of a window, and one side's rows).
    #[test]
    fn a_window_sees_the_rows_the_statement_keeps() {
        let filtered = run_first_over_q(
            "select (select count(*) from qb b3 where b3.k = a.k), a.id, \
             row_number() over (partition by a.amt order by a.id) from qa a \
             where not exists (select 1 from qb b2 where b2.k = a.k)",
            &["row_number() OVER (PARTITION BY a.amt ORDER BY a.id)"],
        );
        // The gathered rows are the filtered ones: the EXISTS runs before
        // the window, not after it.
        let (outer, gathered) = filtered.split_once("\"subqueries\"").expect(&filtered);
        assert!(!outer.contains("EXISTS"), "{filtered}");
        assert!(gathered.contains("\"AntiJoin\""), "{filtered}");
        let grouped = planned_over_q(
            "select a.id, (select count(*) from qb b3 where b3.k = a.id), \
             dense_rank() over (order by a.id desc) from qa a group by a.id",
        )
        .describe()
        .to_string();
        assert!(grouped.contains("GROUP BY a.id) AS sg_t"), "{grouped}");
        assert!(
            grouped.contains("dense_rank() OVER (ORDER BY sg_t.sg_g1 DESC)"),
            "{grouped}"
        );
        run_first_over_q(
            "select a.id from qa a order by row_number() over (order by a.k desc, a.id) limit 5",
            &["SELECT * FROM qa a"],
        );
        run_first_over_q(
            "select distinct a.g, row_number() over (partition by a.id order by a.k) from qa a",
            &["SELECT * FROM qa a"],
        );
        // Over a join across shards, a window over one side's columns
        // (once that side's rows alone, where the side is one route: the
        // reference table's): over the joined rows.
        run_first_over_q(
            "select a.id, b.id, r.k, dense_rank() over (order by r.k desc) from qb b \
             join qa a on a.k = b.k left join qr r on r.k = a.g",
            &["dense_rank() OVER (ORDER BY sg_t.sg_c"],
        );
    }

    /// The random statements' tables' VSchema.
    const Q_VSCHEMA: &str = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
        "tables": {"qa": {"column_vindexes": [{"column": "id", "name": "hash"}]},
                   "qb": {"column_vindexes": [{"column": "a_id", "name": "hash"}]},
                   "qr": {"type": "reference"}}}"#;

    /// ORDER BY a correlated value of the select list (a nested loop's
    /// right side) sorts the joined rows at the gate: the left side sends
    /// its keys with their weight strings, unordered; a count needs no
    /// weight string, a MAX of strings gets one from the right side.
    #[test]
    fn an_order_by_a_correlated_value_sorts_at_the_gate() {
        let sql = "select a.id, (select count(*) from qb b where b.k = a.k) c from qa a order by c desc, a.id limit 5";
        let Plan::Join(j) = planned_over_q(sql) else {
            panic!("{sql}")
        };
        let gate = j.gate.as_ref().expect("a gate");
        assert_eq!(gate.order.len(), 2);
        assert!(gate.order[0].desc && gate.order[0].weight.is_none());
        assert!(gate.order[1].weight.is_some());
        assert!(gate.limit.is_some() && j.limit.is_none());
        assert!(!j.lhs_sql.contains("ORDER BY"), "{}", j.lhs_sql);
        assert!(
            j.lhs_sql.contains("weight_string(rtrim(a.id))"),
            "{}",
            j.lhs_sql
        );
        let sql = "select a.id, (select max(b.tag) from qb b where b.k = a.k) from qa a order by 2";
        let Plan::Join(j) = planned_over_q(sql) else {
            panic!("{sql}")
        };
        assert!(
            j.rhs_sql.contains("weight_string(rtrim(max(b.tag)))"),
            "{}",
            j.rhs_sql
        );
        assert!(j.gate.as_ref().is_some_and(|g| g.order[0].weight.is_some()));
    }

    /// A table of constants of many rows (gathered rows, run first) is a
    /// flat VALUES list: planning a semi-join over 20,000 of them walks no
    /// deeper than over two (this test's thread has the default 2 MB
    /// stack, which a chain of `UNION ALL SELECT`s this long overflows).
    #[test]
    fn a_semi_join_over_many_constants_plans() {
        let rows: Vec<String> = (2..=20_000).map(|i| format!("({i})")).collect();
        let sql = format!(
            "SELECT d.a FROM (SELECT 1 AS a UNION ALL VALUES {}) AS d \
             WHERE EXISTS (SELECT 1 FROM qa a3 WHERE a3.g = d.a)",
            rows.join(", ")
        );
        assert!(matches!(planned_over_q(&sql), Plan::Join(_)));
    }

    /// `x op ANY (subquery)` and `x op ALL (...)` over rows of several
    /// shards: the subquery runs first, its rows a table of constants the
    /// comparison reads (MariaDB's own rules for an empty set and NULLs).
    #[test]
    fn any_and_all_read_their_subquery_as_constants() {
        let planned = planned_over_q(
            "select a.id from qa a where a.k > all (select b.k from qb b where b.qty = 3)",
        );
        let Plan::Pullout(p) = &planned else {
            panic!("{}", planned.describe())
        };
        assert_eq!(p.subqueries.len(), 1);
        assert_eq!(p.subqueries[0].kind, pullout::PulloutKind::Table);
        assert!(
            p.outer.contains("a.k > ALL(SELECT * FROM :vSQ1 AS sg_any)"),
            "{}",
            p.outer
        );
        // `x NOT IN (subquery)` as a value reads its rows the same way.
        let planned = planned_over_q(
            "select a.id, a.k not in (select b.k from qb b where b.qty = 3) from qa a",
        );
        let Plan::Pullout(p) = &planned else {
            panic!("{}", planned.describe())
        };
        assert_eq!(p.subqueries[0].kind, pullout::PulloutKind::Table);
        assert!(
            p.outer
                .contains("a.k NOT IN (SELECT * FROM :vSQ1 AS sg_any)"),
            "{}",
            p.outer
        );
    }

    /// A correlated `EXISTS` as a select-list value that no route answers
    /// with its statement is a value join: the right side asks for one
    /// row (`SELECT 1 ... LIMIT 1`), and the column is 1 or 0 by whether
    /// it found one (the other way round for `NOT EXISTS`).
    #[test]
    fn an_exists_value_is_a_value_join() {
        let sql = "select a.id, not exists (select 1 from qb b where b.k = a.k) from qa a";
        let Plan::Join(j) = planned_over_q(sql) else {
            panic!("{sql}")
        };
        assert_eq!(j.exists, Some(true));
        assert!(j.single && j.semi.is_none());
        assert!(j.rhs_sql.starts_with("SELECT 1 AS"), "{}", j.rhs_sql);
        assert!(j.rhs_sql.ends_with("LIMIT 1"), "{}", j.rhs_sql);
    }

    /// A correlated subquery over a grouping that no shard answers alone
    /// runs over the grouping, a derived table run first, reading the
    /// grouped column it is correlated to; one correlated to a column not
    /// grouped stays refused (MariaDB would read any row of the group).
    #[test]
    fn a_subquery_over_a_grouping_reads_the_grouped_column() {
        run_first_over_q(
            "select a.g, count(*), (select count(*) from qb b where b.k = a.g) from qa a group by a.g",
            &["b.k = sg_t.sg_g1) AS", "FROM :vSQ1 AS sg_t"],
        );
        let s = Snapshot::sharded_for_tests(Q_VSCHEMA, BTreeMap::new());
        let sql = "select a.g, (select count(*) from qb b where b.k = a.k) from qa a group by a.g";
        let stmt = crate::sql::classify(sql).unwrap();
        let refused = plan(&stmt, Some(sql), &Target::parse("ks").unwrap(), &s);
        assert!(
            matches!(&refused, Err(PlanError::Unsupported(m)) if m.contains("subqueries")),
            "{refused:?}"
        );
    }

    /// A DISTINCT whose subquery reads a column it does not list runs over
    /// its rows, a derived table run first (a value join per row), the
    /// DISTINCT on a tablet over them.
    #[test]
    fn a_distinct_over_an_unlisted_correlation_runs_over_its_rows() {
        run_first_over_q(
            "select distinct a.g, (select count(*) from qb b where b.k = a.k) c from qa a order by c desc, 1",
            &[
                "SELECT DISTINCT sg_t.sg_c1 AS `g`, sg_t.sg_v1 AS `c` FROM :vSQ1 AS sg_t ORDER BY c DESC, 1",
                r#""query":"SELECT a.k, a.g AS sg_c1 FROM qa a""#,
                "FROM qb b WHERE b.k = :v1",
            ],
        );
        // Such a statement, or any value join, as a derived table: first.
        for sql in [
            "select count(*) from (select distinct a.g, (select count(*) from qb b where b.k = a.k) c from qa a) t",
            "select t.c, count(*) from (select a.g, (select count(*) from qb b where b.k = a.k) c from qa a) t group by t.c",
        ] {
            run_first_over_q(sql, &[r#""kind":"Table","plan":{"inputs""#]);
        }
    }

    /// A correlated subquery compared in the WHERE clause that no route
    /// answers with its statement (rows above their group's average):
    /// computed per row first (a value join), the comparison and the
    /// count over those rows on a tablet.
    #[test]
    fn a_correlated_comparison_runs_over_its_rows() {
        run_first_over_q(
            "select count(*) from qa a where a.amt > (select avg(a2.amt) from qa a2 where a2.g = a.g)",
            &[
                "FROM :vSQ1 AS sg_t WHERE sg_t.sg_c1 > sg_t.sg_v1",
                r#""query":"SELECT a.g, a.amt AS sg_c1 FROM qa a""#,
                "FROM qa a2 WHERE a2.g = :v1",
            ],
        );
    }

    /// An uncorrelated `NOT IN` over a LEFT JOIN's right table, beside an
    /// expression over both sides (which the nested loop cannot compute):
    /// the joined rows are gathered with the condition as a column, its
    /// subquery's rows run first as constants.
    #[test]
    fn a_not_in_over_a_left_joins_right_table_runs_first() {
        // The NOT IN is a column of the joined rows, over the subquery's
        // rows as constants.
        run_first_over_q(
            "select a.id * 2 + r.k from qr r left join qa a on a.g = r.k \
             where a.k not in (select b2.k from qb b2 where b2.qty < 12)",
            &[
                "a.k NOT IN (SELECT * FROM :vSQ1 AS sg_any) AS sg_c1",
                r#""query":"SELECT b2.k FROM qb b2 WHERE b2.qty < :v2""#,
                "FROM :vSQ1 AS sg_t WHERE (sg_t.sg_c1)",
            ],
        );
    }

    /// A subquery's aggregate is its own: a DISTINCT over a nested loop
    /// with a correlated `(select count(*) ...)` in its list is a join
    /// whose left side sends the subquery's value per row (with its weight
    /// string, whose text holds `count(`), not an aggregation.
    #[test]
    fn a_subquery_count_in_a_distinct_join_is_a_value_per_row() {
        let planned = planned_over_q(
            "select distinct round(a.u / 3, 2), (select count(*) from qb b3 \
             where b3.a_id = a.id), b.id from qa a join qb b on b.k = a.k",
        );
        let shown = planned.describe().to_string();
        assert!(matches!(planned, Plan::Join(_)), "{shown}");
        assert!(
            shown.contains("SELECT round(a.u / :v1, :v2), weight_string(rtrim(round(a.u / :v1, :v2))), (SELECT count(*)"),
            "{shown}"
        );
    }

    /// A correlated subquery through a reference table's column that an
    /// inner join equates to a sharded table's vindex column finds its rows
    /// on the joined row's shard: one scatter. Through a LEFT JOIN's ON it
    /// does not (the reference table's unmatched rows are on every shard).
    #[test]
    fn a_subquery_through_a_joined_column_stays_on_the_shard() {
        let sub = "(select count(*) from qb b3 where b3.a_id = r.k)";
        let inner = planned_over_q(&format!(
            "select r.k, {sub} from qr r join qa a on a.id = r.k"
        ));
        let shown = inner.describe().to_string();
        assert!(matches!(inner, Plan::Select(_)), "{shown}");
        assert!(shown.contains("\"variant\":\"Scatter\""), "{shown}");
        let left = planned_over_q(&format!(
            "select r.k, {sub} from qr r left join qa a on a.id = r.k"
        ));
        assert!(!matches!(left, Plan::Select(_)), "{}", left.describe());
    }

    /// A LEFT JOIN whose WHERE reads the right table is checked over the
    /// gathered joined rows; a correlated subquery of the statement is
    /// one of those rows' columns, computed in the join (here on the left
    /// side's shard), not a refusal.
    #[test]
    fn a_gathered_join_computes_its_subqueries_with_the_rows() {
        run_first_over_q(
            "select (select count(*) from qb b3 where b3.a_id = a.id), b.k from qa a \
             left join qb b on b.k = a.k where b.f > 1 or b.f is null",
            &["(SELECT count(*) FROM qb b3 WHERE b3.a_id = a.id) AS sg_c1"],
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let s = snap();
        let q = Statement::Query(QueryKind::Select);
        assert!(matches!(
            plan(&q, None, &Target::parse("nope").unwrap(), &s),
            Err(PlanError::UnknownKeyspace(_))
        ));
        assert!(matches!(
            plan(&q, None, &Target::parse("customer").unwrap(), &s),
            Err(PlanError::Unsupported(_))
        ));
        assert!(matches!(
            plan(&q, None, &Target::parse("customer:40-").unwrap(), &s),
            Err(PlanError::UnknownShard { .. })
        ));
        let p = plan(&q, None, &Target::parse("customer:80-").unwrap(), &s).unwrap();
        assert!(matches!(p, Plan::Route(r) if r.shard == "80-"));
    }

    /// Column types the schema tracker learned drop the weight strings of
    /// a cross-shard sort; a VSchema declaration wins over them.
    #[test]
    fn learned_column_types_drop_weight_strings() {
        use crate::collation::Collation;
        use crate::vschema::Declared;
        let vschema = r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"t": {"column_vindexes": [{"column": "id", "name": "hash"}],
                             "columns": [{"name": "u", "type": "VARCHAR",
                                          "collation_name": "utf8mb4_bin"}]}}}"#;
        let mut s = Snapshot::sharded_for_tests(vschema, BTreeMap::new());
        let target = Target::parse("ks").unwrap();
        let query = |s: &Snapshot, sql: &str| {
            let stmt = crate::sql::classify(sql).unwrap();
            plan(&stmt, Some(sql), &target, s).unwrap().describe()["query"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let sql = "select id from t order by c, u, n";
        assert_eq!(
            query(&s, sql),
            "SELECT id, c, weight_string(rtrim(c)), u, n, weight_string(rtrim(n)) FROM t ORDER BY c ASC, u ASC, n ASC"
        );
        let text = Declared::Text(Collation::Utf8GeneralCi);
        let learned = [(
            "ks".to_string(),
            [(
                "t".to_string(),
                crate::topo::schema::TableSchema {
                    columns: vec![
                        ("C".to_string(), Some(text)),
                        ("u".to_string(), Some(Declared::Text(Collation::Binary))),
                        ("n".to_string(), Some(Declared::Number)),
                    ],
                    primary_key: Vec::new(),
                },
            )]
            .into(),
        )]
        .into();
        s.learn(&learned);
        assert_eq!(
            query(&s, sql),
            "SELECT id, c, u, n FROM t ORDER BY c ASC, u ASC, n ASC"
        );
        let p = plan(&crate::sql::classify(sql).unwrap(), Some(sql), &target, &s).unwrap();
        let order = p.describe()["gate"]["order"].to_string();
        assert!(
            order.contains("utf8mb4_general_ci") && order.contains("utf8mb4_bin"),
            "{order}"
        );
    }
}
