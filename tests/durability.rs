//! Acknowledged edits survive `kill -9`.
//!
//! A writer appends items one durable edit at a time and prints each
//! item's number only after its transaction has committed. We kill it with
//! SIGKILL at a random point, reopen the replica, and check that every
//! number it printed is present and the replica opens; at the end, that
//! every change still verifies against its attestation. Kill points are
//! random but the assertion holds for any of them, so no run depends on
//! timing luck. `ACCORD_KILL_CYCLES` sets the number of cycles.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::Org;

/// A small deterministic generator (xorshift), seeded per run and printed
/// so a failure can be replayed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_edits_survive_kill_9() {
    let cycles: u32 = std::env::var("ACCORD_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = crate::support::seed_from_env("ACCORD_KILL_SEED");
    eprintln!("kill -9 loop: {cycles} cycles, ACCORD_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let org = Org::init("Women's Centre");
    org.ok(&["partnership", "new", "Sharing Our Strengths"]);
    org.new_doc("Sharing", "mou", "MOU");
    let mut acknowledged = BTreeSet::new();

    for cycle in 0..cycles {
        let prefix = format!("c{cycle}");
        let mut writer = org
            .command(&[
                "debug", "ack-loop", "MOU", "--prefix", &prefix, "--count", "100000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = rng.below(20);
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        for _ in 0..kill_after {
            match lines.next() {
                Some(Ok(n)) => {
                    acknowledged.insert(format!("{prefix}-{n}"));
                }
                _ => break,
            }
        }
        // Kill mid-write: the writer is busy with its next transaction.
        writer.kill().unwrap();
        writer.wait().unwrap();
        // Lines printed before the kill landed are acknowledged too.
        for line in lines.map_while(Result::ok) {
            acknowledged.insert(format!("{prefix}-{line}"));
        }

        let mou = org.doc("MOU");
        let present: BTreeSet<String> = mou["fields"]["objectives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["text"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<_> = acknowledged.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle} (seed {seed}): acknowledged but lost: {lost:?}"
        );
    }
    assert!(!acknowledged.is_empty());
    // Every change that survived is still signed by its organisation.
    let audit = org.json(&["audit", "Sharing", "--json"]);
    let us = &audit.as_array().expect("audit rows")[0];
    assert_eq!(us["unverified_changes"], 0, "{us}");
    assert!(us["changes"].as_u64().unwrap() as usize >= acknowledged.len());
    eprintln!(
        "kill -9 loop: {cycles} cycles, {} acknowledged edits, 0 lost",
        acknowledged.len()
    );
}
