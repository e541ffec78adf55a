#![no_main]
//! Stateful: whole Nodes (daemon + ring engine) with hostile clients and a hostile peer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::node_stateful(data));
