//! Messages between `eccmgr` and node agents (fact sheet §8 item 1: our own, versioned format).
//!
//! The Spread `mess_type` tells kinds apart; the body starts with a version byte, then fields
//! in big-endian order; strings are a `u32` length and UTF-8 bytes. Every length is checked
//! against the bytes left and against [`MAX_MESSAGE`] before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest message a real Spread 5.0.1 daemon carries, header and group names included.
pub const MAX_MESSAGE: usize = 143_200;
/// Bytes of response text per chunk; with the header, command text ([`MAX_LINE`]) and group
/// names a chunk stays well below [`MAX_MESSAGE`].
///
/// [`MAX_LINE`]: crate::console::MAX_LINE
pub const CHUNK_BYTES: usize = 100_000;
/// Most chunks one response may have (bounds reassembly memory: about 100 MB).
pub const MAX_CHUNKS: u16 = 1000;
/// Body format version.
pub const VERSION: u8 = 1;

/// `mess_type` of a console command sent by the manager.
pub const MT_COMMAND: i16 = 0x6301;
/// `mess_type` of a (chunk of a) command response.
pub const MT_RESPONSE: i16 = 0x6302;
/// `mess_type` of a member's self-description.
pub const MT_DESCRIBE: i16 = 0x6303;
/// `mess_type` of a DuraVIP view announcement.
pub const MT_VIEW: i16 = 0x6304;
/// `mess_type` of a DuraVIP move.
pub const MT_MOVE: i16 = 0x6305;

/// `mess_type` of a replicated-object snapshot (one sender's contribution).
pub const MT_SHARED: i16 = 0x6306;
/// Most keys in one replicated-object snapshot.
pub const MAX_SHARED_KEYS: usize = 1024;

/// `mess_type` of a manager's log subscription (as_logger configured).
pub const MT_LOG_SUBSCRIBE: i16 = 0x6307;
/// `mess_type` of a batch of shipped log lines.
pub const MT_LOG_BATCH: i16 = 0x6308;
/// `mess_type` of the manager's acknowledgement of written log bytes.
pub const MT_LOG_ACK: i16 = 0x6309;
/// Most lines in one log batch.
pub const MAX_BATCH_LINES: usize = 1024;

/// A malformed bus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Ran out of bytes.
    #[error("message truncated")]
    Truncated,
    /// Unknown body version.
    #[error("unsupported message version {0}")]
    Version(u8),
    /// A length field is too large.
    #[error("length {0} out of range")]
    Length(u64),
    /// Text is not UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// Unknown message type.
    #[error("unknown message type {0:#x}")]
    Type(i16),
    /// Bytes left after the last field.
    #[error("trailing bytes")]
    Trailing,
}

/// Role of a cluster-group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeType {
    /// A node (MTA) with the cluster module — shown as `Momentum`.
    Node,
    /// The cluster manager.
    Manager,
}

/// A member's self-description, multicast on the cluster group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    /// Node or manager.
    pub node_type: NodeType,
    /// Node name (empty for the manager).
    pub node: String,
    /// Subcluster (empty for the manager).
    pub subcluster: String,
    /// Version string.
    pub version: String,
    /// Cluster service address `ip:port`.
    pub address: String,
    /// Groups joined.
    pub groups: Vec<String>,
}

/// Kind of a DuraVIP entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// A MultiVIP binding.
    Binding,
    /// A listener.
    Listener,
}

/// One DuraVIP a node has configured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipEntry {
    /// The address.
    pub ip: String,
    /// Binding or listener names on it, sorted.
    pub names: Vec<String>,
    /// Entity kind.
    pub kind: EntryKind,
    /// `Duravip_Preference` node.
    pub preference: Option<String>,
    /// `Duravip_Follow` binding name or IP (listeners).
    pub follow: Option<String>,
}

