use super::*;

const A: DaemonId = DaemonId(0x7f00_0001);
const B: DaemonId = DaemonId(0x7f00_0002);

fn key(b: u8) -> [u8; 32] {
    [b; 32]
}

fn link(me: DaemonId, k: &[[u8; 32]], epoch: u64) -> Link {
    Link::new(
        me,
        LinkSettings {
            keys: Keyring::from_keys(k).unwrap(),
            boot: BootId { epoch, random: 7 },
        },
    )
}

const T: Instant = Instant(1_000_000);

#[test]
fn a_sealed_datagram_opens_to_the_same_bytes_once() {
    let (mut a, mut b) = (link(A, &[key(1)], 10), link(B, &[key(1)], 20));
    let s = a.seal(BROADCAST, Port::Data, b"hello ring");
    assert_eq!(s.len(), 10 + OVERHEAD);
    assert_ne!(&s[HEADER_LEN..HEADER_LEN + 10], b"hello ring", "encrypted");
    assert_eq!(&b.open(T, A, Port::Data, &s).unwrap()[..], b"hello ring");
    assert_eq!(b.open(T, A, Port::Data, &s), Err(LinkDrop::Replayed));
    assert_eq!(b.stats().opened, 1);
    assert_eq!(b.stats().replayed, 1);
}

#[test]
fn plain_altered_moved_and_foreign_datagrams_are_dropped_and_counted() {
    let (mut a, mut b) = (link(A, &[key(1)], 10), link(B, &[key(1)], 20));
    let s = a.seal(B, Port::Token, b"token bytes");
    // A plain 5.0.1 datagram.
    assert_eq!(b.open(T, A, Port::Token, &[0u8; 64]), Err(LinkDrop::Plain));
    // Every single-byte change past the magic and key id fails the tag.
    for i in 12..s.len() {
        let mut x = s.to_vec();
        x[i] ^= 0x01;
        assert_eq!(
            b.open(T, A, Port::Token, &x),
            Err(LinkDrop::Forged),
            "byte {i}"
        );
    }
    // Re-sent from another configured address, or to the other port.
    assert_eq!(b.open(T, B, Port::Token, &s), Err(LinkDrop::Forged));
    assert_eq!(b.open(T, A, Port::Data, &s), Err(LinkDrop::Forged));
    // Truncated.
    assert_eq!(
        b.open(T, A, Port::Token, &s[..OVERHEAD - 1]),
        Err(LinkDrop::Malformed)
    );
    // Sealed under another key.
    let mut c = link(A, &[key(9)], 10);
    let other = c.seal(B, Port::Token, b"token bytes");
    assert!(matches!(
        b.open(T, A, Port::Token, &other),
        Err(LinkDrop::UnknownKey(_))
    ));
    // The genuine one still opens: nothing above moved the window.
    assert!(b.open(T, A, Port::Token, &s).is_ok());
    let st = b.stats();
    assert_eq!((st.plain, st.malformed, st.unknown_key), (1, 1, 1));
    assert_eq!(st.forged as usize, s.len() - 12 + 2);
    assert_eq!(st.opened, 1);
}

#[test]
fn reordered_datagrams_within_the_window_open_and_older_ones_do_not() {
    let (mut a, mut b) = (link(A, &[key(1)], 10), link(B, &[key(1)], 20));
    let all: Vec<Bytes> = (0..WINDOW + 10)
        .map(|_| a.seal(BROADCAST, Port::Data, b"x"))
        .collect();
    // Newest first, then the rest backwards: all within the window open, once.
    let last = all.len() - 1;
    assert!(b.open(T, A, Port::Data, &all[last]).is_ok());
    let mut opened = 1;
    for s in all[..last].iter().rev() {
        if b.open(T, A, Port::Data, s).is_ok() {
            opened += 1;
        }
    }
    assert_eq!(opened, WINDOW);
    assert_eq!(b.stats().replayed, 10);
}

#[test]
fn an_earlier_run_of_a_sender_is_dropped_until_its_current_run_falls_silent() {
    let mut b = link(B, &[key(1)], 20);
    let mut old = link(A, &[key(1)], 10);
    let captured = old.seal(BROADCAST, Port::Data, b"old run");
    let mut new = link(A, &[key(1)], 11);
    assert!(b
        .open(T, A, Port::Data, &new.seal(BROADCAST, Port::Data, b"new"))
        .is_ok());
    assert_eq!(
        b.open(T, A, Port::Data, &captured),
        Err(LinkDrop::StaleBoot)
    );
    // Same epoch, other random word: not the current run either.
    let mut twin = Link::new(
        A,
        LinkSettings {
            keys: Keyring::single(&key(1)),
            boot: BootId {
                epoch: 11,
                random: 8,
            },
        },
    );
    assert_eq!(
        b.open(T, A, Port::Data, &twin.seal(BROADCAST, Port::Data, b"t")),
        Err(LinkDrop::StaleBoot)
    );
    // A sender whose clock went back across a restart is taken once its run is silent.
    let later = T + STALE_BOOT_GRACE;
    assert!(b.open(later, A, Port::Data, &captured).is_ok());
}

