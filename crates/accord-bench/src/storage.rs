//! `storage`: the replica file after compaction against `AutoCommit::save()`
//! of the same trace.

use accord_model::automerge::AutoCommit;
use accord_store::Replica;
use anyhow::Result;
use serde_json::json;

use crate::persisted::Fixture;
use crate::report::Report;

const BENCH: &str = "storage";

pub fn run(fixture: &Fixture, report: &mut Report) -> Result<()> {
    let raw = fixture.raw_saved.len() as f64;
    let mut replica = Replica::open(fixture.dir.path())?;
    let before = replica.file_size()?;
    replica.compact_file()?;
    let after = replica.file_size()?;

    // What the file holds that a person cares about: every document's
    // snapshot and log, plus its description.
    let mut payload = 0u64;
    let mut docs = Vec::new();
    let mut mou_snapshot = 0usize;
    for (key, info) in replica.documents()? {
        if let Some(stored) = replica.load_document(&key)? {
            let log: usize = stored.changes.iter().map(Vec::len).sum();
            payload += (stored.snapshot.len() + log) as u64;
            if info.kind != "roster" {
                mou_snapshot = stored.snapshot.len();
                // The same document saved by plain Automerge (checks it is a normal save).
                let resaved = AutoCommit::load(&stored.snapshot)?.save().len();
                docs.push(json!({"kind": info.kind, "snapshot_bytes": stored.snapshot.len(), "log_bytes": log, "resaved_bytes": resaved}));
            } else {
                docs.push(json!({"kind": info.kind, "snapshot_bytes": stored.snapshot.len(), "log_bytes": log}));
            }
        }
    }
    drop(replica);

    // The floor: a replica with no documents at all, compacted the same way.
    let empty_dir = tempfile::Builder::new()
        .prefix("accord-bench-empty-")
        .tempdir()?;
    let mut empty = Replica::create(empty_dir.path(), "Empty", [9; 32], 0)?;
    empty.compact_file()?;
    let floor = empty.file_size()?;
    drop(empty);

    report.ratio(
        BENCH,
        "replica file after compact_file",
        "KiB",
        raw / 1024.0,
        after as f64 / 1024.0,
        1.5,
    );
    report.context(
        BENCH,
        "replica file before compact_file",
        "KiB",
        raw / 1024.0,
        before as f64 / 1024.0,
    );
    report.context(
        BENCH,
        "MOU snapshot (Accord's Automerge save)",
        "KiB",
        raw / 1024.0,
        mou_snapshot as f64 / 1024.0,
    );
    report.context(
        BENCH,
        "all stored values (snapshots + logs)",
        "KiB",
        raw / 1024.0,
        payload as f64 / 1024.0,
    );
    report.context(
        BENCH,
        "empty replica after compact_file (floor)",
        "KiB",
        raw / 1024.0,
        floor as f64 / 1024.0,
    );
    report.detail(
        BENCH,
        json!({
            "raw_save_bytes": fixture.raw_saved.len(),
            "file_bytes_before_compact_file": before,
            "file_bytes_after_compact_file": after,
            "payload_bytes": payload,
            "empty_replica_bytes": floor,
            "redb_overhead_bytes": after.saturating_sub(payload),
            "documents": docs,
            "ratio": after as f64 / raw,
        }),
    );
    Ok(())
}
