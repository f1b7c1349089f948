//! Receiving a sync message that carries no changes, without Automerge's
//! walk over the whole history.
//!
//! Automerge's `receive_sync_message` always calls `filter_changes`, which
//! walks every ancestor of the peer's heads (the whole document, 260k
//! changes on the benchmark's) to drop from `sent_hashes` what the peer now
//! holds: tens of milliseconds per message, even when we have sent the peer
//! nothing and there is nothing to drop. A receiver of keystrokes sends
//! nothing, so this was the bulk of its work per message; two partners
//! editing at once send each other changes, so it was a sixth of theirs.
//! For a message without changes, [`receive`] does exactly what Automerge
//! does, but finds what the peer holds of what we sent from the changes
//! *since* its heads (Automerge keeps a clock every 16 changes, so that
//! costs what has changed since, not the history); a message with changes
//! goes to Automerge.

use std::collections::{BTreeSet, HashSet};

use automerge::sync::{Capability, Message, MessageFlags, State, SyncDoc};
use automerge::{AutoCommit, AutomergeError, ChangeHash};

/// `receive_sync_message`, without its walk over the history when the
/// message carries no changes.
pub(crate) fn receive(
    doc: &mut AutoCommit,
    state: &mut State,
    message: Message,
) -> Result<(), AutomergeError> {
    if !message.changes.is_empty() {
        return doc.sync().receive_sync_message(state, message);
    }
    // What follows mirrors `receive_sync_message_inner` (automerge 0.12)
    // for a message without changes.
    state.in_flight = false;
    let before = doc.get_heads();
    let Message {
        heads,
        need,
        have,
        flags,
        ..
    } = message;
    if let Some(flags) = flags {
        let mut caps = vec![Capability::MessageV2];
        if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
            caps.push(Capability::SyncReset);
        }
        state.their_capabilities = Some(caps);
        if flags.contains(MessageFlags::SYNC_RESET) {
            state.sent_hashes.clear();
        }
        state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
    }
    forget_what_they_hold(doc, &heads, &mut state.sent_hashes);
    if heads == before {
        state.last_sent_heads.clone_from(&heads);
    }
    let known: Vec<ChangeHash> = heads
        .iter()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .copied()
        .collect();
    if known.len() == heads.len() {
        state.shared_heads.clone_from(&heads);
        if heads.is_empty() {
            state.last_sent_heads = Vec::new();
            state.sent_hashes = Default::default();
        }
    } else {
        let mut shared: Vec<ChangeHash> =
            state.shared_heads.iter().chain(&known).copied().collect();
        shared.sort();
        shared.dedup();
        state.shared_heads = shared;
    }
    state.their_have = Some(have);
    state.their_heads = Some(heads);
    state.their_need = Some(need);
    Ok(())
}

