//! `persisted-replay`: every keystroke one change, raw in memory vs Accord
//! durable through the group-commit queue.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::json;
use tempfile::TempDir;

use crate::Common;
use crate::replay::{AccordRun, RawRun, accord_replay, naive_replay, raw_replay, raw_text};
use crate::report::Report;
use crate::stats::{Latency, median, ms};
use crate::trace::Trace;

const BENCH: &str = "persisted-replay";

/// A compacted, closed replica holding the replayed MOU, plus the raw
/// document's `save()` of the same trace: input to cold-open and storage.
pub struct Fixture {
    pub dir: TempDir,
    pub doc: String,
    pub raw_saved: Vec<u8>,
}

pub fn run(trace: &Trace, opts: &Common, report: &mut Report) -> Result<Fixture> {
    let rounds = opts.rounds.max(1);
    let mut raw_totals = Vec::new();
    let (mut raw_cpu, mut accord_cpu_main, mut accord_cpu_all) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut accord_totals = Vec::new();
    let (mut raw_wait, mut accord_wait) = (Vec::new(), Vec::new());
    let mut raw_lat = Vec::new();
    let mut accord_lat = Vec::new();
    let mut rounds_json = Vec::new();
    let mut raw_first_n = Duration::ZERO;
    let mut last: Option<(RawRun, AccordRun)> = None;
    for round in 0..rounds {
        // Alternate the order so neither variant always runs on a warmer machine.
        let (raw, accord) = if round % 2 == 0 {
            let raw = checked_raw(trace)?;
            (raw, checked_accord(trace)?)
        } else {
            let accord = checked_accord(trace)?;
            (checked_raw(trace)?, accord)
        };
        eprintln!(
            "round {}: raw {:.0} ms (cpu {:.0}, cpu wait {:.0}), accord {:.0} ms (splices {:.0} ms + flush {:.1} ms; cpu main {:.0}, all {:.0}, main's cpu wait {:.0}), ratio {:.2}",
            round + 1,
            ms(raw.total),
            ms(raw.cpu),
            ms(raw.wait),
            ms(accord.total),
            ms(accord.splice_loop),
            ms(accord.flush_tail),
            ms(accord.cpu_main),
            ms(accord.cpu_all),
            ms(accord.wait_main),
            accord.total.as_secs_f64() / raw.total.as_secs_f64()
        );
        rounds_json.push(json!({
            "raw_ms": ms(raw.total),
            "accord_ms": ms(accord.total),
            "accord_splice_loop_ms": ms(accord.splice_loop),
            "accord_flush_tail_ms": ms(accord.flush_tail),
            "accord_setup_ms": ms(accord.session.setup),
            "raw_cpu_ms": ms(raw.cpu),
            "raw_cpu_wait_ms": ms(raw.wait),
            "accord_cpu_wait_main_thread_ms": ms(accord.wait_main),
            "accord_cpu_main_thread_ms": ms(accord.cpu_main),
            "accord_cpu_all_threads_ms": ms(accord.cpu_all),
            "ratio": accord.total.as_secs_f64() / raw.total.as_secs_f64(),
        }));
        if round == 0 {
            let n = opts.naive_keystrokes.min(trace.patches.len());
            raw_first_n = Duration::from_nanos(raw.latencies[..n].iter().sum());
        }
        raw_totals.push(raw.total);
        raw_cpu.push(raw.cpu);
        raw_wait.push(raw.wait);
        accord_wait.push(accord.wait_main);
        accord_cpu_main.push(accord.cpu_main);
        accord_cpu_all.push(accord.cpu_all);
        accord_totals.push(accord.total);
        raw_lat.extend_from_slice(&raw.latencies);
        accord_lat.extend_from_slice(&accord.latencies);
        last = Some((raw, accord));
    }
    let (mut raw, accord) = last.expect("at least one round");
    let raw_total = median(&raw_totals);
    let accord_total = median(&accord_totals);
    let raw_l = Latency::of(&mut raw_lat);
    let accord_l = Latency::of(&mut accord_lat);

    report.ratio(
        BENCH,
        "total replay time (median of rounds)",
        "ms",
        ms(raw_total),
        ms(accord_total),
        1.5,
    );
    report.context(
        BENCH,
        "CPU time, editing thread (median)",
        "ms",
        ms(median(&raw_cpu)),
        ms(median(&accord_cpu_main)),
    );
    report.context(
        BENCH,
        "CPU time, all threads incl. writer (median)",
        "ms",
        ms(median(&raw_cpu)),
        ms(median(&accord_cpu_all)),
    );
    report.context(
        BENCH,
        "time the editing thread waited for a CPU (median)",
        "ms",
        ms(median(&raw_wait)),
        ms(median(&accord_wait)),
    );
    report.below(
        BENCH,
        "keystroke latency p99",
        "us",
        raw_l.p99_us,
        accord_l.p99_us,
        1000.0,
    );
    report.context(
        BENCH,
        "keystroke latency p50",
        "us",
        raw_l.p50_us,
        accord_l.p50_us,
    );
    report.context(
        BENCH,
        "keystroke latency p99.9",
        "us",
        raw_l.p999_us,
        accord_l.p999_us,
    );
    report.context(
        BENCH,
        "keystroke latency max",
        "us",
        raw_l.max_us,
        accord_l.max_us,
    );

    // Naive: too slow for the whole trace, so measure a prefix and extrapolate.
    let n = opts.naive_keystrokes.min(trace.patches.len());
    let mut naive_json = json!(null);
    if n > 0 {
        let naive = naive_replay(&trace.patches[..n], &trace.text_after(n))?;
        let per_key = naive.total.as_secs_f64() / n as f64;
        let extrapolated = Duration::from_secs_f64(per_key * trace.patches.len() as f64);
        let mut lat = naive.latencies.clone();
        let naive_l = Latency::of(&mut lat);
        report.context(
            BENCH,
            &format!("naive fsync/keystroke, first {n} keys (measured)"),
            "ms",
            ms(raw_first_n),
            ms(naive.total),
        );
        report.context(
            BENCH,
            &format!("naive total, EXTRAPOLATED from {n} keys"),
            "ms",
            ms(raw_total),
            ms(extrapolated),
        );
        report.context(
            BENCH,
            "naive keystroke latency p50",
            "us",
            raw_l.p50_us,
            naive_l.p50_us,
        );
        report.context(
            BENCH,
            "naive keystroke latency p99",
            "us",
            raw_l.p99_us,
            naive_l.p99_us,
        );
        naive_json = json!({
            "keystrokes_measured": naive.measured,
            "measured_ms": ms(naive.total),
            "raw_same_keystrokes_ms": ms(raw_first_n),
            "extrapolated_total_ms": ms(extrapolated),
            "extrapolated": true,
            "latency_us": naive_l,
        });
    }

    report.detail(
        BENCH,
        json!({
            "rounds": rounds_json,
            "raw_total_ms_median": ms(raw_total),
            "accord_total_ms_median": ms(accord_total),
            "ratio": accord_total.as_secs_f64() / raw_total.as_secs_f64(),
            "raw_latency_us": raw_l,
            "accord_latency_us": accord_l,
            "accord_groups_submitted_last_round": accord.tickets,
            "naive": naive_json,
        }),
    );

    let raw_saved = raw.doc.save();
    let (dir, doc) = accord.session.compact_and_close()?;
    Ok(Fixture {
        dir,
        doc,
        raw_saved,
    })
}

/// Builds the cold-open/storage input without timing anything.
pub fn build_fixture(trace: &Trace) -> Result<Fixture> {
    let mut raw = checked_raw(trace)?;
    let accord = checked_accord(trace)?;
    let raw_saved = raw.doc.save();
    let (dir, doc) = accord.session.compact_and_close()?;
    Ok(Fixture {
        dir,
        doc,
        raw_saved,
    })
}

fn checked_raw(trace: &Trace) -> Result<RawRun> {
    let raw = raw_replay(&trace.patches)?;
    ensure!(
        raw_text(&raw.doc)? == trace.end_content,
        "raw replay did not produce endContent"
    );
    Ok(raw)
}

fn checked_accord(trace: &Trace) -> Result<AccordRun> {
    let accord = accord_replay(&trace.patches)?;
    ensure!(
        accord.session.text()? == trace.end_content,
        "Accord replay did not produce endContent"
    );
    Ok(accord)
}