/// A message on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Console command from the manager; the answer goes to the sender's private group.
    Command {
        /// Request id (echoed in the response).
        req_id: u64,
        /// The command line.
        text: String,
    },
    /// One chunk of a response.
    Response {
        /// Request id.
        req_id: u64,
        /// Command text (the cache key).
        command: String,
        /// Answering node.
        node: String,
        /// Chunk index, from 0.
        chunk: u16,
        /// Number of chunks.
        chunks: u16,
        /// Text of this chunk.
        data: String,
    },
    /// Self-description.
    Describe(Describe),
    /// DuraVIP view of one node.
    View {
        /// Announcing node.
        node: String,
        /// Its configured DuraVIPs.
        entries: Vec<VipEntry>,
        /// VIPs this node holds by a manual move: IP and claim number (highest wins).
        claims: Vec<(String, u64)>,
    },
    /// DuraVIP move.
    Move {
        /// IP or binding name.
        vip: String,
        /// Target node.
        node: String,
    },
    /// The sender's whole contribution to a replicated gauge table (replaces its previous
    /// one when delivered; every node applies these in the agreed order).
    Shared {
        /// Object name.
        object: String,
        /// Sending node.
        node: String,
        /// Keys and values, at most [`MAX_SHARED_KEYS`].
        entries: Vec<(String, i64)>,
    },
    /// A manager with `as_logger` wants the nodes' logs (multicast on the cluster group).
    LogSubscribe {
        /// Subscriber name shown in `cluster show logs`.
        subscriber: String,
    },
    /// Log lines of one node's log, starting at byte `offset` of its shipped stream (each
    /// line counts its bytes plus one for the newline).
    LogBatch {
        /// Shipping node.
        node: String,
        /// Log name (key of the node's `cluster { logs = [ … ] }`).
        log: String,
        /// Stream offset of the first line.
        offset: u64,
        /// The lines, at most [`MAX_BATCH_LINES`].
        lines: Vec<String>,
    },
    /// The manager has written a log up to `offset` (its subscriber position).
    LogAck {
        /// Log name.
        log: String,
        /// Stream offset written.
        offset: u64,
    },
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn put_opt(out: &mut BytesMut, s: Option<&String>) {
    put_str(out, s.map_or("", String::as_str));
}

fn get_u8(b: &mut &[u8]) -> Result<u8, ProtoError> {
    if b.remaining() < 1 {
        return Err(ProtoError::Truncated);
    }
    Ok(b.get_u8())
}
fn get_u16(b: &mut &[u8]) -> Result<u16, ProtoError> {
    if b.remaining() < 2 {
        return Err(ProtoError::Truncated);
    }
    Ok(b.get_u16())
}
fn get_u32(b: &mut &[u8]) -> Result<u32, ProtoError> {
    if b.remaining() < 4 {
        return Err(ProtoError::Truncated);
    }
    Ok(b.get_u32())
}
fn get_u64(b: &mut &[u8]) -> Result<u64, ProtoError> {
    if b.remaining() < 8 {
        return Err(ProtoError::Truncated);
    }
    Ok(b.get_u64())
}
fn get_str(b: &mut &[u8]) -> Result<String, ProtoError> {
    let len = get_u32(b)? as usize;
    if len > MAX_MESSAGE {
        return Err(ProtoError::Length(len as u64));
    }
    if b.remaining() < len {
        return Err(ProtoError::Truncated);
    }
    let s = std::str::from_utf8(&b[..len])
        .map_err(|_| ProtoError::Utf8)?
        .to_string();
    b.advance(len);
    Ok(s)
}
fn get_opt(b: &mut &[u8]) -> Result<Option<String>, ProtoError> {
    let s = get_str(b)?;
    Ok(if s.is_empty() { None } else { Some(s) })
}
fn get_count(b: &mut &[u8], min_item: usize) -> Result<usize, ProtoError> {
    let n = get_u32(b)? as usize;
    if n.saturating_mul(min_item) > b.remaining() {
        return Err(ProtoError::Length(n as u64));
    }
    Ok(n)
}

impl Msg {
    /// The Spread `mess_type` for this message.
    pub fn msg_type(&self) -> i16 {
        match self {
            Self::Command { .. } => MT_COMMAND,
            Self::Response { .. } => MT_RESPONSE,
            Self::Describe(_) => MT_DESCRIBE,
            Self::View { .. } => MT_VIEW,
            Self::Move { .. } => MT_MOVE,
            Self::Shared { .. } => MT_SHARED,
            Self::LogSubscribe { .. } => MT_LOG_SUBSCRIBE,
            Self::LogBatch { .. } => MT_LOG_BATCH,
            Self::LogAck { .. } => MT_LOG_ACK,
        }
    }

