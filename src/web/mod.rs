//! The web port: `/metrics` for Prometheus, `/debug/health` for probes,
//! `/debug/status` for people and `/debug/vars` as JSON. A tiny HTTP/1.0
//! responder.
//!
//! Both `/debug/vars` and `/metrics` carry the same numbers under vtgate's
//! naming: a variable `FooBar` in the JSON is `vtgate_foo_bar` in the text
//! form, as vtgate's Prometheus exporter names its expvars.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::ServerCtx;

/// Binds the web port and serves it in the background.
pub async fn start(addr: SocketAddr, ctx: Arc<ServerCtx>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n =
                    match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = respond(path, &ctx);
                let head = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}

fn respond(path: &str, ctx: &ServerCtx) -> (&'static str, &'static str, String) {
    let snap = ctx.snapshot.load();
    match path {
        "/debug/health" if ctx.draining.load(Ordering::Relaxed) => (
            "503 Service Unavailable",
            "text/plain",
            "lameduck: shutting down\n".into(),
        ),
        "/debug/health" => ("200 OK", "text/plain", "ok\n".into()),
        "/debug/vars" => {
            let mut v = serde_json::Map::new();
            v.insert(
                "Keyspaces".into(),
                serde_json::json!(snap.keyspaces.keys().collect::<Vec<_>>()),
            );
            for (name, _, value) in scalars(ctx) {
                v.insert(name.into(), value.into());
            }
            let serving: serde_json::Map<String, serde_json::Value> = ctx
                .gateway
                .health
                .serving_counts(&snap)
                .into_iter()
                .map(|((ks, shard, tt), n)| (format!("{ks}.{shard}.{tt}"), n.into()))
                .collect();
            v.insert("HealthcheckConnections".into(), serving.into());
            for (name, _, per_shard) in buffer_counters(ctx) {
                let m: serde_json::Map<String, serde_json::Value> =
                    per_shard.into_iter().map(|(k, n)| (k, n.into())).collect();
                v.insert(name.into(), m.into());
            }
            let (api, errors) = ctx.api.vars();
            v.insert("VtgateApi".into(), api);
            v.insert("VtgateApiErrorCounts".into(), errors);
            (
                "200 OK",
                "application/json",
                serde_json::Value::Object(v).to_string(),
            )
        }
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", prometheus(ctx)),
        "/debug/status" | "/" => {
            let mut s =
                String::from("<html><head><title>shardgate</title></head><body><h1>shardgate</h1>");
            let _ = write!(s, "<p>topology version {}</p><table border=1><tr><th>keyspace</th><th>shard</th><th>tablet</th><th>type</th><th>address</th><th>health</th></tr>", snap.version);
            for t in snap.tablets.values() {
                let health = match ctx.gateway.health.status(&t.alias) {
                    None => "not checked".to_string(),
                    Some(h) => {
                        let lag = h.lag.map(|l| format!(", {l} s behind")).unwrap_or_default();
                        let why = h.reason.map(|r| format!(": {r}")).unwrap_or_default();
                        format!("{:?}{lag}{why}", h.fitness)
                    }
                };
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td></tr>",
                    t.keyspace,
                    t.shard,
                    t.alias,
                    t.tablet_type.as_str(),
                    t.hostname,
                    t.port,
                    html(&health)
                );
            }
            let series = ctx.api.series();
            let up = ctx.started.elapsed().as_secs_f64();
            let total: u64 = series.iter().map(|c| c.count()).sum();
            let _ = write!(
                s,
                "</table><h2>commands since start</h2><p>up {up:.0} s: {total} commands, {:.1} per second</p><table border=1><tr><th>operation</th><th>keyspace</th><th>tablet type</th><th>count</th><th>per second</th><th>average ms</th></tr>",
                total as f64 / up.max(1e-3)
            );
            for c in series {
                let avg = c.nanos as f64 / c.count() as f64 / 1e6;
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{avg:.3}</td></tr>",
                    c.operation,
                    c.keyspace,
                    c.db_type,
                    c.count(),
                    c.count() as f64 / up.max(1e-3)
                );
            }
            s.push_str("</table><h2>errors since start</h2><table border=1><tr><th>operation</th><th>keyspace</th><th>tablet type</th><th>code</th><th>count</th></tr>");
            for e in ctx.api.errors() {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e.operation, e.keyspace, e.db_type, e.code, e.count
                );
            }
            s.push_str("</table></body></html>");
            ("200 OK", "text/html", s)
        }
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

/// Text made safe inside HTML (an error message may hold `<`).
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Whether a number only grows (a Prometheus counter) or goes both ways.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
}

