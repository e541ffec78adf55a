//! Multi-process and golden-vector tests (one binary to keep link time down).

mod client_golden;
mod data;
mod fuzz_corpus;
mod harness;
