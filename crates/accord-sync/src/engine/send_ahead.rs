//! Offering new changes without asking Automerge to find them.
//!
//! Applying a change to a large document costs as much as 35 ms whatever
//! its size, and Automerge can only offer a change it holds, looking it up
//! again (and encoding it anew) for every peer. But a peer that holds, or
//! has been sent, everything we hold needs nothing but the new changes, as
//! the sync message Automerge would have made. So:
//!
//! - a **local change**, or a group of them (a burst of typing as
//!   `LiveDocument` hands it over, less any change in it we already hold),
//!   goes to such peers before the engine's copy applies it (a typist's
//!   keystroke leaves at once, not one apply late); the copy applies it,
//!   with any others sent ahead meanwhile, before the next input is
//!   handled;
//! - changes **received** are forwarded to such peers as they arrived,
//!   once judged and before our copy applies them (`forward_ahead`): an
//!   apply grows with the document, and a relay forwarding a partner's
//!   keystrokes would otherwise make every subscriber wait for it. One
//!   message is built per set of shared heads, however many peers a relay
//!   serves, with the attestations that cover the changes. Our copy
//!   applies them at the next input; changes that arrived while it was
//!   busy are forwarded once applied (`forward`).

use std::collections::{BTreeMap, BTreeSet};

use accord_model::DocId;
use automerge::ChangeHash;
use automerge::sync::{BloomFilter, Have, Message, MessageVersion};

use super::{AttestFrames, ConnId, Engine, same_heads};
use crate::registry::{DocSlot, Residency};
use crate::wire::{Frame, sync_frames};

/// Local changes sent ahead of the engine's copy of one document.
#[derive(Default)]
pub(super) struct SentAhead {
    /// The changes, in the order they were made.
    changes: Vec<Vec<u8>>,
    hashes: Vec<ChangeHash>,
    /// The document's heads once these changes are applied.
    heads: Vec<ChangeHash>,
}

/// New changes to offer peers that are caught up to the heads they build on.
struct Offer<'a> {
    doc: DocId,
    /// The changes' raw bytes, in an order that applies.
    changes: Vec<&'a [u8]>,
    hashes: Vec<ChangeHash>,
    /// The heads the message names as ours: with the changes, or, for
    /// changes forwarded before we store them, without (heads we name are
    /// durable).
    after: Vec<ChangeHash>,
    /// Attestations offered to us that cover the changes and that our copy
    /// has not settled yet (see `covering_attestations`): each peer is sent
    /// those it lacks just before the changes, with the held ones.
    attestations: Vec<[u8; 32]>,
}

impl Engine {
    /// Sends the local changes in `group` (concatenated change chunks) of
    /// `doc` to every connection sharing it, without applying them first,
    /// if every one of them can take them as they are (see the module).
    /// Returns false, having done nothing, otherwise.
    pub(super) fn send_ahead(&mut self, doc: DocId, group: &[u8]) -> bool {
        let Some(slot) = self.docs.get(&doc) else {
            return false;
        };
        if !self.may_offer(doc, slot) {
            return false;
        }
        let Some(changes) = crate::provenance::split_changes(group) else {
            return false;
        };
        let ours = self.heads_ahead(doc);
        let Some((changes, after)) = self.heads_with(doc, &ours, changes) else {
            return false;
        };
        let Some(peers) = self.caught_up_peers(doc, &ours, &BTreeSet::new(), true) else {
            return false;
        };
        if peers.is_empty() {
            return false;
        }
        let offer = Offer {
            doc,
            changes: changes.iter().map(|c| c.raw_bytes()).collect(),
            hashes: changes.iter().map(|c| c.hash()).collect(),
            after,
            attestations: Vec::new(),
        };
        for id in &peers {
            self.conn(*id).stats.changes_sent_ahead += changes.len() as u64;
        }
        self.offer(&offer, peers);
        let ahead = self.ahead.entry(doc).or_default();
        ahead.changes.push(group.to_vec());
        ahead.hashes.extend(offer.hashes);
        ahead.heads = offer.after;
        true
    }

