//! The core's per-message cost: whole simulated daemons (`spread::Daemon` values with a client
//! session each, over the simulator's fault-free in-memory network, its checker included)
//! ordering and delivering 1 KB AGREED messages (`cargo bench -p spread --features sim
//! --bench core`). Throughput is in messages submitted; each is delivered at every daemon.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spread::ring::Service;
use spread::sim::{Options, Sim};

/// A converged simulated ring of `n` daemons.
fn ring(n: usize) -> Sim {
    let mut sim = Sim::new(n, 7, Options::default());
    for _ in 0..600 {
        if sim.converged() {
            return sim;
        }
        let t = sim.now() + Duration::from_millis(100);
        sim.run_until(t).expect("fault-free run");
    }
    panic!("ring of {n} did not converge");
}

/// Submits `k` messages of `size` bytes at daemon 0 and runs until all are delivered
/// everywhere.
fn flood(sim: &mut Sim, n: usize, k: usize, size: usize) {
    let before = sim.checker.deliveries;
    for _ in 0..k {
        sim.submit(0, Service::Agreed, size);
    }
    let want = before + (n * k) as u64;
    for _ in 0..100_000 {
        if sim.checker.deliveries >= want {
            return;
        }
        let t = sim.now() + Duration::from_millis(1);
        sim.run_until(t).expect("fault-free run");
    }
    panic!("{k} messages not delivered");
}

fn per_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("core per message");
    for (n, size) in [(1usize, 1000usize), (3, 1000), (3, 100_000)] {
        let k = if size > 10_000 { 20 } else { 200 };
        let mut sim = ring(n);
        g.throughput(Throughput::Elements(k as u64));
        g.bench_function(format!("{n} daemon(s), {size} B AGREED"), |b| {
            b.iter(|| flood(&mut sim, n, k, size))
        });
    }
    g.finish();
}

// criterion's macro makes an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, per_message);
}

criterion_main!(group::benches);
