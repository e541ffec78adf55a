//! The secure ring (mbus extension, off by default): every daemon↔daemon datagram sealed with
//! an AEAD (AES-256-GCM from `ring`), replayed and forged datagrams dropped and counted. Plain mode — no [`Link`] — is 5.0.1's wire, byte for byte.
//!
//! # Sealed datagram
//!
//! ```text
//! 0   4  magic "MBS2"
//! 4   8  key id (which shared key sealed it, see KeyId)
//! 12  4  destination daemon id (u32 BE) on the token port; 0 on the data port
//! 16  8  sender's run: boot epoch (u64 BE, wall-clock µs at start)
//! 24  8  sender's run: boot random (u64 BE)
//! 32  8  counter (u64 BE, 1, 2, … per datagram sent by this run)
//! 40  n  the 5.0.1 datagram, encrypted
//! 40+n 16 GCM tag
//! ```
//!
//! The AES-256-GCM key is the sender's run key: HKDF-SHA256 of the shared key with the
//! sender's daemon id, boot epoch and boot random as info (`LinkKey::run_key`); the 96-bit
//! nonce is four zero bytes and the counter. Receivers derive a sender's run key once per run
//! and keep it.
//!
//! The associated data is the 40-byte header, the sender's daemon id (u32 BE: the configured
//! daemon whose address the datagram came from) and the port (0 = P, 1 = P+1): a sealed
//! datagram re-sent from another daemon's address or to the other port does not open, and a
//! token-port datagram (token, FORM1, FORM2: each for one daemon) re-sent to another daemon is
//! dropped as misdirected. Data-port datagrams (data, ALIVE, JOIN, REFER, GROUPS) are for
//! every daemon: their copies — a loopback segment's unicasts, ROUTED copies — are one sealed
//! datagram, so a copy replayed to another daemon is a replay.
//!
//! # Nonces and replay
//!
//! A nonce never repeats under one key: within a run the counter only grows, and each run has
//! a new boot id (wall-clock epoch plus 64 random bits, chosen by the shell), hence its own
//! run key. Each receiver keeps, per
//! sender, the boot id it last accepted and a window of [`WINDOW`] counters: a counter already
//! seen, or older than the window, is dropped as replayed. A boot id with a later epoch is the
//! sender's new run (window reset); an earlier or equal epoch is a replay of an old run and is
//! dropped — unless the sender's current run has been silent for [`STALE_BOOT_GRACE`] (its
//! clock may have been stepped back across a restart). The tag is verified first, so forged
//! datagrams are counted as forged and never move a window.
//!
//! # Keys
//!
//! A [`Keyring`] holds one or two 256-bit keys: the first seals, every one opens. Rolling a
//! key without stopping the ring: every daemon gets `OLD NEW` (seal old, open both), then
//! `NEW OLD`, then `NEW` (docs/security.md). A datagram sealed under a key id this daemon does
//! not hold is dropped and said once per sender in the log: that daemon has another key and
//! never joins.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag};

mod keys;
pub use keys::{KeyFileError, KeyId, Keyring, LinkKey};

use crate::daemon::{Target, Transmit};
use crate::ring::{DaemonId, Port};
use crate::time::Instant;

/// First bytes of a sealed datagram.
pub const MAGIC: [u8; 4] = *b"MBS2";
/// Header bytes before the ciphertext: magic, key id, destination, run, counter.
pub const HEADER_LEN: usize = 4 + 8 + 4 + 24;
/// Where the sender's run starts in the header (the counter follows it).
const BOOT_AT: usize = 16;
/// Destination of a segment broadcast.
pub const BROADCAST: DaemonId = DaemonId(0);
/// Authentication tag bytes after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to the 5.0.1 datagram.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Keys a [`Keyring`] holds at most (the current one and, during a rollover, one other).
pub const MAX_KEYS: usize = 2;
/// Counters of one sender remembered behind its highest one.
pub const WINDOW: u64 = 1024;
/// Silence of a sender's current run after which a boot id with an earlier epoch is taken as
/// its new run (a clock stepped back across a restart) instead of a replay.
pub const STALE_BOOT_GRACE: Duration = Duration::from_secs(60);

