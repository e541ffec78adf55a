//! Multi-process and golden-vector tests (one binary to keep link time down).

mod client_golden;
mod cluster_daemon;
mod cluster_duravip;
mod cluster_process;
mod cluster_transcripts;
mod data;
mod harness;
