//! `sync-keystrokes`: B types into a trace-sized MOU while A receives,
//! engine to engine, one keystroke at a time (ten a second is far slower
//! than either side's work, so nothing queues and nothing coalesces: each
//! keystroke is its own message, the worst case for the receiver).
//!
//! Per keystroke, timed: from B's local commit (`Input::LocalChange`) to
//! A's `Append` of the change (its durable point in the replica), and A's
//! whole engine time (receive, judge, apply, answer). Against raw Automerge
//! applying the same change bytes to a copy of the same document
//! (`load_incremental`), interleaved keystroke by keystroke so both see the
//! same machine.

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
    pub end_to_end: Vec<u64>,
    pub raw_apply: Vec<u64>,
    pub receiver_busy: Duration,
    pub longest_call: Duration,
}

/// B's editor on its clone of the MOU, and what B has sent so far.
struct Typist {
    doc: AutoCommit,
    sent: Vec<ChangeHash>,
    claim: String,
    at: usize,
}

impl Typist {
    fn new(doc: AutoCommit, roster_heads: &[ChangeHash]) -> Result<Self> {
        let actor = accord_model::new_document_actor(
            &accord_identity::OrgSecret::from_seed(SEED_B),
            [9; 8],
        );
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
    fn key(&mut self, n: usize) -> Result<(Vec<u8>, Vec<ChangeHash>)> {
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

pub(crate) fn run_once(f: &Fixture, keystrokes: usize) -> Result<Run> {
    let mut net = Net::new(vec![peer_a(f), peer_b(f)]);
    net.connect(1, 0);
    net.pump();
    let roster_heads = net.peers[1].store.load(f.p.roster_doc())?.get_heads();
    let mut typist = Typist::new(net.peers[1].store.load(f.mou)?, &roster_heads)?;
    let mut raw = f.mou_doc.clone();
    // One keystroke first, untimed: A loads its stored MOU on demand (once,
    // about as long as `AutoCommit::load`), and so does raw's copy here.
    warm_up(&mut net, f, &mut typist, &mut raw)?;
    let busy_before = net.peers[0].busy;
    net.peers[0].longest_call = Duration::ZERO;
    let mut run = Run {
        end_to_end: Vec::with_capacity(keystrokes),
        raw_apply: Vec::with_capacity(keystrokes),
        receiver_busy: Duration::ZERO,
        longest_call: Duration::ZERO,
    };
    for n in 1..=keystrokes {
        let (end_to_end, change) = keystroke(&mut net, f, &mut typist, n)?;
        run.end_to_end.push(nanos(end_to_end));
        let start = Instant::now();
        raw.load_incremental(&change)?;
        run.raw_apply.push(nanos(start.elapsed()));
    }
    run.receiver_busy = net.peers[0].busy - busy_before;
    run.longest_call = net.peers[0].longest_call;
    let a_text = purpose_text(&net.peers[0].store.load(f.mou)?)?;
    ensure!(
        a_text == purpose_text(&typist.doc)?,
        "A's MOU differs from B's after typing"
    );
    Ok(run)
}

fn warm_up(net: &mut Net, f: &Fixture, typist: &mut Typist, raw: &mut AutoCommit) -> Result<()> {
    let (_, change) = keystroke(net, f, typist, 0)?;
    raw.load_incremental(&change)?;
    Ok(())
}

/// B types key `n` and syncs it to A; returns the time from B's commit
/// notice to A's append, and the change.
fn keystroke(
    net: &mut Net,
    f: &Fixture,
    typist: &mut Typist,
    n: usize,
) -> Result<(Duration, Vec<u8>)> {
    let (change, heads) = typist.key(n)?;
    let attestation = net.peers[1]
        .store
        .append_local(f.mou, change.clone(), &heads);
    net.peers[0].store.appended_at = None;
    let start = Instant::now();
    net.input(
        1,
        Input::LocalChange {
            doc: f.mou,
            change: change.clone(),
            attestation,
        },
    );
    net.pump();
    let durable = net.peers[0]
        .store
        .appended_at
        .context("A never stored the keystroke")?;
    Ok((durable - start, change))
}

pub fn run(trace: &Trace, keystrokes: usize, rounds: usize) -> Result<()> {
    eprintln!("building the fixture (one change per patch)...");
    let f = fixture(trace)?;
    let (mut e2e, mut raw, mut cpu, mut longest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let r = run_once(&f, keystrokes)?;
        let typed_for = Duration::from_secs_f64(keystrokes as f64 / KEYS_PER_SECOND);
        let share = r.receiver_busy.as_secs_f64() / typed_for.as_secs_f64();
        let (mut a, mut b) = (r.end_to_end.clone(), r.raw_apply.clone());
        let (la, lb) = (Latency::of(&mut a), Latency::of(&mut b));
        eprintln!(
            "round {}: end to end p50 {:.2} ms p99 {:.2} ms; raw apply p50 {:.2} ms p99 {:.2} ms ({:.2}x at p99); receiver busy {:.1}% of a core at {KEYS_PER_SECOND} keys/s; longest engine call {:.1} ms",
            round + 1,
            la.p50_us / 1e3,
            la.p99_us / 1e3,
            lb.p50_us / 1e3,
            lb.p99_us / 1e3,
            la.p99_us / lb.p99_us,
            share * 100.0,
            r.longest_call.as_secs_f64() * 1e3,
        );
        e2e.push(la);
        raw.push(lb);
        cpu.push(share);
        longest.push(r.longest_call);
    }
    report(trace, keystrokes, &e2e, &raw, &cpu, &longest);
    Ok(())
}

fn report(
    trace: &Trace,
    keystrokes: usize,
    e2e: &[Latency],
    raw: &[Latency],
    cpu: &[f64],
    longest: &[Duration],
) {
    let ratios: Vec<f64> = e2e
        .iter()
        .zip(raw)
        .map(|(a, r)| a.p99_us / r.p99_us)
        .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let ratio = median(&ratios);
    let share = median(cpu);
    let worst = longest.iter().max().copied().unwrap_or_default();
    println!(
        "sync-keystrokes {}: {keystrokes} keystrokes at {KEYS_PER_SECOND} keys/s, {} rounds (medians)",
        trace.name,
        e2e.len()
    );
    println!(
        "  end to end p99 / raw apply p99: {ratio:.2}x, target <= 1.2x: {}",
        verdict(ratio <= 1.2)
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
