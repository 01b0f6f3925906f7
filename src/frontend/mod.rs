//! The server side of the MySQL protocol: handshake and auth, the command
//! loop, and result encoding (text and binary). It hands statement text to
//! the session and never routes.
//!
//! Query errors are written to the client as MySQL errors and the connection
//! goes on; only I/O errors (or a broken handshake) end it.

pub mod auth;
pub mod codec;
mod infile;
pub mod packets;
pub mod proxy;
pub mod tls;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::fasthash::FastMap;

use bytes::BytesMut;
use futures_util::StreamExt;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, HandshakePacket, HandshakeResponse,
};
use mysql_common::proto::{MyDeserialize, MySerialize};
use mysql_common::value::Value;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::engine::row::TextRow;
use crate::engine::{QueryDone, RowSink};
use crate::error::{Error, MysqlError};
use crate::server::ServerCtx;
use crate::session::Session;
use codec::{write_packet, Packet, PacketCodec};

/// What a command's answer tells the query log, gathered as it is written.
#[derive(Default)]
struct Logged {
    /// The last error's message.
    error: Option<String>,
    /// The OKs' row counts, added up.
    rows: u64,
    /// Rows written to the client.
    returned: u64,
    /// A prepared statement's parameters.
    binds: Vec<Value>,
}

/// Capabilities shardgate offers (CLIENT_SSL is added on TCP when a
/// certificate is configured; no compression). With
/// CLIENT_DEPRECATE_EOF (which drivers take when offered) a result's
/// column definitions are followed by its rows directly and it ends with
/// an OK packet: one packet less per result, and what MariaDB's cached
/// column definitions ([`EXT_CACHE_METADATA`]) need to be read alike by
/// every client.
pub fn server_capabilities() -> CapabilityFlags {
    // CLIENT_LONG_PASSWORD is bit 0, which MariaDB calls CLIENT_MYSQL and
    // leaves clear to say that its extended capabilities follow (as
    // MariaDB servers do; MySQL clients ignore the bit).
    CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_LOCAL_FILES
        // OK packets' info is length-encoded, as MariaDB writes it; a
        // client reads it so only where the server says it tracks session
        // state (Node's mysql2 otherwise took the length byte for text).
        // No state change is ever reported.
        | CapabilityFlags::CLIENT_SESSION_TRACK
}

/// MariaDB's MARIADB_CLIENT_CACHE_METADATA, bit 36 of the capabilities (bit 4
/// of the extended ones the handshake carries apart): the client keeps a
/// prepared statement's column definitions, and an execution whose columns
/// are the ones it last got says so with one byte instead of sending them
/// again. Each column count packet then carries a "metadata follows" byte.
/// MariaDB's own client library asks for it, and gets it from MariaDB
/// itself (and through an L4 proxy); without it every execution's result
/// re-sends, and the client re-parses, its column definitions.
pub const EXT_CACHE_METADATA: u32 = 1 << 4;

/// Where the extended capabilities sit in a greeting after the server
/// version: connection id, scramble part, filler, capabilities, collation,
/// status, capabilities, scramble length, then six bytes of filler.
const GREETING_EXT_CAPS_AFTER_VERSION: usize = 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 6;

/// Where a handshake response carries the client's extended capabilities:
/// after capabilities, max packet size, collation and 19 bytes of filler.
const RESPONSE_EXT_CAPS_AT: usize = 4 + 4 + 1 + 19;

/// MariaDB's extended capabilities travel in handshake filler, at one
/// place in the greeting and another in the response: these read and
/// write them for both ends of a handshake, shardgate's clients' and its
/// tablets'. A greeting's (the protocol version byte, then the server
/// version up to its NUL): None when it is too short to carry them.
pub(crate) fn greeting_ext_caps(greeting: &[u8]) -> Option<u32> {
    let version_len = greeting.get(1..)?.iter().position(|b| *b == 0)?;
    read_ext_caps(greeting, greeting_ext_caps_at(version_len))
}

/// Writes `caps` into a greeting built with a server version of
/// `version_len` bytes.
pub(crate) fn put_greeting_ext_caps(greeting: &mut [u8], version_len: usize, caps: u32) {
    put_ext_caps(greeting, greeting_ext_caps_at(version_len), caps);
}

/// A handshake response's extended capabilities (None: too short).
pub(crate) fn response_ext_caps(response: &[u8]) -> Option<u32> {
    read_ext_caps(response, RESPONSE_EXT_CAPS_AT)
}

/// Writes `caps` into a serialized handshake response.
pub(crate) fn put_response_ext_caps(response: &mut [u8], caps: u32) {
    put_ext_caps(response, RESPONSE_EXT_CAPS_AT, caps);
}

fn greeting_ext_caps_at(version_len: usize) -> usize {
    1 + version_len + 1 + GREETING_EXT_CAPS_AFTER_VERSION
}

