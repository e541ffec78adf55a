#![no_main]
//! Regular tokens with retransmission requests: canonical re-encoding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::token(data));
