//! Atomic commit across shards (`--transaction_mode=twopc`, vtgate's
//! flag): each shard's part of a transaction is a MariaDB XA transaction,
//! and a record in the topology store is the decision.
//!
//! Under twopc every part begins with `XA START`, named by the
//! transaction's id (the gtrid, [`Coordinator::next_dtid`]) and the
//! tablet's alias (the bqual), under shardgate's format id
//! ([`FORMAT_ID`]). A COMMIT that wrote on more than one tablet:
//! 1. records the parts (keyspace, shard, tablet) under the transaction's
//!    id, before anything is prepared;
//! 2. prepares every part (`XA END`, `XA PREPARE`): each is durable on its
//!    shard from then on, through a disconnect, a restart or (it is in
//!    the binlog) a failover;
//! 3. takes the decision: creates `<id>.decision` saying `commit` only if
//!    no decision is there and the record still is (a resolver that found
//!    the transaction abandoned decides `rollback` first, and deletes the
//!    record once its parts are rolled back); one etcd transaction;
//! 4. commits every part (`XA COMMIT`), then deletes the record and the
//!    decision (in the background; at once in etcd, the record first in
//!    files).
//!
//! A part that fails to prepare, or a decision taken by someone else,
//! rolls every part back and the client's COMMIT fails. A part that fails
//! to commit after the decision is left to the resolver; the client's
//! COMMIT succeeds, since the decision is durable. A COMMIT that wrote on
//! one tablet, or only read, ends each part in one phase (`XA COMMIT ...
//! ONE PHASE`): nothing is recorded.
//!
//! The resolver ([`run`]) runs in every shardgate and makes the protocol
//! survive a shardgate that died half way: a record older than
//! `--twopc_abandon_age` without a decision is decided `rollback`; a
//! decided record has the parts still prepared on its shards' current
//! primaries (`XA RECOVER`) committed or rolled back, and is deleted once
//! none is left; a prepared part of ours whose record is gone is rolled
//! back (a record goes only once its parts were committed, so a part still
//! prepared without one was prepared after a rollback was decided).
//! `XA RECOVER` is read before the records, so a part committed between
//! the two reads is not mistaken for such an orphan (rolling back a
//! committed xid fails harmlessly: MariaDB no longer knows it).
//!
//! The decision and the rollback race safely: both are an exclusive
//! create of the same key, and `commit` is taken only while the record
//! exists, which a resolver deletes before (or with) the decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::error::Error;
use crate::topo::store::TopoStore;
use crate::topo::{Snapshot, TopoError};

/// The XA format id of shardgate's transactions ("SG"): the resolver
/// touches no other prepared transaction a tablet holds.
pub const FORMAT_ID: u32 = 0x5347;

/// Where records live beside the topology's root (outside the prefix the
/// topology watch reads).
pub const STORE_SUFFIX: &str = ".twopc";

/// Why a transaction under twopc was rolled back at COMMIT.
#[derive(Debug, thiserror::Error)]
pub enum TwopcError {
    /// The record or the decision could not be written.
    #[error("XA_RBROLLBACK: Transaction branch was rolled back: the decision store failed: {0}")]
    Store(#[from] TopoError),
    /// The decision could not be taken nor read (the store failed): the
    /// parts stay prepared, and a resolver ends them as the store says
    /// once it answers.
    #[error("transaction {dtid} is prepared on every shard and its decision could not be recorded ({source}); a resolver commits or rolls it back once the decision store answers")]
    InDoubt {
        /// The transaction's id.
        dtid: String,
        /// The store's failure.
        source: TopoError,
    },
    /// A resolver decided the transaction first (it was older than
    /// `--twopc_abandon_age` when it prepared).
    #[error("XA_RBROLLBACK: Transaction branch was rolled back: a resolver found it abandoned (older than --twopc_abandon_age)")]
    Abandoned,
    /// The server has no topology store to keep decisions in.
    #[error("XA_RBROLLBACK: Transaction branch was rolled back: no decision store for --transaction_mode=twopc")]
    NoStore,
    /// A part's tablet is not in the topology the commit loaded.
    #[error(
        "XA_RBROLLBACK: Transaction branch was rolled back: tablet {0} is not in the topology"
    )]
    UnknownTablet(String),
}

