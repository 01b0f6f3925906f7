//! Lean tablet connections for the hot path: a client's prepared statement
//! that goes whole to one tablet runs as the tablet's prepared statement,
//! and the tablet's answer (column definitions and binary rows) is what the
//! client's binary protocol needs byte for byte. This connection hands
//! those packets on as they arrive instead of decoding every cell into a
//! value and encoding it again (what a general-purpose driver must do).
//!
//! Text queries work the same way: text rows are what the client's text
//! protocol needs. When the rows' next stop is not a client of the same
//! protocol (the engine merging a scatter, a text result for a binary
//! client, renamed columns) the connection decodes them instead, so it
//! serves every statement of every session: in a transaction or not, with
//! settings (which the pools tag it with) or not. It speaks only what those
//! paths need: the handshake
//! (native password), COM_QUERY, COM_STMT_PREPARE / EXECUTE / CLOSE (and
//! SEND_LONG_DATA), `SELECT @@socket` to find a local tablet's Unix socket,
//! COM_RESET_CONNECTION (a connection that carried a session's settings or
//! state goes back to the pools clean) and COM_QUIT. With a MariaDB tablet
//! it takes MariaDB's cached column definitions (as MariaDB's own clients
//! do): an execution whose definitions are those the connection last got
//! for its statement comes without them.

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use mysql_common::constants::{CapabilityFlags, ColumnType, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, ComStmtExecuteRequestBuilder, CommonOkPacket, ErrPacket,
    HandshakePacket, HandshakeResponse, OkPacketDeserializer,
};
use mysql_common::proto::{Binary, MyDeserialize, MySerialize};
use mysql_common::row::{Row, RowDeserializer};
use mysql_common::value::{ServerSide, Value};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::engine::row::{self, Cell};
use crate::engine::{PacketSink, QueryDone, RowSink};
use crate::frontend::codec::{whole_frame, write_packet, PacketCodec};
use crate::frontend::{greeting_ext_caps, put_response_ext_caps, EXT_CACHE_METADATA};

/// Statements each lean connection keeps prepared (oldest closed first).
const STMT_CACHE: usize = 32;

/// How long connecting and logging in to a tablet may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes a connection reads from its tablet at a time: a range of a
/// hundred rows arrives in one read (with 4 KiB, strace counted nine more
/// `recvfrom` calls per sysbench read-only transaction).
const READ_BUFFER: usize = 32 * 1024;

/// Largest packet accepted from a tablet.
const MAX_PACKET: usize = 1 << 30;

/// What went wrong running a statement on a tablet connection (this one or
/// the driver's): the tablet (or the link to it), or the sink the rows went
/// to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// From the tablet; a server error leaves the connection usable.
    #[error(transparent)]
    Backend(#[from] mysql_async::Error),
    /// From the sink; the connection may hold unread packets.
    #[error(transparent)]
    Sink(crate::error::Error),
    /// The connection failed before the statement was written in full, so
    /// the server never ran it: safe to run again on another connection.
    #[error(transparent)]
    Unsent(mysql_async::Error),
}

/// An error before the statement reached the server: a server error stays
/// one (the statement was refused), anything else means it was not sent.
fn unsent(e: mysql_async::Error) -> RunError {
    match e {
        mysql_async::Error::Server(_) => RunError::Backend(e),
        other => RunError::Unsent(other),
    }
}

/// An I/O error as the driver's error type.
fn io(e: std::io::Error) -> mysql_async::Error {
    mysql_async::Error::Io(mysql_async::IoError::Io(e))
}

pub(super) fn io_err(kind: std::io::ErrorKind, msg: &str) -> mysql_async::Error {
    io(std::io::Error::new(kind, msg.to_string()))
}

fn bad(msg: &str) -> mysql_async::Error {
    io_err(std::io::ErrorKind::InvalidData, msg)
}

/// A row packet that does not hold its result's columns.
fn malformed_row() -> mysql_async::Error {
    bad("malformed row from tablet")
}

/// A server error packet as the driver's error type (so one mapping to
/// client errors serves both kinds of connection).
fn server_err(payload: &[u8], caps: CapabilityFlags) -> mysql_async::Error {
    match ErrPacket::deserialize(caps, &mut ParseBuf(payload)) {
        Ok(ErrPacket::Error(e)) => mysql_async::Error::Server(mysql_async::ServerError {
            code: e.error_code(),
            message: e.message_str().into_owned(),
            state: e
                .sql_state_ref()
                .map(|s| s.as_str().into_owned())
                .unwrap_or_else(|| "HY000".into()),
        }),
        _ => bad("malformed error packet from tablet"),
    }
}

type Read = FramedRead<Box<dyn AsyncRead + Send + Unpin>, PacketCodec>;

/// How [`LeanConn::start_execute`] began.
pub enum Begun {
    /// A result set, its rows to follow: its columns, decoded once per
    /// statement and connection and shared by its executions.
    Rows(Arc<[Column]>),
    /// An OK: no rows.
    Done,
    /// A column would not come as a length-coded string: nothing ran, or
    /// what ran was read and dropped. The statement is to run as text.
    AsText,
}

/// Whether the binary protocol sends every column of `defs` as a
/// length-coded string, the bytes the text protocol sends for it: strings,
/// decimals, bits, enums, sets, geometry. Numbers, dates and times come
/// in binary forms of their own, which the gate's merges do not read.
fn cells_as_text(defs: &[BytesMut]) -> bool {
    use ColumnType::*;
    defs.iter().all(|d| {
        column(d).is_ok_and(|c| {
            matches!(
                c.column_type(),
                MYSQL_TYPE_DECIMAL
                    | MYSQL_TYPE_NEWDECIMAL
                    | MYSQL_TYPE_VARCHAR
                    | MYSQL_TYPE_VAR_STRING
                    | MYSQL_TYPE_STRING
                    | MYSQL_TYPE_ENUM
                    | MYSQL_TYPE_SET
                    | MYSQL_TYPE_TINY_BLOB
                    | MYSQL_TYPE_MEDIUM_BLOB
                    | MYSQL_TYPE_LONG_BLOB
                    | MYSQL_TYPE_BLOB
                    | MYSQL_TYPE_BIT
                    | MYSQL_TYPE_GEOMETRY
                    | MYSQL_TYPE_JSON
            )
        })
    })
}

/// One statement prepared on the connection.
struct Stmt {
    sql: String,
    id: u32,
    /// The column definitions the tablet last sent for it (with the
    /// prepare's reply, or an execution's): what an execution whose
    /// definitions the tablet skips has (see [`LeanConn::cache_metadata`]).
    defs: Vec<BytesMut>,
    /// Every column of `defs` comes as a length-coded string in the
    /// binary protocol (see [`cells_as_text`]).
    lenenc: bool,
    /// `defs` decoded, once they are asked for (a scatter's merge reads
    /// them on every execution).
    columns: Option<Arc<[Column]>>,
}

impl Stmt {
    /// Takes the definitions an execution sent anew: the statement's from
    /// now on. Only changed ones are copied and looked at again (a tablet
    /// without cached metadata sends them with every execution).
    fn renew_defs(&mut self, defs: &[BytesMut]) {
        if self.defs[..] != *defs {
            self.lenenc = cells_as_text(defs);
            self.defs = defs.to_vec();
            self.columns = None;
        }
    }

