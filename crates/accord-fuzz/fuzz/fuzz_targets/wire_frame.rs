#![no_main]

// libfuzzer-sys aborts on every panic, even one caught on purpose: Accord
// turns panics inside redb and Automerge into errors (catch_unwind), and
// those are not findings. Restore the default hook; a panic that escapes
// the target still aborts the run (libfuzzer-sys catches it and aborts).
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| accord_fuzz::wire_frame(data)
);
