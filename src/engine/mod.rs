//! The engine runs a [`Plan`]. It reaches tablets only through [`VCursor`]
//! and hands rows to a [`RowSink`], so it can be tested with a recording fake
//! cursor and a collecting sink. Results stream: one shard's rows go straight
//! to the client; several shards' rows are interleaved as they arrive, or
//! merged in order when the statement sorts, read in place ([`row`]).
//! Groupings (DISTINCT, GROUP BY) merge the shards' groups, sorted by the
//! grouping keys, and fold each as it passes; COUNT(DISTINCT), an ORDER BY
//! other than the grouping's, or keys the shards may sort otherwise gather
//! the shards' partial results (one row per group per shard) before
//! combining them ([`gate`]).

pub mod gate;
mod lookup;
pub mod row;

use mysql_common::constants::{ColumnFlags, ColumnType};
use mysql_common::packets::Column;
use mysql_common::value::Value;
use std::borrow::Cow;

use crate::error::Error;
use crate::planner::join::{JoinColumn, JoinPlan};
use crate::planner::pullout::{PulloutKind, PulloutPlan};
use crate::planner::sharded::{DmlPlan, Gate, InsertPlan, NewValue, Operand, Routing, SelectPlan};
use crate::planner::{Plan, PlanError, Route, ShowPlan};
use crate::sql::normalize::{substitute_binds, Bind};
use crate::sql::TabletType;
use crate::topo::{Keyspace, Snapshot};
use crate::vschema::vindex::Func;
use row::{OwnedRow, ShardRows, TextRow};

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

impl QueryDone {
    /// The rows an UPDATE matched, from MySQL's info text (`Rows matched:
    /// 3  Changed: 1  Warnings: 0`): what a client that connected with
    /// CLIENT_FOUND_ROWS is told as its affected rows (the gate's tablet
    /// connections do not ask for it: they are shared by every client).
    pub fn rows_matched(&self) -> Option<u64> {
        update_info(&self.info).map(|(matched, ..)| matched)
    }

    /// Several tablets' OKs for one statement as one: counts added, the
    /// first insert id, and an UPDATE's info text added up too when every
    /// part has one (so its matched rows survive the sum).
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a QueryDone>) -> QueryDone {
        let mut done = QueryDone::default();
        let mut info = Some((0u64, 0u64, 0u64));
        let mut any = false;
        for p in parts {
            any = true;
            done.affected_rows += p.affected_rows;
            done.warnings = done.warnings.saturating_add(p.warnings);
            if done.last_insert_id == 0 {
                done.last_insert_id = p.last_insert_id;
            }
            info = info
                .zip(update_info(&p.info))
                .map(|((m, c, w), (pm, pc, pw))| (m + pm, c + pc, w + pw));
        }
        if let Some((m, c, w)) = info.filter(|_| any) {
            done.info = format!("Rows matched: {m}  Changed: {c}  Warnings: {w}");
        }
        done
    }
}

/// An UPDATE's info text, parsed: (matched, changed, warnings).
fn update_info(info: &str) -> Option<(u64, u64, u64)> {
    let mut nums = info
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    let shaped = info.starts_with("Rows matched:") && info.contains("Changed:");
    shaped
        .then(|| Some((nums.next()?, nums.next()?, nums.next().unwrap_or(0))))
        .flatten()
}

/// Where results go. The frontend's implementation encodes packets; tests collect.
pub trait RowSink {
    /// A result set with these columns begins.
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error>;
    /// One row of the current result set (text values: bytes or NULL).
    fn row(&mut self, values: &[Value]) -> Result<(), Error>;
    /// One row of the current result set as a shard encoded it (a merge's
    /// rows, read in place); a sink that writes packets encodes it without
    /// decoding it first.
    fn text_row(&mut self, row: TextRow<'_>) -> Result<(), Error> {
        self.row(&row.to_values())
    }
    /// The current result set ended.
    fn end_rows(&mut self, warnings: u16) -> Result<(), Error>;
    /// An OK-only result.
    fn ok(&mut self, done: QueryDone) -> Result<(), Error>;
    /// Lets the sink write out what it buffered (called between rows); a
    /// sink that buffers nothing has nothing to do.
    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }
    /// The sink's door for a tablet's result packets, when it writes them to
    /// the client in the same protocol (`binary`: a prepared statement's
    /// rows; else text rows): a result that comes whole from one tablet then
    /// needs no decoding.
    fn packets(&mut self, binary: bool) -> Option<&mut dyn PacketSink> {
        let _ = binary;
        None
    }
    /// Takes at most `cap` more rows of what follows and drops the rest
    /// (None: all of them): the session's `sql_select_limit` on a client's
    /// result, applied where the client's rows are written so that no
    /// query the gate sends for it is cut. Only a sink that writes to a
    /// client has anything to do.
    fn limit_rows(&mut self, cap: Option<u64>) {
        let _ = cap;
    }
}

/// Takes a tablet's result packets as they are (see [`RowSink::packets`]);
/// terminators still go through [`RowSink`].
pub trait PacketSink {
    /// A result set begins; its column definitions as the tablet encoded them.
    fn column_packets(&mut self, defs: &[bytes::BytesMut]);
    /// One row as the tablet encoded it.
    fn row_packet(&mut self, payload: &[u8]);
    /// Rows as the tablet framed them: whole packets back to back, header
    /// and payload, none continued in another frame. A sink that writes
    /// packets can copy a run at once and number them (a range's hundred
    /// rows often arrive in one read).
    fn framed_rows(&mut self, framed: &[u8]) {
        let mut rest = framed;
        while let Some(len) = crate::frontend::codec::whole_frame(rest) {
            self.row_packet(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
    }
}

/// Everything one shard answered to one query (buffered).
#[derive(Debug, Clone, Default)]
pub struct ShardResult {
    /// Column definitions (empty for OK-only results).
    pub columns: Vec<Column>,
    /// Rows (text values).
    pub rows: Vec<Vec<Value>>,
    /// OK packet fields.
    pub done: QueryDone,
}

/// A scatter's statement as a tablet prepares it: the same SQL and
/// parameters for every shard (see [`crate::sql::normalize::Template::fill_params`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedQuery {
    /// The SQL, `?` where a parameter goes.
    pub sql: String,
    /// The parameters, in order.
    pub params: Vec<Value>,
}

/// The open results of one query sent to several shards.
pub struct ShardStreams<'a> {
    /// Column definitions (the first shard's), shared with the prepared
    /// statement that keeps them when there is one.
    pub columns: std::sync::Arc<[Column]>,
    /// One stream per shard that answered with rows.
    pub streams: Vec<Box<dyn ShardRows + 'a>>,
}

/// Reads the streams of a scatter (the engine's merge); the cursor gets the
/// connections back once it returns.
pub trait ScatterConsumer {
    /// Consumes the shards' rows.
    fn consume(
        &mut self,
        streams: ShardStreams<'_>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send;
}

/// The engine's only door to tablets.
pub trait VCursor {
    /// Sends one query per shard (concurrently) and lets `consumer` read the
    /// rows while they arrive, so a large scatter never sits in memory.
    /// `prepared`: the same statement for every shard as the tablets may
    /// run it prepared (its rows then binary, read as text cells), when
    /// the client takes binary rows; the text queries stay the fallback.
    fn stream_multi<C: ScatterConsumer + Send>(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
        prepared: Option<&PreparedQuery>,
        consumer: &mut C,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send;

    /// Runs one query per shard (concurrently) and returns every result.
    fn execute_multi(
        &mut self,
        keyspace: &str,
        tablet_type: TabletType,
        queries: Vec<(String, String)>,
    ) -> impl std::future::Future<Output = Result<Vec<ShardResult>, Error>> + Send;

    /// Takes `count` consecutive ids from a sequence table; returns the first.
    fn next_sequence(
        &mut self,
        keyspace: &str,
        table: &str,
        count: u64,
    ) -> impl std::future::Future<Output = Result<u64, Error>> + Send;

    /// Records what LAST_INSERT_ID() returns for the session from now on.
    fn set_last_insert_id(&mut self, id: u64);

    /// Whether the health checks find the tablet `alias` serving, that is
    /// answering (SHOW VITESS_TABLETS' State; a lagging replica serves, as
    /// a lagging vttablet does); a cursor that knows no health says every
    /// tablet serves, as shardgate does with the checks off.
    fn serving(&self, alias: &str) -> bool {
        let _ = alias;
        true
    }

    /// How many rows a statement may hold in memory at once
    /// (`--max_memory_rows`).
    fn max_memory_rows(&self) -> usize {
        DEFAULT_MAX_MEMORY_ROWS
    }

    /// The topology's current problems (see
    /// [`crate::topo::watch::WatchStats::problems`]), for the SHOWs that
    /// report them.
    fn topology_problems(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether a read may go to every shard of a keyspace (vtgate's
    /// `--no_scatter` refuses it unless the statement says
    /// `/*vt+ ALLOW_SCATTER */`).
    fn scatter_allowed(&self) -> bool {
        true
    }

    /// Whether the session reads strings as NO_BACKSLASH_ESCAPES says:
    /// values the engine writes back into SQL text (a nested loop's join
    /// variables, run-first answers, lookup rows) are quoted so.
    fn no_backslash_escapes(&self) -> bool {
        false
    }

    /// Whether a transaction may span shards (not under
    /// `--transaction_mode=SINGLE`): a statement that reads other shards
    /// before it writes runs in one only then.
    fn multi_shard_transactions(&self) -> bool {
        true
    }

    /// Makes one statement's several writes (rows on several shards, a
    /// row and its lookup rows) all or none: a transaction of their own
    /// when the session has none open, as vtgate opens one; inside the
    /// session's transaction a savepoint, so that a failure on one shard
    /// takes back what the others did, as one MariaDB takes back a failed
    /// statement (vtgate reverts to a savepoint too). What it opened
    /// [`VCursor::end_implicit`] must end.
    fn begin_implicit(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Implicit, Error>> + Send {
        async { Ok(Implicit::Nothing) }
    }

    /// Ends what `begin_implicit` opened: the statement's transaction
    /// committed or rolled back; its savepoint forgotten, or rolled back
    /// to (an error when that failed: the transaction was rolled back
    /// whole).
    fn end_implicit(
        &mut self,
        opened: Implicit,
        commit: bool,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        let _ = (opened, commit);
        async { Ok(()) }
    }

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

/// What [`VCursor::begin_implicit`] opened for one statement's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implicit {
    /// Nothing: the writes run in what is open (an enclosing part of the
    /// same statement opened it), or on one shard.
    Nothing,
    /// A transaction of the statement's own.
    Transaction,
    /// A savepoint in the session's transaction.
    Savepoint,
}

/// vtgate's default for `--max_memory_rows`.
pub const DEFAULT_MAX_MEMORY_ROWS: usize = 300_000;

/// Runs a plan for statement text `sql` (bind values in `binds` when the
/// plan was made from a normalized template).
pub async fn execute<V: VCursor + Send, S: RowSink + Send>(
    plan: &Plan,
    sql: &str,
    binds: &[Bind],
    tablet_type: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    match plan {
        // A subquery, or a UNION's part, that names another shard than the
        // statement runs first after all.
        Plan::Select(p) if !p.same_shard.is_empty() => match select_dispatch(p, binds, snap) {
            Ok(dispatch) => exec_dispatched(p, dispatch, binds, tablet_type, vc, sink).await,
            Err(Error::Plan(refused @ PlanError::Unsupported(_))) => {
                let ks = keyspace_of(snap, &p.keyspace)?;
                let sqlparser::ast::Statement::Query(q) =
                    crate::planner::sharded::parse(&p.original)?
                else {
                    return Err(Error::Plan(refused));
                };
                use crate::planner::pullout;
                let pulled = pullout::plan(&q, ks, snap, refused)
                    .or_else(|refused| pullout::plan_derived(&q, ks, snap, refused))
                    .or_else(|refused| pullout::plan_union(&q, ks, snap, refused))?;
                Box::pin(exec_pullout(&pulled, binds, tablet_type, snap, vc, sink)).await
            }
            Err(e) => Err(e),
        },
        Plan::Select(p) => exec_select(p, binds, tablet_type, snap, vc, sink).await,
        Plan::Insert(p) => Box::pin(exec_insert(p, binds, snap, vc, sink)).await,
        Plan::Dml(p) => Box::pin(exec_dml(p, binds, snap, vc, sink)).await,
        Plan::Join(p) => Box::pin(exec_join(p, binds, tablet_type, snap, vc, sink)).await,
        Plan::Pullout(p) => Box::pin(exec_pullout(p, binds, tablet_type, snap, vc, sink)).await,
        Plan::AllShards { keyspace } => {
            let ks = keyspace_of(snap, keyspace)?;
            let queries = ks
                .shards
                .iter()
                .map(|s| (s.name.clone(), sql.to_string()))
                .collect();
            let results =
                Box::pin(vc.execute_multi(keyspace, TabletType::Primary, queries)).await?;
            // Table maintenance answers with rows: every shard's, in turn.
            if let Some(first) = results.iter().find(|r| !r.columns.is_empty()) {
                sink.columns(&first.columns)?;
                for row in results.iter().flat_map(|r| &r.rows) {
                    sink.row(row)?;
                }
                return sink.end_rows(QueryDone::sum(results.iter().map(|r| &r.done)).warnings);
            }
            let mut done = results
                .into_iter()
                .next()
                .map(|r| r.done)
                .unwrap_or_default();
            done.info.clear();
            sink.ok(done)
        }
        Plan::Ignored => sink.ok(QueryDone::default()),
        // The session assigns the variables (see `Session::select_into`)
        // and keeps FOUND_ROWS().
        Plan::SelectInto { .. } => Err(Error::Plan(PlanError::Unsupported(
            "SELECT ... INTO variables inside another statement".into(),
        ))),
        Plan::CalcFoundRows { .. } => Err(Error::Plan(PlanError::Unsupported(
            "SQL_CALC_FOUND_ROWS inside another statement".into(),
        ))),
        Plan::AnyShard { keyspace } => {
            let ks = keyspace_of(snap, keyspace)?;
            let shard = first_shard(ks)?;
            vc.execute_shard(keyspace, shard, tablet_type, sql, true, sink)
                .await
        }
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
            let problems = match show {
                ShowPlan::VschemaKeyspaces => vc.topology_problems(),
                _ => Vec::new(),
            };
            let (names, rows) = show_rows(show, snap, |a| vc.serving(a), &problems);
            text_result(&names, rows, sink)
        }
    }
}

/// A result the gate answers itself: text columns named `names`, `rows`
/// of text (SHOW statements the gate knows).
pub fn text_result<S: RowSink, R: IntoIterator<Item = String>>(
    names: &[&str],
    rows: impl IntoIterator<Item = R>,
    sink: &mut S,
) -> Result<(), Error> {
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

fn keyspace_of<'a>(snap: &'a Snapshot, name: &str) -> Result<&'a Keyspace, Error> {
    snap.keyspaces
        .get(name)
        .ok_or_else(|| Error::Plan(PlanError::UnknownKeyspace(name.to_string())))
}

fn first_shard(ks: &Keyspace) -> Result<&str, Error> {
    ks.shards.first().map(|s| s.name.as_str()).ok_or_else(|| {
        Error::Plan(PlanError::Unsupported(format!(
            "keyspace {} has no shards",
            ks.name
        )))
    })
}

fn operand_value(op: &Operand, binds: &[Bind]) -> Value {
    match op {
        Operand::Bind(i) => binds
            .get(*i)
            .map(|b| b.value.clone())
            .unwrap_or(Value::NULL),
        Operand::Lit(v) => v.clone(),
    }
}

fn operand_text(op: &Operand, binds: &[Bind]) -> String {
    match op {
        Operand::Bind(i) => binds
            .get(*i)
            .map(|b| b.text().into_owned())
            .unwrap_or_else(|| "NULL".into()),
        Operand::Lit(v) => crate::sql::literal(v, false),
    }
}

/// The shard holding a keyspace id.
pub fn shard_for<'a>(ks: &'a Keyspace, ksid: &[u8]) -> Option<&'a str> {
    ks.shards
        .iter()
        .find(|s| s.key_range.contains(ksid))
        .map(|s| s.name.as_str())
}

fn map_value(func: Func, v: &Value) -> Result<Option<crate::vschema::vindex::KeyspaceId>, Error> {
    func.map(v)
        .map_err(|e| Error::Plan(PlanError::Unsupported(e.to_string())))
}

/// Shards of an IN route, each with its own values' SQL text.
fn in_groups(
    ks: &Keyspace,
    func: Func,
    values: &[Operand],
    binds: &[Bind],
) -> Result<Vec<(String, Vec<String>)>, Error> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for op in values {
        let Some(ksid) = map_value(func, &operand_value(op, binds))? else {
            continue;
        };
        let Some(shard) = shard_for(ks, &ksid) else {
            continue;
        };
        let text = operand_text(op, binds);
        match groups.iter_mut().find(|(s, _)| s == shard) {
            Some((_, v)) => v.push(text),
            None => groups.push((shard.to_string(), vec![text])),
        }
    }
    Ok(groups)
}

