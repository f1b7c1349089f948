//! One organisation's notes on a partnership: its comments, the comments
//! it resolved, and its sign-offs.
//!
//! Each member writes only its own notes document, so nobody can delete or
//! rewrite another organisation's comment or sign-off; the trust rules
//! enforce this on every replica (see [`crate::trust::Rule::Notes`]).
//!
//! Layout:
//! ```text
//! accord:      { schema: 1, kind: "notes", partnership, org: key hex }
//! comments:    { <comment id>: { doc, field, quote, text, created } }
//! resolutions: { <comment id>: { at } }
//! signoffs:    { <signoff id>: { doc, heads: "hex,hex", statement, at, signature } }
//! ```

use accord_identity::{OrgKey, OrgSecret, verify};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    transaction::Transactable,
};
use sha2::{Digest, Sha256};

use crate::document::{CommittedChange, commit};
use crate::roster::{SCHEMA_VERSION, scalar_str};
use crate::{DocId, ModelError, PartnershipId};

/// Bounds on what people type, so a notes document stays small.
pub const MAX_COMMENT_CHARS: usize = 4_000;
pub const MAX_STATEMENT_CHARS: usize = 1_000;

/// A comment on a field of an agreement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Comment {
    pub id: String,
    pub author: OrgKey,
    pub doc: DocId,
    pub field: String,
    /// The words commented on, if the comment is about part of a text.
    pub quote: Option<String>,
    pub text: String,
    pub created: i64,
}

/// An organisation's signature on one exact version of an agreement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SignOff {
    pub org: OrgKey,
    pub partnership: PartnershipId,
    pub doc: DocId,
    #[serde(serialize_with = "hex_heads")]
    pub heads: Vec<ChangeHash>,
    pub statement: String,
    pub at: i64,
    #[serde(serialize_with = "hex_bytes")]
    pub signature: [u8; 64],
}

fn hex_heads<S: serde::Serializer>(heads: &[ChangeHash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(heads.iter().map(|h| h.to_string()))
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&data_encoding::HEXLOWER.encode(bytes))
}

impl SignOff {
    pub fn sign(
        secret: &OrgSecret,
        partnership: PartnershipId,
        doc: DocId,
        heads: &[ChangeHash],
        statement: &str,
        at: i64,
    ) -> Self {
        let mut heads = heads.to_vec();
        heads.sort();
        let mut signoff = Self {
            org: secret.public(),
            partnership,
            doc,
            heads,
            statement: statement.to_owned(),
            at,
            signature: [0; 64],
        };
        signoff.signature = secret.sign(&signoff.signed_bytes());
        signoff
    }

    /// Checks the signature: the organisation signed exactly this version,
    /// statement and time, for this document of this partnership.
    pub fn verify(&self) -> bool {
        verify(&self.org, &self.signed_bytes(), &self.signature).is_ok()
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"accord-signoff-v1\0".to_vec();
        out.extend_from_slice(self.partnership.as_bytes());
        out.extend_from_slice(self.doc.as_bytes());
        out.extend_from_slice(&(self.heads.len() as u32).to_le_bytes());
        for h in &self.heads {
            out.extend_from_slice(&h.0);
        }
        out.extend_from_slice(&self.at.to_le_bytes());
        out.extend_from_slice(self.statement.as_bytes());
        out
    }

    /// A short stable name for this sign-off.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.signature);
        data_encoding::BASE32_DNSSEC.encode(&digest[..10])
    }

    pub fn heads_text(&self) -> String {
        join_heads(&self.heads)
    }
}

pub fn join_heads(heads: &[ChangeHash]) -> String {
    let mut list: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    list.sort();
    list.join(",")
}

pub fn parse_heads(text: &str) -> Option<Vec<ChangeHash>> {
    text.split(',')
        .filter(|h| !h.trim().is_empty())
        .map(|h| h.trim().parse().ok())
        .collect()
}

/// The notes document of organisation `org` in partnership `p`.
#[derive(Debug)]
pub struct Notes {
    id: DocId,
    owner: OrgKey,
    partnership: PartnershipId,
    doc: AutoCommit,
    roster_heads: Vec<ChangeHash>,
}

