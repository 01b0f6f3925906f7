//! Shared, pipelined tablet connections for reads that carry no session
//! state: a clean session's SELECT (prepared or text) outside a
//! transaction does not need a connection of its own, so it joins a queue
//! per tablet. One task per shared connection takes everything queued,
//! writes all of it in one write, and reads the replies in order (MySQL
//! answers a connection's commands in the order it got them).
//!
//! Why: on a machine where the proxy, the database and the clients share
//! the cores, most of a forwarded query's cost is the kernel's, two socket
//! calls and a wakeup on the tablet side for each query. A batch of n
//! queries costs one write and, for replies that arrive together, one
//! read, on both sides of the socket. It is what vtgate gets from
//! multiplexing queries over gRPC streams to vttablet, without the hop.
//!
//! A reply is recorded (its packets, as the tablet sent them) and handed
//! to the session, which plays it into its sink. A reply larger than
//! [`CHUNK`] streams to the session in chunks through a short channel
//! instead, so no result is held whole in memory; the queue waits for
//! that client meanwhile, and new reads go to another queue (see
//! [`STALLED`]). Only statements that read and leave nothing behind on
//! the connection come here (see `sql::shareable_read`); the connection
//! itself is one of the pools' lean connections, clean, and never carries
//! a session's settings.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mysql_common::packets::Column;
use mysql_common::value::Value;
use tokio::sync::{mpsc, oneshot};

use super::lean::{self, LeanConn, RunError};
use super::LeanHandle;
use crate::engine::{PacketSink, QueryDone, RowSink};

/// Statements written in one batch at most (well under the statements a
/// connection keeps prepared, so a batch never closes one of its own).
const MAX_BATCH: usize = 16;

/// A batch in flight for longer than this marks its queue as held up (a
/// slow statement, a large result going out to a slow client): new reads
/// go to another queue of the tablet.
const STALLED: Duration = Duration::from_millis(2);

/// A shared connection unused for this long is checked for a server-side
/// close before a batch is written on it.
const LIVENESS_AFTER: Duration = Duration::from_secs(1);

/// Row bytes a reply gathers before it streams to its session in chunks.
const CHUNK: usize = 64 * 1024;

/// A read for a shared connection.
pub struct Read {
    /// The statement text (with `?` placeholders when prepared).
    pub sql: Arc<str>,
    /// The parameters of a prepared execution; None runs `sql` as text.
    pub params: Option<Vec<Value>>,
}

/// (Part of) a tablet's reply to one read, recorded for the session to
/// play into its sink.
#[derive(Default)]
pub struct Recorded {
    events: Vec<Event>,
    /// Row payloads, back to back (`Event::Row` holds their bounds).
    data: Vec<u8>,
    /// The read itself, with the reply's last piece (see [`Delivered`]).
    read: Option<Read>,
}

enum Event {
    Columns(Vec<BytesMut>),
    Row(usize, usize),
    End(u16),
    Ok(QueryDone),
}

impl Recorded {
    fn take(&mut self) -> Recorded {
        std::mem::take(self)
    }
}

/// How one read ended, for the session that queued it.
pub enum Outcome {
    /// The tablet's whole reply.
    Done(Recorded),
    /// A large reply, in chunks as the tablet sends it.
    Stream(mpsc::Receiver<Part>),
    /// The tablet's error, or the connection failed after the read was
    /// written (it may have run).
    Failed(RunError),
    /// Not written (the shared connection was closed or failed first): the
    /// caller runs it another way.
    Unsent(Read),
}

/// One chunk of a streamed reply.
pub enum Part {
    /// More follows.
    More(Recorded),
    /// The reply's end.
    Last(Recorded),
    /// The reply broke off.
    Failed(RunError),
}

/// A read's reply, played into its session's sink.
pub struct Delivered {
    /// The last insert id of an OK result, or how the read failed.
    pub res: Result<u64, RunError>,
    /// The read, when its reply carried warnings: they stay on the shared
    /// connection, so a SHOW WARNINGS that follows needs the read run
    /// again where the session asks.
    pub warned: Option<Read>,
}