/// Shards a Between route reaches: those whose key ranges meet the ids of
/// `[low, high]`; every shard when a bound has no keyspace id (NULL, not a
/// number) or the ids run backwards (negative numbers wrap), where the
/// range says nothing about placement.
fn between_shards<'a>(
    ks: &'a Keyspace,
    func: Func,
    low: &Operand,
    high: &Operand,
    binds: &[Bind],
) -> Result<Vec<&'a str>, Error> {
    let lo = map_value(func, &operand_value(low, binds))?;
    let hi = map_value(func, &operand_value(high, binds))?;
    let bounds = match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    };
    Ok(ks
        .shards
        .iter()
        .filter(|s| {
            bounds
                .as_ref()
                .is_none_or(|(lo, hi)| s.key_range.overlaps(lo, hi))
        })
        .map(|s| s.name.as_str())
        .collect())
}

/// Where a SELECT goes: whole to one shard, or split over several.
enum Dispatch<'a> {
    /// The statement as written, to this shard (named by the snapshot
    /// where it can be: a point query allocates nothing for it).
    Whole(Cow<'a, str>),
    /// The pushed-down query to each of these shards (with that shard's own
    /// IN values when the list was pruned); the gate combines.
    Split(Vec<(String, Option<Vec<String>>)>),
}

/// One shard a statement goes to whole: (keyspace, shard, tablet type),
/// borrowed from the plan where it names them.
pub type WholeShard<'a> = (&'a str, Cow<'a, str>, TabletType);

/// Where a plan sends its statement whole, unchanged, to one shard. Such a
/// statement can run as a prepared statement on that tablet.
pub fn whole_shard<'a>(
    plan: &'a Plan,
    binds: &[Bind],
    tablet_type: TabletType,
    snap: &'a Snapshot,
) -> Result<Option<WholeShard<'a>>, Error> {
    Ok(match plan {
        Plan::Route(r) if !r.rename_db_columns => Some((
            r.keyspace.as_str(),
            Cow::Borrowed(r.shard.as_str()),
            r.tablet_type,
        )),
        // Its subqueries' shards are checked by the engine.
        Plan::Select(p) if !p.same_shard.is_empty() => None,
        // Its shards are read from the lookup table.
        Plan::Select(p) if matches!(p.routing, Routing::Lookup { .. }) => None,
        Plan::Select(p) => match select_dispatch(p, binds, snap)? {
            Dispatch::Whole(shard) => Some((p.keyspace.as_str(), shard, tablet_type)),
            Dispatch::Split(_) => None,
        },
        // Its lookup rows are written apart.
        Plan::Dml(p) if !p.lookups.is_empty() => None,
        Plan::Dml(p) => {
            let ks = keyspace_of(snap, &p.keyspace)?;
            let shard = match &p.routing {
                Routing::Equal { func, value } => map_value(*func, &operand_value(value, binds))?
                    .and_then(|ksid| shard_for(ks, &ksid).map(str::to_string)),
                Routing::In { func, values } => match in_groups(ks, *func, values, binds)? {
                    mut g if g.len() == 1 => Some(g.remove(0).0),
                    _ => None,
                },
                Routing::Between { func, low, high } => {
                    match between_shards(ks, *func, low, high, binds)?.as_slice() {
                        [one] => Some(one.to_string()),
                        _ => None,
                    }
                }
                Routing::Lookup { .. } | Routing::Scatter | Routing::Any => None,
            };
            shard.map(|s| (p.keyspace.as_str(), Cow::Owned(s), TabletType::Primary))
        }
        _ => None,
    })
}

/// Where a SELECT goes for these bind values.
fn select_dispatch<'a>(
    p: &SelectPlan,
    binds: &[Bind],
    snap: &'a Snapshot,
) -> Result<Dispatch<'a>, Error> {
    let ks = keyspace_of(snap, &p.keyspace)?;
    Ok(match &p.routing {
        Routing::Equal { func, value } => {
            let shard = match map_value(*func, &operand_value(value, binds))? {
                Some(ksid) => shard_for(ks, &ksid).unwrap_or(first_shard(ks)?),
                // No keyspace id (NULL): no row can match; any shard answers with the columns.
                None => return Ok(Dispatch::Whole(Cow::Borrowed(first_shard(ks)?))),
            };
            // Subqueries that name a shard of their own must name this one.
            for v in &p.same_shard {
                if let Some(ksid) = map_value(*func, &operand_value(v, binds))? {
                    if shard_for(ks, &ksid).is_some_and(|s| s != shard) {
                        return Err(Error::Plan(PlanError::Unsupported(
                            "subqueries that do not go to one shard: this one names another shard than the statement's"
                                .into(),
                        )));
                    }
                }
            }
            Dispatch::Whole(Cow::Borrowed(shard))
        }
        Routing::Any => Dispatch::Whole(Cow::Borrowed(first_shard(ks)?)),
        _ if ks.shards.len() == 1 => Dispatch::Whole(Cow::Borrowed(first_shard(ks)?)),
        Routing::In { func, values } => {
            let mut groups = in_groups(ks, *func, values, binds)?;
            match groups.len() {
                0 => Dispatch::Whole(Cow::Borrowed(first_shard(ks)?)),
                1 => Dispatch::Whole(Cow::Owned(groups.remove(0).0)),
                _ => Dispatch::Split(
                    groups
                        .into_iter()
                        .map(|(shard, vals)| (shard, Some(vals)))
                        .collect(),
                ),
            }
        }
        Routing::Between { func, low, high } => {
            match between_shards(ks, *func, low, high, binds)?.as_slice() {
                [one] => Dispatch::Whole(Cow::Borrowed(one)),
                many => Dispatch::Split(many.iter().map(|s| (s.to_string(), None)).collect()),
            }
        }
        // Resolved by `exec_select` before it gets here; every shard is
        // right, if wider.
        Routing::Lookup { .. } | Routing::Scatter => {
            Dispatch::Split(ks.shards.iter().map(|s| (s.name.clone(), None)).collect())
        }
    })
}

/// The values of a lookup route, for these binds.
fn lookup_values(values: &[Operand], binds: &[Bind]) -> Vec<Value> {
    values.iter().map(|v| operand_value(v, binds)).collect()
}

async fn exec_select<V: VCursor + Send, S: RowSink + Send>(
    p: &SelectPlan,
    binds: &[Bind],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    if matches!(p.routing, Routing::Scatter) && !vc.scatter_allowed() {
        return Err(Error::ScatterDisallowed);
    }
    let dispatch = match &p.routing {
        Routing::Lookup { vindex, values, .. } => {
            let ks = keyspace_of(snap, &p.keyspace)?;
            let values = lookup_values(values, binds);
            let mut shards = lookup::shards(ks, vindex, &values, tt, snap, vc).await?;
            match shards.len() {
                // No row has the values: any shard answers with the
                // columns (and, the WHERE being the same, no rows).
                0 => Dispatch::Whole(Cow::Borrowed(first_shard(ks)?)),
                1 => Dispatch::Whole(Cow::Owned(shards.remove(0))),
                _ => Dispatch::Split(shards.into_iter().map(|s| (s, None)).collect()),
            }
        }
        _ => select_dispatch(p, binds, snap)?,
    };
    exec_dispatched(p, dispatch, binds, tt, vc, sink).await
}

/// Runs a SELECT where `dispatch` sends it.
async fn exec_dispatched<V: VCursor + Send, S: RowSink + Send>(
    p: &SelectPlan,
    dispatch: Dispatch<'_>,
    binds: &[Bind],
    tt: TabletType,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    // Either the whole statement goes to one shard as the client wrote it,
    // or each shard gets the pushed-down query and the gate combines.
    let targets = match dispatch {
        Dispatch::Whole(shard) => {
            let sql = substitute_binds(&p.original, binds);
            return vc
                .execute_shard(&p.keyspace, &shard, tt, &sql, false, sink)
                .await;
        }
        // The pushed-down queries are built only here, when they are sent;
        // shards without an IN list of their own share one.
        Dispatch::Split(shards) => {
            let mut shared: Option<String> = None;
            let mut targets = Vec::with_capacity(shards.len());
            for (shard, vals) in shards {
                let sql = match (vals, &shared) {
                    (Some(vals), _) => pushdown_sql(p, binds, Some(&vals))?,
                    (None, Some(sql)) => sql.clone(),
                    (None, None) => shared.insert(pushdown_sql(p, binds, None)?).clone(),
                };
                targets.push((shard, sql));
            }
            targets
        }
    };
    // A prepared statement's client takes binary rows: the shards' tablets
    // run the same statement prepared, sparing them the parse, and rows
    // that need no merging go out as the tablets sent them.
    let mut params = Vec::new();
    let prepared = sink
        .packets(true)
        .is_some()
        .then(|| p.pushdown.fill_params(binds, &mut params))
        .flatten()
        .map(|sql| PreparedQuery { sql, params });
    let mut merge = SelectMerge {
        gate: p.gate.as_ref(),
        binds,
        sink,
    };
    Box::pin(vc.stream_multi(&p.keyspace, tt, targets, prepared.as_ref(), &mut merge)).await
}

