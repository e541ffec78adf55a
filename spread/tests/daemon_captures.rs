//! Golden captures of real Spread 5.0.1 daemons (`tests/data/daemon/*.hex`): every datagram
//! decodes, re-encodes byte for byte, and agrees with the capture's own `#~` decode line.
//! Also the ids and configuration hashes listed in the captures' README.

use std::collections::BTreeMap;
use std::path::PathBuf;

use spread::ids::{daemon_id, HashDaemon, HashInput, HashSegment};
use spread::wire::daemon::{
    DaemonId, GroupsBody, Message, Packet, PacketBody, Token, TokenBody, TypeBits,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/daemon")
}

struct Datagram {
    file: String,
    line: usize,
    dport: u16,
    bytes: Vec<u8>,
    decode: Option<String>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn load() -> Vec<Datagram> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 26, "expected every daemon capture");
    let mut out: Vec<Datagram> = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("P ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(parts.len(), 5, "{name}:{}", i + 1);
                let dport: u16 = parts[2].rsplit(':').next().unwrap().parse().unwrap();
                let len: usize = parts[3].parse().unwrap();
                let bytes = hex(parts[4]);
                assert_eq!(bytes.len(), len, "{name}:{}", i + 1);
                out.push(Datagram {
                    file: name.clone(),
                    line: i + 1,
                    dport,
                    bytes,
                    decode: None,
                });
            } else if let Some(d) = line.strip_prefix("#~ ") {
                let last = out.last_mut().unwrap();
                assert!(last.decode.is_none());
                last.decode = Some(d.to_string());
            }
        }
    }
    out
}

/// Names used in the decode lines → ids (computed, so this also checks `daemon_id`).
fn names() -> BTreeMap<String, u32> {
    ["d1", "d2", "d3", "d4", "e1", "e2", "w1", "w2", "s1"]
        .iter()
        .map(|n| (n.to_string(), daemon_id(n).0))
        .collect()
}

fn id_of(names: &BTreeMap<String, u32>, s: &str) -> u32 {
    names
        .get(s)
        .copied()
        .unwrap_or_else(|| u32::from_str_radix(s, 16).unwrap_or_else(|_| panic!("id {s}")))
}

/// `key=value` fields of a decode line (values up to the next space).
fn fields(d: &str) -> BTreeMap<&str, &str> {
    d.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .collect()
}

fn memb(names: &BTreeMap<String, u32>, v: &str) -> (u32, i64) {
    let inner = v.trim_start_matches('(').trim_end_matches(')');
    let (p, t) = inner.split_once(',').unwrap();
    (id_of(names, p), t.parse().unwrap())
}

fn list(names: &BTreeMap<String, u32>, d: &str, key: &str) -> Option<Vec<u32>> {
    let start = d.find(&format!("{key}=["))? + key.len() + 2;
    let end = start + d[start..].find(']').unwrap();
    Some(
        d[start..end]
            .split_whitespace()
            .map(|n| id_of(names, n.split('/').next().unwrap()))
            .collect(),
    )
}

