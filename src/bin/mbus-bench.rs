//! `mbus-bench`: throughput (flood) and round-trip latency (ping/echo) of one or more
//! Spread-compatible daemons, ours or a real Spread 5.0.1, measured with the same client.
//!
//! ```text
//! mbus-bench --daemon 4803@127.0.0.1 [--daemon 4804@127.0.0.1 …] [--messages 100000]
//!            [--size 1000] [--window 200] [--service reliable] [--receivers 0] [--group NAME]
//!            [--latency [--echo DAEMON]] [--json]
//! ```
//!
//! See `mbus-bench --help` and [`mbus::bench`] for what is measured.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser as _;
use mbus::bench::{self, FloodFigures, FloodOptions, LatencyFigures, LatencyOptions, Table};
use mbus::cli::mbus_bench::Args;
use serde::Serialize;

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
    if rt.block_on(run(&args)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What `--json` prints.
#[derive(Serialize)]
struct JsonReport<'a> {
    mode: &'static str,
    service: &'static str,
    messages: u64,
    size: u32,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    flood: &'a [FloodFigures],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    latency: &'a [LatencyFigures],
    failed: &'a [String],
}

/// Measures every daemon in turn, prints the table (or JSON); false if any failed.
async fn run(args: &Args) -> bool {
    let timeout = Duration::from_secs(args.timeout);
    let mut floods = Vec::new();
    let mut lats = Vec::new();
    let mut failed = Vec::new();
    for d in &args.daemons {
        let what = if args.latency { "ping" } else { "flood" };
        let bar = bench::progress(args.messages, &format!("{what} {d}"));
        let result = tokio::time::timeout(timeout, measure(d, args, &bar)).await;
        bar.finish_and_clear();
        match result {
            Ok(Ok(Figures::Flood(f))) => floods.push(f),
            Ok(Ok(Figures::Latency(l))) => lats.push(l),
            Ok(Err(e)) => {
                eprintln!("mbus-bench: {d}: {e:#}");
                failed.push(d.clone());
            }
            Err(_) => {
                eprintln!("mbus-bench: {d}: timed out after {timeout:?}");
                failed.push(d.clone());
            }
        }
    }
    if args.json {
        let report = JsonReport {
            mode: if args.latency { "latency" } else { "flood" },
            service: args.service.upper_name(),
            messages: args.messages,
            size: args.size,
            flood: &floods,
            latency: &lats,
            failed: &failed,
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("mbus-bench: {e}");
                return false;
            }
        }
    } else {
        print!("{}", table(args, &floods, &lats, &failed));
    }
    failed.is_empty()
}

enum Figures {
    Flood(FloodFigures),
    Latency(LatencyFigures),
}

async fn measure(daemon: &str, args: &Args, bar: &indicatif::ProgressBar) -> Result<Figures> {
    let service = args.service.service_type();
    if args.latency {
        let opts = LatencyOptions {
            pings: args.messages,
            size: args.size,
            service,
            group: args.group.clone(),
            interval: std::time::Duration::from_micros(args.interval_us),
        };
        let echo = args.echo.as_deref().unwrap_or(daemon);
        Ok(Figures::Latency(
            bench::latency(daemon, echo, &opts, bar).await?,
        ))
    } else {
        let opts = FloodOptions {
            messages: args.messages,
            size: args.size,
            window: args.window,
            service,
            receivers: args.receivers,
            readers: args.readers.clone(),
            group: args.group.clone(),
        };
        Ok(Figures::Flood(bench::flood(daemon, &opts, bar).await?))
    }
}

/// The final table: a title line, then one row per daemon.
fn table(
    args: &Args,
    floods: &[FloodFigures],
    lats: &[LatencyFigures],
    failed: &[String],
) -> String {
    let mut out = if args.latency {
        format!(
            "mbus-bench latency: {} round trips × {} bytes, {}\n",
            args.messages,
            args.size,
            args.service.upper_name()
        )
    } else {
        format!(
            "mbus-bench: {} messages × {} bytes, {}, window {}, {} extra receiver(s), readers on [{}]\n",
            args.messages,
            args.size,
            args.service.upper_name(),
            args.window,
            args.receivers,
            args.readers.join(", ")
        )
    };
    let mut t = if args.latency {
        let mut t = Table::new(&[
            "ping",
            "echo",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "mean µs",
        ]);
        for l in lats {
            t.row(vec![
                l.ping.clone(),
                l.echo.clone(),
                format!("{:.0}", l.p50_us),
                format!("{:.0}", l.p99_us),
                format!("{:.0}", l.p999_us),
                format!("{:.0}", l.max_us),
                format!("{:.0}", l.mean_us),
            ]);
        }
        t
    } else {
        let mut t = Table::new(&["daemon", "seconds", "msgs/s", "MB/s", "delivered"]);
        for f in floods {
            t.row(vec![
                f.daemon.clone(),
                format!("{:.3}", f.seconds),
                format!("{:.0}", f.msgs_per_sec),
                format!("{:.2}", f.mb_per_sec),
                f.delivered.to_string(),
            ]);
        }
        t
    };
    for d in failed {
        t.row(vec![d.clone(), "failed".to_owned()]);
    }
    out.push_str(&t.render());
    out
}
