//! Lookup vindexes: a column whose rows' keyspace ids are kept in a table
//! (the lookup table, `from` columns → `to`) instead of computed from the
//! value. vtgate routes `col = v` and `col IN (...)` by reading that table,
//! and keeps it in step with the owner table's INSERTs, UPDATEs and
//! DELETEs; a drop-in must do both, or a cluster that moves between the two
//! proxies finds rows its lookup tables no longer point at.

use super::Vindex;

/// What a lookup table's `to` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The row's keyspace id, as bytes (`lookup`, `lookup_unique`,
    /// `consistent_lookup*`).
    KeyspaceId,
    /// The row's primary vindex value, whose `hash` is the keyspace id
    /// (`lookup_hash`, `lookup_hash_unique`).
    HashedValue,
}

/// One lookup vindex, as its VSchema entry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The vindex's name in the VSchema.
    pub name: String,
    /// A value maps to at most one keyspace id (`*_unique`).
    pub unique: bool,
    /// `consistent_lookup*`: a lookup row whose owner row is gone may be
    /// taken over by a new owner row, as vtgate does, instead of failing
    /// as a duplicate.
    pub consistent: bool,
    /// What `to` holds.
    pub to_kind: To,
    /// The keyspace named in `table` (`ks.tbl`), if any.
    pub keyspace: Option<String>,
    /// The lookup table.
    pub table: String,
    /// The lookup table's columns holding the owner's column values.
    pub from: Vec<String>,
    /// The lookup table's column holding the keyspace id (or value).
    pub to: String,
    /// Maintained on writes but never routed by (a lookup being backfilled).
    pub write_only: bool,
    /// Rows whose `from` values hold a NULL get no lookup row.
    pub ignore_nulls: bool,
}

/// Why a lookup vindex cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// A type whose lookup rows shardgate does not know how to read or write.
    #[error("lookup vindex {0}: type '{1}' is not supported")]
    Unsupported(String, String),
    /// A parameter the lookup needs is missing.
    #[error("lookup vindex {0}: the '{1}' parameter is missing")]
    Missing(String, &'static str),
}

/// True for the vindex types whose keyspace ids come from a lookup table.
pub fn is_lookup(kind: &str) -> bool {
    kind.starts_with("lookup") || kind.starts_with("consistent_lookup")
}

impl Lookup {
    /// The lookup vindex `name` describes; None when it is not a lookup.
    pub fn from_vindex(name: &str, v: &Vindex) -> Option<Result<Lookup, LookupError>> {
        if !is_lookup(&v.kind) {
            return None;
        }
        let (unique, consistent, to_kind) = match v.kind.as_str() {
            "lookup" => (false, false, To::KeyspaceId),
            "lookup_unique" => (true, false, To::KeyspaceId),
            "lookup_hash" => (false, false, To::HashedValue),
            "lookup_hash_unique" => (true, false, To::HashedValue),
            "consistent_lookup" => (false, true, To::KeyspaceId),
            "consistent_lookup_unique" => (true, true, To::KeyspaceId),
            other => {
                return Some(Err(LookupError::Unsupported(
                    name.to_string(),
                    other.to_string(),
                )))
            }
        };
        let param = |p: &'static str| {
            v.params
                .get(p)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| LookupError::Missing(name.to_string(), p))
        };
        let flag = |p: &str| v.params.get(p).is_some_and(|s| s.trim() == "true");
        Some((|| {
            let table = param("table")?;
            let (keyspace, table) = match table.split_once('.') {
                Some((ks, t)) => (Some(ks.to_string()), t.to_string()),
                None => (None, table),
            };
            Ok(Lookup {
                name: name.to_string(),
                unique,
                consistent,
                to_kind,
                keyspace,
                table,
                from: param("from")?
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .collect(),
                to: param("to")?,
                write_only: flag("write_only"),
                ignore_nulls: flag("ignore_nulls"),
            })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vindex(kind: &str, params: &[(&str, &str)]) -> Vindex {
        Vindex {
            kind: kind.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owner: Some("user".into()),
        }
    }

    #[test]
    fn reads_vitess_params() {
        let l = Lookup::from_vindex(
            "name_user_map",
            &vindex(
                "consistent_lookup_unique",
                &[
                    ("table", "lookups.name_user_idx"),
                    ("from", "name, region"),
                    ("to", "keyspace_id"),
                    ("write_only", "true"),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        assert!(l.unique && l.consistent && l.write_only && !l.ignore_nulls);
        assert_eq!(l.keyspace.as_deref(), Some("lookups"));
        assert_eq!(l.table, "name_user_idx");
        assert_eq!(l.from, ["name", "region"]);
        assert_eq!(l.to_kind, To::KeyspaceId);
        let h = Lookup::from_vindex(
            "h",
            &vindex(
                "lookup_hash",
                &[("table", "t"), ("from", "a"), ("to", "user_id")],
            ),
        )
        .unwrap()
        .unwrap();
        assert!(!h.unique && !h.consistent && h.keyspace.is_none());
        assert_eq!(h.to_kind, To::HashedValue);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(Lookup::from_vindex("h", &vindex("hash", &[])).is_none());
        assert_eq!(
            Lookup::from_vindex("m", &vindex("lookup_unique", &[("table", "t")])),
            Some(Err(LookupError::Missing("m".into(), "from")))
        );
        assert!(matches!(
            Lookup::from_vindex("c", &vindex("lookup_cost", &[])),
            Some(Err(LookupError::Unsupported(..)))
        ));
    }
}
