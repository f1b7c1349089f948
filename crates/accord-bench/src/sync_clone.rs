//! `sync-clone`: a trace-sized MOU cloned from A to an empty B, engine to
//! engine and through a relay, against raw `automerge::sync` of the same
//! document into an empty one.

use std::time::{Duration, Instant};

use accord_model::automerge::{AutoCommit, sync::State};
use accord_model::{DocId, PartnershipId};
use accord_sync::{Input, PeerRole};
use anyhow::{Result, ensure};

use crate::replay::{raw_replay, raw_text};
use crate::stats::ms;
use crate::sync_net::{
    Net, Peer, SEED_A, SEED_B, SEED_RELAY, Traffic, doc_id, fmt_spread, purpose_text, raw_sync,
    roster_with, spread, trace_mou,
};
use crate::trace::Trace;

/// What both sides start from: A's stored roster and MOU.
pub struct Fixture {
    pub(crate) p: PartnershipId,
    pub(crate) mou: DocId,
    roster_doc: AutoCommit,
    pub(crate) mou_doc: AutoCommit,
    raw: AutoCommit,
    pub raw_saved: usize,
    pub accord_saved: usize,
}

pub fn fixture(trace: &Trace) -> Result<Fixture> {
    let mou = doc_id(0);
    let roster = roster_with(&[mou])?;
    let agreement = trace_mou(&roster, mou, &trace.patches)?;
    let p = roster.id();
    let mut roster_doc = roster.doc().clone();
    let mut mou_doc = agreement.doc().clone();
    let mut raw = raw_replay(&trace.patches)?.doc;
    ensure!(raw_text(&raw)? == trace.end_content);
    ensure!(purpose_text(&mou_doc)? == trace.end_content);
    let raw_saved = raw.save().len();
    let accord_saved = mou_doc.save().len() + roster_doc.save().len();
    Ok(Fixture {
        p,
        mou,
        roster_doc,
        mou_doc,
        raw,
        raw_saved,
        accord_saved,
    })
}

pub(crate) fn peer_a(f: &Fixture) -> Peer {
    let mut a = Peer::new(SEED_A, PeerRole::Node, true);
    let mut roster = f.roster_doc.clone();
    let mut mou = f.mou_doc.clone();
    a.store.put(f.p.roster_doc(), f.p, "roster", &mut roster);
    a.store.put(f.mou, f.p, "mou", &mut mou);
    a.restart();
    a
}

pub(crate) fn peer_b(f: &Fixture) -> Peer {
    let mut b = Peer::new(SEED_B, PeerRole::Node, true);
    b.handle(Input::Want { partnership: f.p });
    b
}

pub struct Run {
    pub time: Duration,
    pub traffic: Traffic,
    /// Through the relay: the second hop alone (B cloning from a relay that
    /// already holds the document), which is what each member pays when it
    /// catches up; the first hop is paid once, whenever the writer is online.
    pub second_hop: Option<Duration>,
}

/// Engine to engine: A (holding the MOU) dials B (wanting the partnership).
pub fn direct(f: &Fixture, end: &str) -> Result<Run> {
    let mut net = Net::new(vec![peer_a(f), peer_b(f)]);
    let start = Instant::now();
    net.connect(1, 0);
    let traffic = net.pump();
    let time = start.elapsed();
    check(&net.peers[1], f, end)?;
    Ok(Run {
        time,
        traffic,
        second_hop: None,
    })
}

/// A dials the relay and syncs; then B dials the relay and syncs.
pub fn relay(f: &Fixture, end: &str) -> Result<Run> {
    let relay = Peer::new(SEED_RELAY, PeerRole::Relay, true);
    let mut net = Net::new(vec![peer_a(f), relay, peer_b(f)]);
    let start = Instant::now();
    net.connect(0, 1);
    net.pump();
    let second = Instant::now();
    net.connect(2, 1);
    let traffic = net.pump();
    let time = start.elapsed();
    let second_hop = Some(second.elapsed());
    check(&net.peers[2], f, end)?;
    Ok(Run {
        time,
        traffic: Traffic {
            bytes: net.traffic.bytes,
            frames: net.traffic.frames,
            waves: net.traffic.waves.max(traffic.waves),
        },
        second_hop,
    })
}

fn check(b: &Peer, f: &Fixture, end: &str) -> Result<()> {
    let doc = b.store.load(f.mou)?;
    ensure!(
        purpose_text(&doc)? == end,
        "B's MOU differs from endContent"
    );
    Ok(())
}

