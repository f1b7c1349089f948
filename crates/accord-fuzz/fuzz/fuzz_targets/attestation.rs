#![no_main]

// See `handshake.rs` for why the default panic hook is restored.
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| accord_fuzz::attestation(data)
);