#[test]
fn every_captured_datagram_round_trips_and_matches_its_decode_line() {
    let names = names();
    let all = load();
    assert!(all.len() > 2000, "only {} datagrams", all.len());
    let (mut tokens, mut packets, mut forms, mut rtr_blocks, mut groups_bodies) = (0, 0, 0, 0, 0);
    for dg in &all {
        let at = format!("{}:{}", dg.file, dg.line);
        let d = dg
            .decode
            .as_deref()
            .unwrap_or_else(|| panic!("{at}: no decode line"));
        let f = fields(d);
        let ty = u32::from_str_radix(f["type"].trim_start_matches("0x"), 16).unwrap();
        if dg.dport == 4804 {
            let tok = Token::from_datagram(&dg.bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(tok.to_vec(), dg.bytes, "{at}: token re-encode");
            let h = &tok.header;
            assert_eq!(h.kind.0, ty, "{at}");
            assert_eq!(h.transmiter_id.0, id_of(&names, f["trans"]), "{at}");
            assert_eq!(h.proc_id.0, id_of(&names, f["proc_id"]), "{at}");
            let (mp, mt) = memb(&names, f["memb"]);
            assert_eq!(
                (h.memb_id.leader.0, i64::from(h.memb_id.time)),
                (mp, mt),
                "{at}"
            );
            assert_eq!(h.seq.0.to_string(), f["seq"], "{at}");
            assert_eq!(h.aru.0.to_string(), f["aru"], "{at}");
            assert_eq!(h.aru_last_id.0, id_of(&names, f["aru_last_id"]), "{at}");
            assert_eq!(h.flow_control.to_string(), f["fcc"], "{at}");
            assert_eq!(h.rtr_len.to_string(), f["rtr_len"], "{at}");
            assert_eq!(format!("{:08x}", h.conf_hash), f["hash"], "{at}");
            match &tok.body {
                TokenBody::Regular(blocks) => {
                    assert!(!h.kind.has(TypeBits::FORM));
                    for b in blocks {
                        assert!(!b.seqs.is_empty(), "{at}");
                        rtr_blocks += 1;
                    }
                }
                TokenBody::Form1(f1) => {
                    forms += 1;
                    if let Some(m) = list(&names, d, "members") {
                        let got: Vec<u32> = f1.members.members.iter().map(|p| p.0).collect();
                        assert_eq!(got, m, "{at}");
                    }
                    if let Some(p) = list(&names, d, "pending") {
                        let got: Vec<u32> = f1.members.pending.iter().map(|p| p.0).collect();
                        assert_eq!(got, p, "{at}");
                    }
                    if let Some(r) = list(&names, d, "reps") {
                        let got: Vec<u32> = f1.reps.reps.iter().map(|p| p.proc_id.0).collect();
                        assert_eq!(got, r, "{at}");
                    }
                }
                TokenBody::Form2(f2) => {
                    forms += 1;
                    if let Some(m) = list(&names, d, "members") {
                        let got: Vec<u32> = f2.members.members.iter().map(|p| p.0).collect();
                        assert_eq!(got, m, "{at}");
                    }
                    if let Some(p) = list(&names, d, "pending") {
                        let got: Vec<u32> = f2.members.pending.iter().map(|p| p.0).collect();
                        assert_eq!(got, p, "{at}");
                    }
                }
            }
            tokens += 1;
        } else {
            let p = Packet::from_datagram(&dg.bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(p.to_vec(), dg.bytes, "{at}: packet re-encode");
            let h = &p.header;
            assert_eq!(h.kind.0, ty, "{at}");
            assert_eq!(h.transmiter_id.0, id_of(&names, f["trans"]), "{at}");
            assert_eq!(h.proc_id.0, id_of(&names, f["proc_id"]), "{at}");
            let (mp, mt) = memb(&names, f["memb"]);
            assert_eq!(
                (h.memb_id.leader.0, i64::from(h.memb_id.time)),
                (mp, mt),
                "{at}"
            );
            assert_eq!(h.seq.0.to_string(), f["seq"], "{at}");
            assert_eq!(h.token_round.to_string(), f["round"], "{at}");
            assert_eq!(format!("{:08x}", h.conf_hash), f["hash"], "{at}");
            assert_eq!(h.data_len.to_string(), f["data_len"], "{at}");
            assert_eq!(h.padding.to_string(), f["pad"], "{at}");
            assert_eq!(
                format!("({},{})", h.first_frag.index, h.first_frag.len),
                f["frag"],
                "{at}"
            );
            match &p.body {
                PacketBody::Alive(a) => {
                    if let Some(m) = list(&names, d, "members") {
                        let got: Vec<u32> = a.members.iter().map(|p| p.0).collect();
                        assert_eq!(got, m, "{at}");
                    }
                }
                PacketBody::Join(j) => {
                    if let Some(m) = list(&names, d, "members") {
                        let got: Vec<u32> = j.members.members.iter().map(|p| p.0).collect();
                        assert_eq!(got, m, "{at}");
                    }
                    if let Some(r) = list(&names, d, "reps") {
                        let got: Vec<u32> = j.reps.iter().map(|p| p.proc_id.0).collect();
                        assert_eq!(got, r, "{at}");
                    }
                    if let Some(ri) = f.get("rep_index") {
                        assert_eq!(j.rep_index.to_string(), *ri, "{at}");
                    }
                }
                PacketBody::Refer => assert!(d.contains("REFER"), "{at}"),
                PacketBody::Hurry => assert!(d.contains("HURRY"), "{at}"),
                PacketBody::Status(rec) => {
                    assert!(d.contains("STATUS"), "{at}");
                    if let Some(rec) = rec {
                        assert_eq!(rec.my_id, h.proc_id.0 as i32, "{at}");
                        assert_eq!(rec.major_version, 5, "{at}");
                        assert_eq!(rec.accelerated_ring, 0, "{at}");
                    } else {
                        assert_eq!(h.seq.0, 6543, "{at}: monitor return port in seq");
                    }
                }
                PacketBody::Data(body) => {
                    assert!(h.kind.has(TypeBits::REGULAR), "{at}");
                    let first = &body.fragments[0];
                    if first.index == -1 {
                        // A whole message starts this packet: it parses, and GROUPS bodies decode.
                        let msg = Message::decode(&mut first.data.clone())
                            .unwrap_or_else(|e| panic!("{at}: {e}"));
                        let mut re = Vec::new();
                        msg.encode(&mut re);
                        assert_eq!(re, first.data, "{at}: message re-encode");
                        if msg.header.is_groups() {
                            let g = GroupsBody::decode(&mut msg.body.clone(), msg.header.endian)
                                .unwrap_or_else(|e| panic!("{at}: {e}"));
                            let mut re = Vec::new();
                            g.encode(&mut re, msg.header.endian);
                            assert_eq!(re, msg.body, "{at}: groups re-encode");
                            assert_eq!(g.encoded_len(), msg.body.len());
                            assert_eq!(g.memb_id, h.memb_id, "{at}: GROUPS carries the ring id");
                            if let Some(set) = &g.synced_set {
                                assert_eq!(set.len() as u32, msg.header.groups_synced_size());
                            }
                            groups_bodies += 1;
                        }
                    }
                }
                other => panic!("{at}: unexpected body {other:?}"),
            }
            packets += 1;
        }
    }
    eprintln!(
        "{} datagrams: {tokens} tokens ({forms} FORM, {rtr_blocks} rtr blocks), {packets} packets, {groups_bodies} GROUPS bodies",
        all.len()
    );
    assert!(forms > 100 && rtr_blocks >= 2 && groups_bodies > 10);
}

#[test]
fn retransmission_request_of_capture_i() {
    // d2 lost seq 9 and 13 of d1's burst: its token asks for both, as its own block.
    let names = names();
    let dg = load()
        .into_iter()
        .find(|d| d.file.starts_with("i_") && d.dport == 4804 && d.bytes.len() == 64)
        .unwrap();
    let tok = Token::from_datagram(&dg.bytes).unwrap();
    let TokenBody::Regular(blocks) = &tok.body else {
        panic!("not regular")
    };
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].proc_id, DaemonId(names["d2"]));
    assert_eq!(blocks[0].seg_index, 0);
    assert_eq!(blocks[0].memb_id, tok.header.memb_id);
    let seqs: Vec<u32> = blocks[0].seqs.iter().map(|s| s.0).collect();
    assert_eq!(seqs, [9, 13]);
}

