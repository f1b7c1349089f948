//! Signed provenance: who may change what, and proof of who did.
//!
//! Automerge change hashes already chain every change to its causal past.
//! Two things complete the picture:
//!
//! * an [`Attestation`]: an organisation's ed25519 signature over a
//!   document's heads, vouching for those changes and their causal past.
//!   An organisation's changes are *attested* when one of its attestations
//!   covers them; every actor id starts with the organisation's public key,
//!   so the signature is also the binding of the actor to the organisation;
//! * a [roster claim](claim): each agreement or notes change names, inside
//!   its hashed bytes, the roster version its author was working from.
//!   Entitlement is decided from that version alone (and, for roster
//!   changes, from the roster state the change depends on), so every honest
//!   replica accepts and refuses exactly the same changes, whatever order
//!   they arrive in.
//!
//! [`verify`] holds the rules; callers supply the changes and a view of the
//! roster's history. Nothing here does IO.

mod attestation;
pub mod claim;
mod hashed;
mod verify;

pub use attestation::{Attestation, AttestationError};
pub use hashed::{ChangeHashMap, ChangeHashSet};
pub use verify::{
    Candidate, Refusal, RosterHistory, Rule, UnknownRoster, Verdict, covered, verify_batch,
    verify_roster_batch,
};

/// What a replica remembers about a change it refused, for the audit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusalRecord {
    /// The organisation the change's actor names, if any.
    pub author: Option<accord_identity::OrgKey>,
    /// The organisation that sent it to us (a relay forwards others' changes).
    pub peer: accord_identity::OrgKey,
    /// [`Refusal::code`] of the reason.
    pub reason: String,
    /// When we refused it (unix seconds, our clock).
    pub at: i64,
}

impl RefusalRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
