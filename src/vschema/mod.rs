//! Vitess's keyspace VSchema, accepted as-is (JSON), and its validation.
//!
//! Unknown fields are rejected, as Vitess rejects them, and every message
//! names the keyspace, table or vindex at fault, because a VSchema arrives
//! from etcd while traffic is flowing and the log line is all an operator sees.

pub mod ddl;
mod des;
pub mod lookup;
mod unicode_loose;
pub mod vindex;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::collation::Collation;

/// Errors in a VSchema document.
#[derive(Debug, thiserror::Error)]
pub enum VSchemaError {
    /// Not valid JSON, or a field Vitess does not know.
    #[error("keyspace {keyspace}: invalid VSchema JSON: {source}")]
    Json {
        keyspace: String,
        #[source]
        source: serde_json::Error,
    },
    /// A semantic error.
    #[error("keyspace {keyspace}: {msg}")]
    Invalid { keyspace: String, msg: String },
}

/// One keyspace's VSchema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceVSchema {
    /// True when the keyspace is split over several shards by vindexes.
    #[serde(default)]
    pub sharded: bool,
    /// Named vindexes used by the tables' column_vindexes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vindexes: BTreeMap<String, Vindex>,
    /// Tables and how each is sharded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, Table>,
    /// When true, tables are only reachable with the keyspace named.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        alias = "requireExplicitRouting"
    )]
    pub require_explicit_routing: bool,
    /// Vitess's foreign-key handling mode (kept for compatibility).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "foreignKeyMode"
    )]
    pub foreign_key_mode: Option<String>,
    /// Vitess's multi-tenant spec (kept for compatibility, not used).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "multiTenantSpec"
    )]
    pub multi_tenant_spec: Option<serde_json::Value>,
}

/// A vindex definition: a function from column values to keyspace ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vindex {
    /// Vitess vindex type name (`hash`, `xxhash`, `lookup_unique`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The table that owns a lookup vindex's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A table's routing description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// "" (normal), "sequence" or "reference".
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Vindexes on this table; the first is the primary vindex.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        alias = "columnVindexes"
    )]
    pub column_vindexes: Vec<ColumnVindex>,
    /// A column filled from a sequence when an INSERT leaves it out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "autoIncrement"
    )]
    pub auto_increment: Option<AutoIncrement>,
    /// Declared columns (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<serde_json::Value>,
    /// Pins an unsharded-like table to one keyspace id (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// True when `columns` lists every column.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        alias = "columnListAuthoritative"
    )]
    pub column_list_authoritative: bool,
    /// For reference tables: the unsharded table they are copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Binds a vindex to one or more columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnVindex {
    /// The column (single-column form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The columns (multi-column form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// The vindex name, a key of `vindexes`.
    pub name: String,
}

impl ColumnVindex {
    /// The columns it maps, whichever form named them (a VSchema naming
    /// both is refused, as Vitess refuses it, so one form holds them).
    pub fn cols(&self) -> &[String] {
        match &self.column {
            Some(c) => std::slice::from_ref(c),
            None => &self.columns,
        }
    }
}

/// A column filled from a sequence table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoIncrement {
    /// The column to fill.
    pub column: String,
    /// The sequence table, optionally `keyspace.table`.
    pub sequence: String,
}

/// What a table's VSchema declares about a column, when that is enough for
/// the gate to order its values itself (see [`crate::collation`]): then the
/// shards are not asked for `weight_string()` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// A numeric type: compared by value.
    Number,
    /// A string type in a collation the gate knows.
    Text(Collation),
    /// ENUM or SET: shown as text, ordered by its number (an ENUM's
    /// position in its list, a SET's bits).
    Indexed,
}

/// Vitess's column type names (`querypb.Type`), as a VSchema's `columns`
/// spell them.
const COLUMN_TYPES: &[&str] = &[
    "NULL_TYPE",
    "INT8",
    "UINT8",
    "INT16",
    "UINT16",
    "INT24",
    "UINT24",
    "INT32",
    "UINT32",
    "INT64",
    "UINT64",
    "FLOAT32",
    "FLOAT64",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "DATETIME",
    "YEAR",
    "DECIMAL",
    "TEXT",
    "BLOB",
    "VARCHAR",
    "VARBINARY",
    "CHAR",
    "BINARY",
    "BIT",
    "ENUM",
    "SET",
    "TUPLE",
    "GEOMETRY",
    "JSON",
    "EXPRESSION",
    "HEXNUM",
    "HEXVAL",
    "BITNUM",
    "VECTOR",
    "RAW",
];

