#![no_main]
//! GROUPS messages and bodies: canonical re-encoding, re-fragmentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::groups(data));