impl Notes {
    /// Derived, so every replica knows where a member's notes live without
    /// a roster entry, and nobody else can claim them.
    pub fn doc_id(p: PartnershipId, org: &OrgKey) -> DocId {
        let mut h = Sha256::new();
        h.update(b"accord-notes-v1");
        h.update(p.as_bytes());
        h.update(org.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DocId::from_bytes(id)
    }

    pub fn create(
        p: PartnershipId,
        owner: &OrgKey,
        actor: ActorId,
        roster_heads: &[ChangeHash],
    ) -> Result<Self, ModelError> {
        let mut doc = AutoCommit::new().with_actor(actor);
        let meta = doc.put_object(ROOT, "accord", ObjType::Map)?;
        doc.put(&meta, "schema", SCHEMA_VERSION)?;
        doc.put(&meta, "kind", "notes")?;
        doc.put(&meta, "partnership", p.to_string())?;
        doc.put(&meta, "org", owner.to_hex())?;
        for map in ["comments", "resolutions", "signoffs"] {
            doc.put_object(ROOT, map, ObjType::Map)?;
        }
        Ok(Self {
            id: Self::doc_id(p, owner),
            owner: *owner,
            partnership: p,
            doc,
            roster_heads: roster_heads.to_vec(),
        })
    }

    pub fn from_doc(
        p: PartnershipId,
        owner: &OrgKey,
        doc: AutoCommit,
        roster_heads: &[ChangeHash],
    ) -> Result<Self, ModelError> {
        let meta = match doc.get(ROOT, "accord")? {
            Some((Value::Object(ObjType::Map), meta)) => meta,
            _ => return Err(malformed("it has no accord metadata")),
        };
        if scalar_str(&doc, &meta, "kind").as_deref() != Some("notes")
            || scalar_str(&doc, &meta, "org").as_deref() != Some(owner.to_hex().as_str())
        {
            return Err(malformed("it is not this organisation's notes"));
        }
        Ok(Self {
            id: Self::doc_id(p, owner),
            owner: *owner,
            partnership: p,
            doc,
            roster_heads: roster_heads.to_vec(),
        })
    }

    pub fn id(&self) -> DocId {
        self.id
    }

    pub fn owner(&self) -> OrgKey {
        self.owner
    }

    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn commit(&mut self, message: &str, now: i64) -> Option<CommittedChange> {
        let message = crate::trust::claim::with_claim(message, &self.roster_heads);
        commit(&mut self.doc, &message, now)
    }

    pub fn add_comment(&mut self, comment: &Comment) -> Result<(), ModelError> {
        let text = comment.text.trim();
        if text.is_empty() || text.chars().count() > MAX_COMMENT_CHARS {
            return Err(ModelError::BadValue {
                field: "comment".into(),
                value: truncate(text),
                expected: format!("between 1 and {MAX_COMMENT_CHARS} characters"),
            });
        }
        let comments = self.map("comments")?;
        let entry = self.doc.put_object(&comments, &comment.id, ObjType::Map)?;
        self.doc.put(&entry, "doc", comment.doc.to_string())?;
        self.doc.put(&entry, "field", comment.field.as_str())?;
        if let Some(quote) = &comment.quote {
            self.doc.put(&entry, "quote", quote.as_str())?;
        }
        self.doc.put(&entry, "text", text)?;
        self.doc.put(&entry, "created", comment.created)?;
        Ok(())
    }

    pub fn resolve(&mut self, comment_id: &str, now: i64) -> Result<(), ModelError> {
        let resolutions = self.map("resolutions")?;
        let entry = self
            .doc
            .put_object(&resolutions, comment_id, ObjType::Map)?;
        self.doc.put(&entry, "at", now)?;
        Ok(())
    }

    pub fn add_signoff(&mut self, signoff: &SignOff) -> Result<(), ModelError> {
        if signoff.statement.chars().count() > MAX_STATEMENT_CHARS {
            return Err(ModelError::BadValue {
                field: "statement".into(),
                value: truncate(&signoff.statement),
                expected: format!("at most {MAX_STATEMENT_CHARS} characters"),
            });
        }
        let signoffs = self.map("signoffs")?;
        let entry = self.doc.put_object(&signoffs, signoff.id(), ObjType::Map)?;
        self.doc.put(&entry, "doc", signoff.doc.to_string())?;
        self.doc.put(&entry, "heads", signoff.heads_text())?;
        self.doc
            .put(&entry, "statement", signoff.statement.as_str())?;
        self.doc.put(&entry, "at", signoff.at)?;
        self.doc.put(
            &entry,
            "signature",
            data_encoding::HEXLOWER.encode(&signoff.signature),
        )?;
        Ok(())
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.entries("comments")
            .into_iter()
            .filter_map(|(id, obj)| {
                Some(Comment {
                    id,
                    author: self.owner,
                    doc: scalar_str(&self.doc, &obj, "doc")?.parse().ok()?,
                    field: scalar_str(&self.doc, &obj, "field")?,
                    quote: scalar_str(&self.doc, &obj, "quote"),
                    text: scalar_str(&self.doc, &obj, "text")?,
                    created: scalar_int(&self.doc, &obj, "created").unwrap_or(0),
                })
            })
            .collect()
    }

    /// The comments this organisation resolved, with when.
    pub fn resolutions(&self) -> Vec<(String, i64)> {
        self.entries("resolutions")
            .into_iter()
            .map(|(id, obj)| {
                let at = scalar_int(&self.doc, &obj, "at").unwrap_or(0);
                (id, at)
            })
            .collect()
    }

    /// Sign-offs as recorded; callers check [`SignOff::verify`].
    pub fn signoffs(&self) -> Vec<SignOff> {
        self.entries("signoffs")
            .into_iter()
            .filter_map(|(_, obj)| {
                let signature = data_encoding::HEXLOWER
                    .decode(scalar_str(&self.doc, &obj, "signature")?.as_bytes())
                    .ok()?;
                Some(SignOff {
                    org: self.owner,
                    partnership: self.partnership,
                    doc: scalar_str(&self.doc, &obj, "doc")?.parse().ok()?,
                    heads: parse_heads(&scalar_str(&self.doc, &obj, "heads")?)?,
                    statement: scalar_str(&self.doc, &obj, "statement").unwrap_or_default(),
                    at: scalar_int(&self.doc, &obj, "at").unwrap_or(0),
                    signature: signature.try_into().ok()?,
                })
            })
            .collect()
    }

    fn map(&mut self, key: &str) -> Result<ObjId, ModelError> {
        match self.doc.get(ROOT, key)? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Ok(self.doc.put_object(ROOT, key, ObjType::Map)?),
        }
    }

