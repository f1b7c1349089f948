//! An agreement held open for a stream of small edits (typing).
//!
//! Each keystroke is one Automerge change (with a time, no message), but
//! keystrokes are not written one by one: they collect in the document until
//! the store's writer has caught up with the previous group and at least
//! 5 ms have passed since it was submitted (or the group is large), and then
//! the whole group goes to the replica's group-commit queue as *one* log entry. So while one group is being made durable (an fsync),
//! the next one collects, and the editing thread does the work of turning
//! changes into bytes once per group instead of once per keystroke.
//!
//! A keystroke's [`Ticket`] names the group that carries it, even before that
//! group is submitted; [`LiveDocument::wait`] submits it if need be. Callers
//! must call [`LiveDocument::submit`] when typing pauses (e.g. from a timer a
//! few milliseconds after the last keystroke): otherwise the last group
//! waits for the next keystroke, `flush`, `wait`, `compact` or drop before
//! it is handed to the writer, and is lost if the process dies meanwhile.

use std::time::{Duration, Instant};

use accord_identity::OrgSecret;
use accord_model::automerge::transaction::CommitOptions;
use accord_model::automerge::{ChangeHash, ObjId};
use accord_model::{Agreement, RosterView};
use accord_store::{CommitQueue, StoreError, Ticket};

use crate::persist::{CompactionPolicy, LogCounters, Tx};
use crate::{WorkspaceError, unix_now};

/// Most changes in one group: bounds the editing thread's work (and the
/// memory of the entry) when the disk falls behind.
const MAX_GROUP_CHANGES: u64 = 4096;
/// Most inserted bytes in one group (an estimate of the entry's size).
const MAX_GROUP_BYTES: usize = 1024 * 1024;
/// Counted per change in the size estimate, on top of the inserted text.
const CHANGE_OVERHEAD: usize = 64;
/// Least time between two submits while keystrokes keep coming. A person
/// types far slower (every keystroke is submitted at once), but a burst
/// (paste, replay, a fast typist's key repeat) then costs one fsync and one
/// log entry per 5 ms instead of one per fsync, which would otherwise take
/// CPU from the editor on a small machine.
const MIN_GROUP_INTERVAL: Duration = Duration::from_millis(5);

pub struct LiveDocument {
    queue: CommitQueue,
    /// Signs each group's attestation.
    secret: OrgSecret,
    agreement: Agreement,
    roster: RosterView,
    counters: LogCounters,
    policy: CompactionPolicy,
    group: Group,
    /// The last ticket this document submitted (0: none yet).
    submitted: u64,
    /// When this document last submitted (or was opened).
    last_submit: Instant,
}

/// The changes committed to the document but not yet submitted.
struct Group {
    /// The document's heads when the last group was taken: the group is
    /// every change after them (all local: nothing else writes to `agreement`).
    after: Vec<ChangeHash>,
    changes: u64,
    approx_bytes: usize,
}

impl LiveDocument {
    pub(crate) fn new(
        queue: CommitQueue,
        secret: OrgSecret,
        mut agreement: Agreement,
        roster: RosterView,
        counters: LogCounters,
        policy: CompactionPolicy,
    ) -> Self {
        let after = agreement.doc_mut().get_heads();
        Self {
            queue,
            secret,
            agreement,
            roster,
            counters,
            policy,
            group: Group {
                after,
                changes: 0,
                approx_bytes: 0,
            },
            submitted: 0,
            // As if the last submit was long ago: the first keystroke goes at once.
            last_submit: Instant::now()
                .checked_sub(MIN_GROUP_INTERVAL)
                .unwrap_or_else(Instant::now),
        }
    }

    pub fn agreement(&self) -> &Agreement {
        &self.agreement
    }

    /// The text object at `path`, for repeated splices without re-resolving the path.
    pub fn text_obj(&mut self, path: &str) -> Result<ObjId, WorkspaceError> {
        Ok(self.agreement.text_obj(path, &self.roster)?)
    }

