#![no_main]
//! Control-socket client frames (commands, logins) and password-store text.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::console_login(data));
