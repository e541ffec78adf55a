//! Connect handshake: hello, authentication list, authentication choice, accept or reject.
//!
//! The daemon-side decoders take the bytes received so far as a slice and return how many
//! they consumed, so a caller can keep unread bytes buffered (`Ok(None)` = need more).

use bytes::BufMut;
use thiserror::Error;

use super::{AUTH_CHOICE_LEN, MAX_AUTH_METHODS, MAX_AUTH_NAME, MAX_PRIVATE_NAME};

/// A library or daemon version, each byte signed as in the C code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major version.
    pub major: i8,
    /// Minor version.
    pub minor: i8,
    /// Patch version (0 when the peer did not send one).
    pub patch: i8,
}

impl Version {
    /// Spread / libspread 5.0.1.
    pub const V5_0_1: Self = Self {
        major: 5,
        minor: 0,
        patch: 1,
    };

    /// `major*10000 + minor*100 + patch`.
    pub fn number(self) -> i32 {
        i32::from(self.major) * 10_000 + i32::from(self.minor) * 100 + i32::from(self.patch)
    }

    /// True if a hello with this major/minor carries a patch byte (library newer than 3.14).
    pub fn hello_has_patch(major: i8, minor: i8) -> bool {
        i32::from(major) * 10_000 + i32::from(minor) * 100 > 31_400
    }

    /// True if a library of this version does the authentication exchange (≥ 3.16.0).
    pub fn has_auth_exchange(self) -> bool {
        self.number() >= 31_600
    }

    /// True if the accept sent to a library of this version carries the patch byte (≥ 3.15.0).
    pub fn accept_has_patch(self) -> bool {
        self.number() >= 31_500
    }

    /// True if the daemon accepts a library of this version at all (≥ 3.1.0).
    pub fn is_supported(self) -> bool {
        self.number() >= 30_100
    }
}

/// Connect-time reject codes that travel as the single reject byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// −3: too many sessions.
    Quota,
    /// −4: defined, never sent by 5.0.1.
    NoName,
    /// −5: bad private name.
    IllegalName,
    /// −6: private name already in use.
    NotUnique,
    /// −7: library too old.
    Version,
    /// −9: authentication or access control refused.
    Auth,
}

impl RejectCode {
    /// The code as the signed wire value.
    pub fn code(self) -> i8 {
        match self {
            Self::Quota => -3,
            Self::NoName => -4,
            Self::IllegalName => -5,
            Self::NotUnique => -6,
            Self::Version => -7,
            Self::Auth => -9,
        }
    }

    /// The single byte on the wire.
    pub fn byte(self) -> u8 {
        self.code() as u8
    }

    /// The code for a signed wire value, if it is one of the reject codes.
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            -3 => Self::Quota,
            -4 => Self::NoName,
            -5 => Self::IllegalName,
            -6 => Self::NotUnique,
            -7 => Self::Version,
            -9 => Self::Auth,
            _ => return None,
        })
    }
}

/// A client hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Library version (patch 0 when not sent).
    pub version: Version,
    /// Flags byte: bit 0 = wants membership messages, bits 4..7 = priority.
    pub flags: u8,
    /// Requested private name (empty = let the daemon invent one).
    pub name: Vec<u8>,
}

impl Hello {
    /// A hello as libspread 5.0.1 sends it.
    pub fn new(name: &[u8], membership: bool, priority: bool) -> Self {
        Self {
            version: Version::V5_0_1,
            flags: u8::from(membership) | if priority { 0x10 } else { 0 },
            name: name.to_vec(),
        }
    }

    /// The daemon's rule: `(signed)flags % 2 == 1`, so a flags byte ≥ 0x80 means "no".
    pub fn wants_membership(&self) -> bool {
        (self.flags as i8) % 2 == 1
    }
}

/// Why a hello is refused (each maps to one reject byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HelloError {
    /// Library older than 3.1.0 (or a negative version byte): `REJECT_VERSION`.
    #[error("unsupported library version")]
    Version,
    /// Name length out of 0..=10, name bytes received ≠ name length, or a byte outside
    /// `0x24..=0x7E`: `REJECT_ILLEGAL_NAME`.
    #[error("illegal private name")]
    IllegalName,
}

impl HelloError {
    /// The reject code to send.
    pub fn reject_code(self) -> RejectCode {
        match self {
            Self::Version => RejectCode::Version,
            Self::IllegalName => RejectCode::IllegalName,
        }
    }
}

