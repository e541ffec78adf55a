//! The token kept for a local reply (`ring::reply`): request/response round trips between
//! clients of a simulated 3-daemon ring (one-way latency [`LATENCY`]), with the rule on and
//! off, and the order every daemon delivers in.

use super::*;

/// How long the simulated clients take to answer what they read.
const THINK: Duration = Duration::from_micros(40);

/// Runs in small steps until `node`'s session `s` has read a message with body `body`;
/// the simulated time it took.
fn until_read(net: &mut Net, node: usize, s: u64, body: &[u8]) -> Duration {
    let start = net.now;
    for _ in 0..20_000 {
        let got = net.take(node, s);
        if got
            .iter()
            .any(|f| is(f, ServiceType::AGREED) && &f.body()[..] == body)
        {
            return net.now.saturating_since(start);
        }
        net.run_for(Duration::from_micros(10));
    }
    panic!(
        "d{} session {s} never read {:?}",
        node + 1,
        String::from_utf8_lossy(body)
    );
}

/// `rounds` ping/echo round trips: the pinger is session 1 on d1, the echo `echo_session`
/// on `echo_node`; both in group "grp". Each answers [`THINK`] after reading. Returns the
/// round trips, sorted.
fn round_trips(net: &mut Net, echo_node: usize, echo_session: u64, rounds: u32) -> Vec<Duration> {
    let mut rtts = Vec::new();
    for k in 0..rounds {
        let ping = format!("ping{k}");
        let pong = format!("pong{k}");
        let start = net.now;
        net.send(0, 1, ServiceType::AGREED, &["grp"], ping.as_bytes());
        until_read(net, echo_node, echo_session, ping.as_bytes());
        net.run_for(THINK);
        net.send(
            echo_node,
            echo_session,
            ServiceType::AGREED,
            &["grp"],
            pong.as_bytes(),
        );
        until_read(net, 0, 1, pong.as_bytes());
        rtts.push(net.now.saturating_since(start));
        net.run_for(THINK);
    }
    rtts.sort();
    rtts
}

