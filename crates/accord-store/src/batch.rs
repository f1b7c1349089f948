//! [`WriteBatch`]: a list of writes applied atomically, in order, in one transaction.

use std::path::Path;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::error::StoreError;
use crate::tables::{
    self, ATTESTATIONS, CHANGES, DOCUMENTS, DocRecord, MAX_HEADS, MAX_RECORD_BYTES,
    MAX_SYNC_STATE_BYTES, REFUSALS, SETTINGS, SNAPSHOT_CHUNK, SNAPSHOTS, SYNC_STATES,
};
use crate::{DocInfo, DocKey};

/// Writes to apply together: either all of them become durable or none.
///
/// A batch is plain data, built without touching the database, so the node's
/// editing thread can assemble it cheaply and hand it to a
/// [`CommitQueue`](crate::CommitQueue). Operations run in the order they were added.
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
    bytes: usize,
}

#[derive(Debug)]
enum Op {
    PutDocument {
        id: DocKey,
        info: DocInfo,
        snapshot: Vec<u8>,
        snapshot_changes: u64,
    },
    SetInfo {
        id: DocKey,
        info: DocInfo,
    },
    AppendChanges {
        id: DocKey,
        bytes: Vec<u8>,
        change_count: u64,
    },
    Compact {
        id: DocKey,
        snapshot: Vec<u8>,
        snapshot_changes: u64,
        expected_next_seq: u64,
    },
    SetHeads {
        id: DocKey,
        heads: Vec<[u8; 32]>,
    },
    PutSyncState {
        id: DocKey,
        peer: [u8; 32],
        state: Vec<u8>,
    },
    PutSetting {
        key: String,
        value: Vec<u8>,
    },
    PutAttestation {
        id: DocKey,
        key: [u8; 32],
        record: Vec<u8>,
    },
    DeleteAttestation {
        id: DocKey,
        key: [u8; 32],
    },
    PutRefusal {
        id: DocKey,
        change: [u8; 32],
        record: Vec<u8>,
    },
    DeleteSetting {
        key: String,
    },
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Stores a new document, or replaces one entirely: its log is dropped,
    /// because `snapshot` is its whole state from now on. Its heads become
    /// unknown (empty): follow with [`set_heads`](WriteBatch::set_heads).
    pub fn put_document(
        &mut self,
        id: DocKey,
        info: DocInfo,
        snapshot: Vec<u8>,
        snapshot_changes: u64,
    ) {
        self.push(
            snapshot.len() + info_len(&info),
            Op::PutDocument {
                id,
                info,
                snapshot,
                snapshot_changes,
            },
        );
    }

    /// Updates a document's description (title, kind...) without touching its content.
    pub fn set_info(&mut self, id: DocKey, info: DocInfo) {
        self.push(info_len(&info), Op::SetInfo { id, info });
    }

    /// Appends one log entry: `bytes` is one or more concatenated raw Automerge
    /// change chunks holding `change_count` changes. Appending is what makes a
    /// keystroke durable without rewriting the snapshot.
    pub fn append_changes(&mut self, id: DocKey, bytes: Vec<u8>, change_count: u64) {
        self.push(
            bytes.len(),
            Op::AppendChanges {
                id,
                bytes,
                change_count,
            },
        );
    }

    /// Replaces the snapshot and deletes every log entry that exists when this
    /// operation runs (so appends added to the batch or queue *after* it survive).
    ///
    /// Applies only if the document's next sequence number is still
    /// `expected_next_seq` when the operation runs: the value the compactor
    /// loaded ([`StoredDocument::next_seq`](crate::StoredDocument::next_seq))
    /// plus one per entry it appended since. Otherwise someone else appended
    /// an entry that `snapshot` may not contain, and deleting it would lose
    /// data, so the operation is skipped (not an error: the log stays valid,
    /// just longer). Unknown documents are still an error.
    pub fn compact(
        &mut self,
        id: DocKey,
        snapshot: Vec<u8>,
        snapshot_changes: u64,
        expected_next_seq: u64,
    ) {
        self.push(
            snapshot.len(),
            Op::Compact {
                id,
                snapshot,
                snapshot_changes,
                expected_next_seq,
            },
        );
    }

