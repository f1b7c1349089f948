//! Mutual authentication: each side proves it holds its organisation key.
//!
//! Both sides send `Hello {org, nonce}`. The session transcript is a hash of
//! both keys and both nonces, ordered dialer first. Each side signs
//! `"accord-handshake-v1" ‖ its role ‖ transcript`. Because the transcript
//! includes the *other* side's fresh nonce, a recorded proof is useless in
//! any other session, and because the role is signed, a proof cannot be
//! reflected back at its sender.

use accord_identity::{OrgKey, OrgSecret, verify};
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"accord-handshake-v1";

/// The facts both sides agree on once both `Hello`s are exchanged.
#[derive(Clone, Debug)]
pub struct Session {
    pub dialer: OrgKey,
    pub listener: OrgKey,
    pub dialer_nonce: [u8; 32],
    pub listener_nonce: [u8; 32],
}

impl Session {
    fn transcript(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(self.dialer.as_bytes());
        h.update(self.listener.as_bytes());
        h.update(self.dialer_nonce);
        h.update(self.listener_nonce);
        h.finalize().into()
    }

    fn message(&self, signer_is_dialer: bool) -> Vec<u8> {
        let mut m = DOMAIN.to_vec();
        m.extend_from_slice(if signer_is_dialer {
            b"dialer"
        } else {
            b"listener"
        });
        m.extend_from_slice(&self.transcript());
        m
    }

    /// Our proof, as the dialer or the listener of this session.
    pub fn prove(&self, secret: &OrgSecret, we_dialed: bool) -> [u8; 64] {
        secret.sign(&self.message(we_dialed))
    }

    /// Checks the other side's proof.
    pub fn check(&self, signature: &[u8], we_dialed: bool) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (peer, peer_dialed) = if we_dialed {
            (&self.listener, false)
        } else {
            (&self.dialer, true)
        };
        verify(peer, &self.message(peer_dialed), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(a: &OrgSecret, b: &OrgSecret) -> Session {
        Session {
            dialer: a.public(),
            listener: b.public(),
            dialer_nonce: [1; 32],
            listener_nonce: [2; 32],
        }
    }

    #[test]
    fn honest_proofs_verify_both_ways() {
        let (a, b) = (OrgSecret::from_seed([1; 32]), OrgSecret::from_seed([2; 32]));
        let s = session(&a, &b);
        assert!(s.check(&s.prove(&a, true), false));
        assert!(s.check(&s.prove(&b, false), true));
    }

    #[test]
    fn impersonation_reflection_and_replay_fail() {
        let (a, b, mallory) = (
            OrgSecret::from_seed([1; 32]),
            OrgSecret::from_seed([2; 32]),
            OrgSecret::from_seed([3; 32]),
        );
        let s = session(&a, &b);
        // Mallory claims to be `a` but signs with her own key.
        assert!(!s.check(&s.prove(&mallory, true), false));
        // The listener's own proof reflected back as the dialer's.
        assert!(!s.check(&s.prove(&b, false), false));
        // A proof from another session (another nonce) is useless here.
        let other = Session {
            listener_nonce: [9; 32],
            ..s.clone()
        };
        assert!(!s.check(&other.prove(&a, true), false));
        assert!(!s.check(&[0; 10], false));
    }
}