    /// Encodes the body.
    pub fn encode(&self) -> Bytes {
        let mut o = BytesMut::new();
        o.put_u8(VERSION);
        match self {
            Self::Command { req_id, text } => {
                o.put_u64(*req_id);
                put_str(&mut o, text);
            }
            Self::Response {
                req_id,
                command,
                node,
                chunk,
                chunks,
                data,
            } => {
                o.put_u64(*req_id);
                put_str(&mut o, command);
                put_str(&mut o, node);
                o.put_u16(*chunk);
                o.put_u16(*chunks);
                put_str(&mut o, data);
            }
            Self::Describe(d) => {
                o.put_u8(match d.node_type {
                    NodeType::Node => 1,
                    NodeType::Manager => 2,
                });
                for s in [&d.node, &d.subcluster, &d.version, &d.address] {
                    put_str(&mut o, s);
                }
                o.put_u32(u32::try_from(d.groups.len()).unwrap_or(0));
                for g in &d.groups {
                    put_str(&mut o, g);
                }
            }
            Self::View {
                node,
                entries,
                claims,
            } => {
                put_str(&mut o, node);
                o.put_u32(u32::try_from(claims.len()).unwrap_or(0));
                for (ip, n) in claims {
                    put_str(&mut o, ip);
                    o.put_u64(*n);
                }
                o.put_u32(u32::try_from(entries.len()).unwrap_or(0));
                for e in entries {
                    put_str(&mut o, &e.ip);
                    o.put_u8(match e.kind {
                        EntryKind::Binding => 1,
                        EntryKind::Listener => 2,
                    });
                    put_opt(&mut o, e.preference.as_ref());
                    put_opt(&mut o, e.follow.as_ref());
                    o.put_u32(u32::try_from(e.names.len()).unwrap_or(0));
                    for n in &e.names {
                        put_str(&mut o, n);
                    }
                }
            }
            Self::Move { vip, node } => {
                put_str(&mut o, vip);
                put_str(&mut o, node);
            }
            Self::Shared {
                object,
                node,
                entries,
            } => {
                put_str(&mut o, object);
                put_str(&mut o, node);
                let n = entries.len().min(MAX_SHARED_KEYS);
                o.put_u32(u32::try_from(n).unwrap_or(0));
                for (k, v) in entries.iter().take(n) {
                    put_str(&mut o, k);
                    o.put_i64(*v);
                }
            }
            Self::LogSubscribe { subscriber } => put_str(&mut o, subscriber),
            Self::LogBatch {
                node,
                log,
                offset,
                lines,
            } => {
                put_str(&mut o, node);
                put_str(&mut o, log);
                o.put_u64(*offset);
                let n = lines.len().min(MAX_BATCH_LINES);
                o.put_u32(u32::try_from(n).unwrap_or(0));
                for l in lines.iter().take(n) {
                    put_str(&mut o, l);
                }
            }
            Self::LogAck { log, offset } => {
                put_str(&mut o, log);
                o.put_u64(*offset);
            }
        }
        o.freeze()
    }

