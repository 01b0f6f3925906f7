//! Shared, pipelined tablet connections for reads that carry no session
//! state: a clean session's prepared SELECT outside a transaction does not
//! need a connection of its own, so it joins a queue per tablet. One task
//! per shared connection takes everything queued, writes all of the
//! executions in one write, and reads the replies in order (MySQL answers
//! a connection's commands in the order it got them).
//!
//! Why: on a machine where the proxy, the database and the clients share
//! the cores, most of a forwarded query's cost is the kernel's, two socket
//! calls and a wakeup on the tablet side for each query. A batch of n
//! queries costs one write and, for replies that arrive together, one
//! read, on both sides of the socket. It is what vtgate gets from
//! multiplexing queries over gRPC streams to vttablet, without the hop.
//!
//! A reply is recorded (its packets, as the tablet sent them) and handed
//! to the session, which plays it into its sink: nothing the task waits
//! for depends on a client reading. Only statements that read and leave
//! nothing behind on the connection come here (see
//! `session::Prepared::shareable`); the connection itself is one of the
//! pools' lean connections, clean, and never carries a session's settings.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mysql_common::packets::Column;
use mysql_common::value::Value;
use tokio::sync::{mpsc, oneshot};

use super::lean::{self, RunError};
use super::LeanHandle;
use crate::engine::{PacketSink, QueryDone, RowSink};

/// Executions written in one batch at most (well under the statements a
/// connection keeps prepared, so a batch never closes one of its own).
const MAX_BATCH: usize = 16;

/// A batch in flight for longer than this marks its queue as held up by a
/// slow statement: new executions go to another queue of the tablet.
const STALLED: Duration = Duration::from_millis(2);

/// A shared connection unused for this long is checked for a server-side
/// close before a batch is written on it.
const LIVENESS_AFTER: Duration = Duration::from_secs(1);

/// A tablet's reply to one execution, recorded for the session to play
/// into its sink.
#[derive(Default)]
pub struct Recorded {
    events: Vec<Event>,
    /// Row payloads, back to back (`Event::Row` holds their bounds).
    data: Vec<u8>,
}

enum Event {
    Columns(Vec<BytesMut>),
    Row(usize, usize),
    End(u16),
    Ok(QueryDone),
}

