#![no_main]
//! Bus messages between eccmgr and node agents: exact re-encoding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::cluster_message(data));