/// Counters for `/debug/vars` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions committed in two phases.
    pub committed: AtomicU64,
    /// Transactions rolled back at COMMIT (a part failed to prepare, or
    /// the decision was taken by a resolver).
    pub rolled_back: AtomicU64,
    /// Committed transactions with a part that failed to commit, left to
    /// the resolver.
    pub left_to_resolver: AtomicU64,
    /// Parts the resolver committed or rolled back.
    pub resolved_parts: AtomicU64,
}

/// The server's side of twopc: the decision store, the transaction ids
/// this shardgate hands out, how old an undecided record must be before
/// resolvers roll it back.
pub struct Coordinator {
    store: Option<TopoStore>,
    /// Random per process, so ids of shardgates sharing a store (and of
    /// this one's earlier runs) never meet.
    gate: String,
    next: AtomicU64,
    /// `--twopc_abandon_age`.
    pub abandon_age: Duration,
    /// A transaction began under twopc here: the resolver reads the
    /// primaries' prepared parts from then on (before, only records).
    used: AtomicBool,
    /// What commits and the resolver did.
    pub stats: Stats,
    /// Committed transactions whose records wait to be deleted, in one
    /// store request for all that commit within a few milliseconds.
    forgotten: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            store: None,
            gate: format!("{:08x}", rand::random::<u32>()),
            next: AtomicU64::new(1),
            abandon_age: Duration::from_secs(15),
            used: AtomicBool::new(false),
            stats: Stats::default(),
            forgotten: Default::default(),
        }
    }
}

/// One part as recorded: where its shard is (the resolver finds the
/// shard's primary of the moment) and the tablet, which names the part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Keyspace.
    pub keyspace: String,
    /// Shard.
    pub shard: String,
    /// The tablet the part ran on (its xid's bqual).
    pub tablet: String,
}

/// A transaction's record, written before its parts are prepared.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Its parts.
    pub parts: Vec<Part>,
    /// When it was written (ms since the epoch): its age for resolvers.
    pub at: u64,
}

/// A decision, stored under `<id>.decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every part commits.
    Commit,
    /// Every part rolls back.
    Rollback,
}

/// A decision as stored: the outcome, and when it was taken (ms since
/// the epoch; a decision outliving its record is deleted once old).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Commit or roll back.
    pub decision: Outcome,
    /// When it was taken.
    pub at: u64,
}

/// Milliseconds since the epoch, as records and decisions are stamped.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where `dtid`'s decision is stored, beside its record.
pub fn decision_key(dtid: &str) -> String {
    format!("{dtid}.decision")
}

/// The xid of `dtid`'s part on `tablet`, as XA statements write it.
pub fn xid(dtid: &str, tablet: &str) -> String {
    let q = |s: &str| s.replace('\'', "''");
    format!("'{}','{}',{FORMAT_ID}", q(dtid), q(tablet))
}

impl Coordinator {
    /// A coordinator keeping its records in `store` (see [`STORE_SUFFIX`]).
    pub fn new(store: TopoStore, abandon_age: Duration) -> Self {
        Coordinator {
            store: Some(store),
            abandon_age,
            ..Default::default()
        }
    }

    /// A new transaction id (an XA gtrid).
    pub fn next_dtid(&self) -> String {
        self.used.store(true, Relaxed);
        format!("sg-{}-{}", self.gate, self.next.fetch_add(1, Relaxed))
    }

    fn store(&self) -> Result<&TopoStore, TwopcError> {
        self.store.as_ref().ok_or(TwopcError::NoStore)
    }

    /// The store a decision goes to, and `outcome` stamped now as it is
    /// stored.
    fn decision(&self, outcome: Outcome) -> Result<(&TopoStore, Vec<u8>), TopoError> {
        let store = self.store().map_err(|e| TopoError::Store(e.to_string()))?;
        let value = serde_json::to_vec(&Decision {
            decision: outcome,
            at: now_ms(),
        })
        .unwrap_or_default();
        Ok((store, value))
    }

