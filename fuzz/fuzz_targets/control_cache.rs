#![no_main]
//! Persisted control cache: bounded load, stable save/load.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::control_cache(data));
