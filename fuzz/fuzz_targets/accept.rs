#![no_main]
//! Receive-side acceptance checks (§1.1) of a data- or token-port datagram.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::accept(data));
