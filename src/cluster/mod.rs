//! The Momentum-style cluster: `eccmgr` (manager), node agents, subclusters and DuraVIP,
//! over any Spread-compatible bus ([`bus::Bus`]).

pub mod bus;
pub mod cache;
pub mod duravip;
pub mod proto;
pub mod subcluster;