/// True if `b` may appear in a private name (`0x24..=0x7E`).
pub fn is_private_name_byte(b: u8) -> bool {
    (0x24..=0x7e).contains(&b)
}

/// Daemon side: parses a hello from the bytes received so far.
///
/// 5.0.1 reads the name with one read of up to 10 bytes as soon as the fixed part is in; we
/// mirror that: once version, flags and length are present, the name is whatever of the rest
/// is available (at most 10 bytes), and it must be exactly `name_len` bytes. Returns the hello
/// and the number of bytes consumed, `Ok(None)` if the fixed part is incomplete.
pub fn decode_hello(input: &[u8]) -> Result<Option<(Hello, usize)>, HelloError> {
    let (Some(&major), Some(&minor)) = (input.first(), input.get(1)) else {
        return Ok(None);
    };
    let (major, minor) = (major as i8, minor as i8);
    let mut pos = 2;
    let mut patch = 0i8;
    if Version::hello_has_patch(major, minor) {
        let Some(&p) = input.get(pos) else {
            return Ok(None);
        };
        patch = p as i8;
        pos += 1;
    }
    let version = Version {
        major,
        minor,
        patch,
    };
    if !version.is_supported() {
        return Err(HelloError::Version);
    }
    let (Some(&flags), Some(&name_len)) = (input.get(pos), input.get(pos + 1)) else {
        return Ok(None);
    };
    pos += 2;
    let name_len = usize::try_from(name_len as i8)
        .ok()
        .filter(|&n| n <= MAX_PRIVATE_NAME)
        .ok_or(HelloError::IllegalName)?;
    let mut name = Vec::new();
    if name_len > 0 {
        let rest = input.get(pos..).unwrap_or_default();
        let got = rest.len().min(MAX_PRIVATE_NAME);
        if got != name_len {
            return Err(HelloError::IllegalName);
        }
        name.extend_from_slice(rest.get(..got).unwrap_or_default());
        if !name.iter().all(|&b| is_private_name_byte(b)) {
            return Err(HelloError::IllegalName);
        }
        pos += got;
    }
    Ok(Some((
        Hello {
            version,
            flags,
            name,
        },
        pos,
    )))
}

/// Client side: writes a hello (the patch byte only for libraries newer than 3.14).
/// The name is cut to 10 bytes.
pub fn encode_hello(hello: &Hello, buf: &mut impl BufMut) {
    let v = hello.version;
    buf.put_u8(v.major as u8);
    buf.put_u8(v.minor as u8);
    if Version::hello_has_patch(v.major, v.minor) {
        buf.put_u8(v.patch as u8);
    }
    let name = hello.name.get(..MAX_PRIVATE_NAME).unwrap_or(&hello.name);
    buf.put_u8(hello.flags);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name);
}

/// Daemon side: the list of enabled methods, each followed by one space, after a length byte.
/// At most [`MAX_AUTH_METHODS`] names of at most [`MAX_AUTH_NAME`] bytes are written.
pub fn encode_auth_list<S: AsRef<[u8]>>(methods: &[S], buf: &mut impl BufMut) {
    let mut text = Vec::new();
    for m in methods.iter().take(MAX_AUTH_METHODS) {
        let m = m.as_ref();
        text.extend_from_slice(m.get(..MAX_AUTH_NAME).unwrap_or(m));
        text.push(b' ');
    }
    buf.put_u8(text.len() as u8);
    buf.put_slice(&text);
}

/// What the daemon answered to a hello (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthListReply {
    /// The enabled methods.
    Methods(Vec<String>),
    /// A single negative byte: the connection was refused with this code.
    Rejected(i8),
}

/// Client side: parses the auth list (or a reject byte). Returns the reply and the bytes used.
pub fn decode_auth_list(input: &[u8]) -> Option<(AuthListReply, usize)> {
    let &len = input.first()?;
    if (len as i8) < 0 {
        return Some((AuthListReply::Rejected(len as i8), 1));
    }
    let len = usize::from(len);
    let text = input.get(1..1 + len)?;
    let methods = text
        .split(|&b| b == b' ')
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    Some((AuthListReply::Methods(methods), 1 + len))
}