/// A daemon run: the wall clock at start and a random word (the shell draws it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootId {
    /// Wall-clock microseconds since the Unix epoch when the run started.
    pub epoch: u64,
    /// Random, so that two runs never share a nonce even with the same epoch.
    pub random: u64,
}

/// Counters of the secure ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams sealed.
    pub sealed: u64,
    /// Datagrams opened (authentic, fresh).
    pub opened: u64,
    /// Plain (unsealed) datagrams dropped.
    pub plain: u64,
    /// Sealed datagrams too short to hold a header and a tag.
    pub malformed: u64,
    /// Datagrams sealed under a key this daemon does not hold.
    pub unknown_key: u64,
    /// Datagrams whose tag did not verify (altered, forged, or re-sent from another address
    /// or to the other port).
    pub forged: u64,
    /// Datagrams already seen, or older than the window.
    pub replayed: u64,
    /// Authentic unicasts for another daemon (re-sent to me by someone on the path).
    pub misdirected: u64,
    /// Datagrams of a sender's earlier run.
    pub stale_boot: u64,
}

impl LinkStats {
    /// Every datagram dropped.
    pub fn dropped(&self) -> u64 {
        self.plain
            + self.malformed
            + self.unknown_key
            + self.forged
            + self.replayed
            + self.misdirected
            + self.stale_boot
    }
}

/// Why [`Link::open`] dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkDrop {
    /// Not sealed.
    Plain,
    /// Sealed but too short.
    Malformed,
    /// Sealed under a key I do not hold.
    UnknownKey(KeyId),
    /// The tag did not verify.
    Forged,
    /// Seen already, or older than the window.
    Replayed,
    /// An authentic unicast for another daemon.
    Misdirected,
    /// From a sender's earlier run.
    StaleBoot,
}

/// The header fields of a sealed datagram ([`decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The key it claims to be sealed with.
    pub key: KeyId,
    /// The daemon it is for ([`BROADCAST`]: every daemon of the sender's segment).
    pub to: DaemonId,
    /// The sender's run.
    pub boot: BootId,
    /// The sender's datagram counter.
    pub counter: u64,
    /// Ciphertext and tag.
    pub body: &'a [u8],
}

/// Splits a datagram into the sealed header fields (no authentication: see [`Link::open`]).
pub fn decode(bytes: &[u8]) -> Result<Sealed<'_>, LinkDrop> {
    if bytes.get(..4) != Some(&MAGIC[..]) {
        return Err(LinkDrop::Plain);
    }
    if bytes.len() < OVERHEAD {
        return Err(LinkDrop::Malformed);
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes.get(i..i + 8).unwrap_or(&[0; 8]));
        u64::from_be_bytes(b)
    };
    let mut key = [0u8; 8];
    key.copy_from_slice(bytes.get(4..12).unwrap_or(&[0; 8]));
    let mut to = [0u8; 4];
    to.copy_from_slice(bytes.get(12..16).unwrap_or(&[0; 4]));
    Ok(Sealed {
        key: KeyId(key),
        to: DaemonId(u32::from_be_bytes(to)),
        boot: BootId {
            epoch: u64_at(BOOT_AT),
            random: u64_at(BOOT_AT + 8),
        },
        counter: u64_at(BOOT_AT + 16),
        body: bytes.get(HEADER_LEN..).unwrap_or_default(),
    })
}