    /// Takes `outcome` for `dtid` unless a decision is there; returns the
    /// one that holds.
    async fn decide(&self, dtid: &str, outcome: Outcome) -> Result<Outcome, TopoError> {
        let (store, value) = self.decision(outcome)?;
        if store.create(&decision_key(dtid), &value).await? {
            return Ok(outcome);
        }
        let held = store.get(&decision_key(dtid)).await?;
        held.and_then(|v| serde_json::from_slice::<Decision>(&v).ok())
            .map(|d| d.decision)
            .ok_or_else(|| TopoError::Store(format!("{dtid}: unreadable decision")))
    }

    /// Takes `commit` for `dtid` if no decision is there and its record
    /// still is; false when a resolver's `rollback` holds (or its record
    /// went with it).
    async fn decide_commit(&self, dtid: &str) -> Result<bool, TopoError> {
        let (store, value) = self.decision(Outcome::Commit)?;
        // Only this gate takes `commit`: a decision there is a rollback.
        store
            .create_witnessed(&decision_key(dtid), &value, dtid)
            .await
    }

    /// Deletes a resolved transaction's record, then its decision.
    async fn forget(&self, dtid: &str) {
        if let Ok(store) = self.store() {
            forget(store, &[dtid.to_string()]).await;
        }
    }

    /// [`Self::forget`] in the background: a commit's client need not
    /// wait for its records to go, and the records of the transactions
    /// that commit within the next few milliseconds go in the same store
    /// request (one etcd transaction per 64 commits at most, instead of
    /// one each: the store's requests are most of what twopc costs the
    /// gate).
    fn forget_later(&self, dtid: &str) {
        let Ok(store) = self.store() else { return };
        let first = {
            let mut waiting = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
            waiting.push(dtid.to_string());
            waiting.len() == 1
        };
        if first {
            let (store, waiting) = (store.clone(), self.forgotten.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let batch = std::mem::take(&mut *waiting.lock().unwrap_or_else(|p| p.into_inner()));
                for chunk in batch.chunks(64) {
                    forget(&store, chunk).await;
                }
            });
        }
    }
}

/// Deletes resolved transactions' records and decisions.
async fn forget(store: &TopoStore, dtids: &[String]) {
    // The record first (at once in etcd): see the module's doc.
    let keys: Vec<String> = dtids
        .iter()
        .flat_map(|d| [d.clone(), decision_key(d)])
        .collect();
    if let Err(e) = store.delete_keys(&keys).await {
        tracing::warn!(?dtids, error = %e, "twopc: resolved transactions' records stay; the resolver will delete them");
    }
}

/// A connection holding one part of the transaction, as the executor
/// lends it.
pub trait XaConn: Send {
    /// The tablet it is connected to.
    fn alias(&self) -> &str;
    /// Runs a statement whose result nobody reads.
    fn run(&mut self, sql: String) -> impl std::future::Future<Output = Result<(), Error>> + Send;
    /// Runs two statements in order; the first error. A connection that
    /// can pipeline sends both in one write (`XA END` with the `XA
    /// PREPARE` or one-phase `XA COMMIT` after it: the second fails
    /// harmlessly when the first did), saving a round trip per part.
    fn run_two(
        &mut self,
        first: String,
        second: String,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        async move {
            self.run(first).await?;
            self.run(second).await
        }
    }
    /// Closes the connection afterwards, detaching the part prepared on
    /// it (MariaDB keeps it) for a resolver to end.
    fn discard(&mut self);
}

/// Runs one XA statement, or two (see [`XaConn::run_two`]), each a verb
/// and what follows the xid, on every part at once; the first error, if
/// any.
async fn on_all<C: XaConn>(
    parts: &mut [C],
    dtid: &str,
    first: (&str, &str),
    then: Option<(&str, &str)>,
) -> Result<(), Error> {
    let runs = parts.iter_mut().map(|p| async move {
        let x = xid(dtid, p.alias());
        let sql = |(verb, tail): (&str, &str)| format!("{verb} {x}{tail}");
        match then {
            Some(t) => p.run_two(sql(first), sql(t)).await,
            None => p.run(sql(first)).await,
        }
    });
    first_error(futures_util::future::join_all(runs).await)
}

/// The first error of the parts' results, after every part ran.
fn first_error(results: Vec<Result<(), Error>>) -> Result<(), Error> {
    results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
}

