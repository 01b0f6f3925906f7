//! Lean tablet connections for the hot path: a client's prepared statement
//! that goes whole to one tablet runs as the tablet's prepared statement,
//! and the tablet's answer (column definitions and binary rows) is what the
//! client's binary protocol needs byte for byte. This connection hands
//! those packets on as they arrive instead of decoding every cell into a
//! value and encoding it again (what a general-purpose driver must do).
//!
//! Text queries work the same way: text rows are what the client's text
//! protocol needs. It speaks only what those paths need: the handshake
//! (native password), COM_QUERY, COM_STMT_PREPARE / EXECUTE / CLOSE (and
//! SEND_LONG_DATA), `SELECT @@socket` to find a local tablet's Unix socket,
//! and COM_QUIT. Sessions in a transaction, with
//! settings or reserved connections keep using the pooled driver
//! connections, which carry that state.

use bytes::BytesMut;
use futures_util::StreamExt;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, ComStmtExecuteRequestBuilder, CommonOkPacket, ErrPacket,
    HandshakePacket, HandshakeResponse, OkPacketDeserializer,
};
use mysql_common::proto::{MyDeserialize, MySerialize};
use mysql_common::value::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::engine::{PacketSink, QueryDone, RowSink};
use crate::frontend::codec::{write_packet, PacketCodec};

/// Statements each lean connection keeps prepared (oldest closed first).
const STMT_CACHE: usize = 32;

/// How long connecting and logging in to a tablet may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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

fn io_err(kind: std::io::ErrorKind, msg: &str) -> mysql_async::Error {
    io(std::io::Error::new(kind, msg.to_string()))
}

