//! The core task's wake-up for its next deadline.
//!
//! tokio's timer counts whole milliseconds: a deadline 300 µs away fires after 1–2 ms. The
//! core's timers are mostly 5.0.1's (hundreds of milliseconds), where that is noise, but a
//! token kept for a local reply ([`spread::ring::RingConfig::reply_wait`]) waits a few
//! hundred microseconds, and oversleeping it delays the whole ring. Deadlines closer than
//! [`PRECISE_WITHIN`] therefore use a `timerfd(2)` (microsecond precision, read through the
//! runtime's epoll); the others tokio's timer (which tests run with paused time).

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::debug;

/// Deadlines at most this far away wait on the timerfd.
pub(crate) const PRECISE_WITHIN: Duration = Duration::from_millis(3);

/// A timerfd the runtime can poll.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Sleeps until the core's next deadline (see the module documentation).
pub(crate) struct Alarm {
    /// `None`: no timerfd (could not be created); tokio's timer for everything.
    fd: Option<AsyncFd<Fd>>,
    /// The deadline the timerfd is set to.
    armed: Option<Instant>,
    /// tokio's timer, kept across waits and moved only when the deadline moves (a new timer
    /// each wait would wake the runtime's driver through its eventfd every time).
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The deadline `sleep` is set to.
    sleep_at: Instant,
}

impl Alarm {
    /// An alarm; without a timerfd (logged) it falls back to tokio's timer.
    pub(crate) fn new() -> Self {
        // `AsyncFd::new` is deprecated because it cannot check that the descriptor outlives
        // the registration; here the `AsyncFd` owns the `TimerFd` that owns the descriptor,
        // and `Fd::as_raw_fd` always returns that one (the safe way needs `unsafe`).
        #[allow(deprecated)]
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        .and_then(|t| AsyncFd::new(Fd(t)));
        let fd = match fd {
            Ok(fd) => Some(fd),
            Err(e) => {
                debug!(error = %e, "no timerfd: short deadlines use tokio's millisecond timer");
                None
            }
        };
        let sleep_at = Instant::now() + Duration::from_secs(86_400);
        Self {
            fd,
            armed: None,
            sleep: Box::pin(tokio::time::sleep_until(sleep_at)),
            sleep_at,
        }
    }

    /// Completes at `deadline` (never without one).
    pub(crate) async fn until(&mut self, deadline: Option<Instant>) {
        let Some(d) = deadline else {
            return std::future::pending().await;
        };
        let now = Instant::now();
        let Some(fd) = self.fd.as_ref().filter(|_| d <= now + PRECISE_WITHIN) else {
            return self.coarse(d).await;
        };
        if d <= now {
            return;
        }
        if self.armed != Some(d) {
            let ts = TimeSpec::from_duration(d - now);
            if fd
                .get_ref()
                .0
                .set(Expiration::OneShot(ts), TimerSetTimeFlags::empty())
                .is_err()
            {
                return self.coarse(d).await;
            }
            self.armed = Some(d);
            // Setting the timer cleared any expiry not read yet, so a readiness the runtime
            // still remembers from an earlier expiry is stale: drop it rather than read the
            // timerfd only to get EAGAIN (tokio clears it only if no newer readiness came).
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(Ok(mut g)) = fd.poll_read_ready(cx) {
                    g.clear_ready();
                }
                std::task::Poll::Ready(())
            })
            .await;
        }
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return self.coarse(d).await;
            };
            // A timerfd read fails with EAGAIN until it has fired, then clears it (and it is
            // not readable again before the next expiry: no read to find that out).
            match guard.try_io(|f| f.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(_) => {
                    guard.clear_ready();
                    self.armed = None;
                    return;
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// tokio's timer, moved to `d` if it is not there already.
    async fn coarse(&mut self, d: Instant) {
        if self.sleep_at != d {
            self.sleep.as_mut().reset(d);
            self.sleep_at = d;
        }
        self.sleep.as_mut().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_short_deadline_fires_within_a_fraction_of_a_millisecond() {
        let mut a = Alarm::new();
        assert!(a.fd.is_some(), "timerfd available on Linux");
        let mut late = Vec::new();
        for _ in 0..20 {
            let d = Instant::now() + Duration::from_micros(300);
            a.until(Some(d)).await;
            let now = Instant::now();
            assert!(now >= d, "never early");
            late.push(now - d);
        }
        late.sort();
        // tokio's timer would be 0.7–1.7 ms late; the median here is microseconds (a loaded
        // CI machine may delay a few).
        assert!(late[10] < Duration::from_micros(700), "{late:?}");
    }

    #[tokio::test]
    async fn a_deadline_set_again_is_not_lost_and_a_far_one_uses_tokio() {
        let mut a = Alarm::new();
        let d = Instant::now() + Duration::from_micros(500);
        // A wait abandoned before it fired (another input came first), then resumed.
        let _ = tokio::time::timeout(Duration::from_micros(50), a.until(Some(d))).await;
        a.until(Some(d)).await;
        assert!(Instant::now() >= d);
        let far = Instant::now() + Duration::from_millis(20);
        a.until(Some(far)).await;
        assert!(Instant::now() >= far);
    }
}
