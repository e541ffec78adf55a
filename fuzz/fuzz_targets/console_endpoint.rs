#![no_main]
//! The endpoint argument of ec_console (path, port, host:port).
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::console_endpoint(data));