/// Rolls every part back, whatever state each is in (active, idle,
/// prepared, rollback only after a deadlock): `XA END` first, whose
/// failure on a part already ended says nothing. A part whose rollback
/// failed has its connection closed (one still holding a part would
/// detach it for a resolver; one that committed it has nothing to roll
/// back). The first rollback error, if any.
async fn rollback_all<C: XaConn>(parts: &mut [C], dtid: &str) -> Result<(), Error> {
    let runs = parts.iter_mut().map(|p| async move {
        let x = xid(dtid, p.alias());
        let _ = p.run(format!("XA END {x}")).await;
        let res = p.run(format!("XA ROLLBACK {x}")).await;
        if res.is_err() {
            p.discard();
        }
        res
    });
    first_error(futures_util::future::join_all(runs).await)
}

/// Ends transaction `dtid` on its parts: COMMIT (`commit`) or ROLLBACK.
/// `wrote`: a statement other than a read ran in it (one that only read
/// commits each part in one phase).
pub async fn finish<C: XaConn>(
    co: &Coordinator,
    snap: &Snapshot,
    dtid: &str,
    parts: &mut [C],
    commit: bool,
    wrote: bool,
) -> Result<(), Error> {
    if !commit {
        return rollback_all(parts, dtid).await;
    }
    if parts.len() < 2 || !wrote {
        let ended = on_all(
            parts,
            dtid,
            ("XA END", ""),
            Some(("XA COMMIT", " ONE PHASE")),
        )
        .await;
        if ended.is_err() {
            // A part that did not commit is not left open on its connection.
            let _ = rollback_all(parts, dtid).await;
        }
        return ended;
    }
    let mut record = Record {
        parts: Vec::with_capacity(parts.len()),
        at: now_ms(),
    };
    for i in 0..parts.len() {
        let Some(t) = snap.tablets.get(parts[i].alias()) else {
            let alias = parts[i].alias().to_string();
            let _ = rollback_all(parts, dtid).await;
            return Err(TwopcError::UnknownTablet(alias).into());
        };
        record.parts.push(Part {
            keyspace: t.keyspace.clone(),
            shard: t.shard.clone(),
            tablet: t.alias.clone(),
        });
    }
    let written = match co.store() {
        Ok(store) => {
            let value = serde_json::to_vec(&record).unwrap_or_default();
            store.put(dtid, &value).await.map_err(TwopcError::from)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let _ = rollback_all(parts, dtid).await;
        co.stats.rolled_back.fetch_add(1, Relaxed);
        return Err(e.into());
    }
    if let Err(e) = on_all(parts, dtid, ("XA END", ""), Some(("XA PREPARE", ""))).await {
        abort(co, parts, dtid).await;
        return Err(e);
    }
    match co.decide_commit(dtid).await {
        Ok(true) => {}
        // A resolver decided first, or decided, rolled the parts it found
        // back and deleted the record (the decision just made, if any, is
        // then a stray that `abort` deletes).
        Ok(false) => {
            abort(co, parts, dtid).await;
            return Err(TwopcError::Abandoned.into());
        }
        // The decision may have been taken (a reply lost) or not: rolling
        // back now could meet a resolver committing the parts it finds.
        Err(source) => {
            for p in parts.iter_mut() {
                p.discard();
            }
            co.stats.left_to_resolver.fetch_add(1, Relaxed);
            return Err(TwopcError::InDoubt {
                dtid: dtid.to_string(),
                source,
            }
            .into());
        }
    }
    co.stats.committed.fetch_add(1, Relaxed);
    match on_all(parts, dtid, ("XA COMMIT", ""), None).await {
        Ok(()) => co.forget_later(dtid),
        Err(e) => {
            // Closed, the part that did not commit detaches from its
            // connection, for the resolver.
            for p in parts.iter_mut() {
                p.discard();
            }
            co.stats.left_to_resolver.fetch_add(1, Relaxed);
            tracing::warn!(dtid, error = %e, "twopc: a part failed to commit after the decision; the resolver commits it");
        }
    }
    Ok(())
}

/// Rolls back a transaction whose parts may be prepared: decides
/// `rollback` (a decision someone else took is `rollback` too by now,
/// since this gate takes `commit` only after every prepare), rolls back,
/// and deletes the record once every part is rolled back.
async fn abort<C: XaConn>(co: &Coordinator, parts: &mut [C], dtid: &str) {
    co.stats.rolled_back.fetch_add(1, Relaxed);
    let decided = co.decide(dtid, Outcome::Rollback).await;
    let rolled = rollback_all(parts, dtid).await;
    match (decided, rolled) {
        (Ok(_), Ok(())) => co.forget(dtid).await,
        (d, r) => tracing::warn!(
            dtid,
            decided = ?d.err(),
            rolled_back = ?r.err(),
            "twopc: a rolled back transaction is left to the resolver"
        ),
    }
}

/// Runs forever in the background: resolves abandoned transactions every
/// half abandon age (between 100 ms and 10 s). Stops when the server is
/// gone.
pub async fn run(ctx: std::sync::Weak<crate::server::ServerCtx>) {
    loop {
        let every = match ctx.upgrade() {
            Some(c) => {
                (c.twopc.abandon_age / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
            }
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(c) = ctx.upgrade() else { return };
        if let Err(e) = resolve(&c).await {
            tracing::warn!(error = %e, "twopc resolver: round failed");
        }
    }
}

/// A prepared xid of ours: (gtrid, bqual).
type Xid = (String, String);

/// The prepared parts of shardgate's transactions a tablet holds.
async fn prepared(conn: &mut mysql_async::Conn) -> Result<Vec<Xid>, mysql_async::Error> {
    let rows: Vec<(u32, usize, usize, Vec<u8>)> = conn.query("XA RECOVER").await?;
    Ok(rows
        .into_iter()
        .filter(|(format, g, b, data)| *format == FORMAT_ID && g + b == data.len())
        .map(|(_, g, _, data)| {
            (
                String::from_utf8_lossy(&data[..g]).into_owned(),
                String::from_utf8_lossy(&data[g..]).into_owned(),
            )
        })
        .collect())
}

/// The current primary of each shard, as (keyspace, shard) → tablet.
fn primaries(snap: &Snapshot) -> BTreeMap<(String, String), crate::topo::Tablet> {
    let mut out = BTreeMap::new();
    for ks in snap.keyspaces.values() {
        for sh in &ks.shards {
            if let Some(t) = sh.tablets[0].first().and_then(|a| snap.tablets.get(a)) {
                out.insert((ks.name.clone(), sh.name.clone()), t.clone());
            }
        }
    }
    out
}

/// What one resolver round did: parts committed or rolled back, and
/// transactions forgotten.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Parts committed or rolled back.
    pub parts: u64,
    /// Records deleted.
    pub forgotten: u64,
}

/// One resolver round (see the module's doc). Public for tests, which
/// run it on demand.
pub async fn resolve(ctx: &crate::server::ServerCtx) -> Result<Round, TopoError> {
    let co = &ctx.twopc;
    let Ok(store) = co.store() else {
        return Ok(Round::default());
    };
    let snap = ctx.snapshot.load_full();
    let shards = primaries(&snap);
    let scan =
        co.used.load(Relaxed) || ctx.transaction_mode == crate::executor::TransactionMode::Twopc;
    let mut round = Round::default();
    let mut conns: HashMap<String, mysql_async::Conn> = HashMap::new();
    // The prepared parts first: see the module's doc.
    let mut orphans: Vec<(crate::topo::Tablet, Xid)> = Vec::new();
    if scan {
        for t in shards.values() {
            let Ok(conn) = connect(ctx, &mut conns, t).await else {
                continue;
            };
            if let Ok(xids) = prepared(conn).await {
                orphans.extend(xids.into_iter().map(|x| (t.clone(), x)));
            }
        }
    }
    let all = store.list_all().await?;
    let now = now_ms();
    let age = co.abandon_age.as_millis() as u64;
    let (records, decisions) = read_listing(&all);
    orphans.retain(|(_, (gtrid, _))| !records.contains_key(gtrid.as_str()));
    for (t, (gtrid, bqual)) in orphans {
        if let Ok(conn) = connect(ctx, &mut conns, &t).await {
            if conn
                .query_drop(format!("XA ROLLBACK {}", xid(&gtrid, &bqual)))
                .await
                .is_ok()
            {
                tracing::info!(
                    dtid = gtrid,
                    tablet = bqual,
                    "twopc resolver: rolled back a part without a record"
                );
                round.parts += 1;
            }
        }
    }
    for (dtid, rec) in &records {
        if now.saturating_sub(rec.at) < age {
            continue;
        }
        let outcome = match decisions.get(dtid) {
            Some(d) => d.decision,
            None => co.decide(dtid, Outcome::Rollback).await?,
        };
        let verb = match outcome {
            Outcome::Commit => "XA COMMIT",
            Outcome::Rollback => "XA ROLLBACK",
        };
        let mut left = false;
        for part in &rec.parts {
            let Some(t) = shards.get(&(part.keyspace.clone(), part.shard.clone())) else {
                left = true;
                continue;
            };
            let Ok(conn) = connect(ctx, &mut conns, t).await else {
                left = true;
                continue;
            };
            let still = match prepared(conn).await {
                Ok(x) => x.iter().any(|(g, b)| g == dtid && *b == part.tablet),
                Err(_) => {
                    left = true;
                    continue;
                }
            };
            if !still {
                continue;
            }
            match conn
                .query_drop(format!("{verb} {}", xid(dtid, &part.tablet)))
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        dtid,
                        tablet = part.tablet,
                        verb,
                        "twopc resolver: resolved a part"
                    );
                    round.parts += 1;
                }
                // A part still held by the connection that prepared it
                // (its shardgate is alive and ending it): next round.
                Err(_) => left = true,
            }
        }
        if !left {
            co.forget(dtid).await;
            round.forgotten += 1;
        }
    }
    // Decisions whose record went (a resolver or gate stopped between
    // the two deletes), once old.
    for (dtid, d) in &decisions {
        if !records.contains_key(dtid) && now.saturating_sub(d.at) >= age {
            let _ = store.delete(&decision_key(dtid), false).await;
        }
    }
    co.stats.resolved_parts.fetch_add(round.parts, Relaxed);
    Ok(round)
}