/// The process's single-number variables: name, kind, value.
fn scalars(ctx: &ServerCtx) -> Vec<(&'static str, Kind, u64)> {
    use Kind::{Counter, Gauge};
    let snap = ctx.snapshot.load();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mux = &ctx.pools.mux_stats;
    // A TLS counter; 0 when clients are not offered TLS.
    let tls = |counter: fn(&crate::frontend::tls::TlsStats) -> &std::sync::atomic::AtomicU64| {
        ctx.tls.as_ref().map_or(0, |t| n(counter(&t.stats)))
    };
    vec![
        ("TopoVersion", Gauge, snap.version),
        ("TopoAccepted", Counter, n(&ctx.watch_stats.accepted)),
        ("TopoRejected", Counter, n(&ctx.watch_stats.rejected)),
        ("Tablets", Gauge, snap.tablets.len() as u64),
        ("SharedReadBatches", Counter, n(&mux.batches)),
        ("SharedReadExecutions", Counter, n(&mux.executions)),
        ("SharedReadStreamed", Counter, n(&mux.streamed)),
        ("SharedReadSolo", Counter, n(&mux.solo)),
        ("SharedReadSentBack", Counter, n(&mux.sent_back)),
        (
            "SessionDefaultsKept",
            Counter,
            n(&ctx.pools.defaults.served),
        ),
        ("TabletConnectionsOpen", Gauge, ctx.pools.lean_open() as u64),
        ("TabletConnectionWaits", Counter, n(&ctx.pools.budget_waits)),
        (
            "TabletConnectionTimeouts",
            Counter,
            n(&ctx.pools.budget_timeouts),
        ),
        (
            "TransactionPartsCommitted",
            Counter,
            n(&ctx.txn_stats.committed),
        ),
        (
            "TransactionPartsCommittedUnanswered",
            Counter,
            n(&ctx.txn_stats.committed_unanswered),
        ),
        ("CrossShardDeadlocks", Counter, n(&ctx.deadlocks.broken)),
        (
            "QueryLogDropped",
            Counter,
            ctx.query_log.as_ref().map_or(0, |l| n(&l.dropped)),
        ),
        ("TwopcCommitted", Counter, n(&ctx.twopc.stats.committed)),
        ("TwopcRolledBack", Counter, n(&ctx.twopc.stats.rolled_back)),
        (
            "TwopcLeftToResolver",
            Counter,
            n(&ctx.twopc.stats.left_to_resolver),
        ),
        (
            "TwopcResolvedParts",
            Counter,
            n(&ctx.twopc.stats.resolved_parts),
        ),
        ("TlsConnectionsAccepted", Counter, tls(|t| &t.accepted)),
        ("TlsHandshakesFailed", Counter, tls(|t| &t.failed)),
        (
            "InsecureConnectionsRefused",
            Counter,
            tls(|t| &t.refused_plain),
        ),
        ("TlsReloads", Counter, tls(|t| &t.reloads)),
        ("AuthReloads", Counter, n(&ctx.auth.reloads)),
        ("EventLoopBusyPolls", Counter, n(&ctx.busy_polls)),
        ("HeapTrims", Counter, n(&ctx.heap.trims)),
        // Tables whose column types schema tracking learned.
        (
            "SchemaTrackedTables",
            Gauge,
            snap.keyspaces
                .values()
                .map(|k| k.learned.len())
                .sum::<usize>() as u64,
        ),
    ]
}

/// The Prometheus text form of every variable.
fn prometheus(ctx: &ServerCtx) -> String {
    let mut out = String::new();
    for (name, kind, value) in scalars(ctx) {
        let metric = prometheus_name(name);
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = write!(out, "# TYPE {metric} {kind}\n{metric} {value}\n");
    }
    process_metrics(&mut out);
    out.push_str("# TYPE vtgate_healthcheck_connections gauge\n");
    let snap = ctx.snapshot.load();
    for ((ks, shard, tt), n) in ctx.gateway.health.serving_counts(&snap) {
        let _ = writeln!(
            out,
            "vtgate_healthcheck_connections{{keyspace=\"{ks}\",shard_name=\"{shard}\",tablet_type=\"{tt}\"}} {n}"
        );
    }
    for (name, kind, per_shard) in buffer_counters(ctx) {
        let metric = prometheus_name(name);
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (key, n) in per_shard {
            let (ks, shard) = key.split_once('.').unwrap_or((&key, ""));
            let _ = writeln!(
                out,
                "{metric}{{keyspace=\"{ks}\",shard_name=\"{shard}\"}} {n}"
            );
        }
    }
    ctx.api.prometheus(&mut out);
    out
}

/// The failover buffer's counters under vtgate's names, each per
/// `keyspace.shard` (shards that never buffered are absent).
type PerShard = Vec<(String, u64)>;

fn buffer_counters(ctx: &ServerCtx) -> Vec<(&'static str, &'static str, PerShard)> {
    let stats = ctx.gateway.buffer.stats();
    let each = |f: fn(&crate::gateway::buffer::ShardStats) -> u64| -> PerShard {
        stats.iter().map(|(k, s)| (k.clone(), f(s))).collect()
    };
    vec![
        ("BufferStarts", "counter", each(|s| s.starts)),
        ("BufferRequestsBuffered", "counter", each(|s| s.buffered)),
        ("BufferRequestsDrained", "counter", each(|s| s.drained)),
        ("BufferRequestsEvicted", "counter", each(|s| s.evicted)),
        ("BufferRequestsSkipped", "counter", each(|s| s.skipped)),
        (
            "BufferFailoverDurationSumMs",
            "counter",
            each(|s| s.failover_ms),
        ),
    ]
}

/// The standard `process_*` metrics Prometheus client libraries export
/// (vtgate's among them), so a dashboard's CPU and memory panels for
/// vtgate show shardgate's: CPU seconds, resident and virtual memory,
/// open file descriptors and the start time, from `/proc/self`.
fn process_metrics(out: &mut String) {
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name, which may hold spaces: field 3
    // (state) is the first here, so field n is at index n - 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let (Some(utime), Some(stime), Some(start), Some(vsize), Some(rss)) =
        (field(14), field(15), field(22), field(23), field(24))
    else {
        return;
    };
    let ticks = ticks.max(1) as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / ticks,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * page as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / ticks,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}

/// `FooBar` → `vtgate_foo_bar`: vtgate's exporter's names for its vars.
fn prometheus_name(var: &str) -> String {
    let mut out = String::from("vtgate");
    for c in var.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_names_become_vtgates_metric_names() {
        assert_eq!(prometheus_name("TopoVersion"), "vtgate_topo_version");
        assert_eq!(
            prometheus_name("TransactionPartsCommittedUnanswered"),
            "vtgate_transaction_parts_committed_unanswered"
        );
    }
}
