//! Stream framer: cuts a byte stream into whole messages (tokio decoder contract:
//! `Ok(None)` = need more bytes, `Err` = the stream is corrupt and must be dropped).
//!
//! Every length is checked as soon as the header is in, before waiting for (or reserving
//! room for) the rest, so an over-long announcement is refused after 48 bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::header::{
    decode_header, encode_header, ByteOrder, GroupName, Hint, MessageHeader, ServiceType,
};
use super::{
    DecodeError, GROUP_NAME_LEN, HEADER_LEN, MAX_DATA_PLUS_GROUPS, MAX_DELIVERED_DATA_LEN,
    MAX_DELIVERED_GROUPS, MAX_GROUPS_PER_MESSAGE, MAX_MESSAGE_BODY_LEN, MAX_WIRE_MESSAGE,
};

/// Which way the stream flows; decides the limits and whether REJECT_MESS carries 4 extra
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → daemon: the 5.0.1 header limits, plus the real capacity
    /// ([`MAX_WIRE_MESSAGE`]) where 5.0.1 would crash.
    ToDaemon,
    /// Daemon → client: membership lists may be long; REJECT_MESS has an extra `type` word.
    ToClient,
}

/// One whole message: its decoded header and the raw bytes (header included), so a daemon
/// can forward it without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The decoded header.
    pub header: MessageHeader,
    /// For REJECT_MESS (daemon → client): the original request's `type`, in the header's order.
    pub reject_type: Option<ServiceType>,
    /// The whole message as received.
    pub raw: Bytes,
}

impl Frame {
    /// Offset of the group array inside [`Frame::raw`].
    fn groups_start(&self) -> usize {
        HEADER_LEN + if self.reject_type.is_some() { 4 } else { 0 }
    }

    /// Number of group names (never negative once framed).
    pub fn num_groups(&self) -> usize {
        usize::try_from(self.header.num_groups).unwrap_or(0)
    }

    /// The `i`-th group name, if there is one.
    pub fn group(&self, i: usize) -> Option<GroupName> {
        let start = self.groups_start() + i * GROUP_NAME_LEN;
        if i >= self.num_groups() {
            return None;
        }
        let field = self.raw.get(start..start + GROUP_NAME_LEN)?;
        let mut f = [0; GROUP_NAME_LEN];
        f.copy_from_slice(field);
        Some(GroupName(f))
    }

    /// All group names in order.
    pub fn groups(&self) -> impl Iterator<Item = GroupName> + '_ {
        (0..self.num_groups()).filter_map(|i| self.group(i))
    }

    /// The raw bytes of the group array.
    pub fn groups_raw(&self) -> Bytes {
        let start = self.groups_start();
        self.raw
            .slice(start..start + self.num_groups() * GROUP_NAME_LEN)
    }

    /// The body (a slice of [`Frame::raw`], no copy).
    pub fn body(&self) -> Bytes {
        let start = self.groups_start() + self.num_groups() * GROUP_NAME_LEN;
        self.raw.slice(start..)
    }
}

/// Checks the lengths a header announces; returns the whole message length.
///
/// For [`Direction::ToDaemon`] these are the 5.0.1 checks 3 and 5 of the fact sheet's §4.1
/// plus the real capacity (`48 + 32*num_groups + data_len <= 143200`).
pub fn check_lengths(header: &MessageHeader, dir: Direction) -> Result<usize, DecodeError> {
    let (max_groups, max_data) = match dir {
        Direction::ToDaemon => (MAX_GROUPS_PER_MESSAGE, MAX_MESSAGE_BODY_LEN),
        Direction::ToClient => (MAX_DELIVERED_GROUPS, MAX_DELIVERED_DATA_LEN),
    };
    let num_groups = usize::try_from(header.num_groups)
        .ok()
        .filter(|&n| n <= max_groups)
        .ok_or(DecodeError::BadNumGroups(header.num_groups))?;
    let data_len = usize::try_from(header.data_len)
        .ok()
        .filter(|&n| n <= max_data)
        .ok_or(DecodeError::BadDataLen(header.data_len))?;
    let groups_len = num_groups * GROUP_NAME_LEN;
    let extra = match dir {
        Direction::ToClient if header.service.intersects(ServiceType::REJECT_MESS) => 4,
        _ => 0,
    };
    let total = HEADER_LEN + extra + groups_len + data_len;
    if dir == Direction::ToDaemon {
        if data_len + groups_len > MAX_DATA_PLUS_GROUPS {
            return Err(DecodeError::BadDataLen(header.data_len));
        }
        if total > MAX_WIRE_MESSAGE {
            return Err(DecodeError::TooLong(total));
        }
    }
    Ok(total)
}

