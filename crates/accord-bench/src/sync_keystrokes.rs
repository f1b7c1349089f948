//! `sync-keystrokes`: B types into a trace-sized MOU while A receives,
//! engine to engine, in real time: ten keystrokes a second, each its own
//! commit and sync message. A runs as a node does: with the node's
//! coalescing window (`accord_node::NODE_COALESCE_WINDOW_MS`), ticked at
//! the deadline its engine reports, so it applies each window's keystrokes
//! in one call and answers once.
//!
//! Per keystroke, timed: from B's local commit (`Input::LocalChange`) to
//! A's `Append` of the change (its durable point in the replica). That
//! time includes the wait in A's window, by design; it is also reported
//! without the wait (B's send plus A's receive, then A's tick to the
//! `Append`). Against raw Automerge applying the same batch of changes that
//! A applied in one call (`load_incremental` of the concatenated change
//! bytes) to a copy of the same document, right after A's apply, so both
//! see the same machine. Also: A's whole engine time over the typing time,
//! and A's longest single engine call.

use std::thread::sleep;
use std::time::{Duration, Instant};

use accord_model::automerge::transaction::{CommitOptions, Transactable};
use accord_model::automerge::{AutoCommit, ChangeHash, ReadDoc};
use accord_model::trust::claim;
use accord_sync::Input;
use anyhow::{Context, Result, ensure};

use crate::stats::{Latency, nanos};
use crate::sync_clone::{Fixture, fixture, peer_a, peer_b};
use crate::sync_net::{Net, SEED_B, purpose_obj, purpose_text};
use crate::trace::Trace;

/// The typist's pace: keystrokes a second.
const KEYS_PER_SECOND: f64 = 10.0;

/// One run's measurements (latencies in nanoseconds).
pub(crate) struct Run {
    /// Per keystroke, B's commit to A's `Append`, window included.
    pub end_to_end: Vec<u64>,
    /// The same without the wait in A's window.
    pub minus_window: Vec<u64>,
    /// Its two parts: B's commit until A held it or began applying it
    /// (B's engine, the wire and A's receipt), and the start of A's
    /// applying call to its `Append`.
    pub sender: Vec<u64>,
    pub receiver: Vec<u64>,
    /// Per batch A applied: raw `load_incremental` of the same changes.
    pub raw_apply: Vec<u64>,
    /// Keystrokes per batch A applied.
    pub batch_sizes: Vec<usize>,
    pub receiver_busy: Duration,
    pub longest_call: Duration,
}

/// An editor on its organisation's copy of the MOU, typing mid-text, and
/// what it has sent so far.
pub(crate) struct Typist {
    pub(crate) doc: AutoCommit,
    sent: Vec<ChangeHash>,
    claim: String,
    at: usize,
}

impl Typist {
    /// Types as the organisation of `seed`.
    pub(crate) fn new(
        doc: AutoCommit,
        roster_heads: &[ChangeHash],
        seed: [u8; 32],
    ) -> Result<Self> {
        let actor =
            accord_model::new_document_actor(&accord_identity::OrgSecret::from_seed(seed), [9; 8]);
        let mut doc = doc.with_actor(actor);
        let sent = doc.get_heads();
        let purpose = purpose_obj(&doc)?;
        let at = doc.length(&purpose) / 2;
        Ok(Self {
            doc,
            sent,
            claim: claim::with_claim("", roster_heads),
            at,
        })
    }

    /// Types one character mid-document; returns the change and new heads.
    pub(crate) fn key(&mut self, n: usize) -> Result<(Vec<u8>, Vec<ChangeHash>)> {
        let purpose = purpose_obj(&self.doc)?;
        let ch = char::from(b'a' + (n % 26) as u8).to_string();
        self.doc.splice_text(&purpose, self.at, 0, &ch)?;
        self.at += 1;
        self.doc
            .commit_with(CommitOptions::default().with_message(self.claim.clone()));
        let change = self.doc.save_after(&self.sent);
        self.sent = self.doc.get_heads();
        Ok((change, self.sent.clone()))
    }
}

/// A keystroke A holds: when B committed it, when A had received it, its change.
struct InFlight {
    typed: Instant,
    received: Instant,
    change: Vec<u8>,
}

/// The two engines, B's editor, raw's copy, and the keystrokes A holds.
struct Session<'f> {
    f: &'f Fixture,
    net: Net,
    typist: Typist,
    raw: AutoCommit,
    held: Vec<InFlight>,
    run: Run,
}

