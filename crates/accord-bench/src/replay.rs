//! The three ways of replaying a trace: raw Automerge in memory, Accord's
//! live document (group-committed to the replica), and the naive path
//! (raw Automerge plus one durable redb transaction per keystroke).

use std::time::{Duration, Instant};

use accord_model::DocKind;
use accord_model::automerge::{
    AutoCommit, ObjId, ObjType, ROOT, ReadDoc, Value, transaction::Transactable,
};
use accord_store::{DocInfo, Replica, WriteBatch};
use accord_workspace::{LiveDocument, Workspace};
use anyhow::{Context, Result, anyhow, ensure};
use tempfile::TempDir;

use crate::cpu::{process_cpu, thread_cpu, thread_wait};
use crate::stats::nanos;
use crate::trace::Patch;

/// Key of the text object in the raw documents.
pub const RAW_TEXT_KEY: &str = "text";
/// The agreement field the Accord path types into.
pub const ACCORD_FIELD: &str = "purpose";

/// Raw Automerge: one `splice_text` + `commit()` per patch, in memory.
pub struct RawRun {
    pub doc: AutoCommit,
    pub total: Duration,
    /// CPU time of the replaying thread during `total`.
    pub cpu: Duration,
    /// Time the replaying thread waited for a CPU during `total`.
    pub wait: Duration,
    /// Per-patch time of `splice_text` + `commit`, in nanoseconds.
    pub latencies: Vec<u64>,
}

pub fn raw_replay(patches: &[Patch]) -> Result<RawRun> {
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, RAW_TEXT_KEY, ObjType::Text)?;
    doc.commit();
    let mut latencies = Vec::with_capacity(patches.len());
    let (cpu0, wait0) = (thread_cpu(), thread_wait());
    let start = Instant::now();
    for p in patches {
        let t0 = Instant::now();
        doc.splice_text(&text, p.pos, p.del as isize, &p.ins)?;
        doc.commit();
        latencies.push(nanos(t0.elapsed()));
    }
    let total = start.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    let wait = thread_wait().saturating_sub(wait0);
    Ok(RawRun {
        doc,
        total,
        cpu,
        wait,
        latencies,
    })
}

/// Reads the text of a raw document (as saved by [`raw_replay`]).
pub fn raw_text(doc: &AutoCommit) -> Result<String> {
    match doc.get(ROOT, RAW_TEXT_KEY)? {
        Some((Value::Object(ObjType::Text), obj)) => Ok(doc.text(&obj)?),
        _ => Err(anyhow!("the raw document has no text object")),
    }
}

/// A workspace with one partnership and one MOU, held open live.
pub struct AccordSession {
    pub dir: TempDir,
    pub ws: Workspace,
    pub live: LiveDocument,
    pub text: ObjId,
    /// The MOU's id, usable as a selector.
    pub doc: String,
    pub setup: Duration,
}

impl AccordSession {
    pub fn start() -> Result<AccordSession> {
        let dir = tempfile::Builder::new().prefix("accord-bench-").tempdir()?;
        let t0 = Instant::now();
        let ws = Workspace::init(dir.path(), "Bench Organisation")?;
        let partnership = ws.create_partnership("Bench Partnership")?;
        let doc = ws.create_document(&partnership.id.to_string(), DocKind::Mou, "Bench MOU")?;
        let doc = doc.id.to_string();
        let mut live = ws.open_live(&doc)?;
        let text = live.text_obj(ACCORD_FIELD)?;
        let setup = t0.elapsed();
        Ok(AccordSession {
            dir,
            ws,
            live,
            text,
            doc,
            setup,
        })
    }

    pub fn text(&self) -> Result<String> {
        Ok(self.live.agreement().doc().text(&self.text)?)
    }

    /// Folds the log into a snapshot, then closes everything (drains the
    /// queue, closes the database, releases the folder lock).
    pub fn compact_and_close(mut self) -> Result<(TempDir, String)> {
        self.live.compact().context("compacting")?;
        let AccordSession {
            dir, ws, live, doc, ..
        } = self;
        drop(live);
        drop(ws);
        Ok((dir, doc))
    }
}