/// Client side: the 90-byte choice, one method per 30-byte slot (NUL padded).
pub fn encode_auth_choice<S: AsRef<[u8]>>(methods: &[S], buf: &mut impl BufMut) {
    let mut out = [0u8; AUTH_CHOICE_LEN];
    for (slot, m) in out.chunks_mut(MAX_AUTH_NAME).zip(methods) {
        let m = m.as_ref();
        // Keep a NUL in every slot: at most 29 name bytes.
        for (d, s) in slot.iter_mut().zip(m.iter().take(MAX_AUTH_NAME - 1)) {
            *d = *s;
        }
    }
    buf.put_slice(&out);
}

/// Daemon side: the method names of a 90-byte choice, scanning slots until one starts with a
/// NUL (each name cut at its first NUL).
pub fn decode_auth_choice(choice: &[u8; AUTH_CHOICE_LEN]) -> Vec<Vec<u8>> {
    choice
        .chunks(MAX_AUTH_NAME)
        .take_while(|slot| slot.first().is_some_and(|&b| b != 0))
        .map(|slot| slot.iter().copied().take_while(|&b| b != 0).collect())
        .collect()
}

/// Daemon side: `ACCEPT_SESSION`, daemon version (patch byte only for libraries ≥ 3.15) and
/// the private group name (cut to 31 bytes).
pub fn encode_accept(
    daemon: Version,
    client: Version,
    private_group: &[u8],
    buf: &mut impl BufMut,
) {
    buf.put_u8(1);
    buf.put_u8(daemon.major as u8);
    buf.put_u8(daemon.minor as u8);
    if client.accept_has_patch() {
        buf.put_u8(daemon.patch as u8);
    }
    let pg = private_group.get(..31).unwrap_or(private_group);
    buf.put_u8(pg.len() as u8);
    buf.put_slice(pg);
}

/// What the daemon answered to the auth choice (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptReply {
    /// Accepted.
    Accepted {
        /// Daemon version (patch 0 when not sent).
        daemon: Version,
        /// The session's private group name.
        private_group: Vec<u8>,
    },
    /// The first byte was not `ACCEPT_SESSION`: the refusal code.
    Rejected(i8),
    /// Negative version bytes or name length, or a name length ≥ 32 (libspread:
    /// `CONNECTION_CLOSED`).
    Malformed,
}