    /// Decodes a body of the given `mess_type`.
    pub fn decode(msg_type: i16, mut b: &[u8]) -> Result<Self, ProtoError> {
        let b = &mut b;
        if b.len() > MAX_MESSAGE {
            return Err(ProtoError::Length(b.len() as u64));
        }
        let v = get_u8(b)?;
        if v != VERSION {
            return Err(ProtoError::Version(v));
        }
        let m = match msg_type {
            MT_COMMAND => Self::Command {
                req_id: get_u64(b)?,
                text: get_str(b)?,
            },
            MT_RESPONSE => {
                let req_id = get_u64(b)?;
                let command = get_str(b)?;
                let node = get_str(b)?;
                let chunk = get_u16(b)?;
                let chunks = get_u16(b)?;
                if chunks == 0 || chunks > MAX_CHUNKS || chunk >= chunks {
                    return Err(ProtoError::Length(u64::from(chunks)));
                }
                Self::Response {
                    req_id,
                    command,
                    node,
                    chunk,
                    chunks,
                    data: get_str(b)?,
                }
            }
            MT_DESCRIBE => {
                let node_type = match get_u8(b)? {
                    1 => NodeType::Node,
                    2 => NodeType::Manager,
                    t => return Err(ProtoError::Length(u64::from(t))),
                };
                let (node, subcluster, version, address) =
                    (get_str(b)?, get_str(b)?, get_str(b)?, get_str(b)?);
                let n = get_count(b, 4)?;
                let groups = (0..n).map(|_| get_str(b)).collect::<Result<_, _>>()?;
                Self::Describe(Describe {
                    node_type,
                    node,
                    subcluster,
                    version,
                    address,
                    groups,
                })
            }
            MT_VIEW => {
                let node = get_str(b)?;
                let nc = get_count(b, 12)?;
                let mut claims = Vec::with_capacity(nc);
                for _ in 0..nc {
                    claims.push((get_str(b)?, get_u64(b)?));
                }
                let n = get_count(b, 17)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let ip = get_str(b)?;
                    let kind = match get_u8(b)? {
                        1 => EntryKind::Binding,
                        2 => EntryKind::Listener,
                        t => return Err(ProtoError::Length(u64::from(t))),
                    };
                    let preference = get_opt(b)?;
                    let follow = get_opt(b)?;
                    let k = get_count(b, 4)?;
                    let names = (0..k).map(|_| get_str(b)).collect::<Result<_, _>>()?;
                    entries.push(VipEntry {
                        ip,
                        names,
                        kind,
                        preference,
                        follow,
                    });
                }
                Self::View {
                    node,
                    entries,
                    claims,
                }
            }
            MT_MOVE => Self::Move {
                vip: get_str(b)?,
                node: get_str(b)?,
            },
            MT_SHARED => {
                let (object, node) = (get_str(b)?, get_str(b)?);
                let n = get_count(b, 12)?;
                if n > MAX_SHARED_KEYS {
                    return Err(ProtoError::Length(n as u64));
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = get_str(b)?;
                    let v = get_u64(b)?;
                    entries.push((k, i64::from_be_bytes(v.to_be_bytes())));
                }
                Self::Shared {
                    object,
                    node,
                    entries,
                }
            }
            MT_LOG_SUBSCRIBE => Self::LogSubscribe {
                subscriber: get_str(b)?,
            },
            MT_LOG_BATCH => {
                let (node, log, offset) = (get_str(b)?, get_str(b)?, get_u64(b)?);
                let n = get_count(b, 4)?;
                if n > MAX_BATCH_LINES {
                    return Err(ProtoError::Length(n as u64));
                }
                let lines = (0..n).map(|_| get_str(b)).collect::<Result<_, _>>()?;
                Self::LogBatch {
                    node,
                    log,
                    offset,
                    lines,
                }
            }
            MT_LOG_ACK => Self::LogAck {
                log: get_str(b)?,
                offset: get_u64(b)?,
            },
            other => return Err(ProtoError::Type(other)),
        };
        if b.has_remaining() {
            return Err(ProtoError::Trailing);
        }
        Ok(m)
    }
}

/// Splits a response into chunks of at most [`CHUNK_BYTES`] bytes (on character boundaries);
/// text beyond [`MAX_CHUNKS`] chunks is cut and a note appended.
pub fn chunk_response(req_id: u64, command: &str, node: &str, text: &str) -> Vec<Msg> {
    let mut pieces: Vec<&str> = Vec::new();
    let mut rest = text;
    loop {
        if rest.len() <= CHUNK_BYTES {
            pieces.push(rest);
            break;
        }
        let mut cut = CHUNK_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let mut owned: Vec<String> = pieces.into_iter().map(str::to_string).collect();
    if owned.len() > usize::from(MAX_CHUNKS) {
        owned.truncate(usize::from(MAX_CHUNKS));
        if let Some(last) = owned.last_mut() {
            last.push_str("\n[output truncated]");
        }
    }
    let chunks = u16::try_from(owned.len()).unwrap_or(MAX_CHUNKS);
    owned
        .into_iter()
        .enumerate()
        .map(|(i, data)| Msg::Response {
            req_id,
            command: command.to_string(),
            node: node.to_string(),
            chunk: u16::try_from(i).unwrap_or(0),
            chunks,
            data,
        })
        .collect()
}

#[cfg(test)]
mod tests;