fn bad(msg: &str) -> mysql_async::Error {
    io_err(std::io::ErrorKind::InvalidData, msg)
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

/// One statement prepared on the connection.
struct Stmt {
    sql: String,
    id: u32,
}

/// A connection to one tablet that forwards binary results undecoded.
pub struct LeanConn {
    reader: Read,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    out: BytesMut,
    caps: CapabilityFlags,
    stmts: Vec<Stmt>,
    /// Status flags of the last OK or EOF (NO_BACKSLASH_ESCAPES, ...).
    pub status: StatusFlags,
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
    /// [`CONNECT_TIMEOUT`] (an unreachable host must not hold a client up).
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
            reader: FramedRead::with_capacity(r, PacketCodec::new(MAX_PACKET), 4096),
            writer: w,
            out: BytesMut::with_capacity(1024),
            caps: CapabilityFlags::empty(),
            stmts: Vec::new(),
            status: StatusFlags::empty(),
        };
        c.login(user, password, db).await?;
        Ok(c)
    }

    async fn read(&mut self) -> Result<BytesMut, mysql_async::Error> {
        match self.reader.next().await {
            Some(Ok(p)) => Ok(p.payload),
            Some(Err(e)) => Err(io(e)),
            None => Err(io_err(
                std::io::ErrorKind::UnexpectedEof,
                "tablet closed the connection",
            )),
        }
    }

    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), mysql_async::Error> {
        let mut seq = seq;
        self.out.clear();
        write_packet(&mut self.out, &mut seq, payload);
        self.writer.write_all(&self.out).await.map_err(io)
    }

    /// Sends a command: its byte, then `parts` one after another.
    async fn command(&mut self, cmd: u8, parts: &[&[u8]]) -> Result<(), mysql_async::Error> {
        let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut payload = Vec::with_capacity(len);
        payload.push(cmd);
        for p in parts {
            payload.extend_from_slice(p);
        }
        self.send(0, &payload).await
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
        // Nothing is owed to an idle connection: anything readable (end of
        // stream, an error, a stray packet) means it cannot be used.
        self.reader.next().now_or_never().is_some()
    }

    /// Says goodbye (the server then closes without logging an aborted
    /// connection).
    pub async fn quit(mut self) {
        let _ = self.command(COM_QUIT, &[]).await;
    }

    async fn prepare(&mut self, sql: &str) -> Result<u32, mysql_async::Error> {
        self.command(COM_STMT_PREPARE, &[sql.as_bytes()]).await?;
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
        for n in [params, cols] {
            if n > 0 {
                // n definitions, then an EOF.
                for _ in 0..=n {
                    self.read().await?;
                }
            }
        }
        Ok(id)
    }

    /// The statement id for `sql`, preparing it (and closing the oldest)
    /// when it is not cached.
    async fn stmt(&mut self, sql: &str) -> Result<u32, mysql_async::Error> {
        if let Some(i) = self.stmts.iter().position(|s| s.sql == sql) {
            let last = self.stmts.len() - 1;
            self.stmts.swap(i, last);
            return Ok(self.stmts[last].id);
        }
        let id = self.prepare(sql).await?;
        if self.stmts.len() >= STMT_CACHE {
            let old = self.stmts.remove(0);
            self.command(COM_STMT_CLOSE, &[&old.id.to_le_bytes()])
                .await?;
        }
        self.stmts.push(Stmt {
            sql: sql.to_string(),
            id,
        });
        Ok(id)
    }

    /// Runs `sql` as a prepared statement with `params` and hands its
    /// results to `sink` (column definitions and rows as the tablet encoded
    /// them); returns the last insert id of an OK result (0 otherwise).
    /// After a `Sink` error, or a `Backend` error other than a server
    /// error, the connection must be dropped.
    pub async fn execute<S: RowSink + Send>(
        &mut self,
        sql: &str,
        params: &[Value],
        sink: &mut S,
    ) -> Result<u64, RunError> {
        // Preparing has no effects, so until the execution is written any
        // failure leaves the statement unrun.
        let mut id = self.stmt(sql).await.map_err(unsent)?;
        let mut retried = false;
        loop {
            let (req, as_long_data) = ComStmtExecuteRequestBuilder::new(id).build(params);
            if as_long_data {
                // Too big for one packet: byte values go ahead as long data.
                self.send_long_data(id, params).await.map_err(unsent)?;
            }
            let mut buf = Vec::with_capacity(64);
            req.serialize(&mut buf);
            self.send(0, &buf).await.map_err(unsent)?;
            match self.results(sink, true).await {
                // The table changed under a cached statement: prepare again once.
                Err(RunError::Backend(mysql_async::Error::Server(e)))
                    if e.code == ER_NEED_REPREPARE && !retried =>
                {
                    retried = true;
                    self.stmts.retain(|s| s.id != id);
                    id = self.stmt(sql).await?;
                }
                other => return other,
            }
        }
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
    /// definitions and text rows as the tablet encoded them); returns the
    /// last insert id. Errors as for [`Self::execute`].
    pub async fn query<S: RowSink + Send>(
        &mut self,
        sql: &str,
        sink: &mut S,
    ) -> Result<u64, RunError> {
        self.command(COM_QUERY, &[sql.as_bytes()])
            .await
            .map_err(unsent)?;
        self.results(sink, false).await
    }

    /// Reads every result of one command into the sink.
    async fn results<S: RowSink + Send>(
        &mut self,
        sink: &mut S,
        binary: bool,
    ) -> Result<u64, RunError> {
        let mut last_id = 0;
        loop {
            let first = self.read().await?;
            let more = match first.first() {
                Some(0xFF) => return Err(server_err(&first, self.caps).into()),
                Some(0x00) => {
                    let ok = OkPacketDeserializer::<CommonOkPacket>::deserialize(
                        self.caps,
                        &mut ParseBuf(&first),
                    )
                    .map_err(|_| bad("malformed OK packet from tablet"))?
                    .into_inner();
                    self.status = ok.status_flags();
                    last_id = ok.last_insert_id().unwrap_or(0);
                    let done = QueryDone {
                        affected_rows: ok.affected_rows(),
                        last_insert_id: last_id,
                        warnings: ok.warnings(),
                        info: ok
                            .info_ref()
                            .map(|i| String::from_utf8_lossy(i).into_owned())
                            .unwrap_or_default(),
                    };
                    sink.ok(done).map_err(RunError::Sink)?;
                    self.status
                        .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
                }
                _ => {
                    // A result set has at least one column (0 would be a
                    // malformed or LOCAL INFILE reply, never asked for).
                    let n = ParseBuf(&first)
                        .checked_eat_lenenc_int()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("malformed column count from tablet"))?;
                    // Reserve no more than MariaDB's column limit, whatever the count says.
                    let mut defs = Vec::with_capacity(n.min(4096) as usize);
                    for _ in 0..n {
                        defs.push(self.read().await?);
                    }
                    self.read().await?; // EOF after the definitions
                    packets(sink, binary)?.column_packets(&defs);
                    loop {
                        let p = self.read().await?;
                        match p.first() {
                            Some(0xFE) if p.len() < 9 => {
                                let [_, w0, w1, s0, s1] = p[..]
                                    .try_into()
                                    .map_err(|_| bad("malformed EOF packet from tablet"))?;
                                let warnings = u16::from_le_bytes([w0, w1]);
                                self.status =
                                    StatusFlags::from_bits_truncate(u16::from_le_bytes([s0, s1]));
                                sink.end_rows(warnings).map_err(RunError::Sink)?;
                                break;
                            }
                            Some(0xFF) => return Err(server_err(&p, self.caps).into()),
                            _ => {
                                packets(sink, binary)?.row_packet(&p);
                                sink.flush().await.map_err(RunError::Sink)?;
                            }
                        }
                    }
                    self.status
                        .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
                }
            };
            if !more {
                return Ok(last_id);
            }
        }
    }
}

/// The sink's packet door (callers only bring sinks that have one).
fn packets<S: RowSink>(sink: &mut S, binary: bool) -> Result<&mut dyn PacketSink, RunError> {
    sink.packets(binary).ok_or_else(|| {
        RunError::Sink(crate::error::Error::Malformed(
            "binary result for a sink without a packet door".into(),
        ))
    })
}

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;

/// MariaDB's "Prepared statement needs to be re-prepared".
const ER_NEED_REPREPARE: u16 = 1615;

fn native_scramble(nonce: &[u8], password: &str) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    mysql_common::scramble::scramble_native(nonce, password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default()
}
