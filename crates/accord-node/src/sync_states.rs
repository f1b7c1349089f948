//! Sync states held back from the commit that produced them.
//!
//! Every conversation that settles writes the peer's sync state, so that a
//! reconnect starts from what the peer holds. A relay serving a hundred
//! subscribers settles a hundred conversations per edit, each answer in its
//! own driver round: that was a hundred commits per edit, about a third of
//! the engine thread's time. A sync state is a cache of what a peer holds:
//! losing one costs a longer reconnect, never a change (the store commits
//! them without an fsync for that reason). So the driver keeps the latest
//! state per document and peer here and commits them together once no new
//! one has come for [`QUIET_FOR`] (the answers to an edit have all
//! arrived), after [`HOLD_FOR`] at most, when many are waiting, and when
//! the node stops. Waiting for the quiet keeps that commit out of the next
//! edit's way: committed a second after the first state, it landed in the
//! middle of a fan-out now and then, and at 100 subscribers one such edit in
//! a hundred doubled the p99. A load reads held states first, so the engine
//! never sees an older state than the one it wrote.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use accord_identity::OrgKey;
use accord_model::DocId;
use accord_store::WriteBatch;

/// How long after the last held state the states are committed.
pub const QUIET_FOR: Duration = Duration::from_millis(100);
/// How long a held state may wait for its commit, quiet or not.
pub const HOLD_FOR: Duration = Duration::from_secs(2);
/// Held states that make a commit due at once, whatever their age: bounds
/// the memory held (each state is at most `MAX_SYNC_STATE_BYTES`).
pub const HOLD_AT_MOST: usize = 4_096;

/// The latest unsaved sync state of each document and peer.
#[derive(Debug, Default)]
pub struct HeldSyncStates {
    states: BTreeMap<(DocId, OrgKey), Vec<u8>>,
    /// When the oldest and the newest held state arrived.
    since: Option<(Instant, Instant)>,
}

impl HeldSyncStates {
    /// Holds `state`, replacing any older one for the same document and peer.
    pub fn hold(&mut self, doc: DocId, peer: OrgKey, state: Vec<u8>, now: Instant) {
        let oldest = self.since.map_or(now, |(oldest, _)| oldest);
        self.since = Some((oldest, now));
        self.states.insert((doc, peer), state);
    }

    /// The held state for `doc` and `peer`, newer than any stored one.
    pub fn get(&self, doc: DocId, peer: OrgKey) -> Option<&[u8]> {
        self.states.get(&(doc, peer)).map(Vec::as_slice)
    }

    /// When the held states must be committed, if any are held.
    pub fn deadline(&self) -> Option<Instant> {
        self.since
            .map(|(oldest, newest)| (newest + QUIET_FOR).min(oldest + HOLD_FOR))
    }

    /// Whether the held states should be committed now.
    pub fn due(&self, now: Instant) -> bool {
        self.states.len() >= HOLD_AT_MOST || self.deadline().is_some_and(|at| at <= now)
    }

    /// Takes every held state as one batch; `None` if none is held. A state
    /// the store refuses as too large is left out and logged.
    pub fn take(&mut self) -> Option<WriteBatch> {
        self.since = None;
        if self.states.is_empty() {
            return None;
        }
        let mut batch = WriteBatch::default();
        for ((doc, peer), state) in std::mem::take(&mut self.states) {
            add_sync_state(&mut batch, doc, peer, state);
        }
        Some(batch)
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }
}

/// Adds a peer's sync state to `batch`; one the store refuses as too large
/// is left out and logged (a lost sync state costs a longer reconnect).
pub fn add_sync_state(batch: &mut WriteBatch, doc: DocId, peer: OrgKey, state: Vec<u8>) {
    if let Err(e) = batch.put_sync_state(*doc.as_bytes(), *peer.as_bytes(), state) {
        tracing::debug!(error = %e, %doc, "not keeping an oversized sync state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: u8) -> DocId {
        DocId::from_bytes([n; 16])
    }

    fn peer(n: u8) -> OrgKey {
        accord_identity::OrgSecret::from_seed([n; 32]).public()
    }

    #[test]
    fn keeps_only_the_latest_state_per_document_and_peer() {
        let now = Instant::now();
        let mut held = HeldSyncStates::default();
        held.hold(doc(1), peer(1), vec![1], now);
        held.hold(doc(1), peer(1), vec![2], now);
        held.hold(doc(1), peer(2), vec![3], now);
        held.hold(doc(2), peer(1), vec![4], now);
        assert_eq!(held.len(), 3);
        assert_eq!(held.get(doc(1), peer(1)), Some(&[2][..]));
        assert_eq!(held.get(doc(1), peer(2)), Some(&[3][..]));
        assert_eq!(held.get(doc(3), peer(1)), None);
    }

    #[test]
    fn is_due_once_quiet_or_when_the_oldest_waited_long_or_when_many_wait() {
        let start = Instant::now();
        let mut held = HeldSyncStates::default();
        assert!(
            !held.due(start + HOLD_FOR * 10),
            "nothing held, nothing due"
        );
        assert_eq!(held.deadline(), None);
        held.hold(doc(1), peer(1), vec![1], start);
        let later = start + QUIET_FOR / 2;
        held.hold(doc(1), peer(2), vec![1], later);
        assert_eq!(
            held.deadline(),
            Some(later + QUIET_FOR),
            "the newest sets it"
        );
        assert!(!held.due(start + QUIET_FOR));
        assert!(held.due(later + QUIET_FOR));

        // States that keep coming are committed once the oldest has waited enough.
        let mut busy = HeldSyncStates::default();
        let mut at = start;
        while at < start + HOLD_FOR {
            busy.hold(doc(1), peer(1), vec![1], at);
            assert!(!busy.due(at), "not due while states keep coming");
            at += QUIET_FOR / 2;
        }
        busy.hold(doc(1), peer(1), vec![1], at);
        assert!(busy.due(at), "due once the oldest waited {HOLD_FOR:?}");

        let mut many = HeldSyncStates::default();
        for n in 0..HOLD_AT_MOST {
            let id = DocId::from_bytes((n as u128).to_be_bytes());
            many.hold(id, peer(1), vec![1], start);
        }
        assert!(many.due(start), "a full hold is due at once");
    }

    #[test]
    fn taking_empties_the_hold_and_restarts_its_clock() {
        let start = Instant::now();
        let mut held = HeldSyncStates::default();
        assert!(held.take().is_none());
        held.hold(doc(1), peer(1), vec![1; 8], start);
        held.hold(doc(2), peer(1), vec![2; 8], start);
        let batch = held.take().expect("two states held");
        assert!(
            !batch.is_durable_data(),
            "sync states only: no fsync needed"
        );
        assert_eq!(held.len(), 0);
        assert_eq!(held.deadline(), None);
        held.hold(doc(1), peer(1), vec![3], start + HOLD_FOR * 5);
        assert_eq!(held.deadline(), Some(start + HOLD_FOR * 5 + QUIET_FOR));
    }
}
