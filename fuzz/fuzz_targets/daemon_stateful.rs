#![no_main]
//! Stateful: a hostile peer (inject, spoof, lose, replay, corrupt) against a ring of two honest engines.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::daemon_stateful(data));