    /// Splices `text` and commits it as one change (with the time, no
    /// message). Returns the ticket of the group that carries it (see
    /// [`wait`](Self::wait)), or `None` if the splice changed nothing.
    pub fn splice(
        &mut self,
        text: &ObjId,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<Option<Ticket>, WorkspaceError> {
        self.agreement.splice_text(text, pos, delete, insert)?;
        let options = CommitOptions::default()
            .with_message(self.agreement.claimed_message(""))
            .with_time(unix_now());
        Ok(self.committed(options, insert.len()))
    }

    /// Commits pending operations (if any) with `message` as one change,
    /// grouped like keystrokes. Returns the ticket of its group.
    pub fn commit(&mut self, message: &str) -> Option<Ticket> {
        let options = CommitOptions::default()
            .with_message(self.agreement.claimed_message(message))
            .with_time(unix_now());
        self.committed(options, message.len())
    }

    /// Commits with `options` and adds the change to the current group,
    /// submitting the group if the writer is idle or the group is full.
    fn committed(&mut self, options: CommitOptions, size: usize) -> Option<Ticket> {
        self.agreement.doc_mut().commit_with(options)?;
        self.group.changes += 1;
        self.group.approx_bytes += size + CHANGE_OVERHEAD;
        let full =
            self.group.changes >= MAX_GROUP_CHANGES || self.group.approx_bytes >= MAX_GROUP_BYTES;
        if full
            || (self.queue.durable_ticket() >= self.submitted
                && self.last_submit.elapsed() >= MIN_GROUP_INTERVAL)
        {
            self.submit()
        } else {
            // The group will be the next submit, whenever that happens.
            Some(self.queue.next_ticket())
        }
    }

    /// Hands the current group (if any) to the writer now, without waiting
    /// for it to be durable, and returns its ticket. Call it when typing
    /// pauses, so the last keystrokes do not wait for the next one.
    pub fn submit(&mut self) -> Option<Ticket> {
        let tx = self.take_group();
        self.submit_tx(tx)
    }

    /// Blocks until the group named by `ticket` (and every earlier one) is
    /// durable, submitting the current group first if `ticket` names it.
    pub fn wait(&mut self, ticket: Ticket) -> Result<(), StoreError> {
        if ticket.get() > self.submitted {
            self.submit();
        }
        self.queue.wait(ticket)
    }

    /// Blocks until every change made so far is durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.submit();
        self.queue.flush()
    }

    /// Folds the change log into a snapshot now (e.g. before closing), so
    /// the next open loads one snapshot instead of replaying changes, and
    /// waits until that (and every change before it) is durable.
    ///
    /// The store skips the compaction (the log stays, nothing is lost) if
    /// another writer appended to this document since it was opened.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let mut tx = self.take_group();
        if self.counters.log_changes > 0 {
            let id = self.agreement.id();
            self.counters
                .compact(&mut tx.batch, id, self.agreement.doc_mut());
        }
        self.submit_tx(tx);
        self.queue.flush()
    }

    /// The current group as one log entry (plus heads, and a compaction if
    /// the policy says so); empties the group.
    fn take_group(&mut self) -> Tx {
        let mut tx = Tx::default();
        if self.group.changes == 0 {
            return tx;
        }
        let id = self.agreement.id();
        let doc = self.agreement.doc_mut();
        // One pass over the group's ops; `get_last_local_change` per
        // keystroke would rebuild each change from the op set separately.
        let bytes = doc.save_after(&self.group.after);
        self.group.after = doc.get_heads();
        let count = std::mem::take(&mut self.group.changes);
        self.group.approx_bytes = 0;
        self.counters
            .record_entry(&mut tx, id, doc, bytes, count, self.policy);
        tx
    }

    fn submit_tx(&mut self, mut tx: Tx) -> Option<Ticket> {
        if tx.batch.is_empty() {
            return None;
        }
        tx.seal(&self.secret);
        // `tx.committed` is not announced: a live document has no listener
        // (as before grouping).
        let ticket = self.queue.submit(tx.batch);
        self.submitted = ticket.get();
        self.last_submit = Instant::now();
        Some(ticket)
    }
}

