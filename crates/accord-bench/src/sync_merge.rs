//! `sync-merge`: the concurrent trace replayed by two organisations. Each
//! agent edits its own copy (its editor), exactly at the version the trace
//! names. Where a transaction has parents the agent has not seen, the two
//! sides sync first and the agent merges exactly those changes.
//!
//! - *raw* (the baseline): two bare Automerge documents; a merge applies
//!   the missing changes taken from the other document (fork/merge).
//! - *raw sync* (context): the same, plus two raw replicas kept in step
//!   with `automerge::sync` at each merge point.
//! - *accord*: two MOU editors, each feeding its new changes to its node's
//!   engine (`Input::LocalChange`, one group per merge point, as
//!   `LiveDocument` groups them); at each merge point the engines sync in
//!   memory to quiescence before the agent merges. Both replicas must end
//!   at `endContent`.

use std::path::Path;
use std::time::{Duration, Instant};

use accord_identity::OrgSecret;
use accord_model::automerge::{
    AutoCommit, ChangeHash, ObjId, ObjType, ROOT, sync::State, transaction::Transactable,
};
use accord_model::{DocId, new_document_actor};
use accord_sync::{Input, PeerRole};
use anyhow::{Context, Result, ensure};
use serde::Deserialize;

use crate::stats::ms;
use crate::sync_net::{
    Net, Peer, SEED_A, SEED_B, doc_id, fmt_spread, new_mou, purpose_obj, purpose_text, raw_sync,
    roster_with,
};

#[derive(Deserialize, Clone, Debug)]
pub struct Txn {
    pub parents: Vec<usize>,
    pub agent: usize,
    pub patches: Vec<(usize, usize, String)>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Concurrent {
    pub end_content: String,
    pub txns: Vec<Txn>,
}

pub fn load(path: &Path) -> Result<Concurrent> {
    use std::io::Read;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        out
    } else {
        raw
    };
    let t: Concurrent = serde_json::from_slice(&json).context("parsing a concurrent trace")?;
    ensure!(
        t.txns.iter().all(|x| x.agent < 2),
        "only two agents are supported"
    );
    Ok(t)
}

// One value per replay, never moved in a loop: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Replicas {
    None,
    Raw {
        docs: [AutoCommit; 2],
        states: [State; 2],
    },
    Accord {
        net: Net,
        mou: DocId,
    },
}

pub struct Outcome {
    pub time: Duration,
    pub syncs: usize,
    pub bytes: u64,
    /// Whole-document sync messages during the replay (Accord only).
    pub whole_documents: u64,
    /// Where the time went (Accord only).
    pub split: Split,
}

/// The Accord replay's time, by who spent it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Split {
    /// Both editors: splices, commits, merges (what the raw replay does).
    pub editing: Duration,
    /// Inside both engines' `handle`.
    pub engine: Duration,
    /// Of which: `Input::LocalChange` (the rest is received frames and flushes).
    pub local: Duration,
    /// Applying the engines' writes to the in-memory stores.
    pub store: Duration,
    /// The workspace's part of a local change group: the new heads,
    /// signing them, appending the group to the store.
    pub workspace: Duration,
    /// The rest of the sync points: collecting each group (`save_after`),
    /// routing frames.
    pub other: Duration,
}

/// The replica's heads once the editor's changes are stored in it: the
/// editor's heads, and the replica's own heads (changes from the other
/// organisation) that the editor has not merged. The editor only merges
/// changes its replica already holds, so this is the union's heads, found
/// without loading the replica (the node's workspace reads them off the
/// document it holds in memory).
fn replica_heads(editor: &mut AutoCommit, stored: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut heads = editor.get_heads();
    for h in stored {
        if !heads.contains(h) && editor.get_change_meta_by_hash(h).is_none() {
            heads.push(*h);
        }
    }
    heads.sort();
    heads
}