impl Outcome {
    /// Plays the reply into `sink` as a lean connection would have handed
    /// it over (packets through the sink's door for the read's protocol
    /// when it has one, decoded otherwise). Err gives back a read that was
    /// never sent.
    pub async fn deliver<S: RowSink + Send>(
        self,
        binary: bool,
        sink: &mut S,
    ) -> Result<Delivered, Read> {
        let mut player = Player {
            binary,
            decoded: None,
            last_id: 0,
            warnings: 0,
        };
        let mut last = None;
        let res = match self {
            Outcome::Done(mut rec) => {
                last = rec.read.take();
                player.play(&rec, sink).await
            }
            Outcome::Failed(e) => Err(e),
            Outcome::Unsent(read) => return Err(read),
            Outcome::Stream(mut parts) => loop {
                match parts.recv().await {
                    Some(Part::More(rec)) => {
                        if let Err(e) = player.play(&rec, sink).await {
                            break Err(e);
                        }
                    }
                    Some(Part::Last(mut rec)) => {
                        last = rec.read.take();
                        break player.play(&rec, sink).await;
                    }
                    Some(Part::Failed(e)) => break Err(e),
                    None => break Err(RunError::Backend(lost("the reply broke off"))),
                }
            },
        };
        let warned = last.filter(|_| res.is_ok() && player.warnings > 0);
        Ok(Delivered { res, warned })
    }
}

/// Waits for how a queued read ended; a task that went away without
/// answering (it drops no read otherwise) counts as a lost connection:
/// the read may have been written.
pub async fn outcome(reply: oneshot::Receiver<Outcome>) -> Outcome {
    reply
        .await
        .unwrap_or_else(|_| Outcome::Failed(RunError::Backend(lost("its task ended"))))
}

/// Plays recorded replies into a sink, chunk after chunk.
struct Player {
    binary: bool,
    /// The current result's columns, when the sink takes rows decoded.
    decoded: Option<Arc<[Column]>>,
    last_id: u64,
    /// The warning count of the last result.
    warnings: u16,
}

impl Player {
    async fn play<S: RowSink + Send>(
        &mut self,
        rec: &Recorded,
        sink: &mut S,
    ) -> Result<u64, RunError> {
        for ev in &rec.events {
            match ev {
                Event::Columns(defs) => {
                    self.decoded = None;
                    match sink.packets(self.binary) {
                        Some(door) => door.column_packets(defs),
                        None => {
                            let cols = lean::columns(defs).map_err(RunError::Backend)?;
                            sink.columns(&cols).map_err(RunError::Sink)?;
                            self.decoded = Some(cols.into());
                        }
                    }
                }
                Event::Row(start, end) => {
                    let payload = &rec.data[*start..*end];
                    match &self.decoded {
                        None => lean::packets(sink, self.binary)?.row_packet(payload),
                        Some(cols) => {
                            let row = lean::decode_row(cols, payload, self.binary)
                                .map_err(RunError::Backend)?;
                            sink.row(&row).map_err(RunError::Sink)?;
                        }
                    }
                    sink.flush().await.map_err(RunError::Sink)?;
                }
                Event::End(warnings) => {
                    self.warnings = *warnings;
                    sink.end_rows(*warnings).map_err(RunError::Sink)?
                }
                Event::Ok(done) => {
                    self.warnings = done.warnings;
                    self.last_id = done.last_insert_id;
                    sink.ok(done.clone()).map_err(RunError::Sink)?;
                }
            }
        }
        Ok(self.last_id)
    }
}

/// What the shared connections of a server did, for `/debug/vars`: how
/// many reads went through them in how many batches (their ratio is the
/// pipelining depth).
#[derive(Default)]
pub struct MuxStats {
    /// Batches written.
    pub batches: AtomicU64,
    /// Reads answered from a batch.
    pub executions: AtomicU64,
    /// Replies too large to hand over whole, streamed in chunks.
    pub streamed: AtomicU64,
    /// Shareable reads that found their tablet idle and ran on their
    /// session's own connection instead (see `Pools::solo`).
    pub solo: AtomicU64,
}

struct Job {
    read: Read,
    reply: oneshot::Sender<Outcome>,
}

/// The queue of one shared connection.
pub struct Mux {
    tx: mpsc::UnboundedSender<Job>,
    state: Arc<State>,
}

