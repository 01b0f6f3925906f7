//! vtgate's query log to a file (`--log_queries_to_file`): one line per
//! statement a client ran, in vtgate's text form, so that what reads
//! vtgate's log reads this one.
//!
//! The statement path only formats a line and hands it over
//! ([`QueryLog::record`], no I/O, no lock); a thread of its own appends
//! the lines to the file and flushes whenever it has caught up. A line
//! that finds the hand-over queue full is dropped and counted rather
//! than slowing the statement down.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{Duration, SystemTime};

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 16_384;

/// An open query log.
pub struct QueryLog {
    tx: SyncSender<String>,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

/// One statement, as the log records it.
pub struct Entry<'a> {
    /// vtgate's method name: `Execute` for a text or prepared statement's
    /// run, `Prepare` for a prepare.
    pub method: &'a str,
    /// The client's address.
    pub remote: &'a str,
    /// The user it logged in as.
    pub user: &'a str,
    /// When the statement began.
    pub start: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
    /// Its text (a prepared statement's, with its `?`).
    pub sql: &'a str,
    /// A prepared statement's parameters ([`bind_vars`]); empty for text.
    pub bind_vars: &'a str,
    /// Rows it changed (its OK packet's count).
    pub rows_affected: u64,
    /// Its error's message, if it failed.
    pub error: Option<&'a str>,
}

impl QueryLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<QueryLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("sg-querylog".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(QueryLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Hands the statement's line to the writer.
    pub fn record(&self, e: &Entry<'_>) {
        if self.tx.try_send(line(e)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// vtgate's text line: Method, RemoteAddr, Username, ImmediateCaller,
/// EffectiveCaller, Start, End, TotalTime, PlanTime, ExecuteTime,
/// CommitTime, StmtType, SQL, BindVars, ShardQueries, RowsAffected, Error,
/// tab-separated. The times the gate does not take apart (planning,
/// commit) and the shard query count read 0; a text statement's values
/// are in its SQL (`map[]`), a prepared one's in BindVars.
fn line(e: &Entry<'_>) -> String {
    let end = e.start + e.elapsed;
    let secs = e.elapsed.as_secs_f64();
    let kind = e
        .sql
        .split_whitespace()
        .find(|w| !w.starts_with("/*"))
        .unwrap_or("")
        .to_ascii_uppercase();
    let mut s = String::with_capacity(e.sql.len() + 160);
    let _ = writeln!(
        s,
        "{}\t{}\t{}\t''\t''\t{}\t{}\t{secs:.6}\t0.000000\t{secs:.6}\t0.000000\t{kind}\t{}\tmap[{}]\t0\t{}\t{}\t",
        e.method,
        e.remote,
        e.user,
        timestamp(e.start),
        timestamp(end),
        go_quote(e.sql),
        e.bind_vars,
        e.rows_affected,
        go_quote(e.error.unwrap_or("")),
    );
    s
}

/// A prepared statement's parameters as the log shows them, in the way of
/// vtgate's map of bind variables: `v1:1 v2:'x'` (SQL literals, named by
/// position).
pub fn bind_vars(params: &[mysql_common::value::Value]) -> String {
    let mut s = String::new();
    for (i, v) in params.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        // A tab in a string would split the line's fields.
        let text = crate::sql::literal(v, false).replace('\t', "\\t");
        let _ = write!(s, "v{}:{text}", i + 1);
    }
    s
}

/// `2006-01-02 15:04:05.000000` (UTC), vtgate's log time.
fn timestamp(t: SystemTime) -> String {
    let micros = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let day_time = crate::topo::rfc3339(t);
    format!("{} {}.{micros:06}", &day_time[..10], &day_time[11..19])
}

/// A string as Go's `%q` writes it: double-quoted, with `"` and `\`
/// escaped and control characters written out, so a line holds one
/// statement whatever its text.
fn go_quote(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\x{:02x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_vtgates_tab_separated_record() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let l = line(&Entry {
            method: "Execute",
            remote: "127.0.0.1:5000",
            user: "app",
            start,
            elapsed: Duration::from_micros(2_500),
            sql: "select \"a\"\tfrom t\n",
            bind_vars: "v1:1 v2:'x'",
            rows_affected: 3,
            error: Some("boom"),
        });
        let fields: Vec<&str> = l.trim_end_matches('\n').split('\t').collect();
        assert_eq!(fields.len(), 18, "{l}");
        assert_eq!(fields[0], "Execute");
        assert_eq!(fields[5], "2023-11-14 22:13:20.123456");
        assert_eq!(fields[6], "2023-11-14 22:13:20.125956");
        assert_eq!(fields[7], "0.002500");
        assert_eq!(fields[11], "SELECT");
        assert_eq!(fields[12], r#""select \"a\"\tfrom t\n""#);
        assert_eq!(fields[13], "map[v1:1 v2:'x']");
        assert_eq!((fields[15], fields[16], fields[17]), ("3", "\"boom\"", ""));
    }
}
