//! Injected I/O errors: one write or one sync fails at a seeded point.
//!
//! The failed commit must be reported as such (naming the failure), no
//! acknowledgement may follow it, and the replica must reopen, both from
//! what the page cache holds and from what a power loss right then could
//! leave, with every acknowledged commit and nothing half-written, and
//! accept new commits.
//!
//! `ACCORD_IOFAULT_SEEDS` (default 40) makes the long run;
//! `ACCORD_IOFAULT_SEED` replays one seed.

use std::sync::Arc;

use accord_store::{Replica, StoreError, WriteBatch};

use super::power_loss::{base, env_u64, folder_like, seeds};
use super::sim_disk::{FaultOp, INJECTED, SimDisk};
use super::workload::{self, Rng, generate, model_states, observe};

#[test]
fn a_failed_commit_is_reported_never_followed_by_an_ack_and_recovers_on_reopen() {
    let ops_per_seed = env_u64("ACCORD_POWERLOSS_OPS", 40) as usize;
    let template = tempfile::tempdir().unwrap();
    let image = base(template.path());
    let (mut runs, mut failed, mut late_acks, mut reopened) = (0, 0, 0, 0);
    for seed in seeds("ACCORD_IOFAULT_SEED", "ACCORD_IOFAULT_SEEDS", 40) {
        let ops = generate(seed, ops_per_seed);
        let states = model_states(&ops);
        let mut rng = Rng::new(seed);
        let op = if rng.below(2) == 0 {
            FaultOp::Write
        } else {
            FaultOp::Sync
        };
        let at = 1 + rng.below(if op == FaultOp::Write { 400 } else { 40 });
        let dir = folder_like(template.path());
        let disk = SimDisk::from_image(image.clone());
        disk.fail(op, at);
        let outcome = match Replica::open_with_backend(dir.path(), disk.clone()) {
            Ok(replica) => {
                let replica = Arc::new(replica);
                let outcome = workload::run(&replica, &ops, seed, 8);
                // Closing writes too; a fault hit only by the close fails no commit.
                let hit = disk.faulted();
                drop(replica);
                (outcome, hit)
            }
            // Opening writes (redb marks the file open): a fault there fails the open.
            Err(err) => {
                let outcome = workload::Outcome {
                    first_error: Some(err),
                    ..workload::Outcome::default()
                };
                (outcome, true)
            }
        };
        let (outcome, hit_by_workload) = outcome;
        runs += 1;
        let label = format!("seed {seed} ({op:?} {at} fails)");
        if !hit_by_workload {
            assert_eq!(outcome.acked, ops.len(), "{label}");
            continue;
        }
        failed += 1;
        let err = outcome
            .first_error
            .as_ref()
            .expect("the fault failed a commit");
        assert_clear(err, &label);
        late_acks += outcome.acked_after_failure;
        let power_loss = disk.crash_image(|| false, |_| None);
        for image in [disk.live_image(), power_loss] {
            let replica = Replica::open_with_backend(dir.path(), SimDisk::from_image(image))
                .unwrap_or_else(|e| panic!("{label}: does not reopen: {e}"));
            let observed = observe(&replica).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(
                workload::matching_state(&states, &outcome, &observed).is_some(),
                "{label}: content matches no state from ack {} to attempt {}",
                outcome.acked,
                outcome.attempted
            );
            let mut batch = WriteBatch::new();
            batch.put_setting("after", b"recovered".to_vec());
            replica
                .commit(batch)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            reopened += 1;
        }
    }
    eprintln!(
        "I/O faults: {runs} runs, {failed} failed commits, {late_acks} acknowledgements after a failure, {reopened} reopens"
    );
    assert_eq!(late_acks, 0, "an acknowledgement followed a failed commit");
    assert!(failed > 0, "no fault was ever hit");
}

/// The error says the save failed, and why.
fn assert_clear(err: &StoreError, label: &str) {
    let text = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::CommitFailed(_) | StoreError::Io { .. } | StoreError::Database(_)
        ),
        "{label}: unexpected kind: {err:?}"
    );
    assert!(
        text.contains(INJECTED)
            || text.contains("previous I/O error")
            || text.contains("could not save"),
        "{label}: the error does not say what failed: {text}"
    );
}
