#![no_main]
//! Structure-aware: messages fragmented and packed into data packets come back whole.
libfuzzer_sys::fuzz_target!(|input: mbus_fuzz::PackingIn| input.run());