#[test]
fn packed_messages_of_capture_l() {
    // Four 181-byte messages in one packet: 181 + 3 pad + 4 + 181 + ... = 745.
    let found = load().into_iter().any(|d| {
        d.file.starts_with("l_") && d.dport == 4803 && {
            let p = Packet::from_datagram(&d.bytes).unwrap();
            matches!(&p.body, PacketBody::Data(b) if b.fragments.len() == 4
                && b.fragments.iter().all(|f| f.data.len() == 181 && f.index == -1)
                && p.header.data_len == 745)
        }
    });
    assert!(found);
}

fn seg(port: u16, bcast: &str, daemons: &[(&str, &str)]) -> HashSegment {
    HashSegment {
        port,
        addrs: vec![bcast.parse().unwrap()],
        daemons: daemons
            .iter()
            .map(|(n, ip)| HashDaemon {
                name: n.to_string(),
                addr: ip.parse().unwrap(),
                id: daemon_id(n),
            })
            .collect(),
    }
}

#[test]
fn ids_and_hashes_listed_in_the_readme() {
    for (n, id) in [
        ("d1", 0x5c8d_7aef),
        ("d2", 0x14c5_65a0),
        ("d3", 0xef46_226e),
        ("d4", 0xd5c3_0851),
        ("e1", 0xc9da_e376),
        ("e2", 0x079f_59ba),
        ("w1", 0xb4a0_9524),
        ("w2", 0x3a8a_a246),
        ("s1", 0x03ca_d19e),
    ] {
        assert_eq!(daemon_id(n), DaemonId(id), "{n}");
    }
    let d3 = [
        ("d1", "10.98.0.1"),
        ("d2", "10.98.0.2"),
        ("d3", "10.98.0.3"),
    ];
    let one = |accel: bool, ds: &[(&str, &str)]| HashInput {
        segments: vec![seg(4803, "10.98.0.255", ds)],
        accelerated_ring: accel,
        exclude_seg_addrs: false,
    };
    assert_eq!(one(false, &d3).conf_hash(), 0x9f2a_d697);
    assert_eq!(one(true, &d3).conf_hash(), 0x90d8_bf74);
    let d4 = [d3[0], d3[1], d3[2], ("d4", "10.98.0.4")];
    assert_eq!(one(false, &d4).conf_hash(), 0x90e6_412f);

    let east = seg(
        4803,
        "10.98.4.255",
        &[("e1", "10.98.4.1"), ("e2", "10.98.4.2")],
    );
    let west1 = seg(4803, "10.98.5.255", &[("w1", "10.98.5.1")]);
    let west2 = seg(
        4803,
        "10.98.5.255",
        &[("w1", "10.98.5.1"), ("w2", "10.98.5.2")],
    );
    let south = seg(4803, "10.98.6.255", &[("s1", "10.98.6.1")]);
    let multi = |segments: Vec<HashSegment>| HashInput {
        segments,
        ..HashInput::default()
    };
    let h21 = multi(vec![east.clone(), west1.clone()]);
    assert_eq!(h21.conf_hash(), 0x9262_3298);
    assert_eq!(h21.conf_hash(), 2_455_909_016);
    assert!(h21.canonical_text().starts_with(
        "Segment: port = 4803; [10.98.4.255]\n\t'e1' [10.98.4.1] [3386565494]\n\t'e2' [10.98.4.2] [127883706]\n\n"
    ));
    assert_eq!(multi(vec![east.clone(), west2]).conf_hash(), 0xcb01_c83e);
    assert_eq!(multi(vec![east, west1, south]).conf_hash(), 0x2528_17e4);
}

