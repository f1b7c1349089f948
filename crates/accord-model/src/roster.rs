//! The roster: who is in a partnership, in what role, and which agreements it keeps.
//!
//! Layout (all keys are plain strings so any Automerge reader can follow it):
//! ```text
//! accord:      { schema: 1, kind: "roster" }
//! partnership: { id, name, creator: key hex, nonce: hex, created: unix secs }
//! members:     { <key hex>: { name, role, lead: bool, added: unix secs } }
//! documents:   { <doc id>: { kind, title } }
//! ```
//! Members and documents are maps keyed by their ids, so two partners adding
//! the same member concurrently merge into one entry instead of two.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use accord_identity::{Fingerprint, OrgKey};
use automerge::{
    ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable,
};

use crate::document::{CommittedChange, commit};
use crate::{DocId, DocKind, ModelError, PartnershipId};

pub(crate) const SCHEMA_VERSION: i64 = 1;

/// What a member organisation may do, from sector practice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Edits agreements, changes the roster and signs off.
    DecisionMaker,
    /// Is consulted: reads and comments.
    Consultee,
    /// Is kept informed: reads.
    Informed,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DecisionMaker => "decision-maker",
            Role::Consultee => "consultee",
            Role::Informed => "informed",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "decision-maker" | "decision maker" | "decider" => Ok(Role::DecisionMaker),
            "consultee" => Ok(Role::Consultee),
            "informed" => Ok(Role::Informed),
            _ => Err(ModelError::BadValue {
                field: "role".into(),
                value: s.into(),
                expected: "decision-maker, consultee or informed".into(),
            }),
        }
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A member organisation as the roster records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub key: OrgKey,
    #[serde(serialize_with = "serialize_display")]
    pub fingerprint: Fingerprint,
    pub name: String,
    pub role: Role,
    pub lead: bool,
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An agreement listed in the partnership's catalogue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CatalogueEntry {
    pub id: DocId,
    pub kind: DocKind,
    pub title: String,
}

/// A plain snapshot of the roster for reading and display.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RosterView {
    pub id: PartnershipId,
    pub name: String,
    pub creator: OrgKey,
    pub members: Vec<Member>,
    pub documents: Vec<CatalogueEntry>,
    /// The roster version this view shows: what changes made under it claim.
    #[serde(skip)]
    pub heads: Vec<automerge::ChangeHash>,
    /// Organisations that were members once and are not now, by the name
    /// the roster last gave them. Filled only by [`Roster::display_view`]:
    /// it reads the roster's history, which checking entitlement never needs.
    pub former: BTreeMap<OrgKey, String>,
}

impl RosterView {
    pub fn member(&self, key: &OrgKey) -> Option<&Member> {
        self.members.iter().find(|m| &m.key == key)
    }

