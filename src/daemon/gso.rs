//! UDP segmentation offload for the ring sockets (Linux): several datagrams of one size to one
//! address leave in one `sendmsg(2)` (`UDP_SEGMENT`), and our receive sockets take the
//! kernel's coalesced runs of such datagrams in one read (`UDP_GRO`).
//!
//! On the wire nothing changes: the kernel (or the network card) cuts a segmented send into
//! the same datagrams, with the same sizes and in the same order, that one `sendto` each would
//! have sent, so a 5.0.1 peer receives exactly what it would have. What changes is the cost:
//! a visit's packets (same size: full fragments, or equal client messages) cross the local
//! UDP stack once per run instead of once per datagram, and between two of our daemons a run
//! stays one buffer up to the receiving socket ([`split`] cuts it there).
//!
//! A run ([`run_len`]) is at most [`MAX_SEGMENTS`] datagrams and [`MAX_RUN_BYTES`] bytes to
//! one address, every datagram of one size but the last, which may be shorter. A kernel or
//! route that refuses segmentation (`EIO`: no checksum offload; `EINVAL`) turns it off for
//! the socket; the datagrams then go one by one. `MBUS_RING_GSO=0` in the environment turns
//! it off from the start (sends and receives).

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one segmented send (one IPv4 datagram's limit, with headers).
pub(crate) const MAX_RUN_BYTES: usize = 65_000;

/// Whether segmentation offload is wanted: not when `MBUS_RING_GSO=0`, and only on Linux.
pub(crate) fn enabled_from_env() -> bool {
    cfg!(target_os = "linux") && std::env::var("MBUS_RING_GSO").map_or(true, |v| v != "0")
}

/// How many datagrams at the start of `items` can leave in one segmented send: 1 when the
/// first cannot be joined by the second (another address, a larger or empty datagram), else
/// the longest run of one address and one size (its last datagram may be shorter, and ends
/// the run) within [`MAX_SEGMENTS`] and [`MAX_RUN_BYTES`].
pub(crate) fn run_len(items: &[(SocketAddr, Bytes)]) -> usize {
    let Some((to, first)) = items.first() else {
        return 0;
    };
    let size = first.len();
    if size == 0 {
        return 1;
    }
    let mut n = 1;
    let mut bytes = size;
    for (a, b) in items.iter().skip(1) {
        if a != to
            || b.is_empty()
            || b.len() > size
            || n == MAX_SEGMENTS
            || bytes + b.len() > MAX_RUN_BYTES
        {
            break;
        }
        n += 1;
        bytes += b.len();
        if b.len() < size {
            break;
        }
    }
    n
}

/// Puts the datagrams of one step that could share runs next to each other: within every
/// stretch of datagrams of one size to one port, those to the same address are gathered, in
/// the order of each address's first datagram, keeping their own order (a segment without a
/// broadcast address gets every packet once per daemon: `d2 d3 d2 d3 …` becomes
/// `d2 d2 … d3 d3 …`). A datagram of another size or to another port (a token, a status
/// reply) is never moved across.
pub(crate) fn gather_runs(items: &mut [(SocketAddr, Bytes)]) {
    let n = items.len();
    let mut i = 0;
    while i < n {
        let (first, len) = (items[i].0, items[i].1.len());
        let mut j = i + 1;
        while j < n && items[j].1.len() == len && items[j].0.port() == first.port() {
            j += 1;
        }
        if j - i > 2 && items[i + 1..j].iter().any(|(a, _)| *a != first) {
            let stretch: Vec<(SocketAddr, Bytes)> = items[i..j].to_vec();
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for (a, _) in &stretch {
                if !addrs.contains(a) {
                    addrs.push(*a);
                }
            }
            let mut k = i;
            for a in addrs {
                for item in stretch.iter().filter(|(b, _)| *b == a) {
                    items[k] = item.clone();
                    k += 1;
                }
            }
        }
        i = j;
    }
}

/// Sends `run` (a [`run_len`] prefix, ≥ 2 datagrams) to its address in one segmented
/// `sendmsg(2)`; returns how many datagrams left (all of them).
#[cfg(target_os = "linux")]
pub(crate) fn send_run(
    sock: &impl std::os::fd::AsRawFd,
    run: &[(SocketAddr, Bytes)],
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
    let (to, first) = run.first().ok_or(io::ErrorKind::InvalidInput)?;
    let size = u16::try_from(first.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let iov: Vec<io::IoSlice<'_>> = run.iter().map(|(_, b)| io::IoSlice::new(b)).collect();
    let addr = SockaddrStorage::from(*to);
    let cmsg = [ControlMessage::UdpGsoSegments(&size)];
    sendmsg(
        sock.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::MSG_DONTWAIT,
        Some(&addr),
    )?;
    Ok(run.len())
}

/// Whether a segmented send failed because segmentation is not possible here (rather than
/// for this one datagram): then it is turned off.
pub(crate) fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == nix::libc::EIO || c == nix::libc::EINVAL)
}

/// Asks the kernel to hand coalesced runs to this socket (`UDP_GRO`).
#[cfg(target_os = "linux")]
pub(crate) fn enable_receive(sock: &impl std::os::fd::AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::UdpGroSegment, &true)?;
    Ok(())
}

