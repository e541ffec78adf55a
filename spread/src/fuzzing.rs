//! Entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus-replay test (`spread/tests/fuzz_corpus.rs`). Feature `fuzzing`; not a public API.
//!
//! Each function takes the raw fuzzer input, runs one decoder (or one state machine) on it and
//! checks properties, panicking only when a property fails:
//!
//! * **round trip**: whatever decodes re-encodes, and decoding that encoding gives the same value
//!   (and, where the format is canonical, the same bytes);
//! * **accounting**: a decoder never consumes more bytes than it was given, and the encoding of
//!   what it decoded is exactly as long as what it consumed;
//! * **bounded memory**: decoded counts and lengths stay within the named protocol maxima, so
//!   nothing is allocated from an unchecked length field (the campaigns also run with
//!   libFuzzer's `-malloc_limit_mb` / `-rss_limit_mb`).
//!
//! The input format of each target is documented on its function; `fuzz/seed_corpus.py`
//! produces seeds in exactly these formats from the golden captures. How to run and add
//! targets: `fuzz/README.md`.

/// One fuzz target: `fuzz/fuzz_targets/<name>.rs` calls `run`, and its corpus lives in
/// `fuzz/corpus/<name>/`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Target name (file stem of the fuzz target and name of its corpus directory).
    pub name: &'static str,
    /// The function the fuzz target calls with the raw input.
    pub run: fn(&[u8]),
}

mod accept;
mod client;
mod config;
mod daemon;
mod exchange;
mod link;
mod node;
mod ring;
mod session;
mod structured;

pub use accept::accept;
pub use client::{client_handshake, client_message, client_stream};
pub use config::{access_ip, spread_conf};
pub use daemon::{daemon_packet, groups, membership, monitor, token};
pub use exchange::group_exchange;
pub use link::{sealed_datagram, sealed_seed};
pub use node::node_stateful;
pub use ring::{daemon_stateful, ring_packet};
pub use session::client_session;
pub use structured::{client_message_structured, packing_structured, MessageSpec, PackingSpec};

/// Every target of this crate, for the corpus-replay test.
pub const TARGETS: &[Target] = &[
    Target {
        name: "client_handshake",
        run: client_handshake,
    },
    Target {
        name: "client_message",
        run: client_message,
    },
    Target {
        name: "client_stream",
        run: client_stream,
    },
    Target {
        name: "daemon_packet",
        run: daemon_packet,
    },
    Target {
        name: "token",
        run: token,
    },
    Target {
        name: "membership",
        run: membership,
    },
    Target {
        name: "groups",
        run: groups,
    },
    Target {
        name: "monitor",
        run: monitor,
    },
    Target {
        name: "spread_conf",
        run: spread_conf,
    },
    Target {
        name: "client_session",
        run: client_session,
    },
    Target {
        name: "daemon_stateful",
        run: daemon_stateful,
    },
    Target {
        name: "ring_packet",
        run: ring_packet,
    },
    Target {
        name: "access_ip",
        run: access_ip,
    },
    Target {
        name: "accept",
        run: accept,
    },
    Target {
        name: "group_exchange",
        run: group_exchange,
    },
    Target {
        name: "node_stateful",
        run: node_stateful,
    },
    Target {
        name: "sealed_datagram",
        run: sealed_datagram,
    },
];

/// Most records a stateful script may hold; the rest of the input is ignored.
pub const MAX_SCRIPT_RECORDS: usize = 2048;

/// One record of a stateful script: `[tag u8][len u16 little-endian][len bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Tag byte; its meaning depends on the target.
    pub tag: u8,
    /// Payload (shorter than `len` when the input ends early).
    pub payload: &'a [u8],
}

/// Splits a stateful-target input into at most [`MAX_SCRIPT_RECORDS`] records. A record whose
/// length runs past the end gets the bytes that are left.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    core::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some(Record { tag, payload })
    })
    .take(MAX_SCRIPT_RECORDS)
}

/// The `cap-*` seeds (cut from the captures) of `target`'s committed corpus, for tests that
/// check the seeds reach the code the target is about.
#[cfg(test)]
pub(crate) fn capture_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("cap-") {
            seeds.push(std::fs::read(&p).unwrap());
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_and_truncate() {
        let input = [1u8, 2, 0, 0xaa, 0xbb, 7, 5, 0, 0xcc];
        let recs: Vec<_> = records(&input).collect();
        assert_eq!(
            recs,
            vec![
                Record {
                    tag: 1,
                    payload: &[0xaa, 0xbb]
                },
                Record {
                    tag: 7,
                    payload: &[0xcc]
                },
            ]
        );
        assert_eq!(
            records(&[9]).next(),
            Some(Record {
                tag: 9,
                payload: &[]
            })
        );
        assert_eq!(records(&[]).count(), 0);
    }
}
