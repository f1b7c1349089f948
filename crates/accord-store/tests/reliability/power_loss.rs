//! Simulated power loss at every sync point of seeded workloads.
//!
//! For each seed: a dry run counts the workload's syncs; then for every
//! sync point N the workload runs again on a fresh disk that loses power at
//! sync N, and three images of what the disk could hold are reopened: no
//! pending write reached it, all did, and a seeded subset with torn
//! sectors. Each must open, and read back exactly the model's state after
//! some operation between the last acknowledged and the last attempted.
//!
//! `ACCORD_POWERLOSS_SEEDS` (default 4) and `ACCORD_POWERLOSS_OPS`
//! (default 40) make the long run; `ACCORD_POWERLOSS_SEED` replays one seed.

use std::path::Path;
use std::sync::Arc;

use accord_store::Replica;

use super::sim_disk::SimDisk;
use super::workload::{self, Op, Outcome, Rng, generate, model_states, observe};

/// Figures of one whole test run, printed at the end.
#[derive(Debug, Default)]
struct Figures {
    cycles: u64,
    sync_points: u64,
    images: u64,
    lost: u64,
    corrupt_on_open: u64,
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeds to run: one replayed seed, or `count` seeds from 1.
pub fn seeds(one: &str, count: &str, default: u64) -> Vec<u64> {
    match std::env::var(one).ok().and_then(|v| v.parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=env_u64(count, default)).collect(),
    }
}

/// A fresh replica image (created and closed cleanly) and its key folder.
pub fn base(dir: &Path) -> Vec<u8> {
    let disk = SimDisk::default();
    let replica = Replica::create_with_backend(dir, "Acme Co-op", [7; 32], 1, disk.clone())
        .expect("creating on a healthy disk");
    drop(replica);
    disk.live_image()
}

/// A folder holding `template`'s key file, ready for `open_with_backend`.
pub fn folder_like(template: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(template.join("org.key"), dir.path().join("org.key")).unwrap();
    dir
}

#[test]
fn acknowledged_commits_survive_power_loss_at_every_sync() {
    let ops_per_seed = env_u64("ACCORD_POWERLOSS_OPS", 40) as usize;
    let template = tempfile::tempdir().unwrap();
    let image = base(template.path());
    let mut figures = Figures::default();
    for seed in seeds("ACCORD_POWERLOSS_SEED", "ACCORD_POWERLOSS_SEEDS", 4) {
        let ops = generate(seed, ops_per_seed);
        let syncs = dry_run(template.path(), &image, &ops, seed);
        for at in 1..=syncs {
            crash_at(template.path(), &image, &ops, seed, at, &mut figures);
        }
    }
    eprintln!(
        "power loss: {} cycles, {} sync points crashed at, {} images reopened, lost {}, corrupt on open {}",
        figures.cycles, figures.sync_points, figures.images, figures.lost, figures.corrupt_on_open
    );
    assert_eq!((figures.lost, figures.corrupt_on_open), (0, 0));
    assert!(figures.sync_points > 0);
}

/// Runs the workload without faults: every operation is acknowledged and
/// read back. Returns how many syncs it made.
fn dry_run(template: &Path, image: &[u8], ops: &[Op], seed: u64) -> u64 {
    let dir = folder_like(template);
    let disk = SimDisk::from_image(image.to_vec());
    let replica = Arc::new(Replica::open_with_backend(dir.path(), disk.clone()).unwrap());
    let outcome = workload::run(&replica, ops, seed, 0);
    assert_eq!(
        outcome.acked,
        ops.len(),
        "seed {seed}: {:?}",
        outcome.first_error
    );
    let states = model_states(ops);
    assert_eq!(observe(&replica).unwrap(), states[ops.len()], "seed {seed}");
    disk.syncs()
}

fn crash_at(template: &Path, image: &[u8], ops: &[Op], seed: u64, at: u64, figures: &mut Figures) {
    let dir = folder_like(template);
    let disk = SimDisk::from_image(image.to_vec());
    disk.lose_power_at_sync(at);
    let outcome = match Replica::open_with_backend(dir.path(), disk.clone()) {
        Ok(replica) => {
            let replica = Arc::new(replica);
            let outcome = workload::run(&replica, ops, seed, 0);
            drop(replica);
            outcome
        }
        Err(_) => Outcome::default(),
    };
    figures.cycles += 1;
    if !disk.powered_off() {
        return;
    }
    figures.sync_points += 1;
    let states = model_states(ops);
    let mut keep = Rng::new(seed ^ at.rotate_left(32));
    let mut tear = Rng::new(seed ^ at);
    let images = [
        disk.crash_image(|| false, |_| None),
        disk.crash_image(|| true, |_| None),
        disk.crash_image(
            || keep.below(2) == 0,
            |sectors| (tear.below(4) == 0).then_some(tear.below(sectors as u64) as usize),
        ),
    ];
    for (variant, crashed) in images.into_iter().enumerate() {
        figures.images += 1;
        let label = format!("seed {seed}, power lost at sync {at}, image {variant}");
        let reopened = Replica::open_with_backend(dir.path(), SimDisk::from_image(crashed));
        let replica = match reopened {
            Ok(replica) => replica,
            Err(err) => {
                eprintln!("{label}: does not open: {err}");
                figures.corrupt_on_open += 1;
                continue;
            }
        };
        match observe(&replica) {
            Ok(observed) if workload::matching_state(&states, &outcome, &observed).is_some() => {}
            Ok(_) => {
                eprintln!(
                    "{label}: content matches no state from ack {} to attempt {}",
                    outcome.acked, outcome.attempted
                );
                figures.lost += 1;
            }
            Err(err) => {
                eprintln!("{label}: does not read: {err}");
                figures.corrupt_on_open += 1;
            }
        }
    }
}
