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
    /// Which statements get a line, and in which form.
    options: Options,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

/// What the log keeps and how it writes it: vtgate's `--querylog-*` flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--querylog-format=json`: one JSON object per line, vtgate's keys.
    pub json: bool,
    /// `--querylog-filter-tag`: only statements whose text holds this.
    pub filter_tag: Option<String>,
    /// `--querylog-row-threshold`: only statements that returned or
    /// changed at least this many rows (0: all).
    pub row_threshold: u64,
    /// `--querylog-mode=error`: only statements that failed.
    pub errors_only: bool,
}

impl Options {
    /// Whether a statement gets a line, as vtgate decides it: a filter tag
    /// decides alone; otherwise the row threshold, then the error mode.
    fn keeps(&self, e: &Entry<'_>) -> bool {
        if let Some(tag) = &self.filter_tag {
            return e.sql.contains(tag.as_str());
        }
        if e.rows_affected.max(e.rows_returned) < self.row_threshold {
            return false;
        }
        !self.errors_only || e.error.is_some()
    }
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
    /// A prepared statement's parameters; none for text.
    pub bind_vars: &'a [mysql_common::value::Value],
    /// Rows it changed (its OK packet's count).
    pub rows_affected: u64,
    /// Rows it returned.
    pub rows_returned: u64,
    /// Its error's message, if it failed.
    pub error: Option<&'a str>,
}

impl QueryLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path, options: Options) -> std::io::Result<QueryLog> {
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
            options,
            dropped: AtomicU64::new(0),
        })
    }

    /// Hands the statement's line to the writer, when the options keep it.
    pub fn record(&self, e: &Entry<'_>) {
        if !self.options.keeps(e) {
            return;
        }
        let line = if self.options.json {
            json_line(e)
        } else {
            line(e)
        };
        if self.tx.try_send(line).is_err() {
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
    let kind = statement_type(e.sql);
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
        bind_vars(e.bind_vars),
        e.rows_affected,
        go_quote(e.error.unwrap_or("")),
    );
    s
}

/// vtgate's JSON line (`--querylog-format=json`): the text line's fields
/// as one object, under vtgate's keys; durations in seconds, times in the
/// text line's form, bind variables as vtgate writes them to its log
/// (`{"v1": {"type": "INT64", "value": 1}}`, strings by length only).
fn json_line(e: &Entry<'_>) -> String {
    use serde_json::json;
    let secs = (e.elapsed.as_secs_f64() * 1e6).round() / 1e6;
    let binds: serde_json::Map<String, serde_json::Value> = e
        .bind_vars
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("v{}", i + 1), json_bind(v)))
        .collect();
    let mut s = json!({
        "Method": e.method,
        "RemoteAddr": e.remote,
        "Username": e.user,
        "ImmediateCaller": "",
        "Effective Caller": "",
        "Start": timestamp(e.start),
        "End": timestamp(e.start + e.elapsed),
        "TotalTime": secs,
        "PlanTime": 0.0,
        "ExecuteTime": secs,
        "CommitTime": 0.0,
        "StmtType": statement_type(e.sql),
        "SQL": e.sql,
        "BindVars": binds,
        "ShardQueries": 0,
        "RowsAffected": e.rows_affected,
        "Error": e.error.unwrap_or(""),
    })
    .to_string();
    s.push('\n');
    s
}

/// One bind variable as vtgate's JSON log writes it: its type, and its
/// value for numbers, its length for everything else.
fn json_bind(v: &mysql_common::value::Value) -> serde_json::Value {
    use mysql_common::value::Value;
    use serde_json::json;
    let (kind, value) = match v {
        Value::NULL => ("NULL_TYPE", serde_json::Value::Null),
        Value::Int(n) => ("INT64", json!(n)),
        Value::UInt(n) => ("UINT64", json!(n)),
        Value::Float(f) => ("FLOAT32", json!(f)),
        Value::Double(f) => ("FLOAT64", json!(f)),
        Value::Bytes(b) => ("VARBINARY", json!(format!("{} bytes", b.len()))),
        Value::Date(..) => ("DATETIME", json!("date")),
        Value::Time(..) => ("TIME", json!("time")),
    };
    json!({"type": kind, "value": value})
}

/// The statement's first keyword, upper-cased (vtgate's StmtType).
fn statement_type(sql: &str) -> String {
    sql.split_whitespace()
        .find(|w| !w.starts_with("/*"))
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// A prepared statement's parameters as the log shows them, in the way of
/// vtgate's map of bind variables: `v1:1 v2:'x'` (SQL literals, named by
/// position).
fn bind_vars(params: &[mysql_common::value::Value]) -> String {
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
    use mysql_common::value::Value;

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
            bind_vars: &[Value::Int(1), Value::Bytes(b"x".to_vec())],
            rows_affected: 3,
            rows_returned: 0,
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

    fn entry<'a>(sql: &'a str, binds: &'a [Value], affected: u64, returned: u64) -> Entry<'a> {
        Entry {
            method: "Execute",
            remote: "10.0.0.1",
            user: "app",
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::from_micros(1_250),
            sql,
            bind_vars: binds,
            rows_affected: affected,
            rows_returned: returned,
            error: None,
        }
    }

    #[test]
    fn a_json_line_has_vtgates_keys() {
        let binds = [
            Value::Int(-4),
            Value::Bytes(b"secret".to_vec()),
            Value::NULL,
        ];
        let l = json_line(&entry("insert into t values (?, ?, ?)", &binds, 1, 0));
        assert!(l.ends_with('\n') && !l.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["Method"], "Execute");
        assert_eq!(v["Effective Caller"], "");
        assert_eq!(v["Start"], "2023-11-14 22:13:20.000000");
        assert_eq!(v["TotalTime"], 0.00125);
        assert_eq!(v["StmtType"], "INSERT");
        assert_eq!(v["RowsAffected"], 1);
        assert_eq!(v["Error"], "");
        assert_eq!(
            v["BindVars"]["v1"],
            serde_json::json!({"type": "INT64", "value": -4})
        );
        assert_eq!(
            v["BindVars"]["v2"],
            serde_json::json!({"type": "VARBINARY", "value": "6 bytes"})
        );
        assert_eq!(v["BindVars"]["v3"]["type"], "NULL_TYPE");
    }

    #[test]
    fn the_filters_keep_what_vtgates_keep() {
        let none: [Value; 0] = [];
        let all = Options::default();
        let select = entry("select * from t /* report */", &none, 0, 40);
        let update = entry("update t set a = 1", &none, 2, 0);
        assert!(all.keeps(&select) && all.keeps(&update));
        let tagged = Options {
            filter_tag: Some("/* report */".into()),
            row_threshold: 1000,
            ..Options::default()
        };
        assert!(tagged.keeps(&select) && !tagged.keeps(&update));
        let rows = Options {
            row_threshold: 10,
            ..Options::default()
        };
        assert!(rows.keeps(&select) && !rows.keeps(&update));
        let errors = Options {
            errors_only: true,
            ..Options::default()
        };
        let mut failed = entry("select nope", &none, 0, 0);
        failed.error = Some("Unknown column");
        assert!(errors.keeps(&failed) && !errors.keeps(&select));
    }
}