/// B types `keystrokes` keys, one every `pace`, to A whose window is `window_ms`.
pub(crate) fn run_once(
    f: &Fixture,
    keystrokes: usize,
    window_ms: u64,
    pace: Duration,
) -> Result<Run> {
    let mut s = Session::new(f, window_ms)?;
    // One keystroke first, untimed: A loads its stored MOU on demand (once,
    // about as long as `AutoCommit::load`).
    s.keystroke(0)?;
    s.serve_deadlines(None)?;
    s.run = Run::default();
    let busy_before = s.net.peers[0].busy;
    s.net.peers[0].longest_call = Duration::ZERO;
    let start = Instant::now();
    for n in 1..=keystrokes {
        let due = start + pace * n as u32;
        s.serve_deadlines(Some(due))?;
        sleep(due.saturating_duration_since(Instant::now()));
        s.keystroke(n)?;
    }
    s.serve_deadlines(None)?;
    s.run.receiver_busy = s.net.peers[0].busy - busy_before;
    s.run.longest_call = s.net.peers[0].longest_call;
    let a_text = purpose_text(&s.net.peers[0].store.load(f.mou)?)?;
    ensure!(
        a_text == purpose_text(&s.typist.doc)?,
        "A's MOU differs from B's after typing"
    );
    ensure!(
        s.run.end_to_end.len() == keystrokes,
        "A stored {} of {keystrokes} keystrokes",
        s.run.end_to_end.len()
    );
    Ok(s.run)
}

impl Default for Run {
    fn default() -> Self {
        Self {
            end_to_end: Vec::new(),
            minus_window: Vec::new(),
            sender: Vec::new(),
            receiver: Vec::new(),
            raw_apply: Vec::new(),
            batch_sizes: Vec::new(),
            receiver_busy: Duration::ZERO,
            longest_call: Duration::ZERO,
        }
    }
}

impl<'f> Session<'f> {
    fn new(f: &'f Fixture, window_ms: u64) -> Result<Self> {
        let mut a = peer_a(f);
        a.coalesce_window_ms = window_ms;
        a.epoch = Some(Instant::now());
        a.restart();
        let mut net = Net::new(vec![a, peer_b(f)]);
        net.connect(1, 0);
        net.pump();
        let roster_heads = net.peers[1].store.load(f.p.roster_doc())?.get_heads();
        let typist = Typist::new(net.peers[1].store.load(f.mou)?, &roster_heads, SEED_B)?;
        Ok(Self {
            f,
            net,
            typist,
            raw: f.mou_doc.clone(),
            held: Vec::new(),
            run: Run::default(),
        })
    }

    /// B types key `n` and it travels to A (which holds it, or applies it
    /// at once without a window).
    fn keystroke(&mut self, n: usize) -> Result<()> {
        let (change, heads) = self.typist.key(n)?;
        let attestation = self.net.peers[1]
            .store
            .append_local(self.f.mou, change.clone(), &heads);
        self.net.peers[0].store.appended_at = None;
        let typed = Instant::now();
        self.net.input(
            1,
            Input::LocalChange {
                doc: self.f.mou,
                change: change.clone(),
                attestation,
            },
        );
        self.net.pump();
        self.held.push(InFlight {
            typed,
            received: Instant::now(),
            change,
        });
        // B's driver flushes after each command, as a node's does: B's copy
        // applies the keystroke it sent ahead (on B's machine, after A has it).
        self.net.input(1, Input::Flush);
        self.net.pump();
        self.settle()
    }

    /// Ticks A at each deadline its engine reports, up to `until` (or
    /// until it holds nothing), sleeping in between as its driver does.
    fn serve_deadlines(&mut self, until: Option<Instant>) -> Result<()> {
        while let Some(deadline) = self.net.peers[0].engine.next_deadline() {
            let epoch = self.net.peers[0].epoch.context("A runs on a clock")?;
            let at = epoch + Duration::from_millis(deadline);
            if until.is_some_and(|until| at > until) {
                break;
            }
            sleep(at.saturating_duration_since(Instant::now()));
            self.net.peers[0].store.appended_at = None;
            self.net.input(0, Input::Tick);
            self.net.pump();
            self.settle()?;
        }
        Ok(())
    }

    /// If A has just stored the keystrokes it held, records their times
    /// and raw's apply of the same batch. The wait in the window ends when
    /// the engine call that applied them started: at A's deadline, or (in
    /// this one-thread harness) later, after B's work on a keystroke that
    /// crossed the deadline, when A's `Flush` applies what is due.
    fn settle(&mut self) -> Result<()> {
        let Some(durable) = self.net.peers[0].store.appended_at else {
            return Ok(());
        };
        let applying = self.net.peers[0]
            .append_call_started
            .context("an Append comes from an engine call")?;
        let batch = std::mem::take(&mut self.held);
        let bytes: Vec<u8> = batch.iter().flat_map(|k| k.change.clone()).collect();
        let start = Instant::now();
        self.raw.load_incremental(&bytes)?;
        self.run.raw_apply.push(nanos(start.elapsed()));
        self.run.batch_sizes.push(batch.len());
        for k in batch {
            let waited = applying.saturating_duration_since(k.received);
            let r = &mut self.run;
            r.end_to_end.push(nanos(durable - k.typed));
            r.minus_window.push(nanos(durable - k.typed - waited));
            r.sender.push(nanos(k.received.min(applying) - k.typed));
            r.receiver.push(nanos(durable - applying));
        }
        Ok(())
    }
}

