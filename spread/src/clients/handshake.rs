//! The connect handshake as the daemon runs it (fact sheet §2): hello, quota, names,
//! authentication, accept.

use bytes::{Buf, Bytes, BytesMut};
use tracing::debug;

use super::{Clients, MAX_NAME_ATTEMPTS};
use crate::session::auth::{PWORD_OK, PWORD_PASSWORD_LEN, PWORD_REFUSED, PWORD_USER_LEN};
use crate::session::{generated_name, private_group_name, AuthMethod, Phase, SessionId};
use crate::time::Instant;
use crate::wire::client::{
    decode_auth_choice, decode_hello, encode_accept, encode_auth_list, RejectCode, Version,
    AUTH_CHOICE_LEN,
};

impl Clients {
    /// Hello phase. Returns true if the session moved on (more bytes may be processed).
    pub(super) fn step_hello(&mut self, id: SessionId) -> bool {
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        let (hello, used) = match decode_hello(&s.inbuf) {
            Ok(None) => return false,
            Err(e) => {
                self.reject(id, e.reject_code());
                return false;
            }
            Ok(Some(h)) => h,
        };
        s.inbuf.advance(used);
        s.version = hello.version;
        s.membership = hello.wants_membership();
        s.priority = hello.flags >> 4;
        let peer = s.peer;
        if self.names.len() >= self.config.max_sessions {
            self.reject(id, RejectCode::Quota);
            return false;
        }
        let pg = if hello.name.is_empty() {
            match self.invent_name(id) {
                Some(pg) => pg,
                None => {
                    self.reject(id, RejectCode::NotUnique);
                    return false;
                }
            }
        } else {
            let pg = private_group_name(&hello.name, self.config.name.as_bytes());
            if self.names.contains_key(&pg) {
                self.reject(id, RejectCode::NotUnique);
                return false;
            }
            pg
        };
        self.names.insert(pg, id);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.private_group = pg;
        }
        if hello.version.has_auth_exchange() {
            let names: Vec<&str> = self.config.auth.allowed.iter().map(|m| m.name()).collect();
            let mut list = BytesMut::new();
            encode_auth_list(&names, &mut list);
            self.send(id, list.freeze());
            if names.is_empty() {
                self.reject(id, RejectCode::Auth);
                return false;
            }
            self.set_phase(id, Phase::Auth { deadline: None });
            true
        } else {
            if self.config.auth.decide_old_library(peer) {
                self.accept(id);
                true
            } else {
                self.reject(id, RejectCode::Auth);
                false
            }
        }
    }

    /// Auth phase. Returns true if the session moved on.
    pub(super) fn step_auth(&mut self, now: Instant, id: SessionId) -> bool {
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        if s.inbuf.len() < AUTH_CHOICE_LEN {
            if !s.inbuf.is_empty() && s.deadline().is_none() {
                self.set_phase(
                    id,
                    Phase::Auth {
                        deadline: Some(now + crate::session::AUTH_TIMEOUT),
                    },
                );
            }
            return false;
        }
        let mut choice = [0u8; AUTH_CHOICE_LEN];
        s.inbuf.copy_to_slice(&mut choice);
        let peer = s.peer;
        let chosen = decode_auth_choice(&choice);
        let Some(methods) = self.config.auth.methods(&chosen) else {
            self.reject(id, RejectCode::Auth);
            return false;
        };
        // In order, as 5.0.1: the first failure refuses; PWORD waits for its exchange.
        for (i, &m) in methods.iter().enumerate() {
            if m == AuthMethod::Pword {
                let then_ip = methods
                    .get(i + 1..)
                    .is_some_and(|r| r.contains(&AuthMethod::Ip));
                self.set_phase(
                    id,
                    Phase::Pword {
                        deadline: now + crate::session::AUTH_TIMEOUT,
                        then_ip,
                    },
                );
                return true;
            }
            if !self.config.auth.run(m, peer) {
                self.reject(id, RejectCode::Auth);
                return false;
            }
        }
        self.accept(id);
        true
    }

    /// `PWORD` exchange: 32 bytes of user name and 8 of password, answered with one byte (1
    /// accepted, 0 refused); then `IP` if it comes after, and the accept.
    pub(super) fn step_pword(&mut self, id: SessionId, then_ip: bool) -> bool {
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        if s.inbuf.len() < PWORD_USER_LEN + PWORD_PASSWORD_LEN {
            return false;
        }
        let user = s.inbuf.split_to(PWORD_USER_LEN);
        let password = s.inbuf.split_to(PWORD_PASSWORD_LEN);
        let peer = s.peer;
        let ok = self.config.auth.check_pword(&user, &password);
        debug!(session = id.0, ok, "PWORD exchange");
        let answer = if ok { PWORD_OK } else { PWORD_REFUSED };
        self.send(id, Bytes::copy_from_slice(&[answer]));
        if ok && (!then_ip || self.config.auth.run(AuthMethod::Ip, peer)) {
            self.accept(id);
            true
        } else {
            self.reject(id, RejectCode::Auth);
            false
        }
    }

    fn accept(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let mut out = BytesMut::new();
        encode_accept(Version::V5_0_1, s.version, s.private_group.text(), &mut out);
        debug!(session = id.0, name = ?s.private_group, "session accepted");
        if let Some(log) = &mut self.session_log {
            log.push_back((true, id, s.peer, s.private_group, 0));
        }
        self.stats.accepted += 1;
        self.send(id, out.freeze());
        self.set_phase(id, Phase::Open);
    }

    /// `r<n>-<conn>`, unique among the names in use.
    fn invent_name(&mut self, id: SessionId) -> Option<crate::wire::client::GroupName> {
        for _ in 0..MAX_NAME_ATTEMPTS {
            let r = self.next_random();
            let name = generated_name(r, id.0);
            let pg = private_group_name(&name, self.config.name.as_bytes());
            if !self.names.contains_key(&pg) {
                return Some(pg);
            }
        }
        None
    }
}
