//! A `spuser`-like chat: join and leave groups, send lines, print what arrives (data and
//! membership), across daemon restarts.
//!
//! ```text
//! cargo run --example chat -- -s 4803@127.0.0.1 -u alice -g lobby
//! ```
//!
//! Commands, one per line: `j GROUP` join, `l GROUP` leave, `s GROUP TEXT…` send to a group,
//! `b GROUP N` send a burst of N numbered messages, `q` quit; any other line is sent to the
//! last group joined. Uses a [`ReconnectingMailbox`](mbus::client::ReconnectingMailbox): if
//! the daemon restarts, the chat says so, re-joins and goes on. At the end of standard input
//! it waits `--linger` seconds for replies, then leaves.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt as _;
use mbus::client::{Cause, Mailbox, Message, ReconnectingSender, ServiceType};
use tokio::io::AsyncBufReadExt as _;

/// A spuser-like chat over a Spread-compatible daemon.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Commands: j GROUP, l GROUP, s GROUP TEXT, b GROUP N, q; other lines go to the last group joined."
)]
struct Args {
    /// Daemon: PORT@HOST, PORT (Unix socket /tmp/PORT) or a socket path
    #[arg(
        short = 's',
        long,
        default_value = "4803@127.0.0.1",
        env = "SPREAD_DAEMON"
    )]
    daemon: String,
    /// Private name (at most 10 characters; empty: the daemon picks one)
    #[arg(short = 'u', long, default_value = "")]
    user: String,
    /// Groups to join at start
    #[arg(short = 'g', long = "group")]
    groups: Vec<String>,
    /// Service of sent messages
    #[arg(long, default_value = "agreed", value_parser = ["unreliable", "reliable", "fifo", "causal", "agreed", "safe"])]
    service: String,
    /// Seconds to keep printing after the end of standard input
    #[arg(long, default_value_t = 1.0)]
    linger: f64,
}

fn service(name: &str) -> ServiceType {
    match name {
        "unreliable" => ServiceType::UNRELIABLE,
        "reliable" => ServiceType::RELIABLE,
        "fifo" => ServiceType::FIFO,
        "causal" => ServiceType::CAUSAL,
        "safe" => ServiceType::SAFE,
        _ => ServiceType::AGREED,
    }
}

fn show(m: &Message) {
    match m {
        Message::Data(d) => println!(
            "received message from {}, type {}, to {:?} ({} bytes): {}",
            d.sender,
            d.mess_type,
            d.groups,
            d.body.len(),
            String::from_utf8_lossy(&d.body)
        ),
        Message::Membership(mb) => {
            let why = match mb.cause {
                Cause::Join => "join of",
                Cause::Leave => "leave of",
                Cause::Disconnect => "disconnect of",
                Cause::Network => "network change",
            };
            println!(
                "membership of {}: {} {} -> {} member(s) {:?}",
                mb.group,
                why,
                mb.changed_member.as_deref().unwrap_or(""),
                mb.members.len(),
                mb.members
            );
        }
        Message::Transitional { group, .. } => println!("transitional membership of {group}"),
        Message::SelfLeave { group } => println!("left {group}"),
        Message::Reject(r) => println!("rejected: {:?} (type {})", r.groups, r.mess_type),
        Message::Reconnected(r) => println!(
            "*** connection lost ({}); back as {} after {:.1?} and {} attempt(s), re-joined {:?}; \
             messages sent meanwhile were missed",
            r.cause, r.private_group, r.outage, r.attempts, r.groups
        ),
    }
}

/// Runs one command line; false for `q`.
async fn command(
    tx: &ReconnectingSender,
    line: &str,
    last: &mut Option<String>,
    svc: ServiceType,
) -> bool {
    let mut words = line.splitn(3, ' ');
    let (cmd, a, rest) = (words.next().unwrap_or(""), words.next(), words.next());
    let r = match (cmd, a) {
        ("q", _) => return false,
        ("j", Some(g)) => {
            *last = Some(g.to_owned());
            tx.join(g).await
        }
        ("l", Some(g)) => tx.leave(g).await,
        ("s", Some(g)) => tx
            .multicast(svc, g, 1, rest.unwrap_or("").to_owned())
            .await
            .map(drop),
        ("b", Some(g)) => {
            let n: u32 = rest.and_then(|n| n.trim().parse().ok()).unwrap_or(10);
            let mut r = Ok(());
            for i in 0..n {
                r = tx
                    .multicast(svc, g, 2, format!("burst {i}"))
                    .await
                    .map(drop);
                if r.is_err() {
                    break;
                }
            }
            r
        }
        _ if line.trim().is_empty() => Ok(()),
        _ => match last {
            Some(g) => tx.multicast(svc, g, 1, line.to_owned()).await.map(drop),
            None => {
                println!("join a group first (j GROUP)");
                Ok(())
            }
        },
    };
    if let Err(e) = r {
        println!("{line}: {e}");
    }
    true
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mb = match Mailbox::builder(&args.daemon)
        .name(&args.user)
        .timeout(Duration::from_secs(5))
        .connect_reconnecting()
        .await
    {
        Ok(mb) => mb,
        Err(e) => {
            eprintln!("chat: cannot connect to {}: {e}", args.daemon);
            return ExitCode::FAILURE;
        }
    };
    println!("connected to {} as {}", args.daemon, mb.private_group());
    let (tx, mut rx) = mb.split();
    let svc = service(&args.service);
    let mut last = None;
    for g in &args.groups {
        command(&tx, &format!("j {g}"), &mut last, svc).await;
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    let linger = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(m)) => show(&m),
                Some(Err(e)) => {
                    eprintln!("chat: {e}");
                    return ExitCode::FAILURE;
                }
                None => return ExitCode::FAILURE,
            },
            l = lines.next_line(), if input_open => match l {
                Ok(Some(line)) => {
                    if !command(&tx, line.trim_end(), &mut last, svc).await {
                        break;
                    }
                }
                _ => {
                    input_open = false;
                    linger.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs_f64(args.linger));
                }
            },
            () = &mut linger => break,
        }
    }
    let _ = tx.disconnect().await;
    ExitCode::SUCCESS
}
