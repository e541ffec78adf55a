#![no_main]
//! Connect handshake pieces (selector byte + bytes), both sides.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::client_handshake(data));
