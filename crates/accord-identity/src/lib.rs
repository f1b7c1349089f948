//! Who an organisation is, in bytes.
//!
//! An organisation is its ed25519 public key. People see a short
//! [`Fingerprint`] of it; Automerge sees an [`actor id`](OrgActor) that
//! starts with it. Because the key is *inside* every actor id, "which
//! organisation made this change" is a pure function of the change: no
//! registry, no dependence on arrival order. (The Trust issue adds
//! signatures that prove what the actor id only claims.)
//!
//! No IO happens here: randomness comes in as bytes from the caller.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Length of an organisation's public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Random bytes appended to the org key to make a per-process actor id.
pub const ACTOR_SUFFIX_LEN: usize = 8;

/// Why a key, fingerprint or actor id could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("not a public key: expected 64 hex characters, got {0:?}")]
    BadPublicKey(String),
    #[error("public key {0} is not a valid ed25519 point")]
    InvalidPoint(String),
    #[error("the secret key file is damaged: {0}")]
    BadSecretKey(String),
    #[error("the signature does not match the key and the signed content")]
    BadSignature,
}

/// An organisation's public identity: its ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgKey([u8; PUBLIC_KEY_LEN]);

impl OrgKey {
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The full key as lowercase hex: what people paste into `member add --key`.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// A short, stable name for people to compare by eye or over the phone.
    ///
    /// It hashes the key (rather than truncating it) so that every bit of
    /// the key influences what people compare.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::digest(self.0);
        let mut short = [0u8; FINGERPRINT_LEN];
        short.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Fingerprint(short)
    }

    /// Checks that the bytes are a usable ed25519 key, for input from people and peers.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::InvalidPoint(self.to_hex()))
    }

    /// The organisation named by an Automerge actor id, if it is one of ours.
    pub fn from_actor_bytes(actor: &[u8]) -> Option<Self> {
        if actor.len() != PUBLIC_KEY_LEN + ACTOR_SUFFIX_LEN {
            return None;
        }
        let mut key = [0u8; PUBLIC_KEY_LEN];
        key.copy_from_slice(&actor[..PUBLIC_KEY_LEN]);
        Some(Self(key))
    }
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgKey({})", self.fingerprint())
    }
}

impl fmt::Display for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for OrgKey {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(trimmed.as_bytes())
            .map_err(|_| IdentityError::BadPublicKey(trimmed.to_owned()))?;
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| IdentityError::BadPublicKey(trimmed.to_owned()))?;
        let key = Self(bytes);
        key.verifying_key()?;
        Ok(key)
    }
}

impl serde::Serialize for OrgKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for OrgKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

const FINGERPRINT_LEN: usize = 8;

/// The first 8 bytes of SHA-256 of the public key, shown as four groups of
/// four hex digits (`3f2a-91c0-77be-0d14`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; FINGERPRINT_LEN]);

impl Fingerprint {
    /// Whether `text` (with or without dashes, any case) is a prefix of this fingerprint.
    pub fn matches_prefix(&self, text: &str) -> bool {
        let wanted: String = text
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        !wanted.is_empty() && data_encoding::HEXLOWER.encode(&self.0).starts_with(&wanted)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = data_encoding::HEXLOWER.encode(&self.0);
        let groups: Vec<&str> = (0..4).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        f.write_str(&groups.join("-"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// An organisation's secret signing key. Never printed, never logged:
/// `Debug` shows only the fingerprint.
pub struct OrgSecret(SigningKey);

impl OrgSecret {
    /// Builds a key from 32 bytes of fresh randomness supplied by the caller.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The secret seed, for the key file writer only.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> OrgKey {
        OrgKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// An Automerge actor id for this organisation: the public key followed
    /// by `suffix` (fresh per process or device, so two sessions never
    /// reuse the same actor and sequence numbers).
    pub fn actor_bytes(&self, suffix: [u8; ACTOR_SUFFIX_LEN]) -> Vec<u8> {
        let mut actor = Vec::with_capacity(PUBLIC_KEY_LEN + ACTOR_SUFFIX_LEN);
        actor.extend_from_slice(self.public().as_bytes());
        actor.extend_from_slice(&suffix);
        actor
    }
}

impl fmt::Debug for OrgSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgSecret(for {})", self.public().fingerprint())
    }
}

/// Verifies `signature` by `key` over `message`, using strict verification
/// so that malleable or small-order signatures are refused.
pub fn verify(key: &OrgKey, message: &[u8], signature: &[u8; 64]) -> Result<(), IdentityError> {
    let verifying = key.verifying_key()?;
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    verifying
        .verify_strict(message, &signature)
        .map_err(|_| IdentityError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> OrgSecret {
        OrgSecret::from_seed([n; 32])
    }

    #[test]
    fn public_key_round_trips_through_hex() {
        let key = secret(1).public();
        assert_eq!(key.to_hex().parse::<OrgKey>().unwrap(), key);
        assert_eq!(key.to_hex().to_uppercase().parse::<OrgKey>().unwrap(), key);
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        assert!(matches!(
            "abc".parse::<OrgKey>(),
            Err(IdentityError::BadPublicKey(_))
        ));
        assert!("zz".repeat(32).parse::<OrgKey>().is_err());
    }

    #[test]
    fn fingerprint_is_grouped_and_prefix_matchable() {
        let fp = secret(2).public().fingerprint();
        let shown = fp.to_string();
        assert_eq!(shown.len(), 19);
        assert_eq!(shown.matches('-').count(), 3);
        assert!(fp.matches_prefix(&shown[..6]));
        assert!(fp.matches_prefix(&shown.to_uppercase()));
        assert!(!fp.matches_prefix(""));
    }

    #[test]
    fn actor_ids_name_their_organisation() {
        let org = secret(3);
        let actor = org.actor_bytes([7; ACTOR_SUFFIX_LEN]);
        assert_eq!(OrgKey::from_actor_bytes(&actor), Some(org.public()));
        assert_eq!(OrgKey::from_actor_bytes(&actor[..10]), None);
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let org = secret(4);
        let signature = org.sign(b"version 1");
        assert!(verify(&org.public(), b"version 1", &signature).is_ok());
        assert!(verify(&org.public(), b"version 2", &signature).is_err());
        assert!(verify(&secret(5).public(), b"version 1", &signature).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let org = secret(6);
        let shown = format!("{org:?}");
        assert!(!shown.contains(&data_encoding::HEXLOWER.encode(&org.seed())));
    }
}