/// Three daemons with session 1 on d1 and 2 on d2 (and 4 on d1 too) in "grp"; the reply
/// rule at `wait` (zero: off).
fn ring(wait: Duration) -> Net {
    let mut net = Net::new(3, 0);
    net.reply_wait = wait;
    for i in 0..3 {
        net.start(i);
    }
    net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    for (i, s) in [(0usize, 1u64), (1, 2), (0, 4)] {
        net.connect(i, s, &user_of(s));
        net.send(i, s, ServiceType::JOIN_MESS, &["grp"], b"");
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(Duration::from_millis(500));
    for (i, s) in [(0usize, 1u64), (1, 2), (0, 4)] {
        net.take(i, s);
    }
    net
}

fn stats(net: &Net, i: usize) -> crate::ring::Stats {
    net.nodes[i].as_ref().expect("up").engine().stats()
}

/// Across daemons: the echo's answer leaves with the token it came with, so a round trip is
/// the two one-way hops and the thinking (the rule off: the answer waits a rotation).
#[test]
fn an_answer_to_another_daemons_message_leaves_with_the_token_it_came_with() {
    let hop = LATENCY.as_micros() as u64;
    let mut on = ring(crate::ring::DEFAULT_REPLY_WAIT);
    let before = stats(&on, 1);
    let rtts = round_trips(&mut on, 1, 2, 20);
    let median = rtts[rtts.len() / 2].as_micros() as u64;
    // ping hop + think + answer hop (+ the pinger's own thinking before the next, steps).
    assert!(median <= 2 * hop + 200, "median {median} µs, {rtts:?}");
    let s = stats(&on, 1);
    assert!(s.reply_hits - before.reply_hits >= 15, "{s:?}");
    // Nearly every wait gets its answer (the joins before were answered by nobody: those
    // waits missed and are not counted here).
    assert!(s.reply_misses - before.reply_misses <= 2, "{s:?}");
    // d3 has no client: it never waits.
    assert_eq!(stats(&on, 2).reply_holds, 0);

    let mut off = ring(Duration::ZERO);
    let rtts = round_trips(&mut off, 1, 2, 20);
    let slow = rtts[rtts.len() / 2].as_micros() as u64;
    assert!(slow >= 3 * hop, "without the rule {slow} µs");
    assert_eq!(stats(&off, 1).reply_holds, 0);
}

/// On one daemon: both clients' messages go out in one visit of the token (topped up with
/// each answer while the personal window lasts), so a round trip is the thinking alone.
#[test]
fn clients_of_one_daemon_answering_each_other_keep_the_token_a_little() {
    let mut on = ring(crate::ring::DEFAULT_REPLY_WAIT);
    let rtts = round_trips(&mut on, 0, 4, 30);
    let median = rtts[rtts.len() / 2].as_micros() as u64;
    assert!(median <= 200, "median {median} µs, {rtts:?}");
    let mut off = ring(Duration::ZERO);
    let rtts = round_trips(&mut off, 0, 4, 30);
    let slow = rtts[rtts.len() / 2].as_micros() as u64;
    assert!(
        slow >= 2 * LATENCY.as_micros() as u64,
        "without the rule {slow} µs"
    );
}

/// Every daemon delivers the same sequence whether or not tokens wait for answers, with
/// senders on every daemon and answers interleaved.
#[test]
fn kept_tokens_change_no_order() {
    let mut net = ring(crate::ring::DEFAULT_REPLY_WAIT);
    net.connect(2, 3, &user_of(3));
    net.send(2, 3, ServiceType::JOIN_MESS, &["grp"], b"");
    net.run_for(Duration::from_millis(300));
    for (i, s) in [(0usize, 1u64), (1, 2), (0, 4), (2, 3)] {
        net.take(i, s);
    }
    let mut sent = 0;
    for k in 0..40u32 {
        let (i, s) = [(0usize, 1u64), (1, 2), (2, 3), (0, 4)][k as usize % 4];
        net.send(
            i,
            s,
            ServiceType::AGREED,
            &["grp"],
            format!("m{k}").as_bytes(),
        );
        sent += 1;
        net.run_for(Duration::from_micros(u64::from(k % 7) * 90));
    }
    net.run_for(Duration::from_secs(1));
    let seqs: Vec<Vec<Bytes>> = [(0usize, 1u64), (1, 2), (2, 3), (0, 4)]
        .iter()
        .map(|&(i, s)| {
            net.take(i, s)
                .into_iter()
                .filter(|f| is(f, ServiceType::AGREED))
                .map(|f| f.body())
                .collect()
        })
        .collect();
    assert_eq!(seqs[0].len(), sent);
    for other in &seqs[1..] {
        assert_eq!(&seqs[0], other);
    }
    let holds: u64 = (0..3).map(|i| stats(&net, i).reply_holds).sum();
    assert!(holds > 0, "some visits waited");
}

/// SAFE and AGREED round trips d1 ↔ d2 in a ring of 5, with a pause between them (the ring
/// falls idle and its leader holds the token), counted in hops of [`LATENCY`]. SAFE: the
/// request is delivered at d2 once its aru has survived a rotation (1 + 5 hops); the answer
/// leaves with the token d2 kept and is safe at d1 as soon as the token arrives there (d1's
/// successor sent it: the SAFE line of `ring::stable`), 4 hops: 10 hops. Without the reply
/// rule the answer first waits a rotation for the token: 15. 5.0.1, with neither, takes 20
/// (its answer is safe at d1 only a rotation after that). AGREED: 2 hops against 7.
#[test]
fn round_trips_in_a_ring_of_five_take_the_hops_the_rules_allow() {
    for (wait, agreed_max, safe_max, agreed_min, safe_min) in [
        (crate::ring::DEFAULT_REPLY_WAIT, 2.5, 10.5, 0.0, 0.0),
        (Duration::ZERO, f64::MAX, 15.5, 6.0, 14.0),
    ] {
        let n = 5;
        let mut net = Net::new(n, 0);
        net.reply_wait = wait;
        for i in 0..n {
            net.start(i);
        }
        let all: Vec<usize> = (0..n).collect();
        net.until_ring(&all, Duration::from_secs(10));
        for (i, s) in [(0usize, 1u64), (1, 2)] {
            net.connect(i, s, &user_of(s));
            net.send(i, s, ServiceType::JOIN_MESS, &["grp"], b"");
            net.run_for(Duration::from_millis(100));
        }
        net.run_for(Duration::from_millis(500));
        for (i, s) in [(0usize, 1u64), (1, 2)] {
            net.take(i, s);
        }
        for (service, max, min) in [
            (ServiceType::AGREED, agreed_max, agreed_min),
            (ServiceType::SAFE, safe_max, safe_min),
        ] {
            let mut rtts = Vec::new();
            for k in 0..9u32 {
                let ping = format!("p{k}");
                let pong = format!("q{k}");
                let start = net.now;
                net.send(0, 1, service, &["grp"], ping.as_bytes());
                wait_read(&mut net, 1, 2, service, ping.as_bytes());
                net.run_for(THINK);
                net.send(1, 2, service, &["grp"], pong.as_bytes());
                wait_read(&mut net, 0, 1, service, pong.as_bytes());
                rtts.push(net.now.saturating_since(start).as_micros() as f64);
                net.run_for(THINK + Duration::from_millis(5));
            }
            rtts.sort_by(f64::total_cmp);
            let hops = rtts[4] / LATENCY.as_micros() as f64;
            assert!(
                (min..=max).contains(&hops),
                "wait {wait:?} {service:?}: median {hops:.1} hops, {rtts:?}"
            );
        }
    }
}

fn wait_read(net: &mut Net, node: usize, s: u64, service: ServiceType, body: &[u8]) {
    for _ in 0..100_000 {
        if net
            .take(node, s)
            .iter()
            .any(|f| is(f, service) && &f.body()[..] == body)
        {
            return;
        }
        net.run_for(Duration::from_micros(10));
    }
    panic!("d{} never read", node + 1);
}
