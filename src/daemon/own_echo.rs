//! Our own broadcasts, dropped in the kernel.
//!
//! A broadcast (or looped-back multicast) leaves the send socket and comes back to every
//! socket of this host bound to the segment port — our own data sockets too. The core drops
//! those copies (§1.1 `own`), but only after the kernel queued them, woke the receive task,
//! and a `recvmmsg(2)` and an acceptance check ran for each: one wasted read per data packet
//! we send, on the hottest path there is (a flooder's daemon reads back every packet it
//! sends). A classic BPF socket filter on the data sockets drops a datagram whose source is
//! our send socket (its address and port) before it is queued. Only that socket's datagrams
//! match: a monitor on this host sends from another port, another daemon from another address
//! or port, so every datagram the core could accept still reaches it. IPv4 only (an IPv6
//! daemon's copies reach the core and are dropped there, as before); a kernel that refuses
//! the filter changes nothing either. `MBUS_RING_OWN_FILTER=0` leaves it off.

use std::net::{IpAddr, SocketAddr};

use socket2::{SockFilter, SockRef};
use tokio::net::UdpSocket;

use nix::libc::{BPF_ABS, BPF_H, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SKF_NET_OFF};

/// Offset of the source address in an IPv4 header.
const IPV4_SOURCE: i32 = 12;
// Classic BPF instructions (linux/filter.h), from libc's opcode parts.
const LD_W_ABS: u16 = (BPF_LD | BPF_W | BPF_ABS) as u16;
const LD_H_ABS: u16 = (BPF_LD | BPF_H | BPF_ABS) as u16;
const JEQ_K: u16 = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
const RET_K: u16 = (BPF_RET | BPF_K) as u16;

/// Whether `MBUS_RING_OWN_FILTER` allows the filter (default on; `0` turns it off).
pub(crate) fn enabled_from_env() -> bool {
    std::env::var("MBUS_RING_OWN_FILTER").map_or(true, |v| v != "0")
}

/// The program: drop (keep 0 bytes) a datagram whose IPv4 source is `ip` and whose UDP
/// source port is `port`; keep everything else whole. A UDP socket's filter sees the packet
/// from the UDP header on (source port at offset 0); the IP header is reached through
/// `SKF_NET_OFF`.
fn program(ip: std::net::Ipv4Addr, port: u16) -> [SockFilter; 6] {
    [
        // A negative offset from `SKF_NET_OFF` on: the IP header, as the kernel reads `k`.
        SockFilter::new(LD_W_ABS, 0, 0, (SKF_NET_OFF + IPV4_SOURCE) as u32),
        // Same address: next; else accept.
        SockFilter::new(JEQ_K, 0, 2, u32::from(ip)),
        SockFilter::new(LD_H_ABS, 0, 0, 0),
        // Same port: drop; else accept.
        SockFilter::new(JEQ_K, 1, 0, u32::from(port)),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// Attaches the filter for datagrams from `send` (our send socket's local address) to
/// `data`. `Ok(false)`: not applicable (IPv6, or port 0).
pub(crate) fn drop_from(data: &UdpSocket, send: SocketAddr) -> std::io::Result<bool> {
    let (IpAddr::V4(ip), port) = (send.ip(), send.port()) else {
        return Ok(false);
    };
    if port == 0 || ip.is_unspecified() {
        return Ok(false);
    }
    SockRef::from(data).attach_filter(&program(ip, port))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind on loopback")
    }

    #[tokio::test]
    async fn datagrams_of_the_send_socket_are_dropped_and_others_arrive() {
        let data = bound().await;
        let send = bound().await;
        let other = bound().await;
        let send_addr = send.local_addr().expect("local address");
        assert!(drop_from(&data, send_addr).expect("filter attached"));
        let to = data.local_addr().expect("local address");
        send.send_to(b"own", to).await.expect("send");
        other.send_to(b"other", to).await.expect("send");
        send.send_to(b"own again", to).await.expect("send");
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), data.recv_from(&mut buf))
            .await
            .expect("a datagram within 2 s")
            .expect("recv");
        assert_eq!(&buf[..n], b"other");
        assert_eq!(from, other.local_addr().expect("local address"));
        // Nothing else is queued: both datagrams of the send socket were dropped.
        let more = tokio::time::timeout(Duration::from_millis(200), data.recv_from(&mut buf)).await;
        assert!(more.is_err(), "a datagram of the send socket got through");
    }

    #[tokio::test]
    async fn ipv6_and_unbound_senders_attach_nothing() {
        let data = bound().await;
        let v6: SocketAddr = "[::1]:4803".parse().expect("address");
        let zero: SocketAddr = "127.0.0.1:0".parse().expect("address");
        assert!(!drop_from(&data, v6).expect("no error"));
        assert!(!drop_from(&data, zero).expect("no error"));
    }
}
