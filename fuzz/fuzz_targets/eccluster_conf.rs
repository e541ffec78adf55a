#![no_main]
//! ecelerity / eccluster.conf configuration text: parse, render, re-parse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mbus::fuzzing::eccluster_conf(data));