/// What the task tells the sessions choosing a queue.
struct State {
    /// Reads queued and not yet answered.
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

    /// Reads queued and not yet answered.
    pub fn load(&self) -> usize {
        self.state.queued.load(Ordering::Relaxed)
    }

    /// Whether a new read should go elsewhere: the batch in flight has
    /// taken longer than [`STALLED`], or a full batch is waiting already.
    pub fn is_stalled(&self) -> bool {
        self.load() >= MAX_BATCH || self.is_slow()
    }

    /// Whether the batch in flight has taken longer than [`STALLED`] (a
    /// slow statement, or a large result going out to a slow client): a
    /// read queued here would wait for it.
    pub fn is_slow(&self) -> bool {
        let since = self.state.busy_since.load(Ordering::Relaxed);
        since != 0 && self.state.micros().saturating_sub(since) > STALLED.as_micros() as u64
    }

    /// Queues a read; the receiver gets how it ended. Err gives the read
    /// back when the queue is closed.
    pub fn submit(&self, read: Read) -> Result<oneshot::Receiver<Outcome>, Read> {
        let (reply, rx) = oneshot::channel();
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(Job { read, reply }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendError(job)) => {
                self.state.queued.fetch_sub(1, Ordering::Relaxed);
                Err(job.read)
            }
        }
    }
}

/// The task behind a [`Mux`]: batches of whatever is queued, until the
/// connection fails or every sender is gone. Reads left in the queue then
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
        let usable = alive && run_batch(&mut handle.conn, &mut batch, &stats).await;
        state.busy_since.store(0, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .executions
            .fetch_add((n - batch.len()) as u64, Ordering::Relaxed);
        // Whatever the batch could not send goes back to its callers.
        for job in batch.drain(..) {
            let _ = job.reply.send(Outcome::Unsent(job.read));
        }
        state.queued.fetch_sub(n, Ordering::Relaxed);
        if !usable {
            break;
        }
    }
    rx.close();
    while let Ok(job) = rx.try_recv() {
        state.queued.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Outcome::Unsent(job.read));
    }
}

