//! Multi-process and golden-vector tests (one binary to keep link time down).

mod data;
mod netns;
mod wire_interop;
