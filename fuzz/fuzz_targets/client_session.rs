#![no_main]
//! Stateful: hostile clients (script of connects, bytes, reads, closes, time) against a Daemon.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::client_session(data));
