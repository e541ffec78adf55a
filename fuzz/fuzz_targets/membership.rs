#![no_main]
//! ALIVE/JOIN/REFER packets and FORM1/FORM2 tokens: canonical re-encoding, list maxima.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::membership(data));