impl Drop for LiveDocument {
    /// Hands the last group to the writer; the queue then drains everything
    /// submitted before it stops (errors are logged by the writer).
    fn drop(&mut self) {
        self.submit();
    }
}

#[cfg(test)]
mod tests {
    use accord_model::DocKind;
    use accord_model::automerge::ReadDoc;

    use super::*;
    use crate::Workspace;

    fn workspace(dir: &std::path::Path) -> (Workspace, String) {
        let ws = Workspace::init(dir, "Org").unwrap();
        let partnership = ws.create_partnership("P").unwrap();
        let doc = ws
            .create_document(&partnership.id.to_string(), DocKind::Mou, "MOU")
            .unwrap();
        (ws, doc.id.to_string())
    }

    fn stored_text(dir: &std::path::Path, doc: &str) -> String {
        let ws = Workspace::open(dir).unwrap();
        let mut live = ws.open_live(doc).unwrap();
        let text = live.text_obj("purpose").unwrap();
        live.agreement().doc().text(&text).unwrap()
    }

    #[test]
    fn a_keystrokes_ticket_is_durable_only_once_its_group_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, doc) = workspace(dir.path());
        let mut live = ws.open_live(&doc).unwrap();
        let text = live.text_obj("purpose").unwrap();
        let typed: String = (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut last = None;
        for (i, c) in typed.chars().enumerate() {
            last = live.splice(&text, i, 0, &c.to_string()).unwrap();
        }
        let last = last.unwrap();
        // Typed far faster than the group interval, so the last keystrokes
        // are still collecting, named by a ticket not issued yet.
        if last.get() > live.submitted {
            assert!(live.queue.durable_ticket() < last.get());
        }
        live.wait(last).unwrap();
        assert!(live.queue.durable_ticket() >= last.get());
        let stored = ws
            .replica()
            .load_document(live.agreement().id().as_bytes())
            .unwrap()
            .unwrap();
        assert!(
            stored.changes.len() < 100,
            "{} entries",
            stored.changes.len()
        );
        assert_eq!(stored.log_changes, 200);
        drop(live);
        drop(ws);
        assert_eq!(stored_text(dir.path(), &doc), typed);
    }

    #[test]
    fn dropping_a_live_document_stores_its_last_group() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, doc) = workspace(dir.path());
        let mut live = ws.open_live(&doc).unwrap();
        let text = live.text_obj("purpose").unwrap();
        for (i, c) in "typed, never flushed".chars().enumerate() {
            live.splice(&text, i, 0, &c.to_string()).unwrap();
        }
        drop(live);
        drop(ws);
        assert_eq!(stored_text(dir.path(), &doc), "typed, never flushed");
    }

    #[test]
    fn grouped_entries_compact_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, doc) = workspace(dir.path());
        let ws = ws.with_compaction_policy(CompactionPolicy { min_log_changes: 8 });
        let mut live = ws.open_live(&doc).unwrap();
        let text = live.text_obj("purpose").unwrap();
        let mut expected = String::new();
        for i in 0..200 {
            let c = char::from(b'a' + (i % 26) as u8);
            live.splice(&text, expected.len(), 0, &c.to_string())
                .unwrap();
            expected.push(c);
            if i % 37 == 0 {
                live.submit();
            }
            if i % 61 == 0 {
                live.flush().unwrap();
            }
        }
        live.flush().unwrap();
        let id = live.agreement().id();
        let stored = ws.replica().load_document(id.as_bytes()).unwrap().unwrap();
        assert_eq!(
            stored.snapshot_changes + stored.log_changes,
            live.counters.snapshot_changes + live.counters.log_changes
        );
        assert_eq!(stored.next_seq, live.counters.next_seq);
        live.compact().unwrap();
        let stored = ws.replica().load_document(id.as_bytes()).unwrap().unwrap();
        assert!(stored.changes.is_empty());
        drop(live);
        drop(ws);
        assert_eq!(stored_text(dir.path(), &doc), expected);
    }
}
