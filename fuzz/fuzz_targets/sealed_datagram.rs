#![no_main]
//! The secure ring's sealed-datagram decoder and opener (replay window, tag, round trip).
libfuzzer_sys::fuzz_target!(|data: &[u8]| spread::fuzzing::sealed_datagram(data));
