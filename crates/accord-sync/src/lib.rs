//! The sans-IO sync engine.
//!
//! [`Engine`] knows nothing about sockets, threads, clocks or disks. A
//! runtime drives it in a loop:
//!
//! ```text
//! loop {
//!     let input = next event: bytes from a connection, a local change,
//!                 a connection opened or closed, a document loaded, a tick;
//!     let out = engine.handle(input, now_ms);
//!     1. make `out.writes` durable (one transaction),
//!     2. then send `out.send` frames and close `out.close` connections,
//!     3. load every document in `out.load` and feed it back as `Input::Loaded`,
//!     4. hand `out.events` to the application.
//! }
//! ```
//! Step 1 before step 2 is what makes an acknowledgement mean "on disk":
//! every frame that advertises our heads is sent after those heads are
//! durable.
//!
//! Per document the engine runs Automerge's sync protocol. Around it, it
//! adds what Automerge does not have: a handshake in which both sides
//! prove their organisation key ([`handshake`]), authorisation by the
//! partnership roster (a peer is offered and accepted only documents of
//! partnerships it is a member of, and only documents the roster lists),
//! and a per-partnership digest of document heads so that a reconnect
//! costs one small frame per partnership when nothing changed.

mod engine;
mod handshake;
mod message;
mod negotiation;
mod provenance;
mod registry;
pub mod wire;

pub use engine::{
    ConnId, ConnStats, Engine, EngineConfig, Event, Input, Outputs, StorageWrite, SyncLag,
};
pub use handshake::Session;
pub use wire::{ErrorCode, PeerRole};
