//! Plans as JSON: what `VEXPLAIN PLAN` prints and what the golden planner
//! tests compare. Names follow Vitess's (Route, EqualUnique, IN, Scatter...).

use serde_json::{json, Value};

use super::sharded::{AggKind, Gate, GateExpr, Operand, Routing, SelectPlan, Weight};
use super::{Plan, ShowPlan};

fn operand(o: &Operand) -> Value {
    match o {
        Operand::Bind(i) => json!(format!(":v{}", i + 1)),
        Operand::Lit(v) => json!(crate::sql::literal(v, false)),
    }
}

fn routing(r: &Routing) -> (&'static str, Value) {
    match r {
        Routing::Equal { func, value } => (
            "EqualUnique",
            json!({"vindex": format!("{func:?}").to_lowercase(), "values": [operand(value)]}),
        ),
        Routing::In { func, values } => (
            "IN",
            json!({"vindex": format!("{func:?}").to_lowercase(), "values": values.iter().map(operand).collect::<Vec<_>>()}),
        ),
        Routing::Between { func, low, high } => (
            "Between",
            json!({"vindex": format!("{func:?}").to_lowercase(), "values": [operand(low), operand(high)]}),
        ),
        Routing::Lookup {
            vindex,
            values,
            unique,
        } => (
            match (values.len(), unique) {
                (1, true) => "EqualUnique",
                (1, false) => "Equal",
                _ => "IN",
            },
            json!({"vindex": vindex, "values": values.iter().map(operand).collect::<Vec<_>>()}),
        ),
        Routing::Scatter => ("Scatter", json!({})),
        Routing::Any => ("Reference", json!({})),
    }
}

/// A sharded SELECT's route as JSON.
fn select(p: &SelectPlan) -> Value {
    let (variant, extra) = routing(&p.routing);
    let mut v = json!({
        "operator": "Route",
        "variant": variant,
        "keyspace": p.keyspace,
        "query": if matches!(p.routing, Routing::Equal { .. } | Routing::Any) { &p.original } else { p.pushdown.as_str() },
    });
    merge(&mut v, extra);
    if !p.same_shard.is_empty() {
        v["same_shard"] = json!(p.same_shard.iter().map(operand).collect::<Vec<_>>());
    }
    if let Some(g) = &p.gate {
        v["gate"] = gate(g);
    }
    v
}

/// A nested loop's side: another keyspace's route shows the text its
/// tablet runs.
fn side(plan: &Plan, text: &str) -> Value {
    let mut v = plan.describe();
    if matches!(plan, Plan::Route(_)) {
        v["query"] = json!(text);
    }
    v
}

fn gate_expr(e: &GateExpr) -> String {
    match e {
        GateExpr::Col(i) if *i >= super::sharded::HIDDEN => {
            format!("hidden{}", i - super::sharded::HIDDEN)
        }
        GateExpr::Col(i) => format!("col{i}"),
        GateExpr::Avg { sum, count } => format!("avg(col{sum}/col{count})"),
        GateExpr::CountDistinct(i) => format!("count_distinct(col{i})"),
        GateExpr::SumDistinct(i) => format!("sum_distinct(col{i})"),
        GateExpr::AvgDistinct(i) => format!("avg_distinct(col{i})"),
        GateExpr::Bind(i) => format!(":v{}", i + 1),
        GateExpr::Lit(v) => crate::sql::literal(v, false),
        GateExpr::Binary(l, op, r) => format!("({} {op} {})", gate_expr(l), gate_expr(r)),
        GateExpr::Unary(op, e) => format!("{op}{}", gate_expr(e)),
        GateExpr::IsNull(e, true) => format!("{} IS NULL", gate_expr(e)),
        GateExpr::IsNull(e, false) => format!("{} IS NOT NULL", gate_expr(e)),
        GateExpr::Collate(e, c) => format!("{} COLLATE {}", gate_expr(e), c.name()),
    }
}

/// ` COLLATE name` for a key the gate compares in a declared collation,
/// as vtgate's plans show it.
fn collate(w: Option<Weight>) -> String {
    match w {
        Some(Weight::Collation(c)) => format!(" COLLATE {}", c.name()),
        _ => String::new(),
    }
}

fn gate(g: &Gate) -> Value {
    let mut m = serde_json::Map::new();
    if !g.aggregate.is_empty() {
        let kinds: Vec<String> = g
            .aggregate
            .iter()
            .enumerate()
            .map(|(i, k)| match k {
                AggKind::Key => {
                    let weight = g.group_keys.iter().find(|(c, _)| *c == i);
                    format!("key{}", collate(weight.and_then(|(_, w)| *w)))
                }
                AggKind::Count => "count".into(),
                AggKind::Sum => "sum".into(),
                AggKind::Min { weight } => format!("min{}", collate(*weight)),
                AggKind::Max { weight } => format!("max{}", collate(*weight)),
                AggKind::Weight => "weight".into(),
                AggKind::BitAnd => "bit_and".into(),
                AggKind::BitOr => "bit_or".into(),
                AggKind::BitXor => "bit_xor".into(),
                AggKind::Concat(sep, n) => format!(
                    "group_concat({:?})",
                    String::from_utf8_lossy(&sep[..usize::from(*n).min(8)])
                ),
                AggKind::DistinctArg { weight } => format!("distinct{}", collate(*weight)),
            })
            .collect();
        m.insert(
            "aggregate".into(),
            json!(if g.scalar { "Scalar" } else { "Ordered" }),
        );
        m.insert("columns".into(), json!(kinds));
    }
    if let Some(out) = &g.output {
        m.insert(
            "output".into(),
            json!(out
                .iter()
                .map(|(e, n)| {
                    let n = crate::sql::normalize::column_name(n, &[]);
                    format!("{} as {n}", gate_expr(e))
                })
                .collect::<Vec<_>>()),
        );
    }
    if let Some(h) = &g.having {
        m.insert("having".into(), json!(gate_expr(h)));
    }
    if g.distinct {
        m.insert("distinct".into(), json!(true));
    }
    if !g.order.is_empty() {
        m.insert(
            "order".into(),
            json!(g
                .order
                .iter()
                .map(|k| format!(
                    "{}{}{}",
                    gate_expr(&k.expr),
                    collate(k.weight),
                    if k.desc { " DESC" } else { " ASC" }
                ))
                .collect::<Vec<_>>()),
        );
    }
    if let Some(l) = &g.limit {
        m.insert("limit".into(), operand(l));
    }
    if let Some(o) = &g.offset {
        m.insert("offset".into(), operand(o));
    }
    Value::Object(m)
}

