//! Multi-process and golden-vector tests (one binary to keep link time down).

mod cluster_duravip;
mod cluster_transcripts;
mod data;
