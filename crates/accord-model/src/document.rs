//! What rosters and agreements share: loading, actors and committing.

use accord_identity::{ACTOR_SUFFIX_LEN, OrgSecret};
use automerge::{ActorId, AutoCommit, ChangeHash};

use crate::ModelError;

/// A change made locally, ready to persist and to send to partners.
#[derive(Debug, Clone)]
pub struct CommittedChange {
    pub hash: ChangeHash,
    /// The raw Automerge change chunk, loadable by `load_incremental`.
    pub bytes: Vec<u8>,
}

/// The actor id this process writes with: the organisation's key plus a
/// suffix fresh for each process, so `history` can name the organisation
/// and two sessions never collide on sequence numbers.
pub fn new_document_actor(org: &OrgSecret, suffix: [u8; ACTOR_SUFFIX_LEN]) -> ActorId {
    ActorId::from(org.actor_bytes(suffix))
}

/// Rebuilds a document from its stored snapshot and change-log entries.
pub fn load_document(
    snapshot: &[u8],
    log: &[Vec<u8>],
    actor: ActorId,
) -> Result<AutoCommit, ModelError> {
    let mut doc = AutoCommit::load(snapshot)?;
    // One call for the whole log: each call costs time in proportion to the
    // document, however little it adds.
    if !log.is_empty() {
        doc.load_incremental(&log.concat())?;
    }
    Ok(doc.with_actor(actor))
}

/// Closes the pending transaction with a message and a time, returning the
/// change it produced, or `None` when nothing changed.
pub(crate) fn commit(doc: &mut AutoCommit, message: &str, now: i64) -> Option<CommittedChange> {
    let options = automerge::transaction::CommitOptions::default()
        .with_message(message.to_owned())
        .with_time(now);
    let hash = doc.commit_with(options)?;
    let change = doc.get_last_local_change()?;
    debug_assert_eq!(change.hash(), hash);
    Some(CommittedChange {
        hash,
        bytes: change.raw_bytes().to_vec(),
    })
}
