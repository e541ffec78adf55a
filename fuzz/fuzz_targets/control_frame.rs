#![no_main]
//! Control-socket request/response frames: exact re-encoding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::control_frame(data));
