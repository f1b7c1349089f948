//! Receiving a sync message that carries no changes, without Automerge's
//! walk over the whole history.
//!
//! Automerge's `receive_sync_message` always calls `filter_changes`, which
//! walks every ancestor of the peer's heads (the whole document, 260k
//! changes on the benchmark's) to drop from `sent_hashes` what the peer now
//! holds: tens of milliseconds per message, even when we have sent the peer
//! nothing and there is nothing to drop. A receiver of keystrokes sends
//! nothing, so this is the bulk of its work per message. For a message
//! without changes and an empty `sent_hashes`, [`receive`] does exactly
//! what Automerge does, minus that walk; otherwise it calls Automerge.

use automerge::sync::{Capability, Message, MessageFlags, State, SyncDoc};
use automerge::{AutoCommit, AutomergeError, ChangeHash};

/// `receive_sync_message`, cheaply when the walk could change nothing.
pub(crate) fn receive(
    doc: &mut AutoCommit,
    state: &mut State,
    message: Message,
) -> Result<(), AutomergeError> {
    let resets = message
        .flags
        .is_some_and(|f| f.contains(MessageFlags::SYNC_RESET));
    if !message.changes.is_empty() || !(state.sent_hashes.is_empty() || resets) {
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
    // `filter_changes` would remove from an empty `sent_hashes`.
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
}