fn read_ext_caps(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn put_ext_caps(buf: &mut [u8], at: usize, caps: u32) {
    if let Some(ext) = buf.get_mut(at..at + 4) {
        ext.copy_from_slice(&caps.to_le_bytes());
    }
}

/// The read side of a client connection (TCP or Unix socket).
pub type ClientRead = Box<dyn AsyncRead + Unpin + Send>;
/// The write side of a client connection (TCP or Unix socket).
pub type ClientWrite = Box<dyn AsyncWrite + Unpin + Send>;

type Reader = FramedRead<ClientRead, PacketCodec>;

/// Bytes buffered before rows are written out mid-result.
const FLUSH_AT: usize = 64 * 1024;

/// An output buffer larger than this is given back when a command that
/// needed no more than this is done.
const IDLE_BUFFER_MAX: usize = 16 * 1024;

/// The write side of a client connection: an output buffer and the
/// sequence id of the next packet.
pub struct Wire {
    writer: ClientWrite,
    out: Vec<u8>,
    seq: u8,
    /// The most output buffered at once since the last idle point.
    peak: usize,
    /// Negotiated [`EXT_CACHE_METADATA`].
    cache_metadata: bool,
    /// Negotiated CLIENT_DEPRECATE_EOF: no EOF after column definitions,
    /// an OK in 0xFE clothing where an EOF ends something.
    deprecate_eof: bool,
    /// Per prepared statement, the column definitions its client last got
    /// (each as a 4-byte length and the packet), with cache_metadata.
    sent_columns: FastMap<u32, Vec<u8>>,
    /// The Vitess code of the last error written, for the command's error
    /// count (`vtgate_api_error_counts`).
    last_err: Option<&'static str>,
    /// What the query log records of the command being answered (kept
    /// only while a query log is written).
    logged: Option<Logged>,
    /// The client connected with CLIENT_FOUND_ROWS: an UPDATE's affected
    /// rows are the rows it matched, not those it changed (JDBC's and
    /// Rails' default, whose optimistic checks count on it).
    found_rows: bool,
    /// The client said CLIENT_LOCAL_FILES: it sends a file the server asks
    /// for (LOAD DATA LOCAL INFILE).
    local_files: bool,
    /// `--mysql_server_write_timeout`: a client that takes no bytes for
    /// this long is dropped rather than hold its session's resources.
    write_timeout: Option<std::time::Duration>,
}

impl Wire {
    fn new(writer: ClientWrite) -> Wire {
        Wire {
            writer,
            out: Vec::new(),
            seq: 0,
            peak: 0,
            cache_metadata: false,
            deprecate_eof: false,
            sent_columns: FastMap::default(),
            last_err: None,
            logged: None,
            found_rows: false,
            local_files: false,
            write_timeout: None,
        }
    }

    fn push(&mut self, payload: &[u8]) {
        write_packet(&mut self.out, &mut self.seq, payload);
    }

    /// Counts rows written, for the query log's row threshold.
    fn note_rows(&mut self, n: u64) {
        if let Some(logged) = &mut self.logged {
            logged.returned += n;
        }
    }

    /// Writes the packet whose payload `encode` appends, framed in place
    /// (no payload buffer of its own, no copy); nothing when it fails.
    fn push_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        if let Err(e) = encode(&mut self.out) {
            self.out.truncate(start);
            return Err(e);
        }
        let len = self.out.len() - start - 4;
        if len >= codec::MAX_FRAME {
            // Over one frame: split into continuation frames.
            let payload = self.out.split_off(start + 4);
            self.out.truncate(start);
            self.push(&payload);
            return Ok(());
        }
        self.out[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.out[start + 3] = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.peak = self.peak.max(self.out.len());
            match self.write_timeout {
                None => self.writer.write_all(&self.out).await?,
                // Boxed: the timer is paid for only with the flag.
                Some(t) => Box::pin(tokio::time::timeout(t, self.writer.write_all(&self.out)))
                    .await
                    .map_err(|_| timed_out("--mysql_server_write_timeout"))??,
            }
            self.out.clear();
        }
        Ok(())
    }

    /// Whether `defs` are the definitions last sent for statement `id`;
    /// when they are not, they are kept as the last sent.
    fn columns_known(&mut self, id: u32, defs: &[impl AsRef<[u8]>]) -> bool {
        let known = self.sent_columns.entry(id).or_default();
        let mut at = 0;
        let same = defs.iter().all(|d| {
            let d = d.as_ref();
            let len = (d.len() as u32).to_le_bytes();
            let same = known.get(at..at + 4) == Some(&len[..])
                && known.get(at + 4..at + 4 + d.len()) == Some(d);
            at += 4 + d.len();
            same
        }) && at == known.len();
        if !same {
            known.clear();
            for d in defs {
                let d = d.as_ref();
                known.extend_from_slice(&(d.len() as u32).to_le_bytes());
                known.extend_from_slice(d);
            }
        }
        same
    }

    /// The packet that ends rows or definitions: an EOF, or its OK form.
    fn push_eof(&mut self, status: u16, warnings: u16) {
        if self.deprecate_eof {
            self.push(&packets::eof_ok(status, warnings));
        } else {
            self.push(&packets::eof(status, warnings));
        }
    }

    /// The EOF after column definitions, which CLIENT_DEPRECATE_EOF drops.
    fn push_defs_end(&mut self, status: u16) {
        if !self.deprecate_eof {
            self.push(&packets::eof(status, 0));
        }
    }

    fn push_err(&mut self, e: &MysqlError) {
        self.last_err = Some(e.vitess_code);
        if let Some(logged) = &mut self.logged {
            logged.error = Some(e.message.clone());
        }
        self.push(&packets::err(e));
    }
}

enum Pending {
    Ok(QueryDone),
    Eof(u16),
}

/// Encodes results as they stream in; the terminator of each result waits
/// until it is known whether another result follows (MORE_RESULTS flag).
struct ResultWriter<'w> {
    wire: &'w mut Wire,
    binary: bool,
    /// The prepared statement whose execution this is, until its first
    /// result set's columns are written: those may go unsent when its
    /// client already has them ([`EXT_CACHE_METADATA`]).
    stmt: Option<u32>,
    cols: Vec<Column>,
    pending: Option<Pending>,
    status: u16,
    /// Rows the statement being answered may still send, under the
    /// session's `sql_select_limit` (None: no cap).
    cap: Option<u64>,
}

impl<'w> ResultWriter<'w> {
    fn new(wire: &'w mut Wire, binary: bool, status: StatusFlags) -> Self {
        ResultWriter {
            wire,
            binary,
            stmt: None,
            cols: Vec::new(),
            pending: None,
            status: status.bits(),
            cap: None,
        }
    }

