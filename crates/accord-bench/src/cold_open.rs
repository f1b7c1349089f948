//! `cold-open`: opening the compacted replica and reading the MOU text,
//! against `AutoCommit::load` of the raw document's `save()` plus reading
//! its text. "Cold" means a fresh handle in this process; the OS page cache
//! is warm for both (the same holds for the raw bytes, already in memory).

use std::path::Path;
use std::time::{Duration, Instant};

use accord_model::automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, Value};
use accord_model::{SectionContent, load_document};
use accord_store::Replica;
use accord_workspace::Workspace;
use anyhow::{Result, anyhow, ensure};
use serde_json::json;

use crate::Common;
use crate::persisted::Fixture;
use crate::replay::{ACCORD_FIELD, raw_text};
use crate::report::Report;
use crate::stats::{median, ms};
use crate::trace::Trace;

const BENCH: &str = "cold-open";

/// Name of the database file inside a data folder (accord-store's `DB_FILE`).
const DB_FILE: &str = "replica.redb";

pub fn run(trace: &Trace, opts: &Common, fixture: &Fixture, report: &mut Report) -> Result<()> {
    let runs = opts.runs.max(5);
    let dir = fixture.dir.path();
    let expected = trace.end_content.as_str();

    // One untimed pass of each, so first-touch effects (lazy statics, page faults) are excluded.
    raw_open(&fixture.raw_saved, expected)?;
    accord_open_text(dir, &fixture.doc, expected)?;

    let (mut raw, mut text, mut view, mut live, mut close) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Pairs (raw, Accord text read) alternate their order and run back to
    // back, so each pair sees the same machine; the ratio is taken per pair.
    let mut pair_ratios = Vec::new();
    for i in 0..runs {
        let mut steps: [u8; 4] = [0, 1, 2, 3];
        steps.rotate_left(i % 4);
        let (mut r, mut t) = (None, None);
        for step in steps {
            match step {
                0 => r = Some(raw_open(&fixture.raw_saved, expected)?),
                1 => {
                    let (open, closed) = accord_open_text(dir, &fixture.doc, expected)?;
                    t = Some(open);
                    close.push(closed);
                }
                2 => view.push(accord_open_view(dir, &fixture.doc, expected)?),
                _ => live.push(accord_open_live(dir, &fixture.doc, expected)?),
            }
        }
        let (r, t) = (r.expect("raw ran"), t.expect("text ran"));
        pair_ratios.push(t.as_secs_f64() / r.as_secs_f64());
        raw.push(r);
        text.push(t);
    }
    let (raw_m, text_m, view_m, live_m) =
        (median(&raw), median(&text), median(&view), median(&live));
    report.ratio(
        BENCH,
        &format!("open + read text (Workspace::open + load + text), median of {runs}"),
        "ms",
        ms(raw_m),
        ms(text_m),
        1.1,
    );
    report.context(
        BENCH,
        "open + view (all sections, what `accord doc show` does)",
        "ms",
        ms(raw_m),
        ms(view_m),
    );
    report.context(
        BENCH,
        "open + open_live + read text (what an editor does)",
        "ms",
        ms(raw_m),
        ms(live_m),
    );

    let breakdown = breakdown(dir, &fixture.doc, runs)?;
    for (name, value) in &breakdown.steps {
        report.context(
            BENCH,
            &format!("  part: {name}"),
            "ms",
            ms(raw_m),
            ms(*value),
        );
    }
    report.detail(
        BENCH,
        json!({
            "runs": runs,
            "raw_ms": raw.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "accord_text_ms": text.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "pair_ratios": pair_ratios,
            "accord_view_ms": view.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "accord_open_live_ms": live.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "accord_close_ms_median": ms(median(&close)),
            "raw_median_ms": ms(raw_m),
            "accord_text_median_ms": ms(text_m),
            "ratio": text_m.as_secs_f64() / raw_m.as_secs_f64(),
            "accord_view_median_ms": ms(view_m),
            "accord_open_live_median_ms": ms(live_m),
            "breakdown_median_ms": breakdown.steps.iter().map(|(k, v)| ((*k).to_owned(), json!(ms(*v)))).collect::<serde_json::Map<_, _>>(),
            "file_bytes": breakdown.file_bytes,
            "raw_save_bytes": fixture.raw_saved.len(),
            "accord_snapshot_bytes": breakdown.snapshot_bytes,
        }),
    );
    Ok(())
}

fn raw_open(saved: &[u8], expected: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let doc = AutoCommit::load(saved)?;
    let text = raw_text(&doc)?;
    let elapsed = t0.elapsed();
    ensure!(text == expected, "raw load produced the wrong text");
    Ok(elapsed)
}

