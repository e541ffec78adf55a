//! Status at a glance: asks every daemon of a `spread.conf` for its STATUS over the monitor
//! protocol (as 5.0.1's `spmonitor` does, so real 5.0.1 daemons answer too) and renders the
//! answers as one table or as JSON (`mbus-status`).
//!
//! The request goes out from this machine's host of the configuration, with that host's
//! daemon id and the configuration hash (a daemon drops anything else, fact sheet §1.1); each
//! daemon answers to that host's address at the port named in the request.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use spread::config::{Config, HostId};
use spread::wire::daemon::{DaemonId, Packet, PacketBody, StatusRecord};
use tokio::net::UdpSocket;

/// One configured daemon and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonStatus {
    /// Name in the configuration.
    pub name: String,
    /// Configured address.
    pub address: IpAddr,
    /// Its answer; `None`: no reply within the timeout.
    pub status: Option<Status>,
}

/// A STATUS reply, decoded into what an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Membership state (5.0.1's names: OP, SEG, REPRESENTED, GATHER, FORM, EVS).
    pub state: String,
    /// Group-layer state (GOP, GTRANS, GGATHER, GGT).
    pub group_state: String,
    /// Daemons in its ring.
    pub ring_members: i16,
    /// Segments of its ring.
    pub segments: i16,
    /// Leader of its ring (name from the configuration, else the id in hex).
    pub leader: String,
    /// Ring-wide aru.
    pub aru: i32,
    /// Its own aru.
    pub my_aru: i32,
    /// Highest seq seen.
    pub highest_seq: i32,
    /// Retransmissions it sent.
    pub retransmissions: i32,
    /// Client sessions.
    pub sessions: i16,
    /// Groups.
    pub groups: i16,
    /// Regular configurations installed.
    pub membership_changes: i16,
    /// Seconds since it started.
    pub uptime_secs: i32,
    /// Token rounds in its ring.
    pub token_rounds: i32,
    /// Version it reports, `major.minor.patch`.
    pub version: String,
    /// The whole record as sent.
    #[serde(skip)]
    pub record: StatusRecord,
}

/// 5.0.1's membership state numbers (membership.h).
fn state_name(v: i32) -> String {
    match v {
        1 => "OP".into(),
        2 => "SEG".into(),
        3 => "REPRESENTED".into(),
        4 => "GATHER".into(),
        5 => "FORM".into(),
        6 => "EVS".into(),
        n => format!("?{n}"),
    }
}

/// 5.0.1's group-layer state numbers (groups.h).
fn gstate_name(v: i32) -> String {
    match v {
        1 => "GOP".into(),
        2 => "GTRANS".into(),
        3 => "GGATHER".into(),
        4 => "GGT".into(),
        n => format!("?{n}"),
    }
}

impl Status {
    /// Decodes `r`, naming the leader from `config`.
    pub fn from_record(r: StatusRecord, config: &Config) -> Self {
        let leader = config
            .hosts()
            .find(|(_, h)| h.vid as i32 == r.leader_id)
            .map_or_else(|| format!("{:08x}", r.leader_id), |(_, h)| h.name.clone());
        Self {
            state: state_name(r.state),
            group_state: gstate_name(r.gstate),
            ring_members: r.num_procs,
            segments: r.num_segments,
            leader,
            aru: r.aru,
            my_aru: r.my_aru,
            highest_seq: r.highest_seq,
            retransmissions: r.retrans,
            sessions: r.num_sessions,
            groups: r.num_groups,
            membership_changes: r.membership_changes,
            uptime_secs: r.sec,
            token_rounds: r.token_rounds,
            version: format!(
                "{}.{}.{}",
                r.major_version, r.minor_version, r.patch_version
            ),
            record: r,
        }
    }
}

/// Why the daemons could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// This machine's host is not in the configuration.
    #[error(transparent)]
    Me(#[from] crate::daemon::MeError),
    /// The reply socket could not be opened on the host's address.
    #[error(
        "cannot open a UDP socket on {addr} (the monitor speaks from its host's address): {err}"
    )]
    Bind {
        /// Address tried.
        addr: SocketAddr,
        /// Why.
        err: std::io::Error,
    },
    /// Sending failed.
    #[error("cannot send to {addr}: {err}")]
    Send {
        /// Destination.
        addr: SocketAddr,
        /// Why.
        err: std::io::Error,
    },
}

/// Asks the daemons of `config` for their status, as host `me` (which must be this machine),
/// and waits at most `timeout` for the replies.
#[derive(Debug)]
pub struct Prober {
    sock: UdpSocket,
    request: Vec<u8>,
    /// (name, id, address, data port) of every configured daemon.
    daemons: Vec<(String, u32, IpAddr, u16)>,
}

