//! What the engine knows about documents and partnerships.

use std::collections::{BTreeMap, BTreeSet};

use accord_identity::OrgKey;
use accord_model::{DocId, Notes, PartnershipId, Role, Roster};

use crate::provenance::Attestations;
use automerge::sync::State;
use automerge::{AutoCommit, ChangeHash};
use sha2::{Digest, Sha256};

use crate::engine::ConnId;

/// Where a document's content is, right now.
#[derive(Debug)]
pub(crate) enum Residency {
    /// Only its heads are known (from the replica's index).
    Unloaded,
    /// The runtime has been asked to load it.
    Loading,
    Loaded(Box<AutoCommit>),
    /// The replica could not load it; it is not synced until restart or repair.
    Broken,
}

#[derive(Debug)]
pub(crate) struct DocSlot {
    pub partnership: PartnershipId,
    pub kind: String,
    pub heads: Vec<ChangeHash>,
    pub residency: Residency,
    /// False for a document first seen from a peer, until its first content is stored.
    pub stored: bool,
    /// Sync states persisted for each peer, available once loaded, with the
    /// connection that left each one in memory (`None` when read from the
    /// replica): only that connection may carry on its conversation.
    pub saved_states: BTreeMap<OrgKey, (Option<ConnId>, State)>,
    /// Sync messages that arrived before the document was loaded.
    pub inbox: Vec<(ConnId, Vec<u8>)>,
    /// Connections to send a sync message to once loaded.
    pub waiting: BTreeSet<ConnId>,
    /// Signed attestations held and offered for this document.
    pub attestations: Attestations,
    /// Sync messages that name a roster version we do not hold yet,
    /// judged again when the roster changes.
    pub parked: Vec<(ConnId, Vec<u8>)>,
    /// Received changes that wait for dependencies we lack (see `provenance::screen`).
    pub pending: Vec<automerge::Change>,
    /// Changes refused here, or by a peer, with their dependencies: never
    /// expected to be held by the other side (bounded, see the engine).
    pub refused: BTreeMap<ChangeHash, Vec<ChangeHash>>,
    /// Engine time when a connection last settled this document: it stays
    /// loaded for `EngineConfig::keep_loaded_ms` after.
    pub settled_at: u64,
}

impl DocSlot {
    pub fn unloaded(partnership: PartnershipId, kind: String, heads: Vec<ChangeHash>) -> Self {
        Self {
            partnership,
            kind,
            heads,
            residency: Residency::Unloaded,
            stored: true,
            saved_states: BTreeMap::new(),
            inbox: Vec::new(),
            waiting: BTreeSet::new(),
            attestations: Attestations::default(),
            parked: Vec::new(),
            pending: Vec::new(),
            refused: BTreeMap::new(),
            settled_at: 0,
        }
    }

    /// A document we do not hold yet, to be filled by a peer.
    pub fn empty(partnership: PartnershipId, kind: String) -> Self {
        Self {
            residency: Residency::Loaded(Box::default()),
            stored: false,
            ..Self::unloaded(partnership, kind, Vec::new())
        }
    }

    pub fn doc_mut(&mut self) -> Option<&mut AutoCommit> {
        match &mut self.residency {
            Residency::Loaded(doc) => Some(doc),
            _ => None,
        }
    }
}

/// A partnership as its roster says: who may read and write it, and which
/// documents belong to it.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    pub creator: OrgKey,
    pub members: BTreeMap<OrgKey, Role>,
    pub catalogue: BTreeSet<DocId>,
    /// Each member's notes document, by id, with its owner.
    pub notes: BTreeMap<DocId, OrgKey>,
}

impl Membership {
    /// Reads membership from a roster document, checking its self-certifying id.
    pub fn from_roster(id: PartnershipId, doc: &AutoCommit) -> Option<Self> {
        let roster = Roster::from_doc(id, doc.clone()).ok()?;
        let view = roster.view();
        Some(Self {
            creator: view.creator,
            members: view.members.iter().map(|m| (m.key, m.role)).collect(),
            catalogue: view.documents.iter().map(|d| d.id).collect(),
            notes: view
                .members
                .iter()
                .map(|m| (Notes::doc_id(id, &m.key), m.key))
                .collect(),
        })
    }

    pub fn is_member(&self, org: &OrgKey) -> bool {
        self.members.contains_key(org)
    }
}

/// A digest of every document of a partnership and its heads: equal
/// digests mean nothing to sync, without listing a single document.
pub(crate) fn digest<'a>(docs: impl Iterator<Item = (&'a DocId, &'a DocSlot)>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (id, slot) in docs {
        h.update(id.as_bytes());
        let mut heads = slot.heads.clone();
        heads.sort();
        h.update((heads.len() as u32).to_le_bytes());
        for head in heads {
            h.update(head.0);
        }
    }
    h.finalize().into()
}