#[test]
fn during_a_rollover_both_keys_open_and_the_first_one_seals() {
    let mut a = link(A, &[key(1), key(2)], 10);
    let mut b_old = link(B, &[key(1)], 20);
    let mut b_new = link(B, &[key(2), key(1)], 20);
    let s = a.seal(BROADCAST, Port::Data, b"m1");
    assert!(b_old.open(T, A, Port::Data, &s).is_ok());
    assert!(b_new.open(T, A, Port::Data, &s).is_ok());
    let r = b_new.seal(A, Port::Data, b"m2");
    assert!(a.open(T, B, Port::Data, &r).is_ok());
    assert!(matches!(
        b_old.open(T, B, Port::Data, &r),
        Err(LinkDrop::UnknownKey(_))
    ));
    // Keys replaced in place keep the windows: an old datagram stays replayed.
    b_old.set_keys(Keyring::from_keys(&[key(2), key(1)]).unwrap());
    assert_eq!(b_old.open(T, A, Port::Data, &s), Err(LinkDrop::Replayed));
}

#[test]
fn key_files_parse_with_comments_and_refuse_bad_lines() {
    let k1 = "00".repeat(32);
    let k2 = "aB".repeat(32);
    let ring = Keyring::parse(&format!("# ring key\n{k1}\n\n{k2}  # next\n")).unwrap();
    assert_eq!(ring.ids().len(), 2);
    assert_eq!(ring.sealing(), LinkKey::new(&[0; 32]).id());
    assert_eq!(
        Keyring::parse("# nothing\n").unwrap_err(),
        KeyFileError::Empty
    );
    assert_eq!(
        Keyring::parse(&format!("{k1}\nzz{}\n", "0".repeat(62))).unwrap_err(),
        KeyFileError::BadKey(2)
    );
    assert_eq!(
        Keyring::parse(&format!("{k1}\n{k1}\n")).unwrap_err(),
        KeyFileError::Duplicate(2)
    );
    assert_eq!(
        Keyring::parse(&format!("{k1}\n{k2}\n{}\n", "11".repeat(32))).unwrap_err(),
        KeyFileError::TooMany(3)
    );
    assert_eq!(
        Keyring::parse(&"0".repeat(63)).unwrap_err(),
        KeyFileError::BadKey(1)
    );
}

#[test]
fn key_ids_differ_between_keys_and_do_not_reveal_them() {
    let (a, b) = (LinkKey::new(&key(1)), LinkKey::new(&key(2)));
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id().0, [1u8; 8]);
    assert_eq!(a.id(), LinkKey::new(&key(1)).id());
}

#[test]
fn a_unicast_opens_only_at_its_destination() {
    const C: DaemonId = DaemonId(0x7f00_0003);
    let (mut a, mut b, mut c) = (
        link(A, &[key(1)], 10),
        link(B, &[key(1)], 20),
        link(C, &[key(1)], 30),
    );
    let token = a.seal(B, Port::Token, b"token");
    assert_eq!(
        c.open(T, A, Port::Token, &token),
        Err(LinkDrop::Misdirected)
    );
    assert_eq!(c.stats().misdirected, 1);
    assert!(b.open(T, A, Port::Token, &token).is_ok());
    let bcast = a.seal(BROADCAST, Port::Data, b"all");
    assert!(c.open(T, A, Port::Data, &bcast).is_ok());
    assert!(b.open(T, A, Port::Data, &bcast).is_ok());
}

#[test]
fn copies_of_one_data_datagram_are_sealed_once_and_tokens_each_for_their_daemon() {
    let mut a = link(A, &[key(1)], 10);
    let plain = Bytes::from_static(b"a data packet");
    let copy = |to| Transmit {
        to: Target::Daemon(to),
        port: Port::Data,
        bytes: plain.clone(),
    };
    let (x, y) = (
        a.seal_transmit(&copy(B)),
        a.seal_transmit(&copy(DaemonId(3))),
    );
    assert_eq!(x, y);
    let other = Bytes::from(plain.to_vec());
    let z = a.seal_transmit(&Transmit {
        to: Target::Daemon(B),
        port: Port::Data,
        bytes: other,
    });
    assert_ne!(x, z, "another buffer is another datagram");
    let token = |to| Transmit {
        to: Target::Daemon(to),
        port: Port::Token,
        bytes: plain.clone(),
    };
    let t = a.seal_transmit(&token(B));
    assert_eq!(decode(&t).unwrap().to, B);
    assert_eq!(a.stats().sealed, 3);
}
