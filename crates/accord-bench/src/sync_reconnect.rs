//! `sync-reconnect`: a partnership of many documents (small agreements plus
//! one trace-sized MOU), synced once with sync states persisted, then both
//! engines restarted from their stores and reconnected: with nothing
//! changed, and with some documents changed on A.

use std::time::{Duration, Instant};

use accord_identity::OrgSecret;
use accord_model::automerge::{AutoCommit, ReadDoc, sync::State, transaction::Transactable};
use accord_model::{DocId, PartnershipId, new_document_actor};
use accord_sync::{Input, PeerRole};
use anyhow::{Context, Result, ensure};

use crate::replay::raw_replay;
use crate::stats::ms;
use crate::sync_net::{
    Net, Peer, SEED_A, SEED_B, Traffic, doc_id, fmt_spread, new_mou, purpose_obj, purpose_text,
    raw_sync, roster_with, spread, trace_mou,
};
use crate::trace::{Patch, Trace};

pub struct Setup {
    pub net: Net,
    #[allow(dead_code)]
    pub p: PartnershipId,
    pub ids: Vec<DocId>,
    pub first_sync: Duration,
    pub first_traffic: Traffic,
}

/// A holds `docs` documents (index 0 replays `patches`); B joins and syncs everything.
pub fn setup(patches: &[Patch], end: &str, docs: usize) -> Result<Setup> {
    let ids: Vec<DocId> = (0..docs as u32).map(doc_id).collect();
    let roster = roster_with(&ids)?;
    let p = roster.id();
    let mut a = Peer::new(SEED_A, PeerRole::Node, true);
    let mut big = trace_mou(&roster, ids[0], patches)?;
    ensure!(purpose_text(big.doc())? == end);
    a.store.put(ids[0], p, "mou", big.doc_mut());
    let view = roster.view();
    for (i, id) in ids.iter().enumerate().skip(1) {
        let mut mou = new_mou(&roster, *id, SEED_A, 0)?;
        for k in 0..3 {
            mou.set("purpose", &format!("Agreement {i}, draft {k}"), &view)?;
            mou.commit("", 2 + k);
        }
        a.store.put(*id, p, "mou", mou.doc_mut());
    }
    let mut roster_doc = roster.doc().clone();
    a.store.put(p.roster_doc(), p, "roster", &mut roster_doc);
    a.restart();
    let mut b = Peer::new(SEED_B, PeerRole::Node, true);
    b.handle(Input::Want { partnership: p });
    let mut net = Net::new(vec![a, b]);
    let start = Instant::now();
    let link = net.connect(1, 0);
    let first_traffic = net.pump();
    let first_sync = start.elapsed();
    net.disconnect(link);
    ensure!(
        net.peers[1].store.docs.len() == docs + 1,
        "B holds {} of {} documents after the first sync",
        net.peers[1].store.docs.len(),
        docs + 1
    );
    ensure!(purpose_text(&net.peers[1].store.load(ids[0])?)? == end);
    Ok(Setup {
        net,
        p,
        ids,
        first_sync,
        first_traffic,
    })
}

/// An edit made on A while offline: one character appended to `purpose`, stored as a log entry.
fn edit_on_a(net: &mut Net, doc: DocId, n: u64) -> Result<()> {
    let store = &mut net.peers[0].store;
    let actor = new_document_actor(&OrgSecret::from_seed(SEED_A), (n + 1).to_be_bytes());
    let mut d = store.load(doc)?.with_actor(actor);
    let obj = purpose_obj(&d)?;
    let before = d.get_heads();
    d.splice_text(&obj, 0, 0, "x")?;
    d.commit();
    let bytes = d.save_after(&before);
    let stored = store.docs.get_mut(&doc).context("stored")?;
    stored.log.push(bytes);
    stored.heads = d.get_heads();
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub restart: Duration,
    pub time: Duration,
    pub traffic: Traffic,
    pub loads_a: usize,
    pub loads_b: usize,
}

/// Restarts both engines from their stores, reconnects (B dials A) and syncs to quiescence.
pub fn reconnect(net: &mut Net) -> Reconnect {
    let start = Instant::now();
    for peer in &mut net.peers {
        peer.restart();
        peer.loads.clear();
    }
    let restart = start.elapsed();
    let start = Instant::now();
    let link = net.connect(1, 0);
    let traffic = net.pump();
    let time = start.elapsed();
    net.disconnect(link);
    Reconnect {
        restart,
        time,
        traffic,
        loads_a: net.peers[0].agreement_loads(),
        loads_b: net.peers[1].agreement_loads(),
    }
}

fn same_heads(net: &Net, docs: &[DocId]) -> bool {
    docs.iter().all(|d| {
        let mut a = net.peers[0].store.docs[d].heads.clone();
        let mut b = net.peers[1].store.docs[d].heads.clone();
        a.sort();
        b.sort();
        a == b
    })
}

