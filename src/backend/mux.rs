//! Shared, pipelined tablet connections for reads that carry no session
//! state: a clean session's SELECT (prepared or text) outside a
//! transaction does not need a connection of its own, so it joins a queue
//! per tablet. One task per shared connection takes everything queued,
//! writes all of it in one write, and reads the replies in order (MySQL
//! answers a connection's commands in the order it got them). Reads that
//! queue while it reads replies are written between two replies, behind
//! those still in flight: the tablet never waits for the proxy to finish
//! a batch before it sees the next (which on a network would cost a
//! round trip per batch).
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
//! `CHUNK` (64 KiB) streams to the session in chunks through a short
//! channel instead, so no result is held whole in memory; the queue
//! waits for that client meanwhile, and new reads go to another queue
//! (see `STALLED`). Only statements that read and leave nothing behind on
//! the connection come here (see `sql::shareable_read`); the connection
//! itself is one of the pools' lean connections, clean, and never carries
//! a session's settings.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use mysql_common::packets::Column;
use mysql_common::value::Value;
use tokio::sync::{mpsc, oneshot};

use super::lean::{self, LeanConn, RunError};
use super::LeanHandle;
use crate::engine::{PacketSink, QueryDone, RowSink};

/// Reads in flight on one shared connection at most (well under the
/// statements a connection keeps prepared, so the pipeline never closes
/// one of its own).
const MAX_BATCH: usize = 16;

/// A reply awaited for longer than this marks its queue as held up (a
/// slow statement, a large result going out to a slow client): new reads
/// go to another queue of the tablet, and those already waiting unwritten
/// are sent back (see [`Mux::send_back_if_slow`]).
pub(super) const STALLED: Duration = Duration::from_millis(2);

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

#[derive(Clone)]
enum Event {
    /// Column definitions, shared with the replies before when byte-equal
    /// (see [`Recorder::column_packets`]).
    Columns(Arc<[BytesMut]>),
    Row(usize, usize),
    End(u16),
    Ok(QueryDone),
}

/// Spare buffers kept per event loop (see [`Recorded::spare`]), and the
/// largest row data a kept one may hold on to.
const SPARES: usize = 64;
const SPARE_DATA: usize = 16 * 1024;

