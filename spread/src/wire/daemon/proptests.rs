//! Round-trip properties for every daemon wire type, in both byte orders, plus
//! "arbitrary bytes never panic and re-encode stably".

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn endian() -> impl Strategy<Value = Endian> {
    prop_oneof![Just(Endian::Little), Just(Endian::Big)]
}

fn proc_id() -> impl Strategy<Value = DaemonId> {
    any::<u32>().prop_map(DaemonId)
}

fn nonzero_proc_id() -> impl Strategy<Value = DaemonId> {
    (1..=u32::MAX).prop_map(DaemonId)
}

fn memb_id() -> impl Strategy<Value = RingId> {
    (proc_id(), any::<i32>()).prop_map(|(leader, time)| RingId { leader, time })
}

fn seq() -> impl Strategy<Value = Seq> {
    any::<u32>().prop_map(Seq)
}

fn rep() -> impl Strategy<Value = RepInfo> {
    (proc_id(), any::<i16>(), any::<i16>()).prop_map(|(proc_id, t, seg_index)| RepInfo {
        proc_id,
        rep_type: RepType(t),
        seg_index,
    })
}

fn members_info() -> impl Strategy<Value = MembersInfo> {
    (0..=MAX_PROCS_RING, 0..=MAX_PROCS_RING, 0..=MAX_PROCS_RING)
        .prop_flat_map(|(a, b, c)| {
            let nm = a;
            let np = b.min(MAX_PROCS_RING - nm);
            let ns = c.min(MAX_PROCS_RING - nm - np);
            (
                vec(proc_id(), nm),
                vec(proc_id(), np),
                vec(proc_id(), ns),
                nonzero_proc_id(),
            )
        })
        .prop_map(|(members, pending, mut stale, last)| {
            // Canonical form: `stale` never ends with a zero slot.
            if let Some(l) = stale.last_mut() {
                *l = last;
            }
            MembersInfo {
                members,
                pending,
                stale,
            }
        })
}

fn reps_info() -> impl Strategy<Value = RepsInfo> {
    (0..=MAX_REPS, 0..=MAX_REPS)
        .prop_flat_map(|(a, b)| {
            (
                vec(rep(), a),
                vec(rep(), b.min(MAX_REPS - a)),
                any::<i16>(),
                nonzero_proc_id(),
            )
        })
        .prop_map(|(reps, mut stale, rep_index, last)| {
            if let Some(l) = stale.last_mut() {
                l.proc_id = last;
            }
            RepsInfo {
                rep_index,
                reps,
                stale,
            }
        })
}

fn alive() -> impl Strategy<Value = AliveBody> {
    (vec(proc_id(), 0..=MAX_PROCS_RING), any::<i16>()).prop_map(|(members, num_pending)| {
        AliveBody {
            members,
            num_pending,
        }
    })
}

fn join() -> impl Strategy<Value = JoinBody> {
    (alive(), any::<i16>(), vec(rep(), 0..=MAX_REPS)).prop_map(|(members, rep_index, reps)| {
        JoinBody {
            members,
            rep_index,
            reps,
        }
    })
}

fn ring_info() -> impl Strategy<Value = RingInfo> {
    (
        memb_id(),
        any::<i32>(),
        seq(),
        seq(),
        vec(seq(), 0..40),
        vec(proc_id(), 0..=64),
        vec(proc_id(), 0..=64),
    )
        .prop_map(
            |(memb_id, trans_time, aru, highest_seq, holes, trans, commit_rest)| RingInfo {
                memb_id,
                trans_time,
                aru,
                highest_seq,
                holes,
                trans,
                commit_rest,
            },
        )
}

fn form1() -> impl Strategy<Value = Form1Body> {
    (members_info(), reps_info(), vec(ring_info(), 0..=4)).prop_map(|(members, reps, rings)| {
        Form1Body {
            members,
            reps,
            rings,
        }
    })
}