/// `Workspace::open`, find the document, load it, read the `purpose` text:
/// the target's "open the replica and read the MOU text". Returns the open
/// time and, separately, the time to close.
fn accord_open_text(dir: &Path, doc: &str, expected: &str) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let ws = Workspace::open(dir)?;
    let id = ws.document(doc)?.id;
    let stored = ws
        .replica()
        .load_document(id.as_bytes())?
        .ok_or_else(|| anyhow!("document missing"))?;
    let loaded = load_document(&stored.snapshot, &stored.changes, ActorId::random())?;
    let text = match loaded.get(ROOT, ACCORD_FIELD)? {
        Some((Value::Object(ObjType::Text), obj)) => loaded.text(&obj)?,
        _ => return Err(anyhow!("the MOU has no {ACCORD_FIELD} text")),
    };
    let elapsed = t0.elapsed();
    ensure!(text == expected, "Accord text read produced the wrong text");
    let t1 = Instant::now();
    drop(ws);
    Ok((elapsed, t1.elapsed()))
}

/// `Workspace::open` + `view`: what `accord doc show` does.
fn accord_open_view(dir: &Path, doc: &str, expected: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let ws = Workspace::open(dir)?;
    let (view, _) = ws.view(doc)?;
    let text = purpose(&view.sections)?;
    let elapsed = t0.elapsed();
    ensure!(text == expected, "Accord view produced the wrong text");
    drop(ws);
    Ok(elapsed)
}

/// `Workspace::open` + `open_live` + reading the text: what an editor does.
fn accord_open_live(dir: &Path, doc: &str, expected: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let ws = Workspace::open(dir)?;
    let mut live = ws.open_live(doc)?;
    let obj = live.text_obj(ACCORD_FIELD)?;
    let text = live.agreement().doc().text(&obj)?;
    let elapsed = t0.elapsed();
    ensure!(text == expected, "Accord open_live produced the wrong text");
    drop(live);
    drop(ws);
    Ok(elapsed)
}

fn purpose(sections: &[accord_model::SectionView]) -> Result<&str> {
    sections
        .iter()
        .find_map(|s| match (&s.content, s.key == ACCORD_FIELD) {
            (SectionContent::Text(t), true) => Some(t.as_str()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("the MOU view has no {ACCORD_FIELD} text"))
}

pub struct Breakdown {
    pub steps: Vec<(&'static str, Duration)>,
    pub file_bytes: u64,
    pub snapshot_bytes: usize,
}

/// Where Accord's open time goes: each step timed on its own, median of `runs`.
fn breakdown(dir: &Path, doc: &str, runs: usize) -> Result<Breakdown> {
    let path = dir.join(DB_FILE);
    let file_bytes = std::fs::metadata(&path)?.len();
    let mut t: Vec<(&'static str, Vec<Duration>)> = [
        "Replica::open (no close)",
        "redb open, integrity check on (no close)",
        "redb open, integrity check off (no close; what Replica::open does)",
        "redb open_read_only (precheck)",
        "Workspace::documents (rosters)",
        "Replica::load_document (read)",
        "automerge load of Accord snapshot",
        "Workspace::view (all of it)",
        "raw load of Accord snapshot",
        "Replica drop (close)",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    let mut snapshot_bytes = 0;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<Duration> {
        let t0 = Instant::now();
        f()?;
        Ok(t0.elapsed())
    };
    for _ in 0..runs {
        // Opens are timed without the close; closes are timed on their own.
        let t0 = Instant::now();
        let replica = Replica::open(dir)?;
        t[0].1.push(t0.elapsed());
        let t0 = Instant::now();
        drop(replica);
        t[9].1.push(t0.elapsed());
        let t0 = Instant::now();
        let db = redb::Builder::new()
            .set_cache_size(64 << 20)
            .set_check_integrity_on_open(true)
            .open(&path)?;
        t[1].1.push(t0.elapsed());
        drop(db);
        let t0 = Instant::now();
        let db = redb::Builder::new().set_cache_size(64 << 20).open(&path)?;
        t[2].1.push(t0.elapsed());
        drop(db);
        t[3].1.push(time(&mut || {
            drop(
                redb::Builder::new()
                    .set_cache_size(64 << 20)
                    .open_read_only(&path)?,
            );
            Ok(())
        })?);
        let ws = Workspace::open(dir)?;
        t[4].1.push(time(&mut || {
            ws.documents(None)?;
            Ok(())
        })?);
        let key = *ws.document(doc)?.id.as_bytes();
        let mut stored = None;
        t[5].1.push(time(&mut || {
            stored = ws.replica().load_document(&key)?;
            Ok(())
        })?);
        let stored = stored.ok_or_else(|| anyhow!("document missing"))?;
        snapshot_bytes = stored.snapshot.len();
        t[6].1.push(time(&mut || {
            load_document(&stored.snapshot, &stored.changes, ActorId::random())?;
            Ok(())
        })?);
        t[7].1.push(time(&mut || {
            ws.view(doc)?;
            Ok(())
        })?);
        drop(ws);
        t[8].1.push(time(&mut || {
            AutoCommit::load(&stored.snapshot)?;
            Ok(())
        })?);
    }
    Ok(Breakdown {
        steps: t.into_iter().map(|(n, v)| (n, median(&v))).collect(),
        file_bytes,
        snapshot_bytes,
    })
}
