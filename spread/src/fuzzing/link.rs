//! Target for the secure ring's sealed-datagram decoder and opener
//! (`crate::daemon::link`).

use crate::daemon::link::{
    decode, BootId, Keyring, Link, LinkDrop, LinkSettings, BROADCAST, HEADER_LEN, OVERHEAD, TAG_LEN,
};
use crate::ring::{DaemonId, Port};
use crate::time::Instant;

/// The configured daemons (the captures' d1, d2, d3); the receiver is d2.
pub(crate) const DAEMONS: [DaemonId; 3] = [
    DaemonId(0x5c8d_7aef),
    DaemonId(0x14c5_65a0),
    DaemonId(0xef46_226e),
];
/// The key every fuzzed daemon shares (the seeds are sealed with it).
pub(crate) const FUZZ_KEY: [u8; 32] = *b"mbus sealed_datagram fuzz key 32";

fn link(me: DaemonId, epoch: u64) -> Link {
    Link::new(
        me,
        LinkSettings {
            keys: Keyring::single(&FUZZ_KEY),
            boot: BootId { epoch, random: 1 },
        },
    )
}

/// Seals `plain` as daemon `from` sends it on `port` (token port: for d2), for seeds: the
/// selector byte then the sealed datagram.
pub fn sealed_seed(from: usize, port: Port, plain: &[u8]) -> Vec<u8> {
    let sender = DAEMONS[from % 3];
    let mut l = link(sender, 1_000 + from as u64);
    let to = if port == Port::Token {
        DAEMONS[1]
    } else {
        BROADCAST
    };
    let mut out = vec![u8::from(port == Port::Token) | (((from % 3) as u8) << 1)];
    out.extend_from_slice(&l.seal(to, port, plain));
    out
}

/// Input: a selector byte (bit 0: token port; bits 1-2: the sending daemon, d1..d3) and a
/// datagram from that daemon's address, received by d2 with the fuzz key.
///
/// Checks: the header decoder never reads past the input and splits it exactly (header +
/// body, body ≥ tag); whatever opens is `len − 56` bytes and opens only once (the same bytes
/// again are a replay), and any single-bit change of a datagram that opened does not open;
/// the plain-looking rest (without the magic) is refused as plain; sealing the input as a
/// plaintext and opening it at d2 gives the input back.
pub fn sealed_datagram(data: &[u8]) {
    let Some((&sel, datagram)) = data.split_first() else {
        return;
    };
    let port = if sel & 1 == 1 {
        Port::Token
    } else {
        Port::Data
    };
    let from = DAEMONS[usize::from((sel >> 1) & 3) % 3];
    let now = Instant(5_000_000);
    match decode(datagram) {
        Ok(s) => {
            assert!(s.body.len() >= TAG_LEN, "body holds a tag");
            assert_eq!(HEADER_LEN + s.body.len(), datagram.len(), "exact split");
        }
        Err(LinkDrop::Plain) => assert_ne!(datagram.get(..4), Some(&b"MBS2"[..])),
        Err(LinkDrop::Malformed) => assert!(datagram.len() < OVERHEAD),
        Err(e) => panic!("decode can only say plain or malformed: {e:?}"),
    }
    let mut rx = link(DAEMONS[1], 9);
    if let Ok(plain) = rx.open(now, from, port, datagram) {
        assert_eq!(plain.len() + OVERHEAD, datagram.len());
        assert_eq!(
            rx.open(now, from, port, datagram),
            Err(LinkDrop::Replayed),
            "opens once"
        );
        let bit = usize::from(sel >> 3) * 8 % (datagram.len() * 8);
        let mut x = datagram.to_vec();
        if let Some(b) = x.get_mut(bit / 8) {
            *b ^= 1 << (bit % 8);
        }
        let mut fresh = link(DAEMONS[1], 9);
        assert!(
            fresh.open(now, from, port, &x).is_err(),
            "a changed datagram does not open (bit {bit})"
        );
        assert_eq!(rx.stats().opened, 1);
    }
    // Round trip of the input as a plaintext, d1 → d2 on the data port.
    let mut tx = link(DAEMONS[0], 3);
    let sealed = tx.seal(BROADCAST, Port::Data, datagram);
    let mut fresh = link(DAEMONS[1], 9);
    let back = fresh.open(now, DAEMONS[0], Port::Data, &sealed);
    assert_eq!(back.as_deref(), Ok(datagram), "seal → open round trip");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_seeds_open_and_reach_every_check() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sealed_datagram");
        let mut opened = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            sealed_datagram(&data);
            let (sel, d) = data.split_first().unwrap();
            let port = if sel & 1 == 1 {
                Port::Token
            } else {
                Port::Data
            };
            let from = DAEMONS[usize::from((sel >> 1) & 3) % 3];
            opened += usize::from(link(DAEMONS[1], 9).open(Instant(0), from, port, d).is_ok());
        }
        assert!(opened >= 4, "seeds that open: {opened}");
    }

    /// Writes the sealed seeds (run once with `--ignored` after changing the format).
    #[test]
    #[ignore = "writes fuzz/corpus/sealed_datagram seeds"]
    fn write_sealed_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let out = root.join("sealed_datagram");
        std::fs::create_dir_all(&out).unwrap();
        let caps: Vec<Vec<u8>> = crate::fuzzing::capture_seeds("daemon_packet")
            .into_iter()
            .chain(crate::fuzzing::capture_seeds("token"))
            .take(8)
            .collect();
        for (i, c) in caps.iter().enumerate() {
            let port = if i % 2 == 1 { Port::Token } else { Port::Data };
            let seed = sealed_seed(i, port, c);
            std::fs::write(out.join(format!("seal-{i}")), &seed).unwrap();
            // The same datagram as a plain 5.0.1 one, and cut short.
            let mut plain = vec![seed[0]];
            plain.extend_from_slice(c);
            std::fs::write(out.join(format!("plain-{i}")), plain).unwrap();
            std::fs::write(out.join(format!("short-{i}")), &seed[..seed.len().min(50)]).unwrap();
        }
    }
}
