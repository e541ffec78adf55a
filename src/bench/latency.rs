//! Ping/echo round trips: a pinger session multicasts to `GROUP-ping`, an echo session (on
//! the same or another daemon) multicasts each ping back to `GROUP-pong`; one ping is in
//! flight at a time and each round trip is timed from the send to the pong's arrival.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use super::report::percentile;
use super::{session_name, wait_members};
use crate::client::{Mailbox, Message, ServiceType};

/// What a latency run does.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Round trips to time.
    pub pings: u64,
    /// Body size in bytes (at least 8: the ping's number).
    pub size: u32,
    /// Service of pings and pongs.
    pub service: ServiceType,
    /// Group name prefix (`GROUP-ping`, `GROUP-pong`).
    pub group: String,
    /// Pause after each round trip before the next ping (zero: back to back). A paced ping
    /// lets the ring fall idle in between, as a request/response application at a low rate
    /// does; back to back keeps the token going round.
    pub interval: Duration,
}

/// One latency run's result, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyFigures {
    /// The pinger's daemon.
    pub ping: String,
    /// The echo's daemon.
    pub echo: String,
    /// Round trips timed.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencyFigures {
    /// Summarizes round-trip times.
    pub fn from_samples(ping: &str, echo: &str, samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        // Microseconds, to a tenth.
        let tenths = |us: f64| (us * 10.0).round() / 10.0;
        let us = |d: Duration| tenths(d.as_secs_f64() * 1e6);
        let total: Duration = samples.iter().sum();
        let n = samples.len().max(1) as f64;
        LatencyFigures {
            ping: ping.to_owned(),
            echo: echo.to_owned(),
            samples: samples.len() as u64,
            p50_us: us(percentile(samples, 50.0)),
            p99_us: us(percentile(samples, 99.0)),
            p999_us: us(percentile(samples, 99.9)),
            max_us: us(samples.last().copied().unwrap_or_default()),
            mean_us: tenths(us(total) / n),
        }
    }
}

/// Times `opts.pings` round trips from a session on `ping` through an echo session on `echo`.
/// `bar` advances per round trip.
pub async fn latency(
    ping: &str,
    echo: &str,
    opts: &LatencyOptions,
    bar: &ProgressBar,
) -> Result<LatencyFigures> {
    if opts.size < 8 {
        bail!("latency pings carry their number: --size must be at least 8");
    }
    let ping_group = format!("{}-ping", opts.group);
    let pong_group = format!("{}-pong", opts.group);

    // The echo joins the ping group first, then the pong group: once the pinger sees it in
    // the pong group, its ping-group join is ordered before any ping.
    let mut echoer = Mailbox::connect(echo, &session_name("le", 0), true)
        .await
        .with_context(|| format!("connect echo session to {echo}"))?;
    echoer.join(&ping_group).await?;
    wait_members(&mut echoer, &ping_group, 1).await?;
    let mut pinger = Mailbox::connect(ping, &session_name("lp", 0), true)
        .await
        .with_context(|| format!("connect pinger to {ping}"))?;
    pinger.join(&pong_group).await?;
    echoer.join(&pong_group).await?;
    wait_members(&mut pinger, &pong_group, 2).await?;

    let service = opts.service;
    let pong = pong_group.clone();
    let echo_task = tokio::spawn(async move {
        loop {
            match echoer.receive().await? {
                Message::Data(d) if d.groups.contains(&ping_group) => {
                    echoer
                        .multicast(service | ServiceType::SELF_DISCARD, &pong, 0, &d.body)
                        .await?;
                    if d.mess_type == 1 {
                        break;
                    }
                }
                _ => {}
            }
        }
        echoer.disconnect().await?;
        anyhow::Ok(())
    });

    let ping_group = format!("{}-ping", opts.group);
    let mut body = vec![0x5au8; opts.size as usize];
    let mut samples = Vec::with_capacity(usize::try_from(opts.pings).unwrap_or(0));
    for i in 0..opts.pings {
        body[..8].copy_from_slice(&i.to_be_bytes());
        let last = i + 1 == opts.pings;
        let sent = Instant::now();
        pinger
            .multicast(service, &ping_group, i16::from(last), &body)
            .await?;
        loop {
            match pinger.receive().await? {
                Message::Data(d) if d.body.len() >= 8 && d.body[..8] == i.to_be_bytes() => break,
                Message::Data(d) if d.groups.contains(&pong_group) => {
                    bail!(
                        "pong out of order: expected ping {i}, got {:?}",
                        &d.body[..8.min(d.body.len())]
                    )
                }
                _ => {}
            }
        }
        samples.push(sent.elapsed());
        bar.inc(1);
        if !opts.interval.is_zero() && !last {
            tokio::time::sleep(opts.interval).await;
        }
    }
    if opts.pings == 0 {
        // Nothing was sent: let the echo session go.
        pinger.multicast(service, &ping_group, 1, &body).await?;
    }
    echo_task.await??;
    pinger.disconnect().await?;
    Ok(LatencyFigures::from_samples(ping, echo, &mut samples))
}
