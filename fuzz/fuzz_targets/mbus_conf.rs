#![no_main]
//! mbus.conf subcluster comments: names come from the text, line-ending independent.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::mbus_conf(data));
