#![no_main]
//! The client stream framer fed in chunks: same frames as in one piece.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::client_stream(data));