pub fn run(trace: &Trace, docs: usize, rounds: usize) -> Result<()> {
    ensure!(docs >= 11, "--docs must be at least 11");
    eprintln!("building {docs} documents and syncing them once...");
    let mut s = setup(&trace.patches, &trace.end_content, docs)?;
    eprintln!(
        "first sync: {:.0} ms, {} B, {} frames, {} waves",
        ms(s.first_sync),
        s.first_traffic.bytes,
        s.first_traffic.frames,
        s.first_traffic.waves
    );
    let mut raw = raw_replay(&trace.patches)?.doc;
    let mut raw_copy = AutoCommit::load(&raw.save())?;

    let (mut nothing, mut ten, mut with_big) = (Vec::new(), Vec::new(), Vec::new());
    let (mut raw_same, mut raw_one) = (Vec::new(), Vec::new());
    let mut edits = 0u64;
    for round in 0..rounds.max(1) {
        for k in 0..4 {
            match (round + k) % 4 {
                0 => {
                    let r = reconnect(&mut s.net);
                    ensure!(same_heads(&s.net, &s.ids));
                    nothing.push(r);
                }
                1 => {
                    let changed: Vec<DocId> = (0..10)
                        .map(|j| s.ids[1 + (round * 10 + j) % (docs - 1)])
                        .collect();
                    for d in &changed {
                        edits += 1;
                        edit_on_a(&mut s.net, *d, edits)?;
                    }
                    let r = reconnect(&mut s.net);
                    ensure!(same_heads(&s.net, &s.ids), "B did not catch up");
                    ten.push(r);
                }
                2 => {
                    let mut changed = vec![s.ids[0]];
                    changed.extend((0..9).map(|j| s.ids[1 + (round * 9 + j + 500) % (docs - 1)]));
                    for d in &changed {
                        edits += 1;
                        edit_on_a(&mut s.net, *d, edits)?;
                    }
                    let r = reconnect(&mut s.net);
                    ensure!(same_heads(&s.net, &s.ids), "B did not catch up");
                    with_big.push(r);
                }
                _ => {
                    // Raw context: the trace document alone, fresh sync states,
                    // (a) both sides identical, (b) A one keystroke ahead.
                    let (mut sa, mut sb) = (State::new(), State::new());
                    let t0 = Instant::now();
                    let t = raw_sync(&mut raw, &mut raw_copy, &mut sa, &mut sb)?;
                    raw_same.push((t0.elapsed(), t));
                    let obj = raw
                        .get(accord_model::automerge::ROOT, crate::replay::RAW_TEXT_KEY)?
                        .context("text")?
                        .1;
                    raw.splice_text(&obj, 0, 0, "x")?;
                    raw.commit();
                    let (mut sa, mut sb) = (State::new(), State::new());
                    let t0 = Instant::now();
                    let t = raw_sync(&mut raw, &mut raw_copy, &mut sa, &mut sb)?;
                    raw_one.push((t0.elapsed(), t));
                }
            }
        }
    }
    println!(
        "sync-reconnect {} ({docs} documents; first full sync {:.0} ms, {} B):",
        trace.name,
        ms(s.first_sync),
        s.first_traffic.bytes
    );
    let show = |name: &str, v: &[Reconnect]| {
        let f = |g: &dyn Fn(&Reconnect) -> f64| v.iter().map(g).collect::<Vec<f64>>();
        println!(
            "  {name}: bytes both ways {}, frames {}, round trips {}, time {} ms, restart {} ms, agreements loaded A {} / B {}",
            fmt_spread(&f(&|r| r.traffic.bytes as f64), ""),
            fmt_spread(&f(&|r| r.traffic.frames as f64), ""),
            fmt_spread(&f(&|r| r.traffic.round_trips()), ""),
            fmt_spread(&f(&|r| ms(r.time)), ""),
            fmt_spread(&f(&|r| ms(r.restart)), ""),
            fmt_spread(&f(&|r| r.loads_a as f64), ""),
            fmt_spread(&f(&|r| r.loads_b as f64), ""),
        );
    };
    show("(a) nothing changed", &nothing);
    show("(b) 10 small agreements changed on A", &ten);
    show("(c) the trace MOU + 9 agreements changed on A", &with_big);
    let raw_show = |name: &str, v: &[(Duration, Traffic)]| {
        println!(
            "  raw {name}: time {} ms, bytes {}, messages {}",
            fmt_spread(&v.iter().map(|r| ms(r.0)).collect::<Vec<_>>(), ""),
            fmt_spread(&v.iter().map(|r| r.1.bytes as f64).collect::<Vec<_>>(), ""),
            fmt_spread(&v.iter().map(|r| r.1.frames as f64).collect::<Vec<_>>(), ""),
        );
    };
    raw_show(
        "sync of the trace doc alone, identical, fresh state",
        &raw_same,
    );
    raw_show(
        "sync of the trace doc alone, one change, fresh state",
        &raw_one,
    );
    let (bytes_a, _, _) = spread(
        &nothing
            .iter()
            .map(|r| r.traffic.bytes as f64)
            .collect::<Vec<_>>(),
    );
    let loads_a = nothing
        .iter()
        .map(|r| r.loads_a + r.loads_b)
        .max()
        .unwrap_or(0);
    let loads_b = spread(
        &ten.iter()
            .map(|r| r.loads_a.max(r.loads_b) as f64)
            .collect::<Vec<_>>(),
    )
    .0;
    let pf = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "  targets: (a) bytes <= 64 KiB: {} ({bytes_a:.0} B); (a) 0 agreements loaded: {} (max {loads_a}); (b) ~10 loaded per side: {} (median {loads_b})",
        pf(bytes_a <= 65_536.0),
        pf(loads_a == 0),
        pf(loads_b <= 12.0)
    );
    Ok(())
}
