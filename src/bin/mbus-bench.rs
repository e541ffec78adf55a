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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser as _;
use mbus::cli::mbus_bench::Args;
use mbus::client::{Mailbox, Message};
use tokio::sync::Semaphore;

/// One run's result.
#[derive(Debug)]
struct Figures {
    elapsed: Duration,
    delivered: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mbus::cli::init_logging(mbus::cli::level_for("warn", args.verbose));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return mbus::cli::fail("mbus-bench", &e.into()),
    };
    if rt.block_on(bench(&args)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Measures every daemon in turn; false if any failed.
async fn bench(args: &Args) -> bool {
    println!(
        "mbus-bench: {} messages × {} bytes, {}, window {}, {} extra receiver(s)",
        args.messages,
        args.size,
        args.service.upper_name(),
        args.window,
        args.receivers
    );
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>10}",
        "daemon", "seconds", "msgs/s", "MB/s", "delivered"
    );
    let timeout = Duration::from_secs(args.timeout);
    let mut ok = true;
    for d in &args.daemons {
        match tokio::time::timeout(timeout, run_one(d, args)).await {
            Ok(Ok(f)) => {
                let secs = f.elapsed.as_secs_f64();
                let rate = args.messages as f64 / secs;
                let mbs = rate * f64::from(args.size) / 1e6;
                println!(
                    "{d:<28} {secs:>10.3} {rate:>12.0} {mbs:>10.2} {:>10}",
                    f.delivered
                );
            }
            Ok(Err(e)) => {
                ok = false;
                println!("{d:<28} failed");
                eprintln!("mbus-bench: {d}: {e:#}");
            }
            Err(_) => {
                ok = false;
                println!("{d:<28} timed out");
                eprintln!("mbus-bench: {d}: timed out after {timeout:?}");
            }
        }
    }
    ok
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
    let body = Bytes::from(vec![0x5au8; args.size as usize]);
    for _ in 0..n {
        window.acquire().await?.forget();
        tx.multicast(args.service.service_type(), &args.group, 0, &body)
            .await?;
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
