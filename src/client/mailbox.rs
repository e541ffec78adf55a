//! An open session ("mailbox" in libspread's terms) and its two halves.

use bytes::{BufMut, BytesMut};
use spread::wire::client::{
    decode_frame, encode_header, ByteOrder, Direction, GroupName, Hint, MessageHeader, ServiceType,
    Version, GROUP_NAME_LEN, HEADER_LEN, MAX_GROUPS_PER_MESSAGE, MAX_MESSAGE_BODY_LEN,
    MAX_WIRE_MESSAGE,
};
use tokio::io::AsyncWriteExt;

use super::connect::{
    fill, handshake, open_transport, ConnectOptions, Opened, ReadHalf, WriteHalf,
};
use super::decode::to_message;
use super::{Address, Error, Message};

/// A connected session: join and leave groups, multicast, receive.
///
/// Use [`Mailbox::split`] to send from one task while another receives.
pub struct Mailbox {
    tx: MailboxSender,
    rx: MailboxReceiver,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("private_group", &self.tx.private_group)
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    /// Connects to the daemon at `addr` (libspread notation: `"<port>@<host>"` for TCP,
    /// `"<port>"` for the Unix socket `/tmp/<port>`, or a socket path) as `name`, with or
    /// without membership messages.
    pub async fn connect(addr: &str, name: &str, membership: bool) -> Result<Self, Error> {
        Self::connect_with(
            &Address::parse(addr)?,
            &ConnectOptions::new(name, membership),
        )
        .await
    }

    /// Connects to `addr` with full options.
    pub async fn connect_with(addr: &Address, opts: &ConnectOptions) -> Result<Self, Error> {
        let fut = async {
            let (r, w) = open_transport(addr).await?;
            handshake(r, w, opts).await
        };
        let opened = match opts.timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::CouldNotConnect(std::io::ErrorKind::TimedOut.into()))??,
            None => fut.await?,
        };
        Ok(Self::from_opened(opened, opts.byte_order))
    }

    /// Opens a session over an already connected byte stream: an in-process connection to an
    /// embedded daemon (see `mbus::daemon`), or any transport the caller set up itself.
    pub async fn connect_stream<S>(stream: S, opts: &ConnectOptions) -> Result<Self, Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        let fut = handshake(Box::new(r), Box::new(w), opts);
        let opened = match opts.timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::CouldNotConnect(std::io::ErrorKind::TimedOut.into()))??,
            None => fut.await?,
        };
        Ok(Self::from_opened(opened, opts.byte_order))
    }

    fn from_opened(o: Opened, order: ByteOrder) -> Self {
        let sender = GroupName::new(o.private_group.as_bytes());
        Self {
            tx: MailboxSender {
                writer: o.writer,
                private_group: o.private_group.clone(),
                sender,
                order,
                out: BytesMut::with_capacity(4096),
                failed: false,
                daemon_version: o.daemon_version,
            },
            rx: MailboxReceiver {
                reader: o.reader,
                buf: o.leftover,
                private_group: o.private_group,
                failed: false,
            },
        }
    }

    /// This session's private group name (`#name#daemon`).
    pub fn private_group(&self) -> &str {
        &self.tx.private_group
    }

    /// The daemon's version as it announced it.
    pub fn daemon_version(&self) -> (i8, i8, i8) {
        let v = self.tx.daemon_version;
        (v.major, v.minor, v.patch)
    }

    /// Joins `group` (1..=31 characters in `$`..`~`).
    pub async fn join(&mut self, group: &str) -> Result<(), Error> {
        self.tx.join(group).await
    }

    /// Leaves `group`.
    pub async fn leave(&mut self, group: &str) -> Result<(), Error> {
        self.tx.leave(group).await
    }

    /// Multicasts `body` to one group (or private group) with `service` (exactly one of the
    /// six services, optionally `| ServiceType::SELF_DISCARD`). Returns the body length.
    pub async fn multicast(
        &mut self,
        service: ServiceType,
        group: &str,
        mess_type: i16,
        body: &[u8],
    ) -> Result<usize, Error> {
        self.tx.multicast(service, group, mess_type, body).await
    }

    /// Multicasts `body` to several groups and/or private groups at once; each receiver gets it
    /// once.
    pub async fn multigroup_multicast(
        &mut self,
        service: ServiceType,
        groups: &[&str],
        mess_type: i16,
        body: &[u8],
    ) -> Result<usize, Error> {
        self.tx
            .multigroup_multicast(service, groups, mess_type, body)
            .await
    }

    /// Waits for the next message.
    pub async fn receive(&mut self) -> Result<Message, Error> {
        self.rx.receive().await
    }

    /// Sends the disconnect request and closes the connection.
    pub async fn disconnect(self) -> Result<(), Error> {
        self.tx.disconnect().await
    }

    /// Splits into a sending and a receiving half that can live in different tasks.
    pub fn split(self) -> (MailboxSender, MailboxReceiver) {
        (self.tx, self.rx)
    }
}