impl RowSink for Recorded {
    // Rows always come as packets (see `packets`); these are not called.
    fn columns(&mut self, _: &[Column]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn row(&mut self, _: &[Value]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn end_rows(&mut self, warnings: u16) -> Result<(), crate::error::Error> {
        self.events.push(Event::End(warnings));
        Ok(())
    }
    fn ok(&mut self, done: QueryDone) -> Result<(), crate::error::Error> {
        self.events.push(Event::Ok(done));
        Ok(())
    }
    fn packets(&mut self, _: bool) -> Option<&mut dyn PacketSink> {
        Some(self)
    }
}

impl PacketSink for Recorded {
    fn column_packets(&mut self, defs: &[BytesMut]) {
        self.events.push(Event::Columns(defs.to_vec()));
    }
    fn row_packet(&mut self, payload: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.events.push(Event::Row(start, self.data.len()));
    }
}

impl Recorded {
    /// Plays the reply into `sink` as a lean connection would have handed
    /// it over: packets through the sink's door when it has one for binary
    /// rows, decoded otherwise. Returns the last insert id of an OK result.
    pub async fn play<S: RowSink + Send>(&self, sink: &mut S) -> Result<u64, RunError> {
        let mut decoded: Option<Arc<[Column]>> = None;
        let mut last_id = 0;
        for ev in &self.events {
            match ev {
                Event::Columns(defs) => {
                    decoded = None;
                    match sink.packets(true) {
                        Some(door) => door.column_packets(defs),
                        None => {
                            let cols = lean::columns(defs).map_err(RunError::Backend)?;
                            sink.columns(&cols).map_err(RunError::Sink)?;
                            decoded = Some(cols.into());
                        }
                    }
                }
                Event::Row(start, end) => {
                    let payload = &self.data[*start..*end];
                    match &decoded {
                        None => lean::packets(sink, true)?.row_packet(payload),
                        Some(cols) => {
                            let row =
                                lean::decode_row(cols, payload, true).map_err(RunError::Backend)?;
                            sink.row(&row).map_err(RunError::Sink)?;
                        }
                    }
                    sink.flush().await.map_err(RunError::Sink)?;
                }
                Event::End(warnings) => sink.end_rows(*warnings).map_err(RunError::Sink)?,
                Event::Ok(done) => {
                    last_id = done.last_insert_id;
                    sink.ok(done.clone()).map_err(RunError::Sink)?;
                }
            }
        }
        Ok(last_id)
    }
}

/// How one queued execution ended.
pub enum Outcome {
    /// The tablet's reply.
    Done(Recorded),
    /// The tablet's error, or the connection failed after the execution
    /// was written (it may have run).
    Failed(RunError),
    /// Not written (the shared connection was closed or failed first): the
    /// caller runs it another way, with its parameters back.
    Unsent(Vec<Value>),
}

struct Job {
    sql: Arc<str>,
    params: Vec<Value>,
    reply: oneshot::Sender<Outcome>,
}

/// What the shared connections of a server did, for `/debug/vars`: how
/// many executions went through them in how many batches (their ratio is
/// the pipelining depth).
#[derive(Default)]
pub struct MuxStats {
    /// Batches written.
    pub batches: AtomicU64,
    /// Executions answered from a batch.
    pub executions: AtomicU64,
}

/// The queue of one shared connection.
pub struct Mux {
    tx: mpsc::UnboundedSender<Job>,
    state: Arc<State>,
}

/// What the task tells the sessions choosing a queue.
struct State {
    /// Executions queued and not yet answered.
    queued: AtomicUsize,
    /// When the batch being read began, in µs after `born` (0: none).
    busy_since: AtomicU64,
    born: Instant,
}

impl State {
    fn micros(&self) -> u64 {
        // Never 0, which means idle.
        self.born.elapsed().as_micros() as u64 + 1
    }
}

impl Mux {
    /// Starts the task that serves the queue on `handle`.
    pub fn start(handle: LeanHandle, stats: Arc<MuxStats>) -> Mux {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            queued: AtomicUsize::new(0),
            busy_since: AtomicU64::new(0),
            born: Instant::now(),
        });
        tokio::spawn(serve(handle, rx, state.clone(), stats));
        Mux { tx, state }
    }

    /// Whether its task still serves it (it ends when its connection fails).
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Executions queued and not yet answered.
    pub fn load(&self) -> usize {
        self.state.queued.load(Ordering::Relaxed)
    }

    /// Whether a new execution should go elsewhere: the batch in flight
    /// has taken longer than [`STALLED`] (a slow statement holds the
    /// queue), or a full batch is waiting already.
    pub fn is_stalled(&self) -> bool {
        let since = self.state.busy_since.load(Ordering::Relaxed);
        self.load() >= MAX_BATCH
            || (since != 0
                && self.state.micros().saturating_sub(since) > STALLED.as_micros() as u64)
    }

    /// Queues `sql` with `params`; the receiver gets how it ended. Err gives
    /// the parameters back when the queue is closed.
    pub fn submit(
        &self,
        sql: Arc<str>,
        params: Vec<Value>,
    ) -> Result<oneshot::Receiver<Outcome>, Vec<Value>> {
        let (reply, rx) = oneshot::channel();
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(Job { sql, params, reply }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendError(job)) => {
                self.state.queued.fetch_sub(1, Ordering::Relaxed);
                Err(job.params)
            }
        }
    }
}

