//! An organisation's signature over a document's heads.

use accord_identity::{OrgKey, OrgSecret, PUBLIC_KEY_LEN, verify};
use automerge::ChangeHash;

use crate::DocId;

const DOMAIN: &[u8] = b"accord-attest-v1\0";
const SIGNATURE_LEN: usize = 64;
/// Heads beyond this are not a document anyone edits: refuse rather than allocate.
pub const MAX_HEADS: usize = 256;

/// "Organisation `org` made or accepted the changes at `heads` of `doc`,
/// and everything they depend on."
///
/// The document id is signed too, so an attestation cannot be replayed
/// into another document (or partnership).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attestation {
    pub org: OrgKey,
    pub doc: DocId,
    pub heads: Vec<ChangeHash>,
    pub signature: [u8; SIGNATURE_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("the attestation is truncated or malformed")]
    Malformed,
    #[error("the attestation's signature does not verify for organisation {0}")]
    BadSignature(String),
}

impl Attestation {
    pub fn sign(secret: &OrgSecret, doc: DocId, heads: &[ChangeHash]) -> Self {
        let mut heads = heads.to_vec();
        heads.sort();
        heads.dedup();
        let signature = secret.sign(&signed_bytes(&doc, &heads));
        Self {
            org: secret.public(),
            doc,
            heads,
            signature,
        }
    }

    pub fn verify(&self) -> Result<(), AttestationError> {
        verify(
            &self.org,
            &signed_bytes(&self.doc, &self.heads),
            &self.signature,
        )
        .map_err(|_| AttestationError::BadSignature(self.org.fingerprint().to_string()))
    }

    /// Stable identity for storage: the same organisation attesting the
    /// same heads twice is one record.
    pub fn id(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.org.as_bytes());
        h.update(signed_bytes(&self.doc, &self.heads));
        h.finalize().into()
    }

    /// `org ‖ doc ‖ signature ‖ count (u16 LE) ‖ heads`: fixed-size fields,
    /// so decoding needs no allocation beyond the heads it announces.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(PUBLIC_KEY_LEN + 16 + SIGNATURE_LEN + 2 + self.heads.len() * 32);
        out.extend_from_slice(self.org.as_bytes());
        out.extend_from_slice(self.doc.as_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&(self.heads.len() as u16).to_le_bytes());
        for h in &self.heads {
            out.extend_from_slice(&h.0);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttestationError> {
        let fixed = PUBLIC_KEY_LEN + 16 + SIGNATURE_LEN + 2;
        if bytes.len() < fixed {
            return Err(AttestationError::Malformed);
        }
        let (org, rest) = bytes.split_at(PUBLIC_KEY_LEN);
        let (doc, rest) = rest.split_at(16);
        let (signature, rest) = rest.split_at(SIGNATURE_LEN);
        let (count, rest) = rest.split_at(2);
        let count = u16::from_le_bytes([count[0], count[1]]) as usize;
        if count == 0 || count > MAX_HEADS || rest.len() != count * 32 {
            return Err(AttestationError::Malformed);
        }
        let heads = rest
            .chunks_exact(32)
            .map(|c| ChangeHash(c.try_into().expect("32-byte chunk")))
            .collect();
        Ok(Self {
            org: OrgKey::from_bytes(org.try_into().expect("32 bytes")),
            doc: DocId::from_bytes(doc.try_into().expect("16 bytes")),
            heads,
            signature: signature.try_into().expect("64 bytes"),
        })
    }
}

fn signed_bytes(doc: &DocId, heads: &[ChangeHash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 16 + 4 + heads.len() * 32);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(doc.as_bytes());
    out.extend_from_slice(&(heads.len() as u32).to_le_bytes());
    for h in heads {
        out.extend_from_slice(&h.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> OrgSecret {
        OrgSecret::from_seed([n; 32])
    }

    #[test]
    fn round_trips_and_verifies() {
        let doc = DocId::from_bytes([7; 16]);
        let a = Attestation::sign(&secret(1), doc, &[ChangeHash([2; 32]), ChangeHash([1; 32])]);
        let back = Attestation::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back, a);
        back.verify().unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let doc = DocId::from_bytes([7; 16]);
        let a = Attestation::sign(&secret(1), doc, &[ChangeHash([2; 32])]);
        let mut other_doc = a.clone();
        other_doc.doc = DocId::from_bytes([8; 16]);
        assert!(other_doc.verify().is_err(), "replay into another document");
        let mut other_heads = a.clone();
        other_heads.heads = vec![ChangeHash([3; 32])];
        assert!(other_heads.verify().is_err());
        let mut other_org = a.clone();
        other_org.org = secret(2).public();
        assert!(other_org.verify().is_err(), "claiming someone else signed");
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let doc = DocId::from_bytes([7; 16]);
        let bytes = Attestation::sign(&secret(1), doc, &[ChangeHash([2; 32])]).to_bytes();
        for len in 0..bytes.len() {
            assert!(Attestation::from_bytes(&bytes[..len]).is_err());
        }
        let mut huge = bytes.clone();
        huge[PUBLIC_KEY_LEN + 16 + SIGNATURE_LEN] = 0xff;
        huge[PUBLIC_KEY_LEN + 16 + SIGNATURE_LEN + 1] = 0xff;
        assert!(Attestation::from_bytes(&huge).is_err());
    }
}
