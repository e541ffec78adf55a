#![no_main]
//! Configuration transaction scripts over several console sessions.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::config_txn(data));