/// The transactions the store holds, as vtgate's `SHOW TRANSACTION
/// STATUS` and `SHOW UNRESOLVED TRANSACTIONS` list them: id, state
/// (`PREPARE` until decided, then `COMMIT` or `ROLLBACK`), when it was
/// recorded (UTC), and its parts as `keyspace:shard`; `dtid` one of them,
/// `keyspace` those with a part there.
pub async fn transactions(
    co: &Coordinator,
    dtid: Option<&str>,
    keyspace: Option<&str>,
) -> Result<Vec<[String; 4]>, TwopcError> {
    let all = co.store()?.list_all().await?;
    let (records, decisions) = read_listing(&all);
    let mut out = Vec::new();
    for (k, rec) in records {
        if dtid.is_some_and(|d| d != k)
            || keyspace.is_some_and(|ks| !rec.parts.iter().any(|p| p.keyspace == ks))
        {
            continue;
        }
        let state = decisions.get(k).map_or("PREPARE", |d| match d.decision {
            Outcome::Commit => "COMMIT",
            Outcome::Rollback => "ROLLBACK",
        });
        let at = std::time::UNIX_EPOCH + Duration::from_millis(rec.at);
        let parts: Vec<String> = rec
            .parts
            .iter()
            .map(|p| format!("{}:{}", p.keyspace, p.shard))
            .collect();
        out.push([
            k.to_string(),
            state.to_string(),
            crate::topo::rfc3339(at)
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string(),
            parts.join(","),
        ]);
    }
    Ok(out)
}

