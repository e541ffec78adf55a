#![no_main]
//! The ring engine's packet codec: exact re-encoding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::ring_packet(data));
