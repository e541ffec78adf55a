#![no_main]
//! Data-port datagrams carrying messages: canonical re-encoding, fragments, reassembly.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::daemon_packet(data));
