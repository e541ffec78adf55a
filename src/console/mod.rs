//! Console line protocol: pure command parsers ([`command`]), control-socket framing
//! ([`frame`]), the control-socket server ([`server`]) and the console client ([`client`]);
//! who may log in ([`auth`]) and run what ([`access`]).

pub mod access;
pub mod auth;
pub mod client;
pub mod command;
pub mod frame;
pub mod server;

pub use command::{
    parse_manager_line, parse_node_line, CommandError, ManagerCommand, NodeCommand, Parsed,
    MAX_LINE,
};
