//! Received messages as a [`futures_core::Stream`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{Error, MailboxReceiver, Message, ReconnectingMailbox, ReconnectingReceiver};

type Pending = Pin<Box<dyn Future<Output = (MailboxReceiver, Result<Message, Error>)> + Send>>;

/// The messages of a [`MailboxReceiver`] as a `Stream` (from [`MailboxReceiver::into_stream`]).
///
/// Yields `Ok(message)` until the session fails, then that error once, then ends.
pub struct MessageStream {
    idle: Option<MailboxReceiver>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream")
            .field("ended", &(self.idle.is_none() && self.pending.is_none()))
            .finish_non_exhaustive()
    }
}

impl MailboxReceiver {
    /// Turns this receiving half into a `Stream` of messages (use `StreamExt` from
    /// `futures-util` or `tokio-stream` for `next()`, `filter_map()`, …).
    pub fn into_stream(self) -> MessageStream {
        MessageStream {
            idle: Some(self),
            pending: None,
        }
    }
}

impl Stream for MessageStream {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_none() {
            let Some(mut rx) = self.idle.take() else {
                return Poll::Ready(None);
            };
            self.pending = Some(Box::pin(async move {
                let r = rx.receive().await;
                (rx, r)
            }));
        }
        let Some(fut) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let (rx, r) = match fut.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(x) => x,
        };
        self.pending = None;
        if r.is_ok() {
            self.idle = Some(rx);
        }
        Poll::Ready(Some(r))
    }
}

impl Stream for ReconnectingReceiver {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// The messages of the session, [`Message::Reconnected`] included; sending still works through
/// `&self` methods while the stream is being read.
impl Stream for ReconnectingMailbox {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver_mut().events.poll_recv(cx)
    }
}
