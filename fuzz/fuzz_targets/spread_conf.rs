#![no_main]
//! spread.conf / mbus.conf text: one-line errors, print/parse fixed point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::spread_conf(data));