    /// Of `changes` (in an order that applies), those we do not hold yet,
    /// and our heads once they are added to a document whose heads are
    /// `ours`; `None` unless there are some and each builds only on what we
    /// hold (which a peer caught up to `ours` holds too). A group can hold
    /// changes we already have: an editor's group since its last one
    /// includes what it merged from others meanwhile.
    fn heads_with(
        &mut self,
        doc: DocId,
        ours: &[ChangeHash],
        changes: Vec<automerge::Change>,
    ) -> Option<(Vec<automerge::Change>, Vec<ChangeHash>)> {
        // Ours but not yet in the copy: sent ahead before, or earlier in the group.
        let mut sent: BTreeSet<ChangeHash> = self
            .ahead
            .get(&doc)
            .map(|a| a.hashes.iter().copied().collect())
            .unwrap_or_default();
        let copy = self.docs.get_mut(&doc).and_then(DocSlot::doc_mut)?;
        let mut heads: BTreeSet<ChangeHash> = ours.iter().copied().collect();
        let mut fresh = Vec::new();
        for change in changes {
            let hash = change.hash();
            if sent.contains(&hash) || copy.get_change_meta_by_hash(&hash).is_some() {
                continue;
            }
            for dep in change.deps() {
                let known = heads.contains(dep)
                    || sent.contains(dep)
                    || copy.get_change_meta_by_hash(dep).is_some();
                if !known {
                    return None;
                }
                heads.remove(dep);
            }
            heads.insert(hash);
            sent.insert(hash);
            fresh.push(change);
        }
        (!fresh.is_empty()).then(|| (fresh, heads.into_iter().collect()))
    }

    /// Judges the changes of held `messages` of `doc` (`group`, as
    /// `held_changes` joins them) and, when all are accepted and build only
    /// on what we hold, sends them to every connection but their senders
    /// that is caught up to our heads (see the module). Returns whether any
    /// was sent them; our copy has not applied them either way.
    pub(super) fn forward_ahead(
        &mut self,
        doc: DocId,
        messages: &[(ConnId, Vec<u8>)],
        group: Option<&[u8]>,
    ) -> bool {
        let Some(slot) = self.docs.get(&doc) else {
            return false;
        };
        if !self.may_offer(doc, slot) || self.ahead.contains_key(&doc) {
            return false;
        }
        let Some(group) = group.filter(|g| !g.is_empty()) else {
            return false;
        };
        let senders: BTreeSet<ConnId> = messages.iter().map(|(id, _)| *id).collect();
        let ours = slot.heads.clone();
        let peers = self
            .caught_up_peers(doc, &ours, &senders, false)
            .unwrap_or_default();
        if peers.is_empty() || !self.all_accepted(doc, group) {
            return false;
        }
        let Some(changes) = crate::provenance::split_changes(group) else {
            return false;
        };
        let Some((changes, _)) = self.heads_with(doc, &ours, changes) else {
            return false;
        };
        let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        let offer = Offer {
            doc,
            changes: changes.iter().map(|c| c.raw_bytes()).collect(),
            attestations: self.covering_attestations(doc, &hashes),
            hashes,
            after: ours,
        };
        for id in &peers {
            let stats = &mut self.conn(*id).stats;
            stats.changes_forwarded += changes.len() as u64;
            stats.changes_forwarded_ahead += changes.len() as u64;
        }
        self.offer(&offer, peers);
        true
    }