impl Table {
    /// The declared type of `column` (its name compared as MySQL does,
    /// without case), if it tells the gate how to order the values: a
    /// number, a binary string, or a text type whose `collation_name` the
    /// gate knows. A text type without a collation says nothing (the
    /// server's default is not the VSchema's to assume).
    pub fn declared(&self, column: &str) -> Option<Declared> {
        let c = self.columns.iter().find(|c| {
            c.get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(column))
        })?;
        let collation = c
            .get("collation_name")
            .or_else(|| c.get("collationName"))
            .and_then(|n| n.as_str());
        match c.get("type")?.as_str()? {
            "INT8" | "UINT8" | "INT16" | "UINT16" | "INT24" | "UINT24" | "INT32" | "UINT32"
            | "INT64" | "UINT64" | "FLOAT32" | "FLOAT64" | "DECIMAL" | "YEAR" => {
                Some(Declared::Number)
            }
            "BLOB" | "VARBINARY" | "BINARY" => Some(Declared::Text(Collation::Binary)),
            "TEXT" | "VARCHAR" | "CHAR" => {
                collation.and_then(Collation::from_name).map(Declared::Text)
            }
            "ENUM" | "SET" => Some(Declared::Indexed),
            _ => None,
        }
    }
}

/// Vindex types shardgate accepts: the functional ones are bit-exact with
/// Vitess; the lookup ones are read and kept by [`lookup`].
pub const KNOWN_VINDEX_TYPES: &[&str] = &[
    "hash",
    "xxhash",
    "numeric",
    "binary",
    "binary_md5",
    "reverse_bits",
    "null",
    "unicode_loose_md5",
    "unicode_loose_xxhash",
    "numeric_static_map",
    "region_experimental",
    "region_json",
    "lookup",
    "lookup_unique",
    "lookup_hash",
    "lookup_hash_unique",
    "consistent_lookup",
    "consistent_lookup_unique",
    "cfc",
    "multicol",
];

