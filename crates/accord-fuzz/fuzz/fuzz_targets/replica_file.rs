#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| accord_fuzz::replica_file(data));