/// The task behind a [`Mux`]: batches of whatever is queued, until the
/// connection fails or every sender is gone. Jobs left in the queue then
/// go back unsent.
async fn serve(
    mut handle: LeanHandle,
    mut rx: mpsc::UnboundedReceiver<Job>,
    state: Arc<State>,
    stats: Arc<MuxStats>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let now = Instant::now();
        let alive = !handle.idle_for(LIVENESS_AFTER, now) || !handle.conn.is_closed();
        handle.touch(now);
        state.busy_since.store(state.micros(), Ordering::Relaxed);
        let usable = alive && run_batch(&mut handle.conn, &mut batch).await;
        state.busy_since.store(0, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .executions
            .fetch_add((n - batch.len()) as u64, Ordering::Relaxed);
        // Whatever the batch could not send goes back to its callers.
        for job in batch.drain(..) {
            let _ = job.reply.send(Outcome::Unsent(job.params));
        }
        state.queued.fetch_sub(n, Ordering::Relaxed);
        if !usable {
            break;
        }
    }
    rx.close();
    while let Ok(job) = rx.try_recv() {
        state.queued.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Outcome::Unsent(job.params));
    }
}

/// Runs one batch: prepares what the connection lacks, writes every
/// execution at once, reads the replies in order. Jobs answered are
/// taken out of `batch`; those left were not written. False when the
/// connection can take no more.
async fn run_batch(conn: &mut lean::LeanConn, batch: &mut Vec<Job>) -> bool {
    // Prepare first: a prepare's reply must not be queued behind
    // executions. A statement the tablet refuses is answered now.
    let mut ids = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        match conn.prepared(&batch[i].sql).await {
            Ok(id) => {
                ids.push(id);
                i += 1;
            }
            Err(e @ mysql_async::Error::Server(_)) => {
                let job = batch.remove(i);
                let _ = job.reply.send(Outcome::Failed(RunError::Backend(e)));
            }
            // Nothing of the batch was written.
            Err(_) => return false,
        }
    }
    // Parameters too big for one packet go alone, after the batch.
    let mut alone = Vec::new();
    let mut sent = Vec::with_capacity(batch.len());
    for (job, id) in std::mem::take(batch).into_iter().zip(ids) {
        if conn.queue_execute(id, &job.params) {
            sent.push(job);
        } else {
            alone.push(job);
        }
    }
    // A write that fails finds the tablet gone: nothing it carried ran
    // (as a lean connection's own sends count it).
    if conn.flush().await.is_err() {
        *batch = sent;
        batch.extend(alone);
        return false;
    }
    let mut refused = false;
    let mut jobs = sent.into_iter();
    while let Some(job) = jobs.next() {
        let mut rec = Recorded::default();
        match conn.reply(&mut rec).await {
            Ok(_) => {
                let _ = job.reply.send(Outcome::Done(rec));
            }
            // The table changed under the statement: it runs again alone
            // (prepared anew) once the batch's replies are read.
            Err(RunError::Backend(mysql_async::Error::Server(e)))
                if e.code == lean::ER_NEED_REPREPARE =>
            {
                alone.push(job);
            }
            Err(e @ RunError::Backend(mysql_async::Error::Server(_))) => {
                refused = true;
                let _ = job.reply.send(Outcome::Failed(e));
            }
            // The connection is lost: what was written may have run.
            Err(e) => {
                let msg = e.to_string();
                let _ = job.reply.send(Outcome::Failed(e));
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Outcome::Failed(RunError::Backend(lost(&msg))));
                }
                *batch = alone;
                return false;
            }
        }
    }
    // A server's error may be its last word (`KILL`, a shutdown): a
    // connection it closed serves no further batch.
    if refused && conn.is_closed() {
        *batch = alone;
        return false;
    }
    let mut alone = alone.into_iter();
    while let Some(job) = alone.next() {
        let mut rec = Recorded::default();
        let outcome = match conn.execute(&job.sql, &job.params, &mut rec).await {
            Ok(_) => Outcome::Done(rec),
            // The connection failed first: this one and the rest go back.
            Err(RunError::Unsent(_)) => {
                batch.push(job);
                batch.extend(alone);
                return false;
            }
            Err(e) => Outcome::Failed(e),
        };
        let _ = job.reply.send(outcome);
        if !conn.is_idle() {
            batch.extend(alone);
            return false;
        }
    }
    true
}

/// What each execution of a batch gets when the connection fails under it.
fn lost(msg: &str) -> mysql_async::Error {
    lean::io_err(
        std::io::ErrorKind::ConnectionAborted,
        &format!("shared tablet connection lost: {msg}"),
    )
}
