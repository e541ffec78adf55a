//! The Momentum-style cluster: `eccmgr` (manager), node agents, subclusters and DuraVIP,
//! over any Spread-compatible bus.
//!
//! # Layout
//!
//! * [`bus`] — the [`bus::Bus`] trait (join, leave, AGREED multicast, receive) and
//!   [`bus::MemHub`], an in-memory bus with one total order across all groups.
//!   [`spread_bus::SpreadBus`] implements the trait over the `mbus::client` library, so the
//!   same code runs against our daemon or the real Spread 5.0.1.
//! * [`proto`] — our versioned message format between manager and nodes (fact sheet §8.1):
//!   commands, chunked responses (each Spread message stays far below 5.0.1's 143 200-byte
//!   capacity), self-descriptions, DuraVIP views, moves.
//! * [`manager`] and [`node`] — sans-I/O cores: console lines and bus events in (with the time
//!   in seconds), bus actions / plumbing / mapped-command runs out. The manager implements the
//!   twelve commands of §2 plus `config …`; answers go to the bounded, persistable
//!   [`cache::ControlCache`].
//! * [`duravip`] — ownership as a pure function of (cluster-group membership, latest views),
//!   so nodes that delivered the same prefix of the total order agree by construction.
//! * [`subcluster`] — the `# Subcluster:` table of `mbus.conf`.
//! * [`shared`] — replicated gauge tables (`cluster shared …`), merged in the agreed order;
//!   [`arp`] — `cluster arp show` from the kernel's neighbour table.
//! * [`logship`] / [`logsink`] — log aggregation: nodes ship their `cluster { logs }` lines in
//!   bounded batches to a manager with `as_logger`, which appends them per node.
//! * [`shell`] — the tokio loops: one task owns a core, selects over control-socket requests,
//!   the bus and timers, and reconnects (with back-off) when the daemon goes away.
//! * [`sim`] — a deterministic single-process cluster over [`bus::MemHub`] for transcript and
//!   property tests (and `eccmgr -s memory:…` demos).
//!
//! # Ordering
//!
//! A node processes control-group commands, cluster-group views and moves from **one**
//! connection in delivery order (§6.5). Every multicast is AGREED. A reloaded configuration or
//! a move is never applied locally: it is announced and takes effect when delivered.
//!
//! # Embedded ring
//!
//! `eccmgr` is written against [`bus::Bus`], so running without a separate daemon needs no
//! other code path: with `Embedded_Ring = true` (and `Mbus_Conf` naming the ring's
//! `mbus.conf`, `Embedded_Name` this host's entry if it cannot be found by address) `eccmgr`
//! starts the daemon inside its own process ([`crate::daemon::DaemonBuilder`]: its sockets
//! open for other clients and the ring) and attaches to it over an in-memory pipe
//! ([`spread_bus::SpreadBus::connect_in_process`]), not over TCP to itself; node agents on
//! other hosts join the same ring through their own daemons (`tests/it/cluster_process.rs`,
//! `cluster_process_embedded_ring`).

pub mod arp;
pub mod bus;
pub mod cache;
pub mod duravip;
pub mod exec;
pub mod logship;
pub mod logsink;
pub mod manager;
pub mod members;
pub mod node;
pub mod proto;
pub mod run;
pub mod shared;
pub mod shell;
pub mod sim;
pub mod spread_bus;
pub mod subcluster;
