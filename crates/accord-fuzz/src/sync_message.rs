//! Target `sync_message`: bytes from an authenticated member applied to a
//! live agreement through the engine, as a sync message or as raw changes.
//!
//! Input layout: one mode byte, then the payload. Mode bit 0: the payload
//! is raw change bytes, wrapped in an otherwise empty sync message (so the
//! fuzzer reaches Automerge's change decoder directly); else it is a whole
//! sync message. Bit 1: coalesce, and deliver the message twice before
//! the flush (the one-call apply of several messages).

use accord_sync::wire::sync_frames;
use automerge::sync::{Message, MessageVersion};

use crate::harness::{Harness, Setup};
use crate::partnership::Partnership;

/// Applies `data` to A's MOU from B; the harness checks the invariants.
pub fn sync_message(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let coalesce = mode & 2 != 0;
    let mut harness = authenticated(coalesce);
    let message = if mode & 1 != 0 {
        wrap_changes(payload)
    } else {
        payload.to_vec()
    };
    let fixture = Partnership::get();
    // B's attestation first, as B's engine sends it, so B's real changes verify.
    harness.receive(fixture.b_attest_frame().encode());
    let copies = if coalesce { 2 } else { 1 };
    for _ in 0..copies {
        for frame in sync_frames(*fixture.mou.as_bytes(), message.clone()) {
            harness.receive(frame.encode());
        }
    }
    harness.flush();
    harness.check_store();
}

/// A listening, with B authenticated and sharing the partnership.
pub fn authenticated(coalesce: bool) -> Harness {
    let fixture = Partnership::get();
    let mut harness = Harness::new(Setup {
        coalesce,
        ..Setup::default()
    });
    for frame in fixture.b_handshake(false) {
        harness.receive(frame.encode());
    }
    harness.receive(fixture.b_summary().encode());
    assert!(
        harness.authenticated() && !harness.closed(),
        "the fixture handshake must succeed"
    );
    harness
}

/// `changes` as the only content of a sync message.
pub fn wrap_changes(changes: &[u8]) -> Vec<u8> {
    Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: changes.to_vec().into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}