pub fn run(trace: &Trace, keystrokes: usize, rounds: usize, window: u64) -> Result<()> {
    eprintln!("building the fixture (one change per patch)...");
    let f = fixture(trace)?;
    let mut rounds_out = Vec::new();
    for round in 0..rounds.max(1) {
        let pace = Duration::from_secs_f64(1.0 / KEYS_PER_SECOND);
        let r = run_once(&f, keystrokes, window, pace)?;
        let summary = Summary::of(&r, keystrokes);
        eprintln!("round {}: {}", round + 1, summary.line());
        rounds_out.push(summary);
    }
    report(trace, keystrokes, window, &rounds_out);
    Ok(())
}

/// One round in figures.
struct Summary {
    e2e: Latency,
    minus_window: Latency,
    sender: Latency,
    receiver: Latency,
    raw: Latency,
    /// Keystrokes per apply, on average.
    per_batch: f64,
    busy_share: f64,
    longest: Duration,
}

impl Summary {
    fn of(r: &Run, keystrokes: usize) -> Self {
        let typed_for = keystrokes as f64 / KEYS_PER_SECOND;
        let latency = |v: &[u64]| Latency::of(&mut v.to_vec());
        Self {
            e2e: latency(&r.end_to_end),
            minus_window: latency(&r.minus_window),
            sender: latency(&r.sender),
            receiver: latency(&r.receiver),
            raw: latency(&r.raw_apply),
            per_batch: r.end_to_end.len() as f64 / r.batch_sizes.len().max(1) as f64,
            busy_share: r.receiver_busy.as_secs_f64() / typed_for,
            longest: r.longest_call,
        }
    }

    fn line(&self) -> String {
        format!(
            "end to end p50 {:.1} ms p99 {:.1} ms (window included); without the wait p50 {:.1} ms p99 {:.1} ms (B to A holding it p99 {:.1} ms, A's applying call to durable p99 {:.1} ms); raw apply of the same batches p50 {:.1} ms p99 {:.1} ms ({:.2}x at p99 without the wait); {:.1} keystrokes per apply; receiver busy {:.1}% of a core; longest engine call {:.1} ms",
            self.e2e.p50_us / 1e3,
            self.e2e.p99_us / 1e3,
            self.minus_window.p50_us / 1e3,
            self.minus_window.p99_us / 1e3,
            self.sender.p99_us / 1e3,
            self.receiver.p99_us / 1e3,
            self.raw.p50_us / 1e3,
            self.raw.p99_us / 1e3,
            self.ratio(),
            self.per_batch,
            self.busy_share * 100.0,
            self.longest.as_secs_f64() * 1e3,
        )
    }

    /// End to end without the wait, over raw's apply of the batch, at p99.
    fn ratio(&self) -> f64 {
        self.minus_window.p99_us / self.raw.p99_us
    }
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(trace: &Trace, keystrokes: usize, window: u64, rounds: &[Summary]) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let ratio = median(rounds.iter().map(Summary::ratio));
    let at_p50 = median(rounds.iter().map(|r| r.minus_window.p50_us / r.raw.p50_us));
    let with_window = median(rounds.iter().map(|r| r.e2e.p99_us / r.raw.p99_us));
    let e2e_p99 = median(rounds.iter().map(|r| r.e2e.p99_us / 1e3));
    let receiver = median(rounds.iter().map(|r| r.receiver.p99_us / r.raw.p99_us));
    let sender = median(rounds.iter().map(|r| r.sender.p99_us / 1e3));
    let share = median(rounds.iter().map(|r| r.busy_share));
    let worst = rounds.iter().map(|r| r.longest).max().unwrap_or_default();
    println!(
        "sync-keystrokes {}: {keystrokes} keystrokes at {KEYS_PER_SECOND} keys/s, A's window {window} ms, {} rounds (medians)",
        trace.name,
        rounds.len()
    );
    println!(
        "  end to end p99 without the wait in the window / raw apply p99 of the same batches: {ratio:.2}x, target <= 1.2x: {} (at p50: {at_p50:.2}x; raw's p99 is noisy on a shared machine)",
        verdict(ratio <= 1.2)
    );
    println!(
        "  of which A's applying call to durable p99 / raw apply p99: {receiver:.2}x; B's commit to A holding it p99: {sender:.1} ms (B sends each keystroke ahead of its own copy's apply)"
    );
    println!(
        "  end to end p99 with the wait: {e2e_p99:.1} ms ({with_window:.2}x raw; the window is {window} ms by design)"
    );
    println!(
        "  receiver busy: {:.1}% of a core, target < 15%: {}",
        share * 100.0,
        verdict(share < 0.15)
    );
    println!(
        "  longest single engine call: {:.1} ms, target <= 50 ms: {} (the engine runs on its own thread, not the async runtime)",
        worst.as_secs_f64() * 1e3,
        verdict(worst <= Duration::from_millis(50))
    );
}