/// Client side: parses the accept for a library of version `client`. Returns the reply and
/// the bytes used, `None` if more bytes are needed.
pub fn decode_accept(input: &[u8], client: Version) -> Option<(AcceptReply, usize)> {
    let &first = input.first()?;
    if first != 1 {
        return Some((AcceptReply::Rejected(first as i8), 1));
    }
    let mut pos = 1;
    let next = |pos: &mut usize| {
        let b = input.get(*pos).copied();
        *pos += 1;
        b.map(|b| b as i8)
    };
    let major = next(&mut pos)?;
    let minor = next(&mut pos)?;
    let patch = if client.accept_has_patch() {
        next(&mut pos)?
    } else {
        0
    };
    let len = next(&mut pos)?;
    if major < 0 || minor < 0 || patch < 0 || !(0..32).contains(&len) {
        return Some((AcceptReply::Malformed, pos));
    }
    let len = len as usize;
    let name = input.get(pos..pos + len)?;
    Some((
        AcceptReply::Accepted {
            daemon: Version {
                major,
                minor,
                patch,
            },
            private_group: name.to_vec(),
        },
        pos + len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_hellos() {
        let (h, n) = decode_hello(&hex("0500010105616c696365")).unwrap().unwrap();
        assert_eq!(n, 10);
        assert_eq!(h, Hello::new(b"alice", true, false));
        assert!(h.wants_membership());
        // 3.14: no patch byte.
        let (h, n) = decode_hello(&hex("030e010476333134")).unwrap().unwrap();
        assert_eq!((h.version.number(), n), (31_400, 8));
        assert!(!h.version.has_auth_exchange() && !h.version.accept_has_patch());
        let (h, _) = decode_hello(&hex("030f0201057633313532")).unwrap().unwrap();
        assert!(!h.version.has_auth_exchange() && h.version.accept_has_patch());
        // Rejects.
        for v in [
            "020000010476323030",
            "030000010476333030",
            "ff00000104766e6567",
        ] {
            assert_eq!(decode_hello(&hex(v)), Err(HelloError::Version));
        }
        for v in [
            "0500010103612062",
            "0500010103782379",
            "050001010b6162636465666768696a6b",
            "050001010361627f",
            "0500010105616263",
        ] {
            assert_eq!(decode_hello(&hex(v)), Err(HelloError::IllegalName), "{v}");
        }
        // Priority only, no membership; empty name.
        let (h, _) = decode_hello(&hex("0500011000")).unwrap().unwrap();
        assert!(!h.wants_membership() && h.name.is_empty());
        assert!(!Hello { flags: 0x81, ..h }.wants_membership());
        // Incomplete.
        assert_eq!(decode_hello(&hex("0500")), Ok(None));
        assert_eq!(decode_hello(&hex("05000101")), Ok(None));
        // 2.0 is refused after two bytes.
        assert_eq!(decode_hello(&hex("0200")), Err(HelloError::Version));
    }

    #[test]
    fn auth_and_accept_bytes() {
        let mut out = Vec::new();
        encode_auth_list(&["NULL"], &mut out);
        assert_eq!(out, hex("054e554c4c20"));
        assert_eq!(
            decode_auth_list(&out),
            Some((AuthListReply::Methods(vec!["NULL".into()]), 6))
        );
        assert_eq!(
            decode_auth_list(&[0xfa]),
            Some((AuthListReply::Rejected(-6), 1))
        );
        out.clear();
        encode_auth_choice(&["NULL"], &mut out);
        assert_eq!(out.len(), 90);
        assert_eq!(&out[..5], b"NULL\0");
        let choice: [u8; 90] = out.clone().try_into().unwrap();
        assert_eq!(decode_auth_choice(&choice), vec![b"NULL".to_vec()]);
        assert!(decode_auth_choice(&[0; 90]).is_empty());
        out.clear();
        encode_accept(
            Version::V5_0_1,
            Version::V5_0_1,
            b"#alice#localhost",
            &mut out,
        );
        assert_eq!(out, hex("010500011023616c696365236c6f63616c686f7374"));
        let v314 = Version {
            major: 3,
            minor: 14,
            patch: 0,
        };
        out.clear();
        encode_accept(Version::V5_0_1, v314, b"#v314#localhost", &mut out);
        assert_eq!(out, hex("0105000f2376333134236c6f63616c686f7374"));
        assert_eq!(
            decode_accept(&out, v314),
            Some((
                AcceptReply::Accepted {
                    daemon: Version {
                        major: 5,
                        minor: 0,
                        patch: 0
                    },
                    private_group: b"#v314#localhost".to_vec()
                },
                out.len()
            ))
        );
        assert_eq!(
            decode_accept(&[0xf7], Version::V5_0_1),
            Some((AcceptReply::Rejected(-9), 1))
        );
        assert_eq!(decode_accept(&out[..5], v314), None);
        assert_eq!(RejectCode::from_code(-5), Some(RejectCode::IllegalName));
        assert_eq!(RejectCode::Quota.byte(), 0xfd);
    }

    proptest! {
        #[test]
        fn hello_round_trips(
            name in proptest::collection::vec(0x24u8..=0x7e, 0..=10),
            flags in any::<u8>(),
            major in 4i8..=100, minor in 0i8..=99, patch in 0i8..=99,
        ) {
            let h = Hello { version: Version { major, minor, patch }, flags, name };
            let mut out = Vec::new();
            encode_hello(&h, &mut out);
            let (back, n) = decode_hello(&out).unwrap().unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(back, h);
        }

        #[test]
        fn handshake_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(Some((_, n))) = decode_hello(&b) {
                prop_assert!(n <= b.len());
            }
            if let Some((_, n)) = decode_auth_list(&b) {
                prop_assert!(n <= b.len());
            }
            if let Some((_, n)) = decode_accept(&b, Version::V5_0_1) {
                prop_assert!(n <= b.len());
            }
            if let Ok(arr) = <[u8; 90]>::try_from(b.get(..90).unwrap_or_default()) {
                prop_assert!(decode_auth_choice(&arr).len() <= 3);
            }
        }

        #[test]
        fn accept_round_trips(pg in proptest::collection::vec(0x24u8..=0x7e, 0..=31), new_lib in any::<bool>()) {
            let client = if new_lib { Version::V5_0_1 } else { Version { major: 3, minor: 14, patch: 0 } };
            let mut out = Vec::new();
            encode_accept(Version::V5_0_1, client, &pg, &mut out);
            let (reply, n) = decode_accept(&out, client).unwrap();
            prop_assert_eq!(n, out.len());
            let daemon = Version { patch: if new_lib { 1 } else { 0 }, ..Version::V5_0_1 };
            prop_assert_eq!(reply, AcceptReply::Accepted { daemon, private_group: pg });
        }
    }
}