    /// The definitions decoded, decoding them the first time.
    fn columns(&mut self) -> Result<Arc<[Column]>, mysql_async::Error> {
        if let Some(c) = &self.columns {
            return Ok(c.clone());
        }
        let c: Arc<[Column]> = columns(&self.defs)?.into();
        self.columns = Some(c.clone());
        Ok(c)
    }
}

/// A connection to one tablet that forwards binary results undecoded.
pub struct LeanConn {
    reader: Read,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    out: BytesMut,
    caps: CapabilityFlags,
    /// MariaDB's MARIADB_CLIENT_CACHE_METADATA, when the tablet offers it:
    /// an execution whose column definitions are those the connection
    /// last got for its statement comes without them (a byte in the
    /// column count says so), which spares the tablet building them and
    /// this connection reading them, as for MariaDB's own clients.
    cache_metadata: bool,
    /// Pipelined executions' statement ids, in the order their replies
    /// come (see [`Self::queue_execute`]).
    executing: std::collections::VecDeque<u32>,
    stmts: Vec<Stmt>,
    /// The last command's reply was read to its end (a sink that failed,
    /// or a row stream dropped early, leaves packets behind: such a
    /// connection cannot take another command).
    idle: bool,
    /// A BEGIN (or `XA START`) to send ahead of the next command: the
    /// COM_QUERY payload.
    begin_next: Option<std::borrow::Cow<'static, [u8]>>,
    /// OK replies owed ahead of the next command's: a BEGIN sent with it,
    /// a COMMIT written without waiting (see [`Self::commit_unanswered`]).
    owed: u8,
    /// A pipelined BEGIN or an unanswered COMMIT failed: the connection is not what its holder
    /// thinks it is, and is never reused.
    failed: bool,
    /// Status flags of the last OK or EOF (NO_BACKSLASH_ESCAPES, ...).
    status: StatusFlags,
    /// [`Self::poll_next_row`] read a result's end and the statement has more
    /// results, which [`Self::skip_rows`] reads and drops.
    results_left: bool,
    /// The result [`Self::poll_next_row`] reads came from an execution
    /// ([`Self::start_execute`]): binary-protocol rows.
    binary_rows: bool,
    /// Where executions are serialized before framing (kept, so an
    /// execution allocates nothing for it).
    scratch: Vec<u8>,
    /// The row [`LeanConn::poll_next_row`] handed out last.
    current: Current,
    /// The tablet's id for this connection (its MySQL thread id), which
    /// the tablet's lock waits name.
    thread_id: u32,
}

/// Where the row a scatter is looking at lies.
#[derive(Default)]
enum Current {
    #[default]
    None,
    /// At the start of the read buffer: a frame of this many bytes.
    InPlace(usize),
    /// Read out of the buffer (it spanned reads or packets).
    Owned(BytesMut),
}

/// Column names to rewrite in a result's definitions: SHOW TABLES names
/// its column after the tablet's database (`Tables_in_vt_commerce`), the
/// client expects the keyspace (`Tables_in_commerce`).
pub struct Rename {
    /// The prefix the tablet writes.
    pub from: String,
    /// The prefix the client sees.
    pub to: String,
}

impl Rename {
    /// The columns with `from` replaced by `to` at the start of names.
    pub fn apply(&self, cols: &[Column]) -> Vec<Column> {
        cols.iter()
            .map(|c| match c.name_str().strip_prefix(self.from.as_str()) {
                Some(tail) => c.clone().with_name(format!("{}{tail}", self.to).as_bytes()),
                None => c.clone(),
            })
            .collect()
    }
}

