//! A query of the system schemas that names a keyspace (`table_schema =
//! 'customer'`) goes to a tablet with the tablet's database name in its
//! place; its answer names that database (`vt_customer`) in the columns
//! that hold a schema's name. Here the keyspace's name is put back, so
//! that a tool that asks about `customer` is told about `customer` (an ORM
//! that matches the rows to the name it asked for otherwise finds no
//! table, and makes it again on its next start). vtgate passes the
//! tablet's names through.

use mysql_common::packets::Column;
use mysql_common::value::Value;

use crate::engine::{Gather, RowSink};
use crate::error::Error;

/// Whether a column of a system schema's table holds a schema's name, by
/// the name the table gives it (an alias keeps it as the original name).
fn names_a_schema(c: &Column) -> bool {
    let name = match c.org_name_ref() {
        [] => c.name_ref(),
        org => org,
    };
    crate::sql::SCHEMA_COLUMNS
        .iter()
        .any(|s| s.as_bytes().eq_ignore_ascii_case(name))
}

/// Writes `answer` to `sink`, each schema-name cell that holds a
/// keyspace's database (`names`: database, keyspace) as the keyspace.
pub(super) fn replay<S: RowSink>(
    mut answer: Gather,
    names: &[(String, String)],
    sink: &mut S,
) -> Result<(), Error> {
    if answer.columns.is_empty() {
        return sink.ok(answer.done);
    }
    let at: Vec<usize> = (0..answer.columns.len())
        .filter(|&i| names_a_schema(&answer.columns[i]))
        .collect();
    for row in &mut answer.rows {
        for &i in &at {
            let Some(Value::Bytes(b)) = row.get(i) else {
                continue;
            };
            if let Some((_, ks)) = names.iter().find(|(db, _)| db.as_bytes() == b.as_slice()) {
                row[i] = Value::Bytes(ks.as_bytes().to_vec());
            }
        }
    }
    sink.columns(&answer.columns)?;
    for row in &answer.rows {
        sink.row(row)?;
    }
    sink.end_rows(answer.done.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::constants::ColumnType;

    #[test]
    fn schema_columns_name_the_keyspace() {
        let col = |name: &[u8], org: &[u8]| {
            Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
                .with_name(name)
                .with_org_name(org)
        };
        let b = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        let mut answer = Gather::new(10);
        answer.columns = vec![
            col(b"s", b"TABLE_SCHEMA"),
            col(b"TABLE_NAME", b"TABLE_NAME"),
            col(b"SCHEMA_NAME", b""),
        ];
        answer.rows = vec![
            vec![b("vt_customer"), b("vt_customer"), b("vt_customer")],
            vec![b("mysql"), b("t"), Value::NULL],
        ];
        let names = vec![("vt_customer".to_string(), "customer".to_string())];
        let mut out = Gather::new(10);
        replay(answer, &names, &mut out).unwrap();
        assert_eq!(
            out.rows[0],
            vec![b("customer"), b("vt_customer"), b("customer")]
        );
        assert_eq!(out.rows[1], vec![b("mysql"), b("t"), Value::NULL]);
        assert_eq!(out.columns.len(), 3);
    }
}
