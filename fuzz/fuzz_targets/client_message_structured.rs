#![no_main]
//! Structure-aware: client messages field by field, framed back exactly (both orders, both directions).
libfuzzer_sys::fuzz_target!(|input: mbus_fuzz::MessageIn| input.run());