#[test]
fn captured_hashes_are_the_computed_ones() {
    // Every datagram that carries a hash carries one of the computed values.
    let d3 = [
        ("d1", "10.98.0.1"),
        ("d2", "10.98.0.2"),
        ("d3", "10.98.0.3"),
    ];
    let known = [
        0x9f2a_d697u32,
        0x90d8_bf74,
        0x90e6_412f,
        0x9262_3298,
        0xcb01_c83e,
        0x2528_17e4,
    ];
    let std = HashInput {
        segments: vec![seg(4803, "10.98.0.255", &d3)],
        ..HashInput::default()
    };
    assert_eq!(std.conf_hash(), known[0]);
    for dg in load() {
        let hash = if dg.dport == 4804 {
            Token::from_datagram(&dg.bytes).unwrap().header.conf_hash
        } else {
            Packet::from_datagram(&dg.bytes).unwrap().header.conf_hash
        };
        if hash == 0 {
            // STATUS replies leave transmiter_id and conf_hash unset.
            assert_eq!(dg.dport, 6543, "{}:{}", dg.file, dg.line);
            continue;
        }
        assert!(
            known.contains(&hash),
            "{}:{} hash {hash:08x}",
            dg.file,
            dg.line
        );
        if dg.file.starts_with("j_") {
            assert_eq!(hash, 0x90d8_bf74);
        }
    }
}

#[test]
fn constructors_reproduce_captured_bytes() {
    use spread::wire::daemon::{RepInfo, RepType};
    let names = names();
    let id = |n: &str| DaemonId(names[n]);
    let all = load();
    let first = |file: &str, pred: &dyn Fn(&Datagram) -> bool| -> Vec<u8> {
        all.iter()
            .find(|d| d.file.starts_with(file) && pred(d))
            .unwrap_or_else(|| panic!("nothing in {file}"))
            .bytes
            .clone()
    };
    let std_hash = 0x9f2a_d697;
    let alive = first("a_", &|d| d.bytes[1] == 0x01);
    assert_eq!(
        Packet::alive(id("d1"), std_hash, vec![id("d1")]).to_vec(),
        alive
    );
    let join = first("a_", &|d| d.bytes[1] == 0x02);
    let me_seg = RepInfo {
        proc_id: id("d1"),
        rep_type: RepType::SEG,
        seg_index: 0,
    };
    assert_eq!(
        Packet::join(id("d1"), std_hash, vec![id("d1")], vec![me_seg], 0).to_vec(),
        join
    );
    let hurry = first("d_", &|d| d.bytes[0] == 0xc0); // 0x40 | marker: `c0 00 00 80`
    assert_eq!(Packet::hurry(id("d2"), std_hash).to_vec(), hurry);
    let refer = first("n_multiseg22_partition", &|d| d.bytes[1] == 0x04);
    assert_eq!(
        Packet::refer(id("w2"), 0xcb01_c83e, id("w1"), RepType::RING).to_vec(),
        refer
    );
}

