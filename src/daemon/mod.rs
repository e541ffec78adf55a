//! The tokio daemon shell around `spread`.

pub mod net;