/// Drops from `sent` every change the peer holds now that it names
/// `heads`: what Automerge's `filter_changes` does (every ancestor of the
/// heads we know goes), found the other way round, from the changes not
/// among those ancestors: the changes the peer still lacks, which our next
/// message to it visits anyway, where the walk visited the whole history.
fn forget_what_they_hold(
    doc: &mut AutoCommit,
    heads: &[ChangeHash],
    sent: &mut BTreeSet<ChangeHash>,
) {
    if sent.is_empty() {
        return;
    }
    let known: Vec<ChangeHash> = heads
        .iter()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .copied()
        .collect();
    if known.is_empty() {
        // No ancestors to drop; and the changes "since nothing" are all of them.
        return;
    }
    let since: HashSet<ChangeHash> = doc
        .get_changes_meta(&known)
        .iter()
        .map(|m| m.hash)
        .collect();
    sent.retain(|h| since.contains(h) || doc.get_change_meta_by_hash(h).is_none());
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    fn doc_with(text: &str, actor: u8) -> AutoCommit {
        let mut d = AutoCommit::new().with_actor(automerge::ActorId::from([actor; 16]));
        d.put(ROOT, "text", text).expect("put");
        d.commit();
        d
    }

    fn same(a: &State, b: &State) {
        assert_eq!(a.shared_heads, b.shared_heads);
        assert_eq!(a.last_sent_heads, b.last_sent_heads);
        assert_eq!(a.their_heads, b.their_heads);
        assert_eq!(a.their_need, b.their_need);
        assert_eq!(a.their_have, b.their_have);
        assert_eq!(a.sent_hashes, b.sent_hashes);
        assert_eq!(a.in_flight, b.in_flight);
        assert_eq!(a.have_responded, b.have_responded);
        assert_eq!(a.their_capabilities, b.their_capabilities);
        assert_eq!(a.peer_read_only, b.peer_read_only);
    }

    /// Runs a whole conversation between two documents, receiving every
    /// message without changes both ways (ours and Automerge's) and
    /// checking the states stay equal.
    #[test]
    fn matches_automerge_through_a_conversation() {
        let mut a = doc_with("a", 1);
        let mut b = doc_with("b", 2);
        let (mut sa, mut sb) = (State::new(), State::new());
        let mut shadow_b = sb.clone();
        let mut cheap = 0;
        for _ in 0..10 {
            let Some(m) = a.sync().generate_sync_message(&mut sa) else {
                break;
            };
            let encoded = m.encode();
            let mut b2 = b.clone();
            b2.sync()
                .receive_sync_message(&mut shadow_b, Message::decode(&encoded).expect("decodes"))
                .expect("automerge receives");
            if Message::decode(&encoded)
                .expect("decodes")
                .changes
                .is_empty()
            {
                cheap += 1;
            }
            receive(&mut b, &mut sb, Message::decode(&encoded).expect("decodes"))
                .expect("receives");
            same(&sb, &shadow_b);
            assert_eq!(b.get_heads(), b2.get_heads());
            shadow_b = sb.clone();
            if let Some(m) = b.sync().generate_sync_message(&mut sb) {
                shadow_b = sb.clone();
                a.sync()
                    .receive_sync_message(&mut sa, m)
                    .expect("a receives");
            }
        }
        assert!(cheap > 0, "some messages had no changes");
        assert_eq!(a.get_heads().len(), 2);
        assert_eq!(a.get_heads(), b.get_heads());
        assert!(a.get::<_, &str>(ROOT, "text").expect("reads").is_some());
    }

    /// Receives `message` both ways, ours and Automerge's, from the same
    /// document and state, and checks they leave the state the same.
    fn both_ways(doc: &AutoCommit, state: &State, message: &Message) -> State {
        let (mut ours, mut theirs) = (doc.clone(), doc.clone());
        let (mut ours_state, mut their_state) = (state.clone(), state.clone());
        let decoded = || Message::decode(&message.clone().encode()).expect("decodes");
        receive(&mut ours, &mut ours_state, decoded()).expect("we receive");
        theirs
            .sync()
            .receive_sync_message(&mut their_state, decoded())
            .expect("automerge receives");
        same(&ours_state, &their_state);
        ours_state
    }

    /// A message naming `heads`, with no changes, as a peer that holds
    /// them and nothing to send would write.
    fn naming(heads: Vec<ChangeHash>) -> Message {
        Message {
            heads: heads.clone(),
            need: Vec::new(),
            have: vec![automerge::sync::Have {
                last_sync: heads,
                bloom: automerge::sync::BloomFilter::default(),
            }],
            changes: automerge::sync::ChunkList::empty(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
    }

    /// The peer's message crossed ours: what we sent and it does not hold
    /// stays in `sent_hashes`, whether or not we know all the heads it names;
    /// once it names heads holding them, they go.
    #[test]
    fn keeps_what_a_crossing_message_does_not_hold_and_drops_what_it_does() {
        let mut a = doc_with("a", 1);
        let mut b = a.clone().with_actor(automerge::ActorId::from([2; 16]));
        let (mut sa, mut sb) = (State::new(), State::new());
        let mut quiet = false;
        while !quiet {
            quiet = true;
            if let Some(m) = a.sync().generate_sync_message(&mut sa) {
                b.sync()
                    .receive_sync_message(&mut sb, m)
                    .expect("b hears a");
                quiet = false;
            }
            if let Some(m) = b.sync().generate_sync_message(&mut sb) {
                a.sync()
                    .receive_sync_message(&mut sa, m)
                    .expect("a hears b");
                quiet = false;
            }
        }
        let before = a.get_heads();
        for i in 0..20 {
            a.put(ROOT, format!("a{i}"), i).expect("put");
            a.commit();
        }
        a.sync()
            .generate_sync_message(&mut sa)
            .expect("a sends changes");
        let ours: BTreeSet<ChangeHash> = a.get_changes(&before).iter().map(|c| c.hash()).collect();
        assert_eq!(ours.len(), 20);
        assert!(sa.sent_hashes.is_superset(&ours));
        let of_ours = |state: &State| state.sent_hashes.intersection(&ours).count();
        // b, before our changes reach it: it holds none of them.
        let kept = both_ways(&a, &sa, &naming(before.clone()));
        assert_eq!(of_ours(&kept), 20);
        // b made a change of its own (a head we do not know) first.
        b.put(ROOT, "late", 1).expect("put");
        b.commit();
        let theirs = b.get_heads();
        let kept = both_ways(&a, &sa, &naming(theirs));
        assert_eq!(of_ours(&kept), 20);
        // b has taken half of them.
        let half = a.get_changes(&before)[9].hash();
        let halfway = both_ways(&a, &sa, &naming(vec![half]));
        assert_eq!(of_ours(&halfway), 10);
        // b holds them all.
        let all = a.get_heads();
        let dropped = both_ways(&a, &sa, &naming(all));
        assert_eq!(of_ours(&dropped), 0);
    }
}
