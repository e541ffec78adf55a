//! Opening a session: the transport (TCP, Unix socket or any in-process byte stream) and the
//! libspread 5.0.1 handshake (hello, authentication choice, accept).

use std::time::Duration;

use bytes::BytesMut;
use spread::wire::client::{
    decode_accept, decode_auth_list, encode_auth_choice, encode_hello, AcceptReply, AuthListReply,
    ByteOrder, Hello, Version, MAX_PRIVATE_NAME,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::decode::NATIVE_ORDER;
use super::{Address, Error};

/// Initial size of a session's receive buffer; reads are made in pieces of this size.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Reading half of a session's byte stream.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// Writing half of a session's byte stream.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// How to open a session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Requested private name (0..=10 bytes in `$`..`~`; empty = the daemon invents one).
    pub name: String,
    /// Receive membership messages (libspread's `group_membership`).
    pub membership: bool,
    /// Ask for priority (stored by 5.0.1 daemons, no effect).
    pub priority: bool,
    /// Byte order of the headers this session writes (default: this host's).
    pub byte_order: ByteOrder,
    /// Give up connecting after this long (`None`: wait as long as the OS does).
    pub timeout: Option<Duration>,
    /// The authentication method to choose from the daemon's list (default `NULL`).
    pub auth: AuthMethod,
}

/// An authentication method a session can choose in the handshake.
///
/// Spread 5.0.1 ships two: `NULL` (no check; the default daemon enables only this one) and
/// `IP` (the daemon checks the client's address against its access file); neither exchanges
/// anything after the choice. `PWORD` is 5.0.1's password method (in builds with it, and in
/// mbus's daemon): after the choice the client sends its user name (32 bytes) and password
/// (8 bytes, NUL-padded; longer ones are cut as libspread cuts them — and cross the wire in
/// clear: use it over the Unix socket or a trusted network) and the daemon answers 1 or 0.
/// Other methods with their own exchange (libspread's `SP_set_auth_method` callback) are not
/// supported.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// `NULL`: no authentication.
    #[default]
    Null,
    /// `IP`: access by client address, checked by the daemon.
    Ip,
    /// `PWORD`: user name and password, checked by the daemon (`spread.access_pword`).
    Pword {
        /// User name (at most 32 bytes are sent).
        user: String,
        /// Password (at most 8 bytes are sent, as 5.0.1 defines the exchange).
        password: String,
    },
    /// Another method the daemon lists, by name (at most 29 bytes), with no exchange after the
    /// choice.
    Named(String),
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pword { user, .. } => write!(f, "Pword {{ user: {user:?}, password: \"…\" }}"),
            other => write!(f, "{}", other.name()),
        }
    }
}

/// Bytes of the `PWORD` user name field.
const PWORD_USER_LEN: usize = 32;
/// Bytes of the `PWORD` password field.
const PWORD_PASSWORD_LEN: usize = 8;

impl AuthMethod {
    /// The method's name as the daemon lists it.
    pub fn name(&self) -> &str {
        match self {
            Self::Null => "NULL",
            Self::Ip => "IP",
            Self::Pword { .. } => "PWORD",
            Self::Named(n) => n,
        }
    }
}

impl ConnectOptions {
    /// Options for a session named `name`, with or without membership messages.
    pub fn new(name: &str, membership: bool) -> Self {
        Self {
            name: name.to_owned(),
            membership,
            priority: false,
            byte_order: NATIVE_ORDER,
            timeout: None,
            auth: AuthMethod::Null,
        }
    }
}

/// A freshly accepted session, before it is wrapped in a mailbox.
pub(crate) struct Opened {
    pub(crate) reader: ReadHalf,
    pub(crate) writer: WriteHalf,
    /// Bytes received after the accept (normally none).
    pub(crate) leftover: BytesMut,
    pub(crate) private_group: String,
    pub(crate) daemon_version: Version,
}