    /// Whether the next row goes out under [`Self::cap`] (counting it).
    fn admit(&mut self) -> bool {
        match &mut self.cap {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    fn write_pending(&mut self, more: bool) {
        let status = if more {
            self.status | StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits()
        } else {
            self.status
        };
        match self.pending.take() {
            Some(Pending::Ok(d)) => {
                if let Some(logged) = &mut self.wire.logged {
                    logged.rows += d.affected_rows;
                }
                self.wire.push(&packets::ok(
                    d.affected_rows,
                    d.last_insert_id,
                    status,
                    d.warnings,
                    &d.info,
                ))
            }
            Some(Pending::Eof(w)) => self.wire.push_eof(status, w),
            None => {}
        }
    }

    /// Starts a result set: the column count, each definition, the EOF;
    /// with [`EXT_CACHE_METADATA`], the count says whether definitions
    /// follow, and an execution whose client has them sends none.
    fn column_defs<D: AsRef<[u8]>>(&mut self, defs: &[D]) {
        self.write_pending(true);
        let count = defs.len() as u64;
        let cache = self.wire.cache_metadata;
        let send = match self.stmt.take() {
            Some(id) if cache => !self.wire.columns_known(id, defs),
            _ => true,
        };
        let _ = self.wire.push_with(|out| {
            packets::put_lenenc_int(out, count);
            if cache {
                out.push(u8::from(send));
            }
            Ok(())
        });
        if send {
            for d in defs {
                self.wire.push(d.as_ref());
            }
        }
        self.wire.push_defs_end(self.status);
    }

    /// What ROW_COUNT() says of the statement just written: its affected
    /// rows, or -1 after a result set.
    fn row_count(&self) -> i64 {
        match &self.pending {
            Some(Pending::Ok(d)) => i64::try_from(d.affected_rows).unwrap_or(i64::MAX),
            _ => -1,
        }
    }

    fn error(&mut self, e: &Error) {
        self.write_pending(true);
        self.wire.push_err(&e.to_mysql());
    }

    fn finish(&mut self, status: StatusFlags) {
        self.status = status.bits();
        self.write_pending(false);
    }
}

impl RowSink for ResultWriter<'_> {
    fn columns(&mut self, cols: &[Column]) -> Result<(), Error> {
        let defs: Vec<Vec<u8>> = cols.iter().map(packets::column_def).collect();
        self.column_defs(&defs);
        self.cols.clear();
        self.cols.extend_from_slice(cols);
        Ok(())
    }

    fn row(&mut self, values: &[Value]) -> Result<(), Error> {
        if !self.admit() {
            return Ok(());
        }
        self.wire.note_rows(1);
        let cols = &self.cols;
        if self.binary {
            self.wire
                .push_with(|out| packets::binary_row(out, cols, values))
        } else {
            self.wire.push_with(|out| {
                packets::text_row(out, values);
                Ok(())
            })
        }
    }

    fn text_row(&mut self, row: TextRow<'_>) -> Result<(), Error> {
        if !self.admit() {
            return Ok(());
        }
        self.wire.note_rows(1);
        // A row goes out as the shard encoded it when the client takes
        // that protocol.
        if !self.binary {
            match row.text_payload() {
                Some(p) => self.wire.push(p),
                None => {
                    let _ = self.wire.push_with(|out| {
                        row.write_text(out);
                        Ok(())
                    });
                }
            }
            return Ok(());
        }
        if let Some(p) = row.binary_payload() {
            self.wire.push(p);
            return Ok(());
        }
        let cols = &self.cols;
        self.wire
            .push_with(|out| packets::binary_text_row(out, cols, row))
    }

    fn end_rows(&mut self, warnings: u16) -> Result<(), Error> {
        self.pending = Some(Pending::Eof(warnings));
        Ok(())
    }

    fn ok(&mut self, mut done: QueryDone) -> Result<(), Error> {
        if self.wire.found_rows {
            done.affected_rows = done.rows_matched().unwrap_or(done.affected_rows);
        }
        self.write_pending(true);
        self.pending = Some(Pending::Ok(done));
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.wire.out.len() >= FLUSH_AT {
            self.wire.flush().await?;
        }
        Ok(())
    }

    fn limit_rows(&mut self, cap: Option<u64>) {
        self.cap = cap;
    }

    fn packets(&mut self, binary: bool) -> Option<&mut dyn crate::engine::PacketSink> {
        // Capped rows are counted one at a time, through `text_row`.
        if self.binary == binary && self.cap.is_none() {
            Some(self)
        } else {
            None
        }
    }
}

impl crate::engine::PacketSink for ResultWriter<'_> {
    fn column_packets(&mut self, defs: &[BytesMut]) {
        self.column_defs(defs);
        // Rows arrive encoded; no column types needed to write them.
        self.cols.clear();
    }

    fn row_packet(&mut self, payload: &[u8]) {
        self.wire.note_rows(1);
        self.wire.push(payload);
    }

    fn framed_rows(&mut self, framed: &[u8]) {
        let out = &mut self.wire.out;
        let mut at = out.len();
        out.extend_from_slice(framed);
        // Renumber: the client's sequence continues from this reply's (the
        // tablet's numbers match it for a forwarded result; this keeps them
        // right should anything have been written in between).
        let mut rows = 0;
        while let Some(len) = codec::whole_frame(&out[at..]) {
            out[at + 3] = self.wire.seq;
            self.wire.seq = self.wire.seq.wrapping_add(1);
            at += 4 + len;
            rows += 1;
        }
        self.wire.note_rows(rows);
    }
}

/// Serves one TCP client connection until it quits or fails.
pub async fn handle(
    mut stream: tokio::net::TcpStream,
    mut peer: std::net::SocketAddr,
    ctx: Arc<ServerCtx>,
) {
    let _ = stream.set_nodelay(true);
    if ctx.proxy_protocol {
        match Box::pin(proxy::read_header(&mut stream, proxy::HEADER_WAIT)).await {
            Ok(Some(client)) => peer = client,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, %peer, "connection closed: no PROXY protocol header");
                return;
            }
        }
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (r, w) = stream.into_split();
    serve_client(
        Box::new(r),
        Box::new(w),
        peer.ip().to_string(),
        Transport::Tcp(fd),
        ctx,
    )
    .await
}

/// Serves one Unix-socket client connection.
pub async fn handle_unix(stream: tokio::net::UnixStream, ctx: Arc<ServerCtx>) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (r, w) = stream.into_split();
    serve_client(
        Box::new(r),
        Box::new(w),
        "localhost".into(),
        Transport::Unix(fd),
        ctx,
    )
    .await
}

/// What carries a client connection, with its socket (which `KILL
/// CONNECTION` shuts down).
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// TCP: offered TLS when the server has a certificate, and refused
    /// without it under `--mysql_server_require_secure_transport`.
    Tcp(std::os::fd::RawFd),
    /// A Unix socket: local, so secure without TLS (as MySQL counts it).
    Unix(std::os::fd::RawFd),
}

impl Transport {
    fn fd(self) -> std::os::fd::RawFd {
        match self {
            Transport::Tcp(fd) | Transport::Unix(fd) => fd,
        }
    }
}