#[test]
fn relayed_copies_are_header_rewrites_of_routed_packets() {
    use spread::wire::daemon::PacketHeader;
    let all = load();
    let mut relayed = 0;
    for p in all.iter().filter(|d| d.dport == 4803) {
        let h = PacketHeader::decode(&mut &p.bytes[..]).unwrap();
        if !h.kind.has(TypeBits::ROUTED) {
            continue;
        }
        // The relay's re-broadcast: same bytes after offset 8, ROUTED cleared, its own transmiter_id.
        let copy = all.iter().find(|q| {
            q.file == p.file
                && q.dport == 4803
                && q.bytes.len() == p.bytes.len()
                && q.bytes[8..] == p.bytes[8..]
                && q.bytes[4..8] != p.bytes[4..8]
        });
        let Some(copy) = copy else { continue }; // lost during a cut
        let relay = PacketHeader::decode(&mut &copy.bytes[..])
            .unwrap()
            .transmiter_id;
        let mut mine = p.bytes.clone();
        PacketHeader::rewrite(&mut mine, |h| {
            h.kind = TypeBits(h.kind.0 & !TypeBits::ROUTED);
            h.transmiter_id = relay;
        })
        .unwrap();
        assert_eq!(mine, copy.bytes, "{}:{}", p.file, p.line);
        relayed += 1;
    }
    assert!(relayed > 40, "only {relayed} relayed copies found");
}

#[test]
fn configs_in_capture_headers_hash_to_the_captured_values() {
    use spread::config::Config;
    use std::collections::BTreeSet;
    let mut checked = 0;
    let all = load();
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "hex") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // Every config block: the "#     " lines right after a line mentioning spread.conf.
        let lines: Vec<&str> = text.lines().collect();
        let mut blocks = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if !l.contains("spread.conf") {
                continue;
            }
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .map_while(|l| l.strip_prefix("#     "))
                .collect();
            if block.iter().any(|l| l.contains("Spread_Segment")) {
                blocks.push(block.join("\n") + "\n");
            }
        }
        assert!(!blocks.is_empty(), "{file}: no config");
        let computed: BTreeSet<u32> = blocks
            .iter()
            .map(|b| {
                spread::ids::conf_hash(&Config::parse(b, &file).unwrap_or_else(|e| panic!("{e}")))
            })
            .collect();
        let observed: BTreeSet<u32> = all
            .iter()
            .filter(|d| d.file == file)
            .map(|d| {
                if d.dport == 4804 {
                    Token::from_datagram(&d.bytes).unwrap().header.conf_hash
                } else {
                    Packet::from_datagram(&d.bytes).unwrap().header.conf_hash
                }
            })
            .filter(|h| *h != 0)
            .collect();
        assert_eq!(computed, observed, "{file}");
        checked += blocks.len();
    }
    assert!(checked >= 28, "{checked} config blocks");
}