/// Runs a nested-loop join: the left side's rows, gathered; for each, the
/// right side with the left columns it binds; each pair (or, for a LEFT
/// JOIN, a lone left row) makes an output row, until the LIMIT.
async fn exec_join<V: VCursor + Send, S: RowSink + Send>(
    p: &JoinPlan,
    binds: &[Bind],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    let cap = vc.max_memory_rows();
    let nbe = vc.no_backslash_escapes();
    let mut lhs = Gather::new(cap);
    Box::pin(run_side(&p.lhs, &p.lhs_sql, binds, tt, snap, vc, &mut lhs)).await?;
    let count = |o: &Option<Operand>| o.as_ref().map(|o| gate::operand_u64(o, binds)).transpose();
    let mut skip = count(&p.offset)?.unwrap_or(0);
    let mut left = count(&p.limit)?.unwrap_or(u64::MAX);
    let mut rhs_binds: Vec<Bind> = binds.iter().take(p.first_var).cloned().collect();
    rhs_binds.resize(p.first_var, Bind::written("NULL", Value::NULL));
    // With a gate the joined rows are gathered for it; else they stream.
    let mut header: Option<Vec<Column>> = None;
    let mut gathered: Vec<Vec<Value>> = Vec::new();
    let mut out = Vec::with_capacity(p.output.len());
    let mut lone_row: Option<Vec<Value>> = None;
    // The right side's answers by the left values it reads, as MariaDB's
    // subquery cache keeps a correlated subquery's: left rows that bind
    // the same values ask once (up to the memory bound, and only for a
    // right side that answers the same each time).
    let mut memo = Memo::new(&p.rhs_sql, cap);
    let mut fresh = Gather::new(cap);
    for row in &lhs.rows {
        if left == 0 {
            break;
        }
        rhs_binds.truncate(p.first_var);
        for &c in &p.vars {
            let (Some(col), Some(v)) = (lhs.columns.get(c), row.get(c)) else {
                return Err(Error::Plan(PlanError::Unsupported(
                    "cross-shard join: the left side answered with fewer columns than planned"
                        .into(),
                )));
            };
            rhs_binds.push(join_var(col, v, nbe));
        }
        let key = memo.key(&p.vars, row);
        if !key.as_ref().is_some_and(|k| memo.answers.contains_key(k)) {
            fresh = Gather::new(cap);
            Box::pin(run_side(
                &p.rhs, &p.rhs_sql, &rhs_binds, tt, snap, vc, &mut fresh,
            ))
            .await?;
            if let Some(k) = key.clone() {
                memo.keep(k, &mut fresh);
            }
        }
        let rhs = key
            .as_ref()
            .and_then(|k| memo.answers.get(k))
            .unwrap_or(&fresh);
        if header.is_none() {
            let cols = join_columns(p, &lhs.columns, &rhs.columns)?;
            if p.gate.is_none() {
                sink.columns(&cols)?;
            }
            header = Some(cols);
        }
        if p.single && rhs.rows.len() > 1 {
            return Err(Error::SubqueryRows);
        }
        // The lone row's right columns, asked for at the first left row
        // without a match (the same for all: they read no left column).
        if let (Some(l), true, None) = (&p.lone, rhs.rows.is_empty(), &lone_row) {
            let mut one = Gather::new(1);
            Box::pin(run_side(&l.0, &l.1, binds, tt, snap, vc, &mut one)).await?;
            lone_row = one.rows.into_iter().next();
        }
        let lone = [lone_row
            .clone()
            .unwrap_or_else(|| vec![Value::NULL; rhs.columns.len()])];
        let found: [Vec<Value>; 1];
        let matches: &[Vec<Value>] = match (p.semi, p.exists) {
            // A semi-join's left row comes out alone, or not at all.
            (Some(keep_matched), _) if rhs.rows.is_empty() == keep_matched => &[],
            (Some(_), _) => &lone,
            // An EXISTS as a value: 1 or 0, by whether the right side
            // found a row.
            (None, Some(negated)) => {
                let one = rhs.rows.is_empty() == negated;
                found = [vec![Value::Bytes(if one { b"1" } else { b"0" }.to_vec())]];
                &found
            }
            (None, None) if rhs.rows.is_empty() && p.outer => &lone,
            (None, None) => &rhs.rows,
        };
        for r in matches {
            if p.right_nulls
                .iter()
                .any(|&i| r.get(i).is_some_and(|v| *v != Value::NULL))
            {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if left == 0 {
                break;
            }
            left -= 1;
            out.clear();
            for &c in &p.output {
                match c {
                    JoinColumn::One(right, i) => {
                        let side = if right { r } else { row };
                        out.push(side.get(i).cloned().unwrap_or(Value::NULL));
                    }
                    JoinColumn::Rest(right, from) => {
                        let side = if right { r } else { row };
                        out.extend(side.iter().skip(from).cloned());
                    }
                }
            }
            if p.gate.is_some() {
                if gathered.len() + lhs.rows.len() >= cap {
                    return Err(Error::TooManyRows(cap));
                }
                gathered.push(out.clone());
            } else {
                sink.row(&out)?;
            }
        }
        if p.gate.is_none() {
            sink.flush().await?;
        }
    }
    let header = match header {
        Some(h) => h,
        None => {
            // No left rows: the right side, run with NULL variables, names
            // its columns (and matches nothing, or nothing that is sent).
            for _ in &p.vars {
                rhs_binds.push(Bind::written("NULL", Value::NULL));
            }
            let mut rhs = Gather::new(cap);
            Box::pin(run_side(
                &p.rhs, &p.rhs_sql, &rhs_binds, tt, snap, vc, &mut rhs,
            ))
            .await?;
            let cols = join_columns(p, &lhs.columns, &rhs.columns)?;
            if p.gate.is_none() {
                sink.columns(&cols)?;
            }
            cols
        }
    };
    if let Some(g) = &p.gate {
        let header = gate::per_row_columns(g, &header);
        let (cols, rows) = gate::run(g, binds, &header, gathered)?;
        sink.columns(&cols)?;
        for r in &rows {
            sink.row(r)?;
        }
    }
    sink.end_rows(0)
}

/// A nested loop's right-side answers by the left values bound, for one
/// execution.
struct Memo {
    answers: std::collections::HashMap<Vec<Option<Vec<u8>>>, Gather>,
    /// Rows kept, against the memory bound.
    rows: usize,
    cap: usize,
    /// Whether the right side answers the same for the same values: none
    /// of its functions differ from call to call or write.
    on: bool,
}

impl Memo {
    fn new(rhs_sql: &str, cap: usize) -> Self {
        const VOLATILE: [&str; 14] = [
            "rand(",
            "uuid",
            "sleep(",
            "nextval",
            "next value",
            "lastval",
            ":=",
            "last_insert_id",
            "found_rows",
            "row_count",
            "sysdate",
            "get_lock",
            "benchmark(",
            "release_",
        ];
        let sql = rhs_sql.to_ascii_lowercase();
        Memo {
            answers: Default::default(),
            rows: 0,
            cap,
            on: !VOLATILE.iter().any(|f| sql.contains(f)),
        }
    }

    /// The left row's values at `vars`, or None when answers are not kept.
    fn key(&self, vars: &[usize], row: &[Value]) -> Option<Vec<Option<Vec<u8>>>> {
        self.on.then(|| {
            vars.iter()
                .map(|&c| match row.get(c) {
                    Some(Value::Bytes(b)) => Some(b.clone()),
                    Some(Value::NULL) | None => None,
                    Some(other) => Some(format!("{other:?}").into_bytes()),
                })
                .collect()
        })
    }

    /// Keeps `answer` (taken) under `key` while the rows kept stay within
    /// the bound.
    fn keep(&mut self, key: Vec<Option<Vec<u8>>>, answer: &mut Gather) {
        if self.rows + answer.rows.len() < self.cap {
            self.rows += answer.rows.len();
            let cap = self.cap;
            self.answers
                .insert(key, std::mem::replace(answer, Gather::new(cap)));
        }
    }
}

/// Runs a statement's uncorrelated subqueries, puts their answers in it
/// as values, then plans and runs it.
async fn exec_pullout<V: VCursor + Send, S: RowSink + Send>(
    p: &PulloutPlan,
    binds: &[Bind],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    let atomic = p.atomic && vc.multi_shard_transactions();
    if !atomic && p.then.is_empty() {
        let Some(texts) = pullout_answers(p, binds, tt, snap, vc).await? else {
            // Nothing to insert.
            return sink.ok(QueryDone::default());
        };
        // The statement, with its own values and the subqueries', planned anew.
        let outer = crate::planner::pullout::fill(&p.outer, &texts);
        let sql = substitute_binds(&outer, binds);
        return Box::pin(run_statement(&p.keyspace, &sql, tt, snap, vc, sink)).await;
    }
    // A write whose rows (or values) were read first: the reads and the
    // writes in one transaction, so that the rows stay as found (locked),
    // and the writes (one per table) all or none, with one OK for all,
    // sent once committed.
    let opened = match atomic {
        true => vc.begin_implicit().await?,
        false => Implicit::Nothing,
    };
    let done = async {
        let Some(texts) = pullout_answers(p, binds, tt, snap, vc).await? else {
            return Ok(QueryDone::default());
        };
        let mut total: Option<QueryDone> = None;
        for outer in std::iter::once(&p.outer).chain(&p.then) {
            let sql = substitute_binds(&crate::planner::pullout::fill(outer, &texts), binds);
            let mut done = Gather::new(0);
            Box::pin(run_statement(&p.keyspace, &sql, tt, snap, vc, &mut done)).await?;
            total = Some(match total {
                None => done.done,
                Some(t) => QueryDone {
                    affected_rows: t.affected_rows + done.done.affected_rows,
                    last_insert_id: t.last_insert_id,
                    warnings: t.warnings.saturating_add(done.done.warnings),
                    info: String::new(),
                },
            });
        }
        Ok(total.unwrap_or_default())
    }
    .await;
    sink.ok(end_implicit(vc, opened, done).await?)
}

/// Runs a pullout's subqueries: each one's answer as SQL for its marker;
/// None when an INSERT's SELECT found no rows (nothing to insert).
async fn pullout_answers<V: VCursor + Send>(
    p: &PulloutPlan,
    binds: &[Bind],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
) -> Result<Option<Vec<String>>, Error> {
    let cap = vc.max_memory_rows();
    let nbe = vc.no_backslash_escapes();
    let mut texts = vec![String::new(); p.subqueries.len()];
    for (i, sub) in p.subqueries.iter().enumerate() {
        let mut rows = Gather::new(cap);
        let sql = substitute_binds(&sub.sql, binds);
        Box::pin(execute(&sub.plan, &sql, binds, tt, snap, vc, &mut rows)).await?;
        let values = || -> Result<Vec<String>, Error> {
            if rows.columns.len() != 1 {
                return Err(Error::SubqueryColumns);
            }
            Ok(rows
                .rows
                .iter()
                .map(|r| cell_sql(&rows.columns, r, 0, nbe, bind_text))
                .collect())
        };
        let tested = sub.tested.as_deref().unwrap_or("NULL");
        let text = match sub.kind {
            PulloutKind::In | PulloutKind::NotIn => {
                // A row `(a, b) IN (subquery)` tests rows of as many values.
                let rowwise = rows.columns.len() > 1 && row_width(tested) == rows.columns.len();
                let (tested, listed) = match rowwise {
                    true => (tested.to_string(), tuples(&rows, nbe)),
                    false => (format!("({tested})"), values()?.join(", ")),
                };
                let not = if sub.kind == PulloutKind::NotIn {
                    "NOT "
                } else {
                    ""
                };
                match (rows.rows.is_empty(), sub.kind) {
                    (true, PulloutKind::In) => "0".to_string(),
                    (true, _) => "1".to_string(),
                    (false, _) => format!("{tested} {not}IN ({listed})"),
                }
            }
            PulloutKind::Exists => if rows.rows.is_empty() { "0" } else { "1" }.to_string(),
            PulloutKind::NotExists => if rows.rows.is_empty() { "1" } else { "0" }.to_string(),
            PulloutKind::Table => constants(&rows.columns, &rows.rows, &sub.collations, nbe),
            PulloutKind::Assign { keys } => assign(&rows, keys, tested, &sub.targets, nbe)?,
            PulloutKind::Recursive { distinct } => {
                let step = sub.step.as_deref().unwrap_or_default();
                let rounds = Rounds {
                    keyspace: &p.keyspace,
                    step,
                    distinct,
                    binds,
                    tt,
                    cap,
                    nbe,
                };
                Box::pin(rounds.run(rows, snap, vc)).await?
            }
            PulloutKind::Rows(width) => {
                if rows.columns.len() != width {
                    return Err(Error::ColumnCount);
                }
                if rows.rows.is_empty() {
                    return Ok(None);
                }
                tuples(&rows, nbe)
            }
            PulloutKind::Value => {
                let vals = values()?;
                match vals.as_slice() {
                    [] => "NULL".to_string(),
                    [one] => one.clone(),
                    _ => return Err(Error::SubqueryRows),
                }
            }
        };
        texts[i] = text;
    }
    Ok(Some(texts))
}

/// A multi-table UPDATE's assignments and WHERE from the rows its join
/// found (each a key of `keys` columns, then one value per target):
/// `t.a = CASE WHEN (k) = (1) THEN 'x' ... ELSE t.a END, ... WHERE (k) IN
/// ((1), ...)`. A key found twice takes its first row's values (MySQL
/// sets a row once, whichever match it takes); none found sets nothing.
fn assign(
    rows: &Gather,
    keys: usize,
    key: &str,
    targets: &[String],
    nbe: bool,
) -> Result<String, Error> {
    if rows.columns.len() != keys + targets.len() {
        return Err(Error::ColumnCount);
    }
    let Some(first) = targets.first() else {
        return Err(Error::ColumnCount);
    };
    if rows.rows.is_empty() {
        return Ok(format!("{first} = {first} WHERE 0"));
    }
    let cell = |r: &Vec<Value>, i: usize| cell_sql(&rows.columns, r, i, nbe, bind_text);
    let mut seen = std::collections::HashSet::new();
    let found: Vec<(String, &Vec<Value>)> = rows
        .rows
        .iter()
        .map(|r| {
            let k: Vec<String> = (0..keys).map(|i| cell(r, i)).collect();
            (format!("({})", k.join(", ")), r)
        })
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    let sets: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(t, target)| {
            let whens: String = found
                .iter()
                .map(|(k, r)| format!(" WHEN {key} = {k} THEN {}", cell(r, keys + t)))
                .collect();
            format!("{target} = CASE{whens} ELSE {target} END")
        })
        .collect();
    let listed: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    Ok(format!(
        "{} WHERE {key} IN ({})",
        sets.join(", "),
        listed.join(", ")
    ))
}

/// MariaDB's `max_recursive_iterations` default (10.6 on): a recursive
/// WITH stops, without an error, after this many rounds of its step.
const MAX_RECURSIVE_ITERATIONS: usize = 1000;

/// A recursive WITH's rounds after its seed.
struct Rounds<'a> {
    keyspace: &'a str,
    /// The step, the pullout marker where the last round's rows go.
    step: &'a str,
    distinct: bool,
    binds: &'a [Bind],
    tt: TabletType,
    cap: usize,
    nbe: bool,
}

impl Rounds<'_> {
    /// Runs the step over each round's new rows from the seed's until a
    /// round finds none (or the rounds' bound); all the rows, as a table
    /// of constants named and typed by the seed's columns.
    async fn run<V: VCursor + Send>(
        &self,
        seed: Gather,
        snap: &Snapshot,
        vc: &mut V,
    ) -> Result<String, Error> {
        let names = constant_names(&seed.columns);
        let mut seen: std::collections::HashSet<Vec<String>> = Default::default();
        let mut all: Vec<Vec<String>> = Vec::new();
        let mut last = self.new_rows(&seed, &mut seen);
        let mut rounds = 0;
        while !last.is_empty() && rounds < MAX_RECURSIVE_ITERATIONS {
            all.extend(last.iter().cloned());
            rounds += 1;
            let text = crate::planner::pullout::fill(
                self.step,
                &[constants_of(&names, &seed.columns, &last)],
            );
            let sql = substitute_binds(&text, self.binds);
            let mut found = Gather::new(self.cap);
            Box::pin(run_statement(
                self.keyspace,
                &sql,
                self.tt,
                snap,
                vc,
                &mut found,
            ))
            .await?;
            if found.columns.len() != names.len() {
                return Err(Error::SetColumns);
            }
            last = self.new_rows(&found, &mut seen);
            if all.len() + last.len() > self.cap {
                return Err(Error::TooManyRows(self.cap));
            }
        }
        all.extend(last);
        Ok(constants_of(&names, &seed.columns, &all))
    }

    /// A round's rows as SQL values, under their own columns' types;
    /// for a UNION, only those not found before.
    fn new_rows(
        &self,
        g: &Gather,
        seen: &mut std::collections::HashSet<Vec<String>>,
    ) -> Vec<Vec<String>> {
        let render = |r: &Vec<Value>| -> Vec<String> {
            (0..g.columns.len())
                .map(|i| cell_sql(&g.columns, r, i, self.nbe, constant))
                .collect()
        };
        g.rows
            .iter()
            .map(render)
            .filter(|row| !self.distinct || seen.insert(row.clone()))
            .collect()
    }
}

/// How many values a row constructor `(a, b, ...)` holds (1 for anything
/// else): commas outside nested parentheses and quotes.
fn row_width(sql: &str) -> usize {
    let Some(inner) = sql.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
        return 1;
    };
    let (mut depth, mut quote, mut commas) = (0usize, None::<u8>, 0);
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        match (quote, b) {
            (Some(_), b'\\') => {
                bytes.next();
            }
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"' | b'`') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') if depth == 0 => return 1,
            (None, b')') => depth -= 1,
            (None, b',') if depth == 0 => commas += 1,
            _ => {}
        }
    }
    commas + 1
}

/// A gathered answer's rows as SQL row constructors, `(1, 'a'), (2, 'b')`.
fn tuples(rows: &Gather, nbe: bool) -> String {
    let values: Vec<String> = rows
        .rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = (0..rows.columns.len())
                .map(|i| cell_sql(&rows.columns, r, i, nbe, bind_text))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    values.join(", ")
}

/// How many statements the engine wrote may run one within another
/// ([`run_statement`]): a plan whose run-first statement planned anew
/// yields the same plan again would otherwise nest without end, each
/// level's future polled within the one before it, until the thread's
/// stack overflowed and took every session of the process with it. Real
/// nesting (a derived table within a derived table, a lookup read within
/// a run-first statement) stays within a few levels.
const MAX_NESTED_STATEMENTS: usize = 32;

tokio::task_local! {
    /// How deep in [`run_statement`]s the current statement runs.
    static NESTED_STATEMENTS: usize;
}