/// Serves one client connection, whatever carries it.
pub async fn serve_client(
    r: ClientRead,
    w: ClientWrite,
    peer: String,
    transport: Transport,
    ctx: Arc<ServerCtx>,
) {
    // Small initial buffers: idle connections should cost little memory.
    let mut reader = FramedRead::with_capacity(r, PacketCodec::new(ctx.max_packet), 512);
    let mut wire = Wire::new(w);
    wire.write_timeout = ctx.write_timeout;
    let mut session = Session::default();
    let conn_id = ctx.next_connection_id();
    let greeted = Box::pin(handshake(
        &mut reader,
        &mut wire,
        &ctx,
        &mut session,
        &peer,
        conn_id,
        transport,
    ));
    // `--mysql_server_read_timeout` bounds a client's silence in the
    // handshake too.
    let greeted = match ctx.read_timeout {
        None => greeted.await,
        Some(t) => tokio::time::timeout(t, greeted).await.unwrap_or(Ok(false)),
    };
    match greeted {
        Ok(true) => {
            // Listed once logged in, forgotten before the socket closes.
            session.shards.control =
                Some(ctx.sessions.register(&ctx, conn_id, Some(transport.fd())));
            let served = command_loop(&mut reader, &mut wire, &ctx, &mut session, &peer).await;
            ctx.sessions.deregister(conn_id);
            if let Err(e) = served {
                if !e.is_disconnect() {
                    tracing::warn!(error = %e, "client connection ended with an error");
                }
            }
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "handshake failed"),
    }
    let _ = wire.flush().await;
    Box::pin(session.close(&ctx)).await;
}

/// The error a client connection ends with when it stalls past one of
/// vtgate's connection timeouts (quiet: the client went away, in effect).
fn timed_out(flag: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("client stalled past {flag}"),
    )
}

async fn read(reader: &mut Reader) -> Result<Option<Packet>, Error> {
    match reader.next().await {
        Some(Ok(p)) => Ok(Some(p)),
        Some(Err(e)) => Err(Error::Io(e)),
        None => Ok(None),
    }
}

fn salt() -> [u8; 20] {
    let mut s = [0u8; 20];
    let mut rng = rand::thread_rng();
    for b in &mut s {
        // Printable, never NUL: some clients treat the scramble as a C string.
        *b = rng.gen_range(0x21..0x7f);
    }
    s
}

/// Runs the handshake; Ok(true) when the client is authenticated.
async fn handshake(
    reader: &mut Reader,
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    peer: &str,
    conn_id: u32,
    transport: Transport,
) -> Result<bool, Error> {
    let salt = salt();
    // TLS is offered on TCP when the server has a certificate.
    let tls = ctx
        .tls
        .as_deref()
        .filter(|_| matches!(transport, Transport::Tcp(_)));
    let mut capabilities = server_capabilities();
    if tls.is_some() {
        capabilities |= CapabilityFlags::CLIENT_SSL;
    }
    // The second scramble part is sent NUL-terminated (13 bytes).
    let mut scramble_2 = salt[8..].to_vec();
    scramble_2.push(0);
    let hs = HandshakePacket::new(
        10,
        ctx.server_version.as_bytes(),
        conn_id,
        salt[..8].try_into().unwrap_or([0; 8]),
        Some(&scramble_2[..]),
        capabilities,
        45,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(&b"mysql_native_password"[..]),
    );
    let mut payload = Vec::with_capacity(128);
    hs.serialize(&mut payload);
    // The extended capabilities, in filler the greeting leaves zero.
    put_greeting_ext_caps(&mut payload, ctx.server_version.len(), EXT_CACHE_METADATA);
    wire.seq = 0;
    wire.push(&payload);
    wire.flush().await?;

    let Some(mut pkt) = read(reader).await? else {
        return Ok(false);
    };
    // The common name of the client's certificate, for `clientcert`.
    let mut cert_name = None;
    if let Some(tls) = tls {
        if ssl_request(&pkt.payload) {
            // The rest of the handshake, and everything after it, is
            // encrypted; a client whose TLS handshake fails is gone.
            match start_tls(reader, wire, tls, ctx.max_packet).await {
                Ok(name) => cert_name = name,
                Err(e) => {
                    tracing::debug!(error = %e, peer, "TLS handshake failed");
                    return Ok(false);
                }
            }
            let Some(p) = read(reader).await? else {
                return Ok(false);
            };
            pkt = p;
        } else if tls.require {
            tls.stats.refused_plain.fetch_add(1, Ordering::Relaxed);
            wire.seq = pkt.seq.wrapping_add(1);
            wire.push_err(&Error::InsecureTransport.to_mysql());
            return Ok(false);
        }
    }
    wire.seq = pkt.seq.wrapping_add(1);
    let resp = match HandshakeResponse::deserialize((), &mut ParseBuf(&pkt.payload)) {
        Ok(r) => r,
        Err(e) => {
            wire.push_err(&Error::Malformed(format!("handshake response: {e}")).to_mysql());
            return Ok(false);
        }
    };
    wire.cache_metadata =
        response_ext_caps(&pkt.payload).is_some_and(|ext| ext & EXT_CACHE_METADATA != 0);
    wire.deprecate_eof = resp
        .capabilities()
        .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    wire.found_rows = resp
        .capabilities()
        .contains(CapabilityFlags::CLIENT_FOUND_ROWS);
    wire.local_files = resp
        .capabilities()
        .contains(CapabilityFlags::CLIENT_LOCAL_FILES);
    let user = String::from_utf8_lossy(resp.user()).into_owned();
    let mut response = resp.scramble_buf().to_vec();
    let native = matches!(
        resp.auth_plugin(),
        None | Some(AuthPlugin::MysqlNativePassword)
    );
    let users = ctx.auth.load();
    if !native && matches!(**users, auth::Auth::Static(_)) {
        // Ask the client to answer in mysql_native_password instead.
        let Some(answer) = ask_native_password(reader, wire, &salt).await? else {
            return Ok(false);
        };
        response = answer;
    }
    if !users.verify(&user, &salt, &response, cert_name.as_deref()) {
        let e = Error::AccessDenied {
            user,
            host: peer.to_string(),
            using_password: !response.is_empty(),
        };
        wire.push_err(&e.to_mysql());
        return Ok(false);
    }
    let db = resp.db_name().unwrap_or_default();
    if let Err(e) = log_in(ctx, session, user, resp.collation(), db) {
        wire.push_err(&e.to_mysql());
        return Ok(false);
    }
    wire.push(&packets::ok(0, 0, session.status().bits(), 0, ""));
    wire.flush().await?;
    Ok(true)
}