/// Where a tablet listens.
#[derive(Clone, Copy)]
pub enum Endpoint<'a> {
    /// host:port over TCP.
    Tcp(&'a str, u16),
    /// A Unix socket path.
    Unix(&'a str),
}

impl LeanConn {
    /// Connects and logs in as `user` to database `db`, within
    /// `CONNECT_TIMEOUT` (an unreachable host must not hold a client up).
    pub async fn connect(
        at: Endpoint<'_>,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<LeanConn, mysql_async::Error> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open(at, user, password, db))
            .await
            .unwrap_or_else(|_| {
                Err(io_err(
                    std::io::ErrorKind::TimedOut,
                    "timed out connecting to tablet",
                ))
            })
    }

    async fn open(
        at: Endpoint<'_>,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<LeanConn, mysql_async::Error> {
        let (r, w): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match at {
            Endpoint::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(io)?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(io)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let mut c = LeanConn {
            reader: FramedRead::with_capacity(r, PacketCodec::new(MAX_PACKET), READ_BUFFER),
            writer: w,
            out: BytesMut::with_capacity(1024),
            caps: CapabilityFlags::empty(),
            cache_metadata: false,
            executing: std::collections::VecDeque::new(),
            stmts: Vec::new(),
            idle: true,
            begin_next: None,
            owed: 0,
            failed: false,
            status: StatusFlags::empty(),
            results_left: false,
            binary_rows: false,
            scratch: Vec::new(),
            current: Current::None,
            thread_id: 0,
        };
        c.login(user, password, db).await?;
        Ok(c)
    }

    async fn read(&mut self) -> Result<BytesMut, mysql_async::Error> {
        while self.owed > 0 {
            let reply = self.packet().await?;
            self.owed_reply(&reply)?;
        }
        self.packet().await
    }

    /// Takes one of the [`Self::owed`] replies: an OK, else the connection
    /// is failed (the command after it is left unread, and it holds no
    /// transaction or, after a COMMIT, may still hold one: it cannot be
    /// used again; the caller only pipelines reads).
    fn owed_reply(&mut self, reply: &[u8]) -> Result<(), mysql_async::Error> {
        self.owed -= 1;
        match reply.first() {
            Some(0x00) => self.ok_packet(reply).map(drop),
            Some(0xFF) => {
                self.failed = true;
                Err(server_err(reply, self.caps))
            }
            _ => Err(bad("unexpected reply to BEGIN or COMMIT")),
        }
    }

    /// What was read and not yet decoded, when its packets can be used in
    /// place: no reply is owed ahead of them and no frame is half
    /// joined to an earlier one.
    fn unread(&self) -> Option<&[u8]> {
        (self.owed == 0 && !self.reader.decoder().mid_packet())
            .then(|| &self.reader.read_buffer()[..])
    }

    /// The next packet when it is a row lying whole in the read buffer,
    /// and the bytes to [`Self::consume`] once it is used: a result's rows
    /// are handed on in place, with no payload split off per row (EOF and
    /// error packets, and anything not yet read whole, take [`Self::read`]).
    fn buffered_row(&self) -> Option<(&[u8], usize)> {
        let buf = self.unread()?;
        let len = whole_frame(buf)?;
        let p = &buf[4..4 + len];
        is_row(p).then_some((p, 4 + len))
    }

    /// The bytes of the run of row packets lying whole at the start of
    /// the read buffer (0: none), to hand on framed as they are.
    fn buffered_rows(&self) -> usize {
        let Some(buf) = self.unread() else {
            return 0;
        };
        let mut at = 0;
        while let Some(len) = whole_frame(&buf[at..]) {
            if !is_row(&buf[at + 4..at + 4 + len]) {
                break;
            }
            at += 4 + len;
        }
        at
    }

    /// An EOF packet lying whole at the start of the read buffer, taken
    /// from it in place: a result's end, and the EOF after its column
    /// definitions, cost no payload split off the buffer.
    fn buffered_eof(&mut self) -> Option<[u8; 5]> {
        self.release_row();
        let buf = self.unread()?;
        let len = whole_frame(buf)?;
        let eof: [u8; 5] = buf.get(4..4 + len)?.try_into().ok()?;
        if eof[0] != 0xFE {
            return None;
        }
        self.consume(4 + len);
        Some(eof)
    }

    /// Drops a packet [`Self::buffered_row`] handed out.
    fn consume(&mut self, used: usize) {
        self.reader.read_buffer_mut().advance(used);
    }

    async fn packet(&mut self) -> Result<BytesMut, mysql_async::Error> {
        self.release_row();
        payload(self.reader.next().await)
    }

    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), mysql_async::Error> {
        self.out.clear();
        if let Some(begin) = self.begin_next.take() {
            write_packet(&mut self.out, &mut 0, &begin);
            self.owed += 1;
        }
        let mut seq = seq;
        write_packet(&mut self.out, &mut seq, payload);
        self.flush().await
    }

    /// Opens a transaction in the same write as the next command, saving a
    /// round trip: the server runs BEGIN, then the command. Only for a
    /// command that changes nothing (a read): should BEGIN fail, the
    /// command has run outside a transaction, and the caller gets BEGIN's
    /// error and drops the connection.
    pub fn begin_with_next(&mut self) {
        self.begin_next = Some(std::borrow::Cow::Borrowed(b"\x03BEGIN"));
    }

    /// [`Self::begin_with_next`] with another statement that opens a
    /// transaction (`XA START`, see [`crate::executor::twopc`]).
    pub fn begin_with_next_as(&mut self, stmt: &str) {
        let mut payload = Vec::with_capacity(stmt.len() + 1);
        payload.push(0x03);
        payload.extend_from_slice(stmt.as_bytes());
        self.begin_next = Some(payload.into());
    }

    /// Ends a transaction that only read: COMMIT is written at once, and
    /// its reply is read ahead of the next command's instead of waited
    /// for. Such a COMMIT has nothing to make durable and cannot fail but
    /// with the connection (the server then rolls back what only read),
    /// so its client need not wait a round trip for it; the tablet still
    /// ends the transaction (its snapshot, its metadata locks) as soon as
    /// it reads it. An error reply read later retires the connection.
    pub async fn commit_unanswered(&mut self) -> Result<(), RunError> {
        self.command(COM_QUERY, &[b"COMMIT"])
            .await
            .map_err(unsent)?;
        self.owed += 1;
        Ok(())
    }

    /// Sends a command: its byte, then `parts` one after another.
    async fn command(&mut self, cmd: u8, parts: &[&[u8]]) -> Result<(), mysql_async::Error> {
        if self.failed {
            // Its replies no longer line up with its commands.
            return Err(bad("the connection's pipelined statement failed"));
        }
        self.send(0, &command_payload(cmd, parts)).await
    }

    async fn login(
        &mut self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<(), mysql_async::Error> {
        let greeting = self.read().await?;
        if greeting.first() == Some(&0xFF) {
            return Err(server_err(&greeting, CapabilityFlags::CLIENT_PROTOCOL_41));
        }
        let hp = HandshakePacket::deserialize((), &mut ParseBuf(&greeting))
            .map_err(|_| bad("malformed handshake from tablet"))?;
        self.thread_id = hp.connection_id();
        let wanted = CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_LONG_FLAG
            | CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_MULTI_RESULTS
            | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        self.caps = (wanted & hp.capabilities()) | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        if !self.caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
            return Err(bad("tablet does not speak protocol 4.1"));
        }
        // A MariaDB server says so by clearing bit 0 (CLIENT_MYSQL) and puts
        // its extended capabilities in the greeting's filler; a client
        // taking one clears bit 0 too and answers in its own filler.
        self.cache_metadata = !hp
            .capabilities()
            .contains(CapabilityFlags::CLIENT_LONG_PASSWORD)
            && greeting_ext_caps(&greeting).is_some_and(|ext| ext & EXT_CACHE_METADATA != 0);
        if self.cache_metadata {
            self.caps.remove(CapabilityFlags::CLIENT_LONG_PASSWORD);
        }
        let scramble = native_scramble(&hp.nonce(), password);
        let resp = HandshakeResponse::new(
            Some(scramble.as_slice()),
            hp.server_version_parsed().unwrap_or((5, 5, 5)),
            Some(user.as_bytes()),
            Some(db.as_bytes()),
            Some(AuthPlugin::MysqlNativePassword),
            self.caps,
            None,
            MAX_PACKET as u32,
        );
        let mut buf = Vec::with_capacity(128);
        resp.serialize(&mut buf);
        if self.cache_metadata {
            put_response_ext_caps(&mut buf, EXT_CACHE_METADATA);
        }
        self.send(1, &buf).await?;
        let mut seq = 3;
        loop {
            let reply = self.read().await?;
            match reply.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_err(&reply, self.caps)),
                Some(0xFE) => {
                    let switch = AuthSwitchRequest::deserialize((), &mut ParseBuf(&reply))
                        .map_err(|_| bad("malformed auth switch from tablet"))?;
                    if switch.auth_plugin().as_bytes() != b"mysql_native_password" {
                        return Err(bad(
                            "tablet asks for an authentication plugin shardgate does not speak",
                        ));
                    }
                    let nonce = switch.plugin_data();
                    let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
                    let s = native_scramble(nonce, password);
                    self.send(seq, &s).await?;
                    seq = seq.wrapping_add(2);
                }
                _ => return Err(bad("unexpected packet while logging in to tablet")),
            }
        }
    }

    /// The Unix socket the server listens on (`@@socket`), if any.
    pub async fn socket_path(&mut self) -> Result<Option<String>, mysql_async::Error> {
        self.command(COM_QUERY, &[b"SELECT @@socket"]).await?;
        let first = self.read().await?;
        if first.first() == Some(&0xFF) {
            return Err(server_err(&first, self.caps));
        }
        // One column: its definition, EOF, one text row, EOF.
        let mut path = None;
        let mut eofs = 0;
        while eofs < 2 {
            let p = self.read().await?;
            match p.first() {
                Some(0xFE) if p.len() < 9 => eofs += 1,
                Some(0xFF) => return Err(server_err(&p, self.caps)),
                _ if eofs == 1 => {
                    path = ParseBuf(&p)
                        .checked_eat_lenenc_str()
                        .map(|s| String::from_utf8_lossy(s).into_owned());
                }
                _ => {}
            }
        }
        Ok(path.filter(|p| !p.is_empty()))
    }

    /// Whether the server closed the connection while it sat idle (a
    /// restart, `wait_timeout`, `KILL`): checked without waiting, so a dead
    /// connection is replaced before a statement is sent on it.
    pub fn is_closed(&mut self) -> bool {
        use futures_util::FutureExt;
        // Nothing but owed OKs can be readable on an idle connection:
        // anything else (end of stream, an error, a stray packet) means it
        // cannot be used.
        loop {
            match self.reader.next().now_or_never() {
                None => return false,
                Some(Some(Ok(p))) if self.owed > 0 => {
                    if self.owed_reply(&p.payload).is_err() {
                        return true;
                    }
                }
                Some(_) => return true,
            }
        }
    }

    /// Resets the session on the server (settings, user variables,
    /// temporary tables, locks, an open transaction, prepared statements),
    /// so the connection can serve another client.
    pub async fn reset(&mut self) -> Result<(), mysql_async::Error> {
        self.idle = false;
        self.command(COM_RESET_CONNECTION, &[]).await?;
        let reply = self.read().await?;
        self.idle = true;
        self.stmts.clear();
        match reply.first() {
            Some(0x00) => self.ok_packet(&reply).map(drop),
            Some(0xFF) => Err(server_err(&reply, self.caps)),
            _ => Err(bad("unexpected reply to COM_RESET_CONNECTION")),
        }
    }

    /// Says goodbye (the server then closes without logging an aborted
    /// connection).
    pub async fn quit(mut self) {
        let _ = self.command(COM_QUIT, &[]).await;
    }

    /// Prepares `sql`: its statement id, parameter and column definitions.
    async fn prepare(
        &mut self,
        sql: &str,
    ) -> Result<(u32, Vec<Column>, Vec<BytesMut>), mysql_async::Error> {
        self.command(COM_STMT_PREPARE, &[&crate::sql::raw::wire(sql)])
            .await?;
        let ok = self.read().await?;
        if ok.first() == Some(&0xFF) {
            return Err(server_err(&ok, self.caps));
        }
        if ok.len() < 12 || ok[0] != 0 {
            return Err(bad("malformed prepare reply from tablet"));
        }
        let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
        let cols = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        let mut defs = [Vec::new(), Vec::new()];
        for (n, out) in [params, cols].into_iter().zip(&mut defs) {
            if n > 0 {
                // n definitions, then an EOF.
                for _ in 0..n {
                    let p = self.read().await?;
                    column(&p)?;
                    out.push(p);
                }
                self.read().await?;
            }
        }
        let [params, cols] = defs;
        Ok((id, columns(&params)?, cols))
    }

    /// The parameter and column definitions MariaDB gives `sql` when it is
    /// prepared (the statement is closed again).
    pub async fn describe(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<Column>, Vec<Column>), mysql_async::Error> {
        self.idle = false;
        let (id, params, cols) = self.prepare(sql).await?;
        self.command(COM_STMT_CLOSE, &[&id.to_le_bytes()]).await?;
        self.idle = true;
        Ok((params, columns(&cols)?))
    }

    /// The statement id for `sql`, preparing it (and closing the oldest)
    /// when it is not cached.
    async fn stmt(&mut self, sql: &str) -> Result<u32, mysql_async::Error> {
        if let Some(id) = self.cached(sql) {
            return Ok(id);
        }
        let (id, _, defs) = self.prepare(sql).await?;
        if self.stmts.len() >= STMT_CACHE {
            let old = self.stmts.remove(0);
            self.command(COM_STMT_CLOSE, &[&old.id.to_le_bytes()])
                .await?;
        }
        self.stmts.push(Stmt {
            sql: sql.to_string(),
            id,
            lenenc: cells_as_text(&defs),
            defs,
            columns: None,
        });
        Ok(id)
    }

    /// Whether the connection can take a command: the last reply was read
    /// to its end.
    pub fn is_idle(&self) -> bool {
        self.idle && !self.failed
    }

    /// Whether a pipelined statement failed, leaving the reply of the one
    /// after it unread: the connection takes no command any more and is
    /// to be closed.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Runs `sql` as a prepared statement with `params` and hands its
    /// results to `sink` (column definitions and rows as the tablet encoded
    /// them, or decoded when the sink has no door for binary packets);
    /// returns the last insert id of an OK result (0 otherwise). After an
    /// error the connection is usable again if [`Self::is_idle`] says so.
    pub async fn execute<S: RowSink + Send>(
        &mut self,
        sql: &str,
        params: &[Value],
        sink: &mut S,
    ) -> Result<u64, RunError> {
        self.idle = false;
        // Preparing has no effects, so until the execution is written any
        // failure leaves the statement unrun.
        let mut id = self.stmt(sql).await.map_err(unsent)?;
        let mut retried = false;
        loop {
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            if !execute_payload(&mut buf, id, params) {
                // Too big for one packet: byte values go ahead as long data.
                self.send_long_data(id, params).await.map_err(unsent)?;
                let (req, _) = ComStmtExecuteRequestBuilder::new(id).build(params);
                req.serialize(&mut buf);
            }
            let sent = self.send(0, &buf).await;
            self.scratch = buf;
            sent.map_err(unsent)?;
            match self.results(sink, Some(id), None).await {
                // The table changed under a cached statement: prepare again once.
                Err(RunError::Backend(mysql_async::Error::Server(e)))
                    if e.code == ER_NEED_REPREPARE && !retried =>
                {
                    retried = true;
                    self.idle = false;
                    self.stmts.retain(|s| s.id != id);
                    id = self.stmt(sql).await?;
                }
                other => return other,
            }
        }
    }

    /// Prepares `sql` unless the connection has it already (a round trip
    /// the first time): the first step of a pipelined execution, taken
    /// for every statement of a batch before any execution is queued.
    /// Preparing has no effects, so a failure leaves nothing run.
    pub async fn prepared(&mut self, sql: &str) -> Result<u32, mysql_async::Error> {
        self.idle = false;
        let id = self.stmt(sql).await;
        // A refusal is read to its end; a failed link may leave packets.
        self.idle = matches!(id, Ok(_) | Err(mysql_async::Error::Server(_)));
        id
    }

    /// The id of `sql` when the connection has it prepared already (no
    /// round trip): what a pipeline may queue while replies are owed.
    /// Most recently used last, so the statements in flight are the last
    /// a later prepare closes.
    pub fn cached(&mut self, sql: &str) -> Option<u32> {
        let i = self.stmts.iter().position(|s| s.sql == sql)?;
        let s = self.stmts.remove(i);
        let id = s.id;
        self.stmts.push(s);
        Some(id)
    }

    /// Appends an execution of statement `id` with `params` to the
    /// pipeline that [`Self::flush`] writes (the statements of a batch are
    /// all [`Self::prepared`] before the first is queued: a prepare writes
    /// at once); false (nothing queued) when
    /// the parameters are too big for one packet and must go ahead as long
    /// data ([`Self::execute`] does that).
    pub fn queue_execute(&mut self, id: u32, params: &[Value]) -> bool {
        self.scratch.clear();
        if !execute_payload(&mut self.scratch, id, params) {
            return false;
        }
        write_packet(&mut self.out, &mut 0, &self.scratch);
        self.executing.push_back(id);
        true
    }

    /// Appends a text query to the pipeline that [`Self::flush`] writes.
    pub fn queue_query(&mut self, sql: &str) {
        let payload = command_payload(COM_QUERY, &[&crate::sql::raw::wire(sql)]);
        write_packet(&mut self.out, &mut 0, &payload);
    }

    /// Writes every queued command in one go; their replies then come in
    /// order, one [`Self::reply`] each. The buffer is empty again
    /// afterwards, between commands: queued ones gather in it.
    pub async fn flush(&mut self) -> Result<(), mysql_async::Error> {
        let res = self.writer.write_all(&self.out).await.map_err(io);
        self.out.clear();
        res
    }

    /// Reads the reply to the next queued command into `sink` (its
    /// packets as the tablet sent them; `binary` for an execution's rows);
    /// errors as for [`Self::execute`]: after a server's error the next
    /// reply follows.
    pub async fn reply<S: RowSink + Send>(
        &mut self,
        binary: bool,
        sink: &mut S,
    ) -> Result<u64, RunError> {
        self.idle = false;
        let stmt = if binary {
            match self.executing.pop_front() {
                Some(id) => Some(id),
                None => return Err(bad("a reply to an execution that was not queued").into()),
            }
        } else {
            None
        };
        self.results(sink, stmt, None).await
    }

    /// COM_STMT_SEND_LONG_DATA for every byte value (no replies).
    async fn send_long_data(
        &mut self,
        id: u32,
        params: &[Value],
    ) -> Result<(), mysql_async::Error> {
        const CHUNK: usize = crate::frontend::codec::MAX_FRAME - 7;
        for (i, v) in params.iter().enumerate() {
            let Value::Bytes(bytes) = v else { continue };
            let mut chunks = bytes.chunks(CHUNK).peekable();
            let empty: &[u8] = &[];
            let first = chunks.peek().is_none().then_some(empty);
            for chunk in first.into_iter().chain(chunks) {
                let (id, param) = (id.to_le_bytes(), (i as u16).to_le_bytes());
                self.command(COM_STMT_SEND_LONG_DATA, &[&id, &param, chunk])
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs `sql` as a text query and hands its results to `sink` (column
    /// definitions and text rows as the tablet encoded them, or decoded when
    /// the sink has no door for text packets or `rename` applies); returns
    /// the last insert id. Errors as for [`Self::execute`].
    pub async fn query<S: RowSink + Send>(
        &mut self,
        sql: &str,
        rename: Option<&Rename>,
        sink: &mut S,
    ) -> Result<u64, RunError> {
        self.idle = false;
        self.command(COM_QUERY, &[&crate::sql::raw::wire(sql)])
            .await
            .map_err(unsent)?;
        self.results(sink, None, rename).await
    }

    /// Runs a statement whose results nobody reads (BEGIN, COMMIT, a SET).
    pub async fn run(&mut self, sql: &str) -> Result<(), RunError> {
        self.query(sql, None, &mut Discard).await.map(drop)
    }

    /// Sends `sql` and reads its first result up to the rows: the column
    /// definitions of a result set, as the tablet encoded them (a scatter
    /// decodes only one shard's, with [`columns`]), whose rows
    /// [`Self::poll_next_row`] then reads; or None when it answered with
    /// OK. Errors as for [`Self::execute`].
    pub async fn start(&mut self, sql: &str) -> Result<Option<Vec<BytesMut>>, RunError> {
        self.idle = false;
        self.binary_rows = false;
        self.command(COM_QUERY, &[&crate::sql::raw::wire(sql)])
            .await
            .map_err(unsent)?;
        let first = self.read().await?;
        match first.first() {
            Some(0xFF) => Err(self.server_error(&first).into()),
            Some(0x00) => {
                self.ok_packet(&first)?;
                self.end_reply().await?;
                Ok(None)
            }
            _ => match self.column_defs(&first).await? {
                Some(defs) => Ok(Some(defs)),
                None => Err(RunError::Backend(bad(
                    "tablet skipped a text result's column definitions",
                ))),
            },
        }
    }

    /// Runs `sql` as a prepared statement with `params` and reads its
    /// first result up to the rows, as [`Self::start`] does for a text
    /// query; the rows [`Self::poll_next_row`] then reads are binary, and
    /// read as text cells: this is for a statement whose every column the
    /// binary protocol sends as a length-coded string, which the tablet
    /// says when it prepares it ([`Begun::AsText`] when not). The tablet
    /// then skips the parse, and a prepared statement's client takes the
    /// rows as they came. Errors as for [`Self::execute`].
    pub async fn start_execute(&mut self, sql: &str, params: &[Value]) -> Result<Begun, RunError> {
        self.idle = false;
        self.binary_rows = true;
        let mut id = match self.stmt(sql).await {
            Ok(id) => id,
            // Refused as a prepared statement: a text query may yet run.
            Err(mysql_async::Error::Server(_)) if !self.failed => {
                self.idle = true;
                return Ok(Begun::AsText);
            }
            Err(e) => return Err(unsent(e)),
        };
        let mut retried = false;
        loop {
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            let fits = self.stmt_lenenc(id) && execute_payload(&mut buf, id, params);
            if !fits {
                // Nothing was sent: the statement is to run as text.
                self.scratch = buf;
                self.idle = true;
                return Ok(Begun::AsText);
            }
            let sent = self.send(0, &buf).await;
            self.scratch = buf;
            sent.map_err(unsent)?;
            let first = self.read().await?;
            match first.first() {
                Some(0xFF) => {
                    let e = self.server_error(&first);
                    // The table changed under a cached statement: prepare again once.
                    if matches!(&e, mysql_async::Error::Server(s) if s.code == ER_NEED_REPREPARE)
                        && !retried
                    {
                        retried = true;
                        self.idle = false;
                        self.stmts.retain(|s| s.id != id);
                        id = self.stmt(sql).await.map_err(unsent)?;
                        continue;
                    }
                    return Err(e.into());
                }
                Some(0x00) => {
                    self.ok_packet(&first)?;
                    self.end_reply().await?;
                    return Ok(Begun::Done);
                }
                _ => {}
            }
            let read = self.column_defs(&first).await?;
            let kept = self.stmts.iter().position(|s| s.id == id);
            let (cols, lenenc) = match (read, kept) {
                (Some(defs), Some(i)) => {
                    self.stmts[i].renew_defs(&defs);
                    (self.stmts[i].columns(), self.stmts[i].lenenc)
                }
                (Some(defs), None) => (columns(&defs).map(Arc::from), cells_as_text(&defs)),
                (None, Some(i)) => (self.stmts[i].columns(), self.stmts[i].lenenc),
                (None, None) => {
                    return Err(RunError::Backend(bad(
                        "tablet skipped column definitions it never sent",
                    )))
                }
            };
            if !lenenc {
                // The tablet re-prepared it with other column types (the
                // table changed): its rows are read and dropped, and the
                // statement, a plain read, runs again as text.
                self.skip_rows().await?;
                return Ok(Begun::AsText);
            }
            // Undecodable definitions: the rows are owed still, and the
            // connection is not reused.
            return cols.map(Begun::Rows).map_err(RunError::Backend);
        }
    }

    /// Whether statement `id`'s columns all come as length-coded strings.
    fn stmt_lenenc(&self, id: u32) -> bool {
        self.stmts.iter().any(|s| s.id == id && s.lenenc)
    }

    /// A text run of the prepared statement `sql` (its verdict said a
    /// column would not come as a length-coded string) began a result
    /// with `defs`: the statement takes them. When every column now
    /// would (the table changed back), its verdict turns, so its next
    /// execution runs prepared again instead of as text for as long as
    /// the connection keeps it. Definitions as before cost a comparison.
    pub fn recheck_verdict(&mut self, sql: &str, defs: &[BytesMut]) {
        if let Some(s) = self.stmts.iter_mut().find(|s| !s.lenenc && s.sql == sql) {
            s.renew_defs(defs);
        }
    }

    /// A result just ended: reads and drops any further results of the
    /// statement, and with them the reply is read to its end.
    async fn end_reply(&mut self) -> Result<(), mysql_async::Error> {
        if self
            .status
            .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
        {
            // Discard takes everything: only the tablet can fail here.
            self.results(&mut Discard, None, None)
                .await
                .map_err(|e| match e {
                    RunError::Backend(e) | RunError::Unsent(e) => e,
                    RunError::Sink(_) => bad("discarding results failed"),
                })?;
        }
        self.idle = true;
        Ok(())
    }

    /// The next row packet of the result [`Self::start`] began; None
    /// after the last (any further results of the statement are read and
    /// dropped).
    async fn next_packet(&mut self) -> Result<Option<BytesMut>, mysql_async::Error> {
        if self.failed {
            return Err(bad("the connection's BEGIN failed"));
        }
        if self.idle {
            return Ok(None);
        }
        let p = self.read().await?;
        match p.first() {
            Some(0xFE) if p.len() < 9 => {
                self.eof_packet(&p)?;
                self.end_reply().await?;
                Ok(None)
            }
            Some(0xFF) => Err(self.server_error(&p)),
            _ => Ok(Some(p)),
        }
    }

    /// Moves to the next row of the result [`Self::start`] began and finds
    /// its cells (`width` of them) into `cells`: true, and the row is
    /// [`Self::current_row`]; false after the last (any further results
    /// are left to [`Self::skip_rows`]). The row handed out before is
    /// given up. A row lying whole in the read buffer is read there.
    ///
    /// A poll rather than a future: a scatter reads its shards' rows
    /// through it, and a future per row would be built, moved and dropped
    /// hundreds of times per statement (most rows are already buffered).
    pub fn poll_next_row(
        &mut self,
        cx: &mut std::task::Context<'_>,
        width: usize,
        cells: &mut Vec<Cell>,
    ) -> std::task::Poll<Result<bool, mysql_async::Error>> {
        use std::task::Poll;
        if let Some(r) = self.next_buffered_row(width, cells) {
            return Poll::Ready(r);
        }
        // start() read any owed replies before the columns.
        if self.owed > 0 {
            return Poll::Ready(Err(bad("a reply is owed mid-result")));
        }
        let p = match payload(futures_util::ready!(self.reader.poll_next_unpin(cx))) {
            Ok(p) => p,
            Err(e) => return Poll::Ready(Err(e)),
        };
        Poll::Ready(match p.first() {
            Some(0xFE) if p.len() < 9 => self.eof_packet(&p).map(|_| {
                // Further results are read and dropped by skip_rows.
                self.results_left = self
                    .status
                    .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS);
                self.idle = !self.results_left;
                false
            }),
            Some(0xFF) => Err(self.server_error(&p)),
            _ if !self.index_row(&p, width, cells) => Err(malformed_row()),
            _ => {
                self.current = Current::Owned(p);
                Ok(true)
            }
        })
    }

    /// [`Self::poll_next_row`] when its answer needs no read: the next row
    /// lies whole in the read buffer, or the result has ended or failed.
    /// None when the next row is yet to arrive (nothing is given up then
    /// but the row handed out before). A merge takes each shard's next
    /// row through this first: most are buffered, and a plain call costs
    /// less than a poll through the stream's layers.
    pub fn next_buffered_row(
        &mut self,
        width: usize,
        cells: &mut Vec<Cell>,
    ) -> Option<Result<bool, mysql_async::Error>> {
        self.release_row();
        if self.failed {
            return Some(Err(bad("the connection's BEGIN failed")));
        }
        if self.idle || self.results_left {
            return Some(Ok(false));
        }
        let (p, used) = self.buffered_row()?;
        if !self.index_row(p, width, cells) {
            return Some(Err(malformed_row()));
        }
        self.current = Current::InPlace(used);
        Some(Ok(true))
    }

    /// Finds a row packet's `width` cells, in the protocol the current
    /// result's rows come in; false for a malformed row.
    fn index_row(&self, p: &[u8], width: usize, cells: &mut Vec<Cell>) -> bool {
        if self.binary_rows {
            row::index_binary(p, width, cells)
        } else {
            row::index(p, width, cells)
        }
    }

    /// Hands the row packets lying whole in the read buffer behind the
    /// row [`Self::poll_next_row`] handed out (which is given up) to
    /// `forward`, framed as they came, and drops them: a merge that
    /// passes rows on as they are then copies a run at once instead of
    /// reading its rows one by one. False when none lie there.
    pub fn forward_buffered_rows(&mut self, forward: impl FnOnce(&[u8])) -> bool {
        self.release_row();
        if self.idle || self.results_left || self.failed {
            return false;
        }
        let run = self.buffered_rows();
        if run == 0 {
            return false;
        }
        forward(&self.reader.read_buffer()[..run]);
        self.consume(run);
        true
    }

    /// Whether the rows [`Self::poll_next_row`] reads are binary-protocol
    /// ones ([`Self::start_execute`]'s).
    pub fn binary_rows(&self) -> bool {
        self.binary_rows
    }

    /// The row the last [`Self::poll_next_row`] moved to (its payload).
    pub fn current_row(&self) -> &[u8] {
        match &self.current {
            Current::None => &[],
            Current::InPlace(used) => &self.reader.read_buffer()[4..*used],
            Current::Owned(p) => p,
        }
    }

    /// Gives up the row [`Self::poll_next_row`] handed out, before the
    /// connection reads on.
    fn release_row(&mut self) {
        if let Current::InPlace(used) = std::mem::take(&mut self.current) {
            self.consume(used);
        }
    }

    /// Reads and drops what is left of the result [`Self::start`] began
    /// (a consumer that stopped early), so the connection can be reused.
    pub async fn skip_rows(&mut self) -> Result<(), mysql_async::Error> {
        if std::mem::take(&mut self.results_left) {
            return self.end_reply().await;
        }
        while self.next_packet().await?.is_some() {}
        Ok(())
    }

    /// A server's error packet, which ends a reply.
    fn server_error(&mut self, payload: &[u8]) -> mysql_async::Error {
        self.idle = true;
        server_err(payload, self.caps)
    }

    /// The tablet's thread id for this connection (see
    /// [`crate::executor::deadlock`]).
    pub fn thread_id(&self) -> u32 {
        self.thread_id
    }

    /// The last status said NO_BACKSLASH_ESCAPES is on (the session's
    /// escaping mode for values it writes into SQL).
    pub fn no_backslash_escapes(&self) -> bool {
        self.status
            .contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES)
    }

    /// Reads an OK packet's status; its other fields for the sink.
    fn ok_packet(&mut self, payload: &[u8]) -> Result<QueryDone, mysql_async::Error> {
        let ok =
            OkPacketDeserializer::<CommonOkPacket>::deserialize(self.caps, &mut ParseBuf(payload))
                .map_err(|_| bad("malformed OK packet from tablet"))?
                .into_inner();
        self.status = ok.status_flags();
        Ok(QueryDone {
            affected_rows: ok.affected_rows(),
            last_insert_id: ok.last_insert_id().unwrap_or(0),
            warnings: ok.warnings(),
            info: ok
                .info_ref()
                .map(|i| String::from_utf8_lossy(i).into_owned())
                .unwrap_or_default(),
        })
    }

    /// Reads an EOF packet's status; returns its warning count.
    fn eof_packet(&mut self, payload: &[u8]) -> Result<u16, mysql_async::Error> {
        let [_, w0, w1, s0, s1] = payload
            .try_into()
            .map_err(|_| bad("malformed EOF packet from tablet"))?;
        self.status = StatusFlags::from_bits_truncate(u16::from_le_bytes([s0, s1]));
        Ok(u16::from_le_bytes([w0, w1]))
    }

    /// Reads a result set's column definitions and the EOF after them;
    /// `first` is the packet with the column count. None when the tablet
    /// skipped them (see [`Self::cache_metadata`]): they are those it last
    /// sent for the statement.
    async fn column_defs(
        &mut self,
        first: &[u8],
    ) -> Result<Option<Vec<BytesMut>>, mysql_async::Error> {
        // A result set has at least one column (0 would be a malformed or
        // LOCAL INFILE reply, never asked for).
        let mut buf = ParseBuf(first);
        let n = buf
            .checked_eat_lenenc_int()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("malformed column count from tablet"))?;
        // With cached metadata a byte follows: 0 when no definitions do.
        if self.cache_metadata && buf.0.first() == Some(&0) {
            if self.buffered_eof().is_none() {
                let eof = self.read().await?;
                if !(eof.first() == Some(&0xFE) && eof.len() < 9) {
                    return Err(bad("no EOF after a column count without definitions"));
                }
            }
            return Ok(None);
        }
        // Reserve no more than MariaDB's column limit, whatever the count says.
        let mut defs = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            defs.push(self.read().await?);
        }
        // The EOF after the definitions.
        if self.buffered_eof().is_none() {
            self.read().await?;
        }
        Ok(Some(defs))
    }

    /// Reads every result of one command into the sink: forwarded as
    /// packets when the sink takes them and no rename applies, decoded
    /// otherwise. `stmt`: the statement an execution ran (binary rows),
    /// None for a text query.
    async fn results<S: RowSink + Send>(
        &mut self,
        sink: &mut S,
        stmt: Option<u32>,
        rename: Option<&Rename>,
    ) -> Result<u64, RunError> {
        let binary = stmt.is_some();
        // Only an execution's first result has definitions the statement
        // keeps (a procedure's further results come with theirs).
        let mut stmt = stmt;
        let mut last_id = 0;
        loop {
            let first = self.read().await?;
            match first.first() {
                Some(0xFF) => return Err(self.server_error(&first).into()),
                Some(0x00) => {
                    let done = self.ok_packet(&first)?;
                    last_id = done.last_insert_id;
                    sink.ok(done).map_err(RunError::Sink)?;
                }
                _ => {
                    let read = self.column_defs(&first).await?;
                    let kept = stmt
                        .take()
                        .and_then(|id| self.stmts.iter().position(|s| s.id == id));
                    let defs: &[BytesMut] = match (&read, kept) {
                        (Some(defs), _) => defs,
                        (None, Some(i)) => &self.stmts[i].defs,
                        (None, None) => {
                            return Err(RunError::Backend(bad(
                                "tablet skipped column definitions it never sent",
                            )))
                        }
                    };
                    let forward = rename.is_none() && sink.packets(binary).is_some();
                    let cols: Option<Arc<[Column]>> = if forward {
                        packets(sink, binary)?.column_packets(defs);
                        None
                    } else {
                        let cols = columns(defs)?;
                        let cols = match rename {
                            Some(r) => r.apply(&cols),
                            None => cols,
                        };
                        sink.columns(&cols).map_err(RunError::Sink)?;
                        Some(cols.into())
                    };
                    if let (Some(defs), Some(i)) = (read, kept) {
                        self.stmts[i].renew_defs(&defs);
                    }
                    loop {
                        // Rows already read whole: forwarded as one run, or
                        // decoded one by one, in place.
                        if cols.is_none() {
                            let run = self.buffered_rows();
                            if run > 0 {
                                packets(sink, binary)?
                                    .framed_rows(&self.reader.read_buffer()[..run]);
                                self.consume(run);
                                sink.flush().await.map_err(RunError::Sink)?;
                                continue;
                            }
                        } else if let Some((p, used)) = self.buffered_row() {
                            row_to(sink, cols.as_ref(), p, binary)?;
                            self.consume(used);
                            sink.flush().await.map_err(RunError::Sink)?;
                            continue;
                        }
                        if let Some(eof) = self.buffered_eof() {
                            let warnings = self.eof_packet(&eof)?;
                            sink.end_rows(warnings).map_err(RunError::Sink)?;
                            break;
                        }
                        let p = self.read().await?;
                        match p.first() {
                            Some(0xFE) if p.len() < 9 => {
                                let warnings = self.eof_packet(&p)?;
                                sink.end_rows(warnings).map_err(RunError::Sink)?;
                                break;
                            }
                            Some(0xFF) => return Err(self.server_error(&p).into()),
                            _ => {
                                row_to(sink, cols.as_ref(), &p, binary)?;
                                sink.flush().await.map_err(RunError::Sink)?;
                            }
                        }
                    }
                }
            }
            if !self
                .status
                .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
            {
                self.idle = true;
                return Ok(last_id);
            }
        }
    }
}

