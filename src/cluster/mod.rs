//! The Momentum-style cluster: `eccmgr` (manager), node agents, subclusters and DuraVIP,
//! over any Spread-compatible bus ([`bus::Bus`]).

pub mod bus;
pub mod cache;
pub mod duravip;
pub mod exec;
pub mod manager;
pub mod members;
pub mod node;
pub mod proto;
pub mod run;
pub mod shell;
pub mod sim;
pub mod spread_bus;
pub mod subcluster;
