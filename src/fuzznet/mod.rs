//! `mbus-fuzz-net`: a network fuzzer that drives a running Spread daemon (ours or a real
//! 5.0.1) from outside, over its client socket ([`client`]) or as a configured daemon of its
//! ring ([`peer`]).
//!
//! Every input is built with the project's codecs (`spread::wire::client`,
//! `spread::wire::daemon`) and mutated at the level of their fields; in peer mode the valid
//! sequences come from a whole [`spread::Daemon`] run inside the fuzzer, whose datagrams are
//! mutated on their way out. A [`probe`] pair of clients checks that the target keeps
//! delivering a probe group's messages in order with a stable membership; the target's
//! process (when the fuzzer started it, [`target`]) is watched for death and fatal log lines.
//!
//! Runs are reproducible by seed: execution `n` of seed `s` draws its input from
//! [`Rng::for_exec`]`(s, n)`. A failing input is minimized against a fresh target and saved
//! as a [`replay`] file; `mbus-fuzz-net replay FILE` plays it back.

pub mod client;
pub mod netns;
pub mod peer;
pub mod probe;
pub mod replay;
pub mod run;
pub mod target;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};

/// The seeded generator every input is drawn from.
#[derive(Debug, Clone)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// The generator of execution `n` of a run with seed `seed`.
    pub fn for_exec(seed: u64, n: u64) -> Self {
        Self::new(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.0.random_range(0..n)
        }
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u32) -> bool {
        self.0.random_range(0..100u32) < pct
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0.random()
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The target's process is gone or its port refuses connections.
    Death(String),
    /// The target logged a fatal line (5.0.1: `Alarm`, "Exit caused by Alarm").
    Alarm(String),
    /// The probe's round trip stopped.
    Hang(String),
    /// The probe group's order or membership went wrong.
    Invariant(String),
}

impl Fault {
    /// One-word kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Death(_) => "death",
            Self::Alarm(_) => "alarm",
            Self::Hang(_) => "hang",
            Self::Invariant(_) => "invariant",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Death(s) | Self::Alarm(s) | Self::Hang(s) | Self::Invariant(s) => {
                write!(f, "{}: {s}", self.kind())
            }
        }
    }
}

/// Counters shared by the workers of one run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Inputs executed (client cases, peer episodes).
    pub execs: AtomicU64,
    /// Client sessions opened (fuzzer sessions and embedded ones in peer mode).
    pub sessions: AtomicU64,
    /// Frames written (client) or datagrams sent (peer).
    pub packets: AtomicU64,
    /// Bytes written or sent.
    pub bytes: AtomicU64,
    /// Mutations applied.
    pub mutations: AtomicU64,
    /// Probe rounds completed.
    pub probe_rounds: AtomicU64,
}

impl Stats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The progress line printed every few seconds.
    pub fn progress_line(&self, started: Instant, rss_kb: Option<u64>) -> String {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        format!(
            "[{:>6.0}s] execs {} ({:.1}/s) sessions {} packets {} ({:.0}/s) mutations {} probe {} rss {}",
            secs,
            Self::get(&self.execs),
            Self::get(&self.execs) as f64 / secs,
            Self::get(&self.sessions),
            Self::get(&self.packets),
            Self::get(&self.packets) as f64 / secs,
            Self::get(&self.mutations),
            Self::get(&self.probe_rounds),
            rss_kb.map_or_else(|| "-".to_owned(), |k| format!("{k} kB")),
        )
    }
}

/// The final table of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `client` or `peer`.
    pub mode: &'static str,
    /// The run's seed.
    pub seed: u64,
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// Inputs executed.
    pub execs: u64,
    /// Sessions opened.
    pub sessions: u64,
    /// Frames or datagrams sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Mutations applied.
    pub mutations: u64,
    /// Probe rounds.
    pub probe_rounds: u64,
    /// Peak resident set of the target (kB), when the fuzzer started it.
    pub target_peak_rss_kb: Option<u64>,
    /// What was found (None: nothing).
    pub fault: Option<Fault>,
    /// Seconds from the start to the fault.
    pub time_to_fault: Option<Duration>,
    /// The saved (minimized) replay file.
    pub replay: Option<std::path::PathBuf>,
}

impl Summary {
    /// Builds the summary from the counters.
    pub fn from_stats(mode: &'static str, seed: u64, stats: &Stats, elapsed: Duration) -> Self {
        Self {
            mode,
            seed,
            elapsed,
            execs: Stats::get(&stats.execs),
            sessions: Stats::get(&stats.sessions),
            packets: Stats::get(&stats.packets),
            bytes: Stats::get(&stats.bytes),
            mutations: Stats::get(&stats.mutations),
            probe_rounds: Stats::get(&stats.probe_rounds),
            target_peak_rss_kb: None,
            fault: None,
            time_to_fault: None,
            replay: None,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let rows: Vec<(&str, String)> = vec![
            ("mode", self.mode.to_owned()),
            ("seed", self.seed.to_string()),
            ("duration", format!("{secs:.1} s")),
            ("executions", self.execs.to_string()),
            ("sessions", self.sessions.to_string()),
            (
                if self.mode == "peer" {
                    "datagrams"
                } else {
                    "frames"
                },
                format!("{} ({:.0}/s)", self.packets, self.packets as f64 / secs),
            ),
            ("bytes", self.bytes.to_string()),
            ("mutations", self.mutations.to_string()),
            ("probe rounds", self.probe_rounds.to_string()),
            (
                "target peak RSS",
                self.target_peak_rss_kb
                    .map_or_else(|| "-".to_owned(), |k| format!("{k} kB")),
            ),
            (
                "fault",
                self.fault
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), ToString::to_string),
            ),
            (
                "time to fault",
                self.time_to_fault
                    .map_or_else(|| "-".to_owned(), |t| format!("{:.1} s", t.as_secs_f64())),
            ),
            (
                "replay",
                self.replay
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            ),
        ];
        writeln!(f, "{:-<60}", "")?;
        for (k, v) in rows {
            writeln!(f, "{k:<18} {v}")?;
        }
        write!(f, "{:-<60}", "")
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on SIGINT and SIGTERM end the run cleanly (the final table is printed, a spawned
/// target and the lab are removed) instead of killing the fuzzer. Call inside the runtime.
pub fn stop_on_signals() {
    tokio::spawn(async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        STOP.store(true, Ordering::Relaxed);
    });
}

/// Was the run asked to stop ([`stop_on_signals`])?
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