/// What the reader's next item is to the connection: a packet's payload,
/// or the error that ends it (the tablet closing it is one).
fn payload(
    item: Option<Result<crate::frontend::codec::Packet, std::io::Error>>,
) -> Result<BytesMut, mysql_async::Error> {
    match item {
        Some(Ok(p)) => Ok(p.payload),
        Some(Err(e)) => Err(io(e)),
        None => Err(io_err(
            std::io::ErrorKind::UnexpectedEof,
            "tablet closed the connection",
        )),
    }
}

/// A packet of a result set's rows that is a row, not the EOF or error
/// that ends them.
fn is_row(p: &[u8]) -> bool {
    match p.first() {
        Some(0xFE) => p.len() >= 9,
        Some(0xFF) => false,
        _ => true,
    }
}

/// Hands a result row to the sink: its packet as it came, or (`cols`:
/// the columns it is decoded by) its values.
fn row_to<S: RowSink>(
    sink: &mut S,
    cols: Option<&Arc<[Column]>>,
    p: &[u8],
    binary: bool,
) -> Result<(), RunError> {
    match cols {
        None => packets(sink, binary)?.row_packet(p),
        Some(cols) => sink
            .row(&decode_row(cols, p, binary)?)
            .map_err(RunError::Sink)?,
    }
    Ok(())
}

