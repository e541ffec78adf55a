//! Unit tests of [`super`].

use super::*;

fn samples() -> Vec<Msg> {
    vec![
        Msg::Command {
            req_id: 7,
            text: "version".into(),
        },
        Msg::Response {
            req_id: 7,
            command: "version".into(),
            node: "n1".into(),
            chunk: 0,
            chunks: 1,
            data: "x".into(),
        },
        Msg::Describe(Describe {
            node_type: NodeType::Node,
            node: "n1".into(),
            subcluster: "east".into(),
            version: "v".into(),
            address: "1.2.3.4:4802".into(),
            groups: vec!["ec_console".into(), "ec_cluster".into()],
        }),
        Msg::View {
            node: "n1".into(),
            entries: vec![VipEntry {
                ip: "10.0.0.5".into(),
                names: vec!["b1".into()],
                kind: EntryKind::Binding,
                preference: Some("n2".into()),
                follow: None,
            }],
            claims: vec![("10.0.0.5".into(), 3)],
        },
        Msg::Move {
            vip: "10.0.0.5".into(),
            node: "n2".into(),
        },
        Msg::Shared {
            object: "connections".into(),
            node: "n1".into(),
            entries: vec![("console".into(), 2), ("smtp".into(), -1)],
        },
        Msg::LogSubscribe {
            subscriber: "mgr".into(),
        },
        Msg::LogBatch {
            node: "n1".into(),
            log: "mainlog".into(),
            offset: 65,
            lines: vec!["a".into(), String::new()],
        },
        Msg::LogAck {
            log: "mainlog".into(),
            offset: 67,
        },
    ]
}

#[test]
fn roundtrip_and_truncation() {
    for m in samples() {
        let b = m.encode();
        assert_eq!(Msg::decode(m.msg_type(), &b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Msg::decode(m.msg_type(), &b[..cut]).is_err());
        }
    }
    assert_eq!(Msg::decode(99, &[1]), Err(ProtoError::Type(99)));
    assert_eq!(Msg::decode(MT_MOVE, &[2]), Err(ProtoError::Version(2)));
}

#[test]
fn chunks_stay_below_spread_capacity() {
    let text = "é".repeat(CHUNK_BYTES); // 2 bytes each: two chunks
    let chunks = chunk_response(
        1,
        &"c".repeat(crate::console::MAX_LINE),
        "node-with-a-long-name",
        &text,
    );
    assert_eq!(chunks.len(), 2);
    let mut joined = String::new();
    for c in &chunks {
        // Body + Spread header (48) + one group name (32) must fit.
        assert!(c.encode().len() + 48 + 32 < MAX_MESSAGE);
        if let Msg::Response { data, .. } = c {
            joined.push_str(data);
        }
    }
    assert_eq!(joined, text);
    assert_eq!(chunk_response(1, "c", "n", "").len(), 1);
}
