//! Multi-process and golden-vector tests (one binary to keep link time down).

mod client_golden;
mod client_inprocess;
mod client_limits;
mod client_membership;
mod client_services;
mod client_slow;
mod cluster_daemon;
mod cluster_duravip;
mod cluster_netns;
mod cluster_process;
mod cluster_transcripts;
mod config;
mod data;
mod fuzz_corpus;
mod golden_client;
mod golden_client_sock;
mod harness;
mod netns;
mod raw_client;
mod ring;
mod ring_interop;
mod ring_monitor;
mod ring_multiseg;
mod ring_netns;
mod spread_cli;
mod wire_interop;
