//! `LOAD DATA LOCAL INFILE`: the protocol's exchange in which the server
//! asks the client for the file it named, and the client sends it.
//!
//! The gate asks, splits the file into records as it arrives
//! ([`crate::sql::load`]) and runs each batch as one INSERT through the
//! session, so rows reach the shards their vindexes name whatever the
//! keyspace. The whole file is one statement: in autocommit the batches
//! share one transaction, committed after the last (rolled back at the
//! first error, whose packets are still read to the end so the connection
//! stays in step); inside a transaction they are part of it.

use super::{packets, read, Reader, Wire};
use crate::engine::{QueryDone, RowSink};
use crate::error::{Error, MysqlError};
use crate::server::ServerCtx;
use crate::session::Session;
use crate::sql::load::{LoadData, Record, Splitter};
use crate::sql::SqlError;

/// Records per INSERT, and the bytes of field values that end a batch
/// sooner: a batch's statement stays well under a tablet's packet limit.
const BATCH_RECORDS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;

/// The longest line read: a file without line ends is refused rather
/// than held whole in memory.
const MAX_LINE: usize = 64 << 20;

/// What the INSERTs answered, added up.
#[derive(Default)]
struct Tally {
    affected: u64,
    warnings: u64,
}

impl RowSink for Tally {
    fn columns(&mut self, _: &[mysql_common::packets::Column]) -> Result<(), Error> {
        Ok(())
    }
    fn row(&mut self, _: &[mysql_common::value::Value]) -> Result<(), Error> {
        Ok(())
    }
    fn end_rows(&mut self, _: u16) -> Result<(), Error> {
        Ok(())
    }
    fn ok(&mut self, done: QueryDone) -> Result<(), Error> {
        self.affected += done.affected_rows;
        self.warnings += u64::from(done.warnings);
        Ok(())
    }
}

/// Answers a LOAD DATA statement (`parsed` from `sql`): LOCAL ones here,
/// others as any statement (an unsharded keyspace's tablet reads its own
/// file).
pub(super) async fn load_data(
    reader: &mut Reader,
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    sql: &str,
    parsed: Result<LoadData, SqlError>,
) -> Result<(), Error> {
    let mut load = match parsed {
        Ok(load) if load.local => load,
        Ok(_) => return super::run_query(wire, ctx, session, sql).await,
        Err(e) => {
            wire.push_err(&Error::Sql(e).to_mysql());
            return Ok(());
        }
    };
    if !wire.local_files {
        wire.push_err(&MysqlError::new(
            4166,
            "HY000",
            "The used command is not allowed because the MariaDB server or client has disabled the local infile capability".into(),
        ));
        return Ok(());
    }
    // Records may be short (the rest of a row takes its defaults): the
    // INSERTs name every column, which the table's empty result tells.
    if load.columns.is_empty() {
        let mut empty = crate::engine::Gather::new(0);
        let probe = format!("SELECT * FROM {} LIMIT 0", load.table_name());
        if let Err(e) = Box::pin(session.execute(ctx, &probe, &mut empty)).await {
            if e.is_disconnect() {
                return Err(e);
            }
            wire.push_err(&e.to_mysql());
            return Ok(());
        }
        load.columns = empty
            .columns
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
    }
    let mut ask = Vec::with_capacity(1 + load.file.len());
    ask.push(0xFB);
    ask.extend_from_slice(load.file.as_bytes());
    wire.push(&ask);
    wire.flush().await?;

    let own_txn = session.autocommit && !session.shards.in_txn;
    let mut run = Run {
        load: &load,
        tally: Tally::default(),
        records: 0,
        failed: None,
    };
    if own_txn {
        run.statement(ctx, session, "BEGIN").await;
    }
    let mut splitter = Splitter::new(&load);
    let mut batch: Vec<Record> = Vec::new();
    let mut bytes = 0;
    loop {
        let Some(pkt) = read(reader).await? else {
            // The client went away mid-file: its transaction goes with it.
            return Ok(());
        };
        wire.seq = pkt.seq.wrapping_add(1);
        let eof = pkt.payload.is_empty();
        if run.failed.is_some() {
            // The rest of the file is read, and dropped.
            if eof {
                break;
            }
            continue;
        }
        let before = batch.len();
        splitter.feed(&pkt.payload, eof, &mut batch);
        if splitter.pending() > MAX_LINE {
            run.failed = Some(Error::Sql(SqlError::LoadData(format!(
                "a line longer than {} MB",
                MAX_LINE >> 20
            ))));
            batch.clear();
        }
        bytes += batch[before..]
            .iter()
            .flatten()
            .map(|f| f.as_ref().map_or(4, Vec::len))
            .sum::<usize>();
        while batch.len() >= BATCH_RECORDS
            || (bytes >= BATCH_BYTES && !batch.is_empty())
            || (eof && !batch.is_empty())
        {
            let take = batch.len().min(BATCH_RECORDS);
            let part: Vec<Record> = batch.drain(..take).collect();
            run.insert(ctx, session, &part).await;
            bytes = 0;
        }
        if eof {
            break;
        }
    }
    if own_txn {
        let end = if run.failed.is_some() {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        run.statement(ctx, session, end).await;
    }
    match run.failed {
        Some(e) if e.is_disconnect() => Err(e),
        Some(e) => {
            wire.push_err(&e.to_mysql());
            Ok(())
        }
        None => {
            let (affected, records) = (run.tally.affected, run.records);
            let (deleted, skipped) = if load.replace {
                (affected.saturating_sub(records), 0)
            } else {
                (0, records.saturating_sub(affected))
            };
            let warnings = run.tally.warnings.min(u64::from(u16::MAX)) as u16;
            let info = format!(
                "Records: {records}  Deleted: {deleted}  Skipped: {skipped}  Warnings: {warnings}"
            );
            let status = session.status().bits();
            wire.push(&packets::ok(affected, 0, status, warnings, &info));
            Ok(())
        }
    }
}

/// One LOAD DATA under way: what it has done, and its first error.
struct Run<'a> {
    load: &'a LoadData,
    tally: Tally,
    records: u64,
    failed: Option<Error>,
}

impl Run<'_> {
    /// Runs `sql` for the load unless it failed already; the first error
    /// is kept.
    async fn statement(&mut self, ctx: &ServerCtx, session: &mut Session, sql: &str) {
        if self.failed.is_some() && sql != "ROLLBACK" {
            return;
        }
        if let Err(e) = Box::pin(session.execute(ctx, sql, &mut self.tally)).await {
            self.failed.get_or_insert(e);
        }
    }

    /// One batch of records as one INSERT.
    async fn insert(&mut self, ctx: &ServerCtx, session: &mut Session, part: &[Record]) {
        self.records += part.len() as u64;
        if self.failed.is_some() {
            return;
        }
        let sql = self.load.insert(part, session.shards.no_backslash_escapes);
        self.statement(ctx, session, &sql).await;
    }
}
