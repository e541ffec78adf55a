#![no_main]
//! STATUS/PARTITION/FC/RELOAD control packets: canonical re-encoding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::monitor(data));
