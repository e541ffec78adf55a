//! Multi-process and golden-vector tests (one binary to keep link time down).

mod client_golden;
mod data;
mod golden_client;
mod golden_client_sock;
mod harness;
