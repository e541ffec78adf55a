//! Codec costs: a full data packet, a packed one, a token, and a client message frame,
//! decoded and encoded (`cargo bench -p spread --bench codec`).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spread::wire::client::{decode_frame, encode_message, Direction, GroupName, ServiceType};
use spread::wire::daemon::{
    DaemonId, DataBody, Fragment, Packet, RingId, Seq, Token, MAX_PACKET_BODY,
};

/// A data packet of `frags` (index, length) fragments.
fn data_packet(frags: &[(i16, usize)]) -> Vec<u8> {
    let fragments = frags
        .iter()
        .map(|&(index, len)| Fragment {
            index,
            data: Bytes::from(vec![0x5a; len]),
        })
        .collect();
    let ring = RingId {
        leader: DaemonId(0x0a00_0001),
        time: 42,
    };
    let p = Packet::data(
        0x0000_0008,
        DaemonId(0x0a00_0001),
        0x1234_5678,
        ring,
        Seq(1000),
        7,
        DataBody { fragments },
    );
    p.to_vec()
}

fn packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("daemon packet");
    for (name, frags) in [
        ("one full fragment", vec![(1i16, MAX_PACKET_BODY)]),
        (
            "three packed 380 B",
            vec![(-1i16, 380), (-1, 380), (-1, 380)],
        ),
    ] {
        let bytes = data_packet(&frags);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("decode {name}"), |b| {
            b.iter(|| Packet::from_datagram(std::hint::black_box(&bytes)).expect("decodes"))
        });
        let p = Packet::from_datagram(&bytes).expect("decodes");
        g.bench_function(format!("encode {name}"), |b| b.iter(|| p.to_vec()));
    }
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let ring = RingId {
        leader: DaemonId(0x0a00_0001),
        time: 42,
    };
    let t = Token::first_regular(DaemonId(0x0a00_0002), ring, 0x1234_5678);
    let bytes = t.to_vec();
    c.bench_function("token decode", |b| {
        b.iter(|| Token::from_datagram(std::hint::black_box(&bytes)).expect("decodes"))
    });
    c.bench_function("token encode", |b| b.iter(|| t.to_vec()));
}

fn client_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("client message");
    for size in [100usize, 1000, 100_000] {
        let mut msg = Vec::new();
        encode_message(
            ServiceType::AGREED,
            GroupName::new(b"#bench#d1"),
            &[GroupName::new(b"g")],
            &vec![0x5a; size],
            &mut msg,
        );
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(format!("decode {size} B"), |b| {
            b.iter_batched(
                || BytesMut::from(&msg[..]),
                |mut buf| decode_frame(&mut buf, Direction::ToDaemon).expect("decodes"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

// criterion's macro makes an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, packets, tokens, client_frames);
}

criterion_main!(group::benches);