/// Replays the trace; `editors` start identical (holding the text object `text`).
fn replay(
    t: &Concurrent,
    mut editors: [AutoCommit; 2],
    text: ObjId,
    mut replicas: Replicas,
    claim: Option<String>,
) -> Result<Outcome> {
    let n = t.txns.len();
    let mut hashes: Vec<Option<ChangeHash>> = vec![None; n];
    let mut included = [vec![false; n], vec![false; n]];
    let mut sent: [Vec<ChangeHash>; 2] = [editors[0].get_heads(), editors[1].get_heads()];
    let mut syncs = 0;
    let mut bytes = 0u64;
    let mut stack = Vec::new();
    let mut split = Split::default();
    let mut syncing = Duration::ZERO;
    let mut whole_documents = 0;
    if let Replicas::Accord { net, .. } = &mut replicas {
        net.whole_documents = 0;
        for p in &mut net.peers {
            p.busy = Duration::ZERO;
            p.storing = Duration::ZERO;
        }
    }
    let start = Instant::now();
    let mut sync = |editors: &mut [AutoCommit; 2],
                    sent: &mut [Vec<ChangeHash>; 2],
                    replicas: &mut Replicas|
     -> Result<()> {
        let began = Instant::now();
        syncs += 1;
        match replicas {
            Replicas::None => {}
            Replicas::Raw { docs, states } => {
                for g in 0..2 {
                    let group = editors[g].save_after(&sent[g]);
                    sent[g] = editors[g].get_heads();
                    docs[g].load_incremental(&group)?;
                }
                let [d0, d1] = docs;
                let [s0, s1] = states;
                bytes += raw_sync(d0, d1, s0, s1)?.bytes;
            }
            Replicas::Accord { net, mou } => {
                for g in 0..2 {
                    let group = editors[g].save_after(&sent[g]);
                    sent[g] = editors[g].get_heads();
                    if !group.is_empty() {
                        // Durable in the replica first (the workspace's job: sign
                        // the replica's new heads and append), then told to the engine.
                        let start = Instant::now();
                        let stored = &net.peers[g].store.docs[mou].heads;
                        let heads = replica_heads(&mut editors[g], stored);
                        let attestation =
                            net.peers[g].store.append_local(*mou, group.clone(), &heads);
                        split.workspace += start.elapsed();
                        let busy = net.peers[g].busy;
                        net.input(
                            g,
                            Input::LocalChange {
                                doc: *mou,
                                change: group,
                                attestation,
                            },
                        );
                        split.local += net.peers[g].busy - busy;
                    }
                }
                bytes += net.pump().bytes;
            }
        }
        syncing += began.elapsed();
        Ok(())
    };
    for (i, txn) in t.txns.iter().enumerate() {
        let g = txn.agent;
        // Every ancestor of the parents this agent has not seen yet.
        let mut missing = Vec::new();
        stack.extend(txn.parents.iter().copied());
        while let Some(j) = stack.pop() {
            if included[g][j] {
                continue;
            }
            included[g][j] = true;
            missing.push(j);
            stack.extend(t.txns[j].parents.iter().copied());
        }
        if !missing.is_empty() {
            sync(&mut editors, &mut sent, &mut replicas)?;
            missing.sort_unstable();
            let other = 1 - g;
            let mut changes = Vec::with_capacity(missing.len());
            for j in missing {
                let h = hashes[j].context("parents come first")?;
                changes.push(
                    editors[other]
                        .get_change_by_hash(&h)
                        .context("the other agent has it")?,
                );
            }
            editors[g].apply_changes(changes)?;
        }
        for (pos, del, ins) in &txn.patches {
            editors[g].splice_text(&text, *pos, *del as isize, ins)?;
        }
        hashes[i] = match &claim {
            Some(message) => editors[g].commit_with(
                accord_model::automerge::transaction::CommitOptions::default()
                    .with_message(message.clone()),
            ),
            None => editors[g].commit(),
        };
        included[g][i] = true;
    }
    // Final exchange: both sides see everything.
    sync(&mut editors, &mut sent, &mut replicas)?;
    for g in 0..2 {
        let other = 1 - g;
        let mine = editors[g].get_heads();
        let changes = editors[other].get_changes(&mine);
        editors[g].apply_changes(changes)?;
    }
    let time = start.elapsed();
    if let Replicas::Accord { net, .. } = &replicas {
        whole_documents = net.whole_documents;
        split.engine = net.peers.iter().map(|p| p.busy).sum();
        split.store = net.peers.iter().map(|p| p.storing).sum();
        split.editing = time.saturating_sub(syncing);
        split.other = syncing
            .saturating_sub(split.engine)
            .saturating_sub(split.store)
            .saturating_sub(split.workspace);
    }
    for e in &editors {
        ensure!(
            accord_model::automerge::ReadDoc::text(e, &text)? == t.end_content,
            "an editor did not converge to endContent"
        );
    }
    match &mut replicas {
        Replicas::None => {}
        Replicas::Raw { docs, .. } => {
            for d in docs.iter() {
                ensure!(accord_model::automerge::ReadDoc::text(d, &text)? == t.end_content);
            }
        }
        Replicas::Accord { net, mou } => {
            for (i, p) in net.peers.iter().enumerate() {
                let got = purpose_text(&p.store.load(*mou)?)?;
                ensure!(
                    got == t.end_content,
                    "replica {i} did not converge to endContent ({} of {} chars, {} log entries)",
                    got.chars().count(),
                    t.end_content.chars().count(),
                    p.store.docs[mou].log.len()
                );
            }
        }
    }
    Ok(Outcome {
        time,
        syncs,
        bytes,
        whole_documents,
        split,
    })
}

fn actor(seed: [u8; 32], n: u8) -> accord_model::automerge::ActorId {
    new_document_actor(&OrgSecret::from_seed(seed), [n; 8])
}