/// Runs statement text the engine wrote (a run-first statement with its
/// answers in, a lookup table's read or write) on `keyspace`, planned as a
/// client's statement there would be, its strings read as the session
/// reads them.
async fn run_statement<V: VCursor + Send, S: RowSink + Send>(
    keyspace: &str,
    sql: &str,
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    let depth = NESTED_STATEMENTS.try_with(|d| *d).unwrap_or(0) + 1;
    if depth > MAX_NESTED_STATEMENTS {
        return Err(Error::Plan(crate::planner::PlanError::Unsupported(format!(
            "statement too complex for a sharded keyspace: statements run within one another past {MAX_NESTED_STATEMENTS}"
        ))));
    }
    let stmt = crate::sql::classify(sql)?;
    let n = crate::sql::normalize::normalize(sql, &[], vc.no_backslash_escapes());
    let target = crate::sql::Target {
        keyspace: Some(keyspace.to_string()),
        shard: None,
        tablet_type: tt,
    };
    let plan = crate::planner::plan(&stmt, Some(&n.template), &target, snap)?;
    let run = Box::pin(execute(&plan, sql, &n.binds, tt, snap, vc, sink));
    NESTED_STATEMENTS.scope(depth, run).await
}

/// A derived table's rows as a query of constants under its columns'
/// names: `(SELECT 1 AS `a`, 'x' AS `b` UNION ALL VALUES (2, 'y'), (3,
/// 'z'))`, or none (`LIMIT 0`). A string column whose collation the plan knows
/// names it in the first row ([`collated`]).
fn constants(
    cols: &[Column],
    rows: &[Vec<Value>],
    collations: &[Option<crate::collation::Collation>],
    nbe: bool,
) -> String {
    let mut rendered: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..cols.len())
                .map(|i| cell_sql(cols, r, i, nbe, constant))
                .collect()
        })
        .collect();
    if let Some(first) = rendered.first_mut() {
        for (v, c) in first.iter_mut().zip(collations) {
            if let Some(c) = c {
                collated(v, *c);
            }
        }
    }
    constants_of(&constant_names(cols), cols, &rendered)
}

/// A first row's string literal (or NULL) in its column's collation, as
/// MariaDB would compare the column: a literal alone takes the
/// connection's, and the gate, planning the statement that reads the
/// table, learns the collation from it. Written for the UTF-8
/// collations, converted from whatever character set the connection
/// has; a value already typed (binary, a date) stays as it is.
fn collated(v: &mut String, c: crate::collation::Collation) {
    use crate::collation::Collation;
    if !matches!(c, Collation::Utf8GeneralCi | Collation::Utf8Bin) {
        return;
    }
    let converted = match v.as_str() {
        "NULL" | STRING_NULL => STRING_NULL.to_string(),
        s if s.starts_with('\'') && s.ends_with('\'') => format!("CONVERT({s} USING utf8mb4)"),
        _ => return,
    };
    *v = format!("{converted} COLLATE {}", c.name());
}

/// A NULL that keeps its column's type where the type decides what
/// MariaDB computes from it (a column of NULLs alone is untyped, and
/// `AVG(COALESCE(c, 0))` over it a DOUBLE instead of a DECIMAL): numbers
/// and times; strings (a UTF-8 string, a binary one), so that what is
/// computed over them is a string.
fn typed_null(col: &Column) -> String {
    use mysql_common::constants::{ColumnFlags, ColumnType as T};
    let d = col.decimals().min(6);
    let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let cast = match col.column_type() {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_LONGLONG
        | T::MYSQL_TYPE_YEAR => match unsigned {
            true => "UNSIGNED".to_string(),
            false => "SIGNED".to_string(),
        },
        T::MYSQL_TYPE_NEWDECIMAL | T::MYSQL_TYPE_DECIMAL => decimal_type(col),
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE => "DOUBLE".to_string(),
        T::MYSQL_TYPE_VARCHAR
        | T::MYSQL_TYPE_VAR_STRING
        | T::MYSQL_TYPE_STRING
        | T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB => match col.character_set() {
            BINARY_CHARSET => "BINARY".to_string(),
            // A string (of the connection's collation where no other
            // names one, see `collated`): a plain NULL is of no type, and
            // `if(x is null, n, NULL)` an integer where over the column
            // it is a string.
            _ => return STRING_NULL.to_string(),
        },
        _ => match temporal(col) {
            Some(Temporal::Date) => "DATE".to_string(),
            Some(Temporal::DateTime) => format!("DATETIME({d})"),
            Some(Temporal::Time) => format!("TIME({d})"),
            None => return "NULL".into(),
        },
    };
    format!("CAST(NULL AS {cast})")
}

/// A DECIMAL column's type, `DECIMAL(precision, scale)`, from its
/// definition's display length (digits, a point, a sign): a literal's own
/// precision would be its digits', and what MariaDB computes from the
/// column (FLOOR's type, a division's scale) follows the precision.
fn decimal_type(col: &Column) -> String {
    use mysql_common::constants::ColumnFlags;
    let scale = u32::from(col.decimals()).min(30);
    let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let digits = col
        .column_length()
        .saturating_sub(u32::from(scale > 0) + u32::from(!unsigned));
    format!("DECIMAL({}, {scale})", digits.clamp(scale.max(1), 65))
}

/// A column definition's decimals for a number of no fixed decimals (a
/// DOUBLE's by default; MariaDB's `NOT_FIXED_DEC`).
const NOT_FIXED_DECIMALS: u8 = 31;

/// The decimals a FLOAT or DOUBLE column prints, when they are fixed
/// (`round(f, 2)`, a DOUBLE(8,2) column: `1.50`).
fn fixed_decimals(col: &Column) -> Option<u8> {
    (gate::is_float(col) && col.decimals() < NOT_FIXED_DECIMALS).then(|| col.decimals())
}

/// MariaDB's `binary` character set (and collation) number, in column
/// definitions: binary strings, and every column that is not text.
const BINARY_CHARSET: u16 = 63;

/// A NULL of a text column ([`typed_null`]).
const STRING_NULL: &str = "CONVERT(NULL USING utf8mb4)";

/// A date or time column's kind.
#[derive(Clone, Copy)]
enum Temporal {
    Date,
    DateTime,
    Time,
}

/// The kind of date or time `col` holds, if it holds one.
fn temporal(col: &Column) -> Option<Temporal> {
    use mysql_common::constants::ColumnType as T;
    match col.column_type() {
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => Some(Temporal::Date),
        T::MYSQL_TYPE_DATETIME
        | T::MYSQL_TYPE_DATETIME2
        | T::MYSQL_TYPE_TIMESTAMP
        | T::MYSQL_TYPE_TIMESTAMP2 => Some(Temporal::DateTime),
        T::MYSQL_TYPE_TIME | T::MYSQL_TYPE_TIME2 => Some(Temporal::Time),
        _ => None,
    }
}

/// The names of a table of constants' columns: a derived table's columns
/// need distinct names (a UNION part's may repeat one: `select id, id`),
/// so a repeat gets its position too.
fn constant_names(cols: &[Column]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        let mut name = c.name_str().into_owned();
        while names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            name = format!("{name}_{}", i + 1);
        }
        names.push(name);
    }
    names
}

/// A table of constants' first value of column `col` (written `v`), of
/// the column's type where a literal would not have it: a NULL (see
/// [`typed_null`]), a DOUBLE (its digits would be a DECIMAL; rounded to
/// its fixed decimals, if it has them, so that it prints them), a DECIMAL
/// of its column's precision ([`decimal_type`]; a SUM of integers' digits
/// alone would be a BIGINT), a BIGINT.
/// The first row's types suffice: a UNION's columns take their types from
/// all its rows.
fn typed_first(col: &Column, v: &str) -> String {
    use mysql_common::constants::ColumnType as T;
    let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    match col.column_type() {
        // A BIGINT's small values would be a narrower integer, and what
        // MariaDB computes over them typed by their width (`floor(id /
        // 4)` a BIGINT where over the column it is a DECIMAL): the widest
        // value beside it gives the column its width (a CAST keeps the
        // value's). An unsigned one is cast already ([`join_var`]).
        T::MYSQL_TYPE_LONGLONG if !unsigned => format!("IF(1, {v}, -9223372036854775807)"),
        // A DOUBLE of fixed decimals (`round(f, 2)`, a DOUBLE(8,2)
        // column) prints them (`1.50`): ROUND gives the column them back.
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE => match fixed_decimals(col) {
            Some(d) => format!("ROUND(CAST({v} AS DOUBLE), {d})"),
            None => format!("CAST({v} AS DOUBLE)"),
        },
        _ if v == "NULL" => typed_null(col),
        T::MYSQL_TYPE_NEWDECIMAL => format!("CAST({v} AS {})", decimal_type(col)),
        _ => v.to_string(),
    }
}

/// [`constants`] of rows already written as SQL values, the first row's
/// typed by `cols` ([`typed_first`]).
fn constants_of(names: &[String], cols: &[Column], rows: &[Vec<String>]) -> String {
    let named: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let v = rows.first().and_then(|r| r.get(i));
            let v = match cols.get(i) {
                Some(col) => typed_first(col, v.map_or("NULL", String::as_str)),
                None => v.cloned().unwrap_or_else(|| "NULL".into()),
            };
            format!("{v} AS `{}`", name.replace('`', "``"))
        })
        .collect();
    let mut sql = format!("(SELECT {}", named.join(", "));
    if rows.is_empty() {
        sql.push_str(" LIMIT 0");
    }
    // The other rows as one VALUES list: a flat list of rows however many
    // there are, where a chain of `UNION ALL SELECT`s parses as a tree as
    // deep as the rows are many (which every walk of the statement, a
    // clone or a drop included, would recurse down).
    for (i, r) in rows.iter().skip(1).enumerate() {
        sql.push_str(if i == 0 { " UNION ALL VALUES (" } else { ", (" });
        sql.push_str(&r.join(", "));
        sql.push(')');
    }
    sql.push(')');
    sql
}

/// Cell `i` of `row` as SQL, rendered by `render` under its column's
/// definition; NULL where the row or the columns fall short.
fn cell_sql(
    cols: &[Column],
    row: &[Value],
    i: usize,
    nbe: bool,
    render: fn(&Column, &Value, bool) -> String,
) -> String {
    match (cols.get(i), row.get(i)) {
        (Some(c), Some(v)) => render(c, v, nbe),
        _ => "NULL".to_string(),
    }
}

/// A cell as the SQL text of its bind ([`join_var`]).
fn bind_text(col: &Column, v: &Value, nbe: bool) -> String {
    join_var(col, v, nbe).text().into_owned()
}

/// One value of a table of constants, compared as its column was: a
/// string literal takes the connection's collation, so a binary column's
/// value says so (`_binary'a'`), or `'a' = 'A'` would hold where the
/// column's values differ. A `_bin` column says so only where the tablet's
/// column definition names its collation (it may name the connection's).
/// Numbers are written as join variables are ([`join_var`]): an unsigned
/// integer as one (MariaDB makes a column of unsigned and signed integers
/// a DECIMAL), a DOUBLE with an exponent. A DOUBLE of fixed decimals is
/// written as printed (`1.50`): the first row makes the column a DOUBLE
/// ([`typed_first`]), and a DOUBLE literal's own decimals, none fixed,
/// would be the whole column's (`1.50` printed `1.5`).
fn constant(col: &Column, v: &Value, nbe: bool) -> String {
    if let Some(d) = fixed_decimals(col).map(usize::from) {
        match v {
            // The first row types the column: a NULL of no type takes
            // its decimals (a DOUBLE's would not).
            Value::NULL => return "NULL".to_string(),
            Value::Double(f) if f.is_finite() => return format!("{f:.d$}"),
            Value::Float(f) if f.is_finite() => return format!("{f:.d$}"),
            Value::Bytes(b) => {
                let digits = std::str::from_utf8(b).unwrap_or_default();
                if digits.parse::<f64>().is_ok() && !digits.contains(['e', 'E']) {
                    return digits.to_string();
                }
            }
            _ => {}
        }
    }
    let text = bind_text(col, v, nbe);
    let Value::Bytes(b) = v else {
        return text;
    };
    if !text.ends_with('\'') {
        return text;
    }
    // A date or time keeps its type (its definition says "binary"
    // character set, as every column that is not text does); a zero
    // date, which no typed literal takes, stays a string.
    let literal = temporal(col).map(|t| match t {
        Temporal::Date => "DATE",
        Temporal::DateTime => "TIMESTAMP",
        Temporal::Time => "TIME",
    });
    if let Some(kind) = literal {
        return match b.starts_with(b"0000-00-00") {
            true => text,
            false => format!("{kind}{text}"),
        };
    }
    // Bytes that are not UTF-8 are written in hex, a binary string already
    // (an introducer before it was a syntax error).
    if text.starts_with("X'") {
        return text;
    }
    match col.character_set() {
        BINARY_CHARSET => format!("_binary{text}"),
        46 => format!("{text} COLLATE utf8mb4_bin"),
        83 => format!("{text} COLLATE utf8mb3_bin"),
        _ => text,
    }
}

/// Runs one side of a nested loop: another keyspace's route runs its
/// text with the binds filled in; any other plan runs as planned.
async fn run_side<V: VCursor + Send>(
    plan: &Plan,
    text: &str,
    binds: &[Bind],
    tt: TabletType,
    snap: &Snapshot,
    vc: &mut V,
    rows: &mut Gather,
) -> Result<(), Error> {
    match plan {
        Plan::Route(r) => {
            let sql = substitute_binds(text, binds);
            vc.execute_shard(&r.keyspace, &r.shard, tt, &sql, false, rows)
                .await
        }
        plan => execute(plan, "", binds, tt, snap, vc, rows).await,
    }
}

/// The output's column definitions, taken from the sides' results.
fn join_columns(p: &JoinPlan, lhs: &[Column], rhs: &[Column]) -> Result<Vec<Column>, Error> {
    let mut cols = Vec::new();
    for &c in &p.output {
        match c {
            JoinColumn::One(right, i) => {
                let side = if right { rhs } else { lhs };
                cols.push(side.get(i).cloned().ok_or_else(|| {
                    Error::Plan(PlanError::Unsupported(
                        "cross-shard join: a side answered with fewer columns than planned".into(),
                    ))
                })?);
            }
            JoinColumn::Rest(right, from) => {
                let side = if right { rhs } else { lhs };
                cols.extend(side.iter().skip(from).cloned());
            }
        }
    }
    Ok(cols)
}

/// A cell of a result as a bind (a nested loop's join variable, or a
/// value a run-first query puts into its statement): integers as numbers
/// (so a vindex maps them as the column's values), other numbers as
/// written, anything else as a quoted string (`nbe`: as the session's
/// NO_BACKSLASH_ESCAPES reads strings).
fn join_var(col: &Column, v: &Value, nbe: bool) -> Bind {
    use mysql_common::constants::ColumnType as T;
    // A NULL keeps its column's type: the right side's expressions over
    // it are typed by it (`NULL * 2 + b.k` would be a DOUBLE, and the
    // first left row's answer names the output's types).
    let Value::Bytes(b) = v else {
        return Bind::written(&typed_null(col), Value::NULL);
    };
    let text = String::from_utf8_lossy(b);
    let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    match col.column_type() {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_LONGLONG
        | T::MYSQL_TYPE_YEAR => {
            let value = if unsigned {
                text.parse::<u64>().map(Value::UInt)
            } else {
                text.parse::<i64>().map(Value::Int)
            };
            match value {
                // Unsigned arithmetic over it, as over its column
                // (`u * 2` past BIGINT's range is no error then).
                Ok(value) if unsigned => Bind::written(&format!("CAST({text} AS UNSIGNED)"), value),
                Ok(value) => Bind::written(&text, value),
                Err(_) => Bind::written(&crate::sql::literal(v, nbe), v.clone()),
            }
        }
        // A DOUBLE's digits alone would be a DECIMAL literal (`f / 3`
        // computed in decimals): an exponent makes it a DOUBLE.
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE if text.parse::<f64>().is_ok() => {
            match text.contains(['e', 'E']) {
                true => Bind::written(&text, v.clone()),
                false => Bind::written(&format!("{text}e0"), v.clone()),
            }
        }
        T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL if text.parse::<f64>().is_ok() => {
            Bind::written(&text, v.clone())
        }
        _ => Bind::written(&crate::sql::literal(v, nbe), v.clone()),
    }
}

