//! Round-trip latency: a `ping` session sends `-n` messages to an echo session's private
//! group; the echo sends each one back; the program prints p50, p90, p99 and max.
//!
//! ```text
//! cargo run --example ping -- -s 4803@127.0.0.1 -n 1000
//! cargo run --example ping -- -s 4803@127.0.0.1 --echo-on 4804@127.0.0.1   # across daemons
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mbus::client::{Error, Mailbox, Message, ServiceType};

/// Measures round trips through a Spread-compatible daemon.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Daemon of the pinging session: PORT@HOST, PORT or a socket path
    #[arg(
        short = 's',
        long,
        default_value = "4803@127.0.0.1",
        env = "SPREAD_DAEMON"
    )]
    daemon: String,
    /// Daemon of the echo session [default: the same daemon]
    #[arg(long)]
    echo_on: Option<String>,
    /// Round trips to measure
    #[arg(short = 'n', long, default_value_t = 1000)]
    count: u32,
    /// Body size in bytes (at least 4)
    #[arg(short = 'b', long, default_value_t = 64)]
    bytes: usize,
    /// Service of the pings and echoes
    #[arg(long, default_value = "agreed", value_parser = ["reliable", "fifo", "agreed", "safe"])]
    service: String,
}

async fn connect(daemon: &str) -> Result<Mailbox, Error> {
    Mailbox::builder(daemon)
        .group_membership(false)
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Returns the sender's messages to it, until told to stop (an empty body).
async fn echo(mut mb: Mailbox, service: ServiceType) -> Result<(), Error> {
    loop {
        if let Message::Data(d) = mb.receive().await? {
            if d.body.is_empty() {
                return mb.disconnect().await;
            }
            mb.multicast(service, &d.sender, d.mess_type, &d.body)
                .await?;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn run(a: &Args) -> Result<Vec<Duration>, Error> {
    let service = match a.service.as_str() {
        "reliable" => ServiceType::RELIABLE,
        "fifo" => ServiceType::FIFO,
        "safe" => ServiceType::SAFE,
        _ => ServiceType::AGREED,
    };
    let echo_mb = connect(a.echo_on.as_deref().unwrap_or(&a.daemon)).await?;
    let target = echo_mb.private_group().to_owned();
    let echo_task = tokio::spawn(echo(echo_mb, service));
    let mut mb = connect(&a.daemon).await?;
    println!(
        "{} pinging {target} ({} bytes, {})",
        mb.private_group(),
        a.bytes,
        a.service
    );
    let mut body = vec![0u8; a.bytes.max(4)];
    let mut rtts = Vec::with_capacity(a.count as usize);
    for i in 0..a.count {
        body[..4].copy_from_slice(&i.to_be_bytes());
        let t = Instant::now();
        mb.multicast(service, &target, 0, &body).await?;
        loop {
            if let Message::Data(d) = mb.receive().await? {
                if d.body.get(..4) == Some(&i.to_be_bytes()[..]) {
                    break;
                }
            }
        }
        rtts.push(t.elapsed());
    }
    mb.multicast(service, &target, 0, b"").await?;
    mb.disconnect().await?;
    let _ = echo_task.await;
    Ok(rtts)
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a).await {
        Ok(mut rtts) if !rtts.is_empty() => {
            rtts.sort();
            println!(
                "{} round trips: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
                rtts.len(),
                percentile(&rtts, 0.50),
                percentile(&rtts, 0.90),
                percentile(&rtts, 0.99),
                rtts[rtts.len() - 1]
            );
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ping: {}: {e}", a.daemon);
            ExitCode::FAILURE
        }
    }
}
