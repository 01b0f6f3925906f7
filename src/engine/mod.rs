//! The engine runs a [`Plan`]. It reaches tablets only through [`VCursor`]
//! and hands rows to a [`RowSink`], so it can be tested with a recording fake
//! cursor and a collecting sink, and so rows stream instead of piling up.

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;

use crate::error::Error;
use crate::planner::{Plan, Route, ShowPlan};
use crate::sql::TabletType;
use crate::topo::Snapshot;

/// The end of an OK-only result (DML, DDL, SET).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryDone {
    /// Rows changed (or matched, with CLIENT_FOUND_ROWS).
    pub affected_rows: u64,
    /// First auto-increment id generated, or 0.
    pub last_insert_id: u64,
    /// Warning count.
    pub warnings: u16,
    /// Human-readable info ("Rows matched: 1  Changed: 1").
    pub info: String,
}

/// Where results go. The frontend's implementation encodes packets; tests collect.
pub trait RowSink {
    /// A result set with these columns begins.
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error>;
    /// One row of the current result set (text values: bytes or NULL).
    fn row(&mut self, values: &[Value]) -> Result<(), Error>;
    /// The current result set ended.
    fn end_rows(&mut self, warnings: u16) -> Result<(), Error>;
    /// An OK-only result.
    fn ok(&mut self, done: QueryDone) -> Result<(), Error>;
    /// Lets the sink write out what it buffered (called between rows).
    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), Error>> + Send;
}