/// The associated data: header, sender, port.
fn aad(header: &[u8], from: DaemonId, port: Port) -> [u8; HEADER_LEN + 5] {
    let mut a = [0u8; HEADER_LEN + 5];
    if let Some(h) = a.get_mut(..HEADER_LEN) {
        h.copy_from_slice(header.get(..HEADER_LEN).unwrap_or(&[0; HEADER_LEN]));
    }
    if let Some(s) = a.get_mut(HEADER_LEN..HEADER_LEN + 4) {
        s.copy_from_slice(&from.0.to_be_bytes());
    }
    if let Some(p) = a.get_mut(HEADER_LEN + 4) {
        *p = u8::from(port == Port::Token);
    }
    a
}

/// The AEAD nonce of datagram `counter` of a run.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    if let Some(c) = n.get_mut(4..) {
        c.copy_from_slice(&counter.to_be_bytes());
    }
    Nonce::assume_unique_for_key(n)
}

/// What a receiver remembers of one sender.
#[derive(Debug, Clone)]
struct PeerWindow {
    boot: BootId,
    /// The run keys of `boot` derived so far, by shared key.
    keys: Vec<(KeyId, LessSafeKey)>,
    /// Highest counter accepted.
    top: u64,
    /// Bit `c % WINDOW` set: counter `c` (within the window below `top`) was accepted.
    seen: [u64; (WINDOW / 64) as usize],
    /// When a datagram of this run was last accepted.
    last: Instant,
}

impl PeerWindow {
    fn bit(c: u64) -> (usize, u64) {
        let i = c % WINDOW;
        (usize::try_from(i / 64).unwrap_or(0), 1u64 << (i % 64))
    }

    fn fresh(&self, c: u64) -> bool {
        if c > self.top {
            return true;
        }
        if self.top - c >= WINDOW {
            return false;
        }
        let (w, b) = Self::bit(c);
        self.seen.get(w).is_some_and(|x| x & b == 0)
    }

    fn mark(&mut self, c: u64) {
        if c > self.top {
            if c - self.top >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for x in self.top + 1..c {
                    let (w, b) = Self::bit(x);
                    if let Some(s) = self.seen.get_mut(w) {
                        *s &= !b;
                    }
                }
            }
            self.top = c;
        }
        let (w, b) = Self::bit(c);
        if let Some(s) = self.seen.get_mut(w) {
            *s |= b;
        }
    }
}

/// One reason a sender's datagrams are dropped, said once in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Told {
    Plain,
    UnknownKey,
    Forged,
    Replayed,
    StaleBoot,
}

/// This daemon's end of the secure ring: seals what it sends, opens what it receives.
#[derive(Debug, Clone)]
pub struct Link {
    me: DaemonId,
    keys: Keyring,
    boot: BootId,
    counter: u64,
    /// My run key under the sealing key.
    seal_key: Option<LessSafeKey>,
    peers: BTreeMap<DaemonId, PeerWindow>,
    stats: LinkStats,
    told: BTreeSet<(DaemonId, Told)>,
    /// The last data-port datagram sealed (plain, sealed): its other copies reuse it.
    last: Option<(Bytes, Bytes)>,
}

/// The secure-ring part of the daemon settings.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The shared keys.
    pub keys: Keyring,
    /// This run's boot id (the shell draws the random word).
    pub boot: BootId,
}

impl Link {
    /// Daemon `me`'s link for the run `boot`.
    pub fn new(me: DaemonId, settings: LinkSettings) -> Self {
        let seal_key = settings
            .keys
            .keys
            .first()
            .and_then(|k| k.run_key(me, settings.boot));
        Self {
            me,
            keys: settings.keys,
            boot: settings.boot,
            counter: 0,
            seal_key,
            peers: BTreeMap::new(),
            stats: LinkStats::default(),
            told: BTreeSet::new(),
            last: None,
        }
    }

    /// Replaces the keys (a rollover step); the run and the replay windows stay.
    pub fn set_keys(&mut self, keys: Keyring) {
        tracing::info!(
            sealing = %keys.sealing(),
            accepted = ?keys.ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "secure ring: link keys loaded"
        );
        self.seal_key = keys
            .keys
            .first()
            .and_then(|k| k.run_key(self.me, self.boot));
        self.keys = keys;
        for p in self.peers.values_mut() {
            p.keys.clear();
        }
        self.told.clear();
    }

