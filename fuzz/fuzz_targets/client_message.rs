#![no_main]
//! Whole client<->daemon messages, both byte orders and both directions.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::client_message(data));
