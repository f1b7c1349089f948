//! `trust-costs`: what signing and verifying cost, as ratios against the
//! same replay without them, measured in the same run.
//!
//! - *sign*: a writer replays the trace as one commit per keystroke; with
//!   trust on, each commit also carries its roster claim and is attested
//!   (an ed25519 signature over the new heads).
//! - *verify, per change*: a receiver applies the writer's changes one
//!   message per keystroke (live typing); with trust on, each is decoded,
//!   its attestation checked, and judged by the rules before the apply.
//! - *verify, coalesced*: the same with 100 changes per message and one
//!   attestation (the engine's coalesced path).

use std::time::{Duration, Instant};

use accord_identity::OrgSecret;
use accord_model::automerge::transaction::CommitOptions;
use accord_model::automerge::{AutoCommit, Change};
use accord_model::trust::{Attestation, Candidate, RosterHistory, Rule, claim, verify_batch};
use accord_model::{Agreement, DocId};
use anyhow::{Context, Result};

use crate::stats::{median, ms};
use crate::sync_net::{SEED_A, doc_id, new_mou, roster_with};
use crate::trace::Trace;

struct Writer {
    changes: Vec<Change>,
    attestations: Vec<Attestation>,
}

pub fn run(trace: &Trace, keystrokes: usize, rounds: usize) -> Result<()> {
    let n = keystrokes.min(trace.patches.len());
    let mou = doc_id(0);
    let roster = roster_with(&[mou])?;
    let base = new_mou(&roster, mou, SEED_A, 0)?;
    let secret = OrgSecret::from_seed(SEED_A);
    let claim = claim::with_claim("", &roster.view().heads);
    let (mut sign_raw, mut sign_on) = (Vec::new(), Vec::new());
    let (mut each_raw, mut each_on) = (Vec::new(), Vec::new());
    let (mut batch_raw, mut batch_on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        sign_raw.push(write(trace, n, &base, None, None, mou)?.0);
        let (t, w) = write(trace, n, &base, Some(&claim), Some(&secret), mou)?;
        sign_on.push(t);
        let w = &w;
        let start = base.doc().clone();
        each_raw.push(receive(&start, w, 1, false, &roster, mou)?);
        each_on.push(receive(&start, w, 1, true, &roster, mou)?);
        batch_raw.push(receive(&start, w, 100, false, &roster, mou)?);
        batch_on.push(receive(&start, w, 100, true, &roster, mou)?);
    }
    println!(
        "trust-costs on {} ({n} keystrokes, {rounds} rounds, medians)",
        trace.name
    );
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "", "plain ms", "trust ms", "ratio"
    );
    for (what, raw, on) in [
        ("sign: one commit per keystroke", &sign_raw, &sign_on),
        ("verify: one message per keystroke", &each_raw, &each_on),
        ("verify: 100 keystrokes per message", &batch_raw, &batch_on),
    ] {
        let (r, t) = (median(raw), median(on));
        println!(
            "{what:<34} {:>10.1} {:>10.1} {:>6.2}x",
            ms(r),
            ms(t),
            t.as_secs_f64() / r.as_secs_f64()
        );
    }
    Ok(())
}

/// Replays `n` keystrokes on a copy of `base`, one commit each.
fn write(
    trace: &Trace,
    n: usize,
    base: &Agreement,
    claim: Option<&str>,
    secret: Option<&OrgSecret>,
    mou: DocId,
) -> Result<(Duration, Writer)> {
    let mut doc = base.doc().clone();
    let (_, text) =
        accord_model::automerge::ReadDoc::get(&doc, accord_model::automerge::ROOT, "purpose")?
            .context("purpose")?;
    let mut hashes = Vec::with_capacity(n);
    let mut attestations = Vec::new();
    let started = Instant::now();
    for p in &trace.patches[..n] {
        accord_model::automerge::transaction::Transactable::splice_text(
            &mut doc,
            &text,
            p.pos,
            p.del as isize,
            &p.ins,
        )?;
        let mut options = CommitOptions::default();
        if let Some(claim) = claim {
            options = options.with_message(claim.to_owned());
        }
        if let Some(hash) = doc.commit_with(options) {
            hashes.push(hash);
            if let Some(secret) = secret {
                attestations.push(Attestation::sign(secret, mou, &[hash]));
            }
        }
    }
    let elapsed = started.elapsed();
    let changes = hashes
        .iter()
        .filter_map(|h| doc.get_change_by_hash(h))
        .collect();
    Ok((
        elapsed,
        Writer {
            changes,
            attestations,
        },
    ))
}

/// Applies the writer's changes to a copy of `start`, `per` changes per message.
fn receive(
    start: &AutoCommit,
    w: &Writer,
    per: usize,
    verify: bool,
    roster: &accord_model::Roster,
    _mou: DocId,
) -> Result<Duration> {
    let mut doc = start.clone();
    let mut history = RosterHistory::new(roster.id(), roster.doc().clone());
    let bytes: Vec<Vec<u8>> = w.changes.iter().map(|c| c.raw_bytes().to_vec()).collect();
    let started = Instant::now();
    for (i, group) in bytes.chunks(per).enumerate() {
        let message: Vec<u8> = group.concat();
        if verify {
            let last = ((i + 1) * per).min(bytes.len()) - 1;
            let attestation = Attestation::from_bytes(&w.attestations[last].to_bytes())?;
            attestation.verify()?;
            let candidates: Vec<Candidate> = group
                .iter()
                .map(|b| Change::from_bytes(b.clone()).map(|c| Candidate::of_change(&c)))
                .collect::<Result<_, _>>()?;
            let mut applied = |h: &accord_model::automerge::ChangeHash| {
                doc.get_change_meta_by_hash(h)
                    .map(|m| claim::parse(m.message.as_deref()))
            };
            let verdict = verify_batch(
                Rule::Agreement,
                &candidates,
                std::slice::from_ref(&attestation),
                &mut history,
                &mut applied,
            )
            .map_err(|_| anyhow::anyhow!("unknown roster"))?;
            anyhow::ensure!(
                verdict.all_accepted() && verdict.waiting.is_empty(),
                "{verdict:?}"
            );
        }
        doc.load_incremental(&message)?;
    }
    Ok(started.elapsed())
}