impl Plan {
    /// The plan as JSON.
    pub fn describe(&self) -> Value {
        match self {
            Plan::Route(r) => json!({
                "operator": "Route",
                "variant": "Unsharded",
                "keyspace": r.keyspace,
                "shard": r.shard,
                "tablet_type": r.tablet_type.as_str(),
            }),
            Plan::Show(s) => json!({
                "operator": "Local",
                "variant": match s {
                    ShowPlan::Databases(_) => "ShowDatabases",
                    ShowPlan::Keyspaces(_) => "ShowKeyspaces",
                    ShowPlan::Shards(_) => "ShowShards",
                    ShowPlan::Tablets(_) => "ShowTablets",
                    ShowPlan::VschemaKeyspaces => "ShowVschemaKeyspaces",
                    ShowPlan::VschemaTables(_) => "ShowVschemaTables",
                    ShowPlan::VschemaVindexes(_) => "ShowVschemaVindexes",
                    ShowPlan::Target(_) => "ShowVitessTarget",
                },
            }),
            Plan::Select(p) => select(p),
            Plan::Pullout(p) => {
                let mut v = json!({
                    "operator": "UncorrelatedSubquery",
                    "keyspace": p.keyspace,
                    "subqueries": p.subqueries.iter().map(|s| json!({
                        "kind": format!("{:?}", s.kind),
                        "tested": s.tested,
                        "plan": s.plan.describe(),
                    })).collect::<Vec<_>>(),
                    "query": p.outer,
                });
                if !p.then.is_empty() {
                    v["then"] = json!(p.then);
                }
                v
            }
            Plan::Join(j) => {
                let mut v = json!({
                "operator": "Join",
                "variant": match (j.semi, j.outer) {
                    (Some(true), _) => "SemiJoin",
                    (Some(false), _) => "AntiJoin",
                    (None, true) => "LeftJoin",
                    (None, false) => "Join",
                },
                "vars": j.vars.iter().enumerate().map(|(i, c)| json!({format!(":v{}", j.first_var + i + 1): format!("lhs col{c}")})).collect::<Vec<_>>(),
                "output": j.output.iter().map(|c| match c {
                        super::join::JoinColumn::One(r, i) => format!("{} col{i}", if *r { "rhs" } else { "lhs" }),
                        super::join::JoinColumn::Rest(r, i) => format!("{} col{i}..", if *r { "rhs" } else { "lhs" }),
                    }).collect::<Vec<_>>(),
                "limit": j.limit.as_ref().map(operand),
                "offset": j.offset.as_ref().map(operand),
                "inputs": [side(&j.lhs, &j.lhs_sql), side(&j.rhs, &j.rhs_sql)],
                });
                if let Some(g) = &j.gate {
                    v["gate"] = gate(g);
                }
                if !j.right_nulls.is_empty() {
                    v["right_nulls"] = json!(j.right_nulls);
                }
                v
            }
            Plan::Insert(p) => json!({
                "operator": "Insert",
                "variant": "Sharded",
                "keyspace": p.keyspace,
                "vindex": format!("{:?}", p.func).to_lowercase(),
                "rows": p.rows.len(),
                "sequence": p.sequence.as_ref().map(|(k, t)| format!("{k}.{t}")),
                "query": format!("{}<rows>{}", p.prefix, p.suffix),
            }),
            Plan::Dml(p) => {
                let (variant, extra) = routing(&p.routing);
                let op = p
                    .original
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let mut v = json!({
                    "operator": if op == "delete" { "Delete" } else { "Update" },
                    "variant": variant,
                    "keyspace": p.keyspace,
                    "query": p.query,
                });
                merge(&mut v, extra);
                // vtgate's OwnedVindexQuery: the rows read first, locked,
                // whose lookup rows change.
                if !p.lookups.is_empty() {
                    let reads: Vec<&str> = p.lookups.iter().map(|l| l.select.as_str()).collect();
                    v["owned_vindex_query"] = json!(reads);
                }
                v
            }
            Plan::AllShards { keyspace } => {
                json!({"operator": "DDL", "variant": "AllShards", "keyspace": keyspace})
            }
            Plan::AnyShard { keyspace } => {
                json!({"operator": "Send", "variant": "AnyShard", "keyspace": keyspace})
            }
            Plan::Ignored => json!({"operator": "Rows"}),
            Plan::SelectInto { vars, inner } => json!({
                "operator": "SelectInto",
                "variables": vars,
                "inputs": [inner.describe()],
            }),
            Plan::CalcFoundRows { limited, count } => json!({
                "operator": "SQLCalcFoundRows",
                "inputs": [limited.describe(), count.describe()],
            }),
        }
    }
}

fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        a.extend(b);
    }
}
