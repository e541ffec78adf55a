//! The tokio shell of the daemon.

pub mod session;

pub use session::{spawn_core, CoreHandle, CoreStopped};