/// Cuts a received buffer into its datagrams: `stride` is the segment size the kernel
/// reported for a coalesced run (`None` or 0: one datagram).
pub(crate) fn split(buf: &[u8], stride: Option<usize>) -> impl Iterator<Item = &[u8]> {
    let step = match stride {
        Some(s) if s > 0 => s,
        _ => buf.len().max(1),
    };
    buf.chunks(step)
}

/// Datagrams read from a ring socket in one `recvmmsg(2)`.
#[cfg(target_os = "linux")]
pub(crate) struct Receiver {
    bufs: Vec<Vec<u8>>,
}

#[cfg(target_os = "linux")]
impl Receiver {
    /// Room for `slots` reads of up to 64 KiB each (pages are touched only when used).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            bufs: (0..slots.max(1)).map(|_| vec![0u8; 64 * 1024]).collect(),
        }
    }

    /// How many reads one [`Receiver::recv`] can take: fewer means the socket was empty.
    pub(crate) fn slots(&self) -> usize {
        self.bufs.len()
    }

    /// One `recvmmsg(2)` without waiting: hands every datagram read (coalesced runs cut
    /// apart) to `each` with its source; returns how many reads there were, or the error
    /// (`WouldBlock`: nothing waiting).
    pub(crate) fn recv(
        &mut self,
        sock: &impl std::os::fd::AsRawFd,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        use nix::sys::socket::{
            recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
        };
        let slots = self.bufs.len();
        let lens = {
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(slots, Some(nix::cmsg_space!(i32)));
            let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> = self
                .bufs
                .iter_mut()
                .map(|b| [io::IoSliceMut::new(b)])
                .collect();
            let got = recvmmsg(
                sock.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            let mut lens = Vec::with_capacity(slots);
            for m in got {
                let stride = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::UdpGroSegments(s) => usize::try_from(s).ok(),
                        _ => None,
                    })
                });
                let from = m.address.and_then(|a: SockaddrStorage| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                        .or_else(|| {
                            a.as_sockaddr_in6()
                                .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                        })
                });
                lens.push((m.bytes, stride, from));
            }
            lens
        };
        for (buf, (len, stride, from)) in self.bufs.iter().zip(&lens) {
            let Some(from) = from else { continue };
            for d in split(buf.get(..*len).unwrap_or_default(), *stride) {
                each(*from, d);
            }
        }
        Ok(lens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(spec: &[(u16, usize)]) -> Vec<(SocketAddr, Bytes)> {
        spec.iter()
            .map(|&(port, len)| {
                (
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    Bytes::from(vec![7u8; len]),
                )
            })
            .collect()
    }

    #[test]
    fn a_run_is_one_address_and_one_size_and_may_end_shorter() {
        assert_eq!(run_len(&items(&[])), 0);
        assert_eq!(run_len(&items(&[(1, 100)])), 1);
        assert_eq!(run_len(&items(&[(1, 100), (1, 100), (1, 100)])), 3);
        assert_eq!(run_len(&items(&[(1, 100), (1, 100), (1, 40), (1, 40)])), 3);
        assert_eq!(run_len(&items(&[(1, 100), (1, 120)])), 1);
        assert_eq!(run_len(&items(&[(1, 100), (2, 100)])), 1);
        assert_eq!(run_len(&items(&[(1, 100), (1, 100), (2, 100)])), 2);
        assert_eq!(run_len(&items(&[(1, 0), (1, 0)])), 1);
    }

    #[test]
    fn a_run_stays_within_the_kernel_limits() {
        let many = items(&[(1, 10); 100]);
        assert_eq!(run_len(&many), MAX_SEGMENTS);
        let big = items(&[(1, 1472); 60]);
        assert_eq!(run_len(&big), MAX_RUN_BYTES / 1472);
    }

    #[test]
    fn datagrams_to_several_daemons_are_gathered_per_address_without_crossing_a_token() {
        let a = |port: u16, host: u8| SocketAddr::from(([127, 0, 0, host], port));
        let d = |tag: u8, len: usize| Bytes::from(vec![tag; len]);
        let mut items = vec![
            (a(1, 2), d(1, 50)),
            (a(1, 3), d(1, 50)),
            (a(1, 2), d(2, 50)),
            (a(1, 3), d(2, 50)),
            (a(1, 2), d(3, 50)),
            (a(1, 3), d(3, 50)),
            (a(2, 2), d(9, 50)), // a token: another port
            (a(1, 2), d(4, 50)),
            (a(1, 3), d(4, 50)),
            (a(1, 2), d(5, 50)),
        ];
        gather_runs(&mut items);
        let got: Vec<(u8, u16, u8)> = items
            .iter()
            .map(|(s, b)| (s.ip().to_string().as_bytes()[8] - b'0', s.port(), b[0]))
            .collect();
        assert_eq!(
            got,
            [
                (2, 1, 1),
                (2, 1, 2),
                (2, 1, 3),
                (3, 1, 1),
                (3, 1, 2),
                (3, 1, 3),
                (2, 2, 9),
                (2, 1, 4),
                (2, 1, 5),
                (3, 1, 4),
            ]
        );
        assert_eq!(run_len(&items), 3);
    }

    #[test]
    fn a_coalesced_buffer_splits_at_its_stride() {
        let buf: Vec<u8> = (0..10).collect();
        let parts: Vec<&[u8]> = split(&buf, Some(4)).collect();
        assert_eq!(parts, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(split(&buf, None).count(), 1);
        assert_eq!(split(&buf, Some(0)).count(), 1);
        assert_eq!(split(&[], None).count(), 0);
    }
}