fn form2() -> impl Strategy<Value = Form2Body> {
    (members_info(), memb_id(), vec(ring_info(), 0..=4)).prop_map(
        |(members, new_ring_id, rings)| Form2Body {
            members,
            new_ring_id,
            rings,
        },
    )
}

fn rtr() -> impl Strategy<Value = RtrRequest> {
    (memb_id(), proc_id(), any::<i16>(), vec(seq(), 0..50)).prop_map(
        |(memb_id, proc_id, seg_index, seqs)| RtrRequest {
            memb_id,
            proc_id,
            seg_index,
            seqs,
        },
    )
}

fn token() -> impl Strategy<Value = Token> {
    let body = prop_oneof![
        vec(rtr(), 0..6).prop_map(TokenBody::Regular),
        form1().prop_map(|f| TokenBody::Form1(Box::new(f))),
        form2().prop_map(|f| TokenBody::Form2(Box::new(f))),
    ];
    (
        body,
        endian(),
        0u8..16,
        0u8..16,
        (proc_id(), proc_id(), memb_id(), seq(), seq(), proc_id()),
        any::<i16>(),
        any::<u32>(),
    )
        .prop_map(
            |(body, endian, arq, retrans, (t, p, m, s, a, al), fc, hash)| {
                let base = match &body {
                    TokenBody::Regular(_) => TypeBits(0),
                    TokenBody::Form1(_) => TypeBits(TypeBits::FORM1),
                    TokenBody::Form2(_) => TypeBits(TypeBits::FORM2),
                };
                let rtr_len = u16::try_from(body.encoded_len()).unwrap();
                Token {
                    header: TokenHeader {
                        endian,
                        kind: base.with_arq(arq).with_retrans(retrans),
                        transmiter_id: t,
                        proc_id: p,
                        memb_id: m,
                        seq: s,
                        aru: a,
                        aru_last_id: al,
                        flow_control: fc,
                        rtr_len,
                        conf_hash: hash,
                    },
                    body,
                }
            },
        )
}

fn fragment(max: usize) -> impl Strategy<Value = Fragment> {
    (any::<i16>(), vec(any::<u8>(), 0..max)).prop_map(|(index, d)| Fragment {
        index,
        data: Bytes::from(d),
    })
}

fn data_body() -> impl Strategy<Value = DataBody> {
    vec(fragment(400), 1..6)
        .prop_map(|mut fragments| {
            // Keep it within one packet body and non-empty.
            let mut body = DataBody {
                fragments: Vec::new(),
            };
            for f in fragments.drain(..) {
                body.fragments.push(f);
                if body.encoded_len() > MAX_PACKET_BODY {
                    body.fragments.pop();
                    break;
                }
            }
            body
        })
        .prop_filter("non-empty", |b| {
            b.encoded_len() > 0 && !b.fragments.is_empty()
        })
}