/// The engine's only door to tablets.
pub trait VCursor {
    /// Runs `sql` on the tablet of `tablet_type` serving `keyspace/shard`,
    /// streaming its results into `sink`.
    fn execute_shard<S: RowSink + Send>(
        &mut self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        sql: &str,
        rename_db_columns: bool,
        sink: &mut S,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send;
}

/// Runs a plan for statement text `sql`.
pub async fn execute<V: VCursor + Send, S: RowSink + Send>(
    plan: &Plan,
    sql: &str,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    match plan {
        Plan::Route(Route {
            keyspace,
            shard,
            tablet_type,
            rename_db_columns,
        }) => {
            vc.execute_shard(keyspace, shard, *tablet_type, sql, *rename_db_columns, sink)
                .await
        }
        Plan::Show(show) => {
            let (names, rows) = show_rows(show, snap);
            let cols: Vec<Column> = names.iter().map(|n| text_column(n)).collect();
            sink.columns(&cols)?;
            for r in rows {
                let vals: Vec<Value> = r
                    .into_iter()
                    .map(|s| Value::Bytes(s.into_bytes()))
                    .collect();
                sink.row(&vals)?;
            }
            sink.end_rows(0)
        }
    }
}

/// A VARCHAR column definition for results shardgate makes itself.
pub fn text_column(name: &str) -> Column {
    Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
        .with_name(name.as_bytes())
        .with_org_name(name.as_bytes())
        .with_character_set(45) // utf8mb4_general_ci
        .with_column_length(256)
        .with_flags(ColumnFlags::NOT_NULL_FLAG)
}

fn show_rows(show: &ShowPlan, snap: &Snapshot) -> (Vec<&'static str>, Vec<Vec<String>>) {
    match show {
        ShowPlan::Databases => {
            let mut rows: Vec<Vec<String>> =
                snap.keyspaces.keys().map(|k| vec![k.clone()]).collect();
            for sys in ["information_schema", "mysql", "performance_schema", "sys"] {
                rows.push(vec![sys.to_string()]);
            }
            (vec!["Database"], rows)
        }
        ShowPlan::Keyspaces => (
            vec!["Database"],
            snap.keyspaces.keys().map(|k| vec![k.clone()]).collect(),
        ),
        ShowPlan::Shards => (
            vec!["Shards"],
            snap.keyspaces
                .values()
                .flat_map(|k| {
                    k.shards
                        .iter()
                        .map(move |s| vec![format!("{}/{}", k.name, s.name)])
                })
                .collect(),
        ),
        ShowPlan::Tablets => (
            vec![
                "Cell",
                "Keyspace",
                "Shard",
                "TabletType",
                "State",
                "Alias",
                "Hostname",
                "PrimaryTermStartTime",
            ],
            snap.tablets
                .values()
                .map(|t| {
                    vec![
                        t.alias
                            .rsplit_once('-')
                            .map(|(c, _)| c)
                            .unwrap_or("")
                            .to_string(),
                        t.keyspace.clone(),
                        t.shard.clone(),
                        t.tablet_type.as_str().to_ascii_uppercase(),
                        "SERVING".to_string(),
                        t.alias.clone(),
                        format!("{}:{}", t.hostname, t.port),
                        String::new(),
                    ]
                })
                .collect(),
        ),
        ShowPlan::VschemaTables(ks) => (
            vec!["Tables"],
            snap.keyspaces
                .get(ks)
                .map(|k| k.vschema.tables.keys().map(|t| vec![t.clone()]).collect())
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
pub mod testing {
    //! A recording VCursor and a collecting sink for engine tests.
    use super::*;

    /// Records (keyspace, shard, type, sql) of each call and answers with one row.
    #[derive(Default)]
    pub struct RecordingCursor {
        /// Calls made, in order.
        pub calls: Vec<(String, String, TabletType, String)>,
    }

    impl VCursor for RecordingCursor {
        async fn execute_shard<S: RowSink + Send>(
            &mut self,
            keyspace: &str,
            shard: &str,
            tablet_type: TabletType,
            sql: &str,
            _rename: bool,
            sink: &mut S,
        ) -> Result<(), Error> {
            self.calls
                .push((keyspace.into(), shard.into(), tablet_type, sql.into()));
            sink.columns(&[text_column("x")])?;
            sink.row(&[Value::Bytes(shard.as_bytes().to_vec())])?;
            sink.end_rows(0)
        }
    }

    /// Collects everything as strings.
    #[derive(Default)]
    pub struct CollectSink {
        /// Column names of the last result set.
        pub columns: Vec<String>,
        /// Rows, NULL as None.
        pub rows: Vec<Vec<Option<String>>>,
    }

    impl RowSink for CollectSink {
        fn columns(&mut self, cols: &[Column]) -> Result<(), Error> {
            self.columns = cols.iter().map(|c| c.name_str().to_string()).collect();
            Ok(())
        }
        fn row(&mut self, values: &[Value]) -> Result<(), Error> {
            self.rows.push(
                values
                    .iter()
                    .map(|v| match v {
                        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        _ => None,
                    })
                    .collect(),
            );
            Ok(())
        }
        fn end_rows(&mut self, _w: u16) -> Result<(), Error> {
            Ok(())
        }
        fn ok(&mut self, _d: QueryDone) -> Result<(), Error> {
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::planner::plan;
    use crate::sql::{classify, Target};
    use std::collections::BTreeMap;

    fn snap() -> Snapshot {
        let mut r = BTreeMap::new();
        for (k, v) in [
            ("global/keyspaces/commerce/Keyspace", "{}"),
            (
                "global/keyspaces/commerce/VSchema",
                r#"{"tables": {"product": {}, "corder": {}}}"#,
            ),
            ("global/keyspaces/commerce/shards/0/Shard", "{}"),
        ] {
            r.insert(k.to_string(), v.as_bytes().to_vec());
        }
        Snapshot::build(&r, &[], 1).unwrap()
    }

    #[tokio::test]
    async fn route_sends_the_statement_to_its_shard_once() {
        let s = snap();
        let sql = "select * from product where id = 1";
        let p = plan(
            &classify(sql).unwrap(),
            &Target::parse("commerce@rdonly").unwrap(),
            &s,
        )
        .unwrap();
        let (mut vc, mut sink) = (RecordingCursor::default(), CollectSink::default());
        execute(&p, sql, &s, &mut vc, &mut sink).await.unwrap();
        assert_eq!(
            vc.calls,
            vec![(
                "commerce".into(),
                "0".into(),
                TabletType::Rdonly,
                sql.to_string()
            )]
        );
        assert_eq!(sink.rows, vec![vec![Some("0".to_string())]]);
    }

    #[tokio::test]
    async fn show_statements_touch_no_tablet() {
        let s = snap();
        let p = plan(
            &classify("show vschema tables").unwrap(),
            &Target::parse("commerce").unwrap(),
            &s,
        )
        .unwrap();
        let (mut vc, mut sink) = (RecordingCursor::default(), CollectSink::default());
        execute(&p, "", &s, &mut vc, &mut sink).await.unwrap();
        assert!(vc.calls.is_empty());
        assert_eq!(sink.columns, vec!["Tables"]);
        assert_eq!(
            sink.rows,
            vec![
                vec![Some("corder".to_string())],
                vec![Some("product".to_string())]
            ]
        );
    }
}