/// Encodes one whole client→daemon message in little-endian order, as libspread writes a
/// request or a multicast with message type 0: the header (`num_groups` and `data_len` from
/// `groups` and `body`), the group names, the body.
pub fn encode_message(
    service: ServiceType,
    sender: GroupName,
    groups: &[GroupName],
    body: &[u8],
    buf: &mut impl BufMut,
) {
    let header = MessageHeader {
        service,
        sender,
        num_groups: i32::try_from(groups.len()).unwrap_or(i32::MAX),
        hint: Hint::new(0, ByteOrder::Little),
        data_len: i32::try_from(body.len()).unwrap_or(i32::MAX),
        order: ByteOrder::Little,
    };
    encode_header(&header, buf);
    for g in groups {
        g.encode(buf);
    }
    buf.put_slice(body);
}

/// Takes one whole message off the front of `buf`.
///
/// `Ok(None)`: not enough bytes yet (room for the rest has been reserved). `Err`: the
/// announced lengths break the limits of `dir`; nothing was consumed.
pub fn decode_frame(buf: &mut BytesMut, dir: Direction) -> Result<Option<Frame>, DecodeError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let header = decode_header(&mut &head[..])?;
    let total = check_lengths(&header, dir)?;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    let reject_type =
        if dir == Direction::ToClient && header.service.intersects(ServiceType::REJECT_MESS) {
            let mut extra = raw.slice(HEADER_LEN..HEADER_LEN + 4);
            Some(ServiceType(header.order.get_u32(&mut extra)))
        } else {
            None
        };
    debug_assert!(raw.remaining() == total);
    Ok(Some(Frame {
        header,
        reject_type,
        raw,
    }))
}