/// Connects the transport named by `addr`.
pub(crate) async fn open_transport(addr: &Address) -> Result<(ReadHalf, WriteHalf), Error> {
    match addr {
        Address::Tcp { host, port } => {
            let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(Error::CouldNotConnect)?;
            s.set_nodelay(true).map_err(Error::CouldNotConnect)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Address::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(Error::CouldNotConnect)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Runs the client side of the handshake over `reader`/`writer`.
pub(crate) async fn handshake(
    mut reader: ReadHalf,
    mut writer: WriteHalf,
    opts: &ConnectOptions,
) -> Result<Opened, Error> {
    let name = opts.name.as_bytes();
    if name.len() > MAX_PRIVATE_NAME || !name.iter().all(|&b| (0x24..=0x7e).contains(&b)) {
        // libspread sends such a name anyway and gets REJECT_ILLEGAL_NAME; refuse locally.
        return Err(Error::RejectIllegalName);
    }
    let hello = Hello::new(name, opts.membership, opts.priority);
    let mut out = BytesMut::new();
    encode_hello(&hello, &mut out);
    send(&mut writer, &out).await?;

    let mut buf = BytesMut::with_capacity(256);
    let methods = loop {
        if let Some((reply, used)) = decode_auth_list(&buf) {
            let _ = buf.split_to(used);
            match reply {
                AuthListReply::Rejected(code) => return Err(reject(code)),
                AuthListReply::Methods(m) => break m,
            }
        }
        fill(&mut reader, &mut buf).await?;
    };
    let auth = opts.auth.name();
    if !methods.iter().any(|m| m == auth) {
        // libspread closes without sending anything when its method is not offered.
        return Err(Error::RejectAuth);
    }
    out.clear();
    encode_auth_choice(&[auth], &mut out);
    if let AuthMethod::Pword { user, password } = &opts.auth {
        // 5.0.1's PWORD exchange: NUL-padded fields, then one answer byte (1 = accepted).
        for (text, len) in [(user, PWORD_USER_LEN), (password, PWORD_PASSWORD_LEN)] {
            let bytes = text.as_bytes();
            let mut field = bytes.get(..len).unwrap_or(bytes).to_vec();
            field.resize(len, 0);
            out.extend_from_slice(&field);
        }
        send(&mut writer, &out).await?;
        while buf.is_empty() {
            fill(&mut reader, &mut buf).await?;
        }
        if buf.split_to(1).first() != Some(&1) {
            return Err(Error::RejectAuth);
        }
    } else {
        send(&mut writer, &out).await?;
    }

    loop {
        if let Some((reply, used)) = decode_accept(&buf, hello.version) {
            let _ = buf.split_to(used);
            return match reply {
                AcceptReply::Accepted {
                    daemon,
                    private_group,
                } => {
                    if daemon.major < 3 {
                        return Err(Error::RejectVersion);
                    }
                    Ok(Opened {
                        reader,
                        writer,
                        leftover: buf,
                        private_group: String::from_utf8_lossy(&private_group).into_owned(),
                        daemon_version: daemon,
                    })
                }
                AcceptReply::Rejected(code) => Err(reject(code)),
                AcceptReply::Malformed => Err(Error::ConnectionClosed(None)),
            };
        }
        fill(&mut reader, &mut buf).await?;
    }
}

/// The error for a reject byte (`CONNECTION_CLOSED` for a code that is not an error).
fn reject(code: i8) -> Error {
    Error::from_code(i32::from(code)).unwrap_or(Error::ConnectionClosed(None))
}

async fn send(w: &mut WriteHalf, bytes: &[u8]) -> Result<(), Error> {
    w.write_all(bytes)
        .await
        .map_err(|e| Error::ConnectionClosed(Some(e)))?;
    w.flush()
        .await
        .map_err(|e| Error::ConnectionClosed(Some(e)))
}

/// Reads more bytes into `buf`; EOF or an error is `CONNECTION_CLOSED`.
pub(crate) async fn fill(r: &mut ReadHalf, buf: &mut BytesMut) -> Result<(), Error> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    match r.read_buf(buf).await {
        Ok(0) => Err(Error::ConnectionClosed(None)),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::ConnectionClosed(Some(e))),
    }
}