pub fn raw(t: &Concurrent, with_sync: bool) -> Result<Outcome> {
    let mut base = AutoCommit::new().with_actor(actor(SEED_A, 1));
    let text = base.put_object(ROOT, "text", ObjType::Text)?;
    base.commit();
    let b = base.fork().with_actor(actor(SEED_B, 1));
    let replicas = if with_sync {
        Replicas::Raw {
            docs: [base.fork(), base.fork()],
            states: [State::new(), State::new()],
        }
    } else {
        Replicas::None
    };
    replay(t, [base, b], text, replicas, None)
}

pub fn accord(t: &Concurrent) -> Result<Outcome> {
    let mou = doc_id(0);
    let roster = roster_with(&[mou])?;
    let p = roster.id();
    let mut agreement = new_mou(&roster, mou, SEED_A, 1)?;
    agreement.text_obj("purpose", &roster.view())?;
    agreement.commit("", 1);
    let coalesce = std::env::var_os("BENCH_NO_COALESCE").is_none();
    let mut a = Peer::new(SEED_A, PeerRole::Node, coalesce);
    let mut roster_doc = roster.doc().clone();
    a.store.put(p.roster_doc(), p, "roster", &mut roster_doc);
    a.store.put(mou, p, "mou", agreement.doc_mut());
    a.restart();
    let mut b = Peer::new(SEED_B, PeerRole::Node, coalesce);
    b.handle(Input::Want { partnership: p });
    let mut net = Net::new(vec![a, b]);
    net.connect(1, 0);
    net.pump();
    let ea = agreement.doc().clone().with_actor(actor(SEED_A, 2));
    let eb = net.peers[1].store.load(mou)?.with_actor(actor(SEED_B, 2));
    let text = purpose_obj(&ea)?;
    let claim = accord_model::trust::claim::with_claim("", &roster.view().heads);
    replay(
        t,
        [ea, eb],
        text,
        Replicas::Accord { net, mou },
        Some(claim),
    )
}

pub fn run(path: &Path, rounds: usize) -> Result<()> {
    let t = load(path)?;
    eprintln!("{} txns", t.txns.len());
    let (mut vs_raw, mut vs_sync) = (Vec::new(), Vec::new());
    let mut last = None;
    let mut splits = Vec::new();
    for round in 0..rounds.max(1) {
        let mut out: [Option<Outcome>; 3] = [None, None, None];
        for k in 0..3 {
            let v = (round + k) % 3;
            out[v] = Some(match v {
                0 => raw(&t, false)?,
                1 => raw(&t, true)?,
                _ => accord(&t)?,
            });
        }
        let [r, rs, a] = out.map(Option::unwrap);
        let (x, y) = (
            a.time.as_secs_f64() / r.time.as_secs_f64(),
            a.time.as_secs_f64() / rs.time.as_secs_f64(),
        );
        eprintln!(
            "round {}: raw {:.0} ms, raw+sync {:.0} ms ({} B), accord {:.0} ms ({} B, {} syncs): {x:.2}x raw, {y:.2}x raw+sync",
            round + 1,
            ms(r.time),
            ms(rs.time),
            rs.bytes,
            ms(a.time),
            a.bytes,
            a.syncs
        );
        let sp = a.split;
        eprintln!(
            "  accord: {} whole-document messages; split: editing {:.0} ms, engine {:.0} ms (local changes {:.0} ms), store {:.0} ms, workspace (heads, sign, append) {:.0} ms, other {:.0} ms",
            a.whole_documents,
            ms(sp.editing),
            ms(sp.engine),
            ms(sp.local),
            ms(sp.store),
            ms(sp.workspace),
            ms(sp.other)
        );
        splits.push(sp);
        vs_raw.push(x);
        vs_sync.push(y);
        last = Some((r, rs, a));
    }
    let (_, rs, a) = last.unwrap();
    let med = crate::sync_net::spread(&vs_raw).0;
    println!(
        "sync-merge ({} txns, {} merge points):",
        t.txns.len(),
        a.syncs
    );
    println!(
        "  accord / raw fork-merge: {} (target <= 1.5x: {})",
        fmt_spread(&vs_raw, "x"),
        if med <= 1.5 { "PASS" } else { "FAIL" }
    );
    println!(
        "  accord / raw fork-merge + raw automerge sync of two replicas: {} (context)",
        fmt_spread(&vs_sync, "x")
    );
    let med_ms = |f: fn(&Split) -> Duration| {
        let v: Vec<f64> = splits.iter().map(|s| ms(f(s))).collect();
        crate::sync_net::spread(&v).0
    };
    println!(
        "  accord time split (medians): editing {:.0} ms, engine {:.0} ms (local changes {:.0} ms), store {:.0} ms, workspace (heads, sign, append) {:.0} ms, other {:.0} ms",
        med_ms(|s| s.editing),
        med_ms(|s| s.engine),
        med_ms(|s| s.local),
        med_ms(|s| s.store),
        med_ms(|s| s.workspace),
        med_ms(|s| s.other)
    );
    println!(
        "  bytes: accord {} B, raw sync {} B ({:.2}x)",
        a.bytes,
        rs.bytes,
        a.bytes as f64 / rs.bytes.max(1) as f64
    );
    Ok(())
}
