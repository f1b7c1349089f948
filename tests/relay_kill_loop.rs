//! The relay's kill -9 loop: acknowledged pushes survive SIGKILL.
//!
//! A writer pushes signed edits to the relay as fast as it can (`accord
//! debug push-loop`: one durable, attested edit, then a sync that ends only
//! when the relay reports holding it, then the item's number on stdout). We
//! SIGKILL the relay after a seeded number of acknowledgements, so the kill
//! lands while the next push is in flight, restart it on the same folder and
//! port, and have an observer (an informed member that only ever fetches
//! from the relay, before the writer can resend anything) check that every
//! acknowledged item is there. The relay opening again after each kill is
//! the "no unopenable replica" check. At the end a fresh member fetches
//! everything from the relay alone: every acknowledged item, the writer's
//! exact heads, and every change verified.
//!
//! `ACCORD_RELAY_KILL9_CYCLES` (default 20; `.ci/run` exports 200) and
//! `ACCORD_RELAY_KILL9_SEED` (replays the kill points).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::durability::Rng;
use crate::support::{Org, assert_no_panic, env_number, seed_from_env};
use crate::sync::{Proc, Relay, heads, sync_ok};

/// At most this many acknowledgements before a kill (a kill after 0 lands
/// while the writer connects).
const MOST_ACKS_PER_CYCLE: u64 = 8;

/// The objectives' texts of `doc` as `org` holds it.
fn objectives(org: &Org, doc: &str) -> BTreeSet<String> {
    org.doc(doc)["fields"]["objectives"]
        .as_array()
        .expect("objectives is a list")
        .iter()
        .map(|o| o["text"].as_str().expect("text").to_owned())
        .collect()
}

/// The writer's partnership: its MOU, the relay as peer, and invites for
/// the observer and the auditor (informed members).
struct Setup {
    writer: Org,
    doc: String,
    invites: [String; 2],
}

fn set_up(relay: &Relay, observer: &Org, auditor: &Org) -> Setup {
    let writer = Org::init("Writer");
    writer.ok(&["partnership", "new", "Kill Loop"]);
    let doc = writer.new_doc("Kill Loop", "mou", "MOU");
    writer.add_member("Kill Loop", "Observer", observer, "informed");
    writer.add_member("Kill Loop", "Auditor", auditor, "informed");
    writer.ok(&["peer", "add", &relay.url, "--key", &relay.key]);
    let invites = [
        writer.invite("Kill Loop", "Observer"),
        writer.invite("Kill Loop", "Auditor"),
    ];
    sync_ok(&writer, "writer", &[]);
    Setup {
        writer,
        doc,
        invites,
    }
}

/// Runs one push loop, kills the relay after `kill_after` acknowledgements,
/// and returns every item the relay acknowledged.
fn push_and_kill(setup: &Setup, relay: &mut Relay, cycle: u64, kill_after: u64) -> Vec<String> {
    let prefix = format!("c{cycle}");
    let mut writer = Proc::spawn(
        "accord debug push-loop",
        setup.writer.command(&[
            "debug",
            "push-loop",
            &setup.doc,
            "--prefix",
            &prefix,
            "--count",
            "100000",
            "--timeout",
            "20",
        ]),
    );
    let mut acked = Vec::new();
    while (acked.len() as u64) < kill_after {
        match writer.next_line() {
            Some(n) => acked.push(n),
            None => panic!(
                "cycle {cycle}: the push loop stopped before the kill ({:?})\nstderr: {}\nrelay's stderr: {}",
                writer.wait_exit(Duration::from_secs(5)),
                writer.stderr(),
                relay.proc.stderr()
            ),
        }
    }
    relay.proc.kill9();
    // Lines printed before the kill landed were acknowledged too; the loop
    // then fails its next push and exits.
    acked.extend(writer.remaining_lines());
    assert_no_panic(&writer.stderr());
    acked
        .into_iter()
        .map(|n| format!("{prefix}-{}", n.trim()))
        .collect()
}

#[test]
fn acknowledged_pushes_survive_relay_kill_9() {
    let started = Instant::now();
    let cycles = env_number("ACCORD_RELAY_KILL9_CYCLES").unwrap_or(20);
    assert!(cycles > 0, "ACCORD_RELAY_KILL9_CYCLES must be at least 1");
    let seed = seed_from_env("ACCORD_RELAY_KILL9_SEED");
    // A bound on the whole run, so a slow relay fails clearly.
    let budget = Duration::from_secs(60 + 5 * cycles);
    eprintln!("relay kill -9 loop: {cycles} cycles, ACCORD_RELAY_KILL9_SEED={seed}");
    let mut rng = Rng(seed);

    let relay_home = Org::empty();
    let mut relay = Relay::start(&relay_home, 0);
    let port = relay.port;
    let (observer, auditor) = (Org::init("Observer"), Org::init("Auditor"));
    let setup = set_up(&relay, &observer, &auditor);
    observer.ok(&["join", &setup.invites[0]]);
    sync_ok(&observer, "observer", &[]);

    let mut acknowledged = BTreeSet::new();
    for cycle in 0..cycles {
        assert!(
            started.elapsed() < budget,
            "cycle {cycle} of {cycles} (seed {seed}): over the budget of {budget:?}"
        );
        let kill_after = rng.below(MOST_ACKS_PER_CYCLE + 1);
        acknowledged.extend(push_and_kill(&setup, &mut relay, cycle, kill_after));
        relay = Relay::restart(&relay_home, port);
        // Before the writer can resend: the observer sees what the relay kept.
        sync_ok(&observer, "observer", &[]);
        let held = objectives(&observer, "MOU");
        let lost: Vec<_> = acknowledged.difference(&held).collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle} (seed {seed}): the restarted relay lost acknowledged items: {lost:?}"
        );
    }
    assert!(
        acknowledged.len() as u64 >= cycles,
        "too few acknowledgements ({}) to have tested anything (seed {seed})",
        acknowledged.len()
    );

    // A fresh member that fetches from the relay alone: every acknowledged
    // item, then (after the writer resends what was pushed but not
    // acknowledged) the writer's exact heads, every change verified.
    auditor.ok(&["join", &setup.invites[1]]);
    sync_ok(&auditor, "auditor", &[]);
    let lost: Vec<_> = acknowledged
        .difference(&objectives(&auditor, "MOU"))
        .cloned()
        .collect();
    assert!(
        lost.is_empty(),
        "a fresh member misses {lost:?} (seed {seed})"
    );
    sync_ok(&setup.writer, "writer", &[]);
    sync_ok(&auditor, "auditor", &[]);
    assert_eq!(heads(&auditor, "MOU"), heads(&setup.writer, "MOU"));
    let audit: Value = auditor.json(&["audit", "Kill Loop", "--json"]);
    let rows = audit.as_array().expect("audit rows");
    let writer_row = rows
        .iter()
        .find(|r| r["name"] == "Writer")
        .expect("the writer in the audit");
    assert_eq!(writer_row["unverified_changes"], 0, "{writer_row}");
    assert!(writer_row["changes"].as_u64().unwrap() as usize >= acknowledged.len());
    eprintln!(
        "relay kill -9 loop: {cycles} cycles (seed {seed}), {} pushes acknowledged, 0 lost, the relay reopened after every kill, {} s",
        acknowledged.len(),
        started.elapsed().as_secs()
    );
}