/// Raw: `automerge::sync` from the replayed document into an empty one.
pub fn raw(f: &mut Fixture, end: &str) -> Result<Run> {
    let mut b = AutoCommit::new();
    let (mut sa, mut sb) = (State::new(), State::new());
    let start = Instant::now();
    let traffic = raw_sync(&mut f.raw, &mut b, &mut sa, &mut sb)?;
    let time = start.elapsed();
    ensure!(raw_text(&b)? == end, "raw clone differs from endContent");
    Ok(Run {
        time,
        traffic,
        second_hop: None,
    })
}

pub fn run(trace: &Trace, rounds: usize) -> Result<()> {
    eprintln!("building the fixture (one change per patch)...");
    let mut f = fixture(trace)?;
    let end = trace.end_content.clone();
    // Context: what loading A's stored MOU costs (the engine loads it on demand).
    let load_start = Instant::now();
    let _ = AutoCommit::load(&f.mou_doc.save())?;
    let load_ms = ms(load_start.elapsed());
    let (mut rd, mut rr, mut r2) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for round in 0..rounds.max(1) {
        let order = round % 3;
        let mut raw_run = None;
        let mut direct_run = None;
        let mut relay_run = None;
        for k in 0..3 {
            match (order + k) % 3 {
                0 => raw_run = Some(raw(&mut f, &end)?),
                1 => direct_run = Some(direct(&f, &end)?),
                _ => relay_run = Some(relay(&f, &end)?),
            }
        }
        let (r, d, y) = (raw_run.unwrap(), direct_run.unwrap(), relay_run.unwrap());
        let (dr, yr) = (
            d.time.as_secs_f64() / r.time.as_secs_f64(),
            y.time.as_secs_f64() / r.time.as_secs_f64(),
        );
        eprintln!(
            "round {}: raw {:.0} ms / {} B / {} msgs; direct {:.0} ms / {} B / {} frames / {} waves ({dr:.2}x); relay {:.0} ms / {} B ({yr:.2}x)",
            round + 1,
            ms(r.time),
            r.traffic.bytes,
            r.traffic.frames,
            ms(d.time),
            d.traffic.bytes,
            d.traffic.frames,
            d.traffic.waves,
            ms(y.time),
            y.traffic.bytes,
        );
        rd.push(dr);
        rr.push(yr);
        if let Some(hop) = y.second_hop {
            r2.push(hop.as_secs_f64() / r.time.as_secs_f64());
        }
        last = Some((r, d, y));
    }
    let (r, d, y) = last.unwrap();
    let saved = f.raw_saved as f64;
    println!("sync-clone {}:", trace.name);
    println!(
        "  raw save() {} B; Accord MOU + roster save() {} B; A's MOU load alone {load_ms:.0} ms",
        f.raw_saved, f.accord_saved
    );
    println!(
        "  raw sync: {} B ({:.3}x save), {} messages",
        r.traffic.bytes,
        r.traffic.bytes as f64 / saved,
        r.traffic.frames
    );
    let pass = |v: f64, t: f64| if v <= t { "PASS" } else { "FAIL" };
    let (md, _, _) = spread(&rd);
    let (my, _, _) = spread(&rr);
    let bd = d.traffic.bytes as f64 / saved;
    let by = y.traffic.bytes as f64 / saved;
    println!(
        "  direct: time {} vs raw sync, target <= 1.2x: {}",
        fmt_spread(&rd, "x"),
        pass(md, 1.2)
    );
    println!(
        "  direct: bytes {} = {bd:.3}x raw save() ({:.3}x Accord save), {} frames, {} waves, target <= 1.2x: {}",
        d.traffic.bytes,
        d.traffic.bytes as f64 / f.accord_saved as f64,
        d.traffic.frames,
        d.traffic.waves,
        pass(bd, 1.2)
    );
    println!(
        "  relay: time {} vs raw sync, target <= 1.2x: {}",
        fmt_spread(&rr, "x"),
        pass(my, 1.2)
    );
    println!(
        "  relay: second hop alone (B from a relay holding the document) {} vs raw sync (context)",
        fmt_spread(&r2, "x"),
    );
    println!(
        "  relay: bytes (both hops) {} = {by:.3}x raw save(), per hop {:.3}x, {} frames",
        y.traffic.bytes,
        by / 2.0,
        y.traffic.frames
    );
    Ok(())
}
