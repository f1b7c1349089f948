//! Fuzz target bodies for every decoder of peer bytes, on stable Rust.
//!
//! Each target is a plain `pub fn(&[u8])` that panics only when Accord
//! breaks a promise to a hostile peer or a damaged disk. The cargo-fuzz
//! harness in `fuzz/` (outside the workspace, nightly or
//! `RUSTC_BOOTSTRAP=1`) calls them; so does this crate's own regression
//! test, which runs every committed corpus file and a seeded mutation
//! smoke through them on stable in CI.
//!
//! | target          | what it feeds                                             |
//! |-----------------|-----------------------------------------------------------|
//! | `wire_frame`    | one websocket message to `Frame::decode`                  |
//! | `handshake`     | a timed sequence of messages to a fresh engine connection, as listener or dialer |
//! | `sync_message`  | a sync message or raw change bytes from an authenticated member, applied to a live agreement |
//! | `replica_file`  | a mutated `replica.redb`, opened and read in full         |
//! | `attestation`   | one attestation in an `Attest` frame, then a member's real changes |
//!
//! The seed corpora are generated from real frames, real changes and a real
//! replica file by `cargo run -p accord-fuzz --bin seed-corpus`.

mod attestation;
mod handshake;
mod harness;
pub mod mutate;
mod partnership;
mod replica_file;
pub mod seeds;
mod sync_message;
mod wire_frame;

pub use attestation::attestation;
pub use handshake::handshake;
pub use harness::{Harness, Setup};
pub use partnership::Partnership;
pub use replica_file::{
    base_replica, damaged_folder, open_and_read_all, repair_store, replica_file, write_folder,
};
pub use sync_message::{authenticated, sync_message, wrap_changes};
pub use wire_frame::wire_frame;

/// A target: its name (the cargo-fuzz target and corpus folder) and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order CI runs them.
pub const TARGETS: [Target; 5] = [
    ("wire_frame", wire_frame),
    ("handshake", handshake),
    ("sync_message", sync_message),
    ("attestation", attestation),
    ("replica_file", replica_file),
];
