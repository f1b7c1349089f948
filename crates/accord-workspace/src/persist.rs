//! Turning Automerge documents into store writes and back.

use accord_identity::{OrgKey, OrgSecret};
use accord_model::automerge::ChangeHash;
use accord_model::automerge::{ActorId, AutoCommit};
use accord_model::trust::Attestation;
use accord_model::{CommittedChange, DocId, PartnershipId, load_document};
use accord_store::{DocInfo, Replica, StoredDocument, WriteBatch};

use crate::WorkspaceError;

/// Something this workspace made durable, told to whoever listens (the
/// sync engine pushes it to connected partners).
#[derive(Clone, Debug)]
pub enum Committed {
    /// A document created here.
    NewDocument {
        doc: DocId,
        partnership: PartnershipId,
        kind: String,
        heads: Vec<ChangeHash>,
        /// This organisation's attestation of the new heads (encoded).
        attestation: Vec<u8>,
    },
    /// A change made here to an existing document.
    Change {
        doc: DocId,
        change: Vec<u8>,
        heads: Vec<ChangeHash>,
        attestation: Vec<u8>,
    },
}

/// Told about every durable write of a workspace.
pub type CommitListener = std::sync::Arc<dyn Fn(&[Committed]) + Send + Sync>;

/// A write batch plus what to announce once it is durable.
#[derive(Debug, Default)]
pub struct Tx {
    pub batch: WriteBatch,
    pub committed: Vec<Committed>,
    /// Documents and heads to attest when the batch is sealed.
    to_attest: Vec<(DocId, Vec<ChangeHash>)>,
}

impl Tx {
    /// Signs every local change of the batch: one attestation per document,
    /// over its heads after the batch, stored in the same transaction as the
    /// changes. Call it once, just before committing.
    pub fn seal(&mut self, secret: &OrgSecret) {
        for (doc, heads) in std::mem::take(&mut self.to_attest) {
            let attestation = Attestation::sign(secret, doc, &heads);
            let bytes = attestation.to_bytes();
            if let Err(e) =
                self.batch
                    .put_attestation(*doc.as_bytes(), attestation.id(), bytes.clone())
            {
                tracing::error!(%doc, error = %e, "could not store an attestation");
                continue;
            }
            for notice in self.committed.iter_mut() {
                match notice {
                    Committed::NewDocument {
                        doc: d,
                        attestation,
                        ..
                    }
                    | Committed::Change {
                        doc: d,
                        attestation,
                        ..
                    } if *d == doc => attestation.clone_from(&bytes),
                    _ => {}
                }
            }
        }
    }

    /// Asks [`seal`](Self::seal) to attest `doc` at `heads` (the last
    /// request for a document wins: its heads cover the earlier ones).
    fn attest(&mut self, doc: DocId, heads: Vec<ChangeHash>) {
        self.to_attest.retain(|(d, _)| *d != doc);
        self.to_attest.push((doc, heads));
    }
}

impl std::ops::Deref for Tx {
    type Target = WriteBatch;
    fn deref(&self) -> &WriteBatch {
        &self.batch
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }
}

/// When to fold a document's change log back into its snapshot.
///
/// Loading from a long log is several times slower than loading a snapshot,
/// but saving a snapshot costs time proportional to the whole document. We
/// compact when the log holds as many changes as the snapshot (and at least
/// `min_log_changes`), so the total cost of compaction stays a small
/// constant factor of one final save, and a cold open never replays more
/// than half the document's history as raw changes.
#[derive(Clone, Copy, Debug)]
pub struct CompactionPolicy {
    pub min_log_changes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            min_log_changes: 256,
        }
    }
}

impl CompactionPolicy {
    pub fn should_compact(&self, snapshot_changes: u64, log_changes: u64) -> bool {
        log_changes >= self.min_log_changes.max(snapshot_changes)
    }
}

/// The counters the store keeps for one document, mirrored in memory by
/// whoever holds the document open.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogCounters {
    pub snapshot_changes: u64,
    pub log_changes: u64,
    /// The store's `next_seq` as this holder knows it: the loaded value plus
    /// one per append recorded since. Compactions pass it as the expected
    /// value, so the store skips them (rather than lose data) when another
    /// writer appended to the document meanwhile.
    pub next_seq: u64,
    /// This organisation's stored attestations of the document, by id. Each
    /// new local attestation covers the whole document as this holder has
    /// it, which includes everything these cover, so they are replaced.
    own_attestations: Vec<[u8; 32]>,
}