/// A text cell as the SQL literal that gives it back with its column's
/// kind: a number unquoted (a user variable set from it is a number, as
/// MySQL's `SELECT ... INTO @v` makes it), anything else quoted.
pub fn typed_literal(v: &Value, col: &Column, no_backslash_escapes: bool) -> String {
    use mysql_common::constants::ColumnType as T;
    let numeric = matches!(
        col.column_type(),
        T::MYSQL_TYPE_TINY
            | T::MYSQL_TYPE_SHORT
            | T::MYSQL_TYPE_INT24
            | T::MYSQL_TYPE_LONG
            | T::MYSQL_TYPE_LONGLONG
            | T::MYSQL_TYPE_DECIMAL
            | T::MYSQL_TYPE_NEWDECIMAL
            | T::MYSQL_TYPE_FLOAT
            | T::MYSQL_TYPE_DOUBLE
    );
    match v {
        Value::Bytes(b)
            if numeric && !b.is_empty() && b.iter().all(|c| b"+-.0123456789eE".contains(c)) =>
        {
            String::from_utf8_lossy(b).into_owned()
        }
        other => crate::sql::literal(other, no_backslash_escapes),
    }
}

/// Gathers one side's rows (text cells) and columns, at most `cap` rows
/// (more is [`Error::TooManyRows`]); or a write's OK.
pub struct Gather {
    /// The result's columns.
    pub columns: Vec<Column>,
    /// Its rows.
    pub rows: Vec<Vec<Value>>,
    cap: usize,
    /// A write's OK.
    pub done: QueryDone,
}

impl Gather {
    /// A gatherer of at most `cap` rows.
    pub fn new(cap: usize) -> Self {
        Gather {
            columns: Vec::new(),
            rows: Vec::new(),
            cap,
            done: QueryDone::default(),
        }
    }
}

impl RowSink for Gather {
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error> {
        self.columns = cols.to_vec();
        Ok(())
    }
    fn row(&mut self, values: &[Value]) -> Result<(), Error> {
        if self.rows.len() >= self.cap {
            return Err(Error::TooManyRows(self.cap));
        }
        self.rows.push(values.to_vec());
        Ok(())
    }
    fn end_rows(&mut self, _: u16) -> Result<(), Error> {
        Ok(())
    }
    fn ok(&mut self, done: QueryDone) -> Result<(), Error> {
        self.done = done;
        Ok(())
    }
}

/// Combines the rows of a SELECT sent to several shards.
struct SelectMerge<'p, S> {
    gate: Option<&'p Gate>,
    binds: &'p [Bind],
    sink: &'p mut S,
}

impl<S: RowSink + Send> ScatterConsumer for SelectMerge<'_, S> {
    async fn consume(&mut self, st: ShardStreams<'_>) -> Result<(), Error> {
        let ShardStreams {
            columns,
            mut streams,
        } = st;
        let sink = &mut *self.sink;
        let streamed = self
            .gate
            .filter(|g| !gate::streams(g))
            .and_then(|g| gate::streamed(g, &columns));
        match self.gate {
            // Groupings: each group passes once the shards' sorted groups
            // are merged.
            Some(g) if streamed.is_some() => {
                let how = streamed.unwrap_or(gate::Streamed::Groups);
                merge_groups(g, self.binds, &columns, &mut streams, how, sink).await?;
            }
            // Aggregation, DISTINCT: gather the partial results, then combine.
            Some(g) if !gate::streams(g) => {
                let mut rows = Vec::new();
                for s in streams.iter_mut() {
                    while row::next(&mut **s).await? {
                        rows.push(s.row().to_values());
                    }
                }
                let (cols, rows) = gate::run(g, self.binds, &columns, rows)?;
                sink.columns(&cols)?;
                for r in &rows {
                    sink.row(r)?;
                    sink.flush().await?;
                }
            }
            // Ordered: merge the shards' sorted streams. Each shard's head
            // row waits, in place, in its own connection's buffer.
            Some(g) if !g.order.is_empty() => {
                let mut window = gate::Window::new(Some(g), self.binds, columns.len())?;
                sink.columns(&columns[..window.visible()])?;
                let mut live = first_heads(&mut streams, columns.len()).await?;
                let order = gate::RowOrder::sort(g, &columns);
                let cmp = |a: TextRow<'_>, b: TextRow<'_>| match &order {
                    Some(o) => o.cmp(a, b),
                    None => gate::cmp_rows(g, self.binds, &columns, &a.to_values(), &b.to_values()),
                };
                while !window.full() {
                    let Some((i, head)) = smallest(&streams, &live, cmp) else {
                        break;
                    };
                    if window.admit(head.width())? {
                        sink.text_row(head.truncated(window.visible()))?;
                        sink.flush().await?;
                    }
                    live[i] = match head_at_hand(&mut *streams[i], columns.len()) {
                        Some(more) => more?,
                        None => next_head(&mut *streams[i], columns.len()).await?,
                    };
                }
            }
            // Unordered: rows go out in whatever order the shards send them.
            gate => {
                let mut window = gate::Window::new(gate, self.binds, columns.len())?;
                sink.columns(&columns[..window.visible()])?;
                // Rows that go out whole, in the client's protocol, go on
                // in runs as the shards framed them.
                let binary = sink.packets(true).is_some();
                let runs = window.passes_all();
                let mut live: Vec<bool> = vec![true; streams.len()];
                let mut from = 0;
                while !window.full() {
                    let Some(i) = any_row(&mut streams, &mut live, from).await? else {
                        break;
                    };
                    // The next wait starts at the shard after this one.
                    from = i + 1;
                    let r = streams[i].row();
                    if window.admit(r.width())? {
                        sink.text_row(r.truncated(window.visible()))?;
                        if runs {
                            if let Some(packets) = sink.packets(binary) {
                                streams[i].forward_run(packets, binary, columns.len());
                            }
                        }
                        sink.flush().await?;
                    }
                }
            }
        }
        sink.end_rows(0)
    }
}

