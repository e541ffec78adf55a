#![no_main]
//! Structure-aware: spread.conf built from valid-looking pieces, print/parse fixed point.
libfuzzer_sys::fuzz_target!(|input: mbus_fuzz::ConfIn| input.run());