/// `raw` as exactly one whole message (no copy: the frame shares `raw`'s bytes). `None`: not
/// one valid message of `dir` (too short, lengths over the limits, or bytes left over).
pub fn frame_of(raw: Bytes, dir: Direction) -> Option<Frame> {
    let header = decode_header(&mut raw.get(..HEADER_LEN)?).ok()?;
    let total = check_lengths(&header, dir).ok()?;
    if raw.len() != total {
        return None;
    }
    let reject_type =
        if dir == Direction::ToClient && header.service.intersects(ServiceType::REJECT_MESS) {
            let mut extra = raw.slice(HEADER_LEN..HEADER_LEN + 4);
            Some(ServiceType(header.order.get_u32(&mut extra)))
        } else {
            None
        };
    Some(Frame {
        header,
        reject_type,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::client::header::{encode_header, ByteOrder, Hint};
    use bytes::BufMut;
    use proptest::prelude::*;

    fn message(service: ServiceType, groups: &[&[u8]], body: &[u8], order: ByteOrder) -> Vec<u8> {
        let h = MessageHeader {
            service,
            sender: GroupName::new(b"#a#localhost"),
            num_groups: groups.len() as i32,
            hint: Hint::new(7, order),
            data_len: body.len() as i32,
            order,
        };
        let mut out = Vec::new();
        encode_header(&h, &mut out);
        for g in groups {
            GroupName::new(g).encode(&mut out);
        }
        out.put_slice(body);
        out
    }

    #[test]
    fn a_whole_message_is_framed_without_a_copy_and_anything_else_is_refused() {
        let m = Bytes::from(message(
            ServiceType::AGREED,
            &[b"g"],
            b"body",
            ByteOrder::Little,
        ));
        let f = frame_of(m.clone(), Direction::ToDaemon).unwrap();
        assert_eq!(f.raw.as_ptr(), m.as_ptr());
        let mut buf = BytesMut::from(&m[..]);
        assert_eq!(
            decode_frame(&mut buf, Direction::ToDaemon)
                .unwrap()
                .unwrap(),
            f
        );
        let mut longer = m.to_vec();
        longer.push(0);
        assert!(frame_of(Bytes::from(longer), Direction::ToDaemon).is_none());
        assert!(frame_of(m.slice(..m.len() - 1), Direction::ToDaemon).is_none());
        assert!(frame_of(m.slice(..10), Direction::ToDaemon).is_none());
    }

    #[test]
    fn encode_message_frames_back_to_its_parts() {
        let groups = [GroupName::new(b"g1"), GroupName::new(b"g2")];
        let mut out = Vec::new();
        let me = GroupName::new(b"#a#localhost");
        encode_message(ServiceType::FIFO, me, &groups, b"body", &mut out);
        let mut buf = BytesMut::from(&out[..]);
        let f = decode_frame(&mut buf, Direction::ToDaemon)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!((f.header.service, f.header.sender), (ServiceType::FIFO, me));
        assert_eq!(f.groups().collect::<Vec<_>>(), groups);
        assert_eq!(&f.body()[..], b"body");
    }

    #[test]
    fn frames_a_pipelined_stream_byte_by_byte() {
        let mut stream = message(
            ServiceType::AGREED,
            &[b"g1", b"g2"],
            b"hello",
            ByteOrder::Little,
        );
        stream.extend(message(
            ServiceType::JOIN_MESS,
            &[b"g3"],
            b"",
            ByteOrder::Big,
        ));
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for b in &stream {
            buf.put_u8(*b);
            while let Some(f) = decode_frame(&mut buf, Direction::ToDaemon).unwrap() {
                frames.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(frames.len(), 2);
        let groups: Vec<_> = frames[0].groups().map(|g| g.text().to_vec()).collect();
        assert_eq!(groups, vec![b"g1".to_vec(), b"g2".to_vec()]);
        assert_eq!(&frames[0].body()[..], b"hello");
        assert_eq!(frames[1].header.order, ByteOrder::Big);
        assert_eq!(frames[1].group(0).unwrap().text(), b"g3");
        assert_eq!(frames[1].group(1), None);
        assert_eq!(frames[1].body().len(), 0);
    }

    #[test]
    fn limits_match_5_0_1() {
        let mk = |ng: i32, dl: i32| MessageHeader {
            service: ServiceType::RELIABLE,
            sender: GroupName::new(b"#a#b"),
            num_groups: ng,
            hint: Hint::DAEMON,
            data_len: dl,
            order: ByteOrder::Little,
        };
        let d = Direction::ToDaemon;
        assert_eq!(check_lengths(&mk(1, 143_120), d), Ok(143_200));
        assert_eq!(
            check_lengths(&mk(1, 143_121), d),
            Err(DecodeError::TooLong(143_201))
        );
        assert_eq!(
            check_lengths(&mk(1, 143_921), d),
            Err(DecodeError::BadDataLen(143_921))
        );
        assert_eq!(
            check_lengths(&mk(101, 0), d),
            Err(DecodeError::BadNumGroups(101))
        );
        assert_eq!(
            check_lengths(&mk(-1, 0), d),
            Err(DecodeError::BadNumGroups(-1))
        );
        assert_eq!(
            check_lengths(&mk(1, -5), d),
            Err(DecodeError::BadDataLen(-5))
        );
        assert_eq!(check_lengths(&mk(100, 0), d), Ok(48 + 3200));
        assert_eq!(
            check_lengths(&mk(3000, 56), Direction::ToClient),
            Ok(48 + 96_000 + 56)
        );
    }

    #[test]
    fn reject_frame_has_extra_type_word() {
        let mut raw = message(
            ServiceType::REJECT_MESS | ServiceType::AGREED,
            &[b"g1"],
            b"xy",
            ByteOrder::Little,
        );
        // Insert the original type after the header.
        let tail = raw.split_off(HEADER_LEN);
        raw.put_u32_le(0x8000_0090);
        raw.extend(tail);
        let mut buf = BytesMut::from(&raw[..]);
        let f = decode_frame(&mut buf, Direction::ToClient)
            .unwrap()
            .unwrap();
        assert_eq!(f.reject_type, Some(ServiceType(0x8000_0090)));
        assert_eq!(f.group(0).unwrap().text(), b"g1");
        assert_eq!(&f.body()[..], b"xy");
    }

    proptest! {
        #[test]
        fn framer_never_panics_and_consumes_whole_frames(
            b in proptest::collection::vec(any::<u8>(), 0..400),
            to_client in any::<bool>(),
        ) {
            let dir = if to_client { Direction::ToClient } else { Direction::ToDaemon };
            let mut buf = BytesMut::from(&b[..]);
            let mut consumed = 0;
            for _ in 0..b.len() + 1 {
                match decode_frame(&mut buf, dir) {
                    Ok(Some(f)) => {
                        consumed += f.raw.len();
                        prop_assert!(f.raw.len() >= HEADER_LEN);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert_eq!(consumed + buf.len(), b.len());
        }

        #[test]
        fn frame_round_trips(
            groups in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..31), 0..5),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            le in any::<bool>(),
        ) {
            let order = if le { ByteOrder::Little } else { ByteOrder::Big };
            let gs: Vec<&[u8]> = groups.iter().map(|g| &g[..]).collect();
            let raw = message(ServiceType::SAFE, &gs, &body, order);
            let mut buf = BytesMut::from(&raw[..]);
            let f = decode_frame(&mut buf, Direction::ToDaemon).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&f.raw[..], &raw[..]);
            prop_assert_eq!(&f.body()[..], &body[..]);
            let back: Vec<Vec<u8>> = f.groups().map(|g| g.text().to_vec()).collect();
            prop_assert_eq!(back, groups);
        }
    }
}
