//! Target for log shipping (`crate::cluster::{logship, logsink}`) and its bus messages.

use crate::cluster::logship::{LogShipper, MAX_BUFFER_BYTES, MAX_IN_FLIGHT};
use crate::cluster::logsink::LogSink;
use crate::cluster::proto::{Msg, MT_LOG_ACK, MT_LOG_BATCH, MT_LOG_SUBSCRIBE};

/// Most operations run from one input.
const MAX_OPS: usize = 512;

/// A script of operations between one node's shipper and a manager's sink, every message
/// passing through encode → decode: each byte is an operation (`% 8`: 0 push lines whose
/// lengths are the next byte's bits, 1 subscribe, 2 deliver the batches in flight, 3 lose
/// them, 4 the manager leaves, 5 a hostile batch decoded from the rest of the input, 6 a
/// hostile ack, 7 a raw subscribe/batch/ack body).
///
/// Checks: the buffer and the bytes in flight stay within their bounds; what the sink
/// writes is exactly the lines that were not dropped, in order, each once (lost and
/// re-shipped batches included); bad bodies are refused without panicking.
pub fn log_shipping(data: &[u8]) {
    let mut ship = LogShipper::new(&["mainlog".to_string()]);
    let mut sink = LogSink::new("/logs".into());
    let mut in_flight: Vec<Msg> = Vec::new();
    let mut expected = String::new();
    let mut written = String::new();
    let mut manager = 0u32;
    let mut next = 0u64;
    let mut i = 0;
    while i < data.len() && i < MAX_OPS {
        let op = data[i] % 8;
        let arg = data.get(i + 1).copied().unwrap_or(0);
        i += 1;
        let me = format!("#m{manager}#mgr");
        match op {
            0 => {
                for k in 0..usize::from(arg % 8) {
                    next += 1;
                    let line = format!("{next}:{}", "x".repeat((usize::from(arg) * k * 37) % 9000));
                    if ship.push_lines("mainlog", vec![line.clone()]) == 0 {
                        expected.push_str(&line);
                        expected.push('\n');
                    }
                }
                i += 1;
            }
            1 => ship.subscribe(&me, "mgr"),
            2 => {
                for m in std::mem::take(&mut in_flight) {
                    let m = roundtrip(&m);
                    if let Msg::LogBatch {
                        node,
                        log,
                        offset,
                        lines,
                    } = m
                    {
                        if let Some(w) = sink.on_batch("#p#n1", &node, &log, offset, &lines) {
                            written.push_str(&w.text);
                            let (_, log, offset) = sink.written(&w);
                            if let Msg::LogAck { log, offset } =
                                roundtrip(&Msg::LogAck { log, offset })
                            {
                                ship.ack(&me, &log, offset);
                            }
                        }
                    }
                }
            }
            3 => in_flight.clear(),
            4 => {
                manager += 1;
                in_flight.clear();
                ship.unsubscribe_if_gone(&[]);
            }
            5..=7 => {
                let rest = &data[i..];
                let ty = [MT_LOG_BATCH, MT_LOG_ACK, MT_LOG_SUBSCRIBE][usize::from(op - 5)];
                match Msg::decode(ty, rest) {
                    Ok(Msg::LogBatch {
                        node,
                        log,
                        offset,
                        lines,
                    }) => {
                        let _ = sink.on_batch("#evil#x", &node, &log, offset, &lines);
                    }
                    Ok(Msg::LogAck { log, offset }) => ship.ack(&me, &log, offset),
                    _ => {}
                }
                break;
            }
            _ => unreachable!(),
        }
        in_flight.extend(ship.poll_batches("n1").into_iter().map(|(_, m)| m));
        let st = &ship.logs()["mainlog"];
        assert!(st.sent >= st.acked && st.sent - st.acked <= MAX_IN_FLIGHT + 64 * 1024 + 16);
        assert!(st.read_bytes - st.dropped_bytes - st.acked <= MAX_BUFFER_BYTES as u64);
        assert!(
            expected.starts_with(&written),
            "sink wrote something not shipped in order"
        );
    }
}

fn roundtrip(m: &Msg) -> Msg {
    let enc = m.encode();
    let d = Msg::decode(m.msg_type(), &enc).expect("own messages decode");
    assert_eq!(&d, m);
    d
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_shipping_scripts_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            super::log_shipping(&data);
        }
    }
}