/// Appends COM_STMT_EXECUTE of statement `id` with `params` (their types
/// bound anew, as a statement shared by sessions needs) to `buf`, as
/// mysql_common's request builder writes it, without its two allocations
/// per execution; false, and nothing appended, when the parameters do not
/// fit one packet and must go ahead as long data.
fn execute_payload(buf: &mut Vec<u8>, id: u32, params: &[Value]) -> bool {
    const MAX_PAYLOAD: usize = crate::frontend::codec::MAX_FRAME;
    let bitmap_len = params.len().div_ceil(8);
    let data: usize = params.iter().map(|p| p.bin_len() as usize).sum();
    if 10 + bitmap_len + 1 + 2 * params.len() + data > MAX_PAYLOAD {
        return false;
    }
    buf.push(COM_STMT_EXECUTE);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(0); // no cursor
    buf.extend_from_slice(&1u32.to_le_bytes()); // iteration count
    if params.is_empty() {
        return true;
    }
    let at = buf.len();
    buf.resize(at + bitmap_len, 0);
    for (i, p) in params.iter().enumerate() {
        if *p == Value::NULL {
            buf[at + i / 8] |= 1 << (i % 8);
        }
    }
    buf.push(1); // new parameter types follow
    for p in params {
        let (t, unsigned) = match p {
            Value::NULL => (ColumnType::MYSQL_TYPE_NULL, false),
            Value::Bytes(_) => (ColumnType::MYSQL_TYPE_VAR_STRING, false),
            Value::Int(_) => (ColumnType::MYSQL_TYPE_LONGLONG, false),
            Value::UInt(_) => (ColumnType::MYSQL_TYPE_LONGLONG, true),
            Value::Float(_) => (ColumnType::MYSQL_TYPE_FLOAT, false),
            Value::Double(_) => (ColumnType::MYSQL_TYPE_DOUBLE, false),
            Value::Date(..) => (ColumnType::MYSQL_TYPE_DATETIME, false),
            Value::Time(..) => (ColumnType::MYSQL_TYPE_TIME, false),
        };
        buf.extend_from_slice(&[t as u8, if unsigned { 0x80 } else { 0 }]);
    }
    for p in params.iter().filter(|p| **p != Value::NULL) {
        p.serialize(buf);
    }
    true
}