fn status() -> impl Strategy<Value = StatusRecord> {
    (vec(any::<i32>(), 18), vec(any::<i16>(), 12)).prop_map(|(i, s)| {
        let mut bytes = Vec::new();
        for v in i {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for v in s {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        StatusRecord::decode(&mut &bytes[..], Endian::Little).unwrap()
    })
}

fn packet_body() -> impl Strategy<Value = (u32, PacketBody)> {
    let data_kind = prop_oneof![
        Just(TypeBits::RELIABLE),
        Just(TypeBits::FIFO),
        Just(TypeBits::AGREED),
        Just(TypeBits::SAFE),
        Just(TypeBits::AGREED | TypeBits::ROUTED),
        Just(TypeBits::SAFE | TypeBits::ROUTED),
    ];
    prop_oneof![
        (data_kind, data_body()).prop_map(|(k, b)| (k, PacketBody::Data(b))),
        alive().prop_map(|b| (TypeBits::ALIVE, PacketBody::Alive(b))),
        join().prop_map(|b| (TypeBits::JOIN, PacketBody::Join(b))),
        Just((TypeBits::REFER, PacketBody::Refer)),
        Just((TypeBits::HURRY, PacketBody::Hurry)),
        Just((TypeBits::RELOAD, PacketBody::Reload)),
        Just((TypeBits::STATUS, PacketBody::Status(None))),
        status().prop_map(|s| (TypeBits::STATUS, PacketBody::Status(Some(s)))),
        vec(any::<i16>(), 0..200).prop_map(|c| (
            TypeBits::PARTITION,
            PacketBody::Partition(PartitionBody { components: c })
        )),
        vec(any::<[i16; 2]>(), 0..200)
            .prop_map(|e| (TypeBits::FC, PacketBody::Fc(FcBody { entries: e }))),
        vec(any::<u8>(), 0..300).prop_map(|b| (0, PacketBody::Other(Bytes::from(b)))),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        packet_body(),
        endian(),
        (
            proc_id(),
            proc_id(),
            memb_id(),
            seq(),
            any::<u32>(),
            any::<u32>(),
        ),
        any::<u16>(),
        (any::<i16>(), any::<i16>()),
    )
        .prop_map(
            |((kind, body), endian, (t, p, m, s, round, hash), padding, (fi, fl))| {
                let first_frag = match &body {
                    PacketBody::Data(d) => d.first_header(),
                    _ => FragHeader { index: fi, len: fl },
                };
                Packet {
                    header: PacketHeader {
                        endian,
                        kind: TypeBits(kind),
                        transmiter_id: t,
                        proc_id: p,
                        memb_id: m,
                        seq: s,
                        token_round: round,
                        conf_hash: hash,
                        data_len: u16::try_from(body.encoded_len()).unwrap(),
                        padding,
                        first_frag,
                    },
                    body,
                }
            },
        )
}

fn name() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn groups_body() -> impl Strategy<Value = GroupsBody> {
    let daemon =
        (proc_id(), memb_id(), vec(name(), 0..4)).prop_map(|(proc_id, memb_id, members)| {
            GroupDaemon {
                proc_id,
                memb_id,
                members,
            }
        });
    let group = (name(), memb_id(), any::<i32>(), 0u16..2, vec(daemon, 0..4)).prop_map(
        |(name, memb_id, index, changed, daemons)| GroupBlock {
            name,
            group_id: GroupId { memb_id, index },
            changed,
            daemons,
        },
    );
    (
        memb_id(),
        proptest::option::of(vec(proc_id(), 0..=MAX_PROCS_RING)),
        vec(group, 0..6),
    )
        .prop_map(|(memb_id, synced_set, groups)| GroupsBody {
            memb_id,
            synced_set,
            groups,
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        endian(),
        0u32..0x0100_0000,
        name(),
        any::<[u8; 4]>(),
        vec(name(), 0..5),
        vec(any::<u8>(), 0..500),
    )
        .prop_map(|(endian, kind, sender, hint, groups, body)| Message {
            header: MessageHeader {
                endian,
                kind: kind & !ENDIAN_MARKER,
                sender,
                num_groups: i32::try_from(groups.len()).unwrap(),
                hint,
                data_len: i32::try_from(body.len()).unwrap(),
            },
            groups,
            body: Bytes::from(body),
        })
}

proptest! {
    #[test]
    fn token_round_trips(t in token()) {
        let bytes = t.to_vec();
        prop_assert_eq!(bytes.len(), t.encoded_len());
        let back = Token::from_datagram(&bytes).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.to_vec(), bytes);
    }

    #[test]
    fn packet_round_trips(p in packet()) {
        let bytes = p.to_vec();
        prop_assert_eq!(bytes.len(), p.encoded_len());
        let back = Packet::from_datagram(&bytes).unwrap();
        prop_assert_eq!(&back, &p);
    }

    #[test]
    fn groups_body_round_trips(g in groups_body(), e in endian()) {
        let mut bytes = Vec::new();
        g.encode(&mut bytes, e);
        prop_assert_eq!(bytes.len(), g.encoded_len());
        prop_assert_eq!(GroupsBody::decode(&mut &bytes[..], e).unwrap(), g);
    }

    #[test]
    fn message_round_trips(m in message()) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), m.encoded_len());
        prop_assert_eq!(Message::decode(&mut &bytes[..]).unwrap(), m);
    }

    #[test]
    fn synced_size_round_trips(size in any::<u32>(), e in endian(), n in name()) {
        let mut h = MessageHeader { endian: e, kind: groups::GROUPS_MESS, sender: n, num_groups: 0, hint: [0; 4], data_len: 0 };
        h.set_groups_synced_size(size);
        prop_assert_eq!(h.groups_synced_size(), size);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode_stably(bytes in vec(any::<u8>(), 0..2000)) {
        if let Ok(p) = Packet::decode(&mut &bytes[..]) {
            let again = Packet::from_datagram(&p.to_vec()).unwrap();
            prop_assert_eq!(again.body, p.body);
        }
        if let Ok(t) = Token::decode(&mut &bytes[..]) {
            let again = Token::from_datagram(&t.to_vec()).unwrap();
            prop_assert_eq!(again.body, t.body);
        }
        let _ = GroupsBody::decode(&mut &bytes[..], Endian::Little);
        let _ = Message::decode(&mut &bytes[..]);
    }

    #[test]
    fn mutated_headers_never_panic(t in token(), p in packet(), pos in 0usize..40, byte in any::<u8>()) {
        let mut tb = t.to_vec();
        tb[pos] = byte;
        if let Ok(d) = Token::from_datagram(&tb) {
            prop_assert_eq!(Token::from_datagram(&d.to_vec()).unwrap().body, d.body);
        }
        let mut pb = p.to_vec();
        pb[pos] = byte;
        if let Ok(d) = Packet::from_datagram(&pb) {
            prop_assert_eq!(Packet::from_datagram(&d.to_vec()).unwrap().body, d.body);
        }
    }
}

