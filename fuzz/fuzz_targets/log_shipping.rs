#![no_main]
//! Log shipping between a node's shipper and a manager's sink (lost batches, re-subscriptions, hostile bodies).
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::log_shipping(data));
