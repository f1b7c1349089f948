//! Target `attestation`: one attestation as a peer sends it (inside an
//! `Attest` frame), decoded, verified and offered to a live agreement ahead
//! of B's real changes.
//!
//! Input layout: the attestation's bytes, as `Attestation::from_bytes`
//! reads them. Promises checked: decoding never panics; whatever decodes
//! re-encodes to an attestation with the same id; and A stores B's changes
//! only if the input is a valid signature of B's (no genuine attestation of
//! B's is sent here, so anything else must leave them unattested).

use accord_model::trust::Attestation;
use accord_sync::wire::{Frame, sync_frames};

use crate::partnership::Partnership;
use crate::sync_message::{authenticated, wrap_changes};

pub fn attestation(data: &[u8]) {
    let decoded = Attestation::from_bytes(data).ok();
    if let Some(a) = &decoded {
        let again =
            Attestation::from_bytes(&a.to_bytes()).expect("a re-encoded attestation decodes");
        assert_eq!(again.id(), a.id(), "re-encoding changed the attestation");
    }
    let fixture = Partnership::get();
    let signed_by_b = decoded
        .is_some_and(|a| a.org == fixture.key_b() && a.doc == fixture.mou && a.verify().is_ok());
    // Every input goes through the engine (the harness checks its store),
    // B's valid signatures too.
    let stored = stored_after(data);
    assert!(
        signed_by_b || stored == 0,
        "B's changes were stored on an attestation that is not B's valid signature"
    );
}

/// Offers `data` as B's only attestation of the MOU, then B's changes;
/// returns how many log entries A stored.
fn stored_after(data: &[u8]) -> usize {
    let fixture = Partnership::get();
    let mou = *fixture.mou.as_bytes();
    let mut harness = authenticated(false);
    harness.receive(
        Frame::Attest {
            doc: mou,
            attestations: vec![serde_bytes::ByteBuf::from(data.to_vec())],
        }
        .encode(),
    );
    for frame in sync_frames(mou, wrap_changes(&fixture.b_changes.concat())) {
        harness.receive(frame.encode());
    }
    harness.flush();
    harness.check_store();
    harness.mou_log_entries()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target's promise is not vacuous: B's genuine attestation of its
    /// last change gets B's changes stored, and one flipped bit does not.
    #[test]
    fn only_a_genuine_attestation_lets_the_changes_in() {
        let genuine = Partnership::get().b_attestations.last().unwrap().clone();
        assert!(
            stored_after(&genuine) > 0,
            "the genuine attestation is accepted"
        );
        let mut forged = genuine.clone();
        let end = forged.len() - 1;
        forged[end] ^= 0x01;
        assert_eq!(stored_after(&forged), 0, "a forged one lets nothing in");
        attestation(&forged);
        attestation(&genuine);
    }
}