impl LogCounters {
    pub fn of(stored: &StoredDocument, me: Option<OrgKey>) -> Self {
        let own_attestations = stored
            .attestations
            .iter()
            .filter_map(|bytes| Attestation::from_bytes(bytes).ok())
            .filter(|a| Some(a.org) == me)
            .map(|a| a.id())
            .collect();
        Self {
            snapshot_changes: stored.snapshot_changes,
            log_changes: stored.log_changes,
            next_seq: stored.next_seq,
            own_attestations,
        }
    }

    /// Replaces this organisation's attestations of `id` by one of `heads`.
    fn reattest(&mut self, batch: &mut Tx, id: DocId, heads: &[ChangeHash]) {
        for old in self.own_attestations.drain(..) {
            batch.delete_attestation(*id.as_bytes(), old);
        }
        batch.attest(id, heads.to_vec());
    }

    /// Adds `change` and the document's new heads to `batch`, then a
    /// compaction when the policy says so.
    ///
    /// The change is appended even when compacting: the compaction deletes
    /// it again, but if the store skips the compaction (someone else
    /// appended), the change must still be in the log.
    pub fn record(
        &mut self,
        batch: &mut Tx,
        id: DocId,
        doc: &mut AutoCommit,
        change: CommittedChange,
        policy: CompactionPolicy,
    ) {
        self.record_entry(batch, id, doc, change.bytes, 1, policy);
    }

    /// Like [`record`](Self::record), for one log entry holding `count`
    /// changes: `bytes` is their raw change chunks concatenated (as
    /// `save_after` returns them), loadable with one `load_incremental`.
    /// The entry takes one sequence number, whatever `count` is.
    pub fn record_entry(
        &mut self,
        batch: &mut Tx,
        id: DocId,
        doc: &mut AutoCommit,
        bytes: Vec<u8>,
        count: u64,
        policy: CompactionPolicy,
    ) {
        let heads = doc.get_heads();
        batch.committed.push(Committed::Change {
            doc: id,
            change: bytes.clone(),
            heads: heads.clone(),
            attestation: Vec::new(),
        });
        self.reattest(batch, id, &heads);
        batch.append_changes(*id.as_bytes(), bytes, count);
        self.log_changes += count;
        self.next_seq += 1;
        batch.set_heads(*id.as_bytes(), heads.iter().map(|h| h.0).collect());
        if policy.should_compact(self.snapshot_changes, self.log_changes) {
            self.compact(batch, id, doc);
        }
    }

    /// Adds a compaction of `doc` to `batch`, valid only if no one but this
    /// holder appended since the load; it leaves `next_seq` as it is.
    pub fn compact(&mut self, batch: &mut WriteBatch, id: DocId, doc: &mut AutoCommit) {
        let total = self.snapshot_changes + self.log_changes;
        batch.compact(*id.as_bytes(), doc.save(), total, self.next_seq);
        self.snapshot_changes = total;
        self.log_changes = 0;
    }
}

/// Loads a stored document; a document that fails to load is reported as
/// damaged (never silently replaced).
pub(crate) fn load(
    replica: &Replica,
    id: DocId,
    actor: ActorId,
) -> Result<Option<(DocInfo, AutoCommit, LogCounters)>, WorkspaceError> {
    let Some(stored) = replica.load_document(id.as_bytes())? else {
        return Ok(None);
    };
    let me = accord_identity::OrgKey::from_actor_bytes(actor.to_bytes());
    let counters = LogCounters::of(&stored, me);
    let doc = load_document(&stored.snapshot, &stored.changes, actor).map_err(|e| {
        WorkspaceError::DamagedDocument {
            id: id.to_string(),
            detail: e.to_string(),
        }
    })?;
    Ok(Some((stored.info, doc, counters)))
}

