//! Stable identifiers for partnerships and documents.
//!
//! Ids are 128 bits, printed as 26 lowercase base32 characters so they are
//! URL-safe, unambiguous to read aloud, and easy to match by prefix.

use std::fmt;
use std::str::FromStr;

use accord_identity::OrgKey;
use sha2::{Digest, Sha256};

use crate::ModelError;

const ID_LEN: usize = 16;

fn encode(bytes: &[u8; ID_LEN]) -> String {
    data_encoding::BASE32_DNSSEC.encode(bytes)
}

fn decode(text: &str) -> Option<[u8; ID_LEN]> {
    let bytes = data_encoding::BASE32_DNSSEC
        .decode(text.trim().to_ascii_lowercase().as_bytes())
        .ok()?;
    bytes.try_into().ok()
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            pub fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ModelError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode(s).map(Self).ok_or_else(|| ModelError::BadId {
                    what: $what,
                    text: s.to_owned(),
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(DocId, "document id");
id_type!(PartnershipId, "partnership id");

impl DocId {
    /// A fresh id from 16 random bytes supplied by the caller.
    pub fn random(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }
}

impl PartnershipId {
    /// Self-certifying: the id commits to the creating organisation's key and
    /// a nonce, so anyone holding the roster (which records both) can check
    /// who created the partnership without asking anybody.
    pub fn derive(creator: &OrgKey, nonce: &[u8; ID_LEN]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"accord-partnership-v1");
        hasher.update(creator.as_bytes());
        hasher.update(nonce);
        let digest = hasher.finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Self(id)
    }

    /// The roster document of a partnership shares the partnership's id.
    pub fn roster_doc(&self) -> DocId {
        DocId(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_short_and_parse_back() {
        let id = DocId::random([42; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(text.parse::<DocId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<DocId>().unwrap(), id);
        assert!("not-an-id".parse::<DocId>().is_err());
    }

    #[test]
    fn partnership_ids_commit_to_creator_and_nonce() {
        let a = accord_identity::OrgSecret::from_seed([1; 32]).public();
        let b = accord_identity::OrgSecret::from_seed([2; 32]).public();
        let nonce = [9; 16];
        assert_eq!(
            PartnershipId::derive(&a, &nonce),
            PartnershipId::derive(&a, &nonce)
        );
        assert_ne!(
            PartnershipId::derive(&a, &nonce),
            PartnershipId::derive(&b, &nonce)
        );
        assert_ne!(
            PartnershipId::derive(&a, &nonce),
            PartnershipId::derive(&a, &[8; 16])
        );
    }
}
