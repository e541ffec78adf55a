#![no_main]
//! GROUPS state exchange: bodies from hostile daemons merged into a daemon's group state.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::group_exchange(data));
