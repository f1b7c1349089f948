//! A real replica file, damaged three ways (bit flips, a zeroed page,
//! truncation) under seeded choices, must give a clear error or correct
//! content: never a panic, never wrong content that nothing flags.
//!
//! Content is real Automerge data, and Automerge checks the checksum of
//! every chunk it loads, so damage inside a snapshot or change is caught
//! when the document is loaded even if the store hands the bytes back.
//! What only the store can protect (titles, heads, settings) must come
//! back right or not at all: they carry checksums (schema 2), since redb
//! does not checksum the pages of a cleanly closed file as it reads them.
//!
//! `ACCORD_CORRUPT_SEEDS` (default 150 per kind) makes the long run;
//! `ACCORD_CORRUPT_SEED` replays one seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use accord_store::{DocInfo, Replica, StoreError, WriteBatch};
use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};

use super::power_loss::seeds;
use super::workload::{Observed, Rng, observe};

const PAGE: usize = 4096;

#[derive(Clone, Copy, Debug)]
enum Damage {
    BitFlips,
    ZeroedPage,
    Truncation,
}

/// What one damaged file did.
#[derive(Debug, Default)]
struct Tally {
    refused: u64,
    intact: u64,
    caught_on_load: u64,
    record_wrong_caught_by_verify: u64,
    silently_wrong: u64,
    panics: u64,
}

#[test]
fn damaged_replicas_give_clear_errors_or_correct_content() {
    let dir = tempfile::tempdir().unwrap();
    let truth = populate(dir.path());
    let path = dir.path().join("replica.redb");
    let original = std::fs::read(&path).unwrap();
    for damage in [Damage::BitFlips, Damage::ZeroedPage, Damage::Truncation] {
        let mut tally = Tally::default();
        for seed in seeds("ACCORD_CORRUPT_SEED", "ACCORD_CORRUPT_SEEDS", 150) {
            let damaged = apply(damage, &original, seed);
            std::fs::write(&path, &damaged).unwrap();
            classify(
                dir.path(),
                &truth,
                &mut tally,
                &format!("{damage:?} seed {seed}"),
            );
        }
        eprintln!(
            "{damage:?}: {} refused on open, {} intact, {} damaged documents refused on load, {} wrong title/heads/setting (all caught by verify), {} silently wrong, {} panics",
            tally.refused,
            tally.intact,
            tally.caught_on_load,
            tally.record_wrong_caught_by_verify,
            tally.silently_wrong,
            tally.panics
        );
        // Schema 2 checksums records and settings, so a wrong title, heads
        // or setting is refused on read, not only flagged by `verify`.
        assert_eq!(
            (
                tally.panics,
                tally.silently_wrong,
                tally.record_wrong_caught_by_verify
            ),
            (0, 0, 0),
            "{damage:?}"
        );
    }
}

fn apply(damage: Damage, original: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = original.to_vec();
    let len = bytes.len() as u64;
    match damage {
        Damage::BitFlips => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(len) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        Damage::ZeroedPage => {
            let page = rng.below(len.div_ceil(PAGE as u64)) as usize;
            let end = ((page + 1) * PAGE).min(bytes.len());
            bytes[page * PAGE..end].fill(0);
        }
        Damage::Truncation => bytes.truncate(rng.below(len) as usize),
    }
    bytes
}

fn classify(dir: &Path, truth: &Observed, tally: &mut Tally, label: &str) {
    let read = catch_unwind(AssertUnwindSafe(|| -> Result<Observed, StoreError> {
        let replica = Replica::open(dir)?;
        observe(&replica)
    }));
    match read {
        Err(_) => {
            eprintln!("{label}: panicked");
            tally.panics += 1;
        }
        Ok(Err(err)) => {
            assert!(!err.to_string().is_empty());
            tally.refused += 1;
        }
        Ok(Ok(observed)) if observed == *truth => tally.intact += 1,
        Ok(Ok(observed)) => match compare(&observed, truth) {
            Verdict::Flagged => tally.caught_on_load += 1,
            Verdict::RecordWrong if verify_flags(dir) => tally.record_wrong_caught_by_verify += 1,
            Verdict::RecordWrong => {
                eprintln!(
                    "{label}: a title, heads or setting came back wrong and verify missed it"
                );
                tally.silently_wrong += 1;
            }
            Verdict::SilentlyWrong => {
                eprintln!("{label}: a document loads with wrong content");
                tally.silently_wrong += 1;
            }
        },
    }
}

enum Verdict {
    /// Every document that differs fails to load: the person is told.
    Flagged,
    /// Documents load right or fail, but a title, heads or setting (small
    /// record values, which redb does not checksum when it reads a
    /// cleanly closed file) differs.
    RecordWrong,
    /// A document loads with content other than what was saved, or the set
    /// of documents differs.
    SilentlyWrong,
}

fn compare(observed: &Observed, truth: &Observed) -> Verdict {
    if !observed.docs.keys().eq(truth.docs.keys()) {
        return Verdict::SilentlyWrong;
    }
    let mut verdict = if observed.settings == truth.settings {
        Verdict::Flagged
    } else {
        Verdict::RecordWrong
    };
    for (seen, real) in observed.docs.values().zip(truth.docs.values()) {
        let loaded = load(&seen.1, &seen.2);
        if seen == real || loaded.is_none() {
            continue;
        }
        if loaded != load(&real.1, &real.2) {
            return Verdict::SilentlyWrong;
        }
        if (&seen.0, &seen.3) != (&real.0, &real.3) {
            verdict = Verdict::RecordWrong;
        }
    }
    verdict
}

/// `Replica::verify` (the full checksum pass) reports the damage.
fn verify_flags(dir: &Path) -> bool {
    !matches!(Replica::open(dir).and_then(|mut r| r.verify()), Ok(true))
}

/// The document as every Accord load path rebuilds it.
fn load(snapshot: &[u8], log: &[Vec<u8>]) -> Option<Vec<u8>> {
    Some(accord_model::load_stored(snapshot, log).ok()?.save())
}

/// Six documents with snapshots and logs of real changes, and settings;
/// closed cleanly. Returns what a reader sees.
fn populate(dir: &Path) -> Observed {
    let replica = Replica::create(dir, "Acme Co-op", [7; 32], 1).unwrap();
    for n in 1..=6u8 {
        let mut doc = AutoCommit::new();
        let text = doc.put_object(ROOT, "purpose", ObjType::Text).unwrap();
        doc.splice_text(
            &text,
            0,
            0,
            &"To support women into work. ".repeat(n as usize * 20),
        )
        .unwrap();
        let mut batch = WriteBatch::new();
        let info = DocInfo {
            partnership: [1; 16],
            kind: "mou".into(),
            title: format!("Agreement {n}"),
        };
        batch.put_document([n; 16], info, doc.save(), 1);
        for edit in 0..5 {
            doc.splice_text(&text, 0, 0, &format!("edit {edit} "))
                .unwrap();
            doc.commit();
            let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
            batch.append_changes([n; 16], change, 1);
        }
        let heads = doc.get_heads().into_iter().map(|h| h.0).collect();
        batch.set_heads([n; 16], heads);
        replica.commit(batch).unwrap();
    }
    replica
        .put_setting("peers", b"ws://relay.example.org:7400".to_vec())
        .unwrap();
    let truth = observe(&replica).unwrap();
    drop(replica);
    truth
}