/// Starts the session as `user` once a login succeeded (the handshake's
/// or COM_CHANGE_USER's): the flags' defaults, the character set the
/// client asked for (`collation`) and its database (empty: none).
fn log_in(
    ctx: &ServerCtx,
    session: &mut Session,
    user: String,
    collation: u8,
    db: &[u8],
) -> Result<(), Error> {
    session.user = user;
    // A session that names no database reads where the flag says too.
    session.read_type = Session::default_read_type(ctx, "");
    session.take_server_defaults(ctx);
    // A setting like any other: the session's connections are brought to
    // it, and its reads share the connections that carry it.
    if let Some(charset) = charset_setting(collation) {
        session.shards.add_setting(charset);
    }
    if !db.is_empty() {
        session.use_target(ctx, &String::from_utf8_lossy(db))?;
    }
    Ok(())
}

/// Whether a client's first answer is an SSL request: CLIENT_SSL among its
/// capabilities, sent (without user or password) before a TLS handshake.
fn ssl_request(payload: &[u8]) -> bool {
    payload.get(..4).is_some_and(|caps| {
        let caps = u32::from_le_bytes([caps[0], caps[1], caps[2], caps[3]]);
        CapabilityFlags::from_bits_truncate(caps).contains(CapabilityFlags::CLIENT_SSL)
    })
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Turns the client connection into a TLS session: the read side and
/// write side are taken back from the packet reader and the wire, joined,
/// handed to TLS, and split again. Bytes of the TLS handshake that the
/// reader already holds (a client sends its hello right behind the SSL
/// request) are read first. Returns the common name of the certificate
/// the client presented, if any.
async fn start_tls(
    reader: &mut Reader,
    wire: &mut Wire,
    tls: &tls::Tls,
    max_packet: usize,
) -> std::io::Result<Option<String>> {
    let idle: ClientRead = Box::new(tokio::io::empty());
    let framed = std::mem::replace(reader, FramedRead::new(idle, PacketCodec::new(max_packet)));
    let parts = framed.into_parts();
    let early = std::io::Cursor::new(parts.read_buf.to_vec());
    let w = std::mem::replace(&mut wire.writer, Box::new(tokio::io::sink()));
    let io = tokio::io::join(early.chain(parts.io), w);
    let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(io))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let cert_name = tls::Tls::peer_common_name(&stream);
    let (r, w) = tokio::io::split(stream);
    *reader = FramedRead::with_capacity(Box::new(r), parts.codec, 512);
    wire.writer = Box::new(w);
    Ok(cert_name)
}

/// Backend pools speak utf8mb4; a client that asked for another character
/// set gets it as a session setting.
fn charset_setting(collation: u8) -> Option<String> {
    let cs = match collation {
        45 | 46 | 224..=247 | 255 | 0 => return None,
        8 | 47..=48 | 5 | 15 | 31 | 94 => "latin1",
        33 | 83 | 192..=215 => "utf8mb3",
        63 => "binary",
        11 | 65 => "ascii",
        _ => return None,
    };
    Some(format!("SET NAMES {cs}"))
}

/// COM_STATISTICS's answer: the gate's uptime, logged-in clients and
/// commands since start, as MariaDB words its own.
fn statistics(ctx: &ServerCtx) -> String {
    let up = ctx.started.elapsed().as_secs();
    let questions: u64 = ctx.api.series().iter().map(|c| c.count()).sum();
    format!(
        "Uptime: {up}  Threads: {}  Questions: {questions}  Slow queries: 0  Opens: 0  Open tables: 0  Queries per second avg: {:.3}",
        ctx.sessions.open(),
        questions as f64 / up.max(1) as f64
    )
}