    /// Records the document's current heads (Automerge change hashes), so sync
    /// can compare documents without loading them.
    ///
    /// More than [`MAX_HEADS`](crate::MAX_HEADS) heads are stored as none,
    /// which readers treat as unknown: load the document to learn them.
    pub fn set_heads(&mut self, id: DocKey, mut heads: Vec<[u8; 32]>) {
        if heads.len() > MAX_HEADS {
            tracing::warn!(
                doc = %tables::doc_hex(&id),
                heads = heads.len(),
                "too many concurrent heads to index; storing them as unknown"
            );
            heads = Vec::new();
        }
        self.push(32 * heads.len(), Op::SetHeads { id, heads });
    }

    /// Stores the sync state of document `id` with the peer organisation whose
    /// public key is `peer` (an encoded `automerge::sync::State`, opaque here).
    ///
    /// Refuses, without adding anything, a state above
    /// [`MAX_SYNC_STATE_BYTES`](crate::MAX_SYNC_STATE_BYTES): rejecting it
    /// here rather than at commit keeps one bad state from failing a whole
    /// group commit. Committing fails with `UnknownDocument` if `id` is not stored.
    pub fn put_sync_state(
        &mut self,
        id: DocKey,
        peer: [u8; 32],
        state: Vec<u8>,
    ) -> Result<(), StoreError> {
        if state.len() > MAX_SYNC_STATE_BYTES {
            return Err(StoreError::TooLarge {
                what: "sync state",
                size: state.len(),
                limit: MAX_SYNC_STATE_BYTES,
            });
        }
        self.push(state.len(), Op::PutSyncState { id, peer, state });
        Ok(())
    }

    /// Stores an attestation of document `id` under `key` (its id). Records
    /// above [`MAX_RECORD_BYTES`](crate::MAX_RECORD_BYTES) are refused here.
    pub fn put_attestation(
        &mut self,
        id: DocKey,
        key: [u8; 32],
        record: Vec<u8>,
    ) -> Result<(), StoreError> {
        check_record("attestation", &record)?;
        self.push(record.len(), Op::PutAttestation { id, key, record });
        Ok(())
    }

    /// Drops an attestation that a newer one of the same organisation covers.
    pub fn delete_attestation(&mut self, id: DocKey, key: [u8; 32]) {
        self.push(32, Op::DeleteAttestation { id, key });
    }

    /// Records that change `change` of document `id` was refused (for the audit).
    pub fn put_refusal(
        &mut self,
        id: DocKey,
        change: [u8; 32],
        record: Vec<u8>,
    ) -> Result<(), StoreError> {
        check_record("refusal", &record)?;
        self.push(record.len(), Op::PutRefusal { id, change, record });
        Ok(())
    }

    /// Sets a small setting (known peers, preferences of later features).
    pub fn put_setting(&mut self, key: &str, value: Vec<u8>) {
        self.push(
            key.len() + value.len(),
            Op::PutSetting {
                key: key.to_owned(),
                value,
            },
        );
    }

    /// Removes a setting; removing a missing one is not an error.
    pub fn delete_setting(&mut self, key: &str) {
        self.push(
            key.len(),
            Op::DeleteSetting {
                key: key.to_owned(),
            },
        );
    }

    /// Whether the batch has no operations (committing it would be a no-op).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether losing this batch in a crash would lose data. Sync states are
    /// a cache of what a peer holds: losing one costs a longer reconnect,
    /// never a change, so a batch of nothing else need not wait for an fsync.
    pub fn is_durable_data(&self) -> bool {
        self.ops
            .iter()
            .any(|op| !matches!(op, Op::PutSyncState { .. }))
    }

    /// Roughly how many bytes the batch holds, so a queue can bound its memory.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends all of `other`'s operations after this batch's, keeping their order.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
        self.bytes += other.bytes;
    }

    fn push(&mut self, payload: usize, op: Op) {
        // A fixed overhead per op keeps many tiny ops from looking free.
        self.bytes += payload + 64;
        self.ops.push(op);
    }

    /// Applies every operation inside `txn`; the first error aborts the whole batch
    /// (the caller drops the transaction without committing).
    pub(crate) fn apply(self, txn: &WriteTransaction, path: &Path) -> Result<(), StoreError> {
        let mut tables = Tables::open(txn, path)?;
        for op in self.ops {
            tables.apply(op)?;
        }
        Ok(())
    }
}

