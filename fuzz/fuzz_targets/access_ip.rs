#![no_main]
//! `spread.access_ip` text (the `IP` authentication allow list).
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::access_ip(data));
