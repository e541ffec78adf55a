//! The probe: two sessions on the target, both members of one probe group, one of them
//! multicasting a numbered AGREED message every few milliseconds. What the fuzzer checks from
//! outside:
//!
//! * **hang**: a probe session receives nothing new for longer than the hang limit;
//! * **invariant**: a probe session receives the numbers out of order, with a gap or twice,
//!   or a membership of the probe group whose members are not exactly the two probes;
//! * a probe session closed by the daemon ([`ProbeEnd::Closed`]): the caller tells a dead
//!   target from a live one that dropped its probe (an invariant break).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;

use super::{Fault, Stats};
use crate::client::{Mailbox, MailboxReceiver, Message, ServiceType};

/// Probe settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The target's client address (`PORT@HOST` or a socket path): the first probe session.
    pub addr: String,
    /// The second probe session's daemon (the same one, or another daemon of the ring).
    pub addr_b: String,
    /// The probe group.
    pub group: String,
    /// Time between two probe messages.
    pub interval: Duration,
    /// No new probe message for this long = hang.
    pub hang_after: Duration,
}

/// Why the probe stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEnd {
    /// It saw a hang or an invariant break.
    Fault(Fault),
    /// A probe session was closed or could not be opened (dead target, or a dropped probe).
    Closed(String),
}

fn millis_since(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

/// Connects both probes and waits until both see the two-member probe group.
async fn setup(cfg: &ProbeConfig) -> Result<(Mailbox, Mailbox)> {
    let tag = std::process::id() % 10_000;
    let salt = (Instant::now().elapsed().subsec_nanos() ^ std::process::id()) % 100;
    let mut a = Mailbox::connect(&cfg.addr, &format!("pa{tag}{salt}"), true)
        .await
        .context("probe a: connect")?;
    let mut b = Mailbox::connect(&cfg.addr_b, &format!("pb{tag}{salt}"), true)
        .await
        .context("probe b: connect")?;
    a.join(&cfg.group).await.context("probe a: join")?;
    b.join(&cfg.group).await.context("probe b: join")?;
    for mb in [&mut a, &mut b] {
        loop {
            if let Message::Membership(m) = mb.receive().await.context("probe: membership")? {
                if m.group == cfg.group && m.members.len() == 2 {
                    break;
                }
            }
        }
    }
    Ok((a, b))
}

/// Reads one probe session until it fails; checks the numbers and memberships.
async fn watch(
    mut rx: MailboxReceiver,
    who: &'static str,
    group: String,
    members: Vec<String>,
    last_ms: Arc<AtomicU64>,
    t0: Instant,
) -> ProbeEnd {
    let mut expect: u64 = 0;
    loop {
        let m = match rx.receive().await {
            Ok(m) => m,
            Err(e) => return ProbeEnd::Closed(format!("probe {who}: {e}")),
        };
        match m {
            Message::Data(d) if d.groups.contains(&group) => {
                let Ok(raw) = <[u8; 8]>::try_from(&d.body[..]) else {
                    return ProbeEnd::Fault(Fault::Invariant(format!(
                        "probe {who}: a {}-byte message in the probe group",
                        d.body.len()
                    )));
                };
                let n = u64::from_be_bytes(raw);
                if n != expect {
                    return ProbeEnd::Fault(Fault::Invariant(format!(
                        "probe {who}: message {n} delivered when {expect} was next"
                    )));
                }
                expect += 1;
                last_ms.store(millis_since(t0), Ordering::Relaxed);
            }
            Message::Membership(m) if m.group == group && !m.members.is_empty() => {
                let mut got = m.members.clone();
                got.sort();
                if got != members {
                    return ProbeEnd::Fault(Fault::Invariant(format!(
                        "probe {who}: probe group membership {got:?}, expected {members:?}"
                    )));
                }
            }
            _ => {}
        }
    }
}

/// Runs the probe until it finds something ([`ProbeEnd`]); `ready` is set once both probes
/// are members. Counts completed rounds in `stats.probe_rounds`.
pub async fn run(cfg: ProbeConfig, stats: Arc<Stats>, ready: Arc<tokio::sync::Notify>) -> ProbeEnd {
    let setup = tokio::time::timeout(cfg.hang_after, setup(&cfg)).await;
    let (a, b) = match setup {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ProbeEnd::Closed(format!("{e:#}")),
        Err(_) => {
            return ProbeEnd::Fault(Fault::Hang(format!(
                "the probe group did not form within {:?}",
                cfg.hang_after
            )))
        }
    };
    ready.notify_one();
    let mut members = vec![a.private_group().to_owned(), b.private_group().to_owned()];
    members.sort();
    let (mut tx, arx) = a.split();
    let (_btx, brx) = b.split();
    let t0 = Instant::now();
    let last_a = Arc::new(AtomicU64::new(0));
    let last_b = Arc::new(AtomicU64::new(0));
    let mut wa = tokio::spawn(watch(
        arx,
        "a",
        cfg.group.clone(),
        members.clone(),
        last_a.clone(),
        t0,
    ));
    let mut wb = tokio::spawn(watch(
        brx,
        "b",
        cfg.group.clone(),
        members,
        last_b.clone(),
        t0,
    ));
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(cfg.interval);
    let hang_ms = cfg.hang_after.as_millis() as u64;
    let end = loop {
        tokio::select! {
            r = &mut wa => break r.unwrap_or_else(|e| ProbeEnd::Closed(e.to_string())),
            r = &mut wb => break r.unwrap_or_else(|e| ProbeEnd::Closed(e.to_string())),
            _ = tick.tick() => {
                let body = Bytes::copy_from_slice(&seq.to_be_bytes());
                match tokio::time::timeout(cfg.hang_after, tx.multicast(ServiceType::AGREED, &cfg.group, 0, &body)).await {
                    Ok(Ok(_)) => seq += 1,
                    Ok(Err(e)) => break ProbeEnd::Closed(format!("probe a: send: {e}")),
                    Err(_) => break ProbeEnd::Fault(Fault::Hang(format!("the probe's send blocked for {:?}", cfg.hang_after))),
                }
                let now = millis_since(t0);
                let la = last_a.load(Ordering::Relaxed);
                let lb = last_b.load(Ordering::Relaxed);
                Stats::add(&stats.probe_rounds, 1);
                if now.saturating_sub(la.min(lb)) > hang_ms {
                    break ProbeEnd::Fault(Fault::Hang(format!(
                        "no probe message delivered for {} ms ({seq} sent)",
                        now - la.min(lb)
                    )));
                }
            }
        }
    };
    wa.abort();
    wb.abort();
    end
}
