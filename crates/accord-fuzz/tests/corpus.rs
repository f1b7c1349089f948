//! Every committed corpus file and every generated seed, run through its
//! target on stable; then a seeded mutation smoke of each target.
//!
//! `ACCORD_FUZZ_SMOKE_ITERS` sets the mutated inputs per target (default
//! 300); `ACCORD_FUZZ_SMOKE_SEED` replays one smoke run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use accord_fuzz::mutate::{Rng, mutate};
use accord_fuzz::{TARGETS, seeds};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The committed corpus of `target`, with each file's name.
fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn run(body: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| body(input))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (name, _) in TARGETS {
        let files: Vec<Vec<u8>> = committed(name).into_iter().map(|(_, b)| b).collect();
        let missing = seeds::for_target(name)
            .iter()
            .filter(|seed| !files.contains(seed))
            .count();
        assert_eq!(
            missing, 0,
            "{name}: {missing} seeds are not committed (the fixture changed?): run \
             `cargo run -p accord-fuzz --bin seed-corpus -- crates/accord-fuzz/fuzz/corpus`"
        );
    }
}

#[test]
fn committed_corpora_and_seeds_pass_every_target() {
    for (name, body) in TARGETS {
        let mut inputs = committed(name);
        for (n, seed) in seeds::for_target(name).into_iter().enumerate() {
            inputs.push((format!("{name} seed {n}"), seed));
        }
        for (label, input) in &inputs {
            if let Err(why) = run(body, input) {
                panic!("{label}: {why}");
            }
        }
        eprintln!("{name}: {} inputs pass", inputs.len());
    }
}

#[test]
fn seeds_reach_deep_states() {
    // The sync seeds must carry B's changes all the way to A's replica,
    // otherwise the fuzzer starts from the surface.
    let mut a = accord_fuzz::authenticated(false);
    a.receive(accord_fuzz::Partnership::get().b_attest_frame().encode());
    for change in &accord_fuzz::Partnership::get().b_changes {
        let message = accord_fuzz::wrap_changes(change);
        let mou = *accord_fuzz::Partnership::get().mou.as_bytes();
        a.receive(accord_sync::wire::Frame::Sync { doc: mou, message }.encode());
    }
    a.check_store();
    assert!(a.mou_log_entries() >= 1, "B's changes were not persisted");
    assert!(!a.closed());
}

#[test]
fn mutation_smoke() {
    let iterations: usize = env_or("ACCORD_FUZZ_SMOKE_ITERS", 300);
    let seed: u64 = env_or("ACCORD_FUZZ_SMOKE_SEED", 0x5eed);
    eprintln!("mutation smoke: {iterations} inputs per target, ACCORD_FUZZ_SMOKE_SEED={seed}");
    for (name, body) in TARGETS {
        let mut corpus: Vec<Vec<u8>> = committed(name).into_iter().map(|(_, b)| b).collect();
        corpus.extend(seeds::for_target(name));
        let mut rng = Rng::new(seed ^ name.len() as u64);
        for n in 0..iterations {
            let input = mutate(&mut rng, &corpus);
            if let Err(why) = run(body, &input) {
                panic!("{name} mutation {n} (seed {seed}) panicked: {why}\ninput: {input:02x?}");
            }
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