/// The bytes of a hex string (a pinned table's keyspace id, a key
/// range's bound); None when it is not one.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyspaceVSchema {
    /// Parses and validates a keyspace VSchema document.
    pub fn from_json(keyspace: &str, text: &[u8]) -> Result<Self, VSchemaError> {
        let vs: KeyspaceVSchema =
            serde_json::from_slice(text).map_err(|source| VSchemaError::Json {
                keyspace: keyspace.to_string(),
                source,
            })?;
        vs.validate(keyspace)?;
        Ok(vs)
    }

    /// Checks the document's internal consistency.
    pub fn validate(&self, keyspace: &str) -> Result<(), VSchemaError> {
        let bad = |msg: String| VSchemaError::Invalid {
            keyspace: keyspace.to_string(),
            msg,
        };
        for (name, v) in &self.vindexes {
            if !KNOWN_VINDEX_TYPES.contains(&v.kind.as_str()) && v.kind != "hash_test" {
                return Err(bad(format!(
                    "vindex {name}: unknown vindex type '{}'",
                    v.kind
                )));
            }
            if let Some(owner) = &v.owner {
                if !self.tables.contains_key(owner) {
                    return Err(bad(format!(
                        "vindex {name}: owner table '{owner}' is not in the VSchema"
                    )));
                }
            }
        }
        for (tname, t) in &self.tables {
            match t.kind.as_str() {
                "" | "sequence" | "reference" => {}
                other => return Err(bad(format!("table {tname}: unknown table type '{other}'"))),
            }
            if t.kind == "sequence" && self.sharded {
                return Err(bad(format!(
                    "table {tname}: sequence tables must live in an unsharded keyspace"
                )));
            }
            if !self.sharded && !t.column_vindexes.is_empty() {
                return Err(bad(format!(
                    "table {tname}: column_vindexes in an unsharded keyspace"
                )));
            }
            if self.sharded
                && t.kind.is_empty()
                && t.column_vindexes.is_empty()
                && t.pinned.is_none()
            {
                return Err(bad(format!(
                    "table {tname}: a sharded table needs a primary vindex (column_vindexes)"
                )));
            }
            if let Some(p) = &t.pinned {
                if unhex(p).is_none() {
                    return Err(bad(format!(
                        "table {tname}: pinned keyspace id '{p}' is not hex"
                    )));
                }
            }
            for cv in &t.column_vindexes {
                if cv.column.is_none() && cv.columns.is_empty() {
                    return Err(bad(format!(
                        "must specify at least one column for vindex ({}) and table ({tname})",
                        cv.name
                    )));
                }
                if cv.column.is_some() && !cv.columns.is_empty() {
                    return Err(bad(format!(
                        "can't use column and columns at the same time in vindex ({}) and table ({tname})",
                        cv.name
                    )));
                }
                if !self.vindexes.contains_key(&cv.name) {
                    return Err(bad(format!(
                        "table {tname}: column vindex '{}' is not defined in vindexes",
                        cv.name
                    )));
                }
            }
            for c in &t.columns {
                let name = c.get("name").and_then(|n| n.as_str());
                let Some(name) = name.filter(|n| !n.is_empty()) else {
                    return Err(bad(format!("table {tname}: a column without a name: {c}")));
                };
                match c.get("type") {
                    None => {}
                    Some(serde_json::Value::String(ty)) if COLUMN_TYPES.contains(&ty.as_str()) => {}
                    Some(ty) => {
                        return Err(bad(format!(
                            "table {tname}: column {name}: unknown type {ty}"
                        )))
                    }
                }
            }
            if let Some(ai) = &t.auto_increment {
                if ai.column.is_empty() || ai.sequence.is_empty() {
                    return Err(bad(format!(
                        "table {tname}: auto_increment needs column and sequence"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_vitess_example() {
        let doc = br#"{"sharded": true,
            "vindexes": {"hash": {"type": "hash"}},
            "tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}],
                                    "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}}}}"#;
        let vs = KeyspaceVSchema::from_json("customer", doc).unwrap();
        assert!(vs.sharded);
        assert_eq!(vs.tables["customer"].column_vindexes[0].name, "hash");
    }

    /// A column vindex names its columns in one form, `column` or
    /// `columns`, as Vitess requires: both, or neither, is refused with
    /// Vitess's words; either alone maps the same columns.
    #[test]
    fn a_column_vindex_names_its_columns_one_way() {
        let doc = |cv: &str| {
            format!(
                r#"{{"sharded": true, "vindexes": {{"hash": {{"type": "hash"}}}},
                "tables": {{"t": {{"column_vindexes": [{cv}]}}}}}}"#
            )
        };
        let err = |cv: &str| {
            KeyspaceVSchema::from_json("ks", doc(cv).as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(r#"{"column": "a", "columns": ["b"], "name": "hash"}"#),
            "keyspace ks: can't use column and columns at the same time in vindex (hash) and table (t)"
        );
        assert_eq!(
            err(r#"{"name": "hash"}"#),
            "keyspace ks: must specify at least one column for vindex (hash) and table (t)"
        );
        for cv in [
            r#"{"column": "a", "name": "hash"}"#,
            r#"{"columns": ["a"], "name": "hash"}"#,
        ] {
            let vs = KeyspaceVSchema::from_json("ks", doc(cv).as_bytes()).unwrap();
            assert_eq!(vs.tables["t"].column_vindexes[0].cols(), ["a".to_string()]);
        }
    }

    #[test]
    fn rejects_with_names() {
        let err = KeyspaceVSchema::from_json(
            "customer",
            br#"{"sharded": true, "tables": {"t": {"column_vindexes": [{"column": "id", "name": "nope"}]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("customer") && err.contains("table t") && err.contains("nope"),
            "{err}"
        );
        let err = KeyspaceVSchema::from_json(
            "ks",
            br#"{"tables": {"t": {"columns": [{"name": "c", "type": "VARCHAR(10)"}]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("column c: unknown type \"VARCHAR(10)\""),
            "{err}"
        );
        let err = KeyspaceVSchema::from_json("ks", br#"{"sharded": false, "tablez": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tablez"), "{err}");
    }

    #[test]
    fn reads_camel_case_and_pinned_tables() {
        let vs = KeyspaceVSchema::from_json(
            "ks",
            br#"{"sharded": true, "foreignKeyMode": "unmanaged", "requireExplicitRouting": true,
                 "vindexes": {"h": {"type": "hash"}},
                 "tables": {"t": {"columnVindexes": [{"column": "id", "name": "h"}],
                                  "autoIncrement": {"column": "id", "sequence": "s"}},
                            "p": {"pinned": "80"}}}"#,
        )
        .unwrap();
        assert!(vs.require_explicit_routing);
        assert_eq!(vs.tables["t"].column_vindexes[0].name, "h");
        assert!(vs.tables["t"].auto_increment.is_some());
        assert_eq!(unhex("80a0"), Some(vec![0x80, 0xa0]));
        assert_eq!(unhex("8"), None);
        let err = KeyspaceVSchema::from_json(
            "ks",
            br#"{"sharded": true, "tables": {"p": {"pinned": "zz"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not hex"), "{err}");
    }

    #[test]
    fn declared_column_types() {
        let vs = KeyspaceVSchema::from_json(
            "ks",
            br#"{"tables": {"t": {"columns": [
                {"name": "id", "type": "INT64"},
                {"name": "c", "type": "CHAR", "collation_name": "utf8mb4_general_ci"},
                {"name": "u", "type": "VARCHAR", "collation_name": "utf8mb4_unicode_ci"},
                {"name": "v", "type": "VARCHAR"},
                {"name": "b", "type": "VARBINARY"},
                {"name": "d", "type": "DATETIME"},
                {"name": "n"}]}}}"#,
        )
        .unwrap();
        let t = &vs.tables["t"];
        assert_eq!(t.declared("ID"), Some(Declared::Number));
        assert_eq!(
            t.declared("c"),
            Some(Declared::Text(Collation::Utf8GeneralCi))
        );
        assert_eq!(t.declared("b"), Some(Declared::Text(Collation::Binary)));
        for unknown in ["u", "v", "d", "n", "missing"] {
            assert_eq!(t.declared(unknown), None, "{unknown}");
        }
    }
}