#[test]
fn endian_detection() {
    assert_eq!(Endian::detect([0x80, 0x01, 0x00, 0x80]), Ok(Endian::Little));
    assert_eq!(Endian::detect([0x00, 0x00, 0x01, 0x00]), Ok(Endian::Big));
    assert!(Endian::detect([0x80, 0x01, 0x00, 0x00]).is_err());
}

#[test]
fn big_endian_alive_matches_its_little_endian_twin() {
    let le = hex("80010080ef7a8d5cef7a8d5c0000000000000000000000000000000097d62a9f080000000000000001000000ef7a8d5c");
    let p = Packet::from_datagram(&le).unwrap();
    let mut be = p.clone();
    be.header.endian = Endian::Big;
    let bytes = be.to_vec();
    assert_eq!(&bytes[..4], &[0, 0, 1, 0]);
    assert_eq!(&bytes[4..8], &[0x5c, 0x8d, 0x7a, 0xef]);
    let back = Packet::from_datagram(&bytes).unwrap();
    assert_eq!(back.body, p.body);
    assert_eq!(back.header.transmiter_id, DaemonId(0x5c8d_7aef));
}

#[test]
fn truncated_and_oversized_inputs_are_errors() {
    assert!(matches!(
        Packet::decode(&mut &[0x80u8, 0, 0, 0x80][..]),
        Err(DecodeError::Truncated { .. })
    ));
    // data_len larger than the datagram.
    let mut h = hex("80010080ef7a8d5cef7a8d5c0000000000000000000000000000000097d62a9f080000000000000001000000ef7a8d5c");
    h[32] = 9;
    assert!(Packet::from_datagram(&h).is_err());
    // ALIVE claiming 200 members.
    let mut h2 = hex("80010080ef7a8d5cef7a8d5c0000000000000000000000000000000097d62a9f080000000000000001000000ef7a8d5c");
    h2[40] = 200;
    assert!(matches!(
        Packet::from_datagram(&h2),
        Err(DecodeError::TooLong { .. })
    ));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
