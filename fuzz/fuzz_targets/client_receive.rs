#![no_main]
//! The client library's receive decoder: daemon → client bytes to typed messages.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::client_receive(data));