thread_local! {
    /// Emptied replies' buffers, put back by the sessions that played them
    /// and taken again by the loop's shared connections (a session and
    /// the shared connections it uses run on the same loop).
    static SPARE: std::cell::RefCell<Vec<Recorded>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Replies larger than this are not kept (see [`Outcome::keepable`]).
const KEEPABLE: usize = 4 * 1024;

impl Recorded {
    fn take(&mut self) -> Recorded {
        std::mem::take(self)
    }

    /// An empty recording, with the buffers of one played before when
    /// there is one: most replies are a few short rows, and reusing their
    /// buffers saves two allocations per read.
    fn spare() -> Recorded {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
    }

    /// Empties a played recording and keeps its buffers for
    /// [`Recorded::spare`], unless they grew large.
    fn recycle(mut self) {
        if self.data.capacity() > SPARE_DATA {
            return;
        }
        self.events.clear();
        self.data.clear();
        self.read = None;
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARES {
                s.push(self);
            }
        });
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
    /// A copy of a whole, small reply of one result set without
    /// warnings, which the same read would get again (see
    /// `backend::defaults`).
    pub fn keepable(&self) -> Option<Recorded> {
        let Outcome::Done(rec) = self else {
            return None;
        };
        let clean = rec.events.iter().all(|e| match e {
            Event::Columns(_) | Event::Row(..) => true,
            Event::End(warnings) => *warnings == 0,
            Event::Ok(_) => false,
        });
        (clean && rec.data.len() <= KEEPABLE).then(|| Recorded {
            events: rec.events.clone(),
            data: rec.data.clone(),
            read: None,
        })
    }

    /// Plays the reply into `sink` as a lean connection would have handed
    /// it over (packets through the sink's door for the read's protocol
    /// when it has one, decoded otherwise). Err gives back a read that was
    /// never sent.
    pub async fn deliver<S: RowSink + Send>(
        self,
        binary: bool,
        sink: &mut S,
    ) -> Result<Delivered, Read> {
        let mut player = Player::new(binary);
        let mut last = None;
        let res = match self {
            Outcome::Done(mut rec) => {
                last = rec.read.take();
                let res = player.play(&rec, sink).await;
                rec.recycle();
                res
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

/// Plays a kept reply (see [`Outcome::keepable`]) into `sink`, as
/// [`Outcome::deliver`] would have.
pub async fn replay<S: RowSink + Send>(
    rec: &Recorded,
    binary: bool,
    sink: &mut S,
) -> Result<u64, RunError> {
    Player::new(binary).play(rec, sink).await
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
    fn new(binary: bool) -> Player {
        Player {
            binary,
            decoded: None,
            last_id: 0,
            warnings: 0,
        }
    }

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
/// many reads went through them in how many writes (their ratio is how
/// many reads a write carries).
#[derive(Default)]
pub struct MuxStats {
    /// Writes of queued reads (each carries whatever queued since the
    /// last, behind the reads still in flight).
    pub batches: AtomicU64,
    /// Reads answered on a shared connection.
    pub executions: AtomicU64,
    /// Replies too large to hand over whole, streamed in chunks.
    pub streamed: AtomicU64,
    /// Shareable reads that found their tablet idle and ran on their
    /// session's own connection instead (see `Pools::solo`).
    pub solo: AtomicU64,
    /// Reads given back unwritten because the reply ahead of them took
    /// longer than `STALLED` (their sessions ran them on a connection
    /// of their own instead of waiting for a slow statement).
    pub sent_back: AtomicU64,
}

struct Job {
    read: Read,
    reply: oneshot::Sender<Outcome>,
    /// Runs on the drained connection by itself, prepared anew.
    alone: bool,
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
    /// Set by [`Mux::send_back_if_slow`]: the reads waiting unwritten go
    /// back to their sessions.
    kick: AtomicBool,
    /// Wakes the task to do so while it awaits a reply.
    waker: AtomicWaker,
}

impl State {
    /// Hands a read back unsent (its session runs it elsewhere): it is no
    /// longer this queue's.
    fn give_back(&self, job: Job) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Outcome::Unsent(job.read));
    }

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
            kick: AtomicBool::new(false),
            waker: AtomicWaker::new(),
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

    /// Whether a new read should go elsewhere: the reply awaited has
    /// been awaited longer than `STALLED`, or a full pipeline is waiting.
    pub fn is_stalled(&self) -> bool {
        self.load() >= MAX_BATCH || self.is_slow()
    }

    /// Whether the reply awaited has taken longer than `STALLED` (a
    /// slow statement, or a large result going out to a slow client): a
    /// read queued here would wait for it.
    pub fn is_slow(&self) -> bool {
        let since = self.state.busy_since.load(Ordering::Relaxed);
        since != 0 && self.state.micros().saturating_sub(since) > STALLED.as_micros() as u64
    }

    /// Whether a reply is awaited (the watchdog's pace, see
    /// `Pools::watch_stalls`).
    pub fn is_busy(&self) -> bool {
        self.state.busy_since.load(Ordering::Relaxed) != 0
    }

    /// Sends the reads waiting unwritten behind a slow reply back to
    /// their sessions (which run them on connections of their own): a
    /// read that picked this queue just before the statement ahead turned
    /// out slow would otherwise wait for all of it. Those written already
    /// must wait: the tablet answers in order. Called by a watchdog every
    /// `STALLED`, so the task pays nothing for it per reply but a waker
    /// registration when the reply is not there yet.
    pub fn send_back_if_slow(&self) {
        if self.load() > 1 && self.is_slow() {
            self.state.kick.store(true, Ordering::Relaxed);
            self.state.waker.wake();
        }
    }

    /// Queues a read; the receiver gets how it ended. Err gives the read
    /// back when the queue is closed.
    pub fn submit(&self, read: Read) -> Result<oneshot::Receiver<Outcome>, Read> {
        let (reply, rx) = oneshot::channel();
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(Job {
            read,
            reply,
            alone: false,
        }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendError(job)) => {
                self.state.queued.fetch_sub(1, Ordering::Relaxed);
                Err(job.read)
            }
        }
    }
}

/// The task behind a [`Mux`]: a pipeline of whatever is queued, until
/// the connection fails or every sender is gone. Reads left in the queue
/// then go back unsent.
async fn serve(
    mut handle: LeanHandle,
    mut rx: mpsc::UnboundedReceiver<Job>,
    state: Arc<State>,
    stats: Arc<MuxStats>,
) {
    let mut pipe = Pipeline::default();
    loop {
        // Drained: reads held for that go now.
        if pipe.in_flight.is_empty() && !pipe.run_held(&mut handle.conn, &state, &stats).await {
            break;
        }
        if pipe.in_flight.is_empty() {
            let Some(first) = rx.recv().await else { break };
            let now = Instant::now();
            let alive = !handle.idle_for(LIVENESS_AFTER, now) || !handle.conn.is_closed();
            handle.touch(now);
            if !alive {
                pipe.held.push_back(first);
                break;
            }
            pipe.take(&mut handle.conn, first);
        }
        // Whatever queued meanwhile joins the pipeline (the tablet keeps
        // working on what is in flight while its replies are read).
        while !pipe.broken && pipe.held.is_empty() && pipe.in_flight.len() + pipe.fresh < MAX_BATCH
        {
            match rx.try_recv() {
                Ok(job) => pipe.take(&mut handle.conn, job),
                Err(_) => break,
            }
        }
        if pipe.fresh > 0 {
            let n = std::mem::take(&mut pipe.fresh);
            // A write that fails finds the tablet gone: nothing it carried
            // ran (as a lean connection's own sends count it).
            if handle.conn.flush().await.is_err() {
                let unsent = pipe.in_flight.split_off(pipe.in_flight.len() - n);
                pipe.held.extend(unsent);
                pipe.broken = true;
            } else {
                stats.batches.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(job) = pipe.in_flight.pop_front() else {
            if pipe.broken {
                break;
            }
            continue;
        };
        state.busy_since.store(state.micros(), Ordering::Relaxed);
        // A kick meant for a reply that came meanwhile is void.
        state.kick.store(false, Ordering::Relaxed);
        let Replied { usable, again } = {
            let mut reply = std::pin::pin!(read_reply(
                &mut pipe.refused,
                &mut pipe.last_defs,
                &mut handle.conn,
                job,
                &state,
                &stats
            ));
            let held = &mut pipe.held;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(replied) = std::future::Future::poll(reply.as_mut(), cx) {
                    return Poll::Ready(replied);
                }
                state.waker.register(cx.waker());
                if state.kick.swap(false, Ordering::Relaxed) {
                    let queued = std::iter::from_fn(|| rx.try_recv().ok());
                    for job in held.drain(..).chain(queued) {
                        stats.sent_back.fetch_add(1, Ordering::Relaxed);
                        state.give_back(job);
                    }
                }
                Poll::Pending
            })
            .await
        };
        pipe.hold(again);
        if pipe.in_flight.is_empty() {
            state.busy_since.store(0, Ordering::Relaxed);
        }
        if !usable {
            break;
        }
    }
    // Whatever the connection could not answer goes back to its callers.
    let left = pipe.in_flight.drain(..).chain(pipe.held.drain(..));
    rx.close();
    let queued: Vec<Job> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    for job in left.chain(queued) {
        state.give_back(job);
    }
    // Closed by its owner (a queue given up): leave the tablet politely.
    if handle.conn.is_idle() {
        handle.conn.quit().await;
    }
}

/// How reading a reply ended.
struct Replied {
    /// False when the connection can take no more.
    usable: bool,
    /// A read whose reply was not handed over, to hold again: first in
    /// line (`true`), or last, to run alone once nothing is owed.
    again: Option<(Job, bool)>,
}

/// Reads the reply to `job`, the first in flight; `refused` tells whether
/// the reply before it was the server's error, and is set for the next.
async fn read_reply(
    refused: &mut bool,
    last_defs: &mut Option<Arc<[BytesMut]>>,
    conn: &mut LeanConn,
    job: Job,
    state: &State,
    stats: &MuxStats,
) -> Replied {
    let binary = job.read.params.is_some();
    let mut rec = Recorder::new(job.reply, last_defs.take());
    let res = conn.reply(binary, &mut rec).await;
    *last_defs = rec.last_defs.take();
    let after_refusal = std::mem::replace(
        refused,
        matches!(res, Err(RunError::Backend(mysql_async::Error::Server(_)))),
    );
    let mut usable = true;
    match res {
        // The table changed under the statement: it runs again alone
        // (prepared anew) once nothing is owed.
        Err(RunError::Backend(mysql_async::Error::Server(e)))
            if e.code == lean::ER_NEED_REPREPARE =>
        {
            *refused = false;
            let again = rec.again(job.read, true).map(|job| (job, false));
            return Replied { usable, again };
        }
        Err(e @ RunError::Backend(mysql_async::Error::Server(_))) => {
            stats.executions.fetch_add(1, Ordering::Relaxed);
            rec.finish(Err(e)).await;
        }
        Ok(_) => rec.answered(job.read, stats).await,
        // The server ended the connection with its error to the read
        // before: this one never ran.
        Err(_) if after_refusal && !rec.started() => {
            let again = rec.again(job.read, job.alone).map(|job| (job, true));
            return Replied {
                usable: false,
                again,
            };
        }
        // The connection is lost while this read ran (a KILL, a
        // restart): it fails, as on a connection of its own; the
        // tablet runs a connection's commands one after another, so
        // those behind it never ran and go back unsent.
        Err(e) => {
            rec.finish(Err(e)).await;
            usable = false;
        }
    }
    state.queued.fetch_sub(1, Ordering::Relaxed);
    Replied {
        usable,
        again: None,
    }
}

/// The reads of one shared connection: those written whose replies are
/// owed, in order (MySQL answers a connection's commands in the order it
/// got them), and those that wait until none is owed.
#[derive(Default)]
struct Pipeline {
    in_flight: std::collections::VecDeque<Job>,
    /// Reads that need the connection to themselves: a statement to
    /// prepare first (a prepare's reply must not queue behind reads),
    /// parameters too big for one packet, a statement to prepare anew.
    /// Nothing joins the pipeline while one waits, so it is not starved.
    held: std::collections::VecDeque<Job>,
    /// Reads queued in the connection's buffer since the last write (the
    /// last `fresh` of `in_flight`).
    fresh: usize,
    /// The last reply was the server's error: a connection that ends
    /// right after it was closed by the server (`KILL`, a shutdown), and
    /// the reads behind never ran.
    refused: bool,
    /// A write failed: the pipeline drains and the task ends.
    broken: bool,
    /// The column definitions of the last result read (see
    /// [`Recorder::column_packets`]).
    last_defs: Option<Arc<[BytesMut]>>,
}

impl Pipeline {
    /// Queues a read in the connection's buffer when it can be pipelined,
    /// else holds it until nothing is owed.
    fn take(&mut self, conn: &mut LeanConn, job: Job) {
        if !self.held.is_empty() {
            self.held.push_back(job);
        } else if let Err(job) = self.queue(conn, job) {
            self.held.push_back(job);
        }
    }

    /// Queues a read in the connection's buffer if that needs no round
    /// trip first; Err gives it back.
    fn queue(&mut self, conn: &mut LeanConn, job: Job) -> Result<(), Job> {
        let queued = !job.alone
            && match &job.read.params {
                None => {
                    conn.queue_query(&job.read.sql);
                    true
                }
                Some(params) => conn
                    .cached(&job.read.sql)
                    .is_some_and(|id| conn.queue_execute(id, params)),
            };
        if !queued {
            return Err(job);
        }
        self.in_flight.push_back(job);
        self.fresh += 1;
        Ok(())
    }

    /// Holds a read again (see [`Replied::again`]).
    fn hold(&mut self, again: Option<(Job, bool)>) {
        match again {
            Some((job, true)) => self.held.push_front(job),
            Some((job, false)) => self.held.push_back(job),
            None => {}
        }
    }

    /// Runs the held reads on the drained connection: those that need no
    /// round trip (now) join the pipeline; the first that does waits
    /// until nothing is in flight, so a statement is prepared, then its
    /// execution and those of the reads held behind it (the same
    /// statement, most often) are queued, to be written with whatever
    /// comes next. False when the connection can take no more (the read
    /// that found it so stays held).
    async fn run_held(&mut self, conn: &mut LeanConn, state: &State, stats: &MuxStats) -> bool {
        if self.broken {
            return false;
        }
        while self.in_flight.len() < MAX_BATCH {
            let Some(job) = self.held.pop_front() else {
                break;
            };
            let Err(mut job) = self.queue(conn, job) else {
                continue;
            };
            if !self.in_flight.is_empty() {
                self.held.push_front(job);
                break;
            }
            state.busy_since.store(state.micros(), Ordering::Relaxed);
            if job.read.params.is_some() && !job.alone {
                match conn.prepared(&job.read.sql).await {
                    Ok(_) => match self.queue(conn, job) {
                        Ok(()) => continue,
                        // Parameters too big for one packet.
                        Err(back) => job = back,
                    },
                    // The tablet refuses the statement: answered now.
                    Err(e @ mysql_async::Error::Server(_)) => {
                        let _ = job.reply.send(Outcome::Failed(RunError::Backend(e)));
                        state.queued.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => {
                        self.held.push_front(job);
                        return false;
                    }
                }
            }
            // Parameters too big for one packet, or a statement to
            // prepare anew.
            let mut rec = Recorder::new(job.reply, self.last_defs.take());
            let res = match &job.read.params {
                Some(params) => conn.execute(&job.read.sql, params, &mut rec).await,
                None => conn.query(&job.read.sql, None, &mut rec).await,
            };
            self.last_defs = rec.last_defs.take();
            match res {
                Ok(_) => rec.answered(job.read, stats).await,
                // The connection failed before it was written: this one
                // and the rest go back.
                Err(RunError::Unsent(_)) => {
                    self.hold(rec.again(job.read, job.alone).map(|job| (job, true)));
                    return false;
                }
                Err(e) => rec.finish(Err(e)).await,
            }
            state.queued.fetch_sub(1, Ordering::Relaxed);
            state.busy_since.store(0, Ordering::Relaxed);
            if !conn.is_idle() {
                return false;
            }
        }
        true
    }
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
    /// The column definitions last recorded on this connection.
    last_defs: Option<Arc<[BytesMut]>>,
}

impl Recorder {
    fn new(reply: oneshot::Sender<Outcome>, last_defs: Option<Arc<[BytesMut]>>) -> Recorder {
        Recorder {
            rec: Recorded::spare(),
            reply: Some(reply),
            stream: None,
            gone: false,
            last_defs,
        }
    }

    /// The read again, as a job, when its reply has not been handed over.
    fn again(&mut self, read: Read, alone: bool) -> Option<Job> {
        let reply = self.reply.take()?;
        Some(Job { read, reply, alone })
    }

    /// Whether any of the reply came.
    fn started(&self) -> bool {
        self.stream.is_some() || !self.rec.events.is_empty()
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

    /// Hands a whole reply to the session, counted.
    async fn answered(self, read: Read, stats: &MuxStats) {
        stats.executions.fetch_add(1, Ordering::Relaxed);
        if self.stream.is_some() {
            stats.streamed.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(Ok(read)).await
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
    /// A shared connection mostly answers executions of the same few
    /// statements, whose column definitions repeat byte for byte: those
    /// equal to the last result's are shared with it rather than copied
    /// (comparing a few short packets costs less than copying them).
    fn column_packets(&mut self, defs: &[BytesMut]) {
        let same = self.last_defs.as_ref().filter(|last| {
            last.len() == defs.len() && last.iter().zip(defs).all(|(a, b)| a[..] == b[..])
        });
        let defs = match same {
            Some(last) => last.clone(),
            None => {
                let fresh: Arc<[BytesMut]> = defs.into();
                self.last_defs = Some(fresh.clone());
                fresh
            }
        };
        self.rec.events.push(Event::Columns(defs));
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