fn check_record(what: &'static str, record: &[u8]) -> Result<(), StoreError> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge {
            what,
            size: record.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

fn info_len(info: &DocInfo) -> usize {
    info.kind.len() + info.title.len()
}

/// The writable tables of one transaction, plus the file path for error messages.
struct Tables<'txn> {
    path: &'txn Path,
    documents: Table<'txn, DocKey, &'static [u8]>,
    snapshots: Table<'txn, (DocKey, u32), &'static [u8]>,
    changes: Table<'txn, (DocKey, u64), &'static [u8]>,
    settings: Table<'txn, &'static str, &'static [u8]>,
    sync_states: Table<'txn, (DocKey, [u8; 32]), &'static [u8]>,
    attestations: Table<'txn, (DocKey, [u8; 32]), &'static [u8]>,
    refusals: Table<'txn, (DocKey, [u8; 32]), &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction, path: &'txn Path) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            path,
            documents: txn.open_table(DOCUMENTS).map_err(StoreError::redb(path))?,
            snapshots: txn.open_table(SNAPSHOTS).map_err(StoreError::redb(path))?,
            changes: txn.open_table(CHANGES).map_err(StoreError::redb(path))?,
            settings: txn.open_table(SETTINGS).map_err(StoreError::redb(path))?,
            sync_states: txn
                .open_table(SYNC_STATES)
                .map_err(StoreError::redb(path))?,
            attestations: txn
                .open_table(ATTESTATIONS)
                .map_err(StoreError::redb(path))?,
            refusals: txn.open_table(REFUSALS).map_err(StoreError::redb(path))?,
        })
    }

    fn apply(&mut self, op: Op) -> Result<(), StoreError> {
        match op {
            Op::PutDocument {
                id,
                info,
                snapshot,
                snapshot_changes,
            } => self.put_document(id, info, &snapshot, snapshot_changes),
            Op::SetInfo { id, info } => self.set_info(id, info),
            Op::AppendChanges {
                id,
                bytes,
                change_count,
            } => self.append_changes(id, &bytes, change_count),
            Op::Compact {
                id,
                snapshot,
                snapshot_changes,
                expected_next_seq,
            } => self.compact(id, &snapshot, snapshot_changes, expected_next_seq),
            Op::SetHeads { id, heads } => self.set_heads(id, heads),
            Op::PutSyncState { id, peer, state } => self.put_sync_state(id, peer, &state),
            Op::PutSetting { key, value } => {
                self.settings
                    .insert(key.as_str(), tables::seal_setting(&value).as_slice())
                    .map_err(StoreError::redb(self.path))?;
                Ok(())
            }
            Op::PutAttestation { id, key, record } => {
                self.existing(&id)?;
                self.attestations
                    .insert((id, key), record.as_slice())
                    .map_err(StoreError::redb(self.path))?;
                Ok(())
            }
            Op::DeleteAttestation { id, key } => {
                self.attestations
                    .remove((id, key))
                    .map_err(StoreError::redb(self.path))?;
                Ok(())
            }
            Op::PutRefusal { id, change, record } => {
                self.refusals
                    .insert((id, change), record.as_slice())
                    .map_err(StoreError::redb(self.path))?;
                Ok(())
            }
            Op::DeleteSetting { key } => {
                self.settings
                    .remove(key.as_str())
                    .map_err(StoreError::redb(self.path))?;
                Ok(())
            }
        }
    }

    fn record(&self, id: &DocKey) -> Result<Option<DocRecord>, StoreError> {
        let Some(bytes) = self
            .documents
            .get(id)
            .map_err(StoreError::redb(self.path))?
        else {
            return Ok(None);
        };
        DocRecord::decode(bytes.value())
            .map(Some)
            .map_err(|detail| StoreError::corrupt(self.path, detail))
    }

    fn existing(&self, id: &DocKey) -> Result<DocRecord, StoreError> {
        self.record(id)?.ok_or_else(|| StoreError::UnknownDocument {
            id: tables::doc_hex(id),
        })
    }

    fn write_record(&mut self, id: &DocKey, record: &DocRecord) -> Result<(), StoreError> {
        self.documents
            .insert(id, record.encode().as_slice())
            .map_err(StoreError::redb(self.path))?;
        Ok(())
    }

    /// Replaces the snapshot of `id` with `snapshot`, in chunks of at most
    /// [`SNAPSHOT_CHUNK`] bytes (always at least one chunk, so a stored
    /// document always has a snapshot, even an empty one).
    fn write_snapshot(&mut self, id: &DocKey, snapshot: &[u8]) -> Result<(), StoreError> {
        let id = *id;
        self.snapshots
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
            .map_err(StoreError::redb(self.path))?;
        let chunks = snapshot.chunks(SNAPSHOT_CHUNK);
        if chunks.len() > u32::MAX as usize {
            return Err(StoreError::TooLarge {
                what: "snapshot",
                size: snapshot.len(),
                limit: SNAPSHOT_CHUNK * u32::MAX as usize,
            });
        }
        if snapshot.is_empty() {
            self.snapshots
                .insert((id, 0), [].as_slice())
                .map_err(StoreError::redb(self.path))?;
        }
        for (n, chunk) in chunks.enumerate() {
            self.snapshots
                .insert((id, n as u32), chunk)
                .map_err(StoreError::redb(self.path))?;
        }
        Ok(())
    }

    /// Deletes the whole log of `id` (every entry present now).
    fn clear_log(&mut self, id: DocKey) -> Result<(), StoreError> {
        self.changes
            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
            .map_err(StoreError::redb(self.path))
    }

    fn put_document(
        &mut self,
        id: DocKey,
        info: DocInfo,
        snapshot: &[u8],
        snapshot_changes: u64,
    ) -> Result<(), StoreError> {
        let next_seq = self.record(&id)?.map_or(1, |old| old.next_seq);
        self.clear_log(id)?;
        self.write_snapshot(&id, snapshot)?;
        self.write_record(&id, &DocRecord::new(info, snapshot_changes, next_seq))
    }

    fn set_info(&mut self, id: DocKey, info: DocInfo) -> Result<(), StoreError> {
        let mut record = self.existing(&id)?;
        record.info = info;
        self.write_record(&id, &record)
    }

    fn append_changes(&mut self, id: DocKey, bytes: &[u8], count: u64) -> Result<(), StoreError> {
        let mut record = self.existing(&id)?;
        let seq = record.next_seq;
        self.changes
            .insert((id, seq), bytes)
            .map_err(StoreError::redb(self.path))?;
        record.next_seq = seq.saturating_add(1);
        record.log_changes = record.log_changes.saturating_add(count);
        record.log_bytes = record.log_bytes.saturating_add(bytes.len() as u64);
        self.write_record(&id, &record)
    }

    fn compact(
        &mut self,
        id: DocKey,
        snapshot: &[u8],
        snapshot_changes: u64,
        expected_next_seq: u64,
    ) -> Result<(), StoreError> {
        let mut record = self.existing(&id)?;
        if record.next_seq != expected_next_seq {
            tracing::debug!(
                doc = %tables::doc_hex(&id),
                expected_next_seq,
                next_seq = record.next_seq,
                "skipping compaction: the log gained entries its snapshot may lack"
            );
            return Ok(());
        }
        self.clear_log(id)?;
        self.write_snapshot(&id, snapshot)?;
        record.snapshot_changes = snapshot_changes;
        record.log_changes = 0;
        record.log_bytes = 0;
        self.write_record(&id, &record)
    }

    fn set_heads(&mut self, id: DocKey, heads: Vec<[u8; 32]>) -> Result<(), StoreError> {
        let mut record = self.existing(&id)?;
        record.heads = heads;
        self.write_record(&id, &record)
    }

    fn put_sync_state(
        &mut self,
        id: DocKey,
        peer: [u8; 32],
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.existing(&id)?;
        self.sync_states
            .insert((id, peer), state)
            .map_err(StoreError::redb(self.path))?;
        Ok(())
    }
}
