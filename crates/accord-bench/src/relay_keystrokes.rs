//! `relay-keystrokes`: a writer types into a trace-sized MOU through a
//! relay to a subscriber, engine to engine in one process, and the relay's
//! engine is timed per keystroke.
//!
//! What a subscriber waits for at the relay is the relay's time from the
//! writer's frames to the frame that forwards the keystroke: the relay
//! judges the change (one ed25519 check of the writer's attestation) and
//! forwards it before its own copy applies it. The apply, which grows with
//! the document's history (~35 ms per call on the automerge-paper
//! document), follows at the relay's next input, with its answers and its
//! writes. Both are reported against raw Automerge applying the same
//! change to a copy of the same document (`load_incremental`), in the same
//! run: the relay's part before the forward should be a small fraction of
//! one raw apply, whatever the document's size.

use std::time::{Duration, Instant};

use accord_model::automerge::AutoCommit;
use accord_sync::{Input, PeerRole};
use anyhow::{Context, Result, ensure};

use crate::stats::{Latency, nanos};
use crate::sync_clone::{Fixture, fixture, peer_a, peer_b};
use crate::sync_keystrokes::Typist;
use crate::sync_net::{Net, Peer, SEED_A, SEED_RELAY, purpose_text};
use crate::trace::Trace;

const WRITER: usize = 0;
const RELAY: usize = 1;
const SUBSCRIBER: usize = 2;

/// Keystrokes typed before timing: the relay loads the MOU on the first.
const WARM_UP: usize = 2;

/// Per keystroke, in nanoseconds.
#[derive(Default)]
pub(crate) struct Run {
    /// The relay's engine, from the writer's frames to the forward.
    pub to_forward: Vec<u64>,
    /// The relay's engine afterwards: its own apply, writes and answers.
    pub after_forward: Vec<u64>,
    /// Raw `load_incremental` of the same change into a copy of the document.
    pub raw_apply: Vec<u64>,
    /// Keystrokes the relay forwarded in the call that judged them.
    pub forwarded_at_once: usize,
    /// Of those, keystrokes the relay had stored by then (its copy applies
    /// a change before it stores it).
    pub applied_before_forward: usize,
}

/// The writer, the relay and the subscriber, the writer's editor, raw's copy.
struct Session<'f> {
    f: &'f Fixture,
    net: Net,
    typist: Typist,
    raw: AutoCommit,
}

impl<'f> Session<'f> {
    /// The writer uploads the MOU to the relay; the subscriber clones it.
    fn new(f: &'f Fixture) -> Result<Self> {
        let relay = Peer::new(SEED_RELAY, PeerRole::Relay, true);
        let mut net = Net::new(vec![peer_a(f), relay, peer_b(f)]);
        net.connect(WRITER, RELAY);
        net.pump();
        net.connect(SUBSCRIBER, RELAY);
        net.pump();
        let writer = &net.peers[WRITER].store;
        let roster_heads = writer.load(f.p.roster_doc())?.get_heads();
        let typist = Typist::new(writer.load(f.mou)?, &roster_heads, SEED_A)?;
        Ok(Self {
            f,
            net,
            typist,
            raw: f.mou_doc.clone(),
        })
    }

    /// The writer types key `n` (see [`Keystroke`]).
    fn keystroke(&mut self, n: usize) -> Result<Keystroke> {
        let (change, heads) = self.typist.key(n)?;
        let attestation =
            self.net.peers[WRITER]
                .store
                .append_local(self.f.mou, change.clone(), &heads);
        self.net.input(
            WRITER,
            Input::LocalChange {
                doc: self.f.mou,
                change: change.clone(),
                attestation,
            },
        );
        let relay_busy = self.net.peers[RELAY].busy;
        // The writer's frames reach the relay: one wave, then a flush.
        self.net.wave();
        let forwarded = self
            .net
            .queued_to(SUBSCRIBER)
            .any(|frame| carries(frame, &change));
        let stored = self.net.peers[RELAY]
            .store
            .docs
            .get(&self.f.mou)
            .is_some_and(|d| d.heads == heads);
        let first = self.net.peers[RELAY].busy - relay_busy;
        self.net.pump();
        self.net.serve_deadlines();
        let rest = self.net.peers[RELAY].busy - relay_busy - first;
        Ok(Keystroke {
            change,
            to_forward: forwarded.then_some(first),
            stored_by_forward: forwarded && stored,
            after_forward: rest,
        })
    }

