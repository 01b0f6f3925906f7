//! The web port: `/debug/health` for probes, `/debug/status` for people and
//! `/debug/vars` as JSON. A tiny HTTP/1.0 responder; metrics come later.

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
        "/debug/health" => ("200 OK", "text/plain", "ok\n".into()),
        "/debug/vars" => {
            let v = serde_json::json!({
                "TopoVersion": snap.version,
                "TopoAccepted": ctx.watch_stats.accepted.load(Ordering::Relaxed),
                "TopoRejected": ctx.watch_stats.rejected.load(Ordering::Relaxed),
                "Keyspaces": snap.keyspaces.keys().collect::<Vec<_>>(),
                "Tablets": snap.tablets.len(),
                "SharedReadBatches": ctx.pools.mux_stats.batches.load(Ordering::Relaxed),
                "SharedReadExecutions": ctx.pools.mux_stats.executions.load(Ordering::Relaxed),
                "SharedReadStreamed": ctx.pools.mux_stats.streamed.load(Ordering::Relaxed),
                "SharedReadSolo": ctx.pools.mux_stats.solo.load(Ordering::Relaxed),
                "SharedReadSentBack": ctx.pools.mux_stats.sent_back.load(Ordering::Relaxed),
                "SessionDefaultsKept": ctx.pools.defaults.served.load(Ordering::Relaxed),
                "TabletConnectionsOpen": ctx.pools.lean_open(),
                "TabletConnectionWaits": ctx.pools.budget_waits.load(Ordering::Relaxed),
                "TabletConnectionTimeouts": ctx.pools.budget_timeouts.load(Ordering::Relaxed),
                "TransactionPartsCommitted": ctx.txn_stats.committed.load(Ordering::Relaxed),
                "TransactionPartsCommittedUnanswered": ctx.txn_stats.committed_unanswered.load(Ordering::Relaxed),
                "CrossShardDeadlocks": ctx.deadlocks.broken.load(Ordering::Relaxed),
                "EventLoopBusyPolls": ctx.busy_polls.load(Ordering::Relaxed),
                "HeapTrims": ctx.heap.trims.load(Ordering::Relaxed),
                // Tables whose column types schema tracking learned.
                "SchemaTrackedTables": snap.keyspaces.values().map(|k| k.learned.len()).sum::<usize>(),
            });
            ("200 OK", "application/json", v.to_string())
        }
        "/debug/status" | "/" => {
            let mut s =
                String::from("<html><head><title>shardgate</title></head><body><h1>shardgate</h1>");
            let _ = write!(s, "<p>topology version {}</p><table border=1><tr><th>keyspace</th><th>shard</th><th>tablet</th><th>type</th><th>address</th></tr>", snap.version);
            for t in snap.tablets.values() {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}:{}</td></tr>",
                    t.keyspace,
                    t.shard,
                    t.alias,
                    t.tablet_type.as_str(),
                    t.hostname,
                    t.port
                );
            }
            s.push_str("</table></body></html>");
            ("200 OK", "text/html", s)
        }
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}
