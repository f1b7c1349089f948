//! Group commit: many small batches, one fsync.
//!
//! The node applies keystrokes on one thread and must not wait for an fsync
//! per keystroke. It submits batches here (a push under a mutex); one writer
//! thread takes *everything* queued, merges it in submission order into one
//! write transaction, commits it durably, then marks those tickets durable.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::batch::WriteBatch;
use crate::error::StoreError;
use crate::replica::Replica;

/// Pending bytes above which `submit` blocks, so memory stays bounded when
/// the disk is slower than the editor.
pub const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// Names a submitted batch; tickets increase by one per `submit`, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's number, comparable with [`CommitQueue::durable_ticket`].
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A group-commit queue over a [`Replica`], with one writer thread.
///
/// Ordering: batches are applied strictly in submission order, so a `compact`
/// submitted after some appends deletes exactly those appends.
///
/// Failure: if a commit fails, its tickets and every later one report an error
/// and nothing after it is written, so no acknowledgement ever follows a lost write.
///
/// Dropping (or [`close`](CommitQueue::close)) drains everything submitted and
/// joins the writer: a clean shutdown loses nothing.
pub struct CommitQueue {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: work arrived, or the queue is closing.
    work: Condvar,
    /// Wakes waiters and blocked submitters: a group was taken or finished.
    progress: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<WriteBatch>,
    pending_bytes: usize,
    last_submitted: u64,
    durable: u64,
    failure: Option<Failure>,
    closing: bool,
    writer_exited: bool,
    /// The writer is blocked on `work`: only then does `submit` need to wake it
    /// (a futex wake per keystroke is measurable while the writer is busy anyway).
    writer_idle: bool,
}

/// The first failed commit; every ticket from `first_ticket` on fails.
struct Failure {
    first_ticket: u64,
    message: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic point, so recover it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }
}

impl CommitQueue {
    pub(crate) fn start(replica: Arc<Replica>) -> CommitQueue {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("accord-store-commit".to_owned())
            .spawn(move || run_writer(&for_writer, &replica));
        match writer {
            Ok(handle) => CommitQueue {
                shared,
                writer: Some(handle),
            },
            Err(err) => {
                fail_now(&shared, format!("could not start the commit thread: {err}"));
                CommitQueue {
                    shared,
                    writer: None,
                }
            }
        }
    }

    /// Queues `batch` and returns at once (blocking only while more than
    /// [`MAX_PENDING_BYTES`] are waiting to be written).
    pub fn submit(&self, batch: WriteBatch) -> Ticket {
        let size = batch.approx_bytes();
        let mut st = self.shared.lock();
        while st.failure.is_none()
            && !st.writer_exited
            && !st.pending.is_empty()
            && st.pending_bytes.saturating_add(size) > MAX_PENDING_BYTES
        {
            st = self.shared.wait(&self.shared.progress, st);
        }
        st.last_submitted += 1;
        let ticket = Ticket(st.last_submitted);
        // After a failure nothing more is written; the ticket will report the error.
        if st.failure.is_none() {
            st.pending.push(batch);
            st.pending_bytes = st.pending_bytes.saturating_add(size);
            if st.writer_idle {
                self.shared.work.notify_one();
            }
        }
        ticket
    }

    /// The ticket the next [`submit`](CommitQueue::submit) will return.
    ///
    /// Exact only while one thread submits to this queue (e.g. a live
    /// document that owns its queue and names a keystroke by the group that
    /// will carry it before submitting that group).
    pub fn next_ticket(&self) -> Ticket {
        Ticket(self.shared.lock().last_submitted + 1)
    }

    /// Blocks until `ticket`'s batch is on disk, or returns why it never will be.
    pub fn wait(&self, ticket: Ticket) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(outcome) = outcome(&st, ticket.0) {
                return outcome;
            }
            st = self.shared.wait(&self.shared.progress, st);
        }
    }

    /// Blocks until everything submitted so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        let last = self.shared.lock().last_submitted;
        self.wait(Ticket(last))
    }

    /// The highest ticket known to be durable (0 before the first commit).
    pub fn durable_ticket(&self) -> u64 {
        self.shared.lock().durable
    }

    /// Drains the queue, stops the writer, and reports whether everything submitted was saved.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown();
        self.flush()
    }

    fn shutdown(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("the commit thread panicked; unsaved changes were reported as failed");
        }
    }
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for CommitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("CommitQueue")
            .field("last_submitted", &st.last_submitted)
            .field("durable", &st.durable)
            .field("failed", &st.failure.is_some())
            .finish()
    }
}

/// `Some` once `ticket`'s fate is known.
fn outcome(st: &State, ticket: u64) -> Option<Result<(), StoreError>> {
    if ticket <= st.durable {
        return Some(Ok(()));
    }
    if let Some(failure) = &st.failure
        && ticket >= failure.first_ticket
    {
        return Some(Err(StoreError::CommitFailed(format!(
            "change #{ticket} was not saved because an earlier group commit (from #{}) failed: {}",
            failure.first_ticket, failure.message
        ))));
    }
    if ticket > st.last_submitted {
        return Some(Err(StoreError::Database(format!(
            "ticket #{ticket} was not issued by this commit queue"
        ))));
    }
    if st.writer_exited {
        return Some(Err(StoreError::QueueClosed));
    }
    None
}

/// Records a failure that covers every ticket not yet durable.
fn fail_now(shared: &Shared, message: String) {
    let mut st = shared.lock();
    record_failure(&mut st, message);
    shared.progress.notify_all();
}

fn record_failure(st: &mut State, message: String) {
    if st.failure.is_none() {
        st.failure = Some(Failure {
            first_ticket: st.durable + 1,
            message,
        });
    }
    st.pending.clear();
    st.pending_bytes = 0;
}

fn run_writer(shared: &Shared, replica: &Replica) {
    let _exit = ExitGuard(shared);
    while let Some((batch, last)) = take_group(shared) {
        let result = replica.commit(batch);
        let mut st = shared.lock();
        match result {
            Ok(()) => st.durable = last,
            Err(err) => {
                tracing::error!(%err, "group commit failed; later changes will not be saved");
                record_failure(&mut st, err.to_string());
            }
        }
        shared.progress.notify_all();
    }
}

/// Waits for work and takes all of it, merged in submission order, with the
/// last ticket it covers. `None` when closing and drained.
fn take_group(shared: &Shared) -> Option<(WriteBatch, u64)> {
    let mut st = shared.lock();
    while st.pending.is_empty() {
        if st.closing {
            return None;
        }
        st.writer_idle = true;
        st = shared.wait(&shared.work, st);
        st.writer_idle = false;
    }
    let batches = std::mem::take(&mut st.pending);
    st.pending_bytes = 0;
    let last = st.last_submitted;
    drop(st);
    shared.progress.notify_all();
    let mut merged = WriteBatch::new();
    for batch in batches {
        merged.extend(batch);
    }
    Some((merged, last))
}

/// Marks the writer gone however it exits, so no waiter blocks forever.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.writer_exited = true;
        if st.durable < st.last_submitted {
            record_failure(&mut st, "the commit thread stopped unexpectedly".to_owned());
        }
        self.0.progress.notify_all();
    }
}
