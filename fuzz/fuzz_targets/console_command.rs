#![no_main]
//! Console command lines (manager and node): canonical rendering re-parses to the same command.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::console_command(data));
