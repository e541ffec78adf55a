//! Entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus-replay test (`tests/it/fuzz_corpus.rs`) for the decoders of this crate: the ecelerity
//! configuration language, console command lines and endpoints, control-socket frames (logins
//! included), configuration transactions, log shipping, and the
//! client library's receive decoder. Feature
//! `fuzzing`; not a public API. The properties checked are the ones described in
//! `spread::fuzzing`; how to run and add targets: `fuzz/README.md`.

mod auth;
mod client;
mod cluster;
mod console;
mod ecconf;
mod logs;

pub use auth::{config_txn, console_login};
pub use client::{client_receive, console_endpoint};
pub use cluster::{cluster_message, control_cache, mbus_conf};
pub use console::{console_command, control_frame};
pub use ecconf::eccluster_conf;
pub use logs::log_shipping;
pub use spread::fuzzing::Target;

/// Every target of this crate, for the corpus-replay test.
pub const TARGETS: &[Target] = &[
    Target {
        name: "eccluster_conf",
        run: eccluster_conf,
    },
    Target {
        name: "console_command",
        run: console_command,
    },
    Target {
        name: "control_frame",
        run: control_frame,
    },
    Target {
        name: "cluster_message",
        run: cluster_message,
    },
    Target {
        name: "control_cache",
        run: control_cache,
    },
    Target {
        name: "mbus_conf",
        run: mbus_conf,
    },
    Target {
        name: "client_receive",
        run: client_receive,
    },
    Target {
        name: "console_endpoint",
        run: console_endpoint,
    },
    Target {
        name: "console_login",
        run: console_login,
    },
    Target {
        name: "config_txn",
        run: config_txn,
    },
    Target {
        name: "log_shipping",
        run: log_shipping,
    },
];