#[test]
fn groups_first_token_and_status_constructors_reproduce_captures() {
    use spread::wire::daemon::{PacketHeader, TokenHeader, FIRST_TOKEN_ARU};
    let all = load();
    let (mut groups, mut firsts, mut statuses) = (0, 0, 0);
    for d in &all {
        let at = format!("{}:{}", d.file, d.line);
        if d.dport == 4804 {
            let t = Token::from_datagram(&d.bytes).unwrap();
            let h: TokenHeader = t.header;
            if h.aru == FIRST_TOKEN_ARU && h.kind.0 == 0 {
                let made = Token::first_regular(h.transmiter_id, h.memb_id, h.conf_hash);
                assert_eq!(made.to_vec(), d.bytes, "{at}");
                firsts += 1;
            }
            if let TokenBody::Form1(b) = &t.body {
                let made = Token::form1(
                    h.transmiter_id,
                    h.memb_id,
                    h.seq,
                    h.conf_hash,
                    (**b).clone(),
                );
                assert_eq!(made.to_vec(), d.bytes, "{at}");
            }
            if let TokenBody::Form2(b) = &t.body {
                let made = Token::form2(
                    h.transmiter_id,
                    h.memb_id,
                    h.seq,
                    h.conf_hash,
                    (**b).clone(),
                );
                assert_eq!(made.to_vec(), d.bytes, "{at}");
            }
            continue;
        }
        let p = Packet::from_datagram(&d.bytes).unwrap();
        let h: PacketHeader = p.header;
        match &p.body {
            PacketBody::Status(None) => {
                let made = Packet::status_request(h.proc_id, h.conf_hash, h.seq.0 as u16);
                assert_eq!(made.to_vec(), d.bytes, "{at}");
                statuses += 1;
            }
            PacketBody::Status(Some(rec)) => {
                assert_eq!(
                    Packet::status_reply(h.proc_id, *rec).to_vec(),
                    d.bytes,
                    "{at}"
                );
                statuses += 1;
            }
            PacketBody::Data(body) if body.fragments[0].index == -1 => {
                let msg = Message::decode(&mut body.fragments[0].data.clone()).unwrap();
                if !msg.header.is_groups() {
                    continue;
                }
                let g = GroupsBody::decode(&mut msg.body.clone(), msg.header.endian).unwrap();
                let name_len = msg.header.sender.iter().position(|b| *b == 0).unwrap();
                let name = std::str::from_utf8(&msg.header.sender[..name_len]).unwrap();
                let last = h.kind.has(TypeBits::AGREED);
                let made = Message::groups(
                    name,
                    msg.header.groups_synced_size(),
                    last,
                    &g,
                    msg.header.endian,
                );
                let mut bytes = Vec::new();
                made.encode(&mut bytes);
                assert_eq!(bytes, body.fragments[0].data, "{at}");
                groups += 1;
            }
            _ => {}
        }
    }
    assert!(
        groups > 10 && firsts > 5 && statuses == 18,
        "{groups} {firsts} {statuses}"
    );
}

#[test]
fn truncated_captures_are_errors_never_panics() {
    // Every strict prefix of every distinct captured datagram is rejected.
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for d in load() {
        if !seen.insert(d.bytes.clone()) {
            continue;
        }
        for len in 0..d.bytes.len() {
            let cut = &d.bytes[..len];
            if d.dport == 4804 {
                assert!(
                    Token::from_datagram(cut).is_err(),
                    "{}:{} len {len}",
                    d.file,
                    d.line
                );
            } else {
                assert!(
                    Packet::from_datagram(cut).is_err(),
                    "{}:{} len {len}",
                    d.file,
                    d.line
                );
            }
            n += 1;
        }
    }
    assert!(n > 100_000, "{n}");
}

mod mutations {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn corpus() -> &'static Vec<(u16, Vec<u8>)> {
        static C: OnceLock<Vec<(u16, Vec<u8>)>> = OnceLock::new();
        C.get_or_init(|| load().into_iter().map(|d| (d.dport, d.bytes)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Random byte edits of real datagrams: decoding never panics, and whatever decodes
        /// re-encodes to bytes that decode to the same value.
        #[test]
        fn mutated_captures_decode_stably(
            pick in any::<prop::sample::Index>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let (port, orig) = &corpus()[pick.index(corpus().len())];
            let mut b = orig.clone();
            for (i, v) in edits {
                let at = i.index(b.len());
                b[at] = v;
            }
            if *port == 4804 {
                if let Ok(t) = Token::from_datagram(&b) {
                    prop_assert_eq!(Token::from_datagram(&t.to_vec()).unwrap(), t);
                }
            } else if let Ok(p) = Packet::from_datagram(&b) {
                prop_assert_eq!(Packet::from_datagram(&p.to_vec()).unwrap(), p);
            }
        }
    }
}

#[test]
fn display_matches_the_capture_decode_lines() {
    // From `type=` on, our Display of a header is the captures' own decode line, with daemon
    // names written as ids.
    let names = names();
    let hexify = |v: &str| -> String {
        if let Some(inner) = v.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            let (a, b) = inner.split_once(',').unwrap();
            let a = names.get(a).map_or(a.to_string(), |id| format!("{id:08x}"));
            format!("({a},{b})")
        } else {
            names.get(v).map_or(v.to_string(), |id| format!("{id:08x}"))
        }
    };
    let mut n = 0;
    for d in load() {
        let line = d.decode.as_deref().unwrap();
        let Some(start) = line.find("type=") else {
            continue;
        };
        let rest = &line[start..];
        let end = [" |", " members=", " pending="]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        let expected: Vec<String> = rest[..end]
            .split(' ')
            .map(|t| match t.split_once('=') {
                // Some decoders print a zero aru_last_id as `0`.
                Some(("aru_last_id", "0")) => "aru_last_id=00000000".to_string(),
                Some((k, v)) => format!("{k}={}", hexify(v)),
                None => t.to_string(),
            })
            .collect();
        let expected = expected.join(" ");
        let ours = if d.dport == 4804 {
            let t = Token::from_datagram(&d.bytes).unwrap();
            assert!(t.to_string().starts_with("token "));
            t.header.to_string()
        } else {
            let p = Packet::from_datagram(&d.bytes).unwrap();
            let s = p.to_string();
            assert!(s.starts_with(&format!("packet {}", p.header.kind)), "{s}");
            if line.starts_with("packet ") {
                let label = line.split(' ').nth(1).unwrap();
                assert_eq!(p.header.kind.to_string(), label, "{}:{}", d.file, d.line);
            }
            p.header.to_string()
        };
        assert_eq!(ours, expected, "{}:{}", d.file, d.line);
        n += 1;
    }
    assert!(n > 3000);
}