    /// The keys in use.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Seals a datagram the daemon sends: a token-port one for its one destination, a
    /// data-port one for all (copies of the same datagram — the same buffer — sealed once).
    pub fn seal_transmit(&mut self, t: &Transmit) -> Bytes {
        match (t.port, t.to) {
            (Port::Token, Target::Daemon(d)) => self.seal(d, t.port, &t.bytes),
            (Port::Token, Target::Segment) => self.seal(BROADCAST, t.port, &t.bytes),
            (Port::Data, _) => {
                if let Some((plain, sealed)) = &self.last {
                    if plain.as_ptr() == t.bytes.as_ptr() && plain.len() == t.bytes.len() {
                        return sealed.clone();
                    }
                }
                let sealed = self.seal(BROADCAST, Port::Data, &t.bytes);
                self.last = Some((t.bytes.clone(), sealed.clone()));
                sealed
            }
        }
    }

    /// Seals a 5.0.1 datagram for daemon `to` ([`BROADCAST`]: my segment) on `port` under
    /// the sealing key.
    pub fn seal(&mut self, to: DaemonId, port: Port, plain: &[u8]) -> Bytes {
        self.counter = self.counter.saturating_add(1);
        let mut out = BytesMut::with_capacity(plain.len() + OVERHEAD);
        out.put_slice(&MAGIC);
        out.put_slice(&self.keys.sealing().0);
        out.put_u32(to.0);
        out.put_u64(self.boot.epoch);
        out.put_u64(self.boot.random);
        out.put_u64(self.counter);
        let ad = aad(&out, self.me, port);
        out.put_slice(plain);
        let Some(key) = &self.seal_key else {
            return out.freeze();
        };
        let mut body = out.split_off(HEADER_LEN);
        // In-place encryption cannot fail for a datagram (GCM's limit is about 64 GB).
        let tag = key
            .seal_in_place_separate_tag(nonce(self.counter), Aad::from(&ad), &mut body[..])
            .map_or([0; TAG_LEN], |t| {
                let mut a = [0; TAG_LEN];
                a.copy_from_slice(t.as_ref());
                a
            });
        out.unsplit(body);
        out.put_slice(&tag);
        self.stats.sealed += 1;
        out.freeze()
    }

    /// Opens a datagram that came from configured daemon `from`'s address on `port`: the
    /// 5.0.1 datagram inside, or why it was dropped (counted; the first of each reason per
    /// sender is logged).
    pub fn open(
        &mut self,
        now: Instant,
        from: DaemonId,
        port: Port,
        bytes: &[u8],
    ) -> Result<Bytes, LinkDrop> {
        let r = self.try_open(now, from, port, bytes);
        if let Err(e) = r {
            self.count(from, e);
        } else {
            self.stats.opened += 1;
        }
        r
    }