/// The live stream whose head row sorts first by `cmp`, and that row; on
/// ties the first shard's. Each head is read once.
fn smallest<'s>(
    streams: &'s [Box<dyn ShardRows + '_>],
    live: &[bool],
    cmp: impl Fn(TextRow<'_>, TextRow<'_>) -> std::cmp::Ordering,
) -> Option<(usize, TextRow<'s>)> {
    let mut best: Option<(usize, TextRow<'s>)> = None;
    for (i, s) in streams.iter().enumerate() {
        if !live[i] {
            continue;
        }
        let row = s.row();
        match best {
            Some((_, b)) if !cmp(row, b).is_lt() => {}
            _ => best = Some((i, row)),
        }
    }
    best
}

/// A grouped aggregation streamed ([`gate::streamed`]): the shards'
/// groups, each shard's sorted by the grouping keys, are merged, so the
/// rows of a group (one per shard that has it) arrive together. A
/// grouping's first row stands for its group and is sent in place; with
/// aggregate functions the group is folded, then filtered and projected.
/// Groups pass to the client as they complete: nothing is gathered.
async fn merge_groups<S: RowSink + Send>(
    g: &Gate,
    binds: &[Bind],
    columns: &[Column],
    streams: &mut [Box<dyn ShardRows + '_>],
    how: gate::Streamed,
    sink: &mut S,
) -> Result<(), Error> {
    let mut window = gate::Window::new(Some(g), binds, columns.len())?;
    sink.columns(&gate::output_columns(g, binds, columns))?;
    let picks = match &how {
        gate::Streamed::Picks(p) => Some(&p[..]),
        gate::Streamed::Groups => None,
    };
    // Output that is the leading columns is a cut of the shard's row.
    let leading = picks.is_some_and(|p| p.iter().enumerate().all(|(i, &c)| i == c));
    let mut live = first_heads(streams, columns.len()).await?;
    let order = gate::RowOrder::groups(g, columns);
    let cmp = |a: TextRow<'_>, b: TextRow<'_>| order.cmp(a, b);
    // The current group's first row (its keys), and its fold so far.
    let mut group: Option<OwnedRow> = None;
    let mut folded: Option<Vec<Value>> = None;
    let mut picked = OwnedRow::default();
    while !window.full() {
        let Some((i, head)) = smallest(streams, &live, cmp) else {
            break;
        };
        match group.as_ref().map(|r| cmp(r.row(), head)) {
            Some(std::cmp::Ordering::Equal) => {
                if let Some(f) = folded.as_mut() {
                    gate::fold(g, columns, f, &head.to_values());
                }
            }
            Some(std::cmp::Ordering::Greater) => return Err(gate::unsorted()),
            _ => {
                if let Some(f) = folded.take() {
                    send_group(g, binds, columns, &f, &mut window, sink).await?;
                }
                group.get_or_insert_with(OwnedRow::default).copy_from(head);
                match picks {
                    None => folded = Some(head.to_values()),
                    Some(picks) => {
                        if window.admit(head.width())? {
                            if leading {
                                sink.text_row(head.truncated(picks.len()))?;
                            } else {
                                picked.pick_from(head, picks);
                                sink.text_row(picked.row())?;
                            }
                            sink.flush().await?;
                        }
                    }
                }
            }
        }
        live[i] = match head_at_hand(&mut *streams[i], columns.len()) {
            Some(more) => more?,
            None => next_head(&mut *streams[i], columns.len()).await?,
        };
    }
    if let Some(f) = folded {
        send_group(g, binds, columns, &f, &mut window, sink).await?;
    }
    Ok(())
}

/// Sends a folded group unless HAVING drops it or it falls outside the
/// OFFSET/LIMIT window.
async fn send_group<S: RowSink + Send>(
    g: &Gate,
    binds: &[Bind],
    columns: &[Column],
    folded: &[Value],
    window: &mut gate::Window,
    sink: &mut S,
) -> Result<(), Error> {
    let Some(out) = gate::finish_group(g, binds, columns, folded)? else {
        return Ok(());
    };
    if window.admit(columns.len())? {
        sink.row(&out)?;
        sink.flush().await?;
    }
    Ok(())
}

/// Each sorted stream's first row, checked for width: which streams have
/// one (the live heads a merge starts from).
async fn first_heads(
    streams: &mut [Box<dyn ShardRows + '_>],
    width: usize,
) -> Result<Vec<bool>, Error> {
    let mut live = Vec::with_capacity(streams.len());
    for s in streams.iter_mut() {
        live.push(next_head(&mut **s, width).await?);
    }
    Ok(live)
}

/// The next row of a sorted shard stream, checked for width before the
/// merge compares it with the other shards' heads.
async fn next_head(s: &mut (dyn ShardRows + '_), width: usize) -> Result<bool, Error> {
    let more = row::next(s).await?;
    checked_head(s, more, width)
}

/// [`next_head`] when the row is at hand ([`ShardRows::next_at_hand`]):
/// a merge's loop takes most rows this way, without building a wait
/// (building and polling `next_head`'s future for every row cost about
/// 70 instructions more per row, measured).
fn head_at_hand(s: &mut (dyn ShardRows + '_), width: usize) -> Option<Result<bool, Error>> {
    let more = s.next_at_hand()?;
    Some(more.and_then(|more| checked_head(s, more, width)))
}

fn checked_head(s: &(dyn ShardRows + '_), more: bool, width: usize) -> Result<bool, Error> {
    if more && s.row_width() != Some(width) {
        gate::check_width(s.row().width(), width)?;
    }
    Ok(more)
}

/// Waits for a row from any live stream, trying them in turn from `from`
/// (so no shard starves another); the stream's index, or None once all
/// have ended. Only the stream returned has moved to a new row.
async fn any_row(
    streams: &mut [Box<dyn ShardRows + '_>],
    live: &mut [bool],
    from: usize,
) -> Result<Option<usize>, Error> {
    let n = streams.len();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for k in 0..n {
            let i = (from + k) % n;
            if !live[i] {
                continue;
            }
            match streams[i].poll_next_row(cx) {
                std::task::Poll::Ready(Ok(true)) => return std::task::Poll::Ready(Ok(Some(i))),
                std::task::Poll::Ready(Ok(false)) => live[i] = false,
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => waiting = true,
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(None))
        }
    })
    .await
}

fn pushdown_sql(
    p: &SelectPlan,
    binds: &[Bind],
    in_values: Option<&Vec<String>>,
) -> Result<String, Error> {
    let in_list = in_values.map(|vals| vals.join(", "));
    let limit = match (&p.gate, p.pushdown_limit) {
        (Some(g), true) => Some(gate::pushdown_limit(g, binds)?.to_string()),
        (None, true) => Some(u64::MAX.to_string()),
        (_, false) => None,
    };
    Ok(p.pushdown.fill(binds, |name| match name {
        "vIN" => in_list.as_deref(),
        "vLIMIT" => limit.as_deref(),
        _ => None,
    }))
}

async fn exec_dml<V: VCursor + Send, S: RowSink + Send>(
    p: &DmlPlan,
    binds: &[Bind],
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    let (done, returned) = if p.lookups.is_empty() {
        let queries = dml_queries(p, binds, snap, vc).await?;
        dml_done(p, queries, vc).await?
    } else {
        // The lookup rows change with the tables', in one transaction;
        // the shards are found first, while the lookup rows that may
        // route the statement are still there.
        let opened = vc.begin_implicit().await?;
        let done = async {
            let queries = dml_queries(p, binds, snap, vc).await?;
            for l in &p.lookups {
                keep_dml_lookups(p, l, binds, snap, vc).await?;
            }
            dml_done(p, queries, vc).await
        }
        .await;
        end_implicit(vc, opened, done).await?
    };
    write_answer(done, returned, sink)
}

/// A write's answer: the rows its `RETURNING` gave, or its OK.
fn write_answer<S: RowSink>(
    done: QueryDone,
    returned: Option<ShardResult>,
    sink: &mut S,
) -> Result<(), Error> {
    match returned {
        Some(r) => {
            sink.columns(&r.columns)?;
            for row in &r.rows {
                sink.row(row)?;
            }
            sink.end_rows(done.warnings)
        }
        None => sink.ok(done),
    }
}

/// Ends what `begin_implicit` opened for one statement (if anything):
/// committed or forgotten when the statement succeeded, else rolled back.
/// A failed statement whose savepoint could not be rolled back to took
/// the whole transaction with it, which its error says.
async fn end_implicit<V: VCursor + Send, T>(
    vc: &mut V,
    opened: Implicit,
    done: Result<T, Error>,
) -> Result<T, Error> {
    if opened == Implicit::Nothing {
        return done;
    }
    let ended = vc.end_implicit(opened, done.is_ok()).await;
    match (done, ended) {
        (Ok(done), Ok(())) => Ok(done),
        (Err(e), Err(_)) if opened == Implicit::Savepoint => {
            Err(Error::PartialWriteRolledBack(Box::new(e)))
        }
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Removes the lookup rows of the rows an UPDATE or DELETE changes, and
/// adds an UPDATE's new ones: the rows are read first, locked.
async fn keep_dml_lookups<V: VCursor + Send>(
    p: &DmlPlan,
    l: &crate::planner::sharded::DmlLookups,
    binds: &[Bind],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<(), Error> {
    let ks = keyspace_of(snap, &p.keyspace)?;
    let sql = substitute_binds(&l.select, binds);
    let rows = lookup::run(&p.keyspace, &sql, TabletType::Primary, snap, vc).await?;
    let mut col = 1;
    for (owned, new) in &l.changes {
        let def = lookup::definition(ks, &owned.vindex)?;
        let width = owned.columns.len();
        let (mut gone, mut added) = (Vec::new(), Vec::new());
        for row in &rows.rows {
            let value = row.first().cloned().unwrap_or(Value::NULL);
            let Some(ksid) = map_value(l.func, &value)? else {
                continue;
            };
            let from = row
                .get(col..col + width)
                .ok_or(Error::ColumnCount)?
                .to_vec();
            if let Some(new) = new {
                let to: Vec<Value> = new
                    .iter()
                    .zip(&from)
                    .map(|(n, old)| match n {
                        NewValue::Keep => old.clone(),
                        NewValue::Set(n) => operand_value(n, binds),
                        NewValue::Read(i) => row.get(*i).cloned().unwrap_or(Value::NULL),
                    })
                    .collect();
                added.push(lookup::Entry {
                    from: to,
                    ksid: ksid.clone(),
                    value: value.clone(),
                });
            }
            gone.push(lookup::Entry { from, ksid, value });
        }
        lookup::delete(ks, &def, &gone, snap, vc).await?;
        lookup::create(ks, &def, &l.table, &owned.columns, &added, snap, vc).await?;
        col += width;
    }
    Ok(())
}

/// Where an UPDATE or DELETE goes: each shard with its statement.
async fn dml_queries<V: VCursor + Send>(
    p: &DmlPlan,
    binds: &[Bind],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<Vec<(String, String)>, Error> {
    let ks = keyspace_of(snap, &p.keyspace)?;
    let original = substitute_binds(&p.original, binds);
    let queries: Vec<(String, String)> = match &p.routing {
        Routing::Equal { func, value } => match map_value(*func, &operand_value(value, binds))? {
            Some(ksid) => vec![(
                shard_for(ks, &ksid).unwrap_or(first_shard(ks)?).to_string(),
                original,
            )],
            None => vec![],
        },
        Routing::In { func, values } => {
            let groups = in_groups(ks, *func, values, binds)?;
            if groups.len() == 1 {
                vec![(groups[0].0.clone(), original)]
            } else {
                groups
                    .into_iter()
                    .map(|(shard, vals)| {
                        (
                            shard,
                            substitute_binds(&p.query.replacen(":vIN", &vals.join(", "), 1), binds),
                        )
                    })
                    .collect()
            }
        }
        Routing::Between { func, low, high } => between_shards(ks, *func, low, high, binds)?
            .into_iter()
            .map(|s| (s.to_string(), original.clone()))
            .collect(),
        Routing::Lookup { vindex, values, .. } => {
            let values = lookup_values(values, binds);
            lookup::shards(ks, vindex, &values, TabletType::Primary, snap, vc)
                .await?
                .into_iter()
                .map(|s| (s, original.clone()))
                .collect()
        }
        Routing::Scatter | Routing::Any => ks
            .shards
            .iter()
            .map(|s| (s.name.clone(), original.clone()))
            .collect(),
    };
    Ok(queries)
}

/// Runs a write's statements on their shards: in one transaction when
/// they are on several and the session has none (as vtgate does), so
/// that one shard's failure leaves no other shard's rows written.
async fn all_or_none<V: VCursor + Send>(
    vc: &mut V,
    keyspace: &str,
    queries: Vec<(String, String)>,
) -> Result<Vec<ShardResult>, Error> {
    let opened = match queries.len() > 1 && vc.multi_shard_transactions() {
        true => vc.begin_implicit().await?,
        false => Implicit::Nothing,
    };
    let results = vc
        .execute_multi(keyspace, TabletType::Primary, queries)
        .await;
    end_implicit(vc, opened, results).await
}

/// Runs an UPDATE or DELETE's shard statements; their OK, added up, and
/// for MariaDB's `DELETE ... RETURNING` the rows every shard returned
/// (one after another: one server returns them in no promised order).
async fn dml_done<V: VCursor + Send>(
    p: &DmlPlan,
    queries: Vec<(String, String)>,
    vc: &mut V,
) -> Result<(QueryDone, Option<ShardResult>), Error> {
    let mut results = if queries.is_empty() {
        vec![]
    } else {
        all_or_none(vc, &p.keyspace, queries).await?
    };
    let done = QueryDone::sum(results.iter().map(|r| &r.done));
    let returned = results
        .iter()
        .any(|r| !r.columns.is_empty())
        .then(|| returned_in_order(&mut results, None));
    Ok((done, returned))
}

async fn exec_insert<V: VCursor + Send, S: RowSink + Send>(
    p: &InsertPlan,
    binds: &[Bind],
    snap: &Snapshot,
    vc: &mut V,
    sink: &mut S,
) -> Result<(), Error> {
    // The lookup rows are added with the table's, in one transaction.
    let opened = match p.lookups.is_empty() {
        false => vc.begin_implicit().await?,
        true => Implicit::Nothing,
    };
    let done = insert_done(p, binds, snap, vc).await;
    let (done, returned) = end_implicit(vc, opened, done).await?;
    if done.last_insert_id > 0 {
        vc.set_last_insert_id(done.last_insert_id);
    }
    write_answer(done, returned, sink)
}

/// Runs an INSERT, each row on its shard, after its lookup rows; its OK,
/// and with `RETURNING` the rows the shards returned, in VALUES order.
async fn insert_done<V: VCursor + Send>(
    p: &InsertPlan,
    binds: &[Bind],
    snap: &Snapshot,
    vc: &mut V,
) -> Result<(QueryDone, Option<ShardResult>), Error> {
    let ks = keyspace_of(snap, &p.keyspace)?;
    let mut entries: Vec<Vec<lookup::Entry>> = vec![Vec::new(); p.lookups.len()];
    let need = p.rows.iter().filter(|r| r.needs_seq).count() as u64;
    let mut next_id = match (&p.sequence, need) {
        (Some((sks, st)), n) if n > 0 => Some(vc.next_sequence(sks, st, n).await?),
        _ => None,
    };
    let first_id = next_id;
    let mut placed: Vec<(&str, String)> = Vec::with_capacity(p.rows.len());
    for row in &p.rows {
        let mut values = row.values.clone();
        let mut seq_value = None;
        if row.needs_seq {
            let id = next_id
                .ok_or_else(|| Error::Plan(PlanError::Unsupported("sequence exhausted".into())))?;
            next_id = Some(id + 1);
            if let Some(c) = p.seq_col {
                values[c] = id.to_string();
            }
            seq_value = Some(Value::UInt(id));
        }
        let vval = match (&row.vindex_value, seq_value) {
            (Some(op), _) => operand_value(op, binds),
            (None, Some(v)) => v,
            (None, None) => Value::NULL,
        };
        let ksid = map_value(p.func, &vval)?.ok_or_else(|| {
            Error::Plan(PlanError::Unsupported(format!(
                "could not map vindex value {vval:?} to a keyspace id"
            )))
        })?;
        let shard = shard_for(ks, &ksid).ok_or_else(|| {
            Error::Plan(PlanError::Unsupported(format!(
                "no shard holds keyspace id {ksid:02x?}"
            )))
        })?;
        placed.push((shard, format!("({})", values.join(", "))));
        for (e, from) in entries.iter_mut().zip(&row.lookup_values) {
            e.push(lookup::Entry {
                from: from.iter().map(|v| operand_value(v, binds)).collect(),
                ksid: ksid.clone(),
                value: vval.clone(),
            });
        }
    }
    let mut kept = vec![true; placed.len()];
    for (owned, entries) in p.lookups.iter().zip(&entries) {
        let def = lookup::definition(ks, &owned.vindex)?;
        if p.upsert {
            lookup::create_ignoring(ks, &def, entries, &mut kept, snap, vc).await?;
        } else {
            lookup::create(ks, &def, &p.table, &owned.columns, entries, snap, vc).await?;
        }
    }
    // Each shard's rows, and where each stood in the VALUES.
    let mut per_shard: Vec<(&str, Vec<String>, Vec<usize>)> = Vec::new();
    let kept_rows = placed.into_iter().zip(kept).enumerate();
    for (at, ((shard, text), _)) in kept_rows.filter(|(_, (_, k))| *k) {
        match per_shard.iter_mut().find(|(s, _, _)| *s == shard) {
            Some((_, v, n)) => {
                v.push(text);
                n.push(at);
            }
            None => per_shard.push((shard, vec![text], vec![at])),
        }
    }
    if per_shard.is_empty() {
        // Every row's lookup value is another row's: nothing to insert.
        return Ok((QueryDone::default(), None));
    }
    let mut order = Vec::with_capacity(per_shard.len());
    let queries = per_shard
        .into_iter()
        .map(|(shard, rows, at)| {
            order.push(at);
            let sql = format!("{}{}{}", p.prefix, rows.join(", "), p.suffix);
            (shard.to_string(), substitute_binds(&sql, binds))
        })
        .collect();
    let mut results = all_or_none(vc, &p.keyspace, queries).await?;
    let mut done = QueryDone::sum(results.iter().map(|r| &r.done));
    if let Some(id) = first_id {
        done.last_insert_id = id;
    }
    if results.len() == 1 {
        done.info = results[0].done.info.clone();
    }
    let returned = p
        .returning
        .then(|| returned_in_order(&mut results, Some(&order)));
    Ok((done, returned))
}

/// The rows a write's shards returned (its `RETURNING`): with `order`
/// (`order[i]`: where shard `i`'s rows stood in an INSERT's VALUES) in
/// that order, as one server returns them; without it, or where a shard
/// returned fewer rows than it was sent (an IGNORE that skipped some, so
/// no row can be placed), the shards' rows follow one another.
fn returned_in_order(results: &mut [ShardResult], order: Option<&[Vec<usize>]>) -> ShardResult {
    let columns = results
        .iter()
        .find(|r| !r.columns.is_empty())
        .map(|r| r.columns.clone())
        .unwrap_or_default();
    let order = order.filter(|order| {
        results
            .iter()
            .zip(order.iter())
            .all(|(r, at)| r.rows.len() == at.len())
    });
    let mut rows: Vec<(usize, Vec<Value>)> = Vec::new();
    for (k, r) in results.iter_mut().enumerate() {
        let at = order.map(|o| &o[k]);
        let taken = std::mem::take(&mut r.rows);
        rows.extend(
            taken
                .into_iter()
                .enumerate()
                .map(|(i, row)| (at.map_or(k, |at| at[i]), row)),
        );
    }
    // Stable: rows of one shard keep their order where none is placed.
    rows.sort_by_key(|(at, _)| *at);
    ShardResult {
        columns,
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        done: QueryDone::default(),
    }
}

/// A sink that keeps only the column definitions (COM_FIELD_LIST) and
/// drops rows (VEXPLAIN QUERIES runs for its log only).
#[derive(Default)]
pub struct ColumnsOnly {
    /// Columns of the last result set.
    pub cols: Vec<Column>,
}

impl RowSink for ColumnsOnly {
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error> {
        self.cols = cols.to_vec();
        Ok(())
    }
    fn row(&mut self, _: &[Value]) -> Result<(), Error> {
        Ok(())
    }
    fn end_rows(&mut self, _: u16) -> Result<(), Error> {
        Ok(())
    }
    fn ok(&mut self, _: QueryDone) -> Result<(), Error> {
        Ok(())
    }
}

/// One BIGINT UNSIGNED value named `name` as a one-row result: vtgate's
/// `nextval` for `SELECT NEXT VALUE FROM seq`.
pub fn number_row<S: RowSink>(name: &str, value: u64, sink: &mut S) -> Result<(), Error> {
    let col = Column::new(ColumnType::MYSQL_TYPE_LONGLONG)
        .with_name(name.as_bytes())
        .with_character_set(BINARY_CHARSET)
        .with_column_length(20)
        .with_flags(
            ColumnFlags::NOT_NULL_FLAG | ColumnFlags::BINARY_FLAG | ColumnFlags::UNSIGNED_FLAG,
        );
    sink.columns(&[col])?;
    sink.row(&[Value::Bytes(value.to_string().into_bytes())])?;
    sink.end_rows(0)
}

/// Answers `SELECT 1[, ...]` (see [`crate::sql::literal_select`]) with the
/// columns MariaDB gives such literals: INT, binary collation, NOT NULL,
/// the digits as display width, the literal as the name.
pub fn literal_row<S: RowSink>(literals: &[&str], sink: &mut S) -> Result<(), Error> {
    let cols: Vec<Column> = literals
        .iter()
        .map(|l| {
            Column::new(ColumnType::MYSQL_TYPE_LONG)
                .with_name(l.as_bytes())
                .with_character_set(BINARY_CHARSET)
                .with_column_length(l.len() as u32)
                .with_flags(ColumnFlags::NOT_NULL_FLAG | ColumnFlags::BINARY_FLAG)
        })
        .collect();
    sink.columns(&cols)?;
    let row: Vec<Value> = literals
        .iter()
        .map(|l| Value::Bytes(l.as_bytes().to_vec()))
        .collect();
    sink.row(&row)?;
    sink.end_rows(0)
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

/// Whether a topology problem's text is about keyspace `ks`: it names
/// the keyspace (`keyspace ks: ...`, `keyspace ks shard -80: ...`) or one
/// of its records' keys.
fn about_keyspace(problem: &str, ks: &str) -> bool {
    let rest = problem
        .strip_prefix("keyspace ")
        .and_then(|r| r.strip_prefix(ks));
    rest.is_some_and(|r| r.starts_with(':') || r.starts_with(' '))
        || problem.contains(&format!("/keyspaces/{ks}/"))
}

fn show_rows(
    show: &ShowPlan,
    snap: &Snapshot,
    serving: impl Fn(&str) -> bool,
    problems: &[String],
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    // Rows whose `column` is LIKE the statement's pattern, if any.
    let keep = |like: &Option<String>, column: usize, rows: Vec<Vec<String>>| match like {
        Some(p) => rows
            .into_iter()
            .filter(|r| crate::sql::like(p, &r[column]))
            .collect(),
        None => rows,
    };
    match show {
        ShowPlan::Databases(like) => {
            let mut rows: Vec<Vec<String>> =
                snap.keyspaces.keys().map(|k| vec![k.clone()]).collect();
            for sys in ["information_schema", "mysql", "performance_schema", "sys"] {
                rows.push(vec![sys.to_string()]);
            }
            (vec!["Database"], keep(like, 0, rows))
        }
        ShowPlan::Keyspaces(like) => (
            vec!["Database"],
            keep(
                like,
                0,
                snap.keyspaces.keys().map(|k| vec![k.clone()]).collect(),
            ),
        ),
        ShowPlan::VschemaKeyspaces => (
            vec!["Keyspace", "Sharded", "Foreign Key", "Comment"],
            snap.keyspaces
                .values()
                .map(|k| {
                    let fk = k.vschema.foreign_key_mode.as_deref().unwrap_or("unmanaged");
                    // A keyspace whose latest records were rejected says
                    // why (vtgate shows its VSchema's error there).
                    let why: Vec<&str> = problems
                        .iter()
                        .filter(|p| about_keyspace(p, &k.name))
                        .map(String::as_str)
                        .collect();
                    vec![
                        k.name.clone(),
                        k.sharded.to_string(),
                        fk.to_string(),
                        why.join("; "),
                    ]
                })
                .collect(),
        ),
        ShowPlan::Shards(like) => (
            vec!["Shards"],
            keep(
                like,
                0,
                snap.keyspaces
                    .values()
                    .flat_map(|k| {
                        k.shards
                            .iter()
                            .map(move |s| vec![format!("{}/{}", k.name, s.name)])
                    })
                    .collect(),
            ),
        ),
        ShowPlan::Tablets(like) => {
            let (names, rows) = (
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
                        // The shard a primary serves: a reparent may drain it,
                        // and its record says when the primary's term began.
                        let primary_of = (t.tablet_type == TabletType::Primary)
                            .then(|| snap.shard(&t.keyspace, &t.shard))
                            .flatten();
                        vec![
                            t.alias
                                .rsplit_once('-')
                                .map(|(c, _)| c)
                                .unwrap_or("")
                                .to_string(),
                            t.keyspace.clone(),
                            t.shard.clone(),
                            t.tablet_type.as_str().to_ascii_uppercase(),
                            // A primary a reparent drains serves no new work.
                            if serving(&t.alias) && primary_of.is_none_or(|s| s.primary_serving) {
                                "SERVING"
                            } else {
                                "NOT_SERVING"
                            }
                            .to_string(),
                            t.alias.clone(),
                            format!("{}:{}", t.hostname, t.port),
                            primary_of
                                .map(|s| s.primary_term_start.clone())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
            (names, keep(like, 6, rows))
        }
        ShowPlan::Target(t) => (vec!["Target"], vec![vec![t.clone()]]),
        ShowPlan::VschemaVindexes(on) => {
            // Parameters as vtgate lists them: `k=v`, sorted, `; `-joined.
            let describe = |ks: &crate::topo::Keyspace, name: &str| {
                ks.vschema.vindexes.get(name).map(|v| {
                    let params: Vec<String> =
                        v.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    (
                        v.kind.clone(),
                        params.join("; "),
                        v.owner.clone().unwrap_or_default(),
                    )
                })
            };
            match on {
                None => (
                    vec!["Keyspace", "Name", "Type", "Params", "Owner"],
                    snap.keyspaces
                        .values()
                        .flat_map(|ks| {
                            ks.vschema.vindexes.keys().map(move |name| {
                                let (kind, params, owner) = describe(ks, name).unwrap_or_default();
                                vec![ks.name.clone(), name.clone(), kind, params, owner]
                            })
                        })
                        .collect(),
                ),
                Some((ks, table)) => (
                    vec!["Columns", "Name", "Type", "Params", "Owner"],
                    snap.keyspaces
                        .get(ks)
                        .and_then(|k| k.vschema.tables.get(table).map(|t| (k, t)))
                        .filter(|(k, _)| k.sharded)
                        .map(|(k, t)| {
                            t.column_vindexes
                                .iter()
                                .map(|cv| {
                                    let columns = cv.cols().join(", ");
                                    let (kind, params, owner) =
                                        describe(k, &cv.name).unwrap_or_default();
                                    vec![columns, cv.name.clone(), kind, params, owner]
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
            }
        }
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
        /// Last id handed out by the fake sequence.
        pub next_id: u64,
        /// What the engine set as LAST_INSERT_ID.
        pub last_insert_id: u64,
        /// Columns and per-shard rows a scatter streams back (default: one
        /// text column `x`, no rows).
        pub scatter_columns: Vec<Column>,
        /// (shard, rows) answered to a scatter.
        pub scatter_rows: Vec<(String, Vec<Vec<Value>>)>,
        /// What each scatter offered the tablets to prepare.
        pub prepared: Vec<Option<PreparedQuery>>,
    }

    impl VCursor for RecordingCursor {
        async fn stream_multi<C: ScatterConsumer + Send>(
            &mut self,
            keyspace: &str,
            tablet_type: TabletType,
            queries: Vec<(String, String)>,
            prepared: Option<&PreparedQuery>,
            consumer: &mut C,
        ) -> Result<(), Error> {
            self.prepared.push(prepared.cloned());
            let mut streams = Vec::new();
            for (shard, sql) in queries {
                let rows = self
                    .scatter_rows
                    .iter()
                    .find(|(s, _)| *s == shard)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default();
                self.calls.push((keyspace.into(), shard, tablet_type, sql));
                let s: Box<dyn ShardRows> = Box::new(row::BufferedRows::new(rows));
                streams.push(s);
            }
            let columns = if self.scatter_columns.is_empty() {
                vec![text_column("x")]
            } else {
                self.scatter_columns.clone()
            };
            consumer
                .consume(ShardStreams {
                    columns: columns.into(),
                    streams,
                })
                .await
        }

        async fn execute_multi(
            &mut self,
            keyspace: &str,
            tablet_type: TabletType,
            queries: Vec<(String, String)>,
        ) -> Result<Vec<ShardResult>, Error> {
            let mut out = Vec::new();
            for (shard, sql) in queries {
                self.calls
                    .push((keyspace.into(), shard.clone(), tablet_type, sql));
                out.push(ShardResult {
                    columns: vec![text_column("x")],
                    rows: Vec::new(),
                    done: QueryDone {
                        affected_rows: 1,
                        ..QueryDone::default()
                    },
                });
            }
            Ok(out)
        }

        async fn next_sequence(&mut self, _ks: &str, _t: &str, count: u64) -> Result<u64, Error> {
            self.next_id += count;
            Ok(self.next_id - count + 1)
        }

        fn set_last_insert_id(&mut self, id: u64) {
            self.last_insert_id = id;
        }

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
        /// Takes binary rows, as a prepared statement's client does.
        pub binary: bool,
    }

    impl PacketSink for CollectSink {
        fn column_packets(&mut self, _defs: &[bytes::BytesMut]) {}
        fn row_packet(&mut self, _payload: &[u8]) {}
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
        fn packets(&mut self, binary: bool) -> Option<&mut dyn PacketSink> {
            (self.binary == binary).then_some(self as &mut dyn PacketSink)
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

    /// A table of constants: its first row names and types the columns,
    /// the others are one flat VALUES list (a `UNION ALL SELECT` per row
    /// would parse as a tree as deep as the rows are many); no row is a
    /// first row with LIMIT 0.
    #[test]
    fn a_table_of_constants_lists_its_rows_flat() {
        let cols = [text_column("a"), text_column("b")];
        let names = ["a".to_string(), "b".to_string()];
        let rows: Vec<Vec<String>> = (1..=3)
            .map(|i| vec![i.to_string(), format!("'r{i}'")])
            .collect();
        assert_eq!(
            constants_of(&names, &cols, &rows),
            "(SELECT 1 AS `a`, 'r1' AS `b` UNION ALL VALUES (2, 'r2'), (3, 'r3'))"
        );
        assert_eq!(
            constants_of(&names, &cols, &rows[..1]),
            "(SELECT 1 AS `a`, 'r1' AS `b`)"
        );
        assert_eq!(
            constants_of(&names, &cols, &[]),
            format!("(SELECT {0} AS `a`, {0} AS `b` LIMIT 0)", STRING_NULL)
        );
    }

    /// A DOUBLE of fixed decimals (`round(f / 3, 2)`) keeps them through
    /// a table of constants: its first value rounded to them, the others
    /// (and NULLs) of no type of their own; one of no fixed decimals is a
    /// DOUBLE in every row.
    #[test]
    fn a_double_of_fixed_decimals_keeps_them_as_a_constant() {
        let fixed = [Column::new(ColumnType::MYSQL_TYPE_DOUBLE)
            .with_decimals(2)
            .with_name(b"r")];
        let rows = [
            vec![Value::Bytes(b"1.50".to_vec())],
            vec![Value::NULL],
            vec![Value::Double(-0.5)],
        ];
        assert_eq!(
            constants(&fixed, &rows, &[None], false),
            "(SELECT ROUND(CAST(1.50 AS DOUBLE), 2) AS `r` UNION ALL VALUES (NULL), (-0.50))"
        );
        let open = [Column::new(ColumnType::MYSQL_TYPE_DOUBLE)
            .with_decimals(NOT_FIXED_DECIMALS)
            .with_name(b"r")];
        assert_eq!(
            constants(&open, &rows[..1], &[None], false),
            "(SELECT CAST(1.50e0 AS DOUBLE) AS `r`)"
        );
    }

    #[test]
    fn a_problem_is_about_the_keyspace_it_names() {
        assert!(about_keyspace("keyspace ks: bad", "ks"));
        assert!(about_keyspace("keyspace ks shard -80: no cover", "ks"));
        assert!(about_keyspace(
            "topo key global/keyspaces/ks/VSchema: eof",
            "ks"
        ));
        assert!(!about_keyspace("keyspace ks2: bad", "ks"));
        assert!(!about_keyspace("tablet zone1-1: unknown type 'x'", "ks"));
    }

    #[test]
    fn an_updates_matched_rows_survive_the_sum_of_its_shards() {
        let part = |affected, info: &str| QueryDone {
            affected_rows: affected,
            info: info.into(),
            ..QueryDone::default()
        };
        let sum = QueryDone::sum(&[
            part(0, "Rows matched: 2  Changed: 0  Warnings: 0"),
            part(1, "Rows matched: 1  Changed: 1  Warnings: 1"),
        ]);
        assert_eq!(sum.affected_rows, 1);
        assert_eq!(sum.info, "Rows matched: 3  Changed: 1  Warnings: 1");
        assert_eq!(sum.rows_matched(), Some(3));
        // A part without an UPDATE's info (an INSERT) leaves none.
        let mixed = QueryDone::sum(&[part(2, "Records: 2  Duplicates: 0  Warnings: 0")]);
        assert_eq!((mixed.affected_rows, mixed.rows_matched()), (2, None));
        assert_eq!(QueryDone::sum(&[]).info, "");
    }

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
        Snapshot::build(&r, &Default::default(), 1).unwrap()
    }

    #[test]
    fn a_primary_a_reparent_drains_shows_as_not_serving() {
        let tablets = |serving: bool| {
            let mut r = BTreeMap::new();
            let shard =
                format!(r#"{{"primary_alias": "zone1-1", "is_primary_serving": {serving}}}"#);
            for (k, v) in [
                ("global/keyspaces/ks/Keyspace", "{}".to_string()),
                ("global/keyspaces/ks/shards/0/Shard", shard),
                (
                    "zone1/tablets/zone1-1/Tablet",
                    r#"{"alias":"zone1-1","hostname":"h","mysql_port":1,"keyspace":"ks","shard":"0","type":"PRIMARY"}"#.into(),
                ),
                (
                    "zone1/tablets/zone1-2/Tablet",
                    r#"{"alias":"zone1-2","hostname":"h","mysql_port":2,"keyspace":"ks","shard":"0","type":"REPLICA"}"#.into(),
                ),
            ] {
                r.insert(k.to_string(), v.into_bytes());
            }
            let snap = Snapshot::build(&r, &Default::default(), 1).unwrap();
            let (_, rows) = show_rows(&ShowPlan::Tablets(None), &snap, |_| true, &[]);
            rows.into_iter().map(|r| r[4].clone()).collect::<Vec<_>>()
        };
        assert_eq!(tablets(true), ["SERVING", "SERVING"]);
        assert_eq!(tablets(false), ["NOT_SERVING", "SERVING"]);
    }

    #[tokio::test]
    async fn route_sends_the_statement_to_its_shard_once() {
        let s = snap();
        let sql = "select * from product where id = 1";
        let p = plan(
            &classify(sql).unwrap(),
            None,
            &Target::parse("commerce@rdonly").unwrap(),
            &s,
        )
        .unwrap();
        let (mut vc, mut sink) = (RecordingCursor::default(), CollectSink::default());
        execute(&p, sql, &[], TabletType::Rdonly, &s, &mut vc, &mut sink)
            .await
            .unwrap();
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

    /// Statements the engine wrote run within one another up to a bound:
    /// past it the statement is refused (a plan that yields itself again
    /// would otherwise nest until the stack overflowed).
    #[tokio::test]
    async fn statements_run_within_one_another_up_to_a_bound() {
        let s = snap();
        let sql = "select * from product where id = 1";
        let s = &s;
        let at = |depth: usize| {
            NESTED_STATEMENTS.scope(depth, async move {
                let (mut vc, mut sink) = (RecordingCursor::default(), CollectSink::default());
                run_statement("commerce", sql, TabletType::Primary, s, &mut vc, &mut sink)
                    .await
                    .map(|_| vc.calls.len())
            })
        };
        assert_eq!(at(MAX_NESTED_STATEMENTS - 1).await.unwrap(), 1);
        let refused = at(MAX_NESTED_STATEMENTS).await.unwrap_err();
        assert!(
            refused.to_string().contains("within one another past"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn show_statements_touch_no_tablet() {
        let s = snap();
        let p = plan(
            &classify("show vschema tables").unwrap(),
            None,
            &Target::parse("commerce").unwrap(),
            &s,
        )
        .unwrap();
        let (mut vc, mut sink) = (RecordingCursor::default(), CollectSink::default());
        execute(&p, "", &[], TabletType::Primary, &s, &mut vc, &mut sink)
            .await
            .unwrap();
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

    fn sharded() -> Snapshot {
        let mut r = BTreeMap::new();
        for (k, v) in [
            (
                "global/keyspaces/commerce/VSchema",
                r#"{"tables": {"seq": {"type": "sequence"}}}"#,
            ),
            ("global/keyspaces/commerce/shards/0/Shard", "{}"),
            (
                "global/keyspaces/customer/VSchema",
                r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}, "num": {"type": "numeric"}},
                    "tables": {"c": {"column_vindexes": [{"column": "id", "name": "hash"}],
                                     "auto_increment": {"column": "id", "sequence": "seq"}},
                               "r": {"column_vindexes": [{"column": "id", "name": "num"}]}}}"#,
            ),
            ("global/keyspaces/customer/shards/-80/Shard", "{}"),
            ("global/keyspaces/customer/shards/80-/Shard", "{}"),
        ] {
            r.insert(k.to_string(), v.as_bytes().to_vec());
        }
        Snapshot::build(&r, &Default::default(), 1).unwrap()
    }

    async fn run_sharded(sql: &str) -> (RecordingCursor, CollectSink) {
        let (vc, sink, _) = run_sharded_with(sql, RecordingCursor::default()).await;
        (vc, sink)
    }

    /// Plans `sql` on the sharded fixture and runs it against `vc`.
    async fn run_sharded_with(
        sql: &str,
        vc: RecordingCursor,
    ) -> (RecordingCursor, CollectSink, Result<(), Error>) {
        run_sharded_as(sql, &[], false, vc).await
    }

    /// Runs `sql` with prepared-statement `params` for a client that
    /// takes `binary` rows or text ones.
    async fn run_sharded_as(
        sql: &str,
        params: &[Value],
        binary: bool,
        vc: RecordingCursor,
    ) -> (RecordingCursor, CollectSink, Result<(), Error>) {
        let mut vc = vc;
        let s = sharded();
        let n = crate::sql::normalize::normalize(sql, params, false);
        let p = plan(
            &classify(sql).unwrap(),
            Some(&n.template),
            &Target::parse("customer").unwrap(),
            &s,
        )
        .unwrap();
        let mut sink = CollectSink {
            binary,
            ..CollectSink::default()
        };
        let r = execute(
            &p,
            sql,
            &n.binds,
            TabletType::Primary,
            &s,
            &mut vc,
            &mut sink,
        )
        .await;
        (vc, sink, r)
    }

    fn shards_and_sql(vc: &RecordingCursor) -> Vec<(String, String)> {
        vc.calls
            .iter()
            .map(|c| (c.1.clone(), c.3.clone()))
            .collect()
    }

    /// A value join asks its right side once per distinct value its left
    /// rows bind (MariaDB's subquery cache), and once per row when the
    /// right side could answer otherwise the next time (`rand()`).
    #[tokio::test]
    async fn a_nested_loop_asks_once_per_value_bound() {
        let cursor = || RecordingCursor {
            // The left side reads the bound column first: (k, id).
            scatter_columns: vec![text_column("k"), text_column("id")],
            scatter_rows: vec![
                (
                    "-80".into(),
                    vec![row(&["5", "1"]), row(&["5", "2"]), row(&["7", "3"])],
                ),
                ("80-".into(), vec![row(&["5", "4"]), row(&["7", "6"])]),
            ],
            ..RecordingCursor::default()
        };
        let right =
            |vc: &RecordingCursor| vc.calls.iter().filter(|c| c.3.contains("FROM r")).count();
        let (vc, sink, r) = run_sharded_with(
            "select c.id, (select r.x from r where r.id = c.k) from c",
            cursor(),
        )
        .await;
        r.unwrap();
        assert_eq!(sink.rows.len(), 5);
        assert_eq!(right(&vc), 2, "{:?}", vc.calls);
        let (vc, _, r) = run_sharded_with(
            "select c.id, (select r.x + rand() from r where r.id = c.k) from c",
            cursor(),
        )
        .await;
        r.unwrap();
        assert_eq!(right(&vc), 5, "{:?}", vc.calls);
    }

    fn row(cells: &[&str]) -> Vec<Value> {
        cells
            .iter()
            .map(|c| Value::Bytes(c.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn row_constructors_are_told_by_their_width() {
        assert_eq!(row_width("(`id`, `n`)"), 2);
        assert_eq!(row_width("(a, 'x,y', f(b, c))"), 3);
        assert_eq!(row_width("k"), 1);
        assert_eq!(row_width("(k)"), 1);
        assert_eq!(row_width("(a) + (b, c)"), 1);
    }

    #[tokio::test]
    async fn in_list_is_split_by_shard() {
        // ids 1 and 2 hash below 0x80, 4 above.
        let (vc, sink) = run_sharded("select id from c where id in (1, 2, 4) order by id").await;
        assert_eq!(
            shards_and_sql(&vc),
            vec![
                (
                    "-80".to_string(),
                    "SELECT id, weight_string(rtrim(id)) FROM c WHERE id IN (1, 2) ORDER BY id ASC"
                        .to_string()
                ),
                (
                    "80-".to_string(),
                    "SELECT id, weight_string(rtrim(id)) FROM c WHERE id IN (4) ORDER BY id ASC"
                        .to_string()
                ),
            ]
        );
        assert!(
            sink.rows.is_empty(),
            "the mismatched fake result is refused, not indexed"
        );
    }

    #[tokio::test]
    async fn between_on_a_sequential_vindex_reaches_only_the_shards_of_its_range() {
        // numeric: id 2^63 is keyspace id 0x80..., the first id of 80-.
        let top = 1u64 << 63;
        let cases = [
            (
                format!("select id from r where id between 5 and {}", top - 1),
                vec!["-80"],
            ),
            (
                format!("select id from r where id between {top} and {}", top + 9),
                vec!["80-"],
            ),
            (
                format!("select id from r where id between {} and {top}", top - 1),
                vec!["-80", "80-"],
            ),
            // Bounds that say nothing about placement: every shard.
            (
                "select id from r where id between 7 and 3".to_string(),
                vec!["-80", "80-"],
            ),
            (
                "select id from r where id between null and 3".to_string(),
                vec!["-80", "80-"],
            ),
            (
                "select id from r where id between -5 and 3".to_string(),
                vec!["-80", "80-"],
            ),
            (
                "select id from r where id not between 1 and 3".to_string(),
                vec!["-80", "80-"],
            ),
            // A hash vindex does not keep order: a range scatters.
            (
                "select id from c where id between 1 and 2".to_string(),
                vec!["-80", "80-"],
            ),
        ];
        for (sql, want) in cases {
            let (vc, _) = run_sharded(&sql).await;
            let shards: Vec<String> = vc.calls.iter().map(|c| c.1.clone()).collect();
            assert_eq!(shards, want, "{sql}");
            if want.len() == 1 {
                assert_eq!(vc.calls[0].3, sql, "one shard gets the statement verbatim");
            }
        }
        // DML: the same shards, each with the statement as written.
        let sql = format!("delete from r where id between {top} and {}", top + 1);
        let (vc, _) = run_sharded(&sql).await;
        assert_eq!(shards_and_sql(&vc), vec![("80-".to_string(), sql)]);
        let sql = format!("update r set v = 1 where id between 1 and {top}");
        let (vc, _) = run_sharded(&sql).await;
        assert_eq!(
            shards_and_sql(&vc),
            vec![("-80".to_string(), sql.clone()), ("80-".to_string(), sql)]
        );
    }

    #[tokio::test]
    async fn a_binary_client_offers_the_shards_its_scatter_prepared() {
        let sql = "select id, 'x' from c where id between ? and ?";
        let params = [Value::Int(1), Value::Int(9)];
        let mut offered = Vec::new();
        for binary in [false, true] {
            let (vc, _, r) = run_sharded_as(sql, &params, binary, RecordingCursor::default()).await;
            r.unwrap();
            // The text queries go to both shards either way.
            assert_eq!(vc.calls.len(), 2);
            assert!(vc.calls[0].3.ends_with("BETWEEN 1 AND 9"), "{:?}", vc.calls);
            offered.extend(vc.prepared);
        }
        let prepared = PreparedQuery {
            sql: "SELECT id, 'x' FROM c WHERE id BETWEEN ? AND ?".into(),
            params: vec![Value::Int(1), Value::Int(9)],
        };
        assert_eq!(offered, [None, Some(prepared)]);
    }

    #[tokio::test]
    async fn point_select_goes_to_one_shard_verbatim() {
        let (vc, _) = run_sharded("select * from c where id = 4").await;
        assert_eq!(
            shards_and_sql(&vc),
            vec![(
                "80-".to_string(),
                "select * from c where id = 4".to_string()
            )]
        );
    }

    #[test]
    fn returned_rows_come_back_in_values_order() {
        let shard = |ids: &[u64]| ShardResult {
            columns: vec![Column::new(ColumnType::MYSQL_TYPE_LONGLONG)],
            rows: ids.iter().map(|&i| vec![Value::UInt(i)]).collect(),
            done: QueryDone::default(),
        };
        let ids = |r: &ShardResult| -> Vec<Value> { r.rows.iter().map(|r| r[0].clone()).collect() };
        // VALUES (10), (11), (12), (13): rows 0 and 3 on one shard, 1 and 2 on the other.
        let order = vec![vec![0, 3], vec![1, 2]];
        let r = returned_in_order(&mut [shard(&[10, 13]), shard(&[11, 12])], Some(&order));
        assert_eq!(ids(&r), [10, 11, 12, 13].map(Value::UInt));
        assert_eq!(r.columns.len(), 1);
        // A shard that skipped a row (IGNORE): shard after shard.
        let r = returned_in_order(&mut [shard(&[13]), shard(&[11, 12])], Some(&order));
        assert_eq!(ids(&r), [13, 11, 12].map(Value::UInt));
        // A DELETE's: shard after shard.
        let r = returned_in_order(&mut [shard(&[13, 10]), shard(&[11])], None);
        assert_eq!(ids(&r), [13, 10, 11].map(Value::UInt));
    }

    #[tokio::test]
    async fn inserts_take_sequence_ids_and_split_rows() {
        let (vc, _) = run_sharded("insert into c (name) values ('a'), ('b'), ('c'), ('d')").await;
        // The fake sequence hands out 1..=4; 1, 2, 3 hash to -80 and 4 to 80-.
        assert_eq!(
            shards_and_sql(&vc),
            vec![
                (
                    "-80".to_string(),
                    "INSERT INTO c (`name`, `id`) VALUES ('a', 1), ('b', 2), ('c', 3)".to_string()
                ),
                (
                    "80-".to_string(),
                    "INSERT INTO c (`name`, `id`) VALUES ('d', 4)".to_string()
                ),
            ]
        );
        assert_eq!(vc.last_insert_id, 1);
    }

    #[tokio::test]
    async fn scatter_dml_and_ddl_reach_every_shard() {
        let (vc, _) = run_sharded("delete from c where name = 'x'").await;
        assert_eq!(
            vc.calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
            vec!["-80", "80-"]
        );
        let (vc, _) = run_sharded("update c set name = 'y' where id = 1").await;
        assert_eq!(
            vc.calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
            vec!["-80"]
        );
        let (vc, _) = run_sharded("alter table c add column z int").await;
        assert_eq!(vc.calls.len(), 2);
        assert!(vc
            .calls
            .iter()
            .all(|c| c.3 == "alter table c add column z int"));
    }

    /// Rows of (id, weight_string(id)) as a shard sorted by id sends them
    /// (the sort key is the select item itself).
    fn id_rows(ids: &[i64]) -> Vec<Vec<Value>> {
        ids.iter()
            .map(|i| {
                let t = Value::Bytes(i.to_string().into_bytes());
                vec![t, Value::Bytes(i.to_be_bytes().to_vec())]
            })
            .collect()
    }

    fn int_cols(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|n| {
                Column::new(mysql_common::constants::ColumnType::MYSQL_TYPE_LONGLONG)
                    .with_name(n.as_bytes())
            })
            .collect()
    }

    /// Runs an ORDER BY id scatter over two shards answering `low` and
    /// `high` (each sorted as its shard would); returns the column names
    /// and the ids sent to the client.
    async fn merged_ids(sql: &str, low: &[i64], high: &[i64]) -> (Vec<String>, Vec<String>) {
        let vc = RecordingCursor {
            scatter_columns: int_cols(&["id", "weight_string(id)"]),
            scatter_rows: vec![("-80".into(), id_rows(low)), ("80-".into(), id_rows(high))],
            ..RecordingCursor::default()
        };
        let (_, sink, _) = run_sharded_with(sql, vc).await;
        let ids = sink.rows.iter().map(|r| r[0].clone().unwrap()).collect();
        (sink.columns, ids)
    }

    #[tokio::test]
    async fn ordered_scatter_merges_sorted_shard_streams_with_offset_and_limit() {
        let (cols, got) = merged_ids(
            "select id from c order by id limit 2, 5",
            &[1, 2, 5, 8, 9],
            &[3, 4, 6, 7, 10],
        )
        .await;
        assert_eq!(cols, vec!["id"]);
        assert_eq!(got, vec!["3", "4", "5", "6", "7"]);
    }

    #[tokio::test]
    async fn distinct_merges_each_shards_sorted_groups_once() {
        let (cols, got) = merged_ids(
            "select distinct id from c order by id limit 1, 4",
            &[1, 2, 5, 8, 9],
            &[2, 3, 5, 9, 10],
        )
        .await;
        assert_eq!(cols, vec!["id"]);
        assert_eq!(got, vec!["2", "3", "5", "8"]);
        // A shard whose groups are not sorted (a key the shards order
        // otherwise than the gate) is refused, never answered twice.
        let vc = RecordingCursor {
            scatter_columns: int_cols(&["id", "weight_string(id)"]),
            scatter_rows: vec![
                ("-80".into(), id_rows(&[5, 1])),
                ("80-".into(), id_rows(&[3])),
            ],
            ..RecordingCursor::default()
        };
        let (_, _, r) = run_sharded_with("select distinct id from c", vc).await;
        let e = r.unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
    }

    #[tokio::test]
    async fn ordered_merge_descending_keeps_every_row() {
        let (_, got) = merged_ids(
            "select id from c order by id desc",
            &[9, 8, 5, 2, 1],
            &[10, 7, 6, 4, 3],
        )
        .await;
        assert_eq!(
            got,
            (1..=10).rev().map(|i| i.to_string()).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn unordered_scatter_passes_every_row_and_stops_at_the_limit() {
        let rows = |ids: &[i64]| -> Vec<Vec<Value>> {
            ids.iter()
                .map(|i| vec![Value::Bytes(i.to_string().into_bytes())])
                .collect()
        };
        let cursor = || RecordingCursor {
            scatter_columns: int_cols(&["id"]),
            scatter_rows: vec![
                ("-80".into(), rows(&[1, 2, 3])),
                ("80-".into(), rows(&[4, 5])),
            ],
            ..RecordingCursor::default()
        };
        let (_, sink, _) = run_sharded_with("select id from c", cursor()).await;
        let mut got: Vec<String> = sink.rows.iter().map(|r| r[0].clone().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec!["1", "2", "3", "4", "5"]);

        let (vc, sink, _) = run_sharded_with("select id from c limit 3", cursor()).await;
        assert_eq!(sink.rows.len(), 3);
        assert!(
            vc.calls.iter().all(|c| c.3.ends_with("LIMIT 3")),
            "{:?}",
            vc.calls
        );
    }

    #[tokio::test]
    async fn a_shard_row_of_the_wrong_width_is_an_error() {
        let vc = RecordingCursor {
            scatter_columns: int_cols(&["id", "weight_string(id)"]),
            scatter_rows: vec![
                ("-80".into(), id_rows(&[1])),
                ("80-".into(), vec![vec![Value::Bytes(b"2".to_vec())]]),
            ],
            ..RecordingCursor::default()
        };
        let (_, _, r) = run_sharded_with("select id from c order by id", vc).await;
        let e = r.unwrap_err();
        assert!(e.to_string().contains("different widths"), "{e}");
    }
}