#[test]
fn data_send_path_rebuilds_captured_packets() {
    use bytes::Bytes;
    use spread::wire::daemon::{split_message, DataBody};
    let all = load();
    let mut multi = 0;
    let mut packed = 0;
    // Reassemble every message that starts in a packet and spans several, re-cut it, rebuild
    // the packets, compare bytes. Packed packets: rebuild the body with try_pack.
    let data: Vec<(String, Packet, Vec<u8>)> = all
        .iter()
        .filter(|d| d.dport == 4803)
        .filter_map(|d| {
            let p = Packet::from_datagram(&d.bytes).ok()?;
            matches!(p.body, PacketBody::Data(_)).then(|| (d.file.clone(), p, d.bytes.clone()))
        })
        .filter(|(_, p, _)| !p.header.kind.has(TypeBits::ROUTED))
        .collect();
    for (i, (file, p, bytes)) in data.iter().enumerate() {
        let PacketBody::Data(body) = &p.body else {
            unreachable!()
        };
        let h = p.header;
        let rebuild = |b: DataBody, hh: spread::wire::daemon::PacketHeader| {
            let mut q = Packet::data(
                hh.kind.0,
                hh.proc_id,
                hh.conf_hash,
                hh.memb_id,
                hh.seq,
                hh.token_round,
                b,
            );
            q.header.endian = hh.endian;
            q.header.transmiter_id = hh.transmiter_id;
            q.to_vec()
        };
        if body.fragments.len() > 1 {
            let mut b = DataBody::default();
            for f in &body.fragments {
                b.try_pack(f.clone()).unwrap();
            }
            assert_eq!(&rebuild(b, h), bytes, "{file}: packed");
            packed += 1;
        }
        if body.fragments.len() == 1 && body.fragments[0].index == 1 {
            // Collect the following packets of the same sender until the last fragment.
            let mut msg = body.fragments[0].data.to_vec();
            let mut parts = vec![(h, bytes.clone())];
            for (_, q, qb) in data[i + 1..]
                .iter()
                .filter(|(f, q, _)| f == file && q.header.proc_id == h.proc_id)
            {
                let PacketBody::Data(qbody) = &q.body else {
                    unreachable!()
                };
                msg.extend_from_slice(&qbody.fragments[0].data);
                parts.push((q.header, qb.clone()));
                if qbody.fragments[0].index < 0 {
                    break;
                }
            }
            let frags = split_message(&Bytes::from(msg));
            assert_eq!(frags.len(), parts.len(), "{file}");
            for (f, (hh, orig)) in frags.into_iter().zip(parts) {
                assert_eq!(
                    &rebuild(DataBody { fragments: vec![f] }, hh),
                    &orig,
                    "{file}: fragment"
                );
            }
            multi += 1;
        }
    }
    assert!(
        multi >= 3 && packed >= 3,
        "{multi} multi-packet messages, {packed} packed packets"
    );
}
