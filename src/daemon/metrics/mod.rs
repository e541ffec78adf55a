//! The opt-in metrics endpoint: `spread --metrics ADDR:PORT` (or `MBUS_METRICS=ADDR:PORT`)
//! serves every counter of the daemon ([`spread::daemon::Metrics`] and the UDP side's
//! [`NetStats`]) as Prometheus / OpenMetrics text at `http://ADDR:PORT/metrics`.
//!
//! The numbers are counted where the decisions are made (the sans-IO core and the socket
//! layer); this module only takes a snapshot from the core task on each scrape (its own
//! request queue, answered even while client input is paused) and renders it with
//! `prometheus-client`. The HTTP side is deliberately tiny: one `GET` per connection,
//! bounded request size and time, `Connection: close`.

mod render;
#[cfg(test)]
mod tests;

use std::time::Duration;

use spread::daemon::Metrics;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

pub use render::render;

use super::ring_net::NetStats;
use super::session::CoreHandle;

/// Environment variable read by `spread` when `--metrics` is not given.
pub const METRICS_ENV: &str = "MBUS_METRICS";
/// Content type of the exposition (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the core's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one scrape shows: the core's counters and the UDP side's.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The core's counters and gauges.
    pub core: Metrics,
    /// The ring sockets' counters (all zero for a daemon without sockets).
    pub net: NetStats,
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    core: CoreHandle,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "metrics endpoint: http://{a}/metrics");
    }
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let core = core.clone();
                    conns.spawn(async move {
                        if let Err(e) = answer(stream, &core).await {
                            debug!(%peer, error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, core: &CoreHandle) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::io::Result::Ok(())
    })
    .await;
    if !matches!(head, Ok(Ok(()))) {
        return Ok(());
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => match tokio::time::timeout(SNAPSHOT_TIMEOUT, core.metrics()).await {
            Ok(Ok(s)) => ("200 OK", CONTENT_TYPE, render(&s)),
            _ => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "the daemon core did not answer\n".to_owned(),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
