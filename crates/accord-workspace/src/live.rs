//! An agreement held open for a stream of small edits (typing).
//!
//! Each keystroke becomes one Automerge change that is handed to the
//! replica's group-commit queue instead of waiting for its own fsync: the
//! writer thread batches whatever has queued into one durable transaction.
//! A keystroke is acknowledged (`Ticket` durable) once its group is on disk.

use accord_model::automerge::ObjId;
use accord_model::{Agreement, RosterView};
use accord_store::{CommitQueue, StoreError, Ticket, WriteBatch};

use crate::persist::{CompactionPolicy, LogCounters};
use crate::{WorkspaceError, unix_now};

pub struct LiveDocument {
    queue: CommitQueue,
    agreement: Agreement,
    roster: RosterView,
    counters: LogCounters,
    policy: CompactionPolicy,
}

impl LiveDocument {
    pub(crate) fn new(
        queue: CommitQueue,
        agreement: Agreement,
        roster: RosterView,
        counters: LogCounters,
        policy: CompactionPolicy,
    ) -> Self {
        Self {
            queue,
            agreement,
            roster,
            counters,
            policy,
        }
    }

    pub fn agreement(&self) -> &Agreement {
        &self.agreement
    }

    /// The text object at `path`, for repeated splices without re-resolving the path.
    pub fn text_obj(&mut self, path: &str) -> Result<ObjId, WorkspaceError> {
        Ok(self.agreement.text_obj(path, &self.roster)?)
    }

    /// Splices `text` and commits it as one change queued for durable storage.
    pub fn splice(
        &mut self,
        text: &ObjId,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<Option<Ticket>, WorkspaceError> {
        self.agreement.splice_text(text, pos, delete, insert)?;
        Ok(self.commit("Typed"))
    }

    /// Commits pending operations (if any) and queues the change.
    pub fn commit(&mut self, message: &str) -> Option<Ticket> {
        let change = self.agreement.commit(message, unix_now())?;
        let mut batch = WriteBatch::default();
        let id = self.agreement.id();
        self.counters.record(
            &mut batch,
            id,
            self.agreement.doc_mut(),
            change,
            self.policy,
        );
        Some(self.queue.submit(batch))
    }

    /// Blocks until `ticket`'s group is durable.
    pub fn wait(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.queue.wait(ticket)
    }

    /// Blocks until everything queued so far is durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.queue.flush()
    }

    /// Folds the change log into a snapshot now (e.g. before closing), so
    /// the next open loads one snapshot instead of replaying changes.
    ///
    /// The store skips the compaction (the log stays, nothing is lost) if
    /// another writer appended to this document since it was opened.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        if self.counters.log_changes > 0 {
            let mut batch = WriteBatch::default();
            let id = self.agreement.id();
            self.counters
                .compact(&mut batch, id, self.agreement.doc_mut());
            self.queue.submit(batch);
        }
        self.queue.flush()
    }
}
