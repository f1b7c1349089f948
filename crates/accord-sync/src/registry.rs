//! What the engine knows about documents and partnerships.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
    /// The loaded document as last saved whole, with its heads (see
    /// [`DocSlot::saved`]); dropped when the document is unloaded.
    pub saved: Option<(Vec<ChangeHash>, Arc<[u8]>)>,
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
            saved: None,
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

    /// The loaded document saved whole, and its heads: saved once per
    /// version, however many peers lacking it are sent it. A save
    /// compresses the whole document (100 ms and more for a long one), and
    /// a relay sends one to every member that catches up on a new
    /// document at once. Same heads, same changes: the bytes stay valid
    /// until the heads move.
    pub fn saved(&mut self) -> Option<(Vec<ChangeHash>, Arc<[u8]>)> {
        let heads = self.doc_mut()?.get_heads();
        if let Some((at, bytes)) = &self.saved
            && *at == heads
        {
            return Some((heads, Arc::clone(bytes)));
        }
        let bytes: Arc<[u8]> = self.doc_mut()?.save().into();
        self.saved = Some((heads.clone(), Arc::clone(&bytes)));
        Some((heads, bytes))
    }

    /// Forgets the loaded document (and its saved bytes); its heads stay known.
    pub fn unload(&mut self) {
        self.residency = Residency::Unloaded;
        self.saved = None;
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

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    fn loaded() -> DocSlot {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "purpose", "first").unwrap();
        doc.commit();
        DocSlot {
            residency: Residency::Loaded(Box::new(doc)),
            ..DocSlot::unloaded(PartnershipId::from_bytes([1; 16]), "mou".into(), Vec::new())
        }
    }

    #[test]
    fn a_document_is_saved_once_per_version_and_again_once_it_moves() {
        let mut slot = loaded();
        let (heads, first) = slot.saved().unwrap();
        let (_, again) = slot.saved().unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same version is not saved twice"
        );
        let doc = slot.doc_mut().unwrap();
        doc.put(ROOT, "purpose", "second").unwrap();
        doc.commit();
        let (moved, second) = slot.saved().unwrap();
        assert_ne!(moved, heads);
        assert!(!Arc::ptr_eq(&first, &second));
        let mut reloaded = AutoCommit::load(&second).unwrap();
        assert_eq!(reloaded.get_heads(), moved);
        slot.unload();
        assert!(slot.saved.is_none() && slot.saved().is_none());
    }
}