    fn raw_apply(&mut self, change: &[u8]) -> Result<Duration> {
        let start = Instant::now();
        self.raw.load_incremental(change)?;
        Ok(start.elapsed())
    }
}

/// One keystroke through the relay.
struct Keystroke {
    change: Vec<u8>,
    /// The relay's engine time to forward it, if it was forwarded in the
    /// call that judged it.
    to_forward: Option<Duration>,
    /// Whether the relay had stored it (so applied it) by the forward.
    stored_by_forward: bool,
    /// The relay's engine time afterwards.
    after_forward: Duration,
}

/// Whether `frame` is a sync message carrying `change`.
fn carries(frame: &[u8], change: &[u8]) -> bool {
    let Ok(accord_sync::wire::Frame::Sync { message, .. }) =
        accord_sync::wire::Frame::decode(frame)
    else {
        return false;
    };
    accord_model::automerge::sync::Message::decode(&message)
        .is_ok_and(|m| m.changes.iter().any(|c| c == change))
}

/// Types `keystrokes` keys through the relay (after [`WARM_UP`] untimed ones).
pub(crate) fn run_once(f: &Fixture, keystrokes: usize) -> Result<Run> {
    let mut s = Session::new(f)?;
    let mut run = Run::default();
    for n in 0..WARM_UP + keystrokes {
        let k = s.keystroke(n)?;
        let raw = s.raw_apply(&k.change)?;
        if n < WARM_UP {
            continue;
        }
        run.after_forward.push(nanos(k.after_forward));
        run.raw_apply.push(nanos(raw));
        if let Some(t) = k.to_forward {
            run.forwarded_at_once += 1;
            run.to_forward.push(nanos(t));
        }
        run.applied_before_forward += usize::from(k.stored_by_forward);
    }
    let subscriber = purpose_text(&s.net.peers[SUBSCRIBER].store.load(f.mou)?)?;
    ensure!(
        subscriber == purpose_text(&s.typist.doc)?,
        "the subscriber's MOU differs from the writer's"
    );
    Ok(run)
}

pub fn run(trace: &Trace, keystrokes: usize, rounds: usize) -> Result<()> {
    eprintln!("building the fixture (one change per patch)...");
    let f = fixture(trace)?;
    let mut runs = Vec::new();
    for round in 0..rounds.max(1) {
        let r = run_once(&f, keystrokes).context("a round of relay keystrokes")?;
        eprintln!(
            "round {}: relay to forward p99 {:.2} ms, after p99 {:.1} ms, raw apply p99 {:.1} ms, forwarded at once {}/{keystrokes} (applied first: {})",
            round + 1,
            p99_ms(&r.to_forward),
            p99_ms(&r.after_forward),
            p99_ms(&r.raw_apply),
            r.forwarded_at_once,
            r.applied_before_forward,
        );
        runs.push(r);
    }
    report(trace, keystrokes, &runs);
    Ok(())
}

fn p99_ms(nanos: &[u64]) -> f64 {
    Latency::of(&mut nanos.to_vec()).p99_us / 1_000.0
}

fn p50_ms(nanos: &[u64]) -> f64 {
    Latency::of(&mut nanos.to_vec()).p50_us / 1_000.0
}

fn report(trace: &Trace, keystrokes: usize, runs: &[Run]) {
    println!(
        "relay-keystrokes {}: {keystrokes} keystrokes a round, {} rounds",
        trace.name,
        runs.len()
    );
    println!(
        "| round | relay to forward p50 / p99 | relay after the forward p50 / p99 | raw apply p50 / p99 | to forward / raw apply (p99) | forwarded at once | stored before the forward |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {:.2} / {:.2} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.3}x | {}/{keystrokes} | {} |",
            i + 1,
            p50_ms(&r.to_forward),
            p99_ms(&r.to_forward),
            p50_ms(&r.after_forward),
            p99_ms(&r.after_forward),
            p50_ms(&r.raw_apply),
            p99_ms(&r.raw_apply),
            p99_ms(&r.to_forward) / p99_ms(&r.raw_apply),
            r.forwarded_at_once,
            r.applied_before_forward,
        );
    }
}