impl Prober {
    /// A prober speaking for host `me` of `config` (the monitor's own host: replies come to
    /// its configured address).
    pub async fn new(config: &Config, me: HostId) -> Result<Self, StatusError> {
        let host = config
            .host(me)
            .ok_or_else(|| crate::daemon::MeError::UnknownName(format!("{me:?}")))?;
        let local = SocketAddr::new(host.addr.ip, 0);
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|err| StatusError::Bind { addr: local, err })?;
        let port = sock
            .local_addr()
            .map_err(|err| StatusError::Bind { addr: local, err })?
            .port();
        let hash = spread::daemon::ring_config(config, me).conf_hash;
        let request = Packet::status_request(DaemonId(host.vid), hash, port).to_vec();
        let daemons = config
            .hosts()
            .map(|(id, h)| {
                let p = config.segments.get(id.segment).map_or(0, |s| s.port);
                (h.name.clone(), h.vid, h.addr.ip, p)
            })
            .collect();
        Ok(Self {
            sock,
            request,
            daemons,
        })
    }

    /// One round: a STATUS request to every daemon, then the replies that arrive within
    /// `timeout` (a daemon that does not answer is `status: None`).
    pub async fn probe(
        &self,
        config: &Config,
        timeout: Duration,
    ) -> Result<Vec<DaemonStatus>, StatusError> {
        for (_, _, ip, port) in &self.daemons {
            let addr = SocketAddr::new(*ip, *port);
            self.sock
                .send_to(&self.request, addr)
                .await
                .map_err(|err| StatusError::Send { addr, err })?;
        }
        let mut got: BTreeMap<u32, StatusRecord> = BTreeMap::new();
        let end = tokio::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 2048];
        while got.len() < self.daemons.len() {
            let Ok(Ok((n, _))) = tokio::time::timeout_at(end, self.sock.recv_from(&mut buf)).await
            else {
                break;
            };
            let Ok(p) = Packet::from_datagram(&buf[..n]) else {
                continue;
            };
            if let PacketBody::Status(Some(rec)) = p.body {
                got.insert(p.header.proc_id.0, rec);
            }
        }
        Ok(self
            .daemons
            .iter()
            .map(|(name, vid, ip, _)| DaemonStatus {
                name: name.clone(),
                address: *ip,
                status: got.get(vid).map(|r| Status::from_record(*r, config)),
            })
            .collect())
    }
}

/// The table header and one line per daemon, columns aligned.
pub fn render_table(rows: &[DaemonStatus]) -> String {
    let head = [
        "DAEMON",
        "ADDRESS",
        "STATE",
        "GSTATE",
        "RING",
        "LEADER",
        "ARU/HIGHEST",
        "RETRANS",
        "SESSIONS",
        "GROUPS",
        "CHANGES",
        "UPTIME",
        "VERSION",
    ];
    let mut lines: Vec<Vec<String>> = vec![head.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let mut l = vec![r.name.clone(), r.address.to_string()];
        match &r.status {
            Some(s) => l.extend([
                s.state.clone(),
                s.group_state.clone(),
                s.ring_members.to_string(),
                s.leader.clone(),
                format!("{}/{}", s.aru, s.highest_seq),
                s.retransmissions.to_string(),
                s.sessions.to_string(),
                s.groups.to_string(),
                s.membership_changes.to_string(),
                format!("{}s", s.uptime_secs),
                s.version.clone(),
            ]),
            None => l.push("no reply".to_owned()),
        }
        lines.push(l);
    }
    let cols = head.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .filter(|l| l.len() > 1 || c == 0)
                .filter_map(|l| l.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(c, v)| format!("{v:<w$}", w = width.get(c).copied().unwrap_or(0)))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The rows as a JSON array (one object per daemon; `status` is `null` for no reply).
pub fn render_json(rows: &[DaemonStatus]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> Config {
        Config::parse(
            "Spread_Segment 127.255.255.255:4803 {\n  a 127.0.0.1\n  b 127.0.0.2\n}\n",
            "t.conf",
        )
        .expect("config")
    }

    #[test]
    fn status_names_states_and_the_leader_from_the_configuration() {
        let c = conf();
        let leader = c.hosts().nth(1).expect("b").1.vid as i32;
        let r = StatusRecord {
            state: 1,
            gstate: 3,
            leader_id: leader,
            num_procs: 2,
            aru: 7,
            highest_seq: 9,
            major_version: 5,
            patch_version: 1,
            ..StatusRecord::default()
        };
        let s = Status::from_record(r, &c);
        assert_eq!(
            (s.state.as_str(), s.group_state.as_str()),
            ("OP", "GGATHER")
        );
        assert_eq!(s.leader, "b");
        assert_eq!(s.version, "5.0.1");
        let rows = vec![
            DaemonStatus {
                name: "a".into(),
                address: "127.0.0.1".parse().expect("ip"),
                status: Some(s),
            },
            DaemonStatus {
                name: "b".into(),
                address: "127.0.0.2".parse().expect("ip"),
                status: None,
            },
        ];
        let t = render_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("DAEMON  ADDRESS    STATE"), "{t}");
        assert!(lines[1].contains("OP") && lines[1].contains("7/9"), "{t}");
        assert!(lines[2].ends_with("no reply"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&render_json(&rows)).expect("json");
        assert_eq!(j[0]["status"]["leader"], "b");
        assert!(j[1]["status"].is_null());
    }
}