/// Adds a brand-new document, with its heads, to `batch`.
pub(crate) fn put_new(batch: &mut Tx, id: DocId, info: DocInfo, doc: &mut AutoCommit) {
    let heads = doc.get_heads();
    batch.committed.push(Committed::NewDocument {
        doc: id,
        partnership: PartnershipId::from_bytes(info.partnership),
        kind: info.kind.clone(),
        heads: heads.clone(),
        attestation: Vec::new(),
    });
    batch.put_document(*id.as_bytes(), info, doc.save(), 1);
    batch.set_heads(*id.as_bytes(), heads.iter().map(|h| h.0).collect());
    batch.attest(id, heads);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_waits_for_the_log_to_match_the_snapshot() {
        let policy = CompactionPolicy {
            min_log_changes: 10,
        };
        assert!(!policy.should_compact(0, 9));
        assert!(policy.should_compact(0, 10));
        assert!(!policy.should_compact(100, 99));
        assert!(policy.should_compact(100, 100));
    }

    use accord_model::automerge::transaction::Transactable;
    use accord_model::automerge::{ChangeHash, ROOT};

    const ID: [u8; 16] = [4; 16];

    fn info() -> DocInfo {
        DocInfo {
            partnership: [1; 16],
            kind: "agreement".into(),
            title: "T".into(),
        }
    }

    fn edit(doc: &mut AutoCommit, value: &str) -> CommittedChange {
        doc.put(ROOT, "title", value).unwrap();
        let hash = doc.commit().unwrap();
        let bytes = doc.get_change_by_hash(&hash).unwrap().raw_bytes().to_vec();
        CommittedChange { hash, bytes }
    }

    fn heads(hashes: Vec<ChangeHash>) -> Vec<[u8; 32]> {
        hashes.into_iter().map(|h| h.0).collect()
    }

    /// A replica holding one document with one change, and that document loaded.
    fn setup(dir: &std::path::Path) -> (Replica, AutoCommit, LogCounters) {
        let replica = Replica::create(dir, "Org", [3; 32], 0).unwrap();
        let mut doc = AutoCommit::new();
        edit(&mut doc, "first");
        let mut batch = Tx::default();
        put_new(&mut batch, DocId::from_bytes(ID), info(), &mut doc);
        replica.commit(batch.batch).unwrap();
        let (_, doc, counters) = load(&replica, DocId::from_bytes(ID), ActorId::random())
            .unwrap()
            .unwrap();
        (replica, doc, counters)
    }

    fn stored(replica: &Replica) -> StoredDocument {
        replica.load_document(&ID).unwrap().unwrap()
    }

    #[test]
    fn recording_keeps_heads_and_next_seq_in_step_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, mut doc, mut counters) = setup(dir.path());
        assert_eq!(stored(&replica).heads, heads(doc.get_heads()));
        let policy = CompactionPolicy { min_log_changes: 3 };
        for (n, value) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let change = edit(&mut doc, value);
            let mut batch = Tx::default();
            counters.record(&mut batch, DocId::from_bytes(ID), &mut doc, change, policy);
            replica.commit(batch.batch).unwrap();
            let now = stored(&replica);
            assert_eq!(now.heads, heads(doc.get_heads()));
            assert_eq!(
                (now.next_seq, now.log_changes),
                (counters.next_seq, counters.log_changes)
            );
            // The third change reaches the policy's minimum and compacts.
            assert_eq!(now.changes.len(), [1, 2, 0, 1][n], "after {value}");
        }
    }

    #[test]
    fn a_compaction_racing_another_writer_keeps_both_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, mut doc, mut counters) = setup(dir.path());
        let (_, mut other, mut other_counters) =
            load(&replica, DocId::from_bytes(ID), ActorId::random())
                .unwrap()
                .unwrap();
        let never = CompactionPolicy {
            min_log_changes: u64::MAX,
        };
        let mut batch = Tx::default();
        let theirs = edit(&mut other, "theirs");
        other_counters.record(&mut batch, DocId::from_bytes(ID), &mut other, theirs, never);
        replica.commit(batch.batch).unwrap();

        let always = CompactionPolicy { min_log_changes: 0 };
        let mut batch = Tx::default();
        let mine = edit(&mut doc, "mine");
        let mine_hash = mine.hash;
        counters.record(&mut batch, DocId::from_bytes(ID), &mut doc, mine, always);
        replica.commit(batch.batch).unwrap();

        let (_, mut merged, _) = load(&replica, DocId::from_bytes(ID), ActorId::random())
            .unwrap()
            .unwrap();
        let mut expected = merged.get_heads();
        expected.sort();
        let mut both = vec![mine_hash, other.get_heads()[0]];
        both.sort();
        assert_eq!(expected, both, "neither change was lost");
        assert_eq!(stored(&replica).changes.len(), 2, "compaction skipped");
    }
}