    /// The checked attestations offered for `doc` whose heads are all
    /// among `hashes` (not yet in our copy) and what we hold. Only held
    /// attestations go with an offer otherwise, and these settle only once
    /// our copy applies the changes, while the peers need them to judge the
    /// changes when they arrive.
    fn covering_attestations(&mut self, doc: DocId, hashes: &[ChangeHash]) -> Vec<[u8; 32]> {
        let Some(slot) = self.docs.get_mut(&doc) else {
            return Vec::new();
        };
        let fresh: BTreeSet<ChangeHash> = hashes.iter().copied().collect();
        let Residency::Loaded(copy) = &mut slot.residency else {
            return Vec::new();
        };
        slot.attestations
            .offered
            .iter()
            .filter(|(_, a)| {
                a.heads
                    .iter()
                    .all(|h| fresh.contains(h) || copy.get_change_meta_by_hash(h).is_some())
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// Forwards `changes`, just received, judged and recorded for `doc`
    /// (whose heads were `before` and are now `after`), to every
    /// connection but `senders` that is caught up to `before`. Returns
    /// those connections: they need no Automerge message for this change.
    pub(super) fn forward(
        &mut self,
        doc: DocId,
        before: &[ChangeHash],
        changes: &[automerge::Change],
        senders: &BTreeSet<ConnId>,
    ) -> BTreeSet<ConnId> {
        let Some(slot) = self.docs.get(&doc) else {
            return BTreeSet::new();
        };
        if changes.is_empty() || before.is_empty() || !self.may_offer(doc, slot) {
            return BTreeSet::new();
        }
        let offer = Offer {
            doc,
            changes: changes.iter().map(|c| c.raw_bytes()).collect(),
            hashes: changes.iter().map(|c| c.hash()).collect(),
            after: slot.heads.clone(),
            attestations: Vec::new(),
        };
        // A peer sent some of them ahead (`forward_ahead`) still names
        // `before` until it answers: Automerge sends it whatever it lacks.
        let peers: Vec<ConnId> = self
            .caught_up_peers(doc, before, senders, false)
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !self.sent_any(*id, doc, &offer.hashes))
            .collect();
        for id in &peers {
            self.conn(*id).stats.changes_forwarded += changes.len() as u64;
        }
        let forwarded = peers.iter().copied().collect();
        self.offer(&offer, peers);
        forwarded
    }

    /// Whether any of `hashes` was sent to the peer on `id` for `doc`.
    fn sent_any(&self, id: ConnId, doc: DocId, hashes: &[ChangeHash]) -> bool {
        self.conns
            .get(&id)
            .and_then(|c| c.docs.get(&doc))
            .and_then(Option::as_ref)
            .is_some_and(|state| hashes.iter().any(|h| state.sent_hashes.contains(h)))
    }

    /// Whether changes of this document may be offered without Automerge:
    /// not the roster (its changes change who may do what), in memory, and
    /// with no received changes waiting on dependencies (which Automerge's
    /// messages ask for).
    fn may_offer(&self, doc: DocId, slot: &DocSlot) -> bool {
        let p = slot.partnership;
        doc != p.roster_doc()
            && self.listed(p, doc)
            && matches!(slot.residency, Residency::Loaded(_))
            && slot.pending.is_empty()
    }

    /// The connections sharing `doc`, but `except`, that are caught up to
    /// `heads`. With `all`, `None` if any other is not.
    fn caught_up_peers(
        &self,
        doc: DocId,
        heads: &[ChangeHash],
        except: &BTreeSet<ConnId>,
        all: bool,
    ) -> Option<Vec<ConnId>> {
        let p = self.docs.get(&doc)?.partnership;
        let mut peers = Vec::new();
        for (id, conn) in &self.conns {
            if !conn.shared.contains(&p) || except.contains(id) {
                continue;
            }
            if self.caught_up_to(*id, doc, heads) {
                peers.push(*id);
            } else if all {
                return None;
            }
        }
        Some(peers)
    }

    /// The heads of `doc` counting the changes sent ahead of our copy.
    fn heads_ahead(&self, doc: DocId) -> Vec<ChangeHash> {
        self.ahead
            .get(&doc)
            .map(|a| &a.heads)
            .or_else(|| self.docs.get(&doc).map(|s| &s.heads))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the peer on `id` holds, or has been sent, everything up to
    /// `ours` of `doc` and is owed nothing else: then changes built on
    /// `ours` are all that Automerge would send it. Its sync state is only
    /// looked at: a relay asks this of every subscriber for every change.
    fn caught_up_to(&self, id: ConnId, doc: DocId, ours: &[ChangeHash]) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        let Some((peer, _)) = conn.peer() else {
            return false;
        };
        if conn.snapshots.contains(&doc) || conn.early.contains_key(&doc) {
            return false;
        }
        let state = match conn.docs.get(&doc) {
            Some(Some(state)) => state,
            Some(None) => return false,
            // Released when the conversation settled: it resumes whole on
            // the connection that released it, and the peer's list must
            // already name the document (no `announce`).
            None => {
                let listed = self.docs.get(&doc).is_some_and(|slot| {
                    conn.their_lists
                        .get(&slot.partnership)
                        .is_some_and(|list| list.iter().any(|e| e.id == *doc.as_bytes()))
                });
                match self.released_state(id, doc, peer) {
                    Some(state) if listed => state,
                    _ => return false,
                }
            }
        };
        let told = same_heads(&state.last_sent_heads, ours);
        let holds = state
            .their_heads
            .as_deref()
            .is_some_and(|h| same_heads(h, ours));
        let told_ahead = conn
            .told_ahead
            .get(&doc)
            .is_some_and(|h| same_heads(h, ours));
        let caught_up = holds || (told && told_ahead);
        let quiet = state.their_have.is_some()
            && state.their_need.as_ref().is_some_and(Vec::is_empty)
            && !state.shared_heads.is_empty()
            && !state.is_peer_read_only();
        caught_up && quiet
    }

    /// Sends `offer` to each of `peers` and leaves each sync state as
    /// generating that message would have. Peers that share the same heads
    /// with us get the same message, built once. Each peer's attestations
    /// go just before its message, so that the connection can write both
    /// at once.
    fn offer(&mut self, offer: &Offer, peers: Vec<ConnId>) {
        let doc = offer.doc;
        // Encoded frames, by the heads peers share with us; and attestations.
        let mut built: BTreeMap<Vec<ChangeHash>, Vec<Vec<u8>>> = BTreeMap::new();
        let mut attested = AttestFrames::default();
        for id in peers {
            let peer = self.peer_of(id);
            let mut state = self.take_state(id, doc, peer);
            let mut shared = state.shared_heads.clone();
            shared.sort();
            let frames = built
                .entry(shared)
                .or_insert_with_key(|shared| {
                    let message = self.message_for(offer, shared).encode();
                    sync_frames(*doc.as_bytes(), message)
                        .iter()
                        .map(Frame::encode)
                        .collect()
                })
                .clone();
            state.have_responded = true;
            state.in_flight = true;
            state.last_sent_heads.clone_from(&offer.after);
            state.sent_hashes.extend(offer.hashes.iter().copied());
            self.send_attestations_with(id, doc, &offer.attestations, &mut attested);
            let conn = self.conn(id);
            conn.docs.insert(doc, Some(state));
            conn.told_ahead.insert(doc, offer.after.clone());
            conn.in_sync = false;
            conn.stats.changes_sent += offer.changes.len() as u64;
            tracing::debug!(conn = id.0, %doc, changes = offer.changes.len(), "sync message out, built from the changes");
            for bytes in frames {
                self.send_encoded(id, bytes);
            }
        }
    }

    /// The sync message offering `offer` to a peer whose shared heads with
    /// us are `shared`: what Automerge says we hold is everything up to
    /// them and (in the Bloom filter) every change since, those sent ahead
    /// of our copy included.
    fn message_for(&mut self, offer: &Offer, shared: &[ChangeHash]) -> Message {
        let doc = offer.doc;
        let mut since: BTreeSet<ChangeHash> = self
            .docs
            .get_mut(&doc)
            .and_then(DocSlot::doc_mut)
            .map(|d| d.get_changes_meta(shared).iter().map(|m| m.hash).collect())
            .unwrap_or_default();
        if let Some(ahead) = self.ahead.get(&doc) {
            since.extend(ahead.hashes.iter().copied());
        }
        since.extend(offer.hashes.iter().copied());
        let mut heads = offer.after.clone();
        heads.sort();
        Message {
            heads,
            need: Vec::new(),
            have: vec![Have {
                last_sync: shared.to_vec(),
                bloom: BloomFilter::from_hashes(since.iter()),
            }],
            changes: offer
                .changes
                .iter()
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
                .into(),
            flags: Some(super::our_flags()),
            version: MessageVersion::V1,
        }
    }

    /// Applies the changes sent ahead to the engine's copies, before any
    /// other input is handled, as the local changes they are (one apply
    /// for all of a document's), then lets Automerge carry on as usual.
    pub(super) fn catch_up_ahead(&mut self) {
        for (doc, ahead) in std::mem::take(&mut self.ahead) {
            self.on_local_change(doc, &ahead.changes.concat());
        }
    }
}