mod cmd {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// The most a client connection's future may take in a test build
/// (see the test `a_client_connections_task_stays_small`).
#[cfg(test)]
const TASK_BUDGET: usize = 7 * 1024;

/// Reads and answers commands until the client quits.
///
/// This future is most of a client connection's task, and it is as large
/// as the deepest state a statement reaches. The statement path's rare
/// branches (opening a tablet connection, replaying settings, the driver's
/// fallback, scatters, writes) box their futures where they start, so an
/// idle connection costs about 3.4 KiB and the common path allocates
/// nothing for it; boxing each command's future instead would cost about
/// 1,000 instructions per statement (the whole future is copied into the
/// box).
async fn command_loop(
    reader: &mut Reader,
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    peer: &str,
) -> Result<(), Error> {
    // The last command was large: its memory is given back once it is done.
    let mut trim_due = false;
    let mut stats = crate::stats::Recorder::default();
    loop {
        if std::mem::take(&mut trim_due) {
            ctx.heap.after_large_command();
        }
        // Pipelined commands already sitting in the read buffer are answered
        // before the socket is flushed.
        if reader.read_buffer().len() < 4 {
            wire.flush().await?;
            // A connection keeps no large result's buffer once its
            // commands need small ones again (thousands of pooled client
            // connections each holding 64 KiB add up); one whose results
            // stay large keeps it rather than grow it again every time.
            if wire.out.capacity() > IDLE_BUFFER_MAX && wire.peak <= IDLE_BUFFER_MAX {
                wire.out = Vec::new();
            }
            wire.peak = 0;
            let rb = reader.read_buffer_mut();
            if rb.is_empty() && rb.capacity() > IDLE_BUFFER_MAX {
                *rb = BytesMut::with_capacity(512);
            }
        }
        let next = match ctx.read_timeout {
            None => read(reader).await,
            // Boxed: the timer is paid for only with the flag.
            Some(t) => Box::pin(tokio::time::timeout(t, read(reader)))
                .await
                .unwrap_or_else(|_| Err(Error::Io(timed_out("--mysql_server_read_timeout")))),
        };
        let Some(pkt) = next? else {
            return Ok(());
        };
        crate::spin::note_command();
        trim_due = pkt.payload.len() > crate::heap::LARGE_COMMAND;
        wire.seq = pkt.seq.wrapping_add(1);
        let Some((&command, body)) = pkt.payload.split_first() else {
            wire.push_err(&Error::Malformed("empty command packet".into()).to_mysql());
            continue;
        };
        let ok_status = |s: &Session| packets::ok(0, 0, s.status().bits(), 0, "");
        // The statements vtgate counts as API calls are timed (see
        // crate::stats); others are not.
        let op = match command {
            cmd::QUERY | cmd::STMT_EXECUTE => Some(crate::stats::Operation::Execute),
            cmd::STMT_PREPARE => Some(crate::stats::Operation::Prepare),
            _ => None,
        };
        let started = op.map(|_| {
            let t = &session.target;
            stats.aim(&ctx.api, t.keyspace.as_deref(), t.tablet_type);
            wire.last_err = None;
            std::time::Instant::now()
        });
        // What the query log records of this command, when one is kept.
        let logged = ctx.query_log.as_ref().zip(op).map(|(log, op)| {
            wire.logged = Some(Logged::default());
            let sql = match command {
                cmd::STMT_EXECUTE => body
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .and_then(|id| session.prepared.get(&id))
                    .map(|p| p.sql.clone())
                    .unwrap_or_default(),
                _ => String::from_utf8_lossy(body).into_owned(),
            };
            (log, op, sql, std::time::SystemTime::now())
        });
        match command {
            cmd::QUIT => return Ok(()),
            // A pool pings before it lends a connection: while the server
            // drains, the ping fails and the pool opens one elsewhere.
            cmd::PING if ctx.draining.load(Ordering::Relaxed) => {
                wire.push_err(&Error::ShuttingDown.to_mysql())
            }
            cmd::PING => wire.push(&ok_status(session)),
            // `mysqladmin status`: the gate's own figures, in MariaDB's
            // words (a string packet, not an OK).
            cmd::STATISTICS => wire.push(statistics(ctx).as_bytes()),
            cmd::INIT_DB => {
                let db = String::from_utf8_lossy(body).into_owned();
                match session.use_target(ctx, &db) {
                    Ok(()) => wire.push(&ok_status(session)),
                    Err(e) => wire.push_err(&e.to_mysql()),
                }
            }
            cmd::QUERY => {
                let sql = crate::sql::raw::text_of(body).into_owned();
                match crate::sql::load::parse(&sql) {
                    None => run_query(wire, ctx, session, &sql).await?,
                    Some(load) => {
                        Box::pin(infile::load_data(reader, wire, ctx, session, &sql, load)).await?
                    }
                }
            }
            cmd::FIELD_LIST => Box::pin(field_list(wire, ctx, session, body)).await?,
            cmd::STMT_PREPARE => {
                let sql = crate::sql::raw::text_of(body).into_owned();
                let status = session.status();
                match Box::pin(session.prepare(ctx, &sql)).await {
                    Ok((id, st)) => write_prepare_ok(wire, id, &st.params, &st.columns, status),
                    Err(e) if e.is_disconnect() => return Err(e),
                    Err(e) => wire.push_err(&e.to_mysql()),
                }
            }
            cmd::STMT_EXECUTE => {
                if let Err(e) = execute_stmt(wire, ctx, session, body).await {
                    if e.is_disconnect() {
                        return Err(e);
                    }
                    wire.push_err(&e.to_mysql());
                }
            }
            cmd::STMT_SEND_LONG_DATA => {
                // No response, even on error, as in MySQL.
                if body.len() >= 6 {
                    let id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    let param = u16::from_le_bytes([body[4], body[5]]);
                    if let Some(st) = session.prepared.get_mut(&id) {
                        st.long_data
                            .entry(param)
                            .or_default()
                            .extend_from_slice(&body[6..]);
                    }
                }
            }
            cmd::STMT_CLOSE => {
                if body.len() >= 4 {
                    let id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    session.prepared.remove(&id);
                    wire.sent_columns.remove(&id);
                }
            }
            cmd::STMT_RESET => {
                let id = body
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                match session.prepared.get_mut(&id) {
                    Some(st) => {
                        st.long_data.clear();
                        wire.push(&ok_status(session));
                    }
                    None => wire.push_err(
                        &Error::UnknownStmt(id.to_string(), "mysqld_stmt_reset").to_mysql(),
                    ),
                }
            }
            cmd::SET_OPTION => wire.push_eof(session.status().bits(), 0),
            cmd::PROCESS_KILL => {
                // The old command form of `KILL CONNECTION id`.
                let id = body
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                match Box::pin(session.kill(ctx, u64::from(id), true)).await {
                    Ok(()) => wire.push(&ok_status(session)),
                    Err(e) => wire.push_err(&e.to_mysql()),
                }
            }
            cmd::RESET_CONNECTION => {
                Box::pin(reset_session(wire, ctx, session)).await;
                wire.push(&ok_status(session));
            }
            cmd::CHANGE_USER => {
                if !Box::pin(change_user(reader, wire, ctx, session, peer, body)).await? {
                    return Ok(());
                }
            }
            other => wire.push_err(&Error::UnknownCommand(other).to_mysql()),
        }
        if let (Some(op), Some(t0)) = (op, started) {
            stats.record(&ctx.api, op, t0.elapsed(), wire.last_err);
        }
        if let (Some((log, op, sql, start)), Some(answer)) = (logged, wire.logged.take()) {
            log.record(&crate::querylog::Entry {
                method: match op {
                    crate::stats::Operation::Prepare => "Prepare",
                    _ => "Execute",
                },
                remote: peer,
                user: &session.user,
                start,
                elapsed: start.elapsed().unwrap_or_default(),
                sql: &sql,
                bind_vars: &answer.binds,
                rows_affected: answer.rows,
                rows_returned: answer.returned,
                error: answer.error.as_deref(),
            });
        }
    }
}

/// Ends what a session holds (its transactions rolled back, reserved
/// connections given back, prepared statements, variables and settings
/// dropped) and starts it afresh as the same user on the same target, as
/// COM_RESET_CONNECTION does on MySQL (and before COM_CHANGE_USER).
async fn reset_session(wire: &mut Wire, ctx: &ServerCtx, session: &mut Session) {
    session.close(ctx).await;
    let target = session.target.clone();
    let control = session.shards.control.take();
    let user = std::mem::take(&mut session.user);
    let read_type = session.read_type;
    *session = Session::default();
    session.target = target;
    session.user = user;
    session.read_type = read_type;
    session.shards.control = control;
    session.take_server_defaults(ctx);
    wire.sent_columns.clear();
}

/// COM_CHANGE_USER, which connection pools send to hand a connection to
/// another user or to clean it (vtgate answers "command handling not
/// implemented yet"). As on MySQL, the session is reset first, then the
/// user is authenticated: with `static` users the client is asked for a
/// new scramble's answer (the gate keeps no copy of the greeting's);
/// `clientcert` lets the connection stay only with its certificate's user.
/// The database and character set the packet names are taken as at login.
/// Ok(false) when the client was refused and is to be disconnected, as
/// MySQL disconnects it.
async fn change_user(
    reader: &mut Reader,
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    peer: &str,
    body: &[u8],
) -> Result<bool, Error> {
    let Some(req) = packets::change_user(body) else {
        wire.push_err(&Error::Malformed("COM_CHANGE_USER packet".into()).to_mysql());
        return Ok(true);
    };
    let user = String::from_utf8_lossy(req.user).into_owned();
    let native = req.plugin.is_none_or(|p| p == b"mysql_native_password");
    let mut response = req.auth.to_vec();
    reset_session(wire, ctx, session).await;
    let users = ctx.auth.load();
    let admitted = match &**users {
        auth::Auth::None => true,
        auth::Auth::ClientCert => user == session.user,
        auth::Auth::Static(_) => {
            let salt = salt();
            let Some(answer) = ask_native_password(reader, wire, &salt).await? else {
                return Ok(false);
            };
            response = answer;
            users.verify(&user, &salt, &response, None)
        }
    };
    if !admitted {
        let e = Error::AccessDenied {
            user,
            host: peer.to_string(),
            using_password: !response.is_empty() || !native,
        };
        wire.push_err(&e.to_mysql());
        return Ok(false);
    }
    session.target = Default::default();
    let collation = req.collation.map_or(0, |c| c as u8);
    if let Err(e) = log_in(ctx, session, user, collation, req.db) {
        wire.push_err(&e.to_mysql());
        return Ok(false);
    }
    wire.push(&packets::ok(0, 0, session.status().bits(), 0, ""));
    Ok(true)
}

/// Asks the client to answer `salt` in mysql_native_password (an auth
/// switch request) and reads its answer; None when it hung up.
async fn ask_native_password(
    reader: &mut Reader,
    wire: &mut Wire,
    salt: &[u8; 20],
) -> Result<Option<Vec<u8>>, Error> {
    let mut data = salt.to_vec();
    data.push(0);
    let mut p = Vec::new();
    AuthSwitchRequest::new(&b"mysql_native_password"[..], data).serialize(&mut p);
    wire.push(&p);
    wire.flush().await?;
    let Some(pkt) = read(reader).await? else {
        return Ok(None);
    };
    wire.seq = pkt.seq.wrapping_add(1);
    Ok(Some(pkt.payload.to_vec()))
}

/// COM_QUERY: every statement of a multi-statement in order, each result
/// flagged MORE_RESULTS but the last; the first error ends the batch.
async fn run_query(
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    sql: &str,
) -> Result<(), Error> {
    // A statement inside an executable comment (`/*!40101 SET ... */;`,
    // as mysqlimport sends it) is a statement to split, not a comment.
    let opened = crate::sql::lexer::open_executable_comments(sql, &ctx.server_version);
    let sql = opened.as_deref().unwrap_or(sql);
    let stmts = crate::sql::lexer::split_statements_mode(sql, session.shards.no_backslash_escapes);
    if stmts.is_empty() {
        wire.push_err(&MysqlError::new(1065, "42000", "Query was empty".into()));
        return Ok(());
    }
    let mut rw = ResultWriter::new(wire, false, session.status());
    for stmt in stmts {
        rw.status = session.status().bits();
        if let Err(e) = session.execute(ctx, stmt, &mut rw).await {
            if e.is_disconnect() {
                return Err(e);
            }
            session.shards.row_count = -1;
            rw.error(&e);
            return Ok(());
        }
        session.shards.row_count = rw.row_count();
    }
    rw.finish(session.status());
    Ok(())
}

fn write_prepare_ok(
    wire: &mut Wire,
    id: u32,
    params: &[Column],
    cols: &[Column],
    status: StatusFlags,
) {
    let mut p = Vec::with_capacity(12);
    p.push(0x00);
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(cols.len() as u16).to_le_bytes());
    p.extend_from_slice(&(params.len() as u16).to_le_bytes());
    p.push(0);
    p.extend_from_slice(&0u16.to_le_bytes());
    wire.push(&p);
    for group in [params, cols] {
        if !group.is_empty() {
            for c in group {
                wire.push(&packets::column_def(c));
            }
            wire.push_defs_end(status.bits());
        }
    }
}

