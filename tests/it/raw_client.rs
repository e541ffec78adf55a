//! A blocking client that speaks the Spread client protocol on a bare TCP socket, so a test
//! decides exactly when and how much it reads (a slow reader, a reader that never reads) —
//! something a buffering client library hides. Works against mbus and the real 5.0.1.
#![allow(dead_code)] // Shared by several test modules.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use spread::wire::client::{
    decode_accept, decode_auth_list, decode_frame, encode_auth_choice, encode_hello,
    encode_message, AcceptReply, AuthListReply, Direction, Frame, GroupName, Hello, ServiceType,
    Version,
};

/// Longest wait for any one reply of the handshake or a frame.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One session on a bare socket.
#[derive(Debug)]
pub(crate) struct RawClient {
    stream: TcpStream,
    /// `#name#daemon`.
    pub(crate) private_group: String,
    inbuf: BytesMut,
    /// Read buffer, reused.
    scratch: Vec<u8>,
}

/// Most bytes asked for per read.
const READ_MAX: usize = 256 * 1024;

impl RawClient {
    /// Connects to `127.0.0.1:port` as `name` (NULL authentication).
    pub(crate) fn connect(port: u16, name: &str, membership: bool) -> io::Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut c = Self {
            stream,
            private_group: String::new(),
            inbuf: BytesMut::new(),
            scratch: vec![0; READ_MAX],
        };
        let mut hello = Vec::new();
        encode_hello(&Hello::new(name.as_bytes(), membership, false), &mut hello);
        c.stream.write_all(&hello)?;
        match c.read_until(decode_auth_list)? {
            AuthListReply::Methods(_) => {}
            AuthListReply::Rejected(code) => return Err(refused(code)),
        }
        let mut choice = Vec::new();
        encode_auth_choice(&["NULL"], &mut choice);
        c.stream.write_all(&choice)?;
        match c.read_until(|b| decode_accept(b, Version::V5_0_1))? {
            AcceptReply::Accepted { private_group, .. } => {
                c.private_group = String::from_utf8_lossy(&private_group).into_owned();
            }
            AcceptReply::Rejected(code) => return Err(refused(code)),
            AcceptReply::Malformed => return Err(io::ErrorKind::InvalidData.into()),
        }
        Ok(c)
    }

    fn read_until<T>(
        &mut self,
        mut decode: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> io::Result<T> {
        loop {
            if let Some((v, used)) = decode(&self.inbuf) {
                self.inbuf.advance(used);
                return Ok(v);
            }
            if self.fill(4096)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads at most `max` bytes into the frame buffer; 0 at end of stream.
    fn fill(&mut self, max: usize) -> io::Result<usize> {
        let chunk = &mut self.scratch[..max.min(READ_MAX)];
        let n = self.stream.read(chunk)?;
        self.inbuf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn request(&mut self, service: ServiceType, groups: &[&str], body: &[u8]) -> io::Result<()> {
        let groups: Vec<GroupName> = groups
            .iter()
            .map(|g| GroupName::new(g.as_bytes()))
            .collect();
        let mut out = Vec::with_capacity(48 + 32 * groups.len() + body.len());
        let me = GroupName::new(self.private_group.as_bytes());
        encode_message(service, me, &groups, body, &mut out);
        self.stream.write_all(&out)
    }

    /// Joins `group`.
    pub(crate) fn join(&mut self, group: &str) -> io::Result<()> {
        self.request(ServiceType::JOIN_MESS, &[group], b"")
    }

    /// Multicasts `body` to `group`.
    pub(crate) fn multicast(
        &mut self,
        service: ServiceType,
        group: &str,
        body: &[u8],
    ) -> io::Result<()> {
        self.request(service, &[group], body)
    }

    /// The next whole message; `None` when the daemon closed the connection.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = decode_frame(&mut self.inbuf, Direction::ToClient)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            {
                return Ok(Some(f));
            }
            if self.fill(READ_MAX)? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads until a regular membership of `group` arrives; returns it.
    pub(crate) fn membership_of(&mut self, group: &str) -> io::Result<Frame> {
        loop {
            let f = self.next_frame()?.ok_or(io::ErrorKind::UnexpectedEof)?;
            if f.header.service.intersects(ServiceType::REG_MEMB_MESS)
                && f.header.sender == GroupName::new(group.as_bytes())
            {
                return Ok(f);
            }
        }
    }

    /// Reads and throws away at most `max` bytes (a reader that does not look at its
    /// messages); returns how many, 0 at end of stream.
    pub(crate) fn discard(&mut self, max: usize) -> io::Result<usize> {
        self.stream.read(&mut self.scratch[..max.min(READ_MAX)])
    }

    /// Reads and throws away everything until the daemon closes the connection, or fails
    /// after `within`. Returns the bytes read.
    pub(crate) fn read_to_close(&mut self, within: Duration) -> io::Result<usize> {
        let end = Instant::now() + within;
        let mut total = self.inbuf.len();
        self.inbuf.clear();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("still open after {total} bytes"),
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut self.scratch) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(total),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// How long one read may wait.
    pub(crate) fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(t))
    }

    /// Sets the socket's receive buffer (call before the daemon sends much).
    pub(crate) fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.stream).set_recv_buffer_size(bytes)
    }

    /// A second handle on the socket (e.g. to read in another thread).
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            stream: self.stream.try_clone()?,
            private_group: self.private_group.clone(),
            inbuf: BytesMut::new(),
            scratch: vec![0; READ_MAX],
        })
    }

    /// Closes both directions now.
    pub(crate) fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn refused(code: i8) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("refused with code {code}"),
    )
}

/// A data message's first 8 body bytes as a little-endian sequence number.
pub(crate) fn seq_of(f: &Frame) -> Option<u64> {
    let body = f.body();
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

/// Whether `f` is a membership message telling that `member` disconnected from `group`.
pub(crate) fn is_disconnect_of(f: &Frame, group: &str, member: &str) -> bool {
    f.header
        .service
        .intersects(ServiceType::CAUSED_BY_DISCONNECT)
        && f.header.sender == GroupName::new(group.as_bytes())
        && f.body()
            .windows(member.len())
            .any(|w| w == member.as_bytes())
}
