//! The secure ring's keys: [`LinkKey`], its [`KeyId`], the [`Keyring`] of one or two keys and
//! the key file format.

use std::fmt;

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::{hkdf, hmac};

use super::{BootId, MAX_KEYS};
use crate::ring::DaemonId;

/// HMAC label under which a key's id is computed.
const KEY_ID_LABEL: &[u8] = b"mbus link key id v2";
/// HKDF salt of the run keys.
const RUN_KEY_SALT: &[u8] = b"mbus secure ring v2";

/// Identifies a key without revealing it: the first 8 bytes of HMAC-SHA256(key, a fixed
/// label).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One shared 256-bit link key. Datagrams are not sealed under it directly but under a run
/// key derived from it for each sender's run (`LinkKey::run_key`), so the AEAD's 96-bit
/// nonce can be the run's datagram counter and never repeats under one key.
#[derive(Clone)]
pub struct LinkKey {
    id: KeyId,
    prk: hkdf::Prk,
}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkKey({})", self.id)
    }
}

impl LinkKey {
    /// The key with these bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), KEY_ID_LABEL);
        let mut id = [0u8; 8];
        id.copy_from_slice(tag.as_ref().get(..8).unwrap_or(&[0; 8]));
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, RUN_KEY_SALT).extract(bytes);
        Self { id: KeyId(id), prk }
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The AES-256-GCM key of daemon `sender`'s run `boot`: HKDF-SHA256 of this key, with
    /// the sender's id and the run's epoch and random word as info.
    pub(super) fn run_key(&self, sender: DaemonId, boot: BootId) -> Option<LessSafeKey> {
        let (s, e, r) = (
            sender.0.to_be_bytes(),
            boot.epoch.to_be_bytes(),
            boot.random.to_be_bytes(),
        );
        let info: [&[u8]; 3] = [&s, &e, &r];
        // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 × 32).
        let okm = self.prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// A line is not 64 hexadecimal digits (1-based line number).
    #[error("line {0}: a key is 64 hexadecimal digits (32 bytes)")]
    BadKey(usize),
    /// The same key twice.
    #[error("line {0}: the same key twice")]
    Duplicate(usize),
    /// More than [`MAX_KEYS`] keys.
    #[error("line {0}: at most 2 keys (the sealing key, then the one being rolled in or out)")]
    TooMany(usize),
    /// No key at all.
    #[error("no key (one line of 64 hexadecimal digits; `#` starts a comment)")]
    Empty,
}

/// The keys of the secure ring: the first seals, all open.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub(super) keys: Vec<LinkKey>,
}

impl Keyring {
    /// One key.
    pub fn single(key: &[u8; 32]) -> Self {
        Self {
            keys: vec![LinkKey::new(key)],
        }
    }

    /// The sealing key, then the other accepted ones (1 to [`MAX_KEYS`], distinct).
    pub fn from_keys(keys: &[[u8; 32]]) -> Result<Self, KeyFileError> {
        let mut out: Vec<LinkKey> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let k = LinkKey::new(k);
            if out.iter().any(|o| o.id == k.id) {
                return Err(KeyFileError::Duplicate(i + 1));
            }
            if out.len() == MAX_KEYS {
                return Err(KeyFileError::TooMany(i + 1));
            }
            out.push(k);
        }
        if out.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(Self { keys: out })
    }

    /// Parses a key file: one key per line as 64 hexadecimal digits, the sealing key first;
    /// blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        let mut ids: Vec<KeyId> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = parse_hex_key(line).ok_or(KeyFileError::BadKey(n + 1))?;
            let k = LinkKey::new(&key);
            if ids.contains(&k.id) {
                return Err(KeyFileError::Duplicate(n + 1));
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyFileError::TooMany(n + 1));
            }
            ids.push(k.id);
            keys.push(k);
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(Self { keys })
    }

    /// The sealing key's id.
    pub fn sealing(&self) -> KeyId {
        self.keys.first().map_or(KeyId([0; 8]), |k| k.id)
    }

    /// Every accepted key's id, the sealing key first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    pub(super) fn get(&self, id: KeyId) -> Option<&LinkKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// 64 hexadecimal digits → 32 bytes.
fn parse_hex_key(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let d = |c: &u8| char::from(*c).to_digit(16);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (d(pair.first()?)?, d(pair.get(1)?)?);
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}