async fn execute_stmt(
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    body: &[u8],
) -> Result<(), Error> {
    if body.len() < 9 {
        return Err(Error::Malformed(
            "COM_STMT_EXECUTE: truncated header".into(),
        ));
    }
    let id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let st = session
        .prepared
        .get_mut(&id)
        .ok_or_else(|| Error::UnknownStmt(id.to_string(), "mysqld_stmt_execute"))?;
    let params = packets::parse_execute(
        &body[9..],
        st.params.len(),
        &mut st.bound_types,
        &mut st.long_data,
    )?;
    if let Some(logged) = &mut wire.logged {
        logged.binds = params.clone();
    }
    let mut rw = ResultWriter::new(wire, true, session.status());
    rw.stmt = Some(id);
    match session.execute_prepared(ctx, id, params, &mut rw).await {
        Ok(()) => {
            session.shards.row_count = rw.row_count();
            rw.finish(session.status());
            Ok(())
        }
        Err(e) if e.is_disconnect() => Err(e),
        Err(e) => {
            session.shards.row_count = -1;
            rw.error(&e);
            Ok(())
        }
    }
}

/// COM_FIELD_LIST (the mysql client's column completion): the table's
/// column definitions, each with the NULL default value the command adds.
async fn field_list(
    wire: &mut Wire,
    ctx: &ServerCtx,
    session: &mut Session,
    body: &[u8],
) -> Result<(), Error> {
    let table = body.split(|b| *b == 0).next().unwrap_or_default();
    let table = crate::sql::quote_ident(&String::from_utf8_lossy(table));
    let mut sink = crate::engine::ColumnsOnly::default();
    match session
        .execute(ctx, &format!("SELECT * FROM {table} LIMIT 0"), &mut sink)
        .await
    {
        Ok(()) => {
            for c in &sink.cols {
                let mut p = packets::column_def(c);
                p.push(0xFB);
                wire.push(&p);
            }
            wire.push_eof(session.status().bits(), 0);
        }
        Err(e) if e.is_disconnect() => return Err(e),
        Err(e) => wire.push_err(&e.to_mysql()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::Decoder;

    /// Every client connection's task is this one future, idle or not, and
    /// it is as large as the deepest state a statement can reach: rare,
    /// deep work must sit behind a `Box::pin` where it is awaited (10,000
    /// idle clients must fit in 100 MB). The bound is this build's size
    /// (5.5 KB, as the release build's) with some room; before session
    /// 47 it was 10.6 KB.
    #[tokio::test]
    async fn a_client_connections_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (stream, peer) = accepted.unwrap();
        let snapshot =
            crate::topo::Snapshot::build(&Default::default(), &Default::default(), 1).unwrap();
        let ctx = Arc::new(ServerCtx::new(
            Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)),
            crate::backend::BackendConfig::default(),
            auth::Auth::None,
            "5.5.5-10.11.0-MariaDB-shardgate".into(),
        ));
        let task = handle(stream, peer, ctx);
        let size = std::mem::size_of_val(&task);
        drop((task, client));
        assert!(size <= TASK_BUDGET, "a connection's future is {size} bytes");
    }

    /// What one end of a handshake writes into the filler, the other reads
    /// back (shardgate is the server to its clients and the client to its
    /// tablets); filler too short carries none.
    #[test]
    fn extended_capabilities_are_read_where_they_are_written() {
        let version = b"10.11.19-MariaDB";
        let mut greeting = vec![10u8];
        greeting.extend_from_slice(version);
        greeting.push(0);
        greeting.resize(greeting.len() + 60, 0);
        put_greeting_ext_caps(&mut greeting, version.len(), EXT_CACHE_METADATA | 1);
        assert_eq!(greeting_ext_caps(&greeting), Some(EXT_CACHE_METADATA | 1));
        assert_eq!(greeting_ext_caps(&greeting[..20]), None);
        let mut response = vec![0u8; 64];
        put_response_ext_caps(&mut response, EXT_CACHE_METADATA);
        assert_eq!(response_ext_caps(&response), Some(EXT_CACHE_METADATA));
        assert_eq!(
            &response[RESPONSE_EXT_CAPS_AT..RESPONSE_EXT_CAPS_AT + 4],
            &[16, 0, 0, 0]
        );
        assert_eq!(response_ext_caps(&response[..10]), None);
    }

    /// The payloads of the packets in `out`.
    fn frames(out: &[u8]) -> Vec<Vec<u8>> {
        let mut at = 0;
        let mut v = Vec::new();
        while let Some(len) = codec::whole_frame(&out[at..]) {
            v.push(out[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        v
    }

    /// With MARIADB_CLIENT_CACHE_METADATA, every column count says whether
    /// definitions follow; an execution sends none when its client last got
    /// the same ones for that statement, and sends them again when they
    /// changed. Without it, counts carry no flag and definitions always go.
    #[test]
    fn cached_column_definitions_are_not_sent_again() {
        let defs = |name: &str| vec![format!("def-{name}").into_bytes()];
        let mut wire = Wire::new(Box::new(tokio::io::sink()));
        wire.cache_metadata = true;
        let result = |wire: &mut Wire, stmt: Option<u32>, d: &[Vec<u8>]| {
            wire.out.clear();
            let mut rw = ResultWriter::new(wire, stmt.is_some(), StatusFlags::empty());
            rw.stmt = stmt;
            rw.column_defs(d);
            frames(&wire.out)
        };
        let first = result(&mut wire, Some(1), &defs("a"));
        assert_eq!(first[0], vec![1, 1]);
        assert_eq!(first[1], b"def-a".to_vec());
        assert_eq!(first.len(), 3);
        let again = result(&mut wire, Some(1), &defs("a"));
        assert_eq!(again[0], vec![1, 0]);
        assert_eq!(again.len(), 2, "no definitions, only the EOF: {again:?}");
        assert_eq!(again[1][0], 0xFE);
        // Another statement, or changed columns, get them.
        assert_eq!(result(&mut wire, Some(2), &defs("a"))[0], vec![1, 1]);
        let changed = result(&mut wire, Some(1), &defs("b"));
        assert_eq!(
            (changed[0].clone(), changed[1].clone()),
            (vec![1, 1], b"def-b".to_vec())
        );
        assert_eq!(result(&mut wire, Some(1), &defs("b"))[0], vec![1, 0]);
        // A text result always has them.
        assert_eq!(result(&mut wire, None, &defs("b"))[0], vec![1, 1]);
        // A closed statement's memory goes with it.
        wire.sent_columns.remove(&1);
        assert_eq!(result(&mut wire, Some(1), &defs("b"))[0], vec![1, 1]);

        let mut plain = Wire::new(Box::new(tokio::io::sink()));
        for _ in 0..2 {
            let r = result(&mut plain, Some(1), &defs("a"));
            assert_eq!((r[0].clone(), r.len()), (vec![1], 3));
        }
    }

    /// Packets framed in place read back whole, at and over the 16 MB
    /// frame size; a failed encoding leaves nothing behind.
    #[test]
    fn packets_framed_in_place_read_back_whole() {
        let mut wire = Wire::new(Box::new(tokio::io::sink()));
        wire.seq = 7;
        let sizes = [0, 1, 300, codec::MAX_FRAME, codec::MAX_FRAME + 10];
        for &n in &sizes {
            wire.push_with(|out| {
                out.resize(out.len() + n, b'x');
                Ok(())
            })
            .unwrap();
        }
        let before = wire.out.len();
        let failed = wire.push_with(|out| {
            out.extend_from_slice(b"partial");
            Err(Error::Malformed("no".into()))
        });
        assert!(failed.is_err());
        assert_eq!(wire.out.len(), before);
        let mut buf = BytesMut::from(&wire.out[..]);
        let mut c = PacketCodec::new(64 << 20);
        for &n in &sizes {
            let p = c.decode(&mut buf).unwrap().unwrap();
            assert_eq!(p.payload.len(), n);
            assert!(p.payload.iter().all(|&b| b == b'x'));
        }
        assert!(buf.is_empty());
        // One number per frame: two packets of two frames each.
        assert_eq!(wire.seq, 7u8.wrapping_add(sizes.len() as u8 + 2));
    }
}
