//! A `spflooder`-like flooder: sends `-m` messages of `-b` bytes to a group, keeping at most
//! `--window` of its own messages in flight, and reports the rate. `--read-only` counts
//! messages from other flooders instead; `--write-only` sends without joining.
//!
//! ```text
//! cargo run --example flooder -- -s 4803@127.0.0.1 -m 10000 -b 1000
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mbus::client::{Error, Mailbox, Message, ServiceType};

/// Floods a group and reports messages per second.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Daemon: PORT@HOST, PORT (Unix socket /tmp/PORT) or a socket path
    #[arg(
        short = 's',
        long,
        default_value = "4803@127.0.0.1",
        env = "SPREAD_DAEMON"
    )]
    daemon: String,
    /// Messages to send (or, with --read-only, to receive)
    #[arg(short = 'm', long, default_value_t = 10_000)]
    messages: u64,
    /// Body size in bytes
    #[arg(short = 'b', long, default_value_t = 1000)]
    bytes: usize,
    /// Group to flood
    #[arg(short = 'g', long, default_value = "flooder")]
    group: String,
    /// Most own messages in flight (sent, not yet delivered back)
    #[arg(short = 'w', long, default_value_t = 200)]
    window: u64,
    /// Only receive and count --messages data messages
    #[arg(long, conflicts_with = "write_only")]
    read_only: bool,
    /// Only send (no join, no flow control)
    #[arg(long)]
    write_only: bool,
}

async fn run(a: &Args) -> Result<(u64, Duration), Error> {
    let mut mb = Mailbox::builder(&a.daemon)
        .group_membership(false)
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    println!("connected as {}", mb.private_group());
    let body = vec![b'x'; a.bytes];
    if !a.write_only {
        mb.join(&a.group).await?;
    }
    let start = Instant::now();
    if a.read_only {
        let mut got = 0;
        while got < a.messages {
            if let Message::Data(_) = mb.receive().await? {
                got += 1;
                if got % 1000 == 0 {
                    println!("received {got}");
                }
            }
        }
        return Ok((got, start.elapsed()));
    }
    let me = mb.private_group().to_owned();
    let (mut sent, mut back) = (0u64, 0u64);
    while sent < a.messages {
        if !a.write_only && sent - back >= a.window {
            if let Message::Data(d) = mb.receive().await? {
                if d.sender == me {
                    back += 1;
                }
            }
            continue;
        }
        mb.multicast(ServiceType::RELIABLE, &a.group, 0, &body)
            .await?;
        sent += 1;
        if sent % 1000 == 0 {
            println!("sent {sent}");
        }
    }
    while !a.write_only && back < sent {
        if let Message::Data(d) = mb.receive().await? {
            if d.sender == me {
                back += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    mb.disconnect().await?;
    Ok((sent, elapsed))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a).await {
        Ok((n, t)) => {
            let secs = t.as_secs_f64();
            println!(
                "{} {n} messages of {} bytes in {secs:.3} s: {:.0} msgs/s, {:.2} Mbit/s",
                if a.read_only { "received" } else { "sent" },
                a.bytes,
                n as f64 / secs,
                n as f64 * a.bytes as f64 * 8.0 / secs / 1e6
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flooder: {}: {e}", a.daemon);
            ExitCode::FAILURE
        }
    }
}