/// The sending half of a [`Mailbox`].
pub struct MailboxSender {
    writer: WriteHalf,
    private_group: String,
    sender: GroupName,
    order: ByteOrder,
    out: BytesMut,
    failed: bool,
    daemon_version: Version,
}

impl std::fmt::Debug for MailboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSender")
            .field("private_group", &self.private_group)
            .finish_non_exhaustive()
    }
}

impl MailboxSender {
    /// This session's private group name.
    pub fn private_group(&self) -> &str {
        &self.private_group
    }

    /// Joins `group`.
    pub async fn join(&mut self, group: &str) -> Result<(), Error> {
        self.request(ServiceType::JOIN_MESS, group).await
    }

    /// Leaves `group`.
    pub async fn leave(&mut self, group: &str) -> Result<(), Error> {
        self.request(ServiceType::LEAVE_MESS, group).await
    }

    async fn request(&mut self, kind: ServiceType, group: &str) -> Result<(), Error> {
        if !GroupName::is_valid_for_client(group.as_bytes()) {
            return Err(Error::IllegalGroup(group.to_owned()));
        }
        let name = GroupName::new(group.as_bytes());
        self.encode(kind, std::slice::from_ref(&name), 0, &[]);
        self.flush_out().await
    }

    /// See [`Mailbox::multicast`].
    pub async fn multicast(
        &mut self,
        service: ServiceType,
        group: &str,
        mess_type: i16,
        body: &[u8],
    ) -> Result<usize, Error> {
        self.multigroup_multicast(service, &[group], mess_type, body)
            .await
    }

    /// See [`Mailbox::multigroup_multicast`].
    pub async fn multigroup_multicast(
        &mut self,
        service: ServiceType,
        groups: &[&str],
        mess_type: i16,
        body: &[u8],
    ) -> Result<usize, Error> {
        self.queue_multicast(service, groups, mess_type, body)?;
        self.flush_out().await?;
        Ok(body.len())
    }

    /// Encodes a multicast into the output buffer without writing it; [`MailboxSender::flush`]
    /// writes everything queued in as few system calls as possible.
    pub fn queue_multicast(
        &mut self,
        service: ServiceType,
        groups: &[&str],
        mess_type: i16,
        body: &[u8],
    ) -> Result<usize, Error> {
        self.check_alive()?;
        if service.single_service().is_none() || service.intersects(ServiceType::REQUEST_MASK) {
            return Err(Error::IllegalService(service.0));
        }
        let payload = body.len() + GROUP_NAME_LEN * groups.len();
        if groups.len() > MAX_GROUPS_PER_MESSAGE
            || payload > MAX_MESSAGE_BODY_LEN
            || HEADER_LEN + payload > MAX_WIRE_MESSAGE
        {
            // The last bound is stricter than libspread's: 5.0.1 daemons abort on such messages.
            return Err(Error::MessageTooLong(payload));
        }
        let mut names = Vec::with_capacity(groups.len());
        for g in groups {
            if g.is_empty() || g.len() >= GROUP_NAME_LEN {
                return Err(Error::IllegalGroup((*g).to_owned()));
            }
            names.push(GroupName::new(g.as_bytes()));
        }
        self.encode(service, &names, mess_type, body);
        Ok(body.len())
    }