    fn try_open(
        &mut self,
        now: Instant,
        from: DaemonId,
        port: Port,
        bytes: &[u8],
    ) -> Result<Bytes, LinkDrop> {
        let s = decode(bytes)?;
        let key = self.keys.get(s.key).ok_or(LinkDrop::UnknownKey(s.key))?;
        let for_me = s.to == BROADCAST || s.to == self.me;
        let split = s.body.len().saturating_sub(TAG_LEN);
        let (ct, tag) = s.body.split_at(split);
        let ad = aad(bytes, from, port);
        let tag = Tag::try_from(tag).map_err(|_| LinkDrop::Malformed)?;
        // The sender's run key: kept from an earlier datagram of this run, or derived now
        // (and kept only once the datagram proves authentic).
        let kept = self
            .peers
            .get(&from)
            .filter(|p| p.boot == s.boot)
            .and_then(|p| p.keys.iter().find(|(id, _)| *id == s.key))
            .map(|(_, k)| k);
        let derived = match kept {
            Some(_) => None,
            None => Some(key.run_key(from, s.boot).ok_or(LinkDrop::Forged)?),
        };
        let run_key = kept.or(derived.as_ref()).ok_or(LinkDrop::Forged)?;
        let mut buf = BytesMut::from(ct);
        run_key
            .open_in_place_separate_tag(nonce(s.counter), Aad::from(&ad), tag, &mut buf[..], 0..)
            .map_err(|_| LinkDrop::Forged)?;
        let new_run = match self.peers.get(&from) {
            None => true,
            Some(p) if p.boot == s.boot => {
                if !p.fresh(s.counter) {
                    return Err(LinkDrop::Replayed);
                }
                false
            }
            Some(p) if s.boot.epoch > p.boot.epoch => true,
            Some(p) => {
                if now.saturating_since(p.last) < STALE_BOOT_GRACE {
                    return Err(LinkDrop::StaleBoot);
                }
                true
            }
        };
        if !for_me {
            // Authentic, but a copy of someone else's unicast: neither accepted nor marked
            // (the real destination's window is its own).
            return Err(LinkDrop::Misdirected);
        }
        if new_run {
            self.peers.insert(
                from,
                PeerWindow {
                    boot: s.boot,
                    keys: Vec::new(),
                    top: 0,
                    seen: [0; (WINDOW / 64) as usize],
                    last: now,
                },
            );
        }
        if let Some(p) = self.peers.get_mut(&from) {
            p.mark(s.counter);
            p.last = now;
            if let Some(k) = derived {
                p.keys.retain(|(id, _)| *id != s.key);
                p.keys.truncate(MAX_KEYS - 1);
                p.keys.push((s.key, k));
            }
        }
        Ok(buf.freeze())
    }

    fn count(&mut self, from: DaemonId, e: LinkDrop) {
        let st = &mut self.stats;
        let told = match e {
            LinkDrop::Plain => {
                st.plain += 1;
                Told::Plain
            }
            LinkDrop::Malformed => {
                st.malformed += 1;
                Told::Forged
            }
            LinkDrop::UnknownKey(_) => {
                st.unknown_key += 1;
                Told::UnknownKey
            }
            LinkDrop::Forged => {
                st.forged += 1;
                Told::Forged
            }
            LinkDrop::Replayed => {
                st.replayed += 1;
                Told::Replayed
            }
            LinkDrop::Misdirected => {
                st.misdirected += 1;
                Told::Replayed
            }
            LinkDrop::StaleBoot => {
                st.stale_boot += 1;
                Told::StaleBoot
            }
        };
        if !self.told.insert((from, told)) {
            return;
        }
        match e {
            LinkDrop::Plain => tracing::warn!(
                %from,
                "secure ring: plain datagram from daemon {from} dropped — it runs without the \
                 secure ring (a 5.0.1 daemon, or mbus without the link key); it cannot join \
                 (further ones only counted)"
            ),
            LinkDrop::UnknownKey(id) => tracing::warn!(
                %from,
                "secure ring: daemon {from} seals with link key {id}, which is not one of mine \
                 ({}); it has a different key and cannot join (further ones only counted)",
                self.keys
                    .ids()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LinkDrop::Forged | LinkDrop::Malformed => tracing::warn!(
                %from,
                "secure ring: datagram from {from}'s address failed authentication (forged or \
                 altered) and was dropped (further ones only counted)"
            ),
            LinkDrop::Replayed | LinkDrop::Misdirected => tracing::warn!(
                %from,
                "secure ring: replayed or misdirected datagram from {from}'s address dropped \
                 (further ones only counted)"
            ),
            LinkDrop::StaleBoot => tracing::warn!(
                %from,
                "secure ring: datagram of an earlier run of {from} dropped (replay of an old \
                 capture?; further ones only counted)"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