/// A command's payload: its byte, then `parts` one after another.
fn command_payload(cmd: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut payload = Vec::with_capacity(len);
    payload.push(cmd);
    for p in parts {
        payload.extend_from_slice(p);
    }
    payload
}

/// A column definition packet, decoded.
fn column(payload: &[u8]) -> Result<Column, mysql_async::Error> {
    Column::deserialize((), &mut ParseBuf(payload))
        .map_err(|_| bad("malformed column definition from tablet"))
}

/// A result set's column definition packets, decoded.
pub fn columns(defs: &[BytesMut]) -> Result<Vec<Column>, mysql_async::Error> {
    defs.iter().map(|d| column(d)).collect()
}

/// A row packet (text or binary protocol), decoded.
pub(super) fn decode_row(
    cols: &Arc<[Column]>,
    payload: &[u8],
    binary: bool,
) -> Result<Vec<Value>, mysql_async::Error> {
    if !binary {
        return decode_text_row(cols.len(), payload);
    }
    RowDeserializer::<ServerSide, Binary>::deserialize(cols.clone(), &mut ParseBuf(payload))
        .map(|r| Row::from(r).unwrap())
        .map_err(|_| malformed_row())
}

/// A text-protocol row packet, decoded straight into its cells (the
/// driver's decoder builds a `Row` on the way), found by the same reader
/// as a merge's rows read in place ([`row::index`]).
fn decode_text_row(width: usize, payload: &[u8]) -> Result<Vec<Value>, mysql_async::Error> {
    let mut cells = Vec::with_capacity(width);
    if !row::index(payload, width, &mut cells) {
        return Err(malformed_row());
    }
    Ok(row::TextRow::new(payload, &cells).to_values())
}