    /// Writes everything queued by [`MailboxSender::queue_multicast`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check_alive()?;
        self.flush_out().await
    }

    /// Sends the disconnect request and closes the connection.
    pub async fn disconnect(mut self) -> Result<(), Error> {
        self.disconnect_ref().await
    }

    /// [`MailboxSender::disconnect`] without giving up `self`, which is unusable afterwards.
    pub(crate) async fn disconnect_ref(&mut self) -> Result<(), Error> {
        self.check_alive()?;
        let me = self.sender;
        self.encode(ServiceType::KILL_MESS, std::slice::from_ref(&me), 0, &[]);
        self.flush_out().await?;
        let _ = self.writer.shutdown().await;
        self.failed = true;
        Ok(())
    }

    fn check_alive(&self) -> Result<(), Error> {
        if self.failed {
            Err(Error::NetErrorOnSession)
        } else {
            Ok(())
        }
    }

    fn encode(&mut self, service: ServiceType, groups: &[GroupName], mess_type: i16, body: &[u8]) {
        let header = MessageHeader {
            service,
            sender: self.sender,
            num_groups: groups.len() as i32,
            hint: Hint::new(mess_type, self.order),
            data_len: body.len() as i32,
            order: self.order,
        };
        self.out
            .reserve(HEADER_LEN + GROUP_NAME_LEN * groups.len() + body.len());
        encode_header(&header, &mut self.out);
        for g in groups {
            g.encode(&mut self.out);
        }
        self.out.put_slice(body);
    }

    async fn flush_out(&mut self) -> Result<(), Error> {
        self.check_alive()?;
        // If this future is dropped half-way (e.g. by a timeout), part of a message may have
        // been written: the stream is then unusable, and stays marked as failed.
        self.failed = true;
        let res = self.writer.write_all(&self.out).await;
        self.out.clear();
        if let Err(e) = res {
            return Err(Error::ConnectionClosed(Some(e)));
        }
        self.failed = false;
        Ok(())
    }

    /// Puts the two halves back together; `IllegalSession` if they belong to different
    /// sessions.
    pub fn unsplit(self, rx: MailboxReceiver) -> Result<Mailbox, Error> {
        if self.private_group != rx.private_group {
            return Err(Error::IllegalSession);
        }
        Ok(Mailbox { tx: self, rx })
    }
}

/// The receiving half of a [`Mailbox`].
pub struct MailboxReceiver {
    reader: ReadHalf,
    buf: BytesMut,
    private_group: String,
    failed: bool,
}

impl std::fmt::Debug for MailboxReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxReceiver")
            .field("private_group", &self.private_group)
            .finish_non_exhaustive()
    }
}

impl MailboxReceiver {
    /// This session's private group name.
    pub fn private_group(&self) -> &str {
        &self.private_group
    }

    /// Waits for the next message. Reads are large and every message already buffered is
    /// returned without another system call.
    ///
    /// Cancel-safe: if the future is dropped before it completes (e.g. in `select!` or a
    /// timeout), no message is lost.
    pub async fn receive(&mut self) -> Result<Message, Error> {
        if self.failed {
            return Err(Error::NetErrorOnSession);
        }
        loop {
            match decode_frame(&mut self.buf, Direction::ToClient) {
                Ok(Some(frame)) => {
                    return to_message(&frame, &self.private_group).inspect_err(|_| {
                        self.failed = true;
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Err(Error::IllegalMessage(e.to_string()));
                }
            }
            if let Err(e) = fill(&mut self.reader, &mut self.buf).await {
                self.failed = true;
                return Err(e);
            }
        }
    }

    /// True if a whole message is already buffered ([`MailboxReceiver::receive`] will not
    /// wait).
    pub fn has_buffered_message(&self) -> bool {
        let mut copy = self.buf.clone();
        matches!(decode_frame(&mut copy, Direction::ToClient), Ok(Some(_)))
    }
}