/// Runs one batch: prepares what the connection lacks, writes every read
/// at once, reads the replies in order. Reads answered are taken out of
/// `batch`; those left were not written. False when the connection can
/// take no more.
async fn run_batch(conn: &mut LeanConn, batch: &mut Vec<Job>, stats: &MuxStats) -> bool {
    // Prepare first: a prepare's reply must not be queued behind the
    // reads. A statement the tablet refuses is answered now.
    let mut ids = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        if batch[i].read.params.is_none() {
            ids.push(None);
            i += 1;
            continue;
        }
        match conn.prepared(&batch[i].read.sql).await {
            Ok(id) => {
                ids.push(Some(id));
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
        let queued = match (id, &job.read.params) {
            (Some(id), Some(params)) => conn.queue_execute(id, params),
            _ => {
                conn.queue_query(&job.read.sql);
                true
            }
        };
        if queued {
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
        let binary = job.read.params.is_some();
        let mut rec = Recorder::new(job.reply);
        let res = conn.reply(binary, &mut rec).await;
        match res {
            // The table changed under the statement: it runs again alone
            // (prepared anew) once the batch's replies are read.
            Err(RunError::Backend(mysql_async::Error::Server(e)))
                if e.code == lean::ER_NEED_REPREPARE =>
            {
                if let Some(reply) = rec.reply.take() {
                    alone.push(Job {
                        read: job.read,
                        reply,
                    });
                }
            }
            Err(e @ RunError::Backend(mysql_async::Error::Server(_))) => {
                refused = true;
                rec.finish(Err(e)).await;
            }
            Ok(_) => {
                if rec.stream.is_some() {
                    stats.streamed.fetch_add(1, Ordering::Relaxed);
                }
                rec.finish(Ok(job.read)).await
            }
            // The connection is lost while this read ran (a KILL, a
            // restart): it fails, as on a connection of its own; the tablet
            // runs a connection's commands one after another, so those
            // behind it never ran and go back unsent.
            Err(e) => {
                rec.finish(Err(e)).await;
                batch.extend(jobs);
                batch.extend(alone);
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
        let mut rec = Recorder::new(job.reply);
        let res = match &job.read.params {
            Some(params) => conn.execute(&job.read.sql, params, &mut rec).await,
            None => conn.query(&job.read.sql, None, &mut rec).await,
        };
        match res {
            Ok(_) => rec.finish(Ok(job.read)).await,
            // The connection failed before it was written: this one and
            // the rest go back.
            Err(RunError::Unsent(_)) => {
                if let Some(reply) = rec.reply.take() {
                    batch.push(Job {
                        read: job.read,
                        reply,
                    });
                }
                batch.extend(alone);
                return false;
            }
            Err(e) => rec.finish(Err(e)).await,
        }
        if !conn.is_idle() {
            batch.extend(alone);
            return false;
        }
    }
    true
}

/// The sink a reply is read into: it records the reply, and streams it
/// to the session in chunks once it outgrows [`CHUNK`] (waiting for the
/// session to take each, so memory stays bounded).
struct Recorder {
    rec: Recorded,
    /// Where the outcome goes, until a stream takes its place.
    reply: Option<oneshot::Sender<Outcome>>,
    stream: Option<mpsc::Sender<Part>>,
    /// The session stopped listening: the rest of the reply is read and
    /// dropped.
    gone: bool,
}

impl Recorder {
    fn new(reply: oneshot::Sender<Outcome>) -> Recorder {
        Recorder {
            rec: Recorded::default(),
            reply: Some(reply),
            stream: None,
            gone: false,
        }
    }

    /// Hands what was recorded so far to the session as one chunk.
    async fn send_chunk(&mut self) {
        let part = Part::More(self.rec.take());
        if self.gone {
            return;
        }
        if self.stream.is_none() {
            let (tx, rx) = mpsc::channel(2);
            let listening = self
                .reply
                .take()
                .is_some_and(|r| r.send(Outcome::Stream(rx)).is_ok());
            if !listening {
                self.gone = true;
                return;
            }
            self.stream = Some(tx);
        }
        if let Some(tx) = &self.stream {
            self.gone = tx.send(part).await.is_err();
        }
    }

    /// Hands the end of the reply (or how it failed) to the session.
    async fn finish(mut self, res: Result<Read, RunError>) {
        let mut rec = self.rec.take();
        let res = res.map(|read| rec.read = Some(read));
        match (self.stream.take(), self.reply.take()) {
            (Some(tx), _) => {
                let last = match res {
                    Ok(()) => Part::Last(rec),
                    Err(e) => Part::Failed(e),
                };
                let _ = tx.send(last).await;
            }
            (None, Some(reply)) => {
                let _ = reply.send(match res {
                    Ok(()) => Outcome::Done(rec),
                    Err(e) => Outcome::Failed(e),
                });
            }
            (None, None) => {}
        }
    }
}

impl RowSink for Recorder {
    // Rows always come as packets (see `packets`); these are not called.
    fn columns(&mut self, _: &[Column]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn row(&mut self, _: &[Value]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn end_rows(&mut self, warnings: u16) -> Result<(), crate::error::Error> {
        self.rec.events.push(Event::End(warnings));
        Ok(())
    }
    fn ok(&mut self, done: QueryDone) -> Result<(), crate::error::Error> {
        self.rec.events.push(Event::Ok(done));
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), crate::error::Error> {
        if self.rec.data.len() >= CHUNK {
            self.send_chunk().await;
        }
        Ok(())
    }
    fn packets(&mut self, _: bool) -> Option<&mut dyn PacketSink> {
        Some(self)
    }
}

impl PacketSink for Recorder {
    fn column_packets(&mut self, defs: &[BytesMut]) {
        self.rec.events.push(Event::Columns(defs.to_vec()));
    }
    fn row_packet(&mut self, payload: &[u8]) {
        let rec = &mut self.rec;
        let start = rec.data.len();
        rec.data.extend_from_slice(payload);
        rec.events.push(Event::Row(start, rec.data.len()));
    }
}

/// What each read of a batch gets when the connection fails under it.
fn lost(msg: &str) -> mysql_async::Error {
    lean::io_err(
        std::io::ErrorKind::ConnectionAborted,
        &format!("shared tablet connection lost: {msg}"),
    )
}