/// The store's listing as records and decisions by transaction id
/// (entries that do not parse are left out).
fn read_listing(
    all: &BTreeMap<String, Vec<u8>>,
) -> (BTreeMap<&str, Record>, BTreeMap<&str, Decision>) {
    let mut records = BTreeMap::new();
    let mut decisions = BTreeMap::new();
    for (k, v) in all {
        if let Some(dtid) = k.strip_suffix(".decision") {
            if let Ok(d) = serde_json::from_slice(v) {
                decisions.insert(dtid, d);
            }
        } else if let Ok(r) = serde_json::from_slice(v) {
            records.insert(k.as_str(), r);
        }
    }
    (records, decisions)
}

/// A connection to `t` for this round, opened once.
async fn connect<'a>(
    ctx: &crate::server::ServerCtx,
    conns: &'a mut HashMap<String, mysql_async::Conn>,
    t: &crate::topo::Tablet,
) -> Result<&'a mut mysql_async::Conn, mysql_async::Error> {
    if !conns.contains_key(&t.alias) {
        let conn = ctx.pools.get(t).get_conn().await?;
        conns.insert(t.alias.clone(), conn);
    }
    Ok(conns.get_mut(&t.alias).expect("inserted above"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A part that records what it was sent and fails the statements
    /// starting with `fails`.
    struct Fake {
        alias: String,
        sent: Vec<String>,
        fails: Option<&'static str>,
        discarded: bool,
        /// At its PREPARE, this record becomes unreadable (a directory).
        spoils: Option<std::path::PathBuf>,
    }

    impl XaConn for Fake {
        fn alias(&self) -> &str {
            &self.alias
        }
        async fn run(&mut self, sql: String) -> Result<(), Error> {
            let failed = self.fails.is_some_and(|f| sql.starts_with(f));
            if let (Some(path), true) = (&self.spoils, sql.starts_with("XA PREPARE")) {
                std::fs::remove_file(path).unwrap();
                std::fs::create_dir(path).unwrap();
            }
            self.sent.push(sql);
            if failed {
                return Err(Error::Deadlock);
            }
            Ok(())
        }
        fn discard(&mut self) {
            self.discarded = true;
        }
    }

    fn parts(fails: Option<&'static str>) -> Vec<Fake> {
        ["zone1-300", "zone1-400"]
            .iter()
            .enumerate()
            .map(|(i, a)| Fake {
                alias: a.to_string(),
                sent: vec![],
                fails: if i == 1 { fails } else { None },
                discarded: false,
                spoils: None,
            })
            .collect()
    }

    /// Two tablets of keyspace ks, one per shard.
    fn snapshot() -> Snapshot {
        let mut r = BTreeMap::new();
        for (k, v) in [
            ("global/keyspaces/ks/Keyspace", r#"{"sharded": true}"#),
            ("global/keyspaces/ks/shards/-80/Shard", "{}"),
            ("global/keyspaces/ks/shards/80-/Shard", "{}"),
            (
                "zone1/tablets/zone1-300/Tablet",
                r#"{"alias": "zone1-300", "hostname": "h", "mysql_port": 1, "keyspace": "ks", "shard": "-80", "type": "PRIMARY"}"#,
            ),
            (
                "zone1/tablets/zone1-400/Tablet",
                r#"{"alias": "zone1-400", "hostname": "h", "mysql_port": 2, "keyspace": "ks", "shard": "80-", "type": "PRIMARY"}"#,
            ),
        ] {
            r.insert(k.to_string(), v.as_bytes().to_vec());
        }
        Snapshot::build(&r, &Default::default(), 1).expect("test snapshot")
    }

    async fn coordinator() -> (Coordinator, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sg-twopc-{:x}", rand::random::<u64>()));
        let store = TopoStore::connect(
            crate::topo::store::TopoImpl::File,
            dir.to_str().unwrap(),
            "/vitess",
        )
        .await
        .unwrap();
        (
            Coordinator::new(store.beside(STORE_SUFFIX), Duration::from_secs(15)),
            dir,
        )
    }

    fn sent(parts: &[Fake]) -> Vec<Vec<String>> {
        parts.iter().map(|p| p.sent.clone()).collect()
    }

    fn xa(stmts: &[&str], tablet: &str) -> Vec<String> {
        stmts
            .iter()
            .map(|s| match s.split_once(' ') {
                Some((verb, tail)) if tail.starts_with("ONE") => {
                    format!("XA {verb} {} {tail}", xid("d1", tablet))
                }
                _ => format!("XA {s} {}", xid("d1", tablet)),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_commit_that_wrote_on_two_tablets_prepares_decides_and_commits() {
        let (co, dir) = coordinator().await;
        let mut p = parts(None);
        finish(&co, &snapshot(), "d1", &mut p, true, true)
            .await
            .unwrap();
        for (i, t) in ["zone1-300", "zone1-400"].iter().enumerate() {
            assert_eq!(sent(&p)[i], xa(&["END", "PREPARE", "COMMIT"], t));
        }
        // Record and decision deleted once every part committed (in the
        // background).
        let mut left = usize::MAX;
        for _ in 0..100 {
            left = co.store().unwrap().list_all().await.unwrap().len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 0);
        assert_eq!(co.stats.committed.load(Relaxed), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_part_that_fails_to_prepare_rolls_every_part_back() {
        let (co, dir) = coordinator().await;
        let mut p = parts(Some("XA PREPARE"));
        let e = finish(&co, &snapshot(), "d1", &mut p, true, true)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Deadlock), "{e}");
        assert_eq!(
            sent(&p)[0],
            xa(&["END", "PREPARE", "END", "ROLLBACK"], "zone1-300")
        );
        assert_eq!(
            sent(&p)[1],
            xa(&["END", "PREPARE", "END", "ROLLBACK"], "zone1-400")
        );
        assert!(co.store().unwrap().list_all().await.unwrap().is_empty());
        assert_eq!(co.stats.rolled_back.load(Relaxed), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A resolver that found the transaction abandoned decided first: the
    /// commit gives way and rolls back.
    #[tokio::test]
    async fn a_decision_taken_by_a_resolver_wins() {
        let (co, dir) = coordinator().await;
        assert_eq!(
            co.decide("d1", Outcome::Rollback).await.unwrap(),
            Outcome::Rollback
        );
        // Taken once: a later decision reads the first.
        assert_eq!(
            co.decide("d1", Outcome::Commit).await.unwrap(),
            Outcome::Rollback
        );
        let mut p = parts(None);
        let e = finish(&co, &snapshot(), "d1", &mut p, true, true)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Twopc(TwopcError::Abandoned)), "{e}");
        assert_eq!(
            sent(&p)[0],
            xa(&["END", "PREPARE", "END", "ROLLBACK"], "zone1-300")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The decision can be neither taken nor read: the parts stay
    /// prepared (no COMMIT, no ROLLBACK) and their connections are closed,
    /// for a resolver to end them once the store answers.
    #[tokio::test]
    async fn a_decision_the_store_cannot_take_leaves_the_parts_prepared() {
        let (co, dir) = coordinator().await;
        let mut p = parts(None);
        p[1].spoils = Some(dir.join("vitess.twopc/d1"));
        let e = finish(&co, &snapshot(), "d1", &mut p, true, true)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Twopc(TwopcError::InDoubt { .. })), "{e}");
        for (i, t) in ["zone1-300", "zone1-400"].iter().enumerate() {
            assert_eq!(sent(&p)[i], xa(&["END", "PREPARE"], t));
            assert!(p[i].discarded);
        }
        // The record stays for the resolver (here, the directory).
        assert!(dir.join("vitess.twopc/d1").is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// One part, or none that wrote: each part ends in one phase and
    /// nothing is recorded (no store is even needed).
    #[tokio::test]
    async fn a_transaction_that_only_read_commits_in_one_phase() {
        let co = Coordinator::default();
        let mut p = parts(None);
        finish(&co, &snapshot(), "d1", &mut p, true, false)
            .await
            .unwrap();
        assert_eq!(sent(&p)[1], xa(&["END", "COMMIT ONE PHASE"], "zone1-400"));
        let mut p = parts(None);
        finish(&co, &snapshot(), "d1", &mut p, false, true)
            .await
            .unwrap();
        assert_eq!(sent(&p)[0], xa(&["END", "ROLLBACK"], "zone1-300"));
        // A part that fails to commit is rolled back, not left open on
        // its connection.
        let mut p = parts(Some("XA COMMIT"));
        finish(&co, &snapshot(), "d1", &mut p, true, false)
            .await
            .unwrap_err();
        assert_eq!(
            sent(&p)[1],
            xa(&["END", "COMMIT ONE PHASE", "END", "ROLLBACK"], "zone1-400")
        );
        // Without a store, a commit that needs one rolls back.
        let mut p = parts(None);
        let e = finish(&co, &snapshot(), "d1", &mut p, true, true)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Twopc(TwopcError::NoStore)), "{e}");
    }
}
