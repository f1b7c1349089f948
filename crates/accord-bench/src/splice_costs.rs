//! `splice-costs`: where Accord's per-keystroke time goes, rebuilt step by
//! step in memory on plain Automerge (no store, no queue), so each step's
//! cost is the difference to the previous one. Diagnostic, not a target.

use std::time::{Duration, Instant};

use accord_model::automerge::transaction::{CommitOptions, Transactable};
use accord_model::automerge::{AutoCommit, ObjType, ROOT};
use accord_workspace::CompactionPolicy;
use anyhow::{Result, anyhow};
use serde_json::json;

use crate::Common;
use crate::replay::{accord_replay, raw_replay};
use crate::report::Report;
use crate::stats::{Latency, median, ms, nanos};
use crate::trace::{Patch, Trace};

const BENCH: &str = "splice-costs";

/// One way of turning keystrokes into change bytes, rebuilt on plain Automerge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    /// `commit_with` a message and a time (`Agreement::commit` for one-shot edits).
    message: bool,
    /// How the change bytes are extracted.
    extract: Extract,
    /// `save()` whenever the compaction policy says so, like `LogCounters::record`.
    compaction: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extract {
    None,
    /// `get_last_local_change().raw_bytes().to_vec()` per keystroke (`document::commit`).
    LastChange,
    /// `save_after(heads of the previous group)` once per `n` keystrokes.
    SaveAfter(usize),
    /// `save_incremental()` once per `n` keystrokes.
    SaveIncremental(usize),
}

const fn step(message: bool, extract: Extract, compaction: bool) -> Step {
    Step {
        message,
        extract,
        compaction,
    }
}

/// The in-memory variants, in report order (each after "raw commit()").
const STEPS: [(&str, Step); 9] = [
    ("+ message & time", step(true, Extract::None, false)),
    (
        "+ get_last_local_change",
        step(true, Extract::LastChange, false),
    ),
    ("+ policy save()", step(true, Extract::LastChange, true)),
    (
        "time only + get_last_local_change",
        step(false, Extract::LastChange, false),
    ),
    (
        "time only + save_after every 8 keys",
        step(false, Extract::SaveAfter(8), false),
    ),
    (
        "time only + save_after every 32 keys",
        step(false, Extract::SaveAfter(32), false),
    ),
    (
        "time only + save_after every 256 keys",
        step(false, Extract::SaveAfter(256), false),
    ),
    (
        "time only + save_incremental every 32 keys",
        step(false, Extract::SaveIncremental(32), false),
    ),
    (
        "time only + save_after every 32 keys + policy save()",
        step(false, Extract::SaveAfter(32), true),
    ),
];

pub fn run(trace: &Trace, opts: &Common, report: &mut Report) -> Result<()> {
    let rounds = opts.rounds.max(1);
    let mut names = vec!["raw commit()"];
    names.extend(STEPS.iter().map(|(name, _)| *name));
    names.push("Accord LiveDocument::splice (splice loop)");
    names.push("raw commit() on a copy of Accord's MOU");
    let mut totals: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let mut lats: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    let mut saves = 0;
    for round in 0..rounds {
        // Rotate the order every round so no variant always runs on a warmer machine.
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.rotate_left(round % names.len());
        for i in order {
            let (total, lat) = match i {
                0 => {
                    let raw = raw_replay(&trace.patches)?;
                    (raw.total, raw.latencies)
                }
                i if i <= STEPS.len() => {
                    let (total, lat, n) = replay_step(&trace.patches, STEPS[i - 1].1)?;
                    saves = saves.max(n);
                    (total, lat)
                }
                i if i == STEPS.len() + 1 => {
                    let accord = accord_replay(&trace.patches)?;
                    (accord.splice_loop, accord.latencies)
                }
                _ => replay_on_mou(&trace.patches)?,
            };
            totals[i].push(total);
            lats[i].extend(lat);
        }
    }
    let base = median(&totals[0]);
    let base_mean = Latency::of(&mut lats[0].clone()).mean_us;
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let total = median(&totals[i]);
        let l = Latency::of(&mut lats[i]);
        report.context(
            BENCH,
            &format!("{name}: total (splice loop)"),
            "ms",
            ms(base),
            ms(total),
        );
        report.context(
            BENCH,
            &format!("{name}: mean per keystroke"),
            "us",
            base_mean,
            l.mean_us,
        );
        let all: Vec<f64> = totals[i].iter().map(|d| ms(*d)).collect();
        rows.push(json!({"step": name, "total_ms": ms(total), "rounds_ms": all, "latency_us": l}));
    }
    report.detail(
        BENCH,
        json!({"rounds": rounds, "policy_saves": saves, "steps": rows}),
    );
    Ok(())
}

fn replay_step(patches: &[Patch], step: Step) -> Result<(Duration, Vec<u64>, u64)> {
    let policy = CompactionPolicy::default();
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, "text", ObjType::Text)?;
    doc.commit();
    let mut group_heads = doc.get_heads();
    let (mut snapshot_changes, mut log_changes, mut saves) = (1u64, 0u64, 0u64);
    let mut latencies = Vec::with_capacity(patches.len());
    let start = Instant::now();
    for (i, p) in patches.iter().enumerate() {
        let t0 = Instant::now();
        doc.splice_text(&text, p.pos, p.del as isize, &p.ins)?;
        let options = CommitOptions::default().with_time(1_700_000_000);
        let options = if step.message {
            options.with_message("Typed".to_owned())
        } else {
            options
        };
        doc.commit_with(options);
        let group_end = match step.extract {
            Extract::None => false,
            Extract::LastChange => {
                let change = doc
                    .get_last_local_change()
                    .ok_or_else(|| anyhow!("no local change"))?;
                std::hint::black_box(change.raw_bytes().to_vec());
                true
            }
            Extract::SaveAfter(n) => {
                let end = i % n == n - 1;
                if end {
                    std::hint::black_box(doc.save_after(&group_heads));
                    group_heads = doc.get_heads();
                }
                end
            }
            Extract::SaveIncremental(n) => {
                let end = i % n == n - 1;
                if end {
                    std::hint::black_box(doc.save_incremental());
                }
                end
            }
        };
        log_changes += 1;
        if step.compaction && group_end && policy.should_compact(snapshot_changes, log_changes) {
            std::hint::black_box(doc.save());
            snapshot_changes += log_changes;
            log_changes = 0;
            saves += 1;
        }
        latencies.push(nanos(t0.elapsed()));
    }
    Ok((start.elapsed(), latencies, saves))
}

/// Plain `splice_text` + `commit()` on a fork of a freshly created MOU (the
/// document shape Accord types into), in memory: isolates the cost of the
/// document's shape and actor from everything else Accord does.
fn replay_on_mou(patches: &[Patch]) -> Result<(Duration, Vec<u64>)> {
    let mut session = crate::replay::AccordSession::start()?;
    let text = session.text.clone();
    let mut doc = session.live.agreement().doc().clone();
    drop(session.live.flush());
    let mut latencies = Vec::with_capacity(patches.len());
    let start = Instant::now();
    for p in patches {
        let t0 = Instant::now();
        doc.splice_text(&text, p.pos, p.del as isize, &p.ins)?;
        doc.commit();
        latencies.push(nanos(t0.elapsed()));
    }
    let total = start.elapsed();
    let _ = &mut session;
    Ok((total, latencies))
}
