//! `mbus-bench`: flood a group through one or more Spread-compatible daemons and report the
//! throughput, like Spread's `spflooder` but with a fixed window and exact end-to-end timing.
//!
//! ```text
//! mbus-bench --daemon 4803@127.0.0.1 [--daemon 4804@127.0.0.1 …] [--messages 100000]
//!            [--size 1000] [--window 200] [--service reliable] [--receivers 0] [--group NAME]
//! ```
//!
//! For each daemon in turn: one sender session joins the group and multicasts `--messages`
//! messages of `--size` bytes, keeping at most `--window` of its own messages in flight (sent
//! but not yet delivered back to it, as spflooder does with 200). `--receivers` extra sessions
//! join the group and count every message. The clock runs from the first send to the last
//! delivery at every session; msgs/s and MB/s (10^6 bytes of body per second) are printed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use mbus::client::{Mailbox, Message, ServiceType};
use tokio::sync::Semaphore;

/// Settings from the command line.
#[derive(Debug, Clone)]
struct Args {
    daemons: Vec<String>,
    messages: u64,
    size: usize,
    window: u32,
    service: ServiceType,
    receivers: usize,
    group: String,
    timeout: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: mbus-bench --daemon PORT@HOST [--daemon …] [--messages N] [--size BYTES] \
         [--window N] [--service unreliable|reliable|fifo|causal|agreed|safe] [--receivers N] \
         [--group NAME] [--timeout SECS]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        daemons: Vec::new(),
        messages: 100_000,
        size: 1000,
        window: 200,
        service: ServiceType::RELIABLE,
        receivers: 0,
        group: "mbus-bench".into(),
        timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            usage();
        }
        let Some(v) = it.next() else { usage() };
        match flag.as_str() {
            "--daemon" | "-s" => a.daemons.push(v),
            "--messages" | "-m" => a.messages = v.parse().context("--messages")?,
            "--size" | "-b" => a.size = v.parse().context("--size")?,
            "--window" | "-w" => a.window = v.parse().context("--window")?,
            "--receivers" | "-r" => a.receivers = v.parse().context("--receivers")?,
            "--group" | "-g" => a.group = v,
            "--timeout" => a.timeout = Duration::from_secs(v.parse().context("--timeout")?),
            "--service" => {
                a.service = match v.to_ascii_lowercase().as_str() {
                    "unreliable" => ServiceType::UNRELIABLE,
                    "reliable" => ServiceType::RELIABLE,
                    "fifo" => ServiceType::FIFO,
                    "causal" => ServiceType::CAUSAL,
                    "agreed" => ServiceType::AGREED,
                    "safe" => ServiceType::SAFE,
                    _ => bail!("unknown service {v}"),
                }
            }
            _ => usage(),
        }
    }
    if a.daemons.is_empty() {
        a.daemons.push("4803@127.0.0.1".into());
    }
    if a.window == 0 || a.size > 140_000 {
        bail!("--window must be ≥ 1 and --size ≤ 140000");
    }
    Ok(a)
}

fn service_name(s: ServiceType) -> &'static str {
    match s {
        ServiceType::UNRELIABLE => "UNRELIABLE",
        ServiceType::RELIABLE => "RELIABLE",
        ServiceType::FIFO => "FIFO",
        ServiceType::CAUSAL => "CAUSAL",
        ServiceType::AGREED => "AGREED",
        _ => "SAFE",
    }
}

/// One run's result.
#[derive(Debug)]
struct Figures {
    elapsed: Duration,
    delivered: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!(
        "mbus-bench: {} messages × {} bytes, {}, window {}, {} extra receiver(s)",
        args.messages,
        args.size,
        service_name(args.service),
        args.window,
        args.receivers
    );
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>10}",
        "daemon", "seconds", "msgs/s", "MB/s", "delivered"
    );
    for d in &args.daemons {
        match tokio::time::timeout(args.timeout, run_one(d, &args)).await {
            Ok(Ok(f)) => {
                let secs = f.elapsed.as_secs_f64();
                let rate = args.messages as f64 / secs;
                let mbs = rate * args.size as f64 / 1e6;
                println!(
                    "{d:<28} {secs:>10.3} {rate:>12.0} {mbs:>10.2} {:>10}",
                    f.delivered
                );
            }
            Ok(Err(e)) => println!("{d:<28} failed: {e:#}"),
            Err(_) => println!("{d:<28} timed out after {:?}", args.timeout),
        }
    }
    Ok(())
}

/// Waits until `mb` sees a membership of `group` with at least `n` members.
async fn wait_members(mb: &mut Mailbox, group: &str, n: usize) -> Result<()> {
    loop {
        if let Message::Membership(m) = mb.receive().await? {
            if m.group == group && m.members.len() >= n {
                return Ok(());
            }
        }
    }
}

async fn run_one(daemon: &str, args: &Args) -> Result<Figures> {
    let pid = std::process::id() % 100_000;
    let mut readers = Vec::new();
    for i in 0..args.receivers {
        let mut mb = Mailbox::connect(daemon, &format!("br{pid}-{i}"), true)
            .await
            .with_context(|| format!("connect receiver {i} to {daemon}"))?;
        mb.join(&args.group).await?;
        wait_members(&mut mb, &args.group, i + 1).await?;
        readers.push(mb);
    }
    let mut sender = Mailbox::connect(daemon, &format!("bs{pid}"), true)
        .await
        .with_context(|| format!("connect sender to {daemon}"))?;
    sender.join(&args.group).await?;
    wait_members(&mut sender, &args.group, args.receivers + 1).await?;

    let n = args.messages;
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
    let window = std::sync::Arc::new(Semaphore::new(args.window as usize));
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
    let body = Bytes::from(vec![0x5au8; args.size]);
    for _ in 0..n {
        window.acquire().await?.forget();
        tx.multicast(args.service, &args.group, 0, &body).await?;
    }
    let rx = recv_task.await??;
    let mut delivered = n;
    for t in reader_tasks {
        delivered += t.await??;
    }
    let elapsed = start.elapsed();
    tx.unsplit(rx)?.disconnect().await?;
    Ok(Figures { elapsed, delivered })
}
