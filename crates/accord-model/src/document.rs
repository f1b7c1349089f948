//! What rosters and agreements share: loading, actors and committing.

use accord_identity::{ACTOR_SUFFIX_LEN, OrgSecret};
use automerge::{ActorId, AutoCommit, AutomergeError, ChangeHash, LoadOptions, OnPartialLoad};

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
    Ok(load_stored(snapshot, log)?.with_actor(actor))
}

/// Loads a stored snapshot and log, failing if any chunk is damaged.
///
/// `load_incremental` silently stops at the first chunk whose checksum does
/// not match, so a bit flip in a stored change would lose that change and
/// every later one without an error. Loading everything in one call with
/// `OnPartialLoad::Error` reports the damage instead, at the same cost: one
/// call for the whole log, because each call costs time in proportion to
/// the document, however little it adds.
pub fn load_stored(snapshot: &[u8], log: &[Vec<u8>]) -> Result<AutoCommit, AutomergeError> {
    let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error);
    if log.is_empty() {
        return AutoCommit::load_with_options(snapshot, options);
    }
    let mut bytes = Vec::with_capacity(snapshot.len() + log.iter().map(Vec::len).sum::<usize>());
    bytes.extend_from_slice(snapshot);
    for entry in log {
        bytes.extend_from_slice(entry);
    }
    AutoCommit::load_with_options(&bytes, options)
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
