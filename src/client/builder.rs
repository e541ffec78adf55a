//! A builder for connect options: `Mailbox::builder(addr).name(…).timeout(…).connect()`.

use std::time::Duration;

use super::{
    Address, AuthMethod, ByteOrder, ConnectOptions, Error, Mailbox, ReconnectPolicy,
    ReconnectingMailbox,
};

/// Collects the daemon address and the connect options of a session, then opens it: a plain
/// [`Mailbox`] with [`MailboxBuilder::connect`] or a [`ReconnectingMailbox`] with
/// [`MailboxBuilder::connect_reconnecting`].
///
/// ```no_run
/// # async fn demo() -> Result<(), mbus::client::Error> {
/// use std::time::Duration;
/// use mbus::client::{AuthMethod, Mailbox};
///
/// let mb = Mailbox::builder("4803@127.0.0.1")
///     .name("alice")
///     .group_membership(true)
///     .priority(false)
///     .auth(AuthMethod::Null)
///     .timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect() is awaited"]
pub struct MailboxBuilder {
    addr: String,
    opts: ConnectOptions,
    policy: ReconnectPolicy,
}

impl Mailbox {
    /// Starts building a session to the daemon at `addr` (libspread notation, see
    /// [`Address::parse`]). Defaults: no private name (the daemon invents one), membership
    /// messages on, no priority, `NULL` authentication, no timeout.
    pub fn builder(addr: &str) -> MailboxBuilder {
        MailboxBuilder {
            addr: addr.to_owned(),
            opts: ConnectOptions::new("", true),
            policy: ReconnectPolicy::default(),
        }
    }
}

impl MailboxBuilder {
    /// The requested private name (0..=10 bytes in `$`..`~`; empty: the daemon invents one).
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.opts.name);
        self
    }

    /// Receive membership messages (libspread's `group_membership`; default on).
    pub fn group_membership(mut self, on: bool) -> Self {
        self.opts.membership = on;
        self
    }

    /// Ask for priority (stored by 5.0.1 daemons, no effect; default off).
    pub fn priority(mut self, on: bool) -> Self {
        self.opts.priority = on;
        self
    }

    /// The authentication method to choose (default [`AuthMethod::Null`]).
    pub fn auth(mut self, method: AuthMethod) -> Self {
        self.opts.auth = method;
        self
    }

    /// Give up connecting after `timeout` (default: wait as long as the OS does).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// Byte order of the headers this session writes (default: this host's).
    pub fn byte_order(mut self, order: ByteOrder) -> Self {
        self.opts.byte_order = order;
        self
    }

    /// How a [`ReconnectingMailbox`] retries (see [`ReconnectPolicy`]).
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The options collected so far.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Opens the session.
    pub async fn connect(self) -> Result<Mailbox, Error> {
        Mailbox::connect_with(&Address::parse(&self.addr)?, &self.opts).await
    }

    /// Opens a session that reconnects and re-joins its groups when the connection is lost
    /// (see [`ReconnectingMailbox`]). The first connection must succeed.
    pub async fn connect_reconnecting(self) -> Result<ReconnectingMailbox, Error> {
        ReconnectingMailbox::connect(Address::parse(&self.addr)?, self.opts, self.policy).await
    }
}