/// Accord: `LiveDocument::splice` per patch, then `flush`.
pub struct AccordRun {
    pub session: AccordSession,
    /// From the first splice until `flush` returned (everything durable).
    pub total: Duration,
    /// Time spent inside the splice loop only.
    pub splice_loop: Duration,
    /// Time `flush` waited after the last splice.
    pub flush_tail: Duration,
    /// CPU time of the editing thread during `total`.
    pub cpu_main: Duration,
    /// Time the editing thread waited for a CPU during `total`.
    pub wait_main: Duration,
    /// CPU time of all threads (editing thread plus the commit writer) during `total`.
    pub cpu_all: Duration,
    /// Per-patch time of the `splice` call, in nanoseconds.
    pub latencies: Vec<u64>,
    /// The last ticket issued (= number of queued batches).
    pub tickets: u64,
}

pub fn accord_replay(patches: &[Patch]) -> Result<AccordRun> {
    let mut session = AccordSession::start()?;
    let mut latencies = Vec::with_capacity(patches.len());
    let mut tickets = 0;
    let (main0, all0, wait0) = (thread_cpu(), process_cpu(), thread_wait());
    let start = Instant::now();
    for p in patches {
        let t0 = Instant::now();
        let ticket = session
            .live
            .splice(&session.text, p.pos, p.del as isize, &p.ins)?;
        latencies.push(nanos(t0.elapsed()));
        if let Some(t) = ticket {
            tickets = t.get();
        }
    }
    let splice_loop = start.elapsed();
    session.live.flush().context("flushing the commit queue")?;
    let total = start.elapsed();
    let cpu_main = thread_cpu().saturating_sub(main0);
    let cpu_all = process_cpu().saturating_sub(all0);
    let wait_main = thread_wait().saturating_sub(wait0);
    Ok(AccordRun {
        session,
        total,
        splice_loop,
        flush_tail: total - splice_loop,
        cpu_main,
        wait_main,
        cpu_all,
        latencies,
        tickets,
    })
}

/// Naive: raw Automerge plus `Replica::commit` of one `append_changes` per
/// patch (one fsync per keystroke), over the first `limit` patches.
pub struct NaiveRun {
    pub measured: usize,
    pub total: Duration,
    pub latencies: Vec<u64>,
}

pub fn naive_replay(patches: &[Patch], expected: &str) -> Result<NaiveRun> {
    let dir = tempfile::Builder::new()
        .prefix("accord-bench-naive-")
        .tempdir()?;
    let replica = Replica::create(dir.path(), "Naive", [7; 32], 0)?;
    let id = [1u8; 16];
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, RAW_TEXT_KEY, ObjType::Text)?;
    doc.commit();
    let mut batch = WriteBatch::new();
    let info = DocInfo {
        partnership: id,
        kind: "bench".to_owned(),
        title: "naive".to_owned(),
    };
    batch.put_document(id, info, doc.save(), 1);
    replica.commit(batch)?;
    let mut latencies = Vec::with_capacity(patches.len());
    let start = Instant::now();
    for p in patches {
        let t0 = Instant::now();
        doc.splice_text(&text, p.pos, p.del as isize, &p.ins)?;
        doc.commit();
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| anyhow!("no local change"))?;
        let mut batch = WriteBatch::new();
        batch.append_changes(id, change.raw_bytes().to_vec(), 1);
        replica.commit(batch)?;
        latencies.push(nanos(t0.elapsed()));
    }
    let total = start.elapsed();
    ensure!(
        doc.text(&text)? == expected,
        "naive replay produced the wrong text"
    );
    let stored = replica
        .load_document(&id)?
        .ok_or_else(|| anyhow!("naive document missing"))?;
    ensure!(
        stored.changes.len() == patches.len(),
        "naive log holds {} entries",
        stored.changes.len()
    );
    Ok(NaiveRun {
        measured: patches.len(),
        total,
        latencies,
    })
}
