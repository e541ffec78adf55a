//! The measurements behind `mbus-bench`: a flood (throughput through one daemon, as
//! `spflooder` does it but with exact end-to-end timing) and a ping/echo round trip (latency
//! between two daemons, or two sessions of one). Both speak only the Spread client protocol,
//! so they measure a real Spread 5.0.1 daemon exactly as they measure ours.

mod latency;
mod report;

pub use latency::{latency, LatencyFigures, LatencyOptions};
pub use report::{percentile, Table};

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::client::{Mailbox, Message, ServiceType};

/// What a flood does.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// Messages the sender multicasts.
    pub messages: u64,
    /// Body size in bytes.
    pub size: u32,
    /// Most of the sender's own messages in flight.
    pub window: u32,
    /// Service of every message.
    pub service: ServiceType,
    /// Extra sessions on the sender's daemon that join the group and count every message.
    pub receivers: usize,
    /// Daemons (other than the sender's, usually) with one counting session each.
    pub readers: Vec<String>,
    /// Group to flood.
    pub group: String,
}

/// One flood's result.
#[derive(Debug, Clone, Serialize)]
pub struct FloodFigures {
    /// The daemon measured.
    pub daemon: String,
    /// From the first send to the last delivery at every session.
    pub seconds: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Deliveries counted at all sessions.
    pub delivered: u64,
}

/// A progress bar on standard error for `len` steps; drawn only when standard error is a
/// terminal (indicatif hides it otherwise), so logs and pipes stay clean.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// Waits until `mb` sees a membership of `group` with at least `n` members.
pub(crate) async fn wait_members(mb: &mut Mailbox, group: &str, n: usize) -> Result<()> {
    loop {
        if let Message::Membership(m) = mb.receive().await? {
            if m.group == group && m.members.len() >= n {
                return Ok(());
            }
        }
    }
}

/// A session name unique to this process: `prefix` + pid + `i`.
pub(crate) fn session_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{}-{i}", std::process::id() % 100_000)
}

/// Floods `opts.group` through `daemon`: one sender with a window of its own messages in
/// flight, `opts.receivers` extra counting sessions. `bar` advances per message sent.
pub async fn flood(daemon: &str, opts: &FloodOptions, bar: &ProgressBar) -> Result<FloodFigures> {
    let mut readers = Vec::new();
    let places =
        std::iter::repeat_n(daemon, opts.receivers).chain(opts.readers.iter().map(String::as_str));
    for (i, at) in places.enumerate() {
        let mut mb = Mailbox::connect(at, &session_name("br", i), true)
            .await
            .with_context(|| format!("connect receiver {i} to {at}"))?;
        mb.join(&opts.group).await?;
        wait_members(&mut mb, &opts.group, i + 1).await?;
        readers.push(mb);
    }
    let mut sender = Mailbox::connect(daemon, &session_name("bs", 0), true)
        .await
        .with_context(|| format!("connect sender to {daemon}"))?;
    sender.join(&opts.group).await?;
    wait_members(&mut sender, &opts.group, readers.len() + 1).await?;

    let n = opts.messages;
    let start = Instant::now();
    let mut reader_tasks = Vec::new();
    for mut mb in readers {
        reader_tasks.push(tokio::spawn(async move {
            let mut got = 0u64;
            while got < n {
                if let Message::Data(_) = mb.receive().await? {
                    got += 1;
                }
            }
            mb.disconnect().await?;
            anyhow::Ok(got)
        }));
    }

    let (mut tx, mut rx) = sender.split();
    let window = std::sync::Arc::new(Semaphore::new(opts.window as usize));
    let w2 = window.clone();
    let me = rx.private_group().to_owned();
    let recv_task = tokio::spawn(async move {
        let mut own = 0u64;
        while own < n {
            if let Message::Data(d) = rx.receive().await? {
                if d.sender == me {
                    own += 1;
                    w2.add_permits(1);
                }
            }
        }
        anyhow::Ok(rx)
    });
    let body = Bytes::from(vec![0x5au8; opts.size as usize]);
    for _ in 0..n {
        window.acquire().await?.forget();
        tx.multicast(opts.service, &opts.group, 0, &body).await?;
        bar.inc(1);
    }
    let rx = recv_task.await??;
    let mut delivered = n;
    for t in reader_tasks {
        delivered += t.await??;
    }
    let elapsed = start.elapsed();
    tx.unsplit(rx)?.disconnect().await?;
    Ok(flood_figures(daemon, opts, elapsed, delivered))
}

fn flood_figures(
    daemon: &str,
    opts: &FloodOptions,
    elapsed: Duration,
    delivered: u64,
) -> FloodFigures {
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let msgs_per_sec = opts.messages as f64 / seconds;
    FloodFigures {
        daemon: daemon.to_owned(),
        seconds,
        msgs_per_sec,
        mb_per_sec: msgs_per_sec * f64::from(opts.size) / 1e6,
        delivered,
    }
}