    /// Finds one member by full key, fingerprint prefix, or case-insensitive
    /// name prefix; ambiguity is an error that names the candidates.
    pub fn resolve_member(&self, selector: &str) -> Result<&Member, ModelError> {
        if let Ok(key) = selector.parse::<OrgKey>() {
            return self
                .member(&key)
                .ok_or_else(|| ModelError::UnknownMember(selector.to_owned()));
        }
        let wanted = selector.trim().to_lowercase();
        let exact: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.name.to_lowercase() == wanted)
            .collect();
        if let [one] = exact.as_slice() {
            return Ok(one);
        }
        let candidates: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| {
                m.name.to_lowercase().starts_with(&wanted) || m.fingerprint.matches_prefix(selector)
            })
            .collect();
        match candidates.as_slice() {
            [] => Err(ModelError::UnknownMember(selector.to_owned())),
            [one] => Ok(one),
            many => Err(ModelError::AmbiguousMember {
                selector: selector.to_owned(),
                candidates: many
                    .iter()
                    .map(|m| format!("{} ({})", m.name, m.fingerprint))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The name people know an organisation by, or its fingerprint if it is
    /// not (or no longer) a member.
    pub fn display_name(&self, key: &OrgKey) -> String {
        if let Some(member) = self.member(key) {
            return member.name.clone();
        }
        match self.former.get(key) {
            Some(name) => format!("{name} (former member)"),
            None => format!("organisation {}", key.fingerprint()),
        }
    }
}

/// The roster document of one partnership.
#[derive(Debug)]
pub struct Roster {
    id: PartnershipId,
    doc: AutoCommit,
    /// Kept current by every commit, so views carry their version.
    heads: Vec<automerge::ChangeHash>,
}

impl Roster {
    /// Starts a partnership: the creator is its lead partner and a decision maker.
    pub fn create(
        name: &str,
        creator: &OrgKey,
        creator_name: &str,
        nonce: [u8; 16],
        actor: ActorId,
        now: i64,
    ) -> Result<(Self, CommittedChange), ModelError> {
        let id = PartnershipId::derive(creator, &nonce);
        let mut doc = AutoCommit::new().with_actor(actor);
        let meta = doc.put_object(ROOT, "accord", ObjType::Map)?;
        doc.put(&meta, "schema", SCHEMA_VERSION)?;
        doc.put(&meta, "kind", "roster")?;
        let p = doc.put_object(ROOT, "partnership", ObjType::Map)?;
        doc.put(&p, "id", id.to_string())?;
        doc.put(&p, "name", name)?;
        doc.put(&p, "creator", creator.to_hex())?;
        doc.put(&p, "nonce", data_encoding::HEXLOWER.encode(&nonce))?;
        doc.put(&p, "created", now)?;
        doc.put_object(ROOT, "members", ObjType::Map)?;
        doc.put_object(ROOT, "documents", ObjType::Map)?;
        let mut roster = Self {
            id,
            doc,
            heads: Vec::new(),
        };
        roster.put_member(creator, creator_name, Role::DecisionMaker, true, now)?;
        let change = roster
            .commit(&format!("Created partnership {name:?}"), now)
            .ok_or_else(|| ModelError::Malformed {
                expected: "roster",
                detail: "creating it produced no change".into(),
            })?;
        Ok((roster, change))
    }

    /// Wraps a loaded document, checking that it is a roster whose id is
    /// the one derived from its recorded creator and nonce.
    pub fn from_doc(id: PartnershipId, doc: AutoCommit) -> Result<Self, ModelError> {
        let mut doc = doc;
        let heads = doc.get_heads();
        let roster = Self { id, doc, heads };
        let kind = roster.meta_str("accord", "kind");
        if kind.as_deref() != Some("roster") {
            return Err(malformed(format!("its kind is {kind:?}")));
        }
        let creator = roster.creator()?;
        let nonce = roster
            .meta_str("partnership", "nonce")
            .and_then(|n| data_encoding::HEXLOWER.decode(n.as_bytes()).ok())
            .and_then(|n| <[u8; 16]>::try_from(n).ok())
            .ok_or_else(|| malformed("its nonce is missing".into()))?;
        if PartnershipId::derive(&creator, &nonce) != id {
            return Err(malformed("its id does not match its creator's key".into()));
        }
        Ok(roster)
    }

    pub fn id(&self) -> PartnershipId {
        self.id
    }

    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn creator(&self) -> Result<OrgKey, ModelError> {
        self.meta_str("partnership", "creator")
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| malformed("its creator is missing".into()))
    }

    pub fn view(&self) -> RosterView {
        RosterView {
            id: self.id,
            name: self.meta_str("partnership", "name").unwrap_or_default(),
            creator: self.creator().unwrap_or(OrgKey::from_bytes([0; 32])),
            members: self.members(),
            documents: self.documents(),
            heads: self.heads.clone(),
            former: BTreeMap::new(),
        }
    }

    /// [`Roster::view`] with the names of former members, for showing
    /// history: a removed organisation's earlier work stays attributed to
    /// it by name, not only by fingerprint.
    pub fn display_view(&mut self) -> RosterView {
        let mut view = self.view();
        view.former = self.former_members(&view);
        view
    }

    /// Every organisation that the roster listed at some version and does
    /// not list now, with the name it had when last listed.
    fn former_members(&mut self, now: &RosterView) -> BTreeMap<OrgKey, String> {
        let Ok(members) = self.map_obj("members") else {
            return BTreeMap::new();
        };
        // Metadata only: rebuilding every change just for its hash is the
        // expensive part of `get_changes`.
        let versions: Vec<automerge::ChangeHash> = self
            .doc
            .get_changes_meta(&[])
            .iter()
            .map(|c| c.hash)
            .collect();
        let mut former = BTreeMap::new();
        for version in versions {
            let at = [version];
            for key in self.doc.keys_at(&members, &at) {
                let Ok(org) = key.parse::<OrgKey>() else {
                    continue;
                };
                if now.member(&org).is_some() {
                    continue;
                }
                if let Some(name) = self.name_at(&members, &key, &at) {
                    former.insert(org, name);
                }
            }
        }
        former
    }

    fn name_at(
        &self,
        members: &automerge::ObjId,
        key: &str,
        at: &[automerge::ChangeHash],
    ) -> Option<String> {
        let (Value::Object(ObjType::Map), entry) = self.doc.get_at(members, key, at).ok()?? else {
            return None;
        };
        match self.doc.get_at(&entry, "name", at).ok()?? {
            (Value::Scalar(v), _) => match v.as_ref() {
                ScalarValue::Str(name) => Some(name.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn add_member(
        &mut self,
        key: &OrgKey,
        name: &str,
        role: Role,
        now: i64,
    ) -> Result<(), ModelError> {
        if self.view().member(key).is_some() {
            return Err(ModelError::AlreadyMember(name.to_owned()));
        }
        self.put_member(key, name, role, false, now)
    }

    /// Changes a member's role; the partnership always keeps at least one
    /// decision maker, or nobody could ever change its roster again.
    pub fn set_role(&mut self, key: &OrgKey, role: Role) -> Result<(), ModelError> {
        let entry = self.member_obj(key)?;
        let deciders = self
            .members()
            .into_iter()
            .filter(|m| m.role == Role::DecisionMaker && &m.key != key)
            .count();
        if role != Role::DecisionMaker && deciders == 0 {
            return Err(ModelError::LastDecisionMaker);
        }
        self.doc.put(&entry, "role", role.as_str())?;
        Ok(())
    }

    /// Removes a member. Its past changes stay in every document's history,
    /// attributed; changes it makes under a roster version without it are
    /// refused everywhere (see [`crate::trust`]).
    pub fn remove_member(&mut self, key: &OrgKey) -> Result<(), ModelError> {
        self.member_obj(key)?;
        let deciders = self
            .members()
            .into_iter()
            .filter(|m| m.role == Role::DecisionMaker && &m.key != key)
            .count();
        if deciders == 0 {
            return Err(ModelError::LastDecisionMaker);
        }
        let members = self.map_obj("members")?;
        self.doc.delete(&members, key.to_hex())?;
        Ok(())
    }

    pub fn add_document(
        &mut self,
        id: DocId,
        kind: DocKind,
        title: &str,
    ) -> Result<(), ModelError> {
        let docs = self.map_obj("documents")?;
        let entry = self.doc.put_object(&docs, id.to_string(), ObjType::Map)?;
        self.doc.put(&entry, "kind", kind.as_str())?;
        self.doc.put(&entry, "title", title)?;
        Ok(())
    }

    pub fn set_document_title(&mut self, id: DocId, title: &str) -> Result<(), ModelError> {
        let docs = self.map_obj("documents")?;
        if let Some((Value::Object(ObjType::Map), entry)) = self.doc.get(&docs, id.to_string())? {
            self.doc.put(&entry, "title", title)?;
        }
        Ok(())
    }

    pub fn commit(&mut self, message: &str, now: i64) -> Option<CommittedChange> {
        let change = commit(&mut self.doc, message, now);
        self.heads = self.doc.get_heads();
        change
    }

    fn put_member(
        &mut self,
        key: &OrgKey,
        name: &str,
        role: Role,
        lead: bool,
        now: i64,
    ) -> Result<(), ModelError> {
        let members = self.map_obj("members")?;
        let entry = self.doc.put_object(&members, key.to_hex(), ObjType::Map)?;
        self.doc.put(&entry, "name", name)?;
        self.doc.put(&entry, "role", role.as_str())?;
        self.doc.put(&entry, "lead", lead)?;
        self.doc.put(&entry, "added", now)?;
        Ok(())
    }

    fn member_obj(&self, key: &OrgKey) -> Result<automerge::ObjId, ModelError> {
        let members = self.map_obj("members")?;
        match self.doc.get(&members, key.to_hex())? {
            Some((Value::Object(ObjType::Map), entry)) => Ok(entry),
            _ => Err(ModelError::UnknownMember(key.fingerprint().to_string())),
        }
    }

    fn map_obj(&self, key: &str) -> Result<automerge::ObjId, ModelError> {
        match self.doc.get(ROOT, key)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(malformed(format!("its {key} map is missing"))),
        }
    }

    fn meta_str(&self, map: &str, key: &str) -> Option<String> {
        let obj = self.map_obj(map).ok()?;
        scalar_str(&self.doc, &obj, key)
    }

    fn members(&self) -> Vec<Member> {
        let Ok(members) = self.map_obj("members") else {
            return Vec::new();
        };
        let mut out: Vec<Member> = self
            .doc
            .map_range(&members, ..)
            .filter_map(|item| {
                let key: OrgKey = item.key.parse().ok()?;
                let entry = match item.value {
                    automerge::ValueRef::Object(ObjType::Map) => item.id(),
                    _ => return None,
                };
                Some(Member {
                    key,
                    fingerprint: key.fingerprint(),
                    name: scalar_str(&self.doc, &entry, "name").unwrap_or_else(|| key.fingerprint().to_string()),
                    role: scalar_str(&self.doc, &entry, "role")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(Role::Informed),
                    lead: matches!(self.doc.get(&entry, "lead"), Ok(Some((Value::Scalar(v), _))) if matches!(v.as_ref(), ScalarValue::Boolean(true))),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.lead
                .cmp(&a.lead)
                .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
        });
        out
    }

    fn documents(&self) -> Vec<CatalogueEntry> {
        let Ok(docs) = self.map_obj("documents") else {
            return Vec::new();
        };
        let mut out: Vec<CatalogueEntry> = self
            .doc
            .map_range(&docs, ..)
            .filter_map(|item| {
                let id: DocId = item.key.parse().ok()?;
                let entry = item.id();
                Some(CatalogueEntry {
                    id,
                    kind: scalar_str(&self.doc, &entry, "kind")?.parse().ok()?,
                    title: scalar_str(&self.doc, &entry, "title").unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.title.cmp(&b.title)));
        out
    }
}

fn malformed(detail: String) -> ModelError {
    ModelError::Malformed {
        expected: "roster",
        detail,
    }
}

/// Reads a string scalar, treating anything else as absent.
pub(crate) fn scalar_str(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(v), _) => match v.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_identity::OrgSecret;

    fn org(n: u8) -> OrgSecret {
        OrgSecret::from_seed([n; 32])
    }

    fn roster() -> Roster {
        let lead = org(1);
        let actor = crate::new_document_actor(&lead, [0; 8]);
        Roster::create(
            "Sharing Our Strengths",
            &lead.public(),
            "Women's Centre",
            [5; 16],
            actor,
            100,
        )
        .unwrap()
        .0
    }

    #[test]
    fn creator_is_lead_decision_maker() {
        let view = roster().view();
        assert_eq!(view.name, "Sharing Our Strengths");
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.members[0].role, Role::DecisionMaker);
        assert!(view.members[0].lead);
        assert_eq!(view.creator, org(1).public());
    }

    #[test]
    fn members_resolve_by_name_prefix_or_fingerprint_and_ambiguity_is_reported() {
        let mut r = roster();
        r.add_member(&org(2).public(), "CVS Wandsworth", Role::Consultee, 1)
            .unwrap();
        r.add_member(&org(3).public(), "CVS Lambeth", Role::Informed, 1)
            .unwrap();
        let view = r.view();
        assert_eq!(view.resolve_member("women").unwrap().key, org(1).public());
        assert_eq!(view.resolve_member("cvs w").unwrap().key, org(2).public());
        let fp = org(3).public().fingerprint().to_string();
        assert_eq!(view.resolve_member(&fp[..9]).unwrap().key, org(3).public());
        let err = view.resolve_member("cvs").unwrap_err().to_string();
        assert!(
            err.contains("CVS Wandsworth") && err.contains("CVS Lambeth"),
            "{err}"
        );
        assert!(matches!(
            view.resolve_member("nobody"),
            Err(ModelError::UnknownMember(_))
        ));
    }

    #[test]
    fn adding_a_member_twice_is_refused_and_roles_change() {
        let mut r = roster();
        r.add_member(&org(2).public(), "CVS", Role::Consultee, 1)
            .unwrap();
        assert!(matches!(
            r.add_member(&org(2).public(), "CVS", Role::Consultee, 1),
            Err(ModelError::AlreadyMember(_))
        ));
        r.set_role(&org(2).public(), Role::DecisionMaker).unwrap();
        assert_eq!(
            r.view().member(&org(2).public()).unwrap().role,
            Role::DecisionMaker
        );
    }

    #[test]
    fn a_removed_member_keeps_its_name_in_views_for_history() {
        let mut r = roster();
        let cvs = org(2).public();
        r.add_member(&cvs, "CVS Wandsworth", Role::DecisionMaker, 1)
            .unwrap();
        r.commit("add", 2).unwrap();
        r.remove_member(&cvs).unwrap();
        r.commit("remove", 3).unwrap();
        assert!(r.view().member(&cvs).is_none());
        assert!(r.view().display_name(&cvs).starts_with("organisation "));
        let shown = r.display_view();
        assert_eq!(shown.display_name(&cvs), "CVS Wandsworth (former member)");
        assert_eq!(
            shown.display_name(&org(1).public()),
            "Women's Centre",
            "current members are shown as before"
        );
        assert_eq!(shown.former.len(), 1);
    }

    #[test]
    fn loaded_roster_must_match_its_self_certifying_id() {
        let mut r = roster();
        let bytes = r.doc_mut().save();
        let doc = AutoCommit::load(&bytes).unwrap();
        assert!(Roster::from_doc(r.id(), doc.clone()).is_ok());
        let other = PartnershipId::from_bytes([0; 16]);
        assert!(Roster::from_doc(other, doc).is_err());
    }

    #[test]
    fn catalogue_lists_documents() {
        let mut r = roster();
        let id = DocId::random([7; 16]);
        r.add_document(id, DocKind::Mou, "Our MOU").unwrap();
        r.set_document_title(id, "Our MOU 2027").unwrap();
        let docs = r.view().documents;
        assert_eq!(
            docs,
            vec![CatalogueEntry {
                id,
                kind: DocKind::Mou,
                title: "Our MOU 2027".into()
            }]
        );
    }
}