/// A sink that drops what it is given, undecoded.
pub(crate) struct Discard;

impl RowSink for Discard {
    fn columns(&mut self, _: &[Column]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn row(&mut self, _: &[Value]) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn end_rows(&mut self, _: u16) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn ok(&mut self, _: QueryDone) -> Result<(), crate::error::Error> {
        Ok(())
    }
    fn packets(&mut self, _: bool) -> Option<&mut dyn PacketSink> {
        Some(self)
    }
}

impl PacketSink for Discard {
    fn column_packets(&mut self, _: &[BytesMut]) {}
    fn row_packet(&mut self, _: &[u8]) {}
}

/// The sink's packet door (callers only bring sinks that have one).
pub(super) fn packets<S: RowSink>(
    sink: &mut S,
    binary: bool,
) -> Result<&mut dyn PacketSink, RunError> {
    sink.packets(binary).ok_or_else(|| {
        RunError::Sink(crate::error::Error::Malformed(
            "packets for a sink without a packet door".into(),
        ))
    })
}

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// MariaDB's "Prepared statement needs to be re-prepared".
pub(super) const ER_NEED_REPREPARE: u16 = 1615;

fn native_scramble(nonce: &[u8], password: &str) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    mysql_common::scramble::scramble_native(nonce, password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::packets::put_lenenc_str;

    #[test]
    fn executions_serialize_like_the_driver() {
        use mysql_common::packets::ComStmtExecuteRequestBuilder;
        let cases: Vec<Vec<Value>> = vec![
            vec![],
            vec![Value::Int(-7)],
            vec![
                Value::NULL,
                Value::UInt(u64::MAX),
                Value::Bytes(b"it's".to_vec()),
            ],
            vec![
                Value::Float(1.5),
                Value::Double(-2.25),
                Value::Date(2026, 12, 1, 21, 10, 17, 5),
            ],
            vec![
                Value::Time(true, 1, 2, 3, 4, 5),
                Value::NULL,
                Value::NULL,
                Value::Int(0),
                Value::NULL,
                Value::Bytes(vec![0; 300]),
                Value::NULL,
                Value::NULL,
                Value::Int(9),
            ],
        ];
        for params in cases {
            let (req, long) = ComStmtExecuteRequestBuilder::new(42).build(&params);
            assert!(!long);
            let mut want = Vec::new();
            req.serialize(&mut want);
            let mut got = Vec::new();
            assert!(execute_payload(&mut got, 42, &params));
            assert_eq!(got, want, "{params:?}");
        }
        let big = vec![Value::Bytes(vec![1; crate::frontend::codec::MAX_FRAME])];
        let mut got = Vec::new();
        assert!(!execute_payload(&mut got, 1, &big));
        assert!(got.is_empty());
    }

    #[test]
    fn text_rows_decode_like_the_driver() {
        let long = vec![b'x'; 300];
        let mut p = Vec::new();
        put_lenenc_str(&mut p, b"42");
        p.push(0xfb);
        put_lenenc_str(&mut p, b"");
        put_lenenc_str(&mut p, &long);
        let cols: Arc<[Column]> = (0..4)
            .map(|_| Column::new(mysql_common::constants::ColumnType::MYSQL_TYPE_VAR_STRING))
            .collect();
        let ours = decode_text_row(4, &p).unwrap();
        assert_eq!(
            ours,
            vec![
                Value::Bytes(b"42".to_vec()),
                Value::NULL,
                Value::Bytes(Vec::new()),
                Value::Bytes(long)
            ]
        );
        let driver: Row =
            RowDeserializer::<(), mysql_common::proto::Text>::deserialize(cols, &mut ParseBuf(&p))
                .unwrap()
                .into();
        assert_eq!(ours, driver.unwrap());
        // A row shorter than its columns is refused, not read past its end.
        assert!(decode_text_row(5, &p).is_err());
        assert!(decode_text_row(4, &p[..p.len() - 1]).is_err());
    }
}
