//! Multi-process and golden-vector tests (one binary to keep link time down).

mod client_golden;
mod config;
mod cluster_daemon;
mod cluster_duravip;
mod cluster_process;
mod cluster_transcripts;
mod data;
mod fuzz_corpus;
mod golden_client;
mod harness;
mod spread_cli;
mod netns;
mod wire_interop;