    fn entries(&self, key: &str) -> Vec<(String, ObjId)> {
        let Ok(Some((Value::Object(ObjType::Map), map))) = self.doc.get(ROOT, key) else {
            return Vec::new();
        };
        self.doc
            .map_range(&map, ..)
            .filter_map(|item| match item.value {
                automerge::ValueRef::Object(ObjType::Map) => {
                    Some((item.key.to_string(), item.id()))
                }
                _ => None,
            })
            .collect()
    }
}

fn scalar_int(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(v), _) => match v.as_ref() {
            ScalarValue::Int(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        },
        _ => None,
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

fn malformed(detail: &str) -> ModelError {
    ModelError::Malformed {
        expected: "notes document",
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OrgSecret {
        OrgSecret::from_seed([3; 32])
    }

    #[test]
    fn comments_resolutions_and_signoffs_round_trip() {
        let secret = owner();
        let p = PartnershipId::from_bytes([1; 16]);
        let actor = ActorId::from(secret.actor_bytes([0; 8]));
        let mut notes = Notes::create(p, &secret.public(), actor, &[]).unwrap();
        let doc = DocId::from_bytes([2; 16]);
        let comment = Comment {
            id: "c1".into(),
            author: secret.public(),
            doc,
            field: "purpose".into(),
            quote: Some("reduce".into()),
            text: "Which measure?".into(),
            created: 10,
        };
        notes.add_comment(&comment).unwrap();
        notes.resolve("c1", 11).unwrap();
        let signoff = SignOff::sign(&secret, p, doc, &[ChangeHash([9; 32])], "We agree", 12);
        notes.add_signoff(&signoff).unwrap();
        notes.commit("notes", 12).unwrap();

        let bytes = notes.doc_mut().save();
        let loaded =
            Notes::from_doc(p, &secret.public(), AutoCommit::load(&bytes).unwrap(), &[]).unwrap();
        assert_eq!(loaded.comments(), vec![comment]);
        assert_eq!(loaded.resolutions(), vec![("c1".to_owned(), 11)]);
        let back = loaded.signoffs();
        assert_eq!(back, vec![signoff]);
        assert!(back[0].verify());
    }

    #[test]
    fn a_tampered_signoff_does_not_verify() {
        let secret = owner();
        let p = PartnershipId::from_bytes([1; 16]);
        let doc = DocId::from_bytes([2; 16]);
        let signoff = SignOff::sign(&secret, p, doc, &[ChangeHash([9; 32])], "We agree", 12);
        let mut other_version = signoff.clone();
        other_version.heads = vec![ChangeHash([8; 32])];
        assert!(!other_version.verify());
        let mut other_words = signoff.clone();
        other_words.statement = "We do not agree".into();
        assert!(!other_words.verify());
        let mut other_doc = signoff;
        other_doc.doc = DocId::from_bytes([3; 16]);
        assert!(!other_doc.verify());
    }

    #[test]
    fn notes_ids_are_per_organisation() {
        let p = PartnershipId::from_bytes([1; 16]);
        let a = OrgSecret::from_seed([1; 32]).public();
        let b = OrgSecret::from_seed([2; 32]).public();
        assert_ne!(Notes::doc_id(p, &a), Notes::doc_id(p, &b));
        assert_eq!(Notes::doc_id(p, &a), Notes::doc_id(p, &a));
    }
}
